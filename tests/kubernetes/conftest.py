"""A real Kubernetes cluster for the tests of providers/kubernetes, built and started by
.ci/setup-kubernetes.sh: etcd, kube-apiserver, controller-manager and scheduler on 127.0.0.1, kwok
nodes (simulated kubelets: pods become Running, nothing runs) and one real node (containerd + kubelet)
whose pods run processes.

- The binaries are built once per machine (cold: about 17 minutes on 2 cores). .ci/test.sh starts
  that build in the background before anything else; ``cluster`` waits for it, failing with the
  build log's last lines if it failed, then brings the cluster up once per session and down at the end.
- The Kubernetes tests are moved to the end of the session, so the build has the rest of the suite's
  run time to finish.
- Each test gets a namespace of its own (``namespace``), deleted after it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "setup-kubernetes.sh"
CACHE = Path(os.environ.get("RECON_K8S_CACHE", "/var/cache/recon-k8s"))
BUILD_WAIT = float(os.environ.get("RECON_K8S_BUILD_WAIT", "2400"))
KWOK_SETTINGS: dict[str, Any] = {
    "node_selector": {"type": "kwok"},
    "tolerations": [{"key": "recon-test/kwok", "operator": "Exists", "effect": "NoSchedule"}],
    "router_reload_check": False,  # kwok pods run nothing: there is no router to ask
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kubernetes tests last: the cold build runs in the background while the others run."""
    items.sort(key=lambda item: item.get_closest_marker("kubernetes") is not None)


def _status() -> str:
    proc = subprocess.run(["bash", str(SETUP), "status"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or "absent"


def _log_tail(n: int = 25) -> str:
    try:
        return "\n".join((CACHE / "build.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no build log)"


def wait_for_build() -> None:
    """Until setup-kubernetes.sh's build is done; a failed or absent build fails with its log."""
    deadline = time.monotonic() + BUILD_WAIT
    absent_since: float | None = None
    while True:
        status = _status()
        if status == "ok":
            return
        if status == "failed":
            pytest.fail(f"the Kubernetes build failed ({CACHE}/build.log):\n{_log_tail()}", pytrace=False)
        if status == "absent":
            absent_since = absent_since or time.monotonic()
            if time.monotonic() - absent_since > 60:
                pytest.fail(f"no Kubernetes build is running or done in {CACHE}: run `bash {SETUP} build` "
                            "(.ci/test.sh starts it in the background)", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"the Kubernetes build did not finish within {BUILD_WAIT:.0f}s:\n{_log_tail()}",
                        pytrace=False)
        time.sleep(5)


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    env: dict[str, str]

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=timeout,
                              input=input_text)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    wait_for_build()
    env = {**os.environ, "PATH": f"{CACHE / 'bin'}:{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(SETUP), "down"], env=env, capture_output=True, timeout=300)
    proc = subprocess.run(["bash", str(SETUP), "up-real"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        subprocess.run(["bash", str(SETUP), "down"], env=env, capture_output=True, timeout=300)
        pytest.fail(f"setup-kubernetes.sh up-real failed:\n{proc.stderr[-4000:]}", pytrace=False)
    kubeconfig = CACHE / "run" / "admin.kubeconfig"
    if os.environ.get("RECON_K8S_RUN"):
        kubeconfig = Path(os.environ["RECON_K8S_RUN"]) / "admin.kubeconfig"
    env["KUBECONFIG"] = str(kubeconfig)
    try:
        yield Cluster(kubeconfig, env)
    finally:
        subprocess.run(["bash", str(SETUP), "down"], env=env, capture_output=True, timeout=300)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"recon-test-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kwok_settings(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return {"kubeconfig": str(cluster.kubeconfig), "namespace": namespace, **KWOK_SETTINGS}


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
