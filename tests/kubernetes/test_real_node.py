"""Azure's Kubernetes sample on the test cluster's real node (containerd + kubelet): pods that run
the router and the scoring host, an image imported into containerd (no registry), traffic only to
127.0.0.1 through ``kubectl port-forward``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.kubernetes.settings import DEFAULT_ROUTER_IMAGE
from tests.conftest import ONLINE
from tests.e2e.conftest import make_recon, recon_env  # noqa: F401,F811 - fixtures of the e2e folder
from tests.kubernetes.cluster import restricted_kubeconfig
from tests.kubernetes.conftest import Cluster, wait_until

pytestmark = pytest.mark.kubernetes

# Written by the test (the corpus has no scoring scripts); standard library only, as the image has
# nothing else: it reads the model file Azure's sample ships and answers with the rows' sums.
SCORE_PY = """\
import json
import os

model_size = None


def init():
    global model_size
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "sklearn_regression_model.pkl")
    model_size = os.path.getsize(path)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {"sums": [sum(r) for r in rows], "model_bytes": model_size, "release": os.environ.get("RELEASE", "")}
"""
AZURE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
# Every image the pods would run, mapped to the one imported into the real node's containerd (this
# machine's Python 3.11: the router's default image is python:<recon's minor>-slim).
REAL_IMAGES = {AZURE_IMAGE: "local/python:3.11", "python:3.12-slim": "local/python:3.11",
               DEFAULT_ROUTER_IMAGE: "local/python:3.11"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "NO_COLOR": "1"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args], capture_output=True,
                              text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode not in (0, 2):
            raise AssertionError(f"recon {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def sample(tmp_path: Path, cluster: Cluster, namespace: str) -> Iterator[tuple[Recon, int]]:
    """Azure's kubernetes sample (endpoint + blue) and model-1 with a test-written score.py; recon runs as
    the user ``recon`` with exactly the rules of examples/kubernetes/rbac.yaml."""
    online = tmp_path / "online"
    shutil.copytree(ONLINE / "model-1", online / "model-1")
    (online / "model-1" / "onlinescoring").mkdir()
    (online / "model-1" / "onlinescoring" / "score.py").write_text(SCORE_PY)
    root = online / "kubernetes"
    root.mkdir()
    for name in ("kubernetes-endpoint.yml", "kubernetes-blue-deployment.yml", "sample-request.json"):
        shutil.copy(ONLINE / "kubernetes" / name, root / name)
    port = free_port()
    kubeconfig = restricted_kubeconfig(cluster, namespace, tmp_path / "user")
    denied = cluster.kubectl("--kubeconfig", str(kubeconfig), "-n", "default", "get", "secrets", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr  # the rules are in force
    provider: dict[str, Any] = {
        "kind": "kubernetes", "kubeconfig": str(kubeconfig), "namespace": namespace,
        "image_overrides": REAL_IMAGES,
        "image_pull_policy": "Never", "scoring_host": f"127.0.0.1:{port}", "rollout_timeout_seconds": 180,
    }
    (root / "recon.yaml").write_text(yaml.safe_dump({"workspace": "k8s-sample", "provider": provider}))
    recon = Recon(root)
    try:
        yield recon, port
    finally:
        recon("destroy", "--auto-approve", check=False)


class PortForward:
    """``kubectl port-forward service/NAME PORT:80`` on 127.0.0.1 while in use (``target``: another
    object and its port, e.g. ``pod/NAME``, 8080)."""

    def __init__(self, cluster: Cluster, namespace: str, service: str, port: int,
                 target: tuple[str, int] | None = None) -> None:
        name, remote = target or (f"service/{service}", 80)
        self.proc = subprocess.Popen(["kubectl", "-n", namespace, "port-forward", "--address", "127.0.0.1",
                                      name, f"{port}:{remote}"], env=cluster.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.port = port

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 30, "the port-forward")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_azure_kubernetes_sample_answers_invoke(sample: tuple[Recon, int], cluster: Cluster,
                                                namespace: str) -> None:
    recon, port = sample
    endpoint = recon.root / "kubernetes-endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    recon("apply", "--auto-approve")
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"localhost"}  # the real node, not kwok
    assert all(p["status"]["phase"] == "Running" for p in pods)
    forward = PortForward(cluster, namespace, "my-endpoint-router", port)
    try:
        answer = recon("invoke", "my-endpoint", "--request-file", str(recon.root / "sample-request.json"))
        assert answer.returncode == 0, answer.stderr
        data = json.loads(answer.stdout)
        assert data["sums"] == [55, 55]
        size = (recon.root.parent / "model-1" / "model" / "sklearn_regression_model.pkl").stat().st_size
        assert data["model_bytes"] == size
        logs = recon("logs", "deployment.my-endpoint.blue", "--tail", "50")
        assert "ready: listening on" in logs.stdout
        # a version whose init() raises: the step fails with the pod's last log lines, the Deployment goes
        # back to the previous template and the old pod keeps answering
        before = json.loads(cluster.kubectl("-n", namespace, "get", "deployment", "my-endpoint-blue", "-o",
                                            "json").stdout)["spec"]["template"]
        score = recon.root.parent / "model-1" / "onlinescoring" / "score.py"
        score.write_text(SCORE_PY.replace("def init():\n", "def init():\n    raise RuntimeError('model file is corrupt')\n"))
        failed = recon("apply", "--auto-approve", check=False)
        said = failed.stdout + failed.stderr
        assert failed.returncode == 1 and "model file is corrupt" in said and "Traceback (most recent" in said
        assert "rolled my-endpoint-blue back to its previous template" in said
        after = json.loads(cluster.kubectl("-n", namespace, "get", "deployment", "my-endpoint-blue", "-o",
                                           "json").stdout)["spec"]["template"]
        assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
        again = recon("invoke", "my-endpoint", "--request-file", str(recon.root / "sample-request.json"))
        assert json.loads(again.stdout)["sums"] == [55, 55]
        assert recon("plan", "--detailed-exitcode").returncode == 2  # the change is still to be made
        score.write_text(SCORE_PY)
    finally:
        forward.close()
    drift = recon("drift")  # refresh, capacity, unmanaged objects: every read the rules must allow
    assert drift.returncode == 0, drift.stdout + drift.stderr
    recon("destroy", "--auto-approve")
    left = json.loads(cluster.kubectl("-n", namespace, "get", "pods,deployments,configmaps,secrets", "-l",
                                      "recon.io/managed=true", "-o", "json").stdout)["items"]
    assert left == []


# The managed sample's scoring script, in the standard library only (the image has no scikit-learn):
# one number per row, as the sample's model answers.
ROWS_SCORE_PY = """\
import json
import os


def init():
    assert os.listdir(os.environ["AZUREML_MODEL_DIR"]), "no model files"


def run(raw_data):
    return [float(sum(row)) for row in json.loads(raw_data)["data"]]
"""


class ForwardingRecon:
    """``recon`` for run_safe_rollout, with a port-forward to the router from the first apply on."""

    def __init__(self, recon: Any, cluster: Cluster, namespace: str, port: int) -> None:
        self.recon, self.cluster, self.namespace, self.port = recon, cluster, namespace, port
        self.forward: PortForward | None = None

    def __call__(self, *args: str, **kwargs: Any) -> Any:
        result = self.recon(*args, **kwargs)
        if args[:1] == ("apply",) and self.forward is None:
            self.forward = PortForward(self.cluster, self.namespace, "my-endpoint-router", self.port)
        return result

    def keys(self, endpoint: str) -> dict[str, str]:
        return dict(self.recon.keys(endpoint))

    def state(self) -> dict[str, object]:
        return dict(self.recon.state())

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()


def test_safe_rollout_sequence_under_load_on_kubernetes(sample_project: Any, make_recon: Any,  # noqa: F811
                                                        cluster: Cluster,
                                                        namespace: str) -> None:
    from tests.e2e.test_local_rollout import run_safe_rollout

    root = sample_project("blue-deployment.yml")
    for part in ("model-1", "model-2"):
        (root.parent.parent / part / "onlinescoring" / "score.py").write_text(ROWS_SCORE_PY)
    port = free_port()
    provider = {
        "kind": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "namespace": namespace,
        "image_overrides": REAL_IMAGES,
        "image_pull_policy": "Never", "scoring_host": f"127.0.0.1:{port}", "rollout_timeout_seconds": 180,
        "catalog_resources": False,  # Standard_DS3_v2's 4 cores would not fit the 2-core test node
    }
    (root / "recon.yaml").write_text(yaml.safe_dump({"workspace": "k8s-rollout", "provider": provider}))
    recon = ForwardingRecon(make_recon(root), cluster, namespace, port)
    try:
        run_safe_rollout(root, recon)
    finally:
        recon.close()
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "recon.io/deployment=blue",
                                      "-o", "json").stdout)["items"]
    assert pods == []
