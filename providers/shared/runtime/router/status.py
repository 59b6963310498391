"""What the router tells about itself: its log, the access line of every answer, and its own URLs.

- ``log``: one line on stdout, ``<UTC time> router <level> <message>``.
- ``Telemetry.request_done``: called once per answer a client gets (proxied, or the router's own);
  writes the access line (credential-like query values as ``***``). Per-request counts belong here.
- ``own_answer``: the answers of the router's own URLs (``CONTROL_PATHS``, today ``GET /-/router``).
  The key check of those URLs is ``table.Credentials.authorized``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

from .messages import STATUS_PATH, Request, Response
from .pools import Pools
from .table import Table

CONTROL_PATHS = frozenset({STATUS_PATH})
SECRET_PARAM = re.compile(r"((?:^|[?&;])(?:[^=&;]*(?:key|token|sig|secret|password|auth|code)[^=&;]*)=)[^&;]*",
                          re.IGNORECASE)


def redact(target: str) -> str:
    """A URL as it may be logged: the values of query parameters that look like credentials hidden."""
    return SECRET_PARAM.sub(r"\1***", target) if "?" in target else target


def log(level: str, message: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    sys.stdout.write(f"{stamp} router {level} {message}\n")


class Telemetry:
    """Where every answer is accounted for (``--no-access-log`` turns the access lines off)."""

    def __init__(self, access_log: bool) -> None:
        self.access_log = access_log

    def request_done(self, req: Request, resp: Response, deployment: str, addr: str, started: float) -> None:
        """``req`` got ``resp``; ``deployment`` and ``addr`` served it (empty when the router answered
        itself); ``started``: ``time.perf_counter()`` when it was routed."""
        if self.access_log:
            ms = (time.perf_counter() - started) * 1000
            log("info", f"{req.request_id} {req.method.decode()} {redact(req.target.decode('latin-1'))} "
                        f"{resp.status} {deployment or '-'} {addr or '-'} {ms:.2f}ms")


def status_document(table: Table | None, pools: Pools, in_flight: int, stopping: bool) -> dict[str, Any]:
    """``GET /-/router``: the table in force (version, split, pools) and what is in flight."""
    return {
        "status": "stopping" if stopping else "ok",
        "endpoint": table.endpoint if table else None,
        "version": table.version if table else None,
        "traffic": dict(table.traffic) if table else {},  # the live split, as loaded
        "mirror_traffic": dict(table.mirror) if table else {},
        "pid": os.getpid(),
        "in_flight": in_flight,
        "deployments": {p.spec.name: {"upstreams": {u.addr: {"in_flight": u.in_flight} for u in p.upstreams},
                                      "queued": sum(1 for ex in p.waiters if ex.waiting)}
                        for p in pools.by_name.values()},
        "draining": {a: u.in_flight for a, u in pools.removed.items() if u.in_flight},
    }


def own_answer(req: Request, table: Table | None, pools: Pools, in_flight: int, stopping: bool) -> Response:
    """The answer to a request for one of ``CONTROL_PATHS`` (authorized already)."""
    doc = status_document(table, pools, in_flight, stopping)
    return Response(200, b"OK", [(b"content-type", b"application/json")], json.dumps(doc).encode())
