"""The plan readers' binaries (planreader over hashicorp/terraform-json, and opa), built by
.ci/setup-plan-readers.sh in the background (.ci/test.sh starts it): wait for them, or fail with the
build's log."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "setup-plan-readers.sh"
CACHE = Path(os.environ.get("RECON_READERS_CACHE", "/var/cache/recon-plan-readers"))
BUILD_WAIT = float(os.environ.get("RECON_READERS_BUILD_WAIT", "2400"))
TESTS_NEED = 120.0  # what tests/readers take once the binaries are there, with room


def _status() -> str:
    proc = subprocess.run(["bash", str(SETUP), "status"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or "absent"


def _log_tail(n: int = 25) -> str:
    try:
        return "\n".join((CACHE / "build.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no build log)"


def _deadline() -> tuple[float, str]:
    deadline, why = time.monotonic() + BUILD_WAIT, f"within {BUILD_WAIT:.0f}s (RECON_READERS_BUILD_WAIT)"
    limit = os.environ.get("RECON_PYTEST_DEADLINE")
    if limit:
        left = float(limit) - time.time() - TESTS_NEED
        if time.monotonic() + left < deadline:
            deadline, why = time.monotonic() + left, "in time for tests/readers before .ci/test.sh's pytest limit"
    return deadline, why


def wait_for_binaries() -> Path:
    """The folder of ``planreader`` and ``opa`` once the build is done."""
    deadline, why = _deadline()
    absent_since: float | None = None
    while True:
        status = _status()
        if status == "ok":
            return CACHE / "bin"
        if status == "failed":
            pytest.fail(f"the plan readers' build failed ({CACHE}/build.log):\n{_log_tail()}", pytrace=False)
        if status == "absent":
            absent_since = absent_since or time.monotonic()
            if time.monotonic() - absent_since > 60:
                pytest.fail(f"no plan readers' build is running or done in {CACHE}: run `bash {SETUP} build` "
                            "(.ci/test.sh starts it in the background)", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"the plan readers' build did not finish {why}:\n{_log_tail()}", pytrace=False)
        time.sleep(5)


_bin: Path | None = None
_failed: str | None = None


def prepare() -> None:
    """Wait for the build once, outside any test's timeout; a failure is kept and reported by every
    test that asks for the binaries (``binaries``)."""
    global _bin, _failed
    if _bin is not None or _failed is not None:
        return
    try:
        _bin = wait_for_binaries()
    except pytest.fail.Exception as exc:
        _failed = str(exc)


def binaries() -> Path:
    prepare()
    if _failed is not None:
        pytest.fail(_failed, pytrace=False)
    assert _bin is not None
    return _bin
