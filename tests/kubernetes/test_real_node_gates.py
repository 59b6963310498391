"""Guarded rollouts on the test cluster's real node (containerd + kubelet: pods that run the router
and the scoring hosts in their network namespaces), judged by the router's real ``/-/metrics`` read
through the API server's pod proxy, under load: the same sequence as on local and docker
(tests/e2e/gates.py), with clients scoring through ``kubectl port-forward`` to the router's Service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import make_recon, recon_env  # noqa: F401 - fixtures of the e2e folder
from tests.e2e.gates import GatedProject, Timed, run_gated_rollouts
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.test_real_node import REAL_IMAGES, PortForward, free_port

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

ROUTER_SERVICE = "gate-ep-router"


class KubernetesGatedProject(GatedProject):
    """The gated project on kubernetes: from the first apply on, a port-forward to the router's
    Service on the port the provider's ``scoring_host`` names (clients score through it)."""

    cluster: Cluster
    namespace: str
    port: int
    forward: PortForward | None = None

    def apply(self, timeout: float = 900) -> Timed:
        done = super().apply(timeout)
        if self.forward is None:
            self.forward = PortForward(self.cluster, self.namespace, ROUTER_SERVICE, self.port)
        return done

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()


@pytest.mark.timeout(1500)
def test_kubernetes_gates_judge_every_step_and_roll_back_under_load(
    tmp_path: Path, make_recon: Any, cluster: Cluster, namespace: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    port = free_port()
    provider = {
        "kind": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "namespace": namespace,
        "image_overrides": REAL_IMAGES, "image_pull_policy": "Never", "scoring_host": f"127.0.0.1:{port}",
        "rollout_timeout_seconds": 180,
        "catalog_resources": False,  # Standard_DS3_v2's 4 cores would not fit the 2-core test node
    }
    provider_yaml = yaml.safe_dump({"workspace": "gates", "provider": provider})
    project = KubernetesGatedProject(root, make_recon(root), provider_yaml, "local/python:3.11")
    project.cluster, project.namespace, project.port = cluster, namespace, port
    try:
        measured = run_gated_rollouts(project)
    except AssertionError:
        with capsys.disabled():
            print("\nthe last apply said:\n" + (project.log[-1] if project.log else "(nothing)"))
        raise
    finally:
        project.close()
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/role=router",
                                      "-o", "json").stdout)["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"localhost"}  # the real node, not kwok
    with capsys.disabled():
        print("\nguarded rollouts on kubernetes (real node):", json.dumps(measured, indent=1))
