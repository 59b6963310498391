"""The example CI files are valid: parsed, checked against the keys the workflow schemas allow, and
every recon command line in them parsed by the real click CLI (the subcommand and options exist).

Key sets come from SchemaStore's github-workflow.json (workflow root, ``on`` events and their
filters, normal jobs, steps, concurrency) and from GitLab's ci.json (global keywords, job keywords,
artifacts, rules).
"""

from __future__ import annotations

import re
from typing import Any

import click
import pytest

from reconciler.cli import cli
from tests.ci import workflows as wf

# -- GitHub (schemastore.org/github-workflow.json) ----------------------------------------------
GH_ROOT = {"name", "run-name", "on", "env", "defaults", "concurrency", "jobs", "permissions"}
GH_REQUIRED = {"on", "jobs"}
GH_EVENTS = {
    "branch_protection_rule", "check_run", "check_suite", "create", "delete", "deployment",
    "deployment_status", "discussion", "discussion_comment", "fork", "gollum", "issue_comment",
    "issues", "label", "merge_group", "milestone", "page_build", "project", "project_card",
    "project_column", "public", "pull_request", "pull_request_review", "pull_request_review_comment",
    "pull_request_target", "push", "registry_package", "release", "repository_dispatch", "schedule",
    "status", "watch", "workflow_call", "workflow_dispatch", "workflow_run",
}  # fmt: skip
GH_EVENT_KEYS = {
    "pull_request": {"types", "branches", "branches-ignore", "paths", "paths-ignore"},
    "push": {"branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore"},
    "workflow_dispatch": {"inputs"},
}
GH_PR_TYPES = {
    "assigned", "unassigned", "labeled", "unlabeled", "opened", "edited", "closed", "reopened",
    "synchronize", "converted_to_draft", "ready_for_review", "locked", "unlocked",
    "review_requested", "review_request_removed", "auto_merge_enabled", "auto_merge_disabled",
    "milestoned", "demilestoned", "enqueued", "dequeued",
}  # fmt: skip
GH_DISPATCH_INPUT = {"description", "deprecationMessage", "required", "default", "type", "options"}
GH_JOB = {
    "name", "needs", "permissions", "runs-on", "environment", "outputs", "env", "defaults", "if",
    "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services",
    "concurrency", "snapshot",
}  # fmt: skip
GH_STEP = {
    "id", "if", "name", "uses", "run", "working-directory", "shell", "with", "env",
    "continue-on-error", "timeout-minutes",
}  # fmt: skip
GH_CONCURRENCY = {"group", "cancel-in-progress"}
GH_PERMISSIONS = {
    "actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token",
    "issues", "models", "packages", "pages", "pull-requests", "repository-projects",
    "security-events", "statuses",
}  # fmt: skip
# the inputs each action used here accepts (from their action.yml)
ACTION_INPUTS = {
    "actions/checkout": {"ref", "repository", "fetch-depth", "token", "path"},
    "actions/setup-python": {"python-version", "cache"},
    "actions/upload-artifact": {"name", "path", "retention-days", "if-no-files-found", "overwrite"},
    "actions/github-script": {"script", "github-token", "result-encoding"},
    "dawidd6/action-download-artifact": {
        "workflow", "pr", "name", "path", "workflow_conclusion", "commit", "branch", "run_id",
        "github_token", "if_no_artifact_found",
    },
}  # fmt: skip

# -- GitLab (gitlab.com/.../ci.json) -------------------------------------------------------------
GL_GLOBAL = {
    "default", "include", "stages", "variables", "workflow", "image", "services", "cache",
    "before_script", "after_script", "spec",
}  # fmt: skip
GL_JOB = {
    "after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
    "dast_configuration", "dependencies", "environment", "except", "extends", "hooks", "id_tokens",
    "identity", "image", "inherit", "interruptible", "manual_confirmation", "needs", "only", "pages",
    "parallel", "release", "resource_group", "retry", "rules", "run", "script", "secrets",
    "services", "stage", "tags", "timeout", "trigger", "variables", "when",
}  # fmt: skip
GL_DEFAULT = {
    "after_script", "artifacts", "before_script", "cache", "hooks", "id_tokens", "image",
    "interruptible", "retry", "services", "tags", "timeout",
}  # fmt: skip
GL_ARTIFACTS = {
    "paths",
    "exclude",
    "expire_in",
    "expose_as",
    "name",
    "public",
    "access",
    "reports",
    "untracked",
    "when",
}
GL_RULE = {
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "variables",
    "needs",
    "start_in",
    "interruptible",
}
GL_WORKFLOW = {"name", "rules", "auto_cancel"}


def _unknown(keys: Any, allowed: set[str]) -> list[str]:
    return sorted(str(k) for k in keys if k not in allowed)


def check_recon_command(argv: list[str]) -> str:
    """Parse ``recon ARGV`` with the real CLI, as ``--help`` would see it; returns the subcommand."""
    ctx = cli.make_context("recon", list(argv), resilient_parsing=False)
    with ctx:
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]  # click 9: in ctx.args only
        name, command, rest = cli.resolve_command(ctx, words)
        assert command is not None and name is not None
        command.make_context(name, rest, parent=ctx).close()
    return name


@pytest.mark.parametrize("name", wf.WORKFLOWS)
def test_github_workflow_uses_only_schema_keys(name: str) -> None:
    doc = wf.github_workflow(name)
    assert set(doc) >= GH_REQUIRED and not _unknown(doc, GH_ROOT)
    on = doc["on"]
    assert isinstance(on, dict) and not _unknown(on, GH_EVENTS)
    for event, spec in on.items():
        if isinstance(spec, dict):
            assert not _unknown(spec, GH_EVENT_KEYS.get(event, set())), (name, event)
            assert not _unknown(spec.get("types", []), GH_PR_TYPES)
            for inp in (spec.get("inputs") or {}).values():
                assert not _unknown(inp, GH_DISPATCH_INPUT)
        elif event == "schedule":
            assert all(set(s) == {"cron"} and len(s["cron"].split()) == 5 for s in spec)
    assert not _unknown(doc["concurrency"], GH_CONCURRENCY)
    assert not _unknown(doc.get("permissions", {}), GH_PERMISSIONS)
    assert all(v in ("read", "write", "none") for v in doc.get("permissions", {}).values())
    for job_id, job in doc["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert not _unknown(job, GH_JOB), (name, job_id)
        assert "runs-on" in job and job["steps"]
        ids = [s["id"] for s in job["steps"] if "id" in s]
        assert len(ids) == len(set(ids))
        for s in job["steps"]:
            assert not _unknown(s, GH_STEP), (name, job_id, s)
            assert ("uses" in s) != ("run" in s), s  # exactly one of them
            if "uses" in s:
                action, _, version = s["uses"].partition("@")
                assert action in ACTION_INPUTS and re.fullmatch(r"v\d+", version), s["uses"]
                assert not _unknown(s.get("with", {}), ACTION_INPUTS[action]), s


def test_github_workflows_do_what_the_issue_asks() -> None:
    plan, apply, drift = (wf.github_workflow(n) for n in wf.WORKFLOWS)
    assert set(plan["on"]) == {"pull_request"}
    plan_uses = [s.get("uses", "") for s in plan["jobs"]["plan"]["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in plan_uses)
    assert any(u.startswith("actions/github-script") for u in plan_uses)
    assert plan["jobs"]["plan"]["steps"][1]["with"]["python-version"] == "3.11"
    assert apply["on"]["pull_request"]["types"] == ["closed"]
    assert "merged == true" in apply["jobs"]["apply-reviewed-plan"]["if"]
    assert apply["concurrency"] == {"group": "recon-apply", "cancel-in-progress": False}
    assert set(drift["on"]) == {"schedule", "workflow_dispatch"}
    assert "GITHUB_STEP_SUMMARY" in wf.step(drift, "drift", "drift")["run"]
    for doc in (plan, apply, drift):  # the state comes from a secret, never from the repository
        assert doc["env"]["RECON_STATE_DSN"] == "${{ secrets.RECON_STATE_DSN }}"


def test_github_comment_is_found_by_the_marker_recon_writes() -> None:
    from reconciler.render.markdown import plan_marker

    marker = plan_marker("sha256:" + "a" * 64)
    for name, job in (("plan.yml", "plan"), ("apply.yml", "apply-reviewed-plan")):
        scripts = [
            s["with"]["script"]
            for s in wf.github_workflow(name)["jobs"][job]["steps"]
            if "with" in s and "script" in s["with"]
        ]
        assert scripts, name
        for script in scripts:
            found = re.findall(r"includes\('([^']+)'\)", script)
            assert found and all(marker.startswith(f) for f in found), (name, found)


def test_gitlab_ci_uses_only_schema_keys() -> None:
    doc = wf.load(wf.GITLAB)
    jobs = {k: v for k, v in doc.items() if k not in GL_GLOBAL}
    assert set(jobs) == {"recon-plan", "recon-apply", "recon-apply-by-digest", "recon-drift"}
    assert not _unknown(doc["default"], GL_DEFAULT)
    assert not _unknown(doc["workflow"], GL_WORKFLOW)
    for rule in doc["workflow"]["rules"]:
        assert not _unknown(rule, GL_RULE)
    stages = doc["stages"]
    for name, job in jobs.items():
        assert not _unknown(job, GL_JOB), name
        assert job["stage"] in stages and job["script"]
        assert not _unknown(job.get("artifacts", {}), GL_ARTIFACTS), name
        for rule in job.get("rules", []):
            assert not _unknown(rule, GL_RULE), name
    assert jobs["recon-plan"]["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert jobs["recon-drift"]["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "schedule"'
    assert jobs["recon-apply"]["resource_group"] == "recon-apply"
    assert "plan.bin" in jobs["recon-plan"]["artifacts"]["paths"]


def _all_commands() -> list[tuple[str, list[str]]]:
    out = []
    for name in wf.WORKFLOWS:
        for script in wf.scripts_of_github(wf.github_workflow(name)):
            out += [(name, argv) for argv in wf.recon_commands(script)]
    for script in wf.scripts_of_gitlab(wf.load(wf.GITLAB)):
        out += [(".gitlab-ci.yml", argv) for argv in wf.recon_commands(script)]
    return out


def test_every_recon_command_line_parses_with_the_real_cli() -> None:
    commands = _all_commands()
    seen: dict[str, set[str]] = {}
    for where, argv in commands:
        try:
            sub = check_recon_command(argv)
        except click.ClickException as exc:  # UsageError, NoSuchOption, BadParameter
            pytest.fail(f"{where}: recon {' '.join(argv)}: {exc.format_message()}")
        seen.setdefault(where, set()).add(sub)
    assert seen["plan.yml"] == {"validate", "plan", "show"}
    assert seen["apply.yml"] == {"apply", "plan", "show"}
    assert seen["drift.yml"] == {"drift"}
    assert seen[".gitlab-ci.yml"] == {"validate", "plan", "show", "apply", "drift"}
    # and the check does catch a wrong one
    with pytest.raises(click.NoSuchOption):
        check_recon_command(["-C", ".", "plan", "--no-such-option"])
    with pytest.raises(click.UsageError):
        check_recon_command(["-C", ".", "aply", "plan.bin"])


def test_no_recon_call_is_missed_by_the_command_scan() -> None:
    scripts = wf.scripts_of_gitlab(wf.load(wf.GITLAB))
    for name in wf.WORKFLOWS:
        scripts += wf.scripts_of_github(wf.github_workflow(name))
    call = re.compile(r"(?:^|[;|&(]|\$\()\s*recon\s")  # recon in command position
    for script in scripts:
        for line in script.splitlines():
            calls = len(call.findall(line))
            assert len(wf.RECON_COMMAND.findall(line)) == calls, line
