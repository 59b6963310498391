"""``recon apply``, ``destroy``, ``refresh`` and ``drift`` (``invoke``, ``logs`` and ``keys``: ``operate_cmds``).

Thin commands (Terraform's ``command/apply.go``): parse, run the engine, render, return an exit
code. The engine never prints: ``progress.CliHooks`` turns its hooks into progress for people, a
live view on a terminal and plain timestamped lines elsewhere (CI, pipes). The state lock is held
for the whole of a changing command; a second one stops at once naming the holder (``--lock-timeout``
waits for it instead).

Exit codes: 0 done; 1 error, failed or cancelled apply; 2 drift (``recon drift``); 130 a second
Ctrl-C stopped an apply at once.

Reviewed plans in CI: ``recon apply --expect-digest DIGEST`` plans again under the apply lock and
applies only when the new plan's digest is DIGEST, the one reviewers saw in the pull-request comment
(its hidden marker) or in the JSON plan (``plan_digest``); anything else is refused before a single
step runs. ``recon apply PLANFILE --expect-digest DIGEST`` checks the saved plan the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    pass

from reconciler.apply.engine import apply_plan
from reconciler.apply.outcomes import ApplyResult, CancelToken
from reconciler.cli.app import ProjectPath, cli, project_root, use_color
from reconciler.cli.plan_cmds import (
    lock_timeout_option,
    require_configuration,
    require_resources,
    state_lock,
    target_option,
)
from reconciler.cli.progress import CliHooks
from reconciler.model.errors import (
    PlanError,
    StalePlanError,
    StateConflictError,
    StateError,
    StateLockedError,
)
from reconciler.plan.types import Plan
from reconciler.render import FORMATS
from reconciler.state.document import State

ERRORED_STATE = "errored.state.json"
APPROVE_PROMPT = (
    "Do you want to perform these actions?\n"
    "  recon will perform the actions described above.\n"
    "  Only 'yes' will be accepted to approve.\n\n"
    "  Enter a value"
)
# -- Ctrl-C --------------------------------------------------------------------------------------
@contextmanager
def interrupts(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C: finish what is in flight and stop; second: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancel() == 1:
            click.echo(
                "\nInterrupt received: finishing the steps in flight, then stopping "
                "(press Ctrl-C again to stop at once).",
                err=True,
            )
        else:
            click.echo("\nSecond interrupt: stopping now.", err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- shared ------------------------------------------------------------------------------------
def _project(ctx: click.Context) -> Any:
    from reconciler.cli.registries import open_project

    project = open_project(project_root(ctx))
    ctx.call_on_close(project.close)
    return project


def _confirm(auto_approve: bool, what: str) -> None:
    if auto_approve:
        return
    answer = click.prompt(APPROVE_PROMPT, default="", show_default=False, prompt_suffix=": ")
    if answer.strip() != "yes":
        raise click.ClickException(f"{what} cancelled: only 'yes' approves.")


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _require_terminal(auto_approve: bool, command: str) -> None:
    if auto_approve or stdin_is_terminal():
        return
    hint = "or apply a saved plan: recon plan --out FILE; recon apply FILE" if command == "apply" else ""
    raise click.ClickException(
        f"recon {command} needs approval, but there is no terminal to ask on; "
        f"run recon {command} --auto-approve {hint}".rstrip()
    )


def load_plan(path: Path) -> Plan:
    from reconciler.cli.plan_cmds import read_plan_file

    return read_plan_file(path)


def run_apply(project: Any, plan: Plan, desired_digest: str | None, parallelism: int) -> ApplyResult:
    """Carry out ``plan``; each step's state write stores only what it changed (the state manager's
    journal), compacted into a full version at the end."""
    token = CancelToken()
    hooks = CliHooks()
    manager = project.state_manager
    result: ApplyResult | None = None
    try:
        with interrupts(token), manager.journaled():
            result = apply_plan(
                plan,
                provider=project.provider,
                state_manager=manager,
                desired_digest=desired_digest,
                hooks=hooks,
                parallelism=parallelism,
                cancel=token,
            )
    except StateError as exc:  # compaction at the end: the journal still holds every step
        if result is None:
            raise
        result.state_error = result.state_error or str(exc)
    finally:
        hooks.close()
    return result


def _save_errored(project: Any, result: ApplyResult) -> Path | None:
    if result.unsaved_state is None:
        return None
    path = Path(project.state_dir) / ERRORED_STATE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.unsaved_state.to_bytes())
    return path


def summarise(result: ApplyResult, verb: str, errored: Path | None = None) -> tuple[str, int]:
    """The closing text and the exit code of an apply or destroy."""
    counts = result.counts()
    resources = (
        f"Resources: {counts['add']} added, {counts['change']} changed, {counts['destroy']} destroyed."
    )
    if result.ok:
        return f"\n{verb} complete! {resources}", 0
    lines = [""]
    if result.state_error is not None:
        lines.append(f"Error: the state could not be written: {result.state_error}")
        if errored is not None:
            lines.append(f"What was done is saved in {errored}; push it with: recon state push {errored}")
    failed = result.errors
    if failed:
        lines.append(f"Error: {verb} failed: {len(failed)} step{'s' if len(failed) != 1 else ''} failed.")
    elif result.cancelled:
        lines.append(f"{verb} cancelled{' at once' if result.aborted else ''}.")
    done = [o for o in result.outcomes if o.succeeded]
    not_done = [o for o in result.outcomes if not o.succeeded]
    lines.append(f"Done ({len(done)}):")
    lines += [f"  {o.address}: {o.outcome}" for o in done] or ["  nothing"]
    lines.append(f"Not done ({len(not_done)}):")
    for o in not_done:  # the error's first line: its detail was shown once, where it happened
        why = (o.error or o.reason or "").removeprefix(f"{o.address}: ").split("\n", 1)[0]
        lines.append(f"  {o.address}: {o.kind} {o.outcome}" + (f": {why}" if why else ""))
    lines.append(resources)
    lines.append("The state records what was done; run recon plan to see what is left.")
    return "\n".join(lines), 130 if result.aborted else 1


def _finish(project: Any, result: ApplyResult, verb: str) -> int:
    text, code = summarise(result, verb, _save_errored(project, result))
    click.echo(text, err=code != 0)
    return code


def _exit(ctx: click.Context, code: int) -> None:
    if code == 130:  # the abandoned steps still run on worker threads: do not wait for them
        ctx.close()  # releases the provider and the state backend
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    if code:
        ctx.exit(code)


def _plan_and_confirm(
    project: Any,
    *,
    destroy: bool,
    targets: tuple[str, ...],
    auto: bool,
    expect_digest: str | None = None,
) -> Plan | None:
    from reconciler.cli.plan_cmds import digest_footer
    from reconciler.render.text import render_text

    command = "destroy" if destroy else "apply"
    plan: Plan = project.plan(targets=targets, destroy=destroy, lock=False, operation=command)
    require_resources(plan, project)
    click.echo(render_text(plan, color=use_color()) + digest_footer(plan))
    if not plan.applicable:
        raise PlanError(f"the plan has errors; nothing was changed ({len(plan.errors)} error(s) above)")
    if expect_digest is not None:
        check_digest(plan, expect_digest, "the new plan")
    if not plan.steps:  # the rendered plan already says "No changes."
        return None
    _confirm(auto or expect_digest is not None, "Apply" if not destroy else "Destroy")
    # while it waited for approval, someone may have broken its lock (recon force-unlock)
    project.state_manager.check_lock_held()
    return plan


@contextmanager
def hints_for(command: str) -> Iterator[None]:
    """Errors that end in "run recon plan again" say what fits ``command`` instead: a destroy
    refused because the state moved is run again as a destroy, not planned."""
    try:
        yield
    except (StalePlanError, StateConflictError, StateLockedError) as exc:
        text = str(exc)
        again = f"run recon {command} again"
        for hint in ("run recon plan again", "re-run plan"):
            if text.endswith(hint):
                text = text[: -len(hint)] + again
                break
        else:
            if "nothing was changed" in text:
                text += f"\n  {again}"
        if text == str(exc):
            raise
        raise type(exc)(text) if not isinstance(exc, StateLockedError) else StateLockedError(
            exc.holder, text
        ) from exc


def normalize_digest(value: str) -> str:
    """``sha256:<64 hex>`` from what a user pastes (the prefix may be left out; case ignored)."""
    text = value.strip().lower()
    if text.startswith("digest="):  # copied out of the marker
        text = text[len("digest=") :]
    hexpart = text.removeprefix("sha256:")
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise click.BadParameter(
            f"{value!r} is not a plan digest (expected sha256: and 64 hex digits, as in "
            "`recon show PLANFILE --format json` plan_digest or the comment's recon:plan marker)",
            param_hint="--expect-digest",
        )
    return "sha256:" + hexpart


def check_digest(plan: Plan, expected: str, what: str) -> None:
    """Refuse, on one line a log search finds, a plan whose digest is not the reviewed one."""
    actual = plan.digest
    if actual != expected:
        raise StalePlanError(
            f"plan digest mismatch: expected {expected} (the reviewed plan), but {what} has {actual}: "
            "the plan changed since it was reviewed; re-run plan and review it again"
        )


# -- apply and destroy -------------------------------------------------------------------------
parallelism_option = click.option(
    "--parallelism",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="How many independent steps run at the same time.",
)


@cli.command("apply")
@click.argument("planfile", required=False, type=ProjectPath(dir_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking for approval.")
@parallelism_option
@target_option("Apply only ADDRESS and what it needs (repeatable).")
@click.option(
    "--expect-digest",
    metavar="DIGEST",
    default=None,
    help="Plan again and apply only if the new plan's digest is DIGEST (the reviewed plan's, from "
    "its comment marker or JSON plan_digest); approves it. With PLANFILE: check the saved plan.",
)
@lock_timeout_option
@click.pass_context
def apply_cmd(
    ctx: click.Context,
    planfile: Path | None,
    auto_approve: bool,
    parallelism: int,
    targets: tuple[str, ...],
    expect_digest: str | None,
    lock_timeout: float,
) -> None:
    """Make the endpoints what the YAML files say: plan, ask, apply (or apply a saved PLANFILE).

    With recon.yaml's rollout: section, each rollout batch and traffic step is judged after it and
    rolled back when its gate fails (apply then exits 1 and prints what was measured)."""
    project = _project(ctx)
    expected = normalize_digest(expect_digest) if expect_digest is not None else None
    if planfile is not None and targets:
        raise click.UsageError(
            "--target cannot be used with a saved plan (the plan already has its targets)", ctx
        )
    if planfile is None:
        _require_terminal(auto_approve or expected is not None, "apply")
        require_configuration(project)
    command = "plan" if planfile is not None else "apply"  # a stale saved plan is made again
    with state_lock(project, "apply", lock_timeout), hints_for(command):
        if planfile is not None:
            plan = load_plan(planfile if planfile.is_absolute() else Path.cwd() / planfile)
            if expected is not None:
                check_digest(plan, expected, f"the saved plan {planfile}")
            digest = project.load_desired(project.read_state()).digest
        else:
            plan_or_none = _plan_and_confirm(
                project, destroy=False, targets=targets, auto=auto_approve, expect_digest=expected
            )
            if plan_or_none is None:
                return
            plan, digest = plan_or_none, None
        result = run_apply(project, plan, digest, parallelism)
        code = _finish(project, result, "Destroy" if plan.destroy else "Apply")
    _exit(ctx, code)


@cli.command("destroy")
@click.option("--auto-approve", is_flag=True, help="Destroy without asking for approval.")
@parallelism_option
@target_option("Destroy only ADDRESS and what cannot exist without it (repeatable).")
@lock_timeout_option
@click.pass_context
def destroy_cmd(
    ctx: click.Context, auto_approve: bool, parallelism: int, targets: tuple[str, ...], lock_timeout: float
) -> None:
    """Delete everything recon manages here: traffic first, then deletions in reverse order."""
    project = _project(ctx)
    _require_terminal(auto_approve, "destroy")
    require_configuration(project)
    with state_lock(project, "destroy", lock_timeout), hints_for("destroy"):
        plan = _plan_and_confirm(project, destroy=True, targets=targets, auto=auto_approve)
        if plan is None:
            return
        result = run_apply(project, plan, None, parallelism)
        code = _finish(project, result, "Destroy")
    _exit(ctx, code)


# -- observing ---------------------------------------------------------------------------------
@cli.command("refresh")
@target_option("Observe only ADDRESS (repeatable).")
@lock_timeout_option
@click.pass_context
def refresh_cmd(ctx: click.Context, targets: tuple[str, ...], lock_timeout: float) -> None:
    """Observe what really runs, record it in the state and report the drift found."""
    from reconciler.render import render_drift

    project = _project(ctx)
    with state_lock(project, "refresh", lock_timeout):
        recorded: State = project.read_state()
        chosen = _targeted(recorded, targets)
        refreshed_part, drift = project.refresh(chosen)
        if targets:  # objects no resource owns are looked for over the whole state only
            drift = [d for d in drift if d.kind != "unmanaged"]
        resources = {a: r for a, r in recorded.resources.items() if a not in chosen.resources}
        refreshed = recorded.model_copy(update={"resources": {**resources, **refreshed_part.resources}})
        if refreshed.resources != recorded.resources:
            written = project.state_manager.write(refreshed)
            note = f"State refreshed: serial {written.serial}."
        else:
            note = "State unchanged."
    click.echo(render_drift(drift, "text", color=use_color()))
    click.echo(note)


def _targeted(state: State, targets: tuple[str, ...]) -> State:
    """``state`` with only the ``targets`` (all of it without targets); an address the state
    does not hold is an error naming the closest ones."""
    if not targets:
        return state
    unknown = [t for t in targets if t not in state.resources]
    if unknown:
        import difflib

        kind = unknown[0].split(".", 1)[0]
        same = sorted(a for a in state.resources if a.split(".", 1)[0] == kind)
        close = difflib.get_close_matches(unknown[0], same, n=3, cutoff=0.6) or difflib.get_close_matches(
            unknown[0], sorted(state.resources), n=3, cutoff=0.6
        )
        hint = f"; did you mean {', '.join(close)}?" if close else " (see: recon state list)"
        raise StateError(f"--target {unknown[0]}: the state records no resource with this address{hint}")
    return state.model_copy(update={"resources": {a: state.resources[a] for a in targets}})


@cli.command("drift")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools, markdown for a CI job summary.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Accepted for symmetry with plan: drift always exits 0 none, 2 drift, 1 error.",
)
@click.option(
    "--plan-location",
    metavar="TEXT",
    default=None,
    help="Where the full report is (CI job or artifact link); a shortened markdown report names it.",
)
@lock_timeout_option
@click.pass_context
def drift_cmd(
    ctx: click.Context, fmt: str, detailed_exitcode: bool, plan_location: str | None, lock_timeout: float
) -> None:
    """Report what changed behind recon's back (exit 0 none, 2 drift, 1 error); changes nothing."""
    from reconciler.render import render_drift

    project = _project(ctx)
    with state_lock(project, "drift", lock_timeout):
        plan: Plan = project.plan(operation="drift", lock=False)
    color = use_color() and fmt == "text"
    click.echo(render_drift(plan.drift, fmt, plan=plan, color=color, location=plan_location))
    if plan.drift:
        ctx.exit(2)


__all__ = ["CliHooks", "load_plan", "summarise"]
