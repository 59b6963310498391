"""Endpoint router: key check, traffic split, mirroring, header routing, limits, hot reload.

A single file, standard library only (uvloop when importable), so the Docker provider can run the same
file in a container: ``python router.py --table FILE --host 127.0.0.1 --port P``. See docs/runtime.md for
the table format and the answers, which follow Azure managed online endpoints.

Invariants:
- the routing table is swapped in one assignment on the event loop: a request sees the old or the new
  table, never a mix; requests already sent to an upstream finish there (drain);
- a request that got no byte back from an upstream (closed keep-alive connection, refused connect while
  an instance is being removed) is retried on another upstream of the same deployment;
- mirrored copies start after the live answer is written and only take a free slot: the live answer is
  never delayed or changed by them;
- keys are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hmac
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_BODY = 100 * 1024 * 1024
HEAD_LIMIT = 64 * 1024
NO_TRAFFIC_MESSAGE = (
    "No valid deployments to route to. Please check that the endpoint has at least one deployment with "
    "positive weight values or use a deployment specific header to route."
)
# Headers that belong to one connection, never forwarded (plus the key, which instances must not see).
HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                 b"upgrade", b"content-length", b"authorization", b"expect", b"proxy-authorization"})
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout", 413: "Payload Too Large",
           424: "Failed Dependency", 429: "Too Many Requests", 400: "Bad Request", 431:
           "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable"}


class TableError(ValueError):
    """The routing table cannot be used (the old one stays in force)."""


class Retryable(Exception):
    """The upstream gave no byte back: the request may go to another upstream."""


def log(level: str, message: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    sys.stdout.write(f"{stamp} router {level} {message}\n")


# ---------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    upstreams: tuple[str, ...]
    request_timeout_ms: int = 5000
    max_concurrent: int = 1
    max_queue_wait_ms: int = 500


@dataclass(frozen=True)
class Table:
    """A parsed routing table (docs/runtime.md). Names are lowercased."""

    endpoint: str
    auth_mode: str
    keys_file: str | None
    deployments: dict[str, DeploymentSpec]
    traffic: dict[str, int]
    mirror: dict[str, int]
    version: Any = None


def _int(d: dict[str, Any], key: str, default: int, where: str) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TableError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _percentages(raw: Any, where: str, deployments: dict[str, DeploymentSpec]) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TableError(f"{where}: expected an object of deployment name to percentage")
    out: dict[str, int] = {}
    for name, pct in raw.items():
        if not isinstance(pct, int) or isinstance(pct, bool) or not 0 <= pct <= 100:
            raise TableError(f"{where}.{name}: expected a whole percentage 0-100, got {pct!r}")
        if name.lower() not in deployments:
            raise TableError(f"{where}.{name}: no such deployment in 'deployments'")
        if pct:
            out[name.lower()] = pct
    return out


def parse_table(doc: Any) -> Table:
    if not isinstance(doc, dict):
        raise TableError("the table must be a JSON object")
    deployments: dict[str, DeploymentSpec] = {}
    raw_deps = doc.get("deployments") or {}
    if not isinstance(raw_deps, dict):
        raise TableError("deployments: expected an object")
    for name, d in raw_deps.items():
        where = f"deployments.{name}"
        ups = d.get("upstreams", []) if isinstance(d, dict) else None
        if not isinstance(ups, list) or not all(isinstance(u, str) and ":" in u for u in ups):
            raise TableError(f"{where}.upstreams: expected a list of 'host:port'")
        deployments[name.lower()] = DeploymentSpec(
            name=name, upstreams=tuple(ups),
            request_timeout_ms=_int(d, "request_timeout_ms", 5000, where),
            max_concurrent=max(1, _int(d, "max_concurrent_requests_per_instance", 1, where)),
            max_queue_wait_ms=_int(d, "max_queue_wait_ms", 500, where))
    auth_mode = doc.get("auth_mode", "key")
    keys_file = doc.get("keys_file")
    if auth_mode != "none" and not isinstance(keys_file, str):
        raise TableError(f"keys_file: required for auth_mode {auth_mode!r}")
    return Table(endpoint=str(doc.get("endpoint", "")), auth_mode=auth_mode, keys_file=keys_file,
                 deployments=deployments,
                 traffic=_percentages(doc.get("traffic"), "traffic", deployments),
                 mirror=_percentages(doc.get("mirror_traffic"), "mirror_traffic", deployments),
                 version=doc.get("version"))


def read_keys(path: str) -> tuple[bytes, ...]:
    with open(path) as f:
        doc = json.load(f)
    keys = tuple(str(doc[k]).encode() for k in ("primaryKey", "secondaryKey") if doc.get(k))
    if not keys:
        raise TableError(f"{path}: no primaryKey or secondaryKey")
    return keys


# ------------------------------------------------------------------------------------------ upstreams


class Upstream:
    """One instance address: in-flight count and a LIFO pool of idle keep-alive connections."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        host, _, port = addr.rpartition(":")
        self.host, self.port = host, int(port)
        self.in_flight = 0
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.pool: Pool | None = None  # the deployment it serves now; None once removed (draining)

    def close_idle(self) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()


class Pool:
    """A deployment at run time: its upstreams, the concurrency limit and the queue of waiting requests."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.upstreams: list[Upstream] = []
        self.waiters: collections.deque[asyncio.Future[Upstream | None]] = collections.deque()
        self.active = 0
        self.rr = 0

    def try_acquire(self, exclude: set[str] | None = None) -> Upstream | None:
        ups, limit = self.upstreams, self.spec.max_concurrent
        n = len(ups)
        best: Upstream | None = None
        best_i = 0
        for i in range(n):  # least in-flight first, round robin among equals
            j = (self.rr + i) % n
            u = ups[j]
            if u.in_flight < limit and (best is None or u.in_flight < best.in_flight) and \
                    (not exclude or u.addr not in exclude):
                best, best_i = u, j
        if best is not None:
            self.rr = (best_i + 1) % n
            best.in_flight += 1
            self.active += 1
        return best

    async def acquire(self, exclude: set[str] | None = None) -> Upstream | None:
        """A slot on an upstream, waiting up to max_queue_wait_ms; None: too many pending (429)."""
        up = self.try_acquire(exclude)
        if up is not None:
            return up
        capacity = self.spec.max_concurrent * len(self.upstreams)
        if self.active + len(self.waiters) >= 2 * capacity or self.spec.max_queue_wait_ms == 0:
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Upstream | None] = loop.create_future()
        self.waiters.append(fut)
        timer = loop.call_later(self.spec.max_queue_wait_ms / 1000,
                                lambda: fut.done() or fut.set_result(None))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() is not None:
                release(fut.result())
            raise
        finally:
            timer.cancel()

    def dispatch(self) -> None:
        """Hand free slots to waiting requests, oldest first."""
        while self.waiters:
            if self.waiters[0].done():
                self.waiters.popleft()
                continue
            up = self.try_acquire()
            if up is None:
                return
            self.waiters.popleft().set_result(up)


def release(up: Upstream) -> None:
    up.in_flight -= 1
    pool = up.pool
    if pool is not None:
        pool.active -= 1
        pool.dispatch()
    elif up.in_flight == 0:
        up.close_idle()


# --------------------------------------------------------------------------------------------- HTTP


@dataclass
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    auth: bytes = b""
    deployment_header: str = ""
    request_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise BadRequest(413, "Request body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as ex:
        raise BadRequest(431, "Request header fields too large") from ex
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadRequest(400, "Malformed request line")
    method, target, version = parts
    keep_alive = version == b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = []
    length = 0
    chunked = expect = False
    req = Request(method, target, headers, b"", keep_alive)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise BadRequest(400, "Bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            v = value.lower()
            req.keep_alive = b"close" not in v and (keep_alive or b"keep-alive" in v)
        elif name == b"authorization":
            req.auth = value
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
        elif name == b"azureml-model-deployment":
            req.deployment_header = value.decode("latin-1").strip().lower()
        elif name == b"x-request-id":
            req.request_id = value.decode("latin-1")
        if name not in HOP:
            headers.append((name, value))
    if length > MAX_BODY:
        raise BadRequest(413, "Request body too large")
    if expect and (length or chunked):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if chunked:
        req.body = await read_chunked(reader)
    elif length:
        req.body = await reader.readexactly(length)
    return req


async def read_response(reader: asyncio.StreamReader, method: bytes) -> tuple[Response, bool]:
    """(response, reusable) from an upstream; Retryable when not a byte came back."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as ex:
        if not ex.partial:
            raise Retryable("connection closed before any answer") from ex
        raise
    lines = head[:-4].split(b"\r\n")
    first = lines[0].split(b" ", 2)
    status = int(first[1])
    reason = first[2] if len(first) > 2 else b""
    reusable = first[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            reusable = reusable and b"close" not in value.lower()
        elif name not in HOP:
            headers.append((name, value))
    if method == b"HEAD" or status in (204, 304) or status < 200:
        body = b""
    elif chunked:
        body = await read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        reusable = False
    return Response(status, reason, headers, body), reusable


def simple(status: int, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return Response(status, REASONS.get(status, "Error").encode(), [(b"content-type", b"application/json")], body)


def serialize(resp: Response, keep_alive: bool, extra: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
    for name, value in resp.headers:
        out.append(name + b": " + value + b"\r\n")
    for name, value in extra:
        out.append(name + b": " + value + b"\r\n")
    out.append(b"content-length: %d\r\n" % len(resp.body))
    if not keep_alive:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    out.append(resp.body)
    return b"".join(out)


async def exchange(up: Upstream, req: Request) -> Response:
    """Send one request to an upstream over a pooled connection; Retryable when nothing came back."""
    reused = bool(up.idle)
    if reused:
        reader, writer = up.idle.pop()
    else:
        try:
            reader, writer = await asyncio.open_connection(up.host, up.port, limit=HEAD_LIMIT)
        except OSError as ex:
            raise Retryable(f"connect to {up.addr} failed: {ex}") from ex
    head = [b"%s %s HTTP/1.1\r\n" % (req.method, req.target)]
    for name, value in req.headers:
        head.append(name + b": " + value + b"\r\n")
    for k, v in req.extra.items():
        head.append(k.encode() + b": " + v.encode("latin-1") + b"\r\n")
    head.append(b"content-length: %d\r\n\r\n" % len(req.body))
    ok = False
    try:
        writer.write(b"".join(head) + req.body)
        if len(req.body) > 65536:
            await writer.drain()
        resp, reusable = await read_response(reader, req.method)
        ok = reusable
        return resp
    except (ConnectionError, OSError) as ex:
        raise Retryable(f"{up.addr}: {ex}") from ex
    finally:
        if ok and up.pool is not None:
            up.idle.append((reader, writer))
        else:
            writer.close()


# ------------------------------------------------------------------------------------------- router


class Router:
    """Holds the table in force and serves requests with it."""

    def __init__(self, table_path: str, access_log: bool) -> None:
        self.table_path = table_path
        self.access_log = access_log
        self.table: Table | None = None
        self.keys: tuple[bytes, ...] = ()
        self.pools: dict[str, Pool] = {}
        self.upstreams: dict[str, Upstream] = {}
        self.removed: dict[str, Upstream] = {}  # upstreams no longer in the table, still draining
        self.split: list[tuple[str, int]] = []
        self.split_current: dict[str, int] = {}
        self.mirror_acc = 0
        self.stamps: tuple[Any, ...] = ()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.active = 0
        self.stopping = False
        self.connections: dict[asyncio.StreamWriter, bool] = {}  # writer -> busy

    # -- table

    def _stamp(self, path: str | None) -> Any:
        if not path:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self, reason: str) -> None:
        try:
            with open(self.table_path) as f:
                table = parse_table(json.load(f))
            keys = read_keys(table.keys_file) if table.auth_mode != "none" and table.keys_file else ()
        except (OSError, ValueError, KeyError) as ex:
            self.stamps = (self._stamp(self.table_path), self.stamps[1] if self.stamps else None)
            log("error", f"table not loaded ({reason}): {ex}; keeping the table in force")
            if self.table is None:
                raise
            return
        self.stamps = (self._stamp(self.table_path), self._stamp(table.keys_file))
        self.apply(table, keys)
        log("info", f"table loaded ({reason}) version={table.version} endpoint={table.endpoint}")

    def apply(self, table: Table, keys: tuple[bytes, ...]) -> None:
        """Swap in a new table: pools and upstreams are kept where they persist (in-flight counts)."""
        pools: dict[str, Pool] = {}
        upstreams: dict[str, Upstream] = {}
        previous = {**self.removed, **self.upstreams}
        for name, spec in table.deployments.items():
            pool = self.pools.get(name) or Pool(spec)
            pool.spec = spec
            pool.upstreams = []
            for addr in spec.upstreams:
                up = upstreams.get(addr) or previous.get(addr) or Upstream(addr)
                up.pool = pool
                upstreams[addr] = up
                pool.upstreams.append(up)
            pool.rr %= max(1, len(pool.upstreams))
            pools[name] = pool
        self.removed = {}
        for addr, up in previous.items():
            if addr not in upstreams:  # removed: drain the requests in flight, then close
                up.pool = None
                if up.in_flight:
                    self.removed[addr] = up
                else:
                    up.close_idle()
        for name, pool in self.pools.items():
            if name not in pools:
                for fut in pool.waiters:
                    if not fut.done():
                        fut.set_result(None)
        split = [(n, w) for n, w in table.traffic.items() if w > 0]
        if split != self.split:
            self.split = split
            self.split_current = {n: 0 for n, _ in split}
        self.table, self.keys, self.pools, self.upstreams = table, keys, pools, upstreams
        for pool in pools.values():
            pool.dispatch()

    def check_files(self) -> None:
        table = self.table
        now = (self._stamp(self.table_path), self._stamp(table.keys_file if table else None))
        if now != self.stamps:
            self.reload("file changed")

    # -- routing

    def pick(self) -> str | None:
        """Smooth weighted round robin (nginx's): exact to within one request per 100."""
        split = self.split
        if not split:
            return None
        if len(split) == 1:
            return split[0][0]
        cur = self.split_current
        total = 0
        best = ""
        best_v = -1 << 30
        for name, w in split:
            v = cur[name] + w
            cur[name] = v
            total += w
            if v > best_v:
                best, best_v = name, v
        cur[best] -= total
        return best

    def authorized(self, req: Request) -> bool:
        table = self.table
        if table is None or table.auth_mode == "none":
            return True
        auth = req.auth
        if auth[:7].lower() != b"bearer ":
            return False
        token = auth[7:].strip()
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(token, key)
        return ok

    async def forward(self, pool: Pool, req: Request) -> tuple[Response, str]:
        spec = pool.spec
        tried: set[str] = set()
        last = ""
        try:
            async with asyncio.timeout(spec.request_timeout_ms / 1000):
                for _attempt in range(3):
                    up = await pool.acquire(tried)
                    if up is None:
                        if tried:
                            break
                        return simple(429, "Too many pending requests"), ""
                    try:
                        return await exchange(up, req), up.addr
                    except Retryable as ex:
                        tried.add(up.addr)
                        last = str(ex)
                    finally:
                        release(up)
                return simple(502, f"Bad gateway: {last or 'no instance'}"), ""
        except TimeoutError:
            return simple(408, f"Request timed out after {spec.request_timeout_ms} ms"), ""
        except (asyncio.IncompleteReadError, ValueError, IndexError) as ex:
            return simple(502, f"Bad gateway: malformed answer from the instance ({ex})"), ""

    async def route(self, req: Request) -> tuple[Response, str, str, str | None]:
        """(response, deployment, upstream, deployment to mirror to)."""
        if not self.authorized(req):
            return simple(401, "Unauthorized: missing or invalid key (Authorization: Bearer <key>)"), "", "", None
        mirror_to = None
        if req.deployment_header:
            name = req.deployment_header
            if name not in self.pools:
                return simple(404, f"Deployment {name} not found for this endpoint"), "", "", None
        else:
            picked = self.pick()
            if picked is None:
                return simple(404, NO_TRAFFIC_MESSAGE), "", "", None
            name = picked
            mirror_to = self.mirror_choice()
        pool = self.pools[name]
        if not pool.upstreams:
            return simple(503, f"Deployment {pool.spec.name} has no ready instance"), pool.spec.name, "", None
        resp, addr = await self.forward(pool, req)
        if resp.status >= 400 and addr:  # the instance answered with an error: Azure's "Model Error"
            resp.headers.append((b"ms-azureml-model-error-statuscode", b"%d" % resp.status))
            resp.headers.append((b"ms-azureml-model-error-reason", resp.reason))
            resp.status, resp.reason = 424, b"Failed Dependency"
        return resp, pool.spec.name, addr, mirror_to

    def mirror_choice(self) -> str | None:
        table = self.table
        if table is None or not table.mirror:
            return None
        name, pct = next(iter(table.mirror.items()))
        self.mirror_acc += pct
        if self.mirror_acc >= 100:
            self.mirror_acc -= 100
            return name
        return None

    async def mirror(self, name: str, req: Request) -> None:
        pool = self.pools.get(name)
        if pool is None:
            return
        up = pool.try_acquire()
        if up is None:  # never queue a copy: it would take a slot a live request may need
            return
        try:
            async with asyncio.timeout(pool.spec.request_timeout_ms / 1000):
                await exchange(up, req)
        except Exception:  # noqa: BLE001 - the copy's fate never matters
            pass
        finally:
            release(up)

    def health(self) -> Response:
        table = self.table
        doc = {
            "status": "stopping" if self.stopping else "ok",
            "endpoint": table.endpoint if table else None,
            "version": table.version if table else None,
            "pid": os.getpid(),
            "in_flight": self.active,
            "deployments": {p.spec.name: {"upstreams": {u.addr: {"in_flight": u.in_flight} for u in p.upstreams},
                                          "queued": sum(1 for f in p.waiters if not f.done())}
                            for p in self.pools.values()},
            "draining": {a: u.in_flight for a, u in self.removed.items() if u.in_flight},
        }
        return Response(200, b"OK", [(b"content-type", b"application/json")], json.dumps(doc).encode())

    # -- connections

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections[writer] = False
        try:
            while not self.stopping:
                try:
                    req = await read_request(reader, writer)
                except BadRequest as ex:
                    writer.write(serialize(simple(ex.status, str(ex)), False, []))
                    break
                if req is None:
                    break
                self.connections[writer] = True
                self.active += 1
                try:
                    keep = await self.handle(req, writer)
                finally:
                    self.active -= 1
                    self.connections[writer] = False
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.connections.pop(writer, None)
            writer.close()

    async def handle(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        started = time.perf_counter()
        if req.target == b"/-/router":
            writer.write(serialize(self.health(), req.keep_alive, []))
            return req.keep_alive
        if not req.request_id:
            req.request_id = str(uuid.uuid4())
            req.extra["x-request-id"] = req.request_id
        resp, dep, addr, mirror_to = await self.route(req)
        keep = req.keep_alive and not self.stopping
        extra = []
        if not any(name == b"x-request-id" for name, _ in resp.headers):
            extra.append((b"x-request-id", req.request_id.encode("latin-1")))
        if dep:
            extra.append((b"azureml-model-deployment", dep.encode()))
        writer.write(serialize(resp, keep, extra))
        if mirror_to is not None:
            task = asyncio.get_running_loop().create_task(self.mirror(mirror_to, req))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.access_log:
            ms = (time.perf_counter() - started) * 1000
            log("info", f"{req.request_id} {req.method.decode()} {req.target.decode('latin-1')} "
                        f"{resp.status} {dep or '-'} {addr or '-'} {ms:.2f}ms")
        await writer.drain()
        return keep

    def close_idle_clients(self) -> None:
        for w, busy in list(self.connections.items()):
            if not busy:
                w.close()


# --------------------------------------------------------------------------------------------- main


async def watch(router: Router) -> None:
    while True:
        await asyncio.sleep(1.0)
        router.check_files()
        sys.stdout.flush()


async def run(args: argparse.Namespace) -> int:
    router = Router(args.table, not args.no_access_log)
    try:
        router.reload("start")
    except (OSError, ValueError, KeyError) as ex:
        log("error", f"cannot start: {ex}")
        sys.stdout.flush()
        return 2
    try:
        server = await asyncio.start_server(router.serve, args.host, args.port, limit=HEAD_LIMIT,
                                            reuse_address=True, backlog=1024)
    except OSError as ex:
        log("error", f"cannot listen on {args.host}:{args.port}: {ex}")
        sys.stdout.flush()
        return 2
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, router.reload, "SIGHUP")
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    watcher = loop.create_task(watch(router))
    if args.port_file:
        tmp = f"{args.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    log("info", f"ready: listening on {args.host}:{port} pid {os.getpid()}")
    sys.stdout.flush()
    await done.wait()
    log("info", "stopping: finishing requests in flight")
    router.stopping = True
    server.close()
    router.close_idle_clients()
    deadline = time.monotonic() + args.drain_seconds
    while (router.active or router.tasks) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        router.close_idle_clients()
    watcher.cancel()
    log("info", "stopped")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="recon endpoint router (docs/runtime.md)")
    p.add_argument("--table", required=True, help="routing table JSON file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--port-file", dest="port_file", default=None)
    p.add_argument("--no-access-log", dest="no_access_log", action="store_true")
    p.add_argument("--drain-seconds", dest="drain_seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
