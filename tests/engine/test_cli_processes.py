"""The real ``recon`` command in separate processes on the fake provider: two applies at once,
SIGKILL at random moments, Ctrl-C once (finish the batch in flight) and twice (stop at once)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.state.document import State

from .test_cli import BLUE, configure, fake_project, set_blue, world


def recon(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", "-C", str(root), *args]


def start(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "RECON_CACHE_DIR": str(root / ".cache"), **(env or {})}
    return subprocess.Popen(
        recon(root, *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(root: Path, *args: str, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = start(root, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def converged(root: Path) -> None:
    """One apply converges; afterwards the plan is empty and the world matches the state exactly."""
    done = finish(root, "apply", "--auto-approve")
    assert done.returncode == 0, done.stdout + done.stderr
    again = finish(root, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
    state = State.from_bytes((root / ".recon" / "state.json").read_bytes())
    objects = world(root).objects()
    assert set(objects) == set(state.resources)
    for address, obj in objects.items():
        if obj["type"] == "deployment":
            ids = [i["id"] for i in obj["instances"]]
            assert len(ids) == len(set(ids)) == state.resources[address].attributes["instance_count"]
            assert len({i["config"] for i in obj["instances"]}) == 1, "instances run mixed configurations"
            assert sorted(state.resources[address].outputs["instances"]) == sorted(ids)
    assert world(root).violations() == []


def test_second_apply_stops_at_once_naming_the_holder(sample_project: Any) -> None:
    root = fake_project(sample_project, delay_ms=400)
    started = time.monotonic()
    procs = [start(root, "apply", "--auto-approve") for _ in range(2)]
    ended: dict[int, float] = {}
    while len(ended) < 2 and time.monotonic() - started < 120:
        for i, proc in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.monotonic() - started
        time.sleep(0.02)
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, ended[i], out, err))
    assert sorted(r[0] for r in results) == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    winner = next(r for r in results if r[0] == 0)
    first = loser[3].splitlines()[0]
    assert first.startswith("Error: the state is locked by recon apply (pid "), loser[3]
    assert "lock ID " in first and " since " in first, loser[3]
    assert loser[1] < winner[1] - 0.5, "the blocked apply must stop at once, not wait for the holder"
    assert world(root).violations() == []


@pytest.mark.slow
def test_apply_killed_at_random_moments_always_converges(sample_project: Any) -> None:
    root = fake_project(sample_project, delay_ms=150)
    rng = random.Random(20261122)
    assert finish(root, "apply", "--auto-approve").returncode == 0
    mid_apply = 0
    for i in range(20):
        set_blue(root, count=rng.choice([1, 2, 3, 5]), release=f"v{i}")
        calls = len(world(root).calls())
        proc = start(root, "apply", "--auto-approve")
        if i % 4:  # most kills land while steps run; every fourth anywhere (startup, refresh, plan)
            _wait_for(proc, "...")
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        state = State.from_bytes((root / ".recon" / "state.json").read_bytes())  # always loads
        blue = state.resources.get(BLUE)
        finished = blue is not None and blue.attributes["environment_variables"] == {"RELEASE": f"v{i}"}
        mid_apply += len(world(root).calls()) > calls and not finished
    assert mid_apply >= 5, "too few kills landed in the middle of an apply to prove anything"
    converged(root)
    blue = State.from_bytes((root / ".recon" / "state.json").read_bytes()).resources[BLUE]
    assert blue.attributes["environment_variables"] == {"RELEASE": "v19"}


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never appeared in: {''.join(seen)}")


def test_ctrl_c_finishes_the_batch_in_flight_and_stops(sample_project: Any) -> None:
    root = fake_project(sample_project)
    set_blue(root, count=10)
    assert finish(root, "apply", "--auto-approve").returncode == 0
    configure(root, delay_ms=2000)
    set_blue(root, count=10, release="v2")
    proc = start(root, "apply", "--auto-approve")
    _wait_for(proc, "rollout batch 1/5 done")
    time.sleep(0.5)  # batch 2 is (almost always) in flight now; either way no further batch may start
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "Interrupt received: finishing the steps in flight" in err
    assert "Apply cancelled." in err
    batches = [c["batch"] for c in world(root).calls() if c["op"] == "roll_batch"]
    assert batches in ([1], [1, 2]), batches  # the batch in flight finished, no other started
    assert f"{BLUE}: rollout cancelled: stopped after batch {len(batches)}/5" in err
    state = State.from_bytes((root / ".recon" / "state.json").read_bytes())
    assert state.resources[BLUE].attributes["environment_variables"] == {}
    configure(root)
    converged(root)


def test_second_ctrl_c_stops_at_once_with_exit_130(sample_project: Any) -> None:
    root = fake_project(sample_project)
    assert finish(root, "apply", "--auto-approve").returncode == 0
    configure(root, delay_ms=10000)
    set_blue(root, count=1, release="v2")
    proc = start(root, "apply", "--auto-approve")
    _wait_for(proc, f"{BLUE}: Rolling out")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - sent < 5.0  # the batch in flight would take 10 s
    assert "Second interrupt: stopping now." in err and "cancelled at once" in err
    state = State.from_bytes((root / ".recon" / "state.json").read_bytes())
    assert state.resources[BLUE].status == "failed"  # unknown outcome: applied again next time
    assert "locked" not in finish(root, "plan").stderr  # the lock was released
    configure(root)
    converged(root)


@pytest.mark.slow
def test_apply_killed_at_every_engine_crash_point_converges(sample_project: Any, tmp_path: Path) -> None:
    """Exhaustive over the engine's crash points (intent recorded; provider done, result not
    recorded) of one apply that scales, rolls and routes: after each kill the plan repairs every
    drift item, and one apply converges with the world exactly as recorded."""
    from tests.e2e.killloop import plan_covers_drift

    root = fake_project(sample_project)
    assert finish(root, "apply", "--auto-approve").returncode == 0
    set_blue(root, count=3, release="v2")
    snapshot = tmp_path / "before"
    shutil.copytree(root / ".recon", snapshot)
    trace = tmp_path / "trace.txt"
    env = {"RECON_CRASH_TRACE": str(trace)}
    assert finish(root, "apply", "--auto-approve", env=env).returncode == 0
    points = trace.read_text().splitlines()
    assert len(points) >= 6 and any(p.startswith("engine.intent") for p in points), points
    for n in range(1, len(points) + 1):
        shutil.rmtree(root / ".recon")
        shutil.copytree(snapshot, root / ".recon")
        killed = finish(root, "apply", "--auto-approve", env={"RECON_CRASH_AT": f"*#{n}"})
        assert killed.returncode == -signal.SIGKILL, (n, points[n - 1], killed.stdout)
        plan_covers_drift(root, f"killed at {points[n - 1]}")
        converged(root)
        assert State.from_bytes((root / ".recon" / "state.json").read_bytes()).resources[BLUE].pending is None
