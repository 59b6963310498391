"""Endpoint router: key check, traffic split, mirroring, header routing, limits, hot reload.

A single file; HTTP/1.1 requests are parsed by httptools (llhttp, strict RFC 9112: Content-Length with
Transfer-Encoding, or two Content-Lengths, are 400), uvloop when importable, so the Docker provider can run
the same file in a container (httptools mounted beside it): ``python router.py --table FILE --host 127.0.0.1 --port P``. See docs/runtime.md for
the table format and the answers, which follow Azure managed online endpoints.

Invariants:
- the routing table is swapped in one assignment on the event loop: a request sees the old or the new
  table, never a mix; requests already sent to an upstream finish there (drain);
- a request that got no byte back from an upstream (closed keep-alive connection, refused connect while
  an instance is being removed) is retried on another upstream of the same deployment;
- mirrored copies start after the live answer is written and only take a free slot: the live answer is
  never delayed or changed by them;
- the key is checked on the headers, before any body byte is read: 401 and close;
- bodies over the endpoint's limit are 413 (checked on Content-Length, and while a chunked body arrives);
- no connection outlives the header, body or idle timeout; at the connection cap the oldest idle one is
  closed for a new one (503 when every connection has a request in flight);
- keys and credentials in URLs are never logged; upstreams (instances) get the instance key, never the
  client's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hmac
import json
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

try:
    import httptools  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # said at start (exit 2): the router never parses HTTP by hand
    httptools = None  # type: ignore[assignment,unused-ignore]

MAX_BODY = 100 * 1024 * 1024
HEAD_LIMIT = 64 * 1024
# Per-endpoint limits (table "limits"): name -> default.
LIMITS = {"max_body_bytes": MAX_BODY, "max_connections": 1000, "header_timeout_ms": 10_000,
          "body_timeout_ms": 30_000, "idle_timeout_ms": 60_000}
INSTANCE_KEY_HEADER = b"x-recon-instance-key"
SECRET_PARAM = re.compile(r"((?:^|[?&;])(?:[^=&;]*(?:key|token|sig|secret|password|auth|code)[^=&;]*)=)[^&;]*",
                          re.IGNORECASE)
NO_TRAFFIC_MESSAGE = (
    "No valid deployments to route to. Please check that the endpoint has at least one deployment with "
    "positive weight values or use a deployment specific header to route."
)
# Headers that belong to one connection, never forwarded (plus the key, which instances must not see).
HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                 b"upgrade", b"content-length", b"authorization", b"expect", b"proxy-authorization",
                 INSTANCE_KEY_HEADER})
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout", 413: "Payload Too Large",
           424: "Failed Dependency", 429: "Too Many Requests", 400: "Bad Request", 431:
           "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable"}


class TableError(ValueError):
    """The routing table cannot be used (the old one stays in force)."""


def redact(target: str) -> str:
    """A URL as it may be logged: the values of query parameters that look like credentials hidden."""
    return SECRET_PARAM.sub(r"\1***", target) if "?" in target else target


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
    limits: tuple[tuple[str, int], ...] = ()
    instance_key_file: str | None = None

    def limit(self, name: str) -> int:
        return dict(self.limits).get(name, LIMITS[name])


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
    raw_limits = doc.get("limits") or {}
    if not isinstance(raw_limits, dict) or set(raw_limits) - set(LIMITS):
        raise TableError(f"limits: expected an object with keys among {', '.join(LIMITS)}")
    limits = tuple((k, max(1, _int(raw_limits, k, LIMITS[k], "limits"))) for k in LIMITS)
    ikf = doc.get("instance_key_file")
    if ikf is not None and not isinstance(ikf, str):
        raise TableError("instance_key_file: expected a path")
    return Table(endpoint=str(doc.get("endpoint", "")), auth_mode=auth_mode, keys_file=keys_file,
                 deployments=deployments, limits=limits, instance_key_file=ikf,
                 traffic=_percentages(doc.get("traffic"), "traffic", deployments),
                 mirror=_percentages(doc.get("mirror_traffic"), "mirror_traffic", deployments),
                 version=doc.get("version"))


def read_instance_key(path: str | None) -> bytes:
    if not path:
        return b""
    with open(path) as f:
        key = str(json.load(f).get("instanceKey") or "")
    if not key:
        raise TableError(f"{path}: no instanceKey")
    return key.encode()


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
        self.idle: list[UpstreamConn] = []
        self.pool: Pool | None = None  # the deployment it serves now; None once removed (draining)

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()


class Pool:
    """A deployment at run time: its upstreams, the concurrency limit and the queue of waiting requests."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.upstreams: list[Upstream] = []
        self.waiters: collections.deque[Exchange] = collections.deque()
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

    def may_queue(self) -> bool:
        """Azure admits at most 2 * max_concurrent * instances requests at once (in flight + waiting)."""
        capacity = self.spec.max_concurrent * len(self.upstreams)
        return self.spec.max_queue_wait_ms > 0 and self.active + len(self.waiters) < 2 * capacity

    def dispatch(self) -> None:
        """Hand free slots to waiting requests, oldest first."""
        while self.waiters:
            ex = self.waiters[0]
            if not ex.waiting:
                self.waiters.popleft()
                continue
            up = self.try_acquire(ex.tried)
            if up is None:
                return
            self.waiters.popleft()
            ex.on_slot(up)


def release(up: Upstream, pool: Pool) -> None:
    up.in_flight -= 1
    pool.active -= 1
    pool.dispatch()
    if up.pool is None and up.in_flight == 0:
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
    expect: bool = False
    instance_key: bytes = b""  # x-recon-instance-key: taken for /-/router only


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


def parse_chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, end offset) when the whole chunked body is in buf, else None."""
    parts: list[bytes] = []
    pos = start
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers end with an empty line
            return (b"".join(parts), end + 4) if end >= 0 else None
        total += size
        if total > MAX_BODY:
            raise BadRequest(413, "Request body too large")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


def parse_response(buf: bytearray, method: bytes, eof: bool) -> tuple[Response, bool, int] | None:
    """(response, reusable, bytes used) when a whole answer is in buf, else None."""
    idx = buf.find(b"\r\n\r\n")
    if idx < 0:
        return None
    lines = bytes(buf[:idx]).split(b"\r\n")
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
        if name in HOP:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                reusable = reusable and b"close" not in value.lower()
            continue
        headers.append((name, value))
    start = idx + 4
    if method == b"HEAD" or status in (204, 304) or status < 200:
        return Response(status, reason, headers, b""), reusable, start
    if chunked:
        got = parse_chunked(buf, start)
        if got is None:
            return None
        return Response(status, reason, headers, got[0]), reusable, got[1]
    if length is not None:
        if len(buf) < start + length:
            return None
        return Response(status, reason, headers, bytes(buf[start:start + length])), reusable, start + length
    if not eof:  # body runs until the connection closes
        return None
    return Response(status, reason, headers, bytes(buf[start:])), False, len(buf)


def simple(status: int, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return Response(status, REASONS.get(status, "Error").encode(), [(b"content-type", b"application/json")], body)


def serialize(resp: Response, keep_alive: bool, extra: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
    for name, value in resp.headers:
        out.append(b"%s: %s\r\n" % (name, value))
    for name, value in extra:
        out.append(b"%s: %s\r\n" % (name, value))
    out.append(b"content-length: %d\r\n" % len(resp.body))
    if not keep_alive:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    out.append(resp.body)
    return b"".join(out)


def encode_request(req: Request, request_id: bytes, instance_key: bytes = b"") -> bytes:
    out = [b"%s %s HTTP/1.1\r\n" % (req.method, req.target)]
    if instance_key:
        out.append(b"x-recon-instance-key: %s\r\n" % instance_key)
    for name, value in req.headers:
        out.append(b"%s: %s\r\n" % (name, value))
    if request_id:
        out.append(b"x-request-id: %s\r\n" % request_id)
    out.append(b"content-length: %d\r\n\r\n" % len(req.body))
    out.append(req.body)
    return b"".join(out)


# ------------------------------------------------------------------------------------- connections


class UpstreamConn(asyncio.Protocol):
    """A keep-alive connection to an instance; serves one Exchange at a time."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = bytearray()
        self.exchange: Exchange | None = None
        self.method = b"POST"
        self.got_bytes = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, ex: Exchange, data: bytes, method: bytes) -> None:
        self.exchange, self.method, self.got_bytes = ex, method, False
        self.buf.clear()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # nothing asked: a misbehaving instance
            self.transport.close()
            return
        self.got_bytes = True
        self.buf += data
        got = parse_response(self.buf, self.method, False)
        if got is not None:
            self._complete(ex, got[0], got[1] and got[2] == len(self.buf))

    def _complete(self, ex: Exchange, resp: Response, reusable: bool) -> None:
        self.exchange = None
        self.buf.clear()
        if reusable and not self.closed and self.up.pool is not None:
            self.up.idle.append(self)
        else:
            self.transport.close()
        ex.on_response(resp)

    def abort(self) -> None:
        self.exchange = None
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.up.idle.remove(self)
        ex, self.exchange = self.exchange, None
        if ex is None:
            return
        try:
            got = parse_response(self.buf, self.method, True) if self.got_bytes else None
        except (ValueError, IndexError):
            got = None
        if got is not None:
            ex.on_response(got[0])
        else:
            ex.on_failure(f"{self.up.addr} closed the connection", retryable=not self.got_bytes)


class Exchange:
    """One request proxied to a deployment: slot, connection, retries, timeout, answer."""

    __slots__ = ("router", "client", "req", "pool", "mirror_to", "tried", "up", "conn", "timer", "queue_timer",
                 "waiting", "done", "started", "data", "last_error", "served_by", "request_id")

    def __init__(self, router: Router, client: ClientConn | None, req: Request, pool: Pool,
                 mirror_to: str | None, request_id: bytes) -> None:
        self.router, self.client, self.req, self.pool, self.mirror_to = router, client, req, pool, mirror_to
        self.tried: set[str] = set()
        self.up: Upstream | None = None
        self.conn: UpstreamConn | None = None
        self.queue_timer: asyncio.TimerHandle | None = None
        self.waiting = self.done = False
        self.started = time.perf_counter()
        self.data = encode_request(req, request_id, router.instance_key)
        self.request_id = request_id
        self.last_error = ""
        self.served_by = ""
        self.timer = router.loop.call_later(pool.spec.request_timeout_ms / 1000, self.on_timeout)

    @property
    def is_mirror(self) -> bool:
        return self.client is None

    def start(self) -> None:
        up = self.pool.try_acquire(self.tried)
        if up is not None:
            self.send(up)
        elif self.is_mirror:  # a copy never queues: it would take a slot a live request may need
            self.finish(None)
        elif self.tried and all(u.addr in self.tried for u in self.pool.upstreams):
            self.finish(simple(502, f"Bad gateway: {self.last_error}"))
        elif self.pool.may_queue():
            self.waiting = True
            self.pool.waiters.append(self)
            self.queue_timer = self.router.loop.call_later(self.pool.spec.max_queue_wait_ms / 1000, self.on_queue_timeout)
        else:
            self.finish(simple(429, "Too many pending requests"))

    def on_slot(self, up: Upstream) -> None:
        self.waiting = False
        if self.queue_timer is not None:
            self.queue_timer.cancel()
        self.send(up)

    def on_queue_timeout(self) -> None:
        if self.waiting:
            self.waiting = False
            self.finish(simple(429, "Too many pending requests") if not self.tried
                        else simple(502, f"Bad gateway: {self.last_error}"))

    def send(self, up: Upstream) -> None:
        self.up = up
        if up.idle:
            conn = up.idle.pop()
            self.conn = conn
            conn.send(self, self.data, self.req.method)
            return
        task = self.router.loop.create_task(
            self.router.loop.create_connection(lambda: UpstreamConn(up), up.host, up.port))
        task.add_done_callback(self.on_connected)

    def on_connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, UpstreamConn]]) -> None:
        if task.cancelled() or task.exception() is not None:
            exc = None if task.cancelled() else task.exception()
            self.on_failure(f"connect to {self.up.addr if self.up else '?'} failed: {exc}", retryable=True)
            return
        conn = task.result()[1]
        if self.done:  # timed out meanwhile
            conn.transport.close()
            return
        self.conn = conn
        conn.send(self, self.data, self.req.method)

    def _release(self) -> None:
        up, self.up, self.conn = self.up, None, None
        if up is not None:
            release(up, self.pool)

    def on_response(self, resp: Response) -> None:
        if self.done:
            return
        self.served_by = self.up.addr if self.up else ""
        self._release()
        if resp.status >= 400:  # the instance answered with an error: Azure's "Model Error"
            resp.headers.append((b"ms-azureml-model-error-statuscode", b"%d" % resp.status))
            resp.headers.append((b"ms-azureml-model-error-reason", resp.reason))
            resp.status, resp.reason = 424, b"Failed Dependency"
        self.finish(resp)

    def on_failure(self, message: str, retryable: bool) -> None:
        if self.done:
            return
        failed = self.up.addr if self.up else ""
        self._release()
        self.last_error = message
        if retryable and len(self.tried) < 3:
            self.tried.add(failed)
            self.start()
        else:
            self.finish(simple(502, f"Bad gateway: {message}"))

    def on_timeout(self) -> None:
        if self.done:
            return
        if self.conn is not None:
            self.conn.abort()  # the answer can no longer be used: never reuse this connection
        self._release()
        if self.waiting:
            self.waiting = False
            if self.queue_timer is not None:
                self.queue_timer.cancel()
        self.finish(simple(408, f"Request timed out after {self.pool.spec.request_timeout_ms} ms"))

    def finish(self, resp: Response | None) -> None:
        self.done = True
        self.timer.cancel()
        self.router.finished(self, resp)


class Stop(Exception):
    """Raised in a parser callback once the connection has been answered and closed."""


class ClientConn(asyncio.Protocol):
    """A client connection, parsed by httptools. Requests are answered one at a time, in order (a
    pipelined request waits in ``queue``). The key and the body size are checked once the headers are
    in, before any body byte is kept. ``deadline`` (monotonic) is swept by the router every second."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.req: Request | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.head_size = 0
        self.url = b""
        self.queue: collections.deque[Request] = collections.deque()
        self.busy = False
        self.closed = False
        self.stopped = False
        self.body_timeout = 0.0
        self.deadline = 0.0
        self.in_body = False
        self.length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        router = self.router
        limits = router.limits
        self.deadline = time.monotonic() + limits[2] / 1000
        if len(router.clients) >= limits[1] and not router.evict_one():
            self.fail(503, "Too many connections to this endpoint")
            return
        router.clients[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.clients.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(400, "Upgrade is not supported")
        except httptools.HttpParserError as ex:
            if not self.stopped:
                cause = ex.__context__
                if isinstance(cause, BadRequest):
                    self.fail(cause.status, str(cause))
                else:
                    self.fail(400, f"Malformed request: {ex}")

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.req = Request(b"", b"", [], b"", True)
        self.url = b""
        self.parts = []
        self.size = self.head_size = self.length = 0
        self.in_body = False
        if not self.busy:
            self.deadline = time.monotonic() + self.router.limits[2] / 1000

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > HEAD_LIMIT:
            raise BadRequest(431, "Request header fields too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        assert req is not None
        self.head_size += len(name) + len(value) + 4
        if self.head_size > HEAD_LIMIT:
            raise BadRequest(431, "Request header fields too large")
        name = name.lower()
        if name in HOP:
            if name == b"authorization":
                req.auth = value
            elif name == b"expect":
                req.expect = value.lower() == b"100-continue"
            elif name == b"content-length":  # one, all digits: the parser has checked
                self.length = int(value)
            elif name == INSTANCE_KEY_HEADER:
                req.instance_key = value.strip()
            return
        if name == b"azureml-model-deployment":
            req.deployment_header = value.decode("latin-1").strip().lower()
        elif name == b"x-request-id":
            req.request_id = value.decode("latin-1")
        req.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        parser = self.parser
        req.method, req.target = parser.get_method(), self.url
        req.keep_alive = parser.should_keep_alive()
        router = self.router
        if not router.authorized(req):
            self.fail(401, "Unauthorized: missing or invalid key (Authorization: Bearer <key>)")
            raise Stop
        limits = router.limits
        if self.length > limits[0]:
            self.fail(413, f"Request body too large (limit {limits[0]} bytes)")
            raise Stop
        self.body_timeout = limits[3] / 1000
        if not self.busy:
            self.deadline = time.monotonic() + self.body_timeout
        self.in_body = True
        if req.expect and parser.get_http_version() == "1.1":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.router.limits[0]:
            self.fail(413, f"Request body too large (limit {self.router.limits[0]} bytes)")
            raise Stop
        self.parts.append(body)
        if not self.busy:
            self.deadline = time.monotonic() + self.body_timeout

    def on_message_complete(self) -> None:
        req, self.req = self.req, None
        assert req is not None
        self.in_body = False
        parts = self.parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = []
        if self.busy:  # pipelined: answered after the one in progress
            self.queue.append(req)
            if len(self.queue) >= 4:
                self.transport.pause_reading()
            return
        self._start(req)

    # -- answers

    def _start(self, req: Request) -> None:
        self.busy = True
        self.deadline = float("inf")
        self.router.handle(self, req)

    def fail(self, status: int, message: str) -> None:
        self.stopped = True
        if not self.closed:
            self.transport.write(serialize(simple(status, message), False, []))
            self.transport.close()

    def respond(self, data: bytes, keep: bool) -> None:
        self.busy = False
        if self.closed or self.stopped:  # gone, or already answered with an error and closing
            return
        self.transport.write(data)
        if not keep:
            self.stopped = True
            self.transport.close()
            return
        self.deadline = time.monotonic() + self.router.limits[4] / 1000
        if self.queue:
            req = self.queue.popleft()
            self.transport.resume_reading()
            self._start(req)

    @property
    def idle(self) -> bool:
        """No authorized request in progress, arriving or waiting: closing it loses nothing."""
        return not self.busy and not self.in_body and not self.queue


# ------------------------------------------------------------------------------------------- router


class Router:
    """Holds the table in force and serves requests with it."""

    def __init__(self, table_path: str, access_log: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.table_path = table_path
        self.access_log = access_log
        self.loop = loop
        self.table: Table | None = None
        self.keys: tuple[bytes, ...] = ()
        self.pools: dict[str, Pool] = {}
        self.upstreams: dict[str, Upstream] = {}
        self.removed: dict[str, Upstream] = {}  # upstreams no longer in the table, still draining
        self.split: list[tuple[str, int]] = []
        self.split_current: dict[str, int] = {}
        self.mirror_acc = 0
        self.stamps: tuple[Any, ...] = ()
        self.active = 0
        self.mirrors = 0
        self.stopping = False
        self.clients: dict[ClientConn, None] = {}  # oldest first
        self.limits: tuple[int, ...] = tuple(LIMITS.values())  # in LIMITS' order
        self.instance_key = b""
        self.id_prefix = uuid.uuid4().hex[:12]
        self.id_counter = 0

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
            instance_key = read_instance_key(table.instance_key_file)
        except (OSError, ValueError, KeyError) as ex:
            self.stamps = (self._stamp(self.table_path), self.stamps[1] if self.stamps else None)
            log("error", f"table not loaded ({reason}): {ex}; keeping the table in force")
            if self.table is None:
                raise
            return
        self.stamps = (self._stamp(self.table_path), self._stamp(table.keys_file))
        self.instance_key = instance_key
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
            if name not in pools:  # a deleted deployment: its queued requests get 429 now
                for ex in list(pool.waiters):
                    ex.on_queue_timeout()
                pool.waiters.clear()
        split = [(n, w) for n, w in table.traffic.items() if w > 0]
        if split != self.split:
            self.split = split
            self.split_current = {n: 0 for n, _ in split}
        self.table, self.keys, self.pools, self.upstreams = table, keys, pools, upstreams
        self.limits = tuple(table.limit(name) for name in LIMITS)
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

    def authorized(self, req: Request) -> bool:
        """The endpoint's key; ``/-/router`` (status, upstream addresses) also takes the instance key
        (what the control plane uses), and needs one of them even when the endpoint has no auth."""
        table = self.table
        status_url = req.target == b"/-/router"
        if table is None or (table.auth_mode == "none" and not (status_url and self.instance_key)):
            return True
        if status_url and self.instance_key and req.instance_key:
            # the control plane's other way in: an API server's pod proxy (Kubernetes) drops the
            # Authorization header it authenticated with, so the instance key comes in its own header
            return hmac.compare_digest(req.instance_key, self.instance_key)
        auth = req.auth
        if auth[:7].lower() != b"bearer ":
            return False
        token = auth[7:].strip()
        ok = False
        for key in self.keys if table.auth_mode != "none" else ():
            ok |= hmac.compare_digest(token, key)
        if status_url and self.instance_key:
            ok |= hmac.compare_digest(token, self.instance_key)
        return ok

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

    def handle(self, client: ClientConn, req: Request) -> None:
        """Route one request; the answer comes back through finished() (or at once for local answers)."""
        self.active += 1
        rid = b""
        if not req.request_id:  # one id for the live request, its copy and the log
            self.id_counter += 1
            req.request_id = f"{self.id_prefix}-{self.id_counter}"
            rid = req.request_id.encode()
        if req.target == b"/-/router":
            self._answer(client, req, self.health(), "", time.perf_counter())
            return
        mirror_to = None
        if req.deployment_header:
            name: str | None = req.deployment_header
            if name not in self.pools:
                resp = simple(404, f"Deployment {name} not found for this endpoint")
                self._answer(client, req, resp, "", time.perf_counter())
                return
        else:
            name = self.pick()
            if name is None:
                self._answer(client, req, simple(404, NO_TRAFFIC_MESSAGE), "", time.perf_counter())
                return
            mirror_to = self.mirror_choice()
        pool = self.pools[name]
        if not pool.upstreams:
            resp = simple(503, f"Deployment {pool.spec.name} has no ready instance")
            self._answer(client, req, resp, pool.spec.name, time.perf_counter())
            return
        Exchange(self, client, req, pool, mirror_to, rid).start()

    def finished(self, ex: Exchange, resp: Response | None) -> None:
        if ex.client is None:  # a mirrored copy: its answer is thrown away
            self.mirrors -= 1
            return
        assert resp is not None
        self._answer(ex.client, ex.req, resp, ex.pool.spec.name, ex.started, ex.served_by)
        if ex.mirror_to is not None:  # after the live answer is written: it never waits for the copy
            pool = self.pools.get(ex.mirror_to)
            if pool is not None and pool.upstreams:
                self.mirrors += 1
                Exchange(self, None, ex.req, pool, None, ex.request_id).start()

    def _answer(self, client: ClientConn, req: Request, resp: Response, dep: str, started: float,
                addr: str = "") -> None:
        self.active -= 1
        keep = req.keep_alive and not self.stopping
        extra: list[tuple[bytes, bytes]] = []
        if not any(name == b"x-request-id" for name, _ in resp.headers):
            extra.append((b"x-request-id", req.request_id.encode("latin-1")))
        if dep:
            extra.append((b"azureml-model-deployment", dep.encode()))
        client.respond(serialize(resp, keep, extra), keep)
        if self.access_log:
            ms = (time.perf_counter() - started) * 1000
            log("info", f"{req.request_id} {req.method.decode()} {redact(req.target.decode('latin-1'))} "
                        f"{resp.status} {dep or '-'} {addr or '-'} {ms:.2f}ms")

    def health(self) -> Response:
        table = self.table
        doc = {
            "status": "stopping" if self.stopping else "ok",
            "endpoint": table.endpoint if table else None,
            "version": table.version if table else None,
            "traffic": dict(table.traffic) if table else {},  # the live split, as loaded
            "mirror_traffic": dict(table.mirror) if table else {},
            "pid": os.getpid(),
            "in_flight": self.active - 1,
            "deployments": {p.spec.name: {"upstreams": {u.addr: {"in_flight": u.in_flight} for u in p.upstreams},
                                          "queued": sum(1 for ex in p.waiters if ex.waiting)}
                            for p in self.pools.values()},
            "draining": {a: u.in_flight for a, u in self.removed.items() if u.in_flight},
        }
        return Response(200, b"OK", [(b"content-type", b"application/json")], json.dumps(doc).encode())

    def close_idle_clients(self) -> None:
        for client in list(self.clients):
            if not client.busy:
                client.transport.close()


# --------------------------------------------------------------------------------------------- main


async def watch(router: Router) -> None:
    while True:
        await asyncio.sleep(1.0)
        router.check_files()
        router.sweep()
        sys.stdout.flush()


def raise_nofile() -> None:
    """Descriptors for the connection cap and the upstream connections (soft limit up to the hard)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))


async def run(args: argparse.Namespace) -> int:
    raise_nofile()
    loop = asyncio.get_running_loop()
    router = Router(args.table, not args.no_access_log, loop)
    try:
        router.reload("start")
    except (OSError, ValueError, KeyError) as ex:
        log("error", f"cannot start: {ex}")
        sys.stdout.flush()
        return 2
    try:
        server = await loop.create_server(lambda: ClientConn(router), args.host, args.port,
                                          reuse_address=True, backlog=1024)
    except OSError as ex:
        log("error", f"cannot listen on {args.host}:{args.port}: {ex}")
        sys.stdout.flush()
        return 2
    port = server.sockets[0].getsockname()[1]
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
    while (router.active or router.mirrors) and time.monotonic() < deadline:
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
    if httptools is None:
        log("error", f"cannot start: the Python package httptools is not importable by {sys.executable} "
                     "(pip install httptools, or put it on PYTHONPATH)")
        sys.stdout.flush()
        return 2
    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
