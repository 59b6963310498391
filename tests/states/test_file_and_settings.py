"""File-backend specifics (atomic write layout, lock files) and choosing a backend from settings."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.cli.registries import open_state_manager
from reconciler.model.errors import ConfigError, LockInfo, StateError, StateLockedError
from reconciler.model.settings import StateSettings
from states import DSN_ENV, open_backend
from states.file import FileBackend
from states.postgres import PostgresBackend
from tests.states.state_support import with_resources


def _info(i: str) -> LockInfo:
    return LockInfo(id=i, operation="apply", who="bob@host", created="2024-01-01T00:00:00+00:00")


def test_write_keeps_the_previous_version_and_leaves_no_temp_files(tmp_path: Path) -> None:
    mgr = open_state_manager(tmp_path, {})
    s1 = mgr.write(with_resources(mgr.read(), "endpoint.a"))
    mgr.write(with_resources(s1, "endpoint.b"))
    recon = tmp_path / ".recon"
    backup = json.loads((recon / "state.json.backup").read_text())
    assert backup["serial"] == 1 and list(backup["resources"]) == ["endpoint.a"]
    # each kept version, and who wrote it (user@host)
    assert sorted(p.name for p in (recon / "history").iterdir()) == ["1.json", "1.who", "2.json", "2.who"]
    assert not [p for p in recon.rglob("*") if p.name.endswith((".tmp", ".link"))]


def test_history_of_a_custom_path_does_not_clash(tmp_path: Path) -> None:
    a = open_state_manager(tmp_path, {"path": "st/prod.json"})
    b = open_state_manager(tmp_path, {"path": "st/dev.json"})
    a.write(a.read())
    b.write(b.read())
    b.write(b.read())
    assert [e.serial for e in a.history()] == [1] and [e.serial for e in b.history()] == [2, 1]


def test_lock_info_file_names_holder_and_pid_and_a_stale_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    holder = FileBackend(path)
    holder.lock(replace(_info("L1"), pid=os.getpid(), host=socket.gethostname()))  # as the manager fills it
    raw = json.loads(path.with_name("state.json.lock.info").read_text())
    assert raw["id"] == "L1" and raw["who"] == "bob@host" and raw["pid"] == os.getpid()
    assert raw["host"] == socket.gethostname()
    holder._locking._release()  # as if the holder died: the flock is gone, the info file is left
    assert path.with_name("state.json.lock.info").exists()
    assert FileBackend(path).lock_info() is None
    FileBackend(path).lock(_info("L2"))  # not blocked by the leftover


def test_force_unlock_replaces_the_lock_file_of_a_stuck_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    stuck, rescuer = FileBackend(path), FileBackend(path)
    stuck.lock(_info("STUCK"))
    with pytest.raises(StateLockedError):
        rescuer.lock(_info("NEW"))
    rescuer.force_unlock("STUCK")
    rescuer.lock(_info("NEW"))
    stuck.unlock("STUCK")  # the stuck one finishing late must not free the new holder's lock
    assert FileBackend(path).lock_info() == _info("NEW")
    with pytest.raises(StateLockedError):
        FileBackend(path).lock(_info("THIRD"))


def test_write_refuses_bytes_whose_header_disagrees(tmp_path: Path) -> None:
    b = FileBackend(tmp_path / "state.json")
    mgr = open_state_manager(tmp_path, {"path": "state.json"})
    doc = mgr.read().model_copy(update={"serial": 5}).to_bytes()
    with pytest.raises(StateError, match="differ"):
        b.write(doc, 1, "x", None)


def test_settings_choose_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)
    default = open_backend(tmp_path, StateSettings())
    assert isinstance(default, FileBackend) and default.path == tmp_path / ".recon" / "state.json"
    custom = open_backend(tmp_path, StateSettings(path="x/s.json", history=3))
    assert isinstance(custom, FileBackend) and custom.path == tmp_path / "x" / "s.json"
    with pytest.raises(ConfigError, match=DSN_ENV):
        open_backend(tmp_path, StateSettings(backend="postgres"))
    monkeypatch.setenv(DSN_ENV, "postgresql://u:topsecret@db.example:5433/recon")
    pg = open_backend(tmp_path, StateSettings(backend="postgres", name="prod", connect_timeout=3))
    assert isinstance(pg, PostgresBackend) and pg.name == "prod"
    assert pg.describe() == "postgres u@db.example:5433/recon (state 'prod')"
    assert "topsecret" not in pg.describe()


def test_unreachable_database_fails_fast_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = PostgresBackend(f"postgresql://u:topsecret@127.0.0.1:{port}/db", connect_timeout=2)
    with pytest.raises(StateError) as err:
        b.read()
    assert "cannot connect" in str(err.value) and "topsecret" not in str(err.value)
