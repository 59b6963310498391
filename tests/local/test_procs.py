"""Process supervision helpers: /proc start times guard against pid reuse; detached processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from providers.shared import procs


def test_start_time_tells_a_reused_pid_apart(tmp_path: Path) -> None:
    started = procs.spawn([sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ),
                          tmp_path / "sleep.log", cwd=tmp_path)
    try:
        assert started.start_time is not None
        assert procs.is_alive(started.pid, started.start_time)
        assert not procs.is_alive(started.pid, started.start_time + 1)  # same pid, another process
        assert os.getpgid(started.pid) == started.pid  # its own session and group: outlives the CLI
    finally:
        procs.stop(started.pid, started.start_time, grace=2.0)
    assert not procs.is_alive(started.pid, started.start_time)  # reaped, not a zombie


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    started = procs.spawn([sys.executable, "-c", code], dict(os.environ), tmp_path / "stubborn.log", cwd=tmp_path)
    while "up" not in (tmp_path / "stubborn.log").read_text():
        assert procs.is_alive(started.pid, started.start_time)
    procs.stop(started.pid, started.start_time, grace=0.3)
    assert not procs.is_alive(started.pid, started.start_time)
    assert procs.tail(tmp_path / "stubborn.log") == ["up"]


def test_write_json_is_atomic_and_read_json_tolerates_garbage(tmp_path: Path) -> None:
    target = tmp_path / "a" / "pid.json"
    procs.write_json(target, {"pid": 1}, mode=0o600)
    assert procs.read_json(target) == {"pid": 1}
    assert (target.stat().st_mode & 0o777) == 0o600
    assert list(target.parent.iterdir()) == [target]
    target.write_text('{"pid": ')  # half-written by a crash
    assert procs.read_json(target) is None
