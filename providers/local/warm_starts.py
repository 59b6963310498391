"""Warm starts: the CLI's side of ``launcher.py``, one launcher process per configuration.

A rollout or a scale-up starts several instances of one configuration. Instead of N interpreters
each importing the scoring script's libraries, ``Launcher`` starts one ``launcher.py`` that imports
them once (the modules an earlier instance of the deployment had loaded after ``init()``), and
asks it to fork each instance. The launcher lives only as long as the operation that needs it
(a scale, a create, the batches of one rollout) and never longer than this process: it ends when
the control socket closes, so a killed ``recon apply`` leaves no launcher behind.

Everything here may fail without harm: ``LauncherError`` means "start the instances cold", as
when ``warm_start: false``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from providers.shared import procs
from providers.shared.runtime import LAUNCHER_SCRIPT
from providers.shared.warm import Channel, LauncherError

__all__ = ["Launcher", "LauncherError"]


class Launcher:
    """A running ``launcher.py``: ``fork`` asks it for one instance and returns the child's pid.

    ``env`` is the environment of the configuration's instances (the launcher's children inherit
    it, and ``/proc/<pid>/environ`` shows it); ``timeout`` bounds the wait for its imports.
    """

    def __init__(self, python: str, env: dict[str, str], cwd: Path, log_path: Path,
                 modules_file: Path, record_path: Path, timeout: float) -> None:
        ours, theirs = socket.socketpair()
        argv = [python, str(LAUNCHER_SCRIPT), "--control-fd", str(theirs.fileno()),
                "--modules-file", str(modules_file)]
        started_at = time.monotonic()
        try:
            self.process = procs.spawn(argv, env, log_path, cwd, pass_fds=(theirs.fileno(),))
        except OSError as ex:
            ours.close()
            raise LauncherError(f"cannot start {LAUNCHER_SCRIPT.name}: {ex}") from ex
        finally:
            theirs.close()
        self.record_path = record_path
        procs.write_json(record_path, {"pid": self.process.pid, "start_time": self.process.start_time})
        self._socket = ours
        self._channel = Channel(ours, f"the launcher (pid {self.process.pid})")
        ours.settimeout(timeout)
        try:
            hello = self._channel.greeting()
        except LauncherError:
            self.close()
            raise
        self.preloaded = int(hello.get("preloaded") or 0)
        self.failed = [str(n) for n in hello.get("failed") or []]
        self.import_seconds = time.monotonic() - started_at
        ours.settimeout(30.0)  # a fork is answered in milliseconds

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self._socket.fileno() >= 0 and procs.is_alive(self.process.pid, self.process.start_time)

    def fork(self, instance_id: int, argv: list[str], log_path: Path, pid_file: Path,
             record: dict[str, Any]) -> procs.Started:
        """One instance: the child runs ``host.main(argv)`` with stdout/stderr appended to
        ``log_path`` and writes ``record`` (with its pid and start time) to ``pid_file`` first."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pid = self._channel.fork(instance_id, argv, str(log_path), str(pid_file), record)
        return procs.Started(pid, procs.start_time(pid))

    def close(self) -> None:
        """End the launcher (its instances keep running) and forget its record."""
        self._channel.close()
        if not procs.wait_dead(self.process.pid, self.process.start_time, 2.0):
            procs.kill(self.process.pid, self.process.start_time)
        procs.reap(self.process.pid)
        self.record_path.unlink(missing_ok=True)
