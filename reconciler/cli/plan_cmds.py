"""``recon validate``, ``recon plan``, ``recon show`` and ``recon graph``.

Thin commands, as Terraform's ``PlanCommand.Run``: parse, call ``Project``/``make_plan``, render,
return an exit code. Exit codes: 0 success; 1 error (an invalid plan is printed, then its errors);
with ``plan --detailed-exitcode``, 2 when the plan has changes. A saved plan (``--out``) is
``plan.model_dump_json()``; ``recon show PLANFILE`` and ``recon apply PLANFILE`` read it back.
Colour only on a terminal, and never with NO_COLOR (``app.use_color``).

Every applicable plan names its digest: the text plan ends with ``Plan digest: sha256:...``, the
JSON plan has ``plan_digest`` and the markdown comment carries it in its hidden marker. That is the
value ``recon apply --expect-digest`` checks, so CI can apply only the plan reviewers saw.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.apply import gcpause
from reconciler.cli.app import ProjectPath, cli, project_root, use_color
from reconciler.cli.spellings import Duration
from reconciler.model.errors import PlanError, ReconcilerError, StateError, StateLockedError, printable
from reconciler.render import FORMATS

if TYPE_CHECKING:  # imported where used: a command pays only for what it runs
    from reconciler.apply.project import Project
    from reconciler.plan.types import Plan
    from reconciler.state.document import State


def open_project(root: Path) -> Project:
    from reconciler.cli.registries import open_project as opened

    return opened(root)

FC = TypeVar("FC", bound=Callable[..., Any])
DIGEST_LABEL = "Plan digest:"

plan_location_option = click.option(
    "--plan-location",
    metavar="TEXT",
    default=None,
    help="Where the full plan is (CI artifact name or link); a shortened markdown comment names it.",
)


def _root(ctx: click.Context) -> Path:
    return project_root(ctx)


lock_timeout_option = click.option(
    "--lock-timeout",
    type=Duration(),
    default="0s",
    show_default=True,
    metavar="SECONDS",
    help="Wait up to SECONDS (or a duration: 30s, 5m) for the state lock, when CI jobs overlap, "
    "instead of failing at once.",
)


def target_option(help_text: str) -> Callable[[FC], FC]:
    return click.option("--target", "targets", multiple=True, metavar="ADDRESS", help=help_text)


NO_CONFIGURATION = (
    "No configuration files found in {root}: recon reads the Azure ML CLI v2 YAML files (*.yml, "
    "*.yaml) of endpoints, deployments, models and environments in a project folder and the folders "
    "under it; run recon there, or name it with -C DIR"
)


def refuse_empty_folder(root: Path) -> None:
    """The "No configuration files" error before anything is loaded, for a folder with no
    recon.yaml, no state at the default path and no YAML file (hidden folders skipped, links to
    folders not followed, as the loader's discovery): no settings, state or schema are imported."""
    if os.path.lexists(root / "recon.yaml") or os.path.lexists(root / ".recon" / "state.json"):
        return
    for _, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not f.startswith(".")]
        if any(f.endswith((".yml", ".yaml")) and not f.startswith(".") for f in files):
            return
    raise ReconcilerError(NO_CONFIGURATION.format(root=root))


def require_configuration(project: Any) -> None:
    """Refuse a folder without a single YAML file (Terraform's "No configuration files"), unless
    the state holds resources: then the plan deletes them. Checked before the state lock, so
    that nothing (not even ``.recon/``) is made in a wrong folder."""
    from reconciler.load import discovery
    from reconciler.model.settings import SETTINGS_FILE

    skip = frozenset({SETTINGS_FILE})
    if discovery.any_yaml(project.root, skip, tuple(project.settings.exclude)):
        return
    recorded = _recorded_or_none(project)
    if recorded is not None and recorded.resources:
        return
    raise ReconcilerError(NO_CONFIGURATION.format(root=project.root))


def require_resources(plan: Plan, project: Any) -> None:
    """YAML files that declare nothing recon manages, and an empty state: say so (exit 1). A
    destroy plan of an empty state is simply "No changes"."""
    if not plan.resource_changes and not plan.drift and not plan.destroy:
        raise ReconcilerError(
            NO_CONFIGURATION.format(root=project.root).replace(
                "No configuration files found", "No endpoint, deployment, model or environment found"
            )
        )


@contextmanager
def state_lock(project: Any, operation: str, timeout: float) -> Iterator[None]:
    """Hold the state lock for ``operation``, retrying for up to ``timeout`` seconds while another
    operation holds it (then the ``StateLockedError`` naming the holder goes up)."""
    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(project.locked(operation))
                break
            except StateLockedError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(1.0, left))
        yield


def render_plan(plan: Plan, fmt: str, plan_location: str | None = None) -> str | bytes:
    """The plan in ``fmt`` (the renderer is imported lazily: only commands that print need it); the
    JSON as UTF-8 bytes, which ``click.echo`` writes as they are."""
    with gcpause.paused():
        return _render_plan(plan, fmt, plan_location)


def _render_plan(plan: Plan, fmt: str, plan_location: str | None) -> str | bytes:
    if fmt == "json":
        from reconciler.render.json import render_json_bytes

        return render_json_bytes(plan)
    if fmt == "markdown":
        from reconciler.render.markdown import GITHUB_COMMENT_LIMIT, render_markdown

        # one character less: click.echo adds the newline that `> comment.md` keeps
        return render_markdown(plan, max_chars=GITHUB_COMMENT_LIMIT - 1, plan_location=plan_location)
    from reconciler.render.text import render_text

    return render_text(plan, color=use_color()) + digest_footer(plan)


def digest_footer(plan: Plan) -> str:
    """The text plan's last line, ``Plan digest: sha256:...`` (only for a plan that can be applied)."""
    return f"\n{DIGEST_LABEL} {plan.digest}" if plan.applicable else ""


def write_plan_file(path: Path, plan: Plan) -> None:
    """Write ``plan.model_dump_json()`` atomically (temp file in the same folder, then rename)."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(plan.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_plan_file(path: Path) -> Plan:
    """A saved plan; ``PlanError`` when the file is missing or is not a recon plan (one line that
    says so, never the parser's own report)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from exc
    from reconciler.plan.types import Plan

    try:
        return Plan.model_validate_json(data)
    except ValueError as exc:
        raise PlanError(_not_a_plan(path, data)) from exc


def _not_a_plan(path: Path, data: bytes) -> str:
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and "planned_values" in doc:  # what `show -json` prints, recon's or Terraform's
        whose = "recon's plan JSON (`recon show -json`)" if "recon_format_version" in doc else "a Terraform plan JSON"
        return (
            f"{path} is {whose}, written for tools to read, not a saved plan; save one with: "
            f"recon plan --out {path}"
        )
    if isinstance(doc, dict) and isinstance(version, str) and "resource_changes" in doc:
        made_by = doc.get("recon_version") or "another version of recon"
        return (
            f"{path} is a recon plan of format {version} (written by recon {made_by}) that this recon "
            f"cannot read; make the plan again with this version: recon plan --out {path}"
        )
    return f"{path} is not a recon plan file; save one with: recon plan --out {path}"


def _recorded_or_none(project: Project) -> State | None:
    """The recorded state for checks that need it; None when there is none or it cannot be read."""
    try:
        state = project.read_state()
    except StateError:
        return None
    return state if state.serial > 0 else None


@cli.command("validate")
@click.pass_context
def validate_cmd(ctx: click.Context) -> None:
    """Check the configuration: every file, reference, limit, quota, and rules that need the state."""
    refuse_empty_folder(_root(ctx))
    from reconciler.plan.graph import desired_graph
    from reconciler.plan.planner import make_plan
    from reconciler.state.document import State

    with open_project(_root(ctx)) as project:
        require_configuration(project)
        recorded = _recorded_or_none(project)
        desired = project.load_desired(recorded)
        desired_graph(desired)  # raises ConfigError naming a cycle
        plan = make_plan(desired, recorded or State())
        require_resources(plan, project)
    for w in plan.warnings:
        click.echo(f"Warning: {_warning_line(w)}", err=True)
    if plan.errors:
        for e in plan.errors:
            click.echo(f"Error: {printable(str(e))}", err=True)
        n = len(plan.errors)
        click.echo(f"{n} error{'s' if n != 1 else ''}; the configuration is not valid.", err=True)
        ctx.exit(1)
    kinds = _count_types(desired.resources.values())
    click.echo(f"Success! The configuration is valid ({kinds}).")


def _count_types(resources: Any) -> str:
    counts: dict[str, int] = {}
    for r in resources:
        counts[r.type] = counts.get(r.type, 0) + 1
    order = ("endpoint", "deployment", "model", "environment")
    return (
        ", ".join(f"{counts[t]} {t}{'s' if counts[t] != 1 else ''}" for t in order if t in counts)
        or "no resources"
    )


def _warning_line(w: dict[str, Any]) -> str:
    from reconciler.render.common import warning_text

    return warning_text(w)


@cli.command("plan")
@click.option(
    "--out",
    "out",
    type=ProjectPath(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Save the plan for `recon apply FILE`.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools (docs/plan-json.md), markdown for a pull-request comment.",
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes (0: none, 1: error)."
)
@target_option("Plan only ADDRESS and what it needs (repeatable).")
@click.option(
    "--refresh/--no-refresh", default=True, show_default=True, help="Observe the real objects first."
)
@click.option("--destroy", is_flag=True, help="Plan to delete everything recorded in the state.")
@plan_location_option
@lock_timeout_option
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    out: Path | None,
    fmt: str,
    detailed_exitcode: bool,
    targets: tuple[str, ...],
    refresh: bool,
    destroy: bool,
    plan_location: str | None,
    lock_timeout: float,
) -> None:
    """Show what apply would change, in order, with its rollout gates, quota, cost and drift. A plan over
    quota or over recon.yaml's budget fails (exit 1) and saves nothing. Holds the state lock while planning."""
    refuse_empty_folder(_root(ctx))
    with open_project(_root(ctx)) as project:
        require_configuration(project)
        with state_lock(project, "plan", lock_timeout):
            plan = project.plan(targets=targets, refresh=refresh, destroy=destroy, lock=False)
        require_resources(plan, project)
    location = plan_location or (str(out) if out else None)
    click.echo(render_plan(plan, fmt, plan_location=location))
    if plan.errors:
        if fmt != "text":  # the text rendering already lists them
            for e in plan.errors:
                click.echo(f"Error: {e}", err=True)
        click.echo("The plan has errors; nothing was saved or changed.", err=True)
        ctx.exit(1)
    if out is not None:
        write_plan_file(out, plan)
        click.echo(
            f"Saved the plan to {out}. To carry out exactly this plan, run: recon apply {out}", err=True
        )
    if detailed_exitcode and plan.has_changes:
        ctx.exit(2)


@cli.command("show")
@click.argument("planfile", required=False, type=ProjectPath(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools (docs/plan-json.md), markdown for a pull-request comment.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The same as --format json (Terraform's `show -json`): the plan JSON, or without PLANFILE "
    "the state in Terraform's state JSON.",
)
@plan_location_option
@click.pass_context
def show_cmd(
    ctx: click.Context, planfile: Path | None, fmt: str, as_json: bool, plan_location: str | None
) -> None:
    """Show a saved plan, or without PLANFILE the recorded state."""
    if as_json:
        fmt = "json"
    if planfile is not None:
        plan = read_plan_file(planfile)
        click.echo(render_plan(plan, fmt, plan_location=plan_location or str(planfile)))
        return
    with open_project(_root(ctx)) as project:
        state = project.read_state()
    click.echo(_render_state(state, fmt))


def _render_state(state: State, fmt: str) -> str:
    if fmt == "json":  # as `terraform show -json`; `recon state pull` prints the state document itself
        from reconciler.render.json import render_state_json

        return render_state_json(state)
    if not state.resources:
        return "The state is empty: nothing is managed yet."
    from reconciler.render.text import render_state_show

    body = "\n\n".join(render_state_show(state.resources[a]) for a in sorted(state.resources))
    if fmt == "markdown":
        return f"### recon state (serial {state.serial})\n\n```hcl\n{body}\n```"
    return body


@cli.command("graph")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid"]),
    default="dot",
    show_default=True,
    help="Graphviz DOT, or Mermaid for Markdown pages.",
)
@click.pass_context
def graph_cmd(ctx: click.Context, fmt: str) -> None:
    """Print the dependency graph (environments and models -> deployments -> endpoints)."""
    from reconciler.plan.graph import desired_graph
    from reconciler.render.graph import render_graph

    with open_project(_root(ctx)) as project:
        require_configuration(project)
        desired = project.load_desired(_recorded_or_none(project))
    click.echo(render_graph(desired_graph(desired), fmt))
