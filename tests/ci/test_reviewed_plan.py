"""Reviewed-plan safety and CI-friendly output, through the real click CLI.

- ``recon apply --expect-digest`` refuses a plan that changed since review and applies the reviewed one;
- the digest is the same wherever the project is checked out, and named by text, JSON and markdown;
- the markdown of a 5,000-resource plan fits a GitHub comment with its marker and a "left out" line;
- ``--lock-timeout`` waits for a lock held by another operation instead of failing at once.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.cli.registries import open_state_manager
from reconciler.plan.types import Action, Plan, ResourceChange
from reconciler.render.markdown import GITHUB_COMMENT_LIMIT

RECON_YAML = "workspace: ci-demo\nprovider: {kind: fake}\n"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def project(sample_project: Callable[..., Path]) -> Path:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    return root


def run(runner: CliRunner, root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["-C", str(root), *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def digest_of_saved(runner: CliRunner, root: Path, planfile: Path) -> str:
    code, out, err = run(runner, root, "show", str(planfile), "--format", "json")
    assert code == 0, err
    digest: str = json.loads(out)["plan_digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    return digest


def plan_digest(runner: CliRunner, root: Path, tmp_path: Path, name: str = "plan.bin") -> str:
    code, _, err = run(runner, root, "plan", "--out", str(tmp_path / name))
    assert code == 0, err
    return digest_of_saved(runner, root, tmp_path / name)


def recorded(root: Path) -> tuple[int, list[str]]:
    mgr = open_state_manager(root, {})
    try:
        state = mgr.read()
        return state.serial, sorted(state.resources)
    finally:
        mgr.close()


def test_expect_digest_refuses_a_changed_plan_and_applies_the_reviewed_one(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    reviewed = plan_digest(runner, project, tmp_path)
    # the configuration changes after review: the re-plan differs, and nothing is applied
    blue = project / "blue-deployment.yml"
    blue.write_text(blue.read_text().replace("instance_count: 1", "instance_count: 2"))
    code, out, err = run(runner, project, "apply", "--expect-digest", reviewed)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err
    assert f"expected {reviewed}" in errors[0]
    assert "the plan changed since it was reviewed; re-run plan and review it again" in errors[0]
    assert recorded(project) == (0, [])
    assert "Apply complete" not in out

    # reviewed again: the new digest applies, without a prompt (no terminal) and without --auto-approve
    new = plan_digest(runner, project, tmp_path, "plan2.bin")
    assert new != reviewed
    assert f"sha256:{new.removeprefix('sha256:')}" in errors[0]  # the message names the actual digest
    code, out, err = run(runner, project, "apply", "--expect-digest", new.removeprefix("sha256:"))
    assert code == 0, err
    assert "Apply complete! Resources: 4 added" in out
    serial, resources = recorded(project)
    assert serial > 0 and "deployment.my-endpoint.blue" in resources


def test_expect_digest_checks_a_saved_plan_too(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    reviewed = plan_digest(runner, project, tmp_path)
    other = "sha256:" + "0" * 64
    code, _, err = run(runner, project, "apply", str(tmp_path / "plan.bin"), "--expect-digest", other)
    assert code == 1 and "plan digest mismatch" in err and f"the saved plan {tmp_path / 'plan.bin'}" in err
    assert recorded(project) == (0, [])
    code, _, err = run(runner, project, "apply", str(tmp_path / "plan.bin"), "--expect-digest", reviewed)
    assert code == 0, err


def test_expect_digest_rejects_what_is_not_a_digest(runner: CliRunner, project: Path) -> None:
    code, _, err = run(runner, project, "apply", "--expect-digest", "sha256:1234")
    assert code == 1 and "is not a plan digest" in err  # a usage error: 1, never 2 ("changes")
    assert recorded(project) == (0, [])


def test_digest_is_the_same_from_two_runs_and_two_checkouts(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    first = plan_digest(runner, project, tmp_path, "a.bin")
    again = plan_digest(runner, project, tmp_path, "b.bin")
    # another runner checks the same commit out somewhere else
    other = tmp_path / "runner2" / "checkout"
    shutil.copytree(project.parents[2], other, ignore=shutil.ignore_patterns(".recon"))
    elsewhere = plan_digest(runner, other / "online" / "managed" / "sample", tmp_path, "c.bin")
    assert first == again == elsewhere
    saved = (tmp_path / "a.bin").read_text()
    assert str(tmp_path) not in saved  # no absolute path that differs between checkouts
    assert json.loads(saved)["recon_version"]  # recorded for display, left out of the digest


def test_digest_is_named_in_text_json_and_markdown(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    digest = plan_digest(runner, project, tmp_path)
    code, text, _ = run(runner, project, "show", str(tmp_path / "plan.bin"))
    assert code == 0
    assert text.rstrip("\n").splitlines()[-1] == f"Plan digest: {digest}"
    assert text.rstrip("\n").splitlines()[-2].startswith("Plan: 4 to add")
    code, md, _ = run(runner, project, "show", str(tmp_path / "plan.bin"), "--format", "markdown")
    assert md.splitlines()[0] == f"<!-- recon:plan digest={digest} -->"
    code, text, _ = run(runner, project, "plan")
    assert f"Plan digest: {digest}" in text and "\x1b[" not in text


def _big_plan(n: int) -> Plan:
    changes = [
        ResourceChange(
            address=f"deployment.ep-{i // 2:04d}.d{i % 2}",
            type="deployment",
            name=f"d{i % 2}",
            provider="fake",
            action=Action.CREATE,
            after={"instance_type": "Standard_DS3_v2", "instance_count": 3, "model": f"model.m-{i}:1"},
            source=f"deployments/ep-{i // 2:04d}.yml:{1 + i % 2}",
        )
        for i in range(n)
    ]
    return Plan(
        workspace="big-ws", provider="fake", desired_digest="sha256:" + "1" * 64, resource_changes=changes
    )


def test_markdown_for_5000_resources_fits_a_github_comment(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    plan = _big_plan(5000)
    planfile = tmp_path / "big.bin"
    planfile.write_text(plan.model_dump_json())
    location = "artifact `recon-plan-pr-7` of https://ci.example/run/42"
    code, out, err = run(
        runner, project, "show", str(planfile), "--format", "markdown", "--plan-location", location
    )
    assert code == 0, err
    assert len(out) <= GITHUB_COMMENT_LIMIT  # what `> comment.md` writes, newline included
    assert out.splitlines()[0] == f"<!-- recon:plan digest={plan.digest} -->"
    left = [line for line in out.splitlines() if "were left out" in line]
    assert len(left) == 1
    assert "of 5,000 resources were left out" in left[0] and location in left[0]
    assert "**Plan: 5000 to add, 0 to change, 0 to destroy.**" in out
    assert "deployment.ep-0000.d0" in out  # the first resources are still listed


def test_lock_timeout_waits_for_the_lock(runner: CliRunner, project: Path) -> None:
    mgr = open_state_manager(project, {})
    held = mgr.lock("apply")
    held.__enter__()
    try:
        code, _, err = run(runner, project, "plan", "--lock-timeout", "0")
        assert code == 1
        assert [line for line in err.splitlines() if line.startswith("Error:")][0].count("locked") >= 1
        timer = threading.Timer(1.0, held.__exit__, (None, None, None))
        timer.start()
        code, out, err = run(runner, project, "plan", "--lock-timeout", "20", "--detailed-exitcode")
        timer.join()
        assert code == 2, err  # waited, then planned the changes
        assert "Plan: 4 to add" in out
    finally:
        mgr.close()
