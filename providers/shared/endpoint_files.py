"""An endpoint whose routing table and keys are files of the project's state folder (the local and
Docker providers), and the router serving them, however it runs.

Layout under ``state_dir``::

    run/<endpoint>/port           the endpoint's port, chosen once and kept across restarts
    run/<endpoint>/table.json     the routing table (docs/runtime.md), written atomically under a lock
    run/<endpoint>/router.pyz     the router program (providers.shared.runtime.router_zipapp)
    keys/<endpoint>.json          primaryKey / secondaryKey / tokenSigningKey (what signs the endpoint's
                                  tokens under auth_mode aml_token), mode 0600, never in state or outputs
    keys/<endpoint>.instance.json instanceKey, mode 0600: the router presents it to the endpoint's
                                  instances (which answer nothing else but GET /) and the control
                                  plane to the router's ``GET /-/router``
    logs/<endpoint>/router.log    mode 0600

Every change of the table is a locked read-modify-write that bumps ``version``, then a reload of the
router (``reload``: SIGHUP to a process or a container), then (when the router runs) a wait until
``GET /-/router`` reports the new version. How the router runs is the provider's: a subclass
implements ``router``, ``status``, ``reload``, ``start_router`` and ``stop_router``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from providers.shared import probes, procs
from providers.shared.endpoint_tokens import SIGNING_KEY, issue, new_signing_key
from providers.shared.routing_table import Mutation, RoutingTable, new_table
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError
from reconciler.plan.provider import EndpointToken, Keys

ROUTER_START_TIMEOUT = 20.0
STATUS_TOKEN_LIFETIME_S = 60  # a token recon reads its own router's status with (docker: no instance key)


class EndpointFiles(RoutingTable):
    """Paths and operations of one endpoint's table and keys; the router itself is a subclass's."""

    def __init__(self, state_dir: Path, name: str, workspace: str = "") -> None:
        self.state_dir = state_dir
        self.name = name.lower()
        self.workspace = workspace
        self.run = state_dir / "run" / self.name
        self.portfile = self.run / "port"
        self.table = self.run / "table.json"
        self.keys = state_dir / "keys" / f"{self.name}.json"
        self.instance_key_file = instance_key_path(state_dir, self.name)
        self.log = state_dir / "logs" / self.name / "router.log"

    # -- keys ------------------------------------------------------------------------------------
    def ensure_keys(self) -> None:
        """Make the endpoint's two keys and its token signing key, each unless it exists (a restarted
        router keeps its keys; a keys file of an older recon gets its signing key)."""
        if self.read_keys() is not None and self.token_signing_key() is not None:
            return
        self.keys.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys.parent, 0o700)
        with procs.file_lock(self.keys.parent / f".{self.keys.name}.lock"):
            current = procs.read_json(self.keys)
            current = current if isinstance(current, dict) else {}
            data = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32),
                    SIGNING_KEY: new_signing_key(), **{k: v for k, v in current.items() if v}}
            if data != current:
                procs.write_json(self.keys, data, mode=0o600)
        os.chmod(self.keys, 0o600)

    def token_signing_key(self) -> str | None:
        """What signs the endpoint's tokens (None: no keys file yet, or one of an older recon)."""
        data = procs.read_json(self.keys)
        return str(data[SIGNING_KEY]) if isinstance(data, dict) and data.get(SIGNING_KEY) else None

    def instance_key(self) -> str:
        """The endpoint's instance key, made on first use."""
        return ensure_instance_key(self.instance_key_file)

    def status_token(self) -> str | None:
        """What ``GET /-/router`` is read with: the instance key when there is one (it makes none: a plan
        only reads), else the endpoint's own credential (``status_tokens``)."""
        found = self.status_tokens()
        return found[0] if found else None

    def status_tokens(self) -> list[str]:
        """What ``GET /-/router`` may be read with, best first: the instance key when there is one; else
        the endpoint's credential under the auth mode of its table (a short-lived token under
        ``aml_token``, the primary key under ``key``), then the other mode's (a table just written may
        not be the one the router serves yet)."""
        data = procs.read_json(self.instance_key_file)
        if isinstance(data, dict) and data.get("instanceKey"):
            return [str(data["instanceKey"])]
        keys, signing_key = self.read_keys(), self.token_signing_key()
        found = [keys["primaryKey"]] if keys else []
        if signing_key:
            found.append(issue(signing_key, self.name, "", STATUS_TOKEN_LIFETIME_S).access_token)
        if self.read_table().get("auth_mode") == "aml_token":
            found.reverse()
        return found

    @property
    def uri_host(self) -> str:
        """The host of the endpoint's scoring URI."""
        return "127.0.0.1"

    def credentials(self, recorded_port: int | None, token_lifetime_s: int) -> Keys | EndpointToken:
        """The keys and the scoring URI (on the endpoint's port; else the recorded one), or under
        ``auth_mode: aml_token`` (as the router's table says) a token it minted."""
        keys = self.read_keys()
        if keys is None:
            raise PermanentError(f"endpoint {self.name} has no keys on this machine ({self.keys} is missing)")
        port = self.chosen_port() or recorded_port
        uri = f"http://{self.uri_host}:{port}/score"
        if self.read_table().get("auth_mode") != "aml_token":
            return Keys(keys["primaryKey"], keys["secondaryKey"], uri)
        signing_key = self.token_signing_key()
        if signing_key is None:
            raise PermanentError(f"endpoint {self.name} has no token signing key on this machine; run recon apply")
        return issue(signing_key, self.name, uri, token_lifetime_s)

    def read_keys(self) -> dict[str, str] | None:
        data = procs.read_json(self.keys)
        if isinstance(data, dict) and data.get("primaryKey") and data.get("secondaryKey"):
            return {"primaryKey": str(data["primaryKey"]), "secondaryKey": str(data["secondaryKey"])}
        return None

    # -- table (the operations are RoutingTable's) --------------------------------------------------
    def read_table(self) -> dict[str, Any]:
        data = procs.read_json(self.table)
        if isinstance(data, dict):
            return data
        return new_table(self.name, keys_file=str(self.keys))

    def update_table(self, mutate: Mutation, wait: bool = True) -> int:
        """Apply ``mutate`` to the table under the lock, write it, tell the router; the new version."""
        with procs.file_lock(self.run / "table.lock"):
            table = self.read_table()
            version = self.next_version(table, mutate)
            procs.write_json(self.table, table)
        crash_point("table.written", self.name)  # written, not yet loaded: the router serves the old one
        if self.reload() and wait:
            self.wait_version(version)
        return version

    def table_fields(self) -> dict[str, Any]:
        """The keys file, and the instance key's (made on first use)."""
        return {"keys_file": str(self.keys), **self.instance_key_fields()}

    def instance_key_fields(self) -> dict[str, Any]:
        """Where the router finds the key it presents to the instances (none: instances reachable by
        the router alone need none)."""
        self.instance_key()
        return {"instance_key_file": str(self.instance_key_file)}

    # -- the endpoint's life --------------------------------------------------------------------
    def open(self, auth_mode: str | None, limits: dict[str, int], prior_port: int | None) -> bool:
        """The endpoint's folder, port (``prior_port``, the recorded one, kept), keys and first table;
        whether it is new (nothing of it existed: a failed start then ``discard``s what was made)."""
        self.run.mkdir(parents=True, exist_ok=True)
        fresh = not self.table.exists()
        if self.chosen_port() is None and prior_port:
            self.portfile.write_text(f"{prior_port}\n")
        self.ensure_keys()
        self.set_auth_mode(auth_mode, limits, wait=False)
        return fresh

    def create(self, auth_mode: str | None, limits: dict[str, int], prior_port: int | None,
               start: Callable[[], str]) -> str:
        """``open`` the endpoint, then ``start`` its router (what it returns: where the router listens);
        a failed start of a new endpoint removes what was made."""
        fresh = self.open(auth_mode, limits, prior_port)
        try:
            return start()
        except PermanentError:
            if fresh:
                self.discard()
            raise

    def discard(self) -> None:
        """Stop the router and remove everything of the endpoint: table, port, keys."""
        self.stop_router()
        self.keys.unlink(missing_ok=True)
        shutil.rmtree(self.run, ignore_errors=True)

    # -- the router: how it runs is the provider's ----------------------------------------------
    def router(self) -> dict[str, Any] | None:
        """The running router (a small dict with at least its ``port``), or None when none runs."""
        raise NotImplementedError

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``GET /-/router`` of the running router (None when it does not answer)."""
        raise NotImplementedError

    def reload(self) -> bool:
        """Tell a running router to read the table again; False when no router runs."""
        raise NotImplementedError

    def start_router(self, extra_env: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def stop_router(self) -> None:
        raise NotImplementedError

    def read_status(self, port: int, token: str | list[str] | None, timeout: float) -> dict[str, Any] | None:
        """``GET /-/router`` on 127.0.0.1:``port`` read with ``token`` (or the first of a list the router
        does not refuse with 401), as a dict (None: no answer)."""
        for one in token if isinstance(token, list) and token else [token if isinstance(token, str) else None]:
            got = probes.http_get(port, "/-/router", timeout, one)
            if got is None:
                return None
            if got[0] == 401:
                continue
            if got[0] != 200:
                return None
            try:
                data = json.loads(got[1])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        return None

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

    # -- metrics (guarded rollouts: providers/shared/windows.py) ---------------------------------
    def metrics_address(self) -> tuple[int, str | None] | None:
        """The loopback port of the running router and the key its own URLs are read with (None: no
        router runs)."""
        raise NotImplementedError

    def router_metrics(self, timeout: float = 2.0) -> list[tuple[str, str | None]]:
        """``GET /-/metrics`` of every router of the endpoint (one here): ``(replica, text)``, the text
        None when the router does not answer; empty when no router runs."""
        where = self.metrics_address()
        if where is None:
            return []
        got = probes.http_get(where[0], "/-/metrics", timeout, where[1])
        text = got[1].decode("utf-8", "replace") if got is not None and got[0] == 200 else None
        return [(f"127.0.0.1:{where[0]}", text)]

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
