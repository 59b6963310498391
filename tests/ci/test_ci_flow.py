"""The three CI jobs end to end, as a runner would run them, with a local git repository standing in
for the pull request.

A bare "origin" holds a project made from Azure's managed sample (provider ``fake``, state on a
throwaway PostgreSQL server whose DSN comes from ``RECON_STATE_DSN``, as the workflows' secret).
Every job runs in its own fresh clone (a runner's checkout) and runs the workflow's OWN step scripts
(the ``run:`` text of examples/ci/github/*.yml, in bash, with GITHUB_OUTPUT and GITHUB_STEP_SUMMARY
files); only the actions (checkout, artifacts, the comment) are done by the test. The fake
provider's world stands for the cloud: every checkout's ``.recon`` links to one shared folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from providers.fake import WORLD_FILE, FakeWorld
from tests import pgserver
from tests.ci import workflows as wf
from tests.conftest import copy_online_samples

PROJECT = "online/managed/sample"  # RECON_DIR: where recon.yaml lives inside the repository
PR = "7"
BLUE = "deployment.my-endpoint.blue"
GREEN = "deployment.my-endpoint.green"


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PgServer]:
    try:
        pgserver.find_bindir()
    except pgserver.PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {exc}")
        pytest.skip(str(exc))
    with pgserver.pg_server() as server:
        yield server


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com"}
    env |= {"GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class StepRun:
    code: int
    log: str
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


@dataclass
class Ci:
    """The CI service: clones, runs workflow steps, keeps artifacts, shares the cloud and the state."""

    base: Path
    origin: Path
    cloud: Path
    dsn: str
    runs: int = 0

    def checkout(self, ref: str) -> Path:
        self.runs += 1
        work = self.base / f"runner-{self.runs}"
        git(self.base, "clone", "-q", str(self.origin), work.name)
        git(work, "checkout", "-q", ref)
        (work / PROJECT / ".recon").symlink_to(self.cloud)  # the cloud is the same for every runner
        return work

    def run_step(self, workflow: str, job: str, step_id: str, work: Path, values: dict[str, str]) -> StepRun:
        """Run one ``run:`` step of a workflow in ``work`` as GitHub does (``bash -e``)."""
        doc = wf.github_workflow(workflow)
        s = wf.step(doc, job, step_id)
        values = {"secrets.RECON_STATE_DSN": self.dsn, **values}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "GITHUB_"))}
        env["RECON_PRICES_URL"] = os.environ["RECON_PRICES_URL"]  # the emulated Retail Prices API
        for scope in (doc.get("env", {}), doc["jobs"][job].get("env", {}), s.get("env", {})):
            env |= {k: wf.substitute(str(v), values) for k, v in scope.items()}
        env["RECON_DIR"] = PROJECT  # the one line a user edits: where recon.yaml is
        env["RECON_CACHE_DIR"] = str(self.base / "cache")
        out, summary = work / ".github_output", work / ".github_step_summary"
        out.write_text("")
        summary.write_text("")
        env |= {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
        script = work / f".step-{step_id}.sh"
        script.write_text(wf.substitute(s["run"], values))
        proc = subprocess.run(
            ["bash", "-e", str(script)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        return StepRun(proc.returncode, proc.stdout, outputs, summary.read_text())

    def recon(self, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RECON_STATE_DSN": self.dsn, "NO_COLOR": "1"}
        env["RECON_CACHE_DIR"] = str(self.base / "cache")
        return subprocess.run(
            ["recon", "-C", str(work / PROJECT), *args],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    def state(self, work: Path) -> dict[str, object]:
        proc = self.recon(work, "state", "pull")
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def world(self) -> FakeWorld:
        return FakeWorld(self.cloud / WORLD_FILE)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture
def ci(tmp_path: Path, pg: pgserver.PgServer) -> Ci:
    """origin with main: the managed sample (endpoint + blue, all traffic on blue), the three
    workflows in .github/workflows, recon.yaml with the fake provider and the PostgreSQL state."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    dev = tmp_path / "dev"
    git(tmp_path, "clone", "-q", str(origin), "dev")
    git(dev, "checkout", "-q", "-b", "main")
    sample = copy_online_samples(dev / "online")
    for f in sample.glob("*.yml"):
        if f.name not in ("endpoint.yml", "blue-deployment.yml", "green-deployment.yml"):
            f.unlink()
    (sample / "green-deployment.yml").rename(tmp_path / "green-deployment.yml")  # the PR adds it
    (sample / "endpoint.yml").write_text(
        (sample / "endpoint.yml").read_text().rstrip() + "\ntraffic:\n  blue: 100\n"
    )
    state_name = f"ci-{tmp_path.name[-20:]}".replace("_", "-")
    (sample / "recon.yaml").write_text(
        f"workspace: ci-demo\nprovider:\n  kind: fake\nstate:\n  backend: postgres\n  name: {state_name}\n"
    )
    (dev / ".gitignore").write_text(".recon/\n")
    flows = dev / ".github" / "workflows"
    flows.mkdir(parents=True)
    for name in wf.WORKFLOWS:
        shutil.copy(wf.GITHUB / name, flows / f"recon-{name}")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "managed sample: blue")
    git(dev, "push", "-q", "origin", "main")
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    return Ci(base=tmp_path, origin=origin, cloud=cloud, dsn=pg.dsn)


GH = {
    "github.event.pull_request.number": PR,
    "github.server_url": "https://github.example",
    "github.repository": "team/endpoints",
    "github.run_id": "4242",
}


@pytest.mark.slow
def test_plan_on_pr_stale_apply_refused_replanned_applied_then_drift(ci: Ci, pg: pgserver.PgServer) -> None:
    dev = ci.base / "dev"
    sample = dev / PROJECT

    # main is applied once (the bootstrap)
    boot = ci.checkout("main")
    proc = ci.recon(boot, "apply", "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    applied = ci.state(boot)
    assert BLUE in applied["resources"]  # type: ignore[operator]

    # the pull request: green added, traffic 90/10
    git(dev, "checkout", "-q", "-b", "canary")
    shutil.copy(ci.base / "green-deployment.yml", sample / "green-deployment.yml")
    edit(sample / "endpoint.yml", "blue: 100", "blue: 90\n  green: 10")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "canary: green at 10%")
    git(dev, "push", "-q", "origin", "canary")

    # -- plan job (plan.yml) in a checkout of the branch --------------------------------------
    work = ci.checkout("canary")
    assert ci.run_step("plan.yml", "plan", "validate", work, GH).code == 0
    plan = ci.run_step("plan.yml", "plan", "plan", work, GH)
    assert plan.code == 0, plan.log
    assert plan.outputs["changes"] == "true"
    reviewed = plan.outputs["digest"]
    assert reviewed.startswith("sha256:") and f"Plan digest: {reviewed}" in plan.log
    comment_step = ci.run_step("plan.yml", "plan", "comment", work, GH)
    assert comment_step.code == 0, comment_step.log
    comment = (work / "comment.md").read_text()
    assert comment.splitlines()[0] == f"<!-- recon:plan digest={reviewed} -->"
    heads = [
        comment.index(h)
        for h in (
            "## recon plan",
            "**Plan: 3 to add, 1 to change",
            "### Resources",
            "### Rollout",
            "### Quota",
            "### Cost",
        )
    ]
    assert heads == sorted(heads)
    # green is 1 x Standard_DS3_v2 at the emulated $0.25/h: 730 x 0.25 = $182.50 a month, like blue
    assert "Cost: $183/month -> $365/month (+$183); peak during apply $0.50/h" in plan.log
    assert "**\\$183/month → \\$365/month (+\\$183); peak during apply \\$0.50/h**" in comment
    rollout = comment[comment.index("### Rollout") : comment.index("### Quota")]
    assert GREEN in comment and "set_traffic" in rollout and "90" in rollout and "10" in rollout
    for text in (comment, plan.log, comment_step.log, (work / "plan.bin").read_text()):
        assert pg.password not in text and "primaryKey" not in text
    artifact = ci.base / "artifacts" / f"recon-plan-pr-{PR}"
    artifact.mkdir(parents=True)
    for f in ("plan.bin", "comment.md"):  # actions/upload-artifact
        shutil.copy(work / f, artifact / f)

    # -- a second change lands on main first, and is applied ----------------------------------
    git(dev, "checkout", "-q", "main")
    edit(sample / "blue-deployment.yml", "instance_count: 1", "instance_count: 2")
    git(dev, "commit", "-q", "-am", "blue: 2 instances")
    git(dev, "push", "-q", "origin", "main")
    other = ci.checkout("main")
    proc = ci.recon(other, "apply", "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    moved = ci.state(other)
    assert moved["serial"] > applied["serial"]  # type: ignore[operator]

    # -- the pull request merges: apply.yml applies the reviewed plan, which is now stale --------
    git(dev, "merge", "-q", "--no-ff", "-m", "Merge pull request #7 from canary", "canary")
    git(dev, "push", "-q", "origin", "main")
    merged = ci.checkout("main")
    for f in ("plan.bin", "comment.md"):  # dawidd6/action-download-artifact
        shutil.copy(artifact / f, merged / f)
    apply = ci.run_step("apply.yml", "apply-reviewed-plan", "apply", merged, GH)
    assert apply.code == 1, apply.log
    stale = [line for line in apply.log.splitlines() if line.startswith("Error: plan is stale:")]
    assert len(stale) == 1 and "run recon plan again" in stale[0], apply.log
    assert apply.outputs["stale"] == "true"
    assert "::error title=recon: the reviewed plan is stale::" in apply.log and "Re-plan" in apply.log
    assert ci.state(merged) == moved  # nothing was applied
    assert GREEN not in ci.world().objects()

    # the job re-plans and posts the new plan in the pull request
    replan = ci.run_step("apply.yml", "apply-reviewed-plan", "replan", merged, GH)
    assert replan.code == 0, replan.log
    new = replan.outputs["digest"]
    assert new != reviewed
    comment = (merged / "comment.md").read_text()
    assert comment.splitlines()[0] == f"<!-- recon:plan digest={new} -->"
    assert f"expect_digest={new}" in comment and "**stale**" in comment
    assert pg.password not in comment + replan.log

    # -- apply by digest (workflow_dispatch): the old digest is refused, the reviewed new one applies
    dispatch = ci.checkout("main")
    old = ci.run_step(
        "apply.yml", "apply-by-digest", "apply", dispatch, {**GH, "inputs.expect_digest": reviewed}
    )
    assert old.code == 1
    mismatch = [line for line in old.log.splitlines() if line.startswith("Error: plan digest mismatch")]
    assert len(mismatch) == 1 and "re-run plan and review it again" in mismatch[0], old.log
    assert ci.state(dispatch) == moved
    ok = ci.run_step("apply.yml", "apply-by-digest", "apply", dispatch, {**GH, "inputs.expect_digest": new})
    assert ok.code == 0, ok.log
    assert "Apply complete!" in ok.log and f"Plan digest: {new}" in ok.log
    objects = ci.world().objects()
    assert objects["endpoint.my-endpoint"]["traffic"] == {"blue": 90, "green": 10}
    assert objects[BLUE]["attributes"]["instance_count"] == 2 and GREEN in objects

    # -- drift.yml: none at first, then a deployment changed behind recon's back -------------------
    nightly = ci.checkout("main")
    quiet = ci.run_step("drift.yml", "drift", "drift", nightly, GH)
    assert quiet.code == 0, quiet.log
    assert "No drift" in quiet.summary and quiet.summary.startswith("<!-- recon:drift digest=")
    ci.world().set_attribute(GREEN, "environment_variables.MODE", "debug")  # someone on the portal
    drift = ci.run_step("drift.yml", "drift", "drift", nightly, GH)
    assert drift.code == 2, drift.log
    summary = drift.summary
    assert summary.startswith("<!-- recon:drift digest=")
    assert "### Drift" in summary and GREEN in summary and "environment_variables.MODE" in summary
    heads = [summary.index(h) for h in ("## recon drift", "### Drift")]
    assert heads == sorted(heads)
    assert "::error title=recon drift::" in drift.log
    assert pg.password not in summary + drift.log


@pytest.mark.slow
def test_plan_job_fails_a_pull_request_over_budget(ci: Ci) -> None:
    """recon.yaml's budget gate in the plan job: a pull request that adds more than
    ``budget.increase`` fails the job as a quota failure does (exit 1, one ``Error:`` line); raising
    the budget in the same pull request (a change reviewers see) lets it through."""
    dev = ci.base / "dev"
    sample = dev / PROJECT
    boot = ci.checkout("main")
    assert ci.recon(boot, "apply", "--auto-approve").returncode == 0
    edit(sample / "recon.yaml", "workspace: ci-demo\n", "workspace: ci-demo\nbudget:\n  increase: 100\n")
    git(dev, "commit", "-q", "-am", "budget: at most +100 a month per change")
    git(dev, "push", "-q", "origin", "main")

    git(dev, "checkout", "-q", "-b", "green")
    shutil.copy(ci.base / "green-deployment.yml", sample / "green-deployment.yml")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "green")
    git(dev, "push", "-q", "origin", "green")
    work = ci.checkout("green")
    plan = ci.run_step("plan.yml", "plan", "plan", work, GH)
    assert plan.code == 1, plan.log
    errors = [line for line in plan.log.splitlines() if line.startswith("Error: budget exceeded")]
    assert errors == [
        "Error: budget exceeded: this plan adds $183/month ($183/month -> $365/month); budget.increase in "
        "recon.yaml is $100; from: deployment.my-endpoint.green +$183/month (split the change into smaller "
        "applies, or raise budget.increase)"
    ], plan.log
    assert "changes" not in plan.outputs and not (work / "plan.bin").exists()

    edit(sample / "recon.yaml", "increase: 100", "increase: 200")
    git(dev, "commit", "-q", "-am", "budget: +200 for green")
    git(dev, "push", "-q", "origin", "green")
    work = ci.checkout("green")
    plan = ci.run_step("plan.yml", "plan", "plan", work, GH)
    assert plan.code == 0, plan.log
    assert plan.outputs["changes"] == "true"
    assert "  Budget: +$200/month a plan (ok)" in plan.log.splitlines()
