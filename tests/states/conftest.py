"""Fixtures for the state backend contract suite: one ``target`` per backend.

``pg_server`` starts a throwaway PostgreSQL server once per session (tests/pgserver.py). Without
server binaries the PostgreSQL tests skip, unless CI is set, where that is a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
# pytest puts tests/ on sys.path, where this folder (tests/states, no __init__.py) would pass for
# the ``states`` package as a namespace package under a plain ``pytest`` run: put the repository
# first and drop such an impostor if something imported it already.
if str(TESTS.parent) not in sys.path:
    sys.path.insert(0, str(TESTS.parent))
if getattr(sys.modules.get("states"), "__file__", "") is None:
    del sys.modules["states"]
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

import pgserver  # noqa: E402
from state_support import Target  # noqa: E402


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
