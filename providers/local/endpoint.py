"""An endpoint on the local provider: its router is a process on this machine.

``LocalEndpoint`` adds the router process to the table and keys of ``EndpointFiles``::

    run/<endpoint>/router.json    pid file: pid, start_time, port
    run/<endpoint>/router.pyz     the router program it runs (providers.shared.runtime.router_zipapp)

A table change reaches the router by SIGHUP; ``GET /-/router`` is read with the instance key.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from providers.shared import probes, procs
from providers.shared.endpoint_files import ROUTER_START_TIMEOUT, EndpointFiles
from providers.shared.runtime import router_zipapp
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError


class LocalEndpoint(EndpointFiles):
    """The table and keys of ``EndpointFiles``, served by a router process."""

    @property
    def pidfile(self) -> Path:
        return self.run / "router.json"

    def reload(self) -> bool:
        router = self.router()
        if router is None:
            return False
        procs.signal_process(router["pid"], router.get("start_time"), signal.SIGHUP)
        return True

    def router(self) -> dict[str, Any] | None:
        """The pid file of the router when that router is alive."""
        data = procs.read_json(self.pidfile)
        if isinstance(data, dict) and procs.is_alive(int(data.get("pid", 0)), data.get("start_time")):
            return data
        return None

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``GET /-/router`` of the running router (None when it does not answer)."""
        router = self.router()
        if router is None:
            return None
        return self.read_status(int(router["port"]), self.status_token(), timeout)

    def metrics_address(self) -> tuple[int, str | None] | None:
        router = self.router()
        return (int(router["port"]), self.status_token()) if router is not None else None

    def start_router(self, extra_env: dict[str, str]) -> dict[str, Any]:
        """Start the router (on the endpoint's recorded port, or a new free one) and wait for it."""
        running = self.router()
        if running is not None and self.status() is not None:
            return running
        if running is not None:  # alive but not answering: replace it
            procs.stop(running["pid"], running.get("start_time"), grace=2.0)
        # A router started by a crashed apply before its pid file was written holds the port.
        for mark, pid in procs.find_marked(self.state_dir, f"{self.name}/router").items():
            if mark == f"{self.name}/router":
                procs.stop(pid, procs.start_time(pid), grace=2.0)
        port = self.chosen_port() or 0
        answer_file = self.run / "router.port"
        answer_file.unlink(missing_ok=True)
        argv = [sys.executable, str(router_zipapp(self.run)), "--table", str(self.table), "--host", "127.0.0.1",
                "--port", str(port), "--port-file", str(answer_file)]
        env = {**os.environ, **extra_env}
        started = procs.spawn(argv, env, self.log, cwd=self.run)
        crash_point("router.spawned", self.name)  # running, not yet recorded in its pid file
        pid_data = {"pid": started.pid, "start_time": started.start_time, "port": port}
        procs.write_json(self.pidfile, pid_data)
        deadline = time.monotonic() + ROUTER_START_TIMEOUT
        while time.monotonic() < deadline:
            if not procs.is_alive(started.pid, started.start_time):
                raise PermanentError(
                    f"endpoint {self.name}: the router exited while starting"
                    + (f" (port {port} may be taken)" if port else ""),
                    detail=procs.tail(self.log, 30),
                )
            got = procs.read_port(answer_file)
            if got and probes.http_get(got, "/-/router", 1.0, self.status_token()) is not None:
                pid_data["port"] = got
                procs.write_json(self.pidfile, pid_data)
                if not port:
                    self.portfile.write_text(f"{got}\n")
                return pid_data
            time.sleep(0.05)
        procs.stop(started.pid, started.start_time, grace=2.0)
        raise PermanentError(f"endpoint {self.name}: the router did not start within {ROUTER_START_TIMEOUT:.0f}s",
                             detail=procs.tail(self.log, 30))

    def stop_router(self) -> None:
        data = procs.read_json(self.pidfile)
        if isinstance(data, dict):
            procs.stop(int(data.get("pid", 0)), data.get("start_time"), grace=10.0)
        self.pidfile.unlink(missing_ok=True)
