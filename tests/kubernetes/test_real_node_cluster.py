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
from prometheus_client.parser import text_string_to_metric_families

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
    """Requests to the router, back to back from ``threads`` threads (each on a connection of its own,
    kept alive), until closed: each answer's pod and when it first served, and every failed request
    (anything but a 200 with a pod's name), by thread. ``pause``: seconds between one thread's requests.
    ``retry_refused``: a connection the server refuses (nothing was sent yet) is counted in ``refused``
    and tried again, as HTTP clients do, instead of failing a request. ``backoff``: seconds a thread waits
    after a failed request before it connects again."""

    def __init__(self, port: int, key: str, threads: int = 2, host: str = "127.0.0.1", body: bytes = b'{"n": 1}',
                 pause: float = 0.0, retry_refused: bool = False, backoff: float = 0.0) -> None:
        self.host, self.port, self.key, self.body, self.pause = host, port, key, body, pause
        self.backoff = backoff
        self.retry_refused = retry_refused
        self.first_served: dict[str, float] = {}
        self.served: dict[str, int] = {}
        self.failures: list[str] = []
        self.failed_by: dict[int, int] = {}  # thread -> failed requests
        self.failed_at: list[tuple[float, int]] = []  # (monotonic time, thread) of each failed request
        self.ok_by: dict[int, int] = {}  # thread -> answers
        self.ports: dict[int, int] = {}  # thread -> the local port of its connection now
        self.ok = 0
        self.refused = 0
        self.stopped = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, index: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while not self.stopped:
            try:
                conn.request("POST", "/score", body=self.body, headers=headers)
                if conn.sock is not None:
                    self.ports[index] = conn.sock.getsockname()[1]
                resp = conn.getresponse()
                body = resp.read()
                pod = json.loads(body).get("pod") if resp.status == 200 else None
            except ConnectionRefusedError as ex:  # refused at connect: no byte of the request was sent
                with self.lock:
                    if self.retry_refused:
                        self.refused += 1
                    else:
                        self.failures.append(f"{type(ex).__name__}: {ex}")
                        self.failed_by[index] = self.failed_by.get(index, 0) + 1
                conn.close()
                time.sleep(0.05)
                continue
            except (OSError, http.client.HTTPException, ValueError) as ex:
                with self.lock:
                    self.failures.append(f"{type(ex).__name__}: {ex}")
                    self.failed_by[index] = self.failed_by.get(index, 0) + 1
                    self.failed_at.append((time.monotonic(), index))
                conn.close()
                time.sleep(self.backoff)
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                continue
            with self.lock:
                if pod is None:
                    self.failures.append(f"HTTP {resp.status}: {body[:200]!r}")
                    self.failed_by[index] = self.failed_by.get(index, 0) + 1
                    continue
                self.ok += 1
                self.ok_by[index] = self.ok_by.get(index, 0) + 1
                self.served[pod] = self.served.get(pod, 0) + 1
                self.first_served.setdefault(pod, time.monotonic())
            if self.pause:
                time.sleep(self.pause)
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
        # recon reads the deployment again: a pod the cluster replaced is not drift, every router's pool in step
        obs = real.provider.observe(real.recorded[BLUE])
        real.provider.close()
    finally:
        load.close()
        forward.close()
    assert load.failures == [], load.failures[:5]
    assert set(lags) <= set(load.served) and load.ok > 20
    assert obs.exists and obs.problems == [] and obs.attributes["instance_count"] == 2
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
    # and that table is the last one recon wrote: set_routing returned only once every replica served it
    table = json.loads(cluster.kubectl("-n", namespace, "get", "configmap", "ep-router", "-o", "json").stdout)
    assert {d["version"] for d in docs} == {json.loads(table["data"]["table.json"])["version"]}  # type: ignore[index]
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
    data = json.loads(raw_data)
    if data.get("burn"):  # 30 ms of CPU a request: load makes real CPU use
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass
    return {"pod": socket.gethostname(), "echo": data}
"""


def router_counts(project: Project) -> dict[str, dict[str, int]]:
    """The router's own counts (``GET /-/metrics`` of every router pod): requests it sent to blue's
    instances, by router pod and by configuration digest and class of answer."""
    out: dict[str, dict[str, int]] = {}
    for pod, text in project.provider.endpoints.router_metrics("ep"):
        assert text is not None, f"router pod {pod} did not answer GET /-/metrics"
        counts = out.setdefault(pod, {})
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "recon_router_requests_total" and labels["deployment"] == "blue" and sample.value:
                    series = f"{labels['digest'].removeprefix('sha256:')[:12]} {labels['code']}"
                    counts[series] = counts.get(series, 0) + int(sample.value)
    return out


def test_an_hpa_grows_a_deployment_from_real_cpu_load_and_shrinks_it_when_the_load_stops(
        real: Project, cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics-server reads the real kubelet's CPU; the HorizontalPodAutoscaler recon made adds pods; the
    router's watch sends them requests, recon not running; the HPA's replica count is not drift. The load
    stops, the HPA takes the pods away again while a light load goes on: none of its requests fails."""
    monkeypatch.setattr(helpers, "SCORE_PY", HOT_SCORE_PY)
    scale = {"type": "target_utilization", "min_instances": 1, "max_instances": 3,
             "target_utilization_percentage": 50, "polling_interval": 1}
    key = routed_stack(real, 1, scale_settings=scale)
    # Azure's scale settings have no scale-down window, so recon's HPA keeps Kubernetes' default (300 s of
    # stabilization before it shrinks): the test shortens it through the API, as an operator could
    cluster.kubectl("-n", namespace, "patch", "hpa", "ep-blue", "--type=merge", "-p",
                    '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":10}}}}')
    first = {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}
    forward = PortForward(cluster, namespace, "ep-router", free_port())
    # one request burning CPU and one cheap one at a time: one in flight, one queued (Azure admits 2 per
    # instance); the light load (~10 cheap requests a second) goes on through the scale-down
    heavy = Load(forward.port, key, threads=1, body=b'{"burn": 1}')
    light = Load(forward.port, key, threads=1, pause=0.1)
    try:
        lags = watch_ready(cluster, namespace, first, heavy, timeout=300)  # the autoscaler's first new pod(s)
        hpa = json.loads(cluster.kubectl("-n", namespace, "get", "hpa", "ep-blue", "-o", "json").stdout)
        print(f"\n[hpa] desired {hpa['status'].get('desiredReplicas')}, current metrics "
              f"{hpa['status'].get('currentMetrics')}; seconds from a new pod seen ready to its first answer: {lags}")

        def all_ready_observed() -> Any:  # recon reads the endpoint again once every pod is ready
            pods = blue_pods(cluster, namespace)
            if len(pods) < 2 or not all(ready(p) for p in pods):
                return None
            obs = real.provider.observe(real.recorded[BLUE])
            return (obs, len(pods)) if not obs.problems else None

        grew = time.monotonic()
        obs, grown = wait_until(all_ready_observed, 120, "every pod of the scale-up ready, with no drift")
        real.provider.close()
        heavy.close()
        stopped = time.monotonic()

        def shrunk() -> bool:
            status = json.loads(cluster.kubectl("-n", namespace, "get", "hpa", "ep-blue", "-o", "json").stdout)
            return status["status"].get("desiredReplicas") == 1 and len(blue_pods(cluster, namespace)) == 1

        wait_until(shrunk, 300, "the HPA's scale-down to 1 pod and the other pods gone")
        shrink_seconds = time.monotonic() - stopped
        time.sleep(2)
    finally:
        heavy.close()
        light.close()
        forward.close()
    # the replica count is the HPA's: not drift (no instance_count observed), its bounds as declared
    assert "instance_count" not in obs.attributes and obs.attributes["scale_settings"]["max_instances"] == 3
    assert grown > 1 and hpa["status"]["desiredReplicas"] > 1 and hpa["spec"]["maxReplicas"] == 3
    assert heavy.failures == [], heavy.failures[:5]
    assert light.failures == [], light.failures[:5]
    assert set(lags) <= set(heavy.served) | set(light.served)
    gone = (set(heavy.served) | set(light.served)) - {p["metadata"]["name"] for p in blue_pods(cluster, namespace)}
    assert gone, "a pod the HPA took away had served"
    counts = router_counts(real)
    assert not any(series.endswith(" 5xx") for per_pod in counts.values() for series in per_pod), counts
    print(f"[hpa] grew to {grown} pods: {heavy.ok} CPU-heavy answers, 0 failed, per pod: {heavy.served}")
    print(f"[hpa] back to 1 pod {shrink_seconds:.0f}s after the load stopped; the light load: {light.ok} answers, "
          f"0 failed, per pod: {light.served}; the router's own counts (router pod: digest class): {counts}; "
          f"from the first new pod's answer to the end: {time.monotonic() - grew:.0f}s")
