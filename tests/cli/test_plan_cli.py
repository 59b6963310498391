"""recon validate / plan / show / graph on real files (Azure's managed sample)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.cli.registries import open_state_manager
from reconciler.plan.types import Plan
from reconciler.state.document import State, StateResource


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def project(sample_project) -> Path:  # type: ignore[no-untyped-def]
    return sample_project("blue-deployment.yml")


def run(runner: CliRunner, root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["-C", str(root), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def record_plan_as_applied(root: Path, plan: Plan) -> None:
    """Write the state an apply of ``plan`` would leave behind (without running anything)."""
    mgr = open_state_manager(root, {})
    state = mgr.read()
    state.resources = {
        rc.address: StateResource(
            address=rc.address,
            type=rc.type,
            name=rc.name,
            provider=rc.provider,
            attributes=rc.after,
            depends_on=rc.depends_on,
        )
        for rc in plan.resource_changes
        if rc.after is not None
    }
    mgr.write(state)


def test_validate_ok(runner: CliRunner, project: Path) -> None:
    code, out, _ = run(runner, project, "validate")
    assert code == 0
    assert "Success" in out and "1 endpoint" in out and "1 deployment" in out


def test_validate_bad_file_exits_1_naming_the_file(runner: CliRunner, project: Path) -> None:
    (project / "blue-deployment.yml").write_text(
        (project / "blue-deployment.yml").read_text() + "instance_count: many\n"
    )
    code, _, err = run(runner, project, "validate")
    assert code == 1
    assert "blue-deployment.yml" in err


def test_plan_detailed_exitcode(runner: CliRunner, project: Path) -> None:
    code, out, _ = run(runner, project, "plan", "--no-refresh")
    assert code == 0
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in out
    assert "\x1b[" not in out  # not a terminal: no colour
    code, _, _ = run(runner, project, "plan", "--no-refresh", "--detailed-exitcode")
    assert code == 2


def test_plan_with_refresh_on_local_provider(runner: CliRunner, project: Path) -> None:
    code, out, _ = run(runner, project, "plan")
    assert code == 0 and "Plan: 4 to add" in out


def test_no_changes_after_apply_exits_0(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    code, _, _ = run(runner, project, "plan", "--no-refresh", "--out", str(tmp_path / "p.json"))
    assert code == 0
    record_plan_as_applied(project, Plan.model_validate_json((tmp_path / "p.json").read_text()))
    code, out, _ = run(runner, project, "plan", "--no-refresh", "--detailed-exitcode")
    assert code == 0, out
    assert "No changes" in out


def test_saved_plan_round_trips_and_shows(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    planfile = tmp_path / "plan.json"
    code, out, _ = run(runner, project, "plan", "--no-refresh", "--out", str(planfile))
    assert code == 0
    plan = Plan.model_validate_json(planfile.read_text())
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert plan.lineage is None and plan.serial == 0 and plan.desired_digest.startswith("sha256:")
    code, shown, _ = run(runner, project, "show", str(planfile))
    assert code == 0 and shown == out
    code, js, _ = run(runner, project, "show", str(planfile), "--format", "json")
    doc = json.loads(js)
    assert {rc["address"] for rc in doc["resource_changes"]} == {rc.address for rc in plan.resource_changes}
    code, md, _ = run(runner, project, "show", str(planfile), "--format", "markdown")
    assert code == 0 and "4 to add" in md


def test_show_rejects_a_file_that_is_not_a_plan(runner: CliRunner, tmp_path: Path, project: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    code, _, err = run(runner, project, "show", str(bad))
    assert code == 1 and "not a recon plan file" in err


def test_show_without_planfile_shows_the_state(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    code, out, _ = run(runner, project, "show")
    assert code == 0 and "empty" in out
    run(runner, project, "plan", "--no-refresh", "--out", str(tmp_path / "p.json"))
    record_plan_as_applied(project, Plan.model_validate_json((tmp_path / "p.json").read_text()))
    code, out, _ = run(runner, project, "show")
    assert code == 0 and "deployment.my-endpoint.blue" in out
    code, out, _ = run(runner, project, "show", "--format", "json")  # as `terraform show -json`
    doc = json.loads(out)
    assert (doc["format_version"], doc["serial"]) == ("1.0", 1)
    assert "deployment.my-endpoint.blue" in {r["address"] for r in doc["values"]["root_module"]["resources"]}
    code, same, _ = run(runner, project, "show", "-json")
    assert code == 0 and same == out
    code, pulled, _ = run(runner, project, "state", "pull")  # the state document itself
    assert State.model_validate_json(pulled).serial == 1


def test_show_json_of_a_plan_file_as_terraform_show_json(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    code, _, _ = run(runner, project, "plan", "--no-refresh", "-out", str(tmp_path / "p.plan"))
    assert code == 0
    code, out, _ = run(runner, project, "show", "-json", str(tmp_path / "p.plan"))
    doc = json.loads(out)
    assert code == 0 and (doc["format_version"], doc["recon_format_version"]) == ("1.2", "2.1")
    assert len(doc["planned_values"]["root_module"]["resources"]) == 4
    assert doc["timestamp"] and doc["timestamp"] == doc["created_at"]
    code, flag, _ = run(runner, project, "show", "--json", str(tmp_path / "p.plan"))
    code, fmt, _ = run(runner, project, "show", "--format", "json", str(tmp_path / "p.plan"))
    assert out == flag == fmt
    (tmp_path / "p.json").write_text(out)
    code, _, err = run(runner, project, "apply", str(tmp_path / "p.json"))
    assert code == 1 and "is recon's plan JSON (`recon show -json`), written for tools to read, not a saved plan" in err
    code, helptext, _ = run(runner, project, "show", "--help")
    assert "Terraform's spellings work too: -json." in " ".join(helptext.split())


def test_plan_with_quota_error_exits_1_and_saves_nothing(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    (project / "recon.yaml").write_text("quota:\n  standardDSv2Family: 4\n")
    planfile = tmp_path / "plan.json"
    code, out, err = run(
        runner, project, "plan", "--no-refresh", "--out", str(planfile), "--detailed-exitcode"
    )
    assert code == 1
    assert "deployment my-endpoint/blue needs 8 cores of standardDSv2Family" in out
    assert "limit 4" in out and not planfile.exists()
    assert "Plan: 4 to add" in out  # the plan is printed, then the errors
    code, js, err = run(runner, project, "plan", "--no-refresh", "--format", "json")
    assert code == 1 and "needs 8 cores" in err


def test_plan_target(runner: CliRunner, sample_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = sample_project("blue-deployment.yml", "green-deployment.yml")
    planfile = tmp_path / "p.json"
    code, out, _ = run(
        runner, root, "plan", "--no-refresh", "--target", "endpoint.my-endpoint", "--out", str(planfile)
    )
    assert code == 0, out
    plan = Plan.model_validate_json(planfile.read_text())
    assert plan.targets == ["endpoint.my-endpoint"]
    assert "partial" in out


def test_plan_refuses_while_the_state_is_locked(runner: CliRunner, project: Path) -> None:
    mgr = open_state_manager(project, {})
    with mgr.lock("apply"):
        code, _, err = run(runner, project, "plan", "--no-refresh")
    assert code == 1 and "lock" in err.lower() and "apply" in err


@pytest.mark.parametrize(("fmt", "marker"), [("dot", "digraph"), ("mermaid", "flowchart")])
def test_graph(runner: CliRunner, project: Path, fmt: str, marker: str) -> None:
    code, out, _ = run(runner, project, "graph", "--format", fmt)
    assert code == 0 and marker in out
    assert "deployment.my-endpoint.blue" in out and "endpoint.my-endpoint" in out
