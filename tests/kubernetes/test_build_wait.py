"""Waiting for the cluster's build (no cluster needed): a build that cannot finish before .ci/test.sh's
pytest limit fails the Kubernetes tests at once, with its log, instead of running into the limit."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.kubernetes import cluster


def test_a_running_build_that_would_miss_the_pytest_limit_fails_with_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for the build's process
    try:
        (tmp_path / "build.status").write_text(f"running {sleeper.pid}\n")
        (tmp_path / "build.log").write_text("[k8s 16:56:04] building kube-apiserver\n")
        monkeypatch.setenv("RECON_K8S_CACHE", str(tmp_path))
        monkeypatch.setattr(cluster, "CACHE", tmp_path)
        monkeypatch.setenv("RECON_PYTEST_DEADLINE", str(time.time() + cluster.TESTS_NEED - 1))
        with pytest.raises(pytest.fail.Exception) as info:
            cluster.wait_for_build()
        text = str(info.value)
        assert "pytest limit" in text and "building kube-apiserver" in text
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_failed_build_fails_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "build.status").write_text("failed\n")
    (tmp_path / "build.log").write_text("go: module lookup disabled\n")
    monkeypatch.setenv("RECON_K8S_CACHE", str(tmp_path))
    monkeypatch.setattr(cluster, "CACHE", tmp_path)
    with pytest.raises(pytest.fail.Exception) as info:
        cluster.wait_for_build()
    assert "build failed" in str(info.value) and "module lookup disabled" in str(info.value)
