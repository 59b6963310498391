"""Warm starts on Docker when ``recon apply`` is SIGKILLed during a rolling update, through the CLI:
once its pod is up but nothing is forked yet, and once batch 2's instances are forked but not
ready. Each time the plan made afterwards has work to do, one apply converges (no drift, the
recorded instances are exactly what runs), and no pod or container is left that nothing records.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker.engine import labelled_containers, require_engine
from tests.e2e.test_docker_drift import applied_warm
from tests.e2e.test_local_resilience import _set_blue

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BLUE = "deployment.my-endpoint.blue"


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def _holders(recon: Any) -> set[str]:
    instances = recon.state()["resources"][BLUE]["outputs"]["instances"]
    return {str(i.get("pod") or i["name"]) for i in instances}


def _present(state_dir: Path) -> set[str]:
    return {c.name for c in labelled_containers(state_dir) if c.labels.get("recon.role") in ("instance", "pod")}


def _converges(recon: Any, state_dir: Path, count: int) -> None:
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 2, "the killed rollout is pending work"
    recon("apply", "--auto-approve")
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 0
    assert recon("drift", check=False).returncode == 0
    assert len(recon.state()["resources"][BLUE]["outputs"]["instances"]) == count
    deadline = time.monotonic() + 15
    while _present(state_dir) != _holders(recon) and time.monotonic() < deadline:
        time.sleep(0.2)  # a pod whose last instance was stopped ends by itself
    assert _present(state_dir) == _holders(recon), (_present(state_dir), _holders(recon))


def test_apply_killed_mid_warm_rollout_converges_with_nothing_stray(sample_project, make_recon) -> None:
    root, recon, state_dir = applied_warm(sample_project, make_recon)

    for release, point in (("v2", f"pod.started@{BLUE}"), ("v3", f"instances.started@{BLUE}#2")):
        _set_blue(root, count=3, version=release)
        killed = dataclasses.replace(recon, env={**recon.env, "RECON_CRASH_AT": point})
        proc = killed("apply", "--auto-approve", check=False)
        assert proc.returncode == -9, (point, proc.stdout, proc.stderr)
        _converges(recon, state_dir, 3)
        releases = {c.attrs["Config"]["Env"].count(f"RELEASE={release}") for c in labelled_containers(state_dir)
                    if c.labels.get("recon.role") in ("instance", "pod")}
        assert releases == {1}, f"{point}: every instance runs {release}"

    recon("destroy", "--auto-approve")
    assert not labelled_containers(state_dir), "destroy leaves no container"
