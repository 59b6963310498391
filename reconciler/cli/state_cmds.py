"""``recon state ...`` and ``recon force-unlock``: inspect and repair the recorded state.

Every command that writes holds the state lock for its whole run. Commands stay thin: read
settings, call the StateManager, render, return.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.cli.app import ProjectPath, cli, project_root
from reconciler.cli.registries import open_state_manager
from reconciler.model.errors import StateError, StateLockedError
from reconciler.model.settings import StateSettings
from reconciler.state.document import State
from reconciler.state.manager import StateManager, holder_alive
from states import DSN_ENV


def state_settings(root: Path) -> StateSettings:
    """recon.yaml's ``state:`` section (the file backend's defaults without one)."""
    from reconciler.load.loader import load_settings

    return load_settings(root).state


def _manager(ctx: click.Context) -> StateManager:
    root = project_root(ctx)
    mgr = open_state_manager(root, state_settings(root))
    ctx.call_on_close(mgr.close)
    return mgr


@cli.group("state")
def state_group() -> None:
    """Inspect and change the recorded state."""


@state_group.command("list")
@click.pass_context
def state_list(ctx: click.Context) -> None:
    """List the addresses of every resource in the state."""
    from reconciler.render.text import render_state_list

    text = render_state_list(_manager(ctx).read())
    if text:
        click.echo(text)


@state_group.command("show")
@click.argument("address")
@click.pass_context
def state_show(ctx: click.Context, address: str) -> None:
    """Show one recorded resource."""
    from reconciler.render.text import render_state_show

    state = _manager(ctx).read()
    res = state.get(address)
    if res is None:
        raise StateError(f"no resource {address!r} in the state{_suggest(state)}")
    click.echo(render_state_show(res))


def _suggest(state: State) -> str:
    if not state.resources:
        return " (the state is empty)"
    return " (see: recon state list)"


@state_group.command("rm")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_context
def state_rm(ctx: click.Context, addresses: tuple[str, ...]) -> None:
    """Forget resources (they keep running; recon stops managing them)."""
    mgr = _manager(ctx)
    with mgr.lock("state rm"):
        state = mgr.read()
        missing = [a for a in addresses if a not in state.resources]
        if missing:
            raise StateError(f"no resource {', '.join(map(repr, missing))} in the state; nothing was removed")
        resources = {a: r for a, r in state.resources.items() if a not in addresses}
        new = mgr.write(state.model_copy(update={"resources": resources}))
    for a in addresses:
        click.echo(f"Removed {a}")
    click.echo(f"Successfully removed {len(addresses)} resource(s); state serial {new.serial}.")


@state_group.command("pull")
@click.option("--serial", type=int, default=None, help="A kept earlier version (see: recon state history).")
@click.pass_context
def state_pull(ctx: click.Context, serial: int | None) -> None:
    """Print the state document (JSON)."""
    mgr = _manager(ctx)
    state = mgr.read() if serial is None else mgr.read_serial(serial)
    if serial is None and mgr.serial == 0:
        click.echo(f"No state stored in {mgr.describe()}.", err=True)
        return
    click.echo(state.to_bytes().decode(), nl=False)


@state_group.command("push")
@click.argument("file", type=ProjectPath(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write even if the lineage differs or the serial is lower.")
@click.pass_context
def state_push(ctx: click.Context, file: Path, force: bool) -> None:
    """Replace the stored state with FILE ('-' reads stdin)."""
    data = sys.stdin.buffer.read() if str(file) == "-" else _read_file(file)
    state = State.from_bytes(data, source=str(file))
    mgr = _manager(ctx)
    with mgr.lock("state push"):
        new = mgr.push(state, force=force)
    click.echo(f"Pushed {file} to {mgr.describe()}: serial {new.serial}, lineage {new.lineage}.")


def _read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read {file}: {exc.strerror}") from exc


@state_group.command("history")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many versions, newest first.",
)
@click.pass_context
def state_history(ctx: click.Context, limit: int) -> None:
    """List the kept versions of the state, newest first: when, who wrote each and its note (a
    guarded rollout's rollback says which gate failed)."""
    mgr = _manager(ctx)
    entries = mgr.history(limit)
    if not entries:
        click.echo(f"No state history in {mgr.describe()}.")
        return
    noted = any(e.note for e in entries)
    header = f"{'SERIAL':>7}  {'WRITTEN (UTC)':<25}  {'SIZE':>9}  {'WHO':<24}  {'LINEAGE':<36}"
    click.echo((header + "  NOTE" if noted else header).rstrip())
    for e in entries:
        line = f"{e.serial:>7}  {e.written_at:<25}  {e.size:>9}  {e.who or '-':<24}  {e.lineage:<36}"
        click.echo((f"{line}  {e.note}" if e.note else line).rstrip())


@state_group.command("migrate")
@click.option(
    "--to", "to", type=click.Choice(["postgres", "file"]), required=True, help="The backend to copy the state to."
)
@click.option("--dsn", default=None, help=f"Target PostgreSQL DSN (default: ${DSN_ENV}).")
@click.option("--name", default="default", show_default=True, help="Target state name (postgres).")
@click.option("--path", "path", default=None, help="Target file, relative to the project (default .recon/state.json).")
@click.pass_context
def state_migrate(ctx: click.Context, to: str, dsn: str | None, name: str, path: str | None) -> None:
    """Copy the state to another backend, keeping its lineage and serial.

    Changes nothing else: recon.yaml still names the old backend until you edit it.
    """
    root: Path = project_root(ctx)
    source = _manager(ctx)
    target_settings: dict[str, Any] = {"backend": to}  # StateSettings' keys
    if to == "postgres":
        if not (dsn or os.environ.get(DSN_ENV)):
            raise click.UsageError(
                f"--to postgres needs the target's connection string: give --dsn DSN, or set {DSN_ENV} "
                "in the environment (keeps the password out of your shell history)",
                ctx,
            )
        target_settings.update({"name": name} | ({"dsn": dsn} if dsn else {}))
    elif path:
        target_settings["path"] = path
    target = open_state_manager(root, StateSettings(**target_settings))
    ctx.call_on_close(target.close)
    if target.describe() == source.describe():
        raise StateError(f"the state is already in {source.describe()}")
    with source.lock("state migrate"), target.lock("state migrate"):
        stored = source.backend.read()
        if stored is None:
            raise StateError(f"{source.describe()} holds no state; nothing to migrate")
        if target.backend.read() is not None:
            raise StateError(f"{target.describe()} already holds a state; refusing to overwrite it")
        target.backend.write(stored.data, stored.serial, stored.lineage, None)
    click.echo(
        f"Copied the state (serial {stored.serial}, lineage {stored.lineage}) "
        f"from {source.describe()} to {target.describe()}."
    )
    shown = {k: v for k, v in target_settings.items() if k != "dsn"}
    click.echo("Now put this in recon.yaml (the old state is left as it was):\n")
    click.echo(yaml.safe_dump({"state": shown}, sort_keys=False).rstrip())
    if to == "postgres":
        click.echo(f"\nand give the DSN in the environment: export {DSN_ENV}=...  (keeps the password out of git)")


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option(
    "--force",
    "-f",
    count=True,
    help="Once: do not ask for confirmation. Twice (--force --force): also break the lock of a "
    "holder that is still running on this host.",
)
@click.pass_context
def force_unlock(ctx: click.Context, lock_id: str, force: int) -> None:
    """Release a lock left by a dead or stuck operation (the ID is in the lock error).

    A lock whose holder still runs on this host is not broken unless asked twice
    (--force --force): that operation may be waiting at its prompt, and two writers can corrupt
    the state. Stop it first, or let it finish."""
    mgr = _manager(ctx)
    holder = mgr.lock_info()
    if holder is not None and holder.id == lock_id and holder_alive(holder) and force < 2:
        raise StateLockedError(
            holder,
            f"refusing to release lock {lock_id}: its holder, {holder.holder()}, is still running "
            f"on this host\n  let it finish, or stop it (kill {holder.pid}) and run this again; "
            f"to break the lock of a running operation anyway: recon force-unlock {lock_id} --force --force",
        )
    if not force:
        held = holder.holder() if holder else "no live holder"
        click.confirm(
            f"Release lock {lock_id} on {mgr.describe()} (held by {held})?\n"
            "Only do this if that operation is dead: two writers can corrupt the state.",
            abort=True,
        )
    mgr.force_unlock(lock_id)
    click.echo(f"Released lock {lock_id} on {mgr.describe()}.")
