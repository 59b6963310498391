"""Whole ``recon apply`` processes on a PostgreSQL state (fake provider): the lock between two
applies, a SIGKILLed holder, and stale saved plans, as issue 5 asks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli.registries import open_state_manager
from reconciler.state.document import State
from states import DSN_ENV

BLUE = "deployment.my-endpoint.blue"


@pytest.fixture
def pg_project(sample_project: Any, pg_server: Any, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The managed sample on the fake provider, its state in PostgreSQL, the DSN in the environment."""
    root: Path = sample_project("blue-deployment.yml")
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text() + "traffic:\n  blue: 100\n")
    name = f"apply-{uuid.uuid4().hex[:8]}"
    configure(root, name, delay_ms=150)
    env = {**os.environ, "NO_COLOR": "1", "RECON_CACHE_DIR": str(tmp_path / "cache"), DSN_ENV: pg_server.dsn}
    return root, env


def configure(root: Path, name: str, **provider: Any) -> None:
    settings = {"workspace": "pgtest", "provider": {"kind": "fake", **provider},
                "state": {"backend": "postgres", "name": name}}
    (root / "recon.yaml").write_text(yaml.safe_dump(settings))


def set_release(root: Path, release: str) -> None:
    path = root / "blue-deployment.yml"
    keep = [ln for ln in path.read_text().splitlines() if not ln.startswith(("environment_variables:", "  RELEASE:"))]
    path.write_text("\n".join(keep) + f'\nenvironment_variables:\n  RELEASE: "{release}"\n')


def start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "-C", str(root), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def finish(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = start(root, env, *args)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def read_state(root: Path, env: dict[str, str]) -> State:
    settings = yaml.safe_load((root / "recon.yaml").read_text())["state"] | {"dsn": env[DSN_ENV]}
    mgr = open_state_manager(root, settings)
    try:
        return mgr.read()
    finally:
        mgr.close()


def assert_converged(root: Path, env: dict[str, str]) -> None:
    again = finish(root, env, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.slow
def test_two_applies_in_a_loop_one_wins_and_no_write_is_lost(pg_project: tuple[Path, dict[str, str]]) -> None:
    root, env = pg_project
    assert finish(root, env, "apply", "--auto-approve").returncode == 0
    lockouts = 0
    for i in range(20):
        set_release(root, f"v{i}")
        before = read_state(root, env).serial
        procs = [start(root, env, "apply", "--auto-approve") for _ in range(2)]
        results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
        codes = sorted(r[0] for r in results)
        assert codes in ([0, 0], [0, 1]), results
        if codes == [0, 1]:
            lockouts += 1
            loser = next(r for r in results if r[0] == 1)
            assert loser[2].startswith("Error: the state is locked by recon apply (pid "), loser[2]
            assert "lock ID " in loser[2].splitlines()[0], loser[2]
            assert env[DSN_ENV].split(":")[2].split("@")[0] not in loser[2]  # no password
        state = read_state(root, env)
        assert state.resources[BLUE].attributes["environment_variables"] == {"RELEASE": f"v{i}"}
        assert state.serial > before
        # every write of this round is in the history, one serial after the other: none lost
        mgr_hist = [e.serial for e in _history(root, env) if e.serial > before]
        assert mgr_hist == list(range(state.serial, before, -1))
    assert lockouts >= 10, f"the two applies overlapped only {lockouts} times of 20"
    assert_converged(root, env)


def _history(root: Path, env: dict[str, str]) -> list[Any]:
    settings = yaml.safe_load((root / "recon.yaml").read_text())["state"] | {"dsn": env[DSN_ENV]}
    mgr = open_state_manager(root, settings)
    try:
        return mgr.history(limit=50)
    finally:
        mgr.close()


def test_apply_killed_mid_way_frees_the_lock_and_the_next_converges(pg_project: tuple[Path, dict[str, str]]) -> None:
    root, env = pg_project
    assert finish(root, env, "apply", "--auto-approve").returncode == 0
    configure(root, yaml.safe_load((root / "recon.yaml").read_text())["state"]["name"], delay_ms=1500)
    set_release(root, "killed")
    proc = start(root, env, "apply", "--auto-approve")
    assert proc.stdout is not None
    while "Rolling out" not in (line := proc.stdout.readline()):
        assert line, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed = time.monotonic()
    configure(root, yaml.safe_load((root / "recon.yaml").read_text())["state"]["name"])
    while True:
        done = finish(root, env, "apply", "--auto-approve")
        if "locked" not in done.stderr:
            break
        assert time.monotonic() - killed < 1.0, "the killed apply's lock outlived it"
    assert done.returncode == 0, done.stdout + done.stderr
    state = read_state(root, env)
    assert state.resources[BLUE].attributes["environment_variables"] == {"RELEASE": "killed"}
    assert_converged(root, env)


def test_stale_saved_plan_is_refused(pg_project: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = pg_project
    assert finish(root, env, "apply", "--auto-approve").returncode == 0
    set_release(root, "a")
    saved = tmp_path / "a.plan"
    assert finish(root, env, "plan", "--out", str(saved)).returncode in (0, 2)
    other = finish(root, env, "apply", "--auto-approve")  # moves the serial on
    assert other.returncode == 0, other.stderr
    stale = finish(root, env, "apply", str(saved))
    assert stale.returncode == 1 and "stale" in stale.stderr.lower(), stale.stderr
    assert "Traceback" not in stale.stderr
