"""``recon state ...`` and ``recon force-unlock`` through click's CliRunner, on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import cli
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
        assert "locked" in result.stderr and lock_id in result.stderr and "operation: apply" in result.stderr
        assert project.manager().read().get("endpoint.a") is not None
    finally:
        proc.kill()
        proc.wait()


def test_force_unlock_asks_checks_the_id_and_releases(runner: CliRunner, project: Target) -> None:
    proc = project.spawn("hold")
    try:
        lock_id = wait_line(proc, "LOCKED").split()[1]
        declined = _recon(runner, project, "force-unlock", lock_id, input="n\n")
        assert declined.exit_code == 1 and project.manager().lock_info() is not None
        wrong = _recon(runner, project, "force-unlock", "0000", "--force")
        assert wrong.exit_code == 1 and "does not match" in wrong.stderr
        done = _recon(runner, project, "force-unlock", lock_id, "--force")
        assert done.exit_code == 0 and f"Released lock {lock_id}" in done.stdout
        _seed(project, "endpoint.after")  # writable again
        rm = _recon(runner, project, "state", "rm", "endpoint.after")
        assert rm.exit_code == 0, rm.output
    finally:
        proc.kill()
        proc.wait()


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
