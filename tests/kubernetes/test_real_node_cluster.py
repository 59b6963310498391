"""The data path follows the cluster, on the real node: the router watches its instance pods through the
API server (its own ServiceAccount and Role), so pods the cluster adds or takes away serve or stop without
recon; the default in-cluster scoring URI answers through cluster DNS and kube-proxy; the setup script
keeps a running cluster.

Load goes through ``kubectl port-forward`` to the router's Service; each answer names the pod that
served it (the scoring script returns its host name, the pod's name)."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes.settings import DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE
from reconciler.plan.provider import ApplyRequest, Keys
from tests.kubernetes import helpers
from tests.kubernetes.cluster import RUN, SETUP
from tests.kubernetes.conftest import Cluster, wait_until
from tests.kubernetes.helpers import Project
from tests.kubernetes.test_real_node import PortForward, free_port

pytestmark = pytest.mark.kubernetes

POD_SCORE_PY = """\
import json
import socket


def init():
    pass


def run(raw_data):
    return {"pod": socket.gethostname(), "echo": json.loads(raw_data)}
"""
BLUE = "deployment.ep.blue"


@pytest.fixture
def real(tmp_path: Path, cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.setattr(helpers, "SCORE_PY", POD_SCORE_PY)
    settings = {"kubeconfig": str(cluster.kubeconfig), "namespace": namespace, "image_pull_policy": "Never",
                "image_overrides": {DEFAULT_IMAGE: "local/python:3.11", DEFAULT_ROUTER_IMAGE: "local/python:3.11"},
                "rollout_timeout_seconds": 180}
    project = Project.make(tmp_path / "project", settings)
    try:
        yield project
    finally:
        project.provider.close()


def routed_stack(project: Project, count: int, **overrides: Any) -> str:
    """Endpoint ep with deployment blue (``count`` pods) taking all traffic; its primary key."""
    made = project.stack(count=count, **overrides)
    ep = project.endpoint()
    project.provider.set_routing(ApplyRequest(ep.address, "endpoint", "ep", {**ep.attributes, "traffic": {"blue": 100}},
                                              made["endpoint.ep"], {}, project.events.append))
    keys = project.provider.credentials(made["endpoint.ep"])
    assert isinstance(keys, Keys)
    project.provider.close()  # from here on recon is not running
    return keys.primary_key


class Load:
    """Requests to the router, back to back from ``threads`` threads, until closed: each answer's pod and
    when it first served, and every failed request (anything but a 200 with a pod's name)."""

    def __init__(self, port: int, key: str, threads: int = 2) -> None:
        self.port, self.key = port, key
        self.first_served: dict[str, float] = {}
        self.served: dict[str, int] = {}
        self.failures: list[str] = []
        self.ok = 0
        self.stopped = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while not self.stopped:
            try:
                conn.request("POST", "/score", body=b'{"n": 1}', headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                pod = json.loads(body).get("pod") if resp.status == 200 else None
            except (OSError, http.client.HTTPException, ValueError) as ex:
                with self.lock:
                    self.failures.append(f"{type(ex).__name__}: {ex}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            with self.lock:
                if pod is None:
                    self.failures.append(f"HTTP {resp.status}: {body[:200]!r}")
                    continue
                self.ok += 1
                self.served[pod] = self.served.get(pod, 0) + 1
                self.first_served.setdefault(pod, time.monotonic())
        conn.close()

    def close(self) -> None:
        self.stopped = True
        for t in self.threads:
            t.join(timeout=60)


def blue_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/deployment=blue",
                                           "-o", "json").stdout)["items"])


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def watch_ready(cluster: Cluster, namespace: str, names: set[str], load: Load, timeout: float = 120) -> dict[str, float]:
    """Until every pod of blue not in ``names`` is ready and has served a request: for each, the seconds
    from when it was seen ready (polled every 0.2 s) to its first answer."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in blue_pods(cluster, namespace):
            name = pod["metadata"]["name"]
            if name not in names and ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                seen.setdefault(name, time.monotonic())
        if seen and all(n in load.first_served for n in seen) and len(seen) >= 1:
            return {n: max(0.0, load.first_served[n] - t) for n, t in seen.items()}
        time.sleep(0.2)
    raise AssertionError(f"new pods {sorted(seen)} did not all serve within {timeout:g}s "
                         f"(served: {load.served})")


def test_pods_kubectl_scale_adds_behind_recons_back_serve_without_recon(real: Project, cluster: Cluster,
                                                                       namespace: str) -> None:
    key = routed_stack(real, 1)
    first = {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}
    forward = PortForward(cluster, namespace, "ep-router", free_port())
    load = Load(forward.port, key)
    try:
        wait_until(lambda: load.ok > 5, 60, "answers from the first pod")
        cluster.kubectl("-n", namespace, "scale", "deployment", "ep-blue", "--replicas=3")
        wait_until(lambda: len(blue_pods(cluster, namespace)) == 3, 60, "3 pods")
        lags: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while len(lags) < 2 and time.monotonic() < deadline:  # both new pods, each timed from its Ready
            lags.update(watch_ready(cluster, namespace, first | set(lags), load))
        print(f"\n[pool follows kubectl scale] seconds from a new pod seen ready to its first answer: {lags}")
        assert len(lags) == 2
        # and back down: the two pods the Deployment controller removes drain without a failed request
        cluster.kubectl("-n", namespace, "scale", "deployment", "ep-blue", "--replicas=1")
        wait_until(lambda: len(blue_pods(cluster, namespace)) == 1, 120, "the scale-down")
        time.sleep(2)
    finally:
        load.close()
        forward.close()
    assert load.failures == [], load.failures[:5]
    assert set(load.served) >= first | set(lags) and load.ok > 20
    print(f"[pool follows kubectl scale] {load.ok} answers, 0 failed, per pod: {load.served}")


def test_an_evicted_pod_drains_and_its_replacement_serves_with_no_failed_request(real: Project, cluster: Cluster,
                                                                                 namespace: str) -> None:
    key = routed_stack(real, 2)
    before = {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}
    forward = PortForward(cluster, namespace, "ep-router", free_port())
    load = Load(forward.port, key)
    try:
        wait_until(lambda: set(load.served) >= before, 60, "answers from both pods")
        victim = sorted(before)[0]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": victim, "namespace": namespace}}
        cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{victim}/eviction", "-f", "-",
                        input_text=json.dumps(eviction))  # as a node drain does
        lags = watch_ready(cluster, namespace, before, load)
        wait_until(lambda: victim not in {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}, 120,
                   "the evicted pod gone")
        print(f"\n[eviction] seconds from the replacement seen ready to its first answer: {lags}")
    finally:
        load.close()
        forward.close()
    assert load.failures == [], load.failures[:5]
    assert set(lags) <= set(load.served) and load.ok > 20
    print(f"[eviction] {load.ok} answers, 0 failed, per pod: {load.served}")


CALLER = """\
import json, sys, time, urllib.error, urllib.request
uri = sys.argv[1]
key = json.load(open("/keys/keys.json"))["primaryKey"]
for attempt in range(60):
    try:
        req = urllib.request.Request(uri, data=b'{"n": 2}', headers={"Authorization": "Bearer " + key,
                                                                     "Content-Type": "application/json"})
        print("answer", urllib.request.urlopen(req, timeout=10).read().decode(), flush=True)
        break
    except (urllib.error.URLError, OSError) as ex:
        print("retry", ex, flush=True)
        time.sleep(1)
try:
    urllib.request.urlopen(urllib.request.Request(uri, data=b"{}"), timeout=10)
except urllib.error.HTTPError as ex:
    print("without a key", ex.code, flush=True)
"""


def test_a_pod_calls_the_default_scoring_uri_through_cluster_dns_and_kube_proxy(real: Project, cluster: Cluster,
                                                                               namespace: str) -> None:
    routed_stack(real, 1)
    uri = str(real.provider.endpoints.outputs("ep")["scoring_uri"])
    assert uri == f"http://ep-router.{namespace}.svc.cluster.local/score"  # what recon records by default
    run_pod(cluster, namespace, "caller", CALLER, uri)

    def finished() -> str:
        got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "caller", "-o", "json").stdout)
        return str(got["status"].get("phase")) if got["status"].get("phase") in ("Succeeded", "Failed") else ""

    assert wait_until(finished, 120, "the calling pod") == "Succeeded"
    logs = cluster.kubectl("-n", namespace, "logs", "caller").stdout
    answer = next(line for line in logs.splitlines() if line.startswith("answer "))
    data = json.loads(answer.removeprefix("answer "))
    assert data["pod"].startswith("ep-blue-") and data["echo"] == {"n": 2}
    assert "without a key 401" in logs


def test_setup_up_real_on_the_running_cluster_keeps_the_same_processes(cluster: Cluster) -> None:
    pids = {f.name: f.read_text().strip() for f in RUN.glob("*.pid")}
    assert {"etcd.pid", "kube-apiserver.pid", "kubelet.pid", "kube-proxy.pid", "coredns.pid",
            "metrics-server.pid"} <= set(pids)
    proc = subprocess.run(["bash", str(SETUP), "up-real"], env=cluster.env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "control plane already running" in proc.stderr and "node localhost already running" in proc.stderr
    assert {f.name: f.read_text().strip() for f in RUN.glob("*.pid")} == pids  # the same processes
    for name, pid in pids.items():
        assert Path(f"/proc/{pid}").exists(), f"{name}: {pid} is not running"
    assert cluster.kubectl("get", "--raw", "/readyz").stdout == "ok"
    nodes = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
    assert nodes["kind"] == "NodeMetricsList"  # metrics-server answers as an API service


LOADER = """\
import json, sys, time, urllib.error, urllib.request
uri, seconds = sys.argv[1], float(sys.argv[2])
key = json.load(open("/keys/keys.json"))["primaryKey"]
ok, failed, errors = 0, 0, []
start = time.monotonic()
print("started", flush=True)
while time.monotonic() - start < seconds:
    req = urllib.request.Request(uri, data=b'{"n": 3}', headers={"Authorization": "Bearer " + key,
                                                                 "Content-Type": "application/json"})
    try:  # a connection of its own each time, through the Service's address (kube-proxy)
        json.loads(urllib.request.urlopen(req, timeout=30).read())["pod"]
        ok += 1
    except Exception as ex:
        failed += 1
        errors.append(repr(ex)[:200])
print("summary", json.dumps({"ok": ok, "failed": failed, "errors": errors[:5]}), flush=True)
"""


def run_pod(cluster: Cluster, namespace: str, name: str, script: str, *args: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": {"restartPolicy": "Never", "enableServiceLinks": False,
                    "containers": [{"name": name, "image": "local/python:3.11", "imagePullPolicy": "Never",
                                    "command": ["python3", "-c", script, *args],
                                    "volumeMounts": [{"name": "keys", "mountPath": "/keys", "readOnly": True}]}],
                    "volumes": [{"name": "keys", "secret": {"secretName": "ep-keys"}}]}}
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(pod))


def test_deleting_a_router_pod_under_load_fails_no_request(real: Project, cluster: Cluster, namespace: str) -> None:
    routed_stack(real, 1)
    routers = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/role=router",
                                         "-o", "json").stdout)["items"]
    assert len(routers) == 2  # router_replicas' default
    # every replica serves the same table (recon waited for each) and the same pool
    endpoints = real.provider.endpoints
    key = endpoints.read_secret("ep")["instanceKey"]
    docs = [endpoints.scope.kube.proxy_get(p["metadata"]["name"], 8080, "/-/router",
                                           headers={"x-recon-instance-key": key}) for p in routers]
    assert all(d is not None for d in docs)
    assert len({(d["version"], json.dumps(d["deployments"]["blue"]["upstreams"], sort_keys=True))  # type: ignore[index]
                for d in docs}) == 1
    real.provider.close()
    uri = f"http://ep-router.{namespace}.svc.cluster.local/score"
    run_pod(cluster, namespace, "loader", LOADER, uri, "40")
    wait_until(lambda: "started" in cluster.kubectl("-n", namespace, "logs", "loader", check=False).stdout, 120,
               "the load")
    time.sleep(8)
    victim = routers[0]["metadata"]["name"]
    cluster.kubectl("-n", namespace, "delete", "pod", victim, "--wait=false")  # graceful, as a rollout or drain

    def summary() -> dict[str, Any] | None:
        logs = cluster.kubectl("-n", namespace, "logs", "loader", check=False).stdout
        line = next((x for x in logs.splitlines() if x.startswith("summary ")), None)
        return json.loads(line.removeprefix("summary ")) if line else None

    result = wait_until(summary, 180, "the load's summary")
    print(f"\n[router pod deleted under load] {result}")
    assert result["failed"] == 0, result
    assert result["ok"] > 50
    now = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/role=router",
                                     "-o", "json").stdout)["items"]
    assert victim not in {p["metadata"]["name"] for p in now} and len(now) == 2


HOT_SCORE_PY = """\
import json
import socket
import time


def init():
    pass


def run(raw_data):
    end = time.process_time() + 0.03  # 30 ms of CPU a request: load makes real CPU use
    while time.process_time() < end:
        pass
    return {"pod": socket.gethostname(), "echo": json.loads(raw_data)}
"""


def test_an_hpa_grows_a_deployment_from_real_cpu_load_and_its_new_pods_take_requests(
        real: Project, cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics-server reads the real kubelet's CPU; the HorizontalPodAutoscaler recon made adds pods; the
    router's watch sends them requests, recon not running."""
    monkeypatch.setattr(helpers, "SCORE_PY", HOT_SCORE_PY)
    scale = {"type": "target_utilization", "min_instances": 1, "max_instances": 3,
             "target_utilization_percentage": 50, "polling_interval": 1}
    key = routed_stack(real, 1, scale_settings=scale)
    first = {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}
    forward = PortForward(cluster, namespace, "ep-router", free_port())
    load = Load(forward.port, key)  # 2 at a time: one in flight, one queued (Azure admits 2 per instance)
    try:
        lags = watch_ready(cluster, namespace, first, load, timeout=300)  # the autoscaler's first new pod(s)
        hpa = json.loads(cluster.kubectl("-n", namespace, "get", "hpa", "ep-blue", "-o", "json").stdout)
        print(f"\n[hpa] desired {hpa['status'].get('desiredReplicas')}, current metrics "
              f"{hpa['status'].get('currentMetrics')}; seconds from a new pod seen ready to its first answer: {lags}")
    finally:
        load.close()
        forward.close()
    assert hpa["status"]["desiredReplicas"] > 1 and hpa["spec"]["maxReplicas"] == 3
    assert load.failures == [], load.failures[:5]
    assert set(lags) <= set(load.served)
    print(f"[hpa] {load.ok} answers, 0 failed, per pod: {load.served}")
