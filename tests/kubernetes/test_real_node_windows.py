"""The Kubernetes provider's measuring window on the real node reads every router replica: requests
sent to each router pod of an endpoint (each through a port-forward of its own) all count in one
window, read through the API server's pod proxy with the recorded endpoint's key."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.kubernetes import KubernetesProvider
from providers.kubernetes import manifests as m
from providers.kubernetes.settings import KNOWN
from reconciler.plan.provider import ApplyRequest, ProviderContext
from tests.kubernetes.conftest import Cluster, wait_until
from tests.kubernetes.test_real_node import PortForward, Recon, free_port, sample  # noqa: F401 - the fixture

pytestmark = pytest.mark.kubernetes

EP = "my-endpoint"
REPLICAS = 2  # more than one router replica, however the provider is asked for them (see below)


def _router_pods(cluster: Cluster, namespace: str) -> list[str]:
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", f"{m.ROLE}=router,{m.ENDPOINT}={EP}",
                                      "-o", "json").stdout)["items"]
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])]
    return sorted(p["metadata"]["name"] for p in ready)


def _score(port: int, key: str, body: bytes, n: int) -> None:
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/score", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:300]
        resp.read()
        conn.close()


def test_a_window_reads_every_router_replica(sample: tuple[Recon, int], cluster: Cluster,  # noqa: F811
                                             namespace: str, tmp_path: Path) -> None:
    recon, _ = sample
    endpoint = recon.root / "kubernetes-endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    config = yaml.safe_load((recon.root / "recon.yaml").read_text())
    # router_replicas, once the provider has it, asks for the replicas; until then the router's
    # Deployment is scaled by hand (nothing applies it again before the window is read)
    by_setting = "router_replicas" in KNOWN
    if by_setting:
        config["provider"]["router_replicas"] = REPLICAS
        (recon.root / "recon.yaml").write_text(yaml.safe_dump(config))
    recon("apply", "--auto-approve")
    if not by_setting:
        cluster.kubectl("-n", namespace, "scale", "deployment", m.router_name(EP), f"--replicas={REPLICAS}")
    pods = wait_until(lambda: (found := _router_pods(cluster, namespace)) and len(found) == REPLICAS and found,
                      120, f"{REPLICAS} ready router pods")
    settings: dict[str, Any] = {k: v for k, v in config["provider"].items() if k != "kind"}
    context = ProviderContext(project_root=recon.root, state_dir=recon.root / ".recon", cache_dir=tmp_path / "cache",
                              workspace=config["workspace"])
    provider = KubernetesProvider(settings, context)
    recorded = json.loads(recon("state", "pull").stdout)["resources"][f"endpoint.{EP}"]
    request = ApplyRequest(f"endpoint.{EP}", "endpoint", EP, dict(recorded["attributes"]), None)
    key = json.loads(recon("keys", EP).stdout)["primaryKey"]
    body = (recon.root / "sample-request.json").read_bytes()

    mark = provider.open_window(request)
    assert sorted(mark["replicas"]) == pods and all(mark["replicas"].values())  # each replica's counters
    sent = {}
    for n, pod in enumerate(pods):  # a different number to each replica: 7, 11
        port = free_port()
        forward = PortForward(cluster, namespace, "", port, target=(f"pod/{pod}", m.ROUTER_PORT))
        try:
            sent[pod] = 7 + 4 * n
            _score(port, key, body, sent[pod])
        finally:
            forward.close()
    stats = provider.close_window(request, mark)
    assert stats.source == f"router /-/metrics x{REPLICAS} replicas"
    blue = [s for s in stats.series if s.deployment == "blue" and s.traffic == "live"]
    assert sum(s.requests for s in blue) == sum(sent.values()) == 18  # neither replica's count alone
    assert sum(s.errors_5xx + s.timeouts + s.connect_failures for s in blue) == 0
