"""The guarded rollout through the real CLI, on Azure's managed sample with the fake provider: a
failing version rolled back with its table, the history's note, and the next plan and drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli

ROLLOUT = "rollout:\n  analysis:\n    bake: 2s\n    min_requests: 20\n    max_error_rate: 1%\n"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


def run(runner: CliRunner, root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["-C", str(root), *args])
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result.exit_code, result.stdout, result.stderr


def blue(root: Path, count: int, env: dict[str, str]) -> None:
    path = root / "blue-deployment.yml"
    keep = [ln for ln in path.read_text().splitlines()
            if not ln.startswith(("instance_count:", "environment_variables:", "  "))]
    text = "\n".join(keep) + f"\ninstance_count: {count}\nenvironment_variables:\n"
    path.write_text(text + "".join(f'  {k}: "{v}"\n' for k, v in env.items()))


@pytest.fixture
def project(sample_project: Any) -> Path:
    root: Path = sample_project("blue-deployment.yml")
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text() + "traffic:\n  blue: 100\n")
    (root / "recon.yaml").write_text("provider:\n  kind: fake\n  window_requests: 200\n")
    return root


def test_a_failing_version_is_rolled_back_and_the_next_plan_shows_it_again(runner: CliRunner, project: Path) -> None:
    text = (project / "blue-deployment.yml").read_text()
    assert "instance_count" in text and "environment_variables" not in text  # what blue() rewrites
    blue(project, 2, {"RELEASE": "1"})
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    (project / "recon.yaml").write_text((project / "recon.yaml").read_text() + ROLLOUT)
    blue(project, 2, {"RELEASE": "2", "FAKE_ERROR_RATE": "0.3"})
    code, out, _ = run(runner, project, "plan")
    assert code == 0 and "batch 1/2: bake 2s, 5xx <= 1%, >= 20 requests" in out
    code, out, err = run(runner, project, "apply", "--auto-approve")
    assert code == 1
    assert "rollout failed: the batch gate failed after batch 1/2: error rate 30% (30/100) > 1%" in err
    assert "rolled back: 1 instance(s) to the previous configuration" in err
    table = [ln.strip() for ln in err.splitlines() if ln.startswith("    ")]
    assert table[0].split() == ["gate", "measured", "threshold", "result"]
    assert table[2].split()[:2] == ["error", "rate"] and table[2].endswith("FAILED")
    assert any(ln.startswith("window: 1s, 100 requests") for ln in table), table
    state = json.loads(run(runner, project, "state", "pull")[1])
    assert state["resources"]["deployment.my-endpoint.blue"]["attributes"]["environment_variables"] == {"RELEASE": "1"}
    history = run(runner, project, "state", "history")[1]
    assert "rollback of deployment.my-endpoint.blue: error rate failed (batch gate)" in history
    assert run(runner, project, "plan", "--detailed-exitcode")[0] == 2
    assert run(runner, project, "drift")[0] == 0


def test_a_bad_rollout_section_is_an_error_with_its_line(runner: CliRunner, project: Path) -> None:
    (project / "recon.yaml").write_text("provider:\n  kind: fake\nrollout:\n  traffic_steps: [10, 50]\n")
    code, _, err = run(runner, project, "plan")
    assert code == 1
    assert err.splitlines()[0].startswith("Error: recon.yaml:4: rollout.traffic_steps.1: the last step is 50%, not 100%")
