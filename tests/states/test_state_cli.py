"""``recon state ...`` and ``recon force-unlock`` through click's CliRunner, on every backend."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.model.errors import StateLockedError
from reconciler.state.backend import SupportsLocking, who_am_i
from reconciler.state.document import State
from states import DSN_ENV
from tests.states.state_support import Target, wait_line, with_resources


@pytest.fixture
def project(target: Target, monkeypatch: pytest.MonkeyPatch) -> Target:
    """recon.yaml naming the target; the PostgreSQL DSN comes from the environment, as advised."""
    section = {k: v for k, v in target.settings.items() if k != "dsn"}
    if target.kind == "postgres":
        monkeypatch.setenv(DSN_ENV, target.settings["dsn"])
    (target.root / "recon.yaml").write_text(yaml.safe_dump({"state": section}))
    return target


def _recon(runner: CliRunner, t: Target, *args: str, input: str | None = None) -> Result:
    result = runner.invoke(cli, ["-C", str(t.root), *args], input=input)
    assert "Traceback" not in result.output
    if t.password:
        assert t.password not in result.output
    return result


def _seed(t: Target, *addresses: str) -> State:
    mgr = t.manager()
    state = mgr.read()
    for a in addresses:
        state = mgr.write(with_resources(state, a))
    return state


def test_list_show_and_pull(runner: CliRunner, project: Target) -> None:
    state = _seed(project, "endpoint.ep", "deployment.ep.blue")
    listed = _recon(runner, project, "state", "list")
    assert listed.exit_code == 0 and listed.stdout.split() == ["deployment.ep.blue", "endpoint.ep"]
    shown = _recon(runner, project, "state", "show", "endpoint.ep")
    assert shown.exit_code == 0 and "endpoint.ep" in shown.stdout and "fake" in shown.stdout
    pulled = _recon(runner, project, "state", "pull")
    assert pulled.exit_code == 0 and State.model_validate_json(pulled.stdout) == state
    first = _recon(runner, project, "state", "pull", "--serial", "1")
    assert json.loads(first.stdout)["serial"] == 1 and list(json.loads(first.stdout)["resources"]) == ["endpoint.ep"]


def test_show_unknown_address_is_a_clean_error(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.ep")
    result = _recon(runner, project, "state", "show", "endpoint.nope")
    assert result.exit_code == 1 and "no resource 'endpoint.nope' in the state" in result.stderr


def test_rm_removes_and_bumps_the_serial(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.ep", "deployment.ep.blue", "deployment.ep.green")
    result = _recon(runner, project, "state", "rm", "deployment.ep.blue", "deployment.ep.green")
    assert result.exit_code == 0 and "Removed deployment.ep.blue" in result.stdout
    after = project.manager().read()
    assert after.serial == 4 and list(after.resources) == ["endpoint.ep"]
    missing = _recon(runner, project, "state", "rm", "endpoint.ep", "endpoint.zz")
    assert missing.exit_code == 1 and "endpoint.zz" in missing.stderr
    assert project.manager().read().serial == 4  # all or nothing


def test_push_refuses_older_serial_unless_forced(runner: CliRunner, project: Target, tmp_path: Path) -> None:
    _seed(project, "endpoint.a", "endpoint.b")
    old = tmp_path / "old.json"
    old.write_bytes(_recon(runner, project, "state", "pull", "--serial", "1").stdout_bytes)
    refused = _recon(runner, project, "state", "push", str(old))
    assert refused.exit_code == 1 and "lower than the stored serial 2" in refused.stderr
    forced = _recon(runner, project, "state", "push", str(old), "--force")
    assert forced.exit_code == 0, forced.output
    restored = project.manager().read()
    assert restored.serial == 3 and list(restored.resources) == ["endpoint.a"]
    other = tmp_path / "other.json"
    other.write_bytes(State(serial=10).to_bytes())
    lineage = _recon(runner, project, "state", "push", str(other))
    assert lineage.exit_code == 1 and "lineage" in lineage.stderr


def test_push_reads_stdin_with_a_dash(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.a", "endpoint.b")
    pulled = _recon(runner, project, "state", "pull", "--serial", "1").stdout
    pushed = _recon(runner, project, "state", "push", "-", "--force", input=pulled)
    assert pushed.exit_code == 0, pushed.output
    assert list(project.manager().read().resources) == ["endpoint.a"]


def test_history_lists_versions_newest_first(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.a", "endpoint.b", "endpoint.c")
    result = _recon(runner, project, "state", "history")
    assert result.exit_code == 0
    serials = [int(line.split()[0]) for line in result.stdout.splitlines()[1:]]
    assert serials == [3, 2, 1]


def test_writing_command_refused_while_locked(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.a")
    proc = project.spawn("hold")
    try:
        lock_id = wait_line(proc, "LOCKED").split()[1]
        result = _recon(runner, project, "state", "rm", "endpoint.a")
        assert result.exit_code == 1
        first, *details = result.stderr.splitlines()
        # one complete line first (who, doing what, since when, the lock ID), what to do after it
        assert re.fullmatch(
            rf"Error: the state is locked by recon apply \(pid {proc.pid}, [^@\s]+@{re.escape(socket.gethostname())}\) "
            rf"since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(lock ID {lock_id}\)",
            first,
        ), result.stderr
        assert details == [
            "  wait for it to finish (--lock-timeout 5m waits up to 5 minutes); if that operation is dead, "
            f"run: recon force-unlock {lock_id}"
        ]
        assert project.manager().read().get("endpoint.a") is not None
    finally:
        proc.kill()
        proc.wait()


def test_force_unlock_asks_checks_the_id_and_releases(runner: CliRunner, project: Target) -> None:
    proc = project.spawn("hold")
    try:
        lock_id = wait_line(proc, "LOCKED").split()[1]
        holder = project.manager().lock_info()
        assert holder is not None and holder.pid == proc.pid and holder.host == socket.gethostname()
        wrong = _recon(runner, project, "force-unlock", "0000", "--force")
        assert wrong.exit_code == 1 and "does not match" in wrong.stderr
        # its holder runs on this host: neither a "y" nor one --force breaks its lock
        asked = _recon(runner, project, "force-unlock", lock_id, input="y\n")
        once = _recon(runner, project, "force-unlock", lock_id, "--force")
        for refused in (asked, once):
            assert refused.exit_code == 1 and refused.stdout == ""
            assert refused.stderr.splitlines()[0] == (
                f"Error: refusing to release lock {lock_id}: its holder, {holder.holder()}, is still "
                "running on this host"
            )
            assert refused.stderr.splitlines()[1] == (
                f"  let it finish, or stop it (kill {proc.pid}) and run this again; to break the lock of a "
                f"running operation anyway: recon force-unlock {lock_id} --force --force"
            )
        assert project.manager().lock_info() is not None
        done = _recon(runner, project, "force-unlock", lock_id, "--force", "--force")
        assert done.exit_code == 0 and f"Released lock {lock_id}" in done.stdout
        _seed(project, "endpoint.after")  # writable again
        rm = _recon(runner, project, "state", "rm", "endpoint.after")
        assert rm.exit_code == 0, rm.output
    finally:
        proc.kill()
        proc.wait()


def test_force_unlock_of_a_dead_holders_lock_asks_once(runner: CliRunner, project: Target) -> None:
    """A holder on another host (or dead) cannot be checked from here: asking once is enough."""
    mgr = project.manager()
    info = replace(mgr.new_lock_info("apply"), host="another-host", pid=4242)
    backend = project.backend()
    assert isinstance(backend, SupportsLocking)
    backend.lock(info)
    declined = _recon(runner, project, "force-unlock", info.id, input="n\n")
    assert declined.exit_code == 1 and project.manager().lock_info() is not None
    assert "held by recon apply (pid 4242, " in declined.stdout
    done = _recon(runner, project, "force-unlock", info.id, input="y\n")
    assert done.exit_code == 0 and f"Released lock {info.id}" in done.stdout


def test_a_holder_whose_lock_was_broken_is_told_before_it_writes(project: Target) -> None:
    mgr = project.manager()
    with mgr.lock("destroy") as info:
        mgr.check_lock_held()  # still ours
        project.manager().force_unlock(info.id)  # someone else breaks it
        with pytest.raises(StateLockedError) as err:
            mgr.check_lock_held()
    assert str(err.value) == (
        f"the state lock of this destroy (lock ID {info.id}) was broken by recon force-unlock while it ran"
        "; nothing was changed"
    )


def test_history_names_who_wrote_each_version(runner: CliRunner, project: Target) -> None:
    _seed(project, "endpoint.a", "endpoint.b")
    result = _recon(runner, project, "state", "history")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()[1:]
    who = rows[0].split()[3]
    assert who == who_am_i() and who != "-"
    assert len(rows) == 2 and all(row.split()[3] == who for row in rows)
    help_text = _recon(runner, project, "state", "history", "--help").stdout
    assert "Show at most this many versions, newest first." in help_text


def test_migrate_to_postgres_without_a_dsn_names_the_option(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)
    source = Target("file", tmp_path, {"backend": "file"})
    _seed(source, "endpoint.a")
    result = _recon(runner, source, "state", "migrate", "--to", "postgres")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"Error: --to postgres needs the target's connection string: give --dsn DSN, or set {DSN_ENV} "
        "in the environment (keeps the password out of your shell history)"
    )
    assert "recon.yaml" not in result.stderr


def test_migrate_file_to_postgres_and_back_keeps_lineage_and_serial(
    runner: CliRunner, pg_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv(DSN_ENV, pg_server.dsn)
    root = tmp_path / "proj"
    root.mkdir()
    file_t = Target("file", root, {"backend": "file"})
    state = _seed(file_t, "endpoint.a", "deployment.a.blue")

    def run(*args: str) -> Result:
        r = runner.invoke(cli, ["-C", str(root), *args])
        assert pg_server.password not in r.output
        assert r.exit_code == 0, r.output
        return r

    out = run("state", "migrate", "--to", "postgres", "--name", "migrated")
    assert "backend: postgres" in out.stdout and "name: migrated" in out.stdout and DSN_ENV in out.stdout
    (root / "recon.yaml").write_text(yaml.safe_dump({"state": {"backend": "postgres", "name": "migrated"}}))
    in_pg = State.model_validate_json(run("state", "pull").stdout)
    assert (in_pg.lineage, in_pg.serial, in_pg.resources) == (state.lineage, state.serial, state.resources)

    again = runner.invoke(cli, ["-C", str(root), "state", "migrate", "--to", "postgres", "--name", "migrated"])
    assert again.exit_code == 1 and "already" in again.stderr

    run("state", "migrate", "--to", "file", "--path", "back/state.json")
    (root / "recon.yaml").write_text(yaml.safe_dump({"state": {"backend": "file", "path": "back/state.json"}}))
    back = State.model_validate_json(run("state", "pull").stdout)
    assert (back.lineage, back.serial, back.resources) == (state.lineage, state.serial, state.resources)
    # the copy keeps working as a state: the next write continues the serial
    mgr = Target("file", root, {"backend": "file", "path": "back/state.json"}).manager()
    assert mgr.write(with_resources(mgr.read(), "endpoint.z")).serial == state.serial + 1


def test_history_shows_a_version_s_note(runner: CliRunner, project: Target) -> None:
    state = _seed(project, "endpoint.a")
    project.manager().write(state, note="rollback of deployment.ep.blue: error_rate failed")
    _seed(project, "endpoint.b")
    rows = _recon(runner, project, "state", "history").stdout.splitlines()
    assert rows[0].split()[-1] == "NOTE"
    assert rows[2].endswith("  rollback of deployment.ep.blue: error_rate failed") and not rows[1].endswith("failed")
