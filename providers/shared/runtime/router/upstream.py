"""The upstream side: keep-alive connections to instances, and one request proxied to a deployment.

``UpstreamConn`` parses answers with httptools' response parser (llhttp): Content-Length, chunked and
until-close bodies; a HEAD request's answer has no body (the parser is told by being stopped after the
headers and replaced). A connection goes back to its upstream's idle list only when the answer ended
cleanly, the instance allows keep-alive and nothing followed the answer.

``Exchange`` is one request on its way through a pool: a slot (or a place in the queue), a connection,
retries on another upstream when no byte came back, the deployment's request timeout, then the answer
to its owner (``Owner.finished``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Protocol

import httptools  # type: ignore[import-untyped,unused-ignore]

from .messages import HOP, Request, Response, encode_request, simple
from .metrics import FAILED, TIMEOUT
from .pools import Pool, Upstream, release
from .table import MAX_BODY

if TYPE_CHECKING:
    from .clients import ClientConn


class Owner(Protocol):
    """What an exchange needs of the router (core.Router)."""

    loop: asyncio.AbstractEventLoop
    instance_key: bytes

    def finished(self, ex: Exchange, resp: Response | None) -> None: ...

    def retried(self, ex: Exchange, up: Upstream) -> None: ...


class _Stop(Exception):
    """Raised in a parser callback to stop reading: a HEAD answer's headers are all it has."""


class UpstreamConn(asyncio.Protocol):
    """A keep-alive connection to an instance; serves one Exchange at a time."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.head = False  # the request was HEAD: its answer ends with the headers
        self.got_bytes = False
        self.closed = False
        self.answer: Response | None = None  # whole, handed on once feed_data returns
        self.keep_alive = False  # the instance lets the connection serve on (read as the answer ends)
        self.trailing = False  # bytes came after the answer: the connection is not reused
        self._new_message()

    def _new_message(self) -> None:
        """Forget the answer being read (a new request, an interim 1xx answer, bytes after an answer)."""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.size = 0
        self.framed = False  # Content-Length or chunked: the answer's end is known without EOF
        self.chunked = False
        self.in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, ex: Exchange, data: bytes, method: bytes) -> None:
        self.exchange, self.head, self.got_bytes = ex, method == b"HEAD", False
        self.answer, self.trailing = None, False
        self._new_message()
        self.transport.write(data)

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self.answer is not None:  # the answer is whole: these bytes are not part of it
            self.trailing = True
            self._new_message()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_body:  # a chunked answer's trailers: dropped
            return
        name = name.lower()
        if name in HOP:
            if name == b"content-length":
                self.framed = True
            elif name == b"transfer-encoding":
                self.framed = self.chunked = b"chunked" in value.lower()
            return
        self.headers.append((name, value.strip()))

    def on_headers_complete(self) -> None:
        self.in_body = True
        if self.head and self.parser.get_status_code() >= 200:
            self._whole()
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        # a chunked answer has no size until its end: capped as a request body is
        if self.chunked and self.size > MAX_BODY:
            raise ValueError(f"{self.up.addr} answered more than {MAX_BODY} bytes")
        self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None:
            return
        if self.parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._new_message()
            return
        self._whole()

    def _whole(self) -> None:
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        parser = self.parser
        self.answer = Response(parser.get_status_code(), self.reason, self.headers, body)
        self.keep_alive = parser.should_keep_alive()  # once the message is over the parser forgets it

    # -- asyncio callbacks

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # nothing asked: a misbehaving instance
            self.transport.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as err:
            if self.answer is None or not isinstance(err.__context__, _Stop):
                self._broken(ex, err)
                return
            self.parser = httptools.HttpResponseParser(self)  # stopped after a HEAD answer: a fresh one
        if self.answer is not None:
            self._complete(ex, self.answer, self.keep_alive and not self.trailing)

    def _broken(self, ex: Exchange, err: Exception) -> None:
        """Bytes that are no HTTP answer (or one past the cap): the connection is closed."""
        if self.answer is not None:  # a whole answer, then garbage
            self._complete(ex, self.answer, False)
            return
        self.exchange = None
        self.closed = True
        self.transport.close()
        cause = err.__context__ if isinstance(err.__context__, ValueError) else err
        ex.on_failure(f"{self.up.addr} sent a malformed answer: {cause}", retryable=False)

    def _complete(self, ex: Exchange, resp: Response, reusable: bool) -> None:
        self.exchange = None
        self.answer = None
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
        if self.in_body and not self.framed:  # the body ran until the connection closed: it is whole
            self._whole()
        if self.answer is not None:
            ex.on_response(self.answer)
        else:
            ex.on_failure(f"{self.up.addr} closed the connection", retryable=not self.got_bytes)


class Exchange:
    """One request proxied to a deployment: slot, connection, retries, timeout, answer."""

    __slots__ = ("router", "client", "req", "pool", "mirror_to", "tried", "up", "conn", "timer", "queue_timer",
                 "waiting", "done", "started", "data", "last_error", "served_by", "request_id", "last_up",
                 "outcome")

    def __init__(self, router: Owner, client: ClientConn | None, req: Request, pool: Pool,
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
        # for the metrics: the instance it was last sent to (None: none, the router answers itself)
        # and how it ended there (the instance's status, TIMEOUT, else FAILED)
        self.last_up: Upstream | None = None
        self.outcome = FAILED
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
            self.queue_timer = self.router.loop.call_later(self.pool.spec.max_queue_wait_ms / 1000,
                                                           self.on_queue_timeout)
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
        if self.last_up is not None:  # sent again: the last instance gave no byte back
            self.router.retried(self, self.last_up)
        self.up = self.last_up = up
        if up.idle:
            conn: UpstreamConn = up.idle.pop()  # type: ignore[assignment]
            self.conn = conn
            conn.send(self, self.data, self.req.method)
            return
        loop = self.router.loop
        task = loop.create_task(loop.create_connection(lambda: UpstreamConn(up), up.host, up.port))
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
        self.outcome = resp.status
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
        self.outcome = TIMEOUT
        if self.waiting:
            self.waiting = False
            if self.queue_timer is not None:
                self.queue_timer.cancel()
        self.finish(simple(408, f"Request timed out after {self.pool.spec.request_timeout_ms} ms"))

    def finish(self, resp: Response | None) -> None:
        self.done = True
        self.timer.cancel()
        self.router.finished(self, resp)
