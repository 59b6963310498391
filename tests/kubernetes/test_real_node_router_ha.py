"""The router's replicas on the real node, when one of them dies or stops following the cluster: a SIGKILL
of a router pod's process under load (only the requests on its connections fail; the other replica goes
on; the kubelet restarts it and it serves again), and a router whose pod watch cannot follow (its
RoleBinding deleted) reported as drift, and repaired by applying the endpoint again.

The load comes from this host through the router Service's cluster address (kube-proxy's rules on the
node choose a router pod for each connection); which router pod each client connection is on is read
from the host's connection tracking, where kube-proxy's address translation is recorded."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.cluster import RUN
from tests.kubernetes.conftest import Cluster, wait_until
from tests.kubernetes.helpers import Project
from tests.kubernetes.test_real_node_cluster import BLUE, Load, blue_pods, ready, real, routed_stack

pytestmark = pytest.mark.kubernetes
__all__ = ["real"]  # the fixture


def router_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return sorted(json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/role=router",
                                             "-o", "json").stdout)["items"], key=lambda p: str(p["metadata"]["name"]))


def get_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout))


def router_container(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(next(s for s in pod["status"].get("containerStatuses") or [] if s["name"] == "router"))


def container_pid(pod: dict[str, Any]) -> int:
    """The host pid of the router container's process, from the real node's containerd."""
    cid = str(router_container(pod)["containerID"]).split("://", 1)[1]
    tasks = subprocess.run(["ctr", "--address", str(RUN / "containerd" / "containerd.sock"), "-n", "k8s.io",
                            "tasks", "ls"], capture_output=True, text=True, check=True, timeout=30).stdout
    pid = next(int(line.split()[1]) for line in tasks.splitlines()[1:] if line.split()[0] == cid)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    assert cmdline.startswith("python3 ") and "router.pyz" in cmdline, cmdline  # the router's python itself
    return pid


def backends(service_ip: str) -> dict[int, str]:
    """Client port -> the router pod address kube-proxy sent that connection to (the host's conntrack)."""
    out = subprocess.run(["conntrack", "-L", "-p", "tcp", "--orig-dst", service_ip, "--orig-port-dst", "80"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    found: dict[int, str] = {}
    for line in out.splitlines():
        if " ESTABLISHED " not in line:
            continue
        fields = [f.split("=", 1) for f in line.split() if "=" in f]
        sports = [v for k, v in fields if k == "sport"]
        sources = [v for k, v in fields if k == "src"]
        found[int(sports[0])] = sources[1]  # original direction: our port; reply direction: from the pod
    return found


def restarted(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = get_pod(cluster, namespace, name)
    status = router_container(pod)
    return pod if int(status.get("restartCount") or 0) >= 1 and status.get("ready") and ready(pod) else None


def kill_router(cluster: Cluster, namespace: str, name: str) -> tuple[dict[str, Any], float, float]:
    """SIGKILL of the router process of pod ``name``; then until the kubelet has restarted it and the pod
    is Ready again: the pod, when it was killed (monotonic) and the seconds until Ready again."""
    pid = container_pid(get_pod(cluster, namespace, name))
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    pod = wait_until(lambda: restarted(cluster, namespace, name), 120, f"router pod {name} restarted and ready")
    assert container_pid(pod) != pid
    return pod, killed, time.monotonic() - killed


def score_at(address: str, key: str) -> dict[str, Any]:
    """One request straight to a router pod's address (this host reaches the pod network)."""
    conn = http.client.HTTPConnection(address, 8080, timeout=30)
    try:
        conn.request("POST", "/score", body=b'{"n": 4}', headers={"Authorization": f"Bearer {key}",
                                                                   "Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body[:300])
        return dict(json.loads(body))
    finally:
        conn.close()


def test_sigkill_of_a_router_process_fails_only_the_requests_on_its_connections(real: Project, cluster: Cluster,
                                                                               namespace: str) -> None:
    settings = {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 2, "max_queue_wait_ms": 500}
    key = routed_stack(real, 2, request_settings=settings)  # each router admits 8 at once: no 429 below
    routers = router_pods(cluster, namespace)
    assert len(routers) == 2
    service_ip = json.loads(cluster.kubectl("-n", namespace, "get", "service", "ep-router", "-o", "json").stdout)[
        "spec"]["clusterIP"]
    # a client connects again 0.1 s after a failed request: one that resends within a few milliseconds can
    # still reach the dying process's listening socket (measured: 2-3 ms after the kill) and fail once more
    load = Load(80, key, threads=6, host=service_ip, retry_refused=True, backoff=0.1)
    try:
        wait_until(lambda: len(load.ok_by) == 6 and load.ok > 60, 60, "answers on all 6 connections")

        def placed() -> dict[int, str] | None:  # thread -> the router pod address its connection is on
            tracked = backends(service_ip)
            on = {t: tracked.get(port, "") for t, port in dict(load.ports).items()}
            return on if all(on.values()) else None

        on = wait_until(placed, 10, "every connection in the host's conntrack table")
        by_ip = {p["status"]["podIP"]: p for p in routers}
        assert set(on.values()) <= set(by_ip), (on, sorted(by_ip))
        victim_ip = max(by_ip, key=lambda ip: sum(1 for v in on.values() if v == ip))
        victim = by_ip[victim_ip]["metadata"]["name"]
        doomed = sorted(t for t, ip in on.items() if ip == victim_ip)
        others = sorted(set(on) - set(doomed))
        ok_then = dict(load.ok_by)
        pod, killed, back = kill_router(cluster, namespace, victim)
        answer = score_at(pod["status"]["podIP"], key)  # the restarted router serves again
        time.sleep(3)
    finally:
        load.close()
    failed = sum(load.failed_by.values())
    print(f"\n[router SIGKILL] {load.ok} answers; {failed} failed requests (threads {load.failed_by}), "
          f"{len(doomed)} of the 6 connections on the killed router pod; {load.refused} connections refused "
          f"(no byte sent, tried again) before kube-proxy dropped it; restarted and Ready {back:.1f}s after the "
          f"kill; failures (s after the kill, thread): {[(round(t - killed, 3), i) for t, i in load.failed_at]} "
          f"{load.failures[:6]}")
    assert answer["pod"].startswith("ep-blue-")
    assert failed <= len(doomed), (load.failed_by, doomed, load.failures[:10])
    assert set(load.failed_by) <= set(doomed), (load.failed_by, doomed)  # the other replica's connections: none
    assert all(load.ok_by.get(t, 0) > ok_then.get(t, 0) for t in others)  # ... and they went on being answered
    assert all(load.ok_by.get(t, 0) > ok_then.get(t, 0) for t in doomed)  # the killed ones' clients too, again


def test_a_router_pool_out_of_step_with_the_ready_pods_is_drift(real: Project, cluster: Cluster,
                                                               namespace: str) -> None:
    """The router's pool follows the pods through its own watch; a router whose watch cannot list the
    pods (its RoleBinding gone) keeps the table's pool: once the cluster replaces a pod, that pool is out
    of step with the ready pods, which recon reports (the other replica, whose watch runs, follows)."""
    routed_stack(real, 1)
    blue, endpoint = real.recorded[BLUE], real.recorded["endpoint.ep"]
    assert real.provider.observe(blue).problems == []
    cluster.kubectl("-n", namespace, "delete", "rolebinding", "ep-router")
    gone = real.provider.observe(endpoint)
    assert not gone.exists and gone.problems == ["its RoleBinding ep-router is gone"]  # apply makes it again
    wait_until(lambda: cluster.kubectl("-n", namespace, "auth", "can-i", "list", "pods", "--as",
                                       f"system:serviceaccount:{namespace}:ep-router", check=False).stdout.strip()
               == "no", 30, "the API server's authorizer without the router's RoleBinding")
    victim = router_pods(cluster, namespace)[0]["metadata"]["name"]
    kill_router(cluster, namespace, victim)  # its new process cannot list pods: it serves the table's pool
    instance_key = real.provider.endpoints.read_secret("ep")["instanceKey"]

    def router_status() -> dict[str, Any]:
        doc = real.provider.endpoints.scope.kube.proxy_get(victim, 8080, "/-/router",
                                                           headers={"x-recon-instance-key": instance_key})
        return doc or {}

    wait_until(lambda: "403" in str((router_status().get("discovery") or {}).get("error")), 30,
               "the restarted router's pod list refused (403)")
    old = blue_pods(cluster, namespace)[0]["metadata"]["name"]
    cluster.kubectl("-n", namespace, "delete", "pod", old, "--wait=false")  # the cluster replaces it

    def replaced() -> bool:
        pods = blue_pods(cluster, namespace)
        return [p["metadata"]["name"] for p in pods] != [old] and len(pods) == 1 and ready(pods[0])

    wait_until(replaced, 120, "the replacement pod ready and the old one gone")
    drift = real.provider.observe(blue)
    stale = [p for p in drift.problems if "out of step" in p]
    print(f"\n[pool out of step] {drift.problems}")
    assert stale and "it reaches 0 of its 1 ready pods and lists 1 address(es) of no ready pod" in stale[0]
    assert drift.attributes["instance_count"] == 0  # the instances that router reaches: the plan shows it
    # the repair: apply makes the endpoint's RoleBinding again; the router's watch lists the pods at its next try
    real.create(real.endpoint())
    assert real.provider.observe(endpoint).problems == []
    assert real.provider.observe(blue).problems == []
    assert router_status()["discovery"]["synced"] is True and router_status()["discovery"]["error"] == ""
