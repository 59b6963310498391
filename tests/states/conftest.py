"""Fixtures for the state backend contract suite: one ``target`` per backend.

``pg_server`` starts a throwaway PostgreSQL server once per session (tests/pgserver.py). Without
server binaries the PostgreSQL tests skip, unless CI is set, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgserver
from tests.states.state_support import Target


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


def _target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if kind == "file":
        t = Target("file", tmp_path, {"backend": "file"})
    else:
        server: pgserver.PgServer = request.getfixturevalue("pg_server")
        name = f"t-{uuid.uuid4().hex[:12]}"
        t = Target("postgres", tmp_path, {"backend": "postgres", "dsn": server.dsn, "name": name}, server.password)
    yield t
    t.close()


@pytest.fixture(params=["file", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    yield from _target(request.param, request, tmp_path)


@pytest.fixture
def pg_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """PostgreSQL only: for what only a DSN has (a password)."""
    yield from _target("postgres", request, tmp_path)
