"""The router: the table in force, and each request's way from a client connection to an answer.

- ``reload`` reads the table file and its keys and swaps them in (``apply``) in one go on the event
  loop: a request sees the old or the new table, never a mix. An unreadable table is logged and the
  old one stays.
- ``handle`` routes a request: the router's own URLs, a deployment named in
  ``azureml-model-deployment``, else the split; mirroring picks its copies here.
- ``finished`` writes an answer back, then starts the mirrored copy: the live answer never waits for it.
- With a table ``discovery`` section (Kubernetes), each deployment's upstreams are its ready pods as the
  router's own watch sees them (discovery.py), not the table's list; the table still decides which
  deployments get traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from typing import Any

from .clients import ClientConn
from .discovery import Discovered, PodWatch
from .messages import Request, Response, serialize, simple
from .pools import Pools, Upstream
from .status import CONTROL_PATHS, Telemetry, log, own_answer
from .table import LIMITS, Credentials, DeploymentSpec, Split, Table, load
from .upstream import Exchange

NO_TRAFFIC_MESSAGE = (
    "No valid deployments to route to. Please check that the endpoint has at least one deployment with "
    "positive weight values or use a deployment specific header to route."
)


def _stamp(path: str | None) -> Any:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Router:
    """Holds the table in force and serves requests with it."""

    def __init__(self, table_path: str, access_log: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.table_path = table_path
        self.telemetry = Telemetry(access_log)
        self.loop = loop
        self.table: Table | None = None
        self.credentials = Credentials()
        self.instance_key = b""  # what the router presents to the instances (x-recon-instance-key)
        self.pools = Pools()
        self.split = Split()
        self.stamps: tuple[Any, ...] = ()
        self.active = 0
        self.mirrors = 0
        self.stopping = False
        self.clients: dict[ClientConn, None] = {}  # oldest first
        self.limits: tuple[int, ...] = tuple(LIMITS.values())  # in LIMITS' order
        self.id_prefix = uuid.uuid4().hex[:12]
        self.id_counter = 0
        self.watch: PodWatch | None = None
        self.discovered: Discovered | None = None  # None until the watch's first list

    # -- table

    def reload(self, reason: str) -> None:
        try:
            table, credentials = load(self.table_path)
        except (OSError, ValueError, KeyError) as ex:
            self.stamps = (_stamp(self.table_path), self.stamps[1] if self.stamps else None)
            log("error", f"table not loaded ({reason}): {ex}; keeping the table in force")
            if self.table is None:
                raise
            return
        self.stamps = (_stamp(self.table_path), _stamp(table.keys_file))
        self.apply(table, credentials)
        log("info", f"table loaded ({reason}) version={table.version} endpoint={table.endpoint}")

    def apply(self, table: Table, credentials: Credentials) -> None:
        """Swap in a new table: pools and upstreams are kept where they persist (in-flight counts)."""
        self.credentials, self.instance_key = credentials, credentials.instance_key
        self.split.update(table)
        self.table = table
        self.limits = table.limit_values()
        self._watch(table)
        self._update_pools()

    def _update_pools(self) -> None:
        if self.table is not None:
            self.pools.update(self.deployments(self.table))
            self.telemetry.metrics.attach(self.pools.by_name.values())

    def deployments(self, table: Table) -> dict[str, DeploymentSpec]:
        """The table's deployments, each with its pods' addresses as the watch sees them (once it has
        listed them) instead of the table's list."""
        found, spec = self.discovered, table.discovery
        if spec is None or found is None:
            return table.deployments
        groups = dict(spec.groups)
        out = {}
        for name, dep in table.deployments.items():
            group = groups.get(name)
            if group is not None:
                ups = found.get(group, ())
                dep = dataclasses.replace(dep, upstreams=tuple(a for a, _ in ups), digests=tuple(d for _, d in ups))
            out[name] = dep
        return out

    def _watch(self, table: Table) -> None:
        """Start (or restart, when the table watches other pods) the watch of the table's discovery."""
        spec = table.discovery
        same = (self.watch is not None and spec is not None
                and dataclasses.replace(self.watch.spec, groups=()) == dataclasses.replace(spec, groups=()))
        if same:
            return
        if self.watch is not None:
            self.watch.stop()
            self.watch, self.discovered = None, None
        if spec is not None:
            loop = self.loop
            self.watch = PodWatch(spec, lambda found: loop.call_soon_threadsafe(self.on_discovered, found))
            self.watch.start()
            log("info", f"watching pods {spec.selector} in {spec.namespace} for the pools")

    def on_discovered(self, found: Discovered) -> None:
        """The watch saw the ready pods change (on the event loop)."""
        self.discovered = found
        self._update_pools()
        sizes = ", ".join(f"{g}={len(ups)}" for g, ups in sorted(found.items())) or "none"
        log("info", f"pools follow the cluster: ready pods {sizes}")

    def check_files(self) -> None:
        table = self.table
        now = (_stamp(self.table_path), _stamp(table.keys_file if table else None))
        if now != self.stamps:
            self.reload("file changed")

    # -- connections

    def authorized(self, req: Request) -> bool:
        return self.credentials.authorized(req)

    @property
    def denial(self) -> str:
        """What a 401 says: the credential this endpoint takes (a key, or a token)."""
        return self.credentials.denial

    def evict_one(self) -> bool:
        """At the connection cap: close the oldest connection with nothing authorized in progress."""
        for client in self.clients:
            if client.idle:
                client.stopped = True
                client.transport.close()
                del self.clients[client]
                return True
        return False

    def sweep(self) -> None:
        """Close the connections past their header, body or idle deadline."""
        now = time.monotonic()
        for client in [c for c in self.clients if c.deadline < now]:
            if client.busy:
                continue
            if client.req is not None:  # part of a request came: say why it ends
                client.fail(408, "Request timed out (headers or body too slow)")
            else:
                client.stopped = True
                client.transport.close()

    def close_idle_clients(self) -> None:
        for client in list(self.clients):
            if not client.busy:
                client.transport.close()

    # -- requests

    def handle(self, client: ClientConn, req: Request) -> None:
        """Route one request; the answer comes back through finished() (or at once for local answers)."""
        self.active += 1
        rid = b""
        if not req.request_id:  # one id for the live request, its copy and the log
            self.id_counter += 1
            req.request_id = f"{self.id_prefix}-{self.id_counter}"
            rid = req.request_id.encode()
        if req.target in CONTROL_PATHS:
            resp = own_answer(req, self.table, self.pools, self.active - 1, self.stopping, self.telemetry.metrics,
                              self.watch.state if self.watch else None)
            self._answer(client, req, resp, "", time.perf_counter(), own=False)
            return
        mirror_to = None
        pools = self.pools.by_name
        if req.deployment_header:
            name: str | None = req.deployment_header
            if name not in pools:
                resp = simple(404, f"Deployment {name} not found for this endpoint")
                self._answer(client, req, resp, "", time.perf_counter())
                return
        else:
            name = self.split.pick()
            if name is None:
                self._answer(client, req, simple(404, NO_TRAFFIC_MESSAGE), "", time.perf_counter())
                return
            mirror_to = self.split.mirror_choice()
        pool = pools[name]
        if not pool.upstreams:
            resp = simple(503, f"Deployment {pool.spec.name} has no ready instance")
            self._answer(client, req, resp, pool.spec.name, time.perf_counter())
            return
        Exchange(self, client, req, pool, mirror_to, rid).start()

    def finished(self, ex: Exchange, resp: Response | None) -> None:
        self.telemetry.exchange_done(ex.last_up, ex.client is None, ex.outcome, ex.started, ex.pool.spec.name)
        if ex.client is None:  # a mirrored copy: its answer is thrown away
            self.mirrors -= 1
            return
        assert resp is not None
        self._answer(ex.client, ex.req, resp, ex.pool.spec.name, ex.started, ex.served_by, ex.last_up is None)
        if ex.mirror_to is not None:  # after the live answer is written: it never waits for the copy
            pool = self.pools.by_name.get(ex.mirror_to)
            if pool is not None and pool.upstreams:
                self.mirrors += 1
                Exchange(self, None, ex.req, pool, None, ex.request_id).start()

    def retried(self, ex: Exchange, up: Upstream) -> None:
        """``ex`` got no byte back from ``up`` and goes to another instance."""
        self.telemetry.metrics.retried(up, ex.client is None)

    def refused(self, status: int) -> None:
        self.telemetry.refused(status)

    def _answer(self, client: ClientConn, req: Request, resp: Response, dep: str, started: float,
                addr: str = "", own: bool = True) -> None:
        self.active -= 1
        keep = req.keep_alive and not self.stopping
        extra: list[tuple[bytes, bytes]] = []
        if not any(name == b"x-request-id" for name, _ in resp.headers):
            extra.append((b"x-request-id", req.request_id.encode("latin-1")))
        if dep:
            extra.append((b"azureml-model-deployment", dep.encode()))
        client.respond(serialize(resp, keep, extra), keep)
        self.telemetry.request_done(req, resp, dep, addr, started, own)
