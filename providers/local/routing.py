"""Endpoints on the local provider: one router process per endpoint, its routing table and keys.

Layout under ``state_dir``::

    run/<endpoint>/router.json    pid file: pid, start_time, port
    run/<endpoint>/port           the endpoint's port, chosen once and kept across restarts
    run/<endpoint>/table.json     the routing table (docs/runtime.md), written atomically under a lock
    keys/<endpoint>.json          primaryKey / secondaryKey, mode 0600, never in state or outputs
    keys/<endpoint>.instance.json instanceKey, mode 0600: the router presents it to the endpoint's
                                  instances (which answer nothing else but GET /) and the control
                                  plane to the router's ``GET /-/router``
    logs/<endpoint>/router.log    mode 0600

The table is the one document both the control plane (traffic, pools of ready instances) and the
router read; every change is a locked read-modify-write that bumps ``version``, then SIGHUP, then
(when the router runs) a wait until ``GET /-/router`` reports the new version.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from providers.local import procs
from reconciler.errors import ConfigError, Diagnostic, PermanentError

ROUTER_SCRIPT = Path(__file__).resolve().parent / "router.py"
ROUTER_START_TIMEOUT = 20.0
# The router's per-endpoint limits and their defaults (router.py LIMITS; docs/security.md).
ROUTER_LIMITS = {"max_body_bytes": 100 * 1024 * 1024, "max_connections": 1000, "header_timeout_ms": 10_000,
                 "body_timeout_ms": 30_000, "idle_timeout_ms": 60_000}


def router_limits(settings: dict[str, Any], endpoint: str) -> dict[str, int]:
    """The limits of ``endpoint``'s router from the provider setting ``router_limits`` (recon.yaml):
    ``{<limit>: N, ..., endpoints: {<endpoint>: {<limit>: N}}}``, defaults for the rest."""
    raw = settings.get("router_limits") or {}
    where = "provider.router_limits"
    if not isinstance(raw, dict):
        raise _limit_error(where, raw, "a mapping of limit names to whole numbers")
    per = raw.get("endpoints") or {}
    if not isinstance(per, dict):
        raise _limit_error(f"{where}.endpoints", per, "a mapping of endpoint names to limits")
    out = dict(ROUTER_LIMITS)
    layers = [("", where, {k: v for k, v in raw.items() if k != "endpoints"})]
    layers += [(str(name).lower(), f"{where}.endpoints.{name}", v) for name, v in per.items()]
    for name, path, layer in layers:  # every layer is checked; the endpoint's own applies last
        if not isinstance(layer, dict):
            raise _limit_error(path, layer, "a mapping of limit names to whole numbers")
        for key, value in layer.items():
            if key not in ROUTER_LIMITS:
                raise _limit_error(f"{path}.{key}", value, "one of " + ", ".join(ROUTER_LIMITS))
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _limit_error(f"{path}.{key}", value, "a whole number of at least 1")
            if name in ("", endpoint.lower()):
                out[key] = value
    return out


def _limit_error(path: str, value: Any, want: str) -> ConfigError:
    return ConfigError(Diagnostic(f"{value!r} is not valid; expected {want}", file="recon.yaml",
                                  path=path))


class EndpointFiles:
    """Paths and operations of one endpoint's router, table and keys."""

    def __init__(self, state_dir: Path, name: str, workspace: str = "") -> None:
        self.state_dir = state_dir
        self.name = name.lower()
        self.workspace = workspace
        self.run = state_dir / "run" / self.name
        self.pidfile = self.run / "router.json"
        self.portfile = self.run / "port"
        self.table = self.run / "table.json"
        self.keys = state_dir / "keys" / f"{self.name}.json"
        self.instance_key_file = instance_key_path(state_dir, self.name)
        self.log = state_dir / "logs" / self.name / "router.log"

    # -- keys ------------------------------------------------------------------------------------
    def ensure_keys(self) -> None:
        """Make the endpoint's two keys unless they exist (a restarted router keeps its keys)."""
        if self.read_keys() is not None:
            return
        self.keys.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys.parent, 0o700)
        data = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32)}
        procs.write_json(self.keys, data, mode=0o600)
        os.chmod(self.keys, 0o600)

    def instance_key(self) -> str:
        """The endpoint's instance key, made on first use."""
        return ensure_instance_key(self.instance_key_file)

    def status_token(self) -> str | None:
        """What ``GET /-/router`` is read with: the instance key when there is one (it makes none: a plan
        only reads), else the endpoint's primary key."""
        data = procs.read_json(self.instance_key_file)
        if isinstance(data, dict) and data.get("instanceKey"):
            return str(data["instanceKey"])
        keys = self.read_keys()
        return keys["primaryKey"] if keys else None

    def read_keys(self) -> dict[str, str] | None:
        data = procs.read_json(self.keys)
        if isinstance(data, dict) and data.get("primaryKey") and data.get("secondaryKey"):
            return {"primaryKey": str(data["primaryKey"]), "secondaryKey": str(data["secondaryKey"])}
        return None

    # -- table -----------------------------------------------------------------------------------
    def read_table(self) -> dict[str, Any]:
        data = procs.read_json(self.table)
        if isinstance(data, dict):
            return data
        return {"version": 0, "endpoint": self.name, "auth_mode": "key", "keys_file": str(self.keys),
                "deployments": {}, "traffic": {}, "mirror_traffic": {}}

    def update_table(self, mutate: Callable[[dict[str, Any]], None], wait: bool = True) -> int:
        """Apply ``mutate`` to the table under the lock, write it, tell the router; the new version."""
        with procs.file_lock(self.run / "table.lock"):
            table = self.read_table()
            mutate(table)
            version = int(table.get("version") or 0) + 1
            self.instance_key()
            table.update(version=version, endpoint=self.name, keys_file=str(self.keys),
                         instance_key_file=str(self.instance_key_file))
            procs.write_json(self.table, table)
        router = self.router()
        if router is not None:
            procs.signal_process(router["pid"], router.get("start_time"), signal.SIGHUP)
            if wait:
                self.wait_version(version)
        return version

    # -- router process --------------------------------------------------------------------------
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
        got = procs.http_get(int(router["port"]), "/-/router", timeout, self.status_token())
        if got is None or got[0] != 200:
            return None
        try:
            data = json.loads(got[1])
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def wait_version(self, version: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(timeout=1.0)
            if status is None:
                return False
            if status.get("version") == version:
                return True
            time.sleep(0.02)
        return False

    def wait_drained(self, upstreams: list[str], timeout: float) -> None:
        """Wait (bounded) until the router has no request in flight to any of ``upstreams``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(timeout=1.0)
            if status is None:
                return
            busy = _in_flight(status, upstreams)
            if busy == 0:
                return
            time.sleep(0.02)

    def chosen_port(self) -> int | None:
        return procs.read_port(self.portfile)

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
        argv = [sys.executable, str(ROUTER_SCRIPT), "--table", str(self.table), "--host", "127.0.0.1",
                "--port", str(port), "--port-file", str(answer_file)]
        env = {**os.environ, **extra_env}
        started = procs.spawn(argv, env, self.log, cwd=self.run)
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
            if got and procs.http_get(got, "/-/router", 1.0, self.status_token()) is not None:
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


def instance_key_path(state_dir: Path, endpoint: str) -> Path:
    return state_dir / "keys" / f"{endpoint.lower()}.instance.json"


def ensure_instance_key(path: Path) -> str:
    """Read the instance key at ``path``, or make it (mode 0600, folder 0700) when there is none."""
    data = procs.read_json(path)
    if isinstance(data, dict) and data.get("instanceKey"):
        return str(data["instanceKey"])
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with procs.file_lock(path.parent / f".{path.name}.lock"):
        data = procs.read_json(path)
        if isinstance(data, dict) and data.get("instanceKey"):
            return str(data["instanceKey"])
        key = secrets.token_urlsafe(32)
        procs.write_json(path, {"instanceKey": key}, mode=0o600)
        os.chmod(path, 0o600)
        return key


def _in_flight(status: dict[str, Any], upstreams: list[str]) -> int:
    total = 0
    draining = status.get("draining") or {}
    for up in upstreams:
        value = draining.get(up)
        if isinstance(value, dict):
            value = value.get("in_flight", 0)
        total += int(value or 0)
    for dep in (status.get("deployments") or {}).values():
        for up, info in ((dep or {}).get("upstreams") or {}).items():
            if up in upstreams and isinstance(info, dict):
                total += int(info.get("in_flight") or 0)
    return total
