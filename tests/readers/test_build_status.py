"""The plan readers' build state, as .ci/setup-plan-readers.sh reports it and tests/readers waits on it
(no build needed: a cache folder of the test's own)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.readers import build


def status(cache: Path) -> str:
    env = {**os.environ, "RECON_READERS_CACHE": str(cache)}
    done = subprocess.run(["bash", str(build.SETUP), "status"], capture_output=True, text=True, env=env, timeout=60)
    return done.stdout.strip()


def stamp() -> str:
    src = build.ROOT / "tests" / "readers" / "tfjson"
    data = b"".join((src / name).read_bytes() for name in ("main.go", "go.mod", "go.sum"))
    done = subprocess.run(["sha256sum"], input=data, capture_output=True, timeout=60, check=True)
    return done.stdout.decode()[:16]


def test_status_follows_the_binaries_and_the_readers_source(tmp_path: Path) -> None:
    assert status(tmp_path) == "absent"
    (tmp_path / "build.status").write_text("failed\n")
    assert status(tmp_path) == "failed"
    (tmp_path / "build.status").write_text("running 999999999\n")  # no such process: it died
    assert status(tmp_path) == "failed"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("planreader", "opa"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "opa.version").write_text("v1.22.4\n")
    (bin_dir / "planreader.stamp").write_text(stamp() + "\n")
    assert status(tmp_path) == "ok"
    (bin_dir / "planreader.stamp").write_text("0123456789abcdef\n")  # built from another source
    (tmp_path / "build.status").write_text("ok\n")
    assert status(tmp_path) == "absent"


def test_a_failed_build_fails_the_readers_tests_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "build.status").write_text("failed\n")
    (tmp_path / "build.log").write_text("go: github.com/open-policy-agent/opa@v1.22.4: reading proxy: 502\n")
    monkeypatch.setenv("RECON_READERS_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "CACHE", tmp_path)
    with pytest.raises(pytest.fail.Exception) as info:
        build.wait_for_binaries()
    assert "build failed" in str(info.value) and "reading proxy: 502" in str(info.value)


def test_a_build_that_would_miss_the_pytest_limit_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for the build's process
    try:
        (tmp_path / "build.status").write_text(f"running {sleeper.pid}\n")
        (tmp_path / "build.log").write_text("[plan-readers 05:01:05] building opa v1.22.4\n")
        monkeypatch.setenv("RECON_READERS_CACHE", str(tmp_path))
        monkeypatch.setattr(build, "CACHE", tmp_path)
        monkeypatch.setenv("RECON_PYTEST_DEADLINE", str(time.time() + build.TESTS_NEED - 1))
        with pytest.raises(pytest.fail.Exception) as info:
            build.wait_for_binaries()
        assert "pytest limit" in str(info.value) and "building opa" in str(info.value)
    finally:
        sleeper.kill()
        sleeper.wait()
