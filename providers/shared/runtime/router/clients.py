"""The client side: connections from whoever scores through the endpoint, parsed by httptools.

httptools (llhttp, strict RFC 9112) refuses Content-Length with Transfer-Encoding, two Content-Lengths
and a Transfer-Encoding not ending in chunked: 400 and close, as is an Upgrade. What the router checks
itself, as soon as it can: the key once the headers are in (401 and close, before any body byte is
kept), the body size on Content-Length and while a chunked body arrives (413 and close), the header
size (431). Deadlines are swept by the router every second (``ClientConn.deadline``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Protocol

import httptools  # type: ignore[import-untyped,unused-ignore]

from .messages import HEAD_LIMIT, HOP, INSTANCE_KEY_HEADER, BadRequest, Request, serialize, simple


class Server(Protocol):
    """What a client connection needs of the router (core.Router)."""

    # max_body_bytes, max_connections, header/body/idle timeouts in ms (table.LIMITS' order)
    limits: tuple[int, ...]
    clients: dict[ClientConn, None]  # oldest first

    def evict_one(self) -> bool: ...

    def authorized(self, req: Request) -> bool: ...

    @property
    def denial(self) -> str: ...

    def handle(self, client: ClientConn, req: Request) -> None: ...

    def refused(self, status: int) -> None: ...


class Stop(Exception):
    """Raised in a parser callback once the connection has been answered and closed."""


class ClientConn(asyncio.Protocol):
    """A client connection, parsed by httptools. Requests are answered one at a time, in order (a
    pipelined request waits in ``queue``). The key and the body size are checked once the headers are
    in, before any body byte is kept. ``deadline`` (monotonic) is swept by the router every second."""

    def __init__(self, router: Server) -> None:
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
            self.fail(401, router.denial)
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
        self.router.refused(status)  # counted (recon_router_responses_total) even when the client is gone
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
