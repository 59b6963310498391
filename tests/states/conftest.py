"""Fixtures for the state backend contract suite: one ``target`` per backend.

``pg_server`` starts a throwaway PostgreSQL server once per session (tests/pgserver.py). Without
server binaries the PostgreSQL tests skip, unless CI is set, where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.statemgr import StateManager, open_state_manager
from states import StateBackend, open_backend

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import pgserver  # noqa: E402

WORKER = Path(__file__).with_name("state_worker.py")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    try:
        pgserver.find_bindir()
    except pgserver.PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {exc}")
        pytest.skip(str(exc))
    with pgserver.pg_server() as server:
        yield server


@dataclass
class Target:
    """One state store (a file under ``root`` or a named state in PostgreSQL) and its settings."""

    kind: str
    root: Path
    settings: dict[str, Any]
    password: str = ""
    _opened: list[Any] = field(default_factory=list)

    def backend(self) -> StateBackend:
        b = open_backend(self.root, self.settings)
        self._opened.append(b)
        return b

    def manager(self) -> StateManager:
        m = open_state_manager(self.root, self.settings)
        self._opened.append(m)
        return m

    def spawn(self, mode: str, *args: str) -> subprocess.Popen[str]:
        """A separate process running tests/states/state_worker.py against this store."""
        cmd = [sys.executable, str(WORKER), mode, str(self.root), json.dumps(self.settings), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        for obj in self._opened:
            close = getattr(obj, "close", None)
            if callable(close):
                close()


@pytest.fixture(params=["file", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "file":
        t = Target("file", tmp_path, {"backend": "file"})
    else:
        server: pgserver.PgServer = request.getfixturevalue("pg_server")
        name = f"t-{uuid.uuid4().hex[:12]}"
        t = Target("postgres", tmp_path, {"backend": "postgres", "dsn": server.dsn, "name": name}, server.password)
    yield t
    t.close()
