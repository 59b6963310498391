"""Process supervision for the local provider: detached processes, pid files, /proc checks.

Instances and routers outlive the CLI that started them: they run in their own session
(``start_new_session=True``) with stdout/stderr appended to a log file. What recon knows about one
is a small JSON pid file (pid, the process start time read from ``/proc/<pid>/stat`` so that a reused
pid is never mistaken for ours, port, ...). Every check goes through ``/proc``; nothing relies on the
CLI staying alive or on being the parent of the process.

Every process recon starts carries marks in its environment (``RECON_INSTANCE_ID``,
``RECON_STATE_DIR``, ``RECON_WORKSPACE``, ``RECON_ROLE``) so that strays can be found again by
scanning ``/proc/*/environ``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARK_ID = "RECON_INSTANCE_ID"
MARK_STATE_DIR = "RECON_STATE_DIR"
MARK_WORKSPACE = "RECON_WORKSPACE"
MARK_ROLE = "RECON_ROLE"

# The Popen objects of the processes this CLI started. Kept so that Python never warns about a
# child "still running" when one is garbage collected; dead children are reaped by ``reap()``.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


# -- /proc ---------------------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def reap(pid: int) -> None:
    """Collect the exit status of a child of ours that has ended (so it is no zombie)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def is_alive(pid: int, started: int | None) -> bool:
    """True when ``pid`` runs, is not a zombie, and (when known) started at ``started``."""
    if pid <= 0:
        return False
    reap(pid)
    state = _state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return started is None or start_time(pid) == started


def read_environ(pid: int) -> dict[str, str] | None:
    """The environment a process was started with (None when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def marked_processes() -> Iterator[tuple[int, dict[str, str]]]:
    """Every process whose environment carries ``RECON_INSTANCE_ID`` (pid, environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if MARK_ID.encode() + b"=" not in raw:
            continue
        env = read_environ(pid)
        if env is not None and MARK_ID in env and is_alive(pid, None):
            yield pid, env


def find_marked(state_dir: Path, prefix: str) -> dict[str, int]:
    """Mark -> pid of live processes of ``state_dir`` whose mark starts with ``prefix``."""
    return {mark: pid for mark, pid in find_all_marked(state_dir, prefix)}


def find_all_marked(state_dir: Path, prefix: str) -> list[tuple[str, int]]:
    """(mark, pid) of every live process of ``state_dir`` whose mark starts with ``prefix``
    (the instances a launcher forked share its mark: there may be several of one mark)."""
    return [
        (env[MARK_ID], pid)
        for pid, env in marked_processes()
        if env.get(MARK_STATE_DIR) == str(state_dir) and env[MARK_ID].startswith(prefix)
    ]


# -- starting and stopping ----------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    pid: int
    start_time: int | None


def spawn(argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path,
          pass_fds: tuple[int, ...] = ()) -> Started:
    """Start ``argv`` detached (own session), stdout and stderr appended to ``log_path``; of this
    process's descriptors only ``pass_fds`` are inherited."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # logs are the owner's only
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as log:
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )
    _CHILDREN[child.pid] = child
    return Started(child.pid, start_time(child.pid))


def stop(pid: int, started: int | None, grace: float = 10.0) -> None:
    """SIGTERM the process (and its process group), then SIGKILL after ``grace`` seconds."""
    if not is_alive(pid, started):
        return
    _signal_group(pid, signal.SIGTERM)
    if wait_dead(pid, started, grace):
        return
    _signal_group(pid, signal.SIGKILL)
    wait_dead(pid, started, 5.0)


def terminate(pid: int, started: int | None) -> None:
    """SIGTERM the process and its group without waiting (``stop`` waits)."""
    if is_alive(pid, started):
        _signal_group(pid, signal.SIGTERM)


def kill(pid: int, started: int | None) -> None:
    """SIGKILL the process and its group without waiting."""
    if is_alive(pid, started):
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Our processes lead their own session, so the group id is the pid; signal the group so that
    # anything they started goes too, and the process itself in case it changed group.
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def wait_dead(pid: int, started: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def signal_process(pid: int, started: int | None, sig: signal.Signals) -> bool:
    if not is_alive(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True


# -- files ---------------------------------------------------------------------------------------
def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write JSON atomically (tmp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (half-written by a crash)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) between threads and processes, released on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last ``lines`` lines of a text file (empty when it does not exist)."""
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except OSError:
        return []


def read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
