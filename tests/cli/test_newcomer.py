"""What a newcomer (and a Terraform user) meets on the command line: the spellings they type, the
exit codes CI reads, and the messages of the usual mistakes. Azure's managed sample on the fake
provider (its world in ``.recon/fake-world.json``), through click's runner; the exit codes of
usage errors also through the real ``recon`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import apply_cmds, cli

BLUE = "deployment.my-endpoint.blue"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


def _configure(root: Path, **settings: Any) -> None:
    lines = ["workspace: newcomer", "provider:", "  kind: fake"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in settings.items()]
    (root / "recon.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def project(sample_project: Any) -> Path:
    root: Path = sample_project("blue-deployment.yml")
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text() + "traffic:\n  blue: 100\n")
    _configure(root)
    return root


def run(runner: CliRunner, root: Path | None, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, [*(["-C", str(root)] if root else []), *args], input=input, prog_name="recon")
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def recon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``recon`` process, as a CI job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"},
    )


# -- item 7: Terraform's spellings ------------------------------------------------------------------
def test_plan_apply_destroy_with_the_flags_terraform_users_type(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    planfile = tmp_path / "plan.bin"
    code, out, err = run(runner, project, "plan", f"-out={planfile}", "-detailed-exitcode", "-lock-timeout=30s")
    assert code == 2, out + err
    assert planfile.is_file() and f"Saved the plan to {planfile}." in err
    code, out, err = run(runner, project, "apply", "-parallelism=2", "-lock-timeout=1m", str(planfile))
    assert code == 0, out + err
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in out
    code, out, _ = run(runner, project, "plan", "-refresh=false", "-detailed-exitcode")
    assert code == 0 and "No changes." in out
    code, out, _ = run(runner, None, f"-chdir={project}", "plan", "-target", BLUE, "-detailed-exitcode")
    assert code == 0 and "No changes." in out
    code, out, err = run(runner, project, "destroy", "-auto-approve", "-lock-timeout=5")
    assert code == 0, out + err
    assert "Destroy complete! Resources: 0 added, 0 changed, 4 destroyed." in out
    code, out, err = run(runner, project, "apply", "-auto-approve=true", "-target=" + BLUE)
    assert code == 0, out + err
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in out


def test_help_lists_the_terraform_spellings_each_command_takes(runner: CliRunner) -> None:
    expected = {
        "plan": "-out=FILE, -detailed-exitcode, -target=ADDRESS, -lock-timeout=SECONDS, -refresh=false, -destroy",
        "apply": "-auto-approve, -target=ADDRESS, -parallelism=N, -lock-timeout=SECONDS",
        "destroy": "-auto-approve, -target=ADDRESS, -parallelism=N, -lock-timeout=SECONDS",
        "refresh": "-target=ADDRESS, -lock-timeout=SECONDS",
        "import-v1": "-out=DIR, -target=kubernetes|managed",  # the values the options' own lines name
        "show": "-json",
    }
    for command, spellings in expected.items():
        code, out, _ = run(runner, None, command, "--help")
        flat = " ".join(out.split())
        assert code == 0 and f"Terraform's spellings work too: {spellings}." in flat, (command, flat)


def test_help_names_gates_cost_budget_and_rollback_notes(runner: CliRunner) -> None:
    """What landed in the plan and apply is in their --help, in the README's words."""
    said = {
        ("plan",): ["rollout gates", "cost", "over recon.yaml's budget fails (exit 1)"],
        ("apply",): ["rollout: section", "rolled back when its gate fails"],
        ("state", "history"): ["its note", "rollback"],
        ("invoke",): ["--deployment NAME"],
    }
    for command, words in said.items():
        code, out, _ = run(runner, None, *command, "--help")
        flat = " ".join(out.split())
        assert code == 0 and all(w in flat for w in words), (command, flat)


def test_an_unknown_single_dash_option_says_how_recon_spells_options(runner: CliRunner, project: Path) -> None:
    code, out, err = run(runner, project, "apply", "-input=false", "-auto-approve")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "Error: No such option: -input (recon's options take two dashes, and this command has no --input)",
        "Usage: recon apply [OPTIONS] [PLANFILE]",
        "Try 'recon apply --help' for help.",
    ]
    code, _, err = run(runner, project, "apply", "-auto-approve=maybe")
    assert code == 1
    assert err.splitlines()[0] == (
        "Error: -auto-approve=maybe: -auto-approve is a flag; give it alone, or as -auto-approve=true or "
        "-auto-approve=false"
    )
    code, _, err = run(runner, project, "plan", "-lock-timeout=soon")
    assert code == 1 and "'soon' is not a duration (seconds, or e.g. 30s, 5m, 1h, 1m30s)" in err


# -- item 8: every error exits 1, usage errors too ---------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--detailed-exitcode", "--bogus"],
        ["plan", "--detailed-exitcode", "--format", "xml"],
        ["nosuchcommand"],
        ["apply", "--parallelism", "0"],
        ["logs"],
        ["state", "rm"],
    ],
)
def test_usage_errors_exit_1_in_a_real_process(project: Path, args: list[str]) -> None:
    done = recon(*args, cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("Error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_recon_alone_prints_its_help_and_exit_0(project: Path) -> None:
    done = recon(cwd=project)
    assert done.returncode == 0 and done.stdout.startswith("Usage: recon [OPTIONS] COMMAND [ARGS]...")


def test_exit_2_means_changes_only(project: Path) -> None:
    assert recon("plan", "--detailed-exitcode", cwd=project).returncode == 2
    assert recon("plan", "--detailed-exitcode", "--no-such-flag", cwd=project).returncode == 1


# -- item 9: an unknown target -----------------------------------------------------------------------
def test_an_unknown_target_is_an_error_naming_the_closest_addresses(runner: CliRunner, project: Path) -> None:
    code, out, err = run(runner, project, "plan", "--target", "deployment.my-endpoint.bleu")
    assert code == 1 and out == ""
    assert err == (
        "Error: --target deployment.my-endpoint.bleu: no resource has this address in the configuration or "
        f"the state; did you mean {BLUE}?\n"
    )
    assert not (project / ".recon" / "state.json").exists()


# -- item 11: destroy and refresh take --target and --lock-timeout --------------------------------------
def test_destroy_and_refresh_take_targets(runner: CliRunner, project: Path) -> None:
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    code, out, err = run(runner, project, "refresh", "--target", BLUE, "--lock-timeout", "10s")
    assert code == 0, out + err
    assert "No drift." in out
    code, _, err = run(runner, project, "refresh", "--target", "endpoint.my-endpont")
    assert code == 1
    assert err == (
        "Error: --target endpoint.my-endpont: the state records no resource with this address; "
        "did you mean endpoint.my-endpoint?\n"
    )
    # the deployment alone cannot go: its endpoint still routes to it
    code, out, err = run(runner, project, "destroy", "--auto-approve", "--target", BLUE)
    assert code == 1
    assert (
        f"Error: {BLUE} cannot be destroyed alone: endpoint.my-endpoint still sends it 100% traffic; move the "
        "traffic in the endpoint's file and apply first, or destroy the endpoint too (--target "
        "endpoint.my-endpoint)"
    ) in out
    # the endpoint takes the deployment that cannot exist without it; the assets stay
    code, out, err = run(runner, project, "destroy", "--auto-approve", "--target", "endpoint.my-endpoint")
    assert code == 0, out + err
    assert "Destroy complete! Resources: 0 added, 0 changed, 2 destroyed." in out
    code, out, _ = run(runner, project, "state", "list")
    assert [line.split(":")[0] for line in out.splitlines()] == ["environment.my-endpoint-blue", "model.my-endpoint-blue"]
    code, out, _ = run(runner, None, "destroy", "--help")
    assert "How many independent steps run at the same time." in " ".join(out.split())


# -- item 12: an empty folder -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"], ["destroy", "--auto-approve"], ["validate"]])
def test_an_empty_folder_has_no_configuration_files(runner: CliRunner, tmp_path: Path, command: list[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(runner, empty, *command)
    assert code == 1 and out == ""
    assert err == (
        f"Error: No configuration files found in {empty}: recon reads the Azure ML CLI v2 YAML files (*.yml, "
        "*.yaml) of endpoints, deployments, models and environments in a project folder and the folders "
        "under it; run recon there, or name it with -C DIR\n"
    )
    assert list(empty.iterdir()) == []  # not even .recon/


def test_a_folder_emptied_of_its_files_plans_the_deletion_of_what_the_state_holds(
    runner: CliRunner, project: Path
) -> None:
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    for path in project.rglob("*.yml"):
        path.unlink()
    code, out, err = run(runner, project, "plan")
    assert code == 0, out + err
    assert "Plan: 0 to add, 0 to change, 4 to destroy." in out


# -- item 13: recon.yaml's allowed fields -------------------------------------------------------------------
def test_an_unknown_recon_yaml_key_lists_every_allowed_field(runner: CliRunner, project: Path) -> None:
    (project / "recon.yaml").write_text("provider:\n  kind: fake\nlimit: {endpoints: 3}\n")
    code, _, err = run(runner, project, "validate")
    assert code == 1
    assert err.splitlines()[0] == "Error: recon.yaml:3: limit: unknown field 'limit' (did you mean 'limits'?)"
    (project / "recon.yaml").write_text("provider:\n  kind: fake\nbogus: 1\n")
    code, _, err = run(runner, project, "validate")
    assert err.splitlines()[0] == (
        "Error: recon.yaml:3: bogus: unknown field 'bogus' (allowed fields: budget, exclude, instance_types, "
        "limits, prices, pricing, provider, quota, rollout, state, workspace)"
    )
    (project / "recon.yaml").write_text("provider:\n  kind: fake\nlimits: {endpoints: 200}\n")
    assert run(runner, project, "validate")[0] == 0


# -- item 15: a file that is not a plan ------------------------------------------------------------------------
def test_show_of_a_file_that_is_not_a_plan_says_so_in_one_line(runner: CliRunner, project: Path) -> None:
    garbage = project / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 not json")
    code, out, err = run(runner, project, "show", str(garbage))
    assert code == 1 and out == ""
    assert err == f"Error: {garbage} is not a recon plan file; save one with: recon plan --out {garbage}\n"
    other = project / "other.json"
    other.write_text(json.dumps({"format_version": "9.0", "recon_version": "9.1.0", "resource_changes": [], "x": 1}))
    code, _, err = run(runner, project, "show", str(other))
    assert code == 1
    assert err == (
        f"Error: {other} is a recon plan of format 9.0 (written by recon 9.1.0) that this recon cannot read; "
        f"make the plan again with this version: recon plan --out {other}\n"
    )
    assert "validation error" not in err


# -- item 16: a hint that fits the command refused --------------------------------------------------------------
def test_a_destroy_whose_lock_is_broken_at_its_prompt_changes_nothing_and_says_run_destroy_again(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    broken: list[subprocess.CompletedProcess[str]] = []
    lock_ids: list[str] = []

    def confirm_while_someone_breaks_the_lock(auto_approve: bool, what: str) -> None:
        lock_ids.append(json.loads((project / ".recon" / "state.json.lock.info").read_text())["id"])
        broken.append(recon("-C", str(project), "force-unlock", lock_ids[0], "--force", "--force", cwd=project))

    monkeypatch.setattr(apply_cmds, "_confirm", confirm_while_someone_breaks_the_lock)
    code, out, err = run(runner, project, "destroy", "--auto-approve")
    assert broken[0].returncode == 0, broken[0].stderr
    assert code == 1
    assert err == (
        f"Error: the state lock of this destroy (lock ID {lock_ids[0]}) was broken by recon force-unlock while it "
        "ran; nothing was changed\n  run recon destroy again\n"
    )
    code, out, _ = run(runner, project, "plan", "--detailed-exitcode")
    assert code == 0, out  # nothing was destroyed


# -- item 18: the digest covers what will be done ------------------------------------------------------------------
def test_the_plan_digest_is_the_same_with_and_without_refresh(runner: CliRunner, project: Path) -> None:
    _configure(project, capacity={"cpus": 1, "memory_gb": 4})
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    (project / "blue-deployment.yml").write_text(
        (project / "blue-deployment.yml").read_text() + "environment_variables:\n  RELEASE: v2\n"
    )
    code, refreshed, _ = run(runner, project, "plan", "--format", "json")
    code, not_refreshed, _ = run(runner, project, "plan", "--no-refresh", "--format", "json")
    with_refresh, without = json.loads(refreshed), json.loads(not_refreshed)
    # the capacity warning comes with the refresh only; it is advice, not part of what is done
    assert any("vCPUs" in w["message"] for w in with_refresh["warnings"])
    assert not any("vCPUs" in w["message"] for w in without["warnings"])
    assert with_refresh["plan_digest"] == without["plan_digest"]
    code, out, _ = run(runner, project, "apply", "--auto-approve", "--expect-digest", without["plan_digest"])
    assert code == 0, out


def test_a_stale_plan_refused_inside_destroy_says_run_destroy_again() -> None:
    from reconciler.model.errors import StalePlanError

    with pytest.raises(StalePlanError) as err, apply_cmds.hints_for("destroy"):
        raise StalePlanError("plan is stale: the state has serial 9 (the plan was made at serial 5); run recon plan again")
    assert str(err.value) == (
        "plan is stale: the state has serial 9 (the plan was made at serial 5); run recon destroy again"
    )
    with pytest.raises(StalePlanError) as err, apply_cmds.hints_for("plan"):
        raise StalePlanError("plan is stale: ...; run recon plan again")
    assert str(err.value) == "plan is stale: ...; run recon plan again"


def test_yaml_files_that_declare_no_resource_are_an_error_but_destroying_nothing_is_not(
    runner: CliRunner, tmp_path: Path
) -> None:
    root = tmp_path / "conda-only"
    root.mkdir()
    (root / "recon.yaml").write_text("provider:\n  kind: fake\n")
    (root / "conda.yaml").write_text("name: env\ndependencies:\n  - python=3.11\n  - pip:\n      - numpy\n")
    code, out, err = run(runner, root, "plan")
    assert code == 1 and out == ""
    assert err.startswith(
        f"Error: No endpoint, deployment, model or environment found in {root}: recon reads the Azure ML"
    )
    code, out, err = run(runner, root, "destroy", "--auto-approve")
    assert code == 0, err
    assert "No changes. Your endpoints match the configuration." in out
