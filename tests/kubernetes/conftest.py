"""A real Kubernetes cluster for the tests of providers/kubernetes, built and started by
.ci/setup-kubernetes.sh: etcd, kube-apiserver, controller-manager and scheduler on 127.0.0.1, kwok
nodes (simulated kubelets: pods become Running, nothing runs) and one real node (containerd + kubelet)
whose pods run processes.

- The binaries are built once per machine (cold: about 22 minutes on 2 cores). .ci/test.sh starts
  that build in the background before anything else; ``cluster`` waits for it, failing with the
  build log's last lines if it failed, then brings the cluster up once per session (``up-real`` keeps a
  cluster another session runs) and down at the end when no other session uses it.
- The Kubernetes tests are moved to the end of the session, so the build has the rest of the suite's
  run time to finish.
- Each test gets a namespace of its own (``namespace``), deleted after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.kubernetes.cluster import Cluster, get_cluster, prepare, stop_cluster

__all__ = ["Cluster", "KWOK_SETTINGS", "wait_until"]
KWOK_SETTINGS: dict[str, Any] = {
    "node_selector": {"type": "kwok"},
    "tolerations": [{"key": "recon-test/kwok", "operator": "Exists", "effect": "NoSchedule"}],
    "router_reload_check": False,  # kwok pods run nothing: there is no router to ask
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kubernetes tests last (wherever they are: tests/contract has a kubernetes parameter): the cold
    build runs in the background while the others run."""
    items.sort(key=lambda item: item.get_closest_marker("kubernetes") is not None)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Before the first Kubernetes test, outside its timeout (this wrapper runs before pytest-timeout's
    arms it): wait for the build and bring the cluster up, saying so on the terminal."""
    if item.get_closest_marker("kubernetes") is not None:
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")

        def say(line: str) -> None:
            if reporter is not None:
                reporter.write_line(f"[kubernetes] {line}")

        prepare(say)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_cluster()


@pytest.fixture
def cluster() -> Cluster:
    return get_cluster()


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


def kubernetes_contract_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Provider settings for the contract suite (tests/contract): kwok nodes, a namespace of its own
    (deleted after the test)."""
    cluster = get_cluster()
    name = f"recon-contract-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    request.addfinalizer(lambda: cluster.kubectl("delete", "namespace", name, "--wait=false", check=False))
    return {"kubeconfig": str(cluster.kubeconfig), "namespace": name, **KWOK_SETTINGS}
