"""Guarded rollouts on the Docker provider: containers of a real engine, the router's real
/-/metrics, under load (the twin of test_local_gates.py; the sequence: tests/e2e/gates.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.docker.engine import remove_labelled, require_engine
from tests.e2e.gates import GatedProject, run_gated_rollouts

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKER_YAML = ("workspace: gates\nprovider:\n  kind: docker\n  keep_images: true\n"
               "  router_image: local/py-base:bookworm\n")


def test_docker_gates_judge_every_step_and_roll_back_under_load(
    tmp_path: Path, make_recon: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    require_engine()
    root = tmp_path / "project"
    root.mkdir()
    project = GatedProject(root, make_recon(root), DOCKER_YAML, "local/py-base:bookworm")
    try:
        measured = run_gated_rollouts(project)
    finally:
        remove_labelled((root / ".recon").resolve())
    with capsys.disabled():
        print("\nguarded rollouts on docker:", json.dumps(measured, indent=1))
