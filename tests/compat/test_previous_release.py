"""A state file and a saved plan written by the previous release (0.1.0, before the layout change)
still load, render and apply. The fixture is the safe-rollout project at step 03 applied on the fake
provider, with step 05's endpoint (traffic 90/10) planned into ``recorded/plan.bin``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "previous_release"


def _project(tmp_path: Path) -> Path:
    shutil.copytree(HERE, tmp_path / "release", ignore=shutil.ignore_patterns("recorded"))
    project = tmp_path / "release" / "project"
    dot = project / ".recon"
    dot.mkdir()
    shutil.copy(HERE / "recorded" / "state.json", dot / "state.json")
    shutil.copy(HERE / "recorded" / "fake-world.json", dot / "fake-world.json")
    shutil.copy(HERE / "recorded" / "plan.bin", project / "plan.bin")
    return project


def _recon(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "-C", str(project), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=project,
    )


def test_state_file_of_previous_release_lists_its_resources(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _recon(project, "state", "list")
    assert done.returncode == 0, done.stderr
    assert "deployment.my-endpoint.green" in done.stdout
    assert "endpoint.my-endpoint" in done.stdout
    assert len(done.stdout.split()) == 6


def test_saved_plan_of_previous_release_renders(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _recon(project, "show", "plan.bin", "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    recorded = json.loads((HERE / "recorded" / "plan.bin").read_text())
    assert plan["desired_digest"] == recorded["desired_digest"]
    assert plan["serial"] == recorded["serial"] == 7
    changed = [c["address"] for c in plan["resource_changes"] if c["change"]["actions"] != ["no-op"]]
    assert changed == ["endpoint.my-endpoint"]


def test_saved_plan_of_previous_release_applies_and_converges(tmp_path: Path) -> None:
    project = _project(tmp_path)
    # The new release computes the same desired digest from the same files: the plan is not stale.
    done = _recon(project, "apply", "plan.bin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 changed" in done.stdout
    world = json.loads((project / ".recon" / "fake-world.json").read_text())
    endpoint = world["objects"]["endpoint.my-endpoint"]
    assert endpoint["traffic"] == {"blue": 90, "green": 10}
    again = _recon(project, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout
