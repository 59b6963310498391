"""HTTP messages as the router handles them: a request read from a client, an answer read from an
instance or made by the router, and their bytes on the wire.

Parsing is httptools' (clients.py for requests, upstream.py for answers); this module only holds the
parsed values and writes them out. Hop-by-hop headers (``HOP``) are never forwarded: they belong to one
connection, and ``authorization`` and the instance key must never reach an instance as the client sent
them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

HEAD_LIMIT = 64 * 1024
STATUS_PATH = b"/-/router"  # the router's own status (status.py): the control plane's key opens it too
METRICS_PATH = b"/-/metrics"  # what it measured, for Prometheus (metrics.py): opened like STATUS_PATH
CONTROL_PATHS = frozenset({STATUS_PATH, METRICS_PATH})
INSTANCE_KEY_HEADER = b"x-recon-instance-key"
# Headers that belong to one connection, never forwarded (plus the key, which instances must not see).
HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                 b"upgrade", b"content-length", b"authorization", b"expect", b"proxy-authorization",
                 INSTANCE_KEY_HEADER})
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout", 413: "Payload Too Large",
           424: "Failed Dependency", 429: "Too Many Requests", 400: "Bad Request", 431:
           "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Request:
    """A client's request, whole (the body is read before it is routed)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    auth: bytes = b""
    deployment_header: str = ""
    request_id: str = ""
    expect: bool = False
    instance_key: bytes = b""  # x-recon-instance-key: taken for the router's own URLs only


@dataclass
class Response:
    """An answer, whole: from an instance (hop-by-hop headers dropped) or made by the router."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class BadRequest(Exception):
    """A request the router refuses while reading it (its status and message go back to the client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def simple(status: int, message: str) -> Response:
    """The router's own answer: Azure's ``{"message": ...}`` JSON."""
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
    """The request as an instance gets it: the instance key in its own header, the request id."""
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
