"""Guarded rollouts on the local provider: real processes, the router's real /-/metrics, under load
(the sequence and what it checks: tests/e2e/gates.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gates import GatedProject, run_gated_rollouts

pytestmark = pytest.mark.slow

LOCAL_YAML = "workspace: gates\nprovider:\n  kind: local\n  reuse_host_packages: true\n"


def test_local_gates_judge_every_step_and_roll_back_under_load(
    tmp_path: Path, make_recon: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    project = GatedProject(root, make_recon(root), LOCAL_YAML, "local/py-base:bookworm")
    measured = run_gated_rollouts(project)
    with capsys.disabled():
        print("\nguarded rollouts on local:", json.dumps(measured, indent=1))
