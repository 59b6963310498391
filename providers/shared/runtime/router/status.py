"""What the router tells about itself: its log, the access line of every answer, and its own URLs.

- ``log``: one line on stdout, ``<UTC time> router <level> <message>``.
- ``Telemetry``: ``request_done`` is called once per answer a client gets (proxied, or the router's
  own): the access line (credential-like query values as ``***``) and the count of the router's own
  answers; ``exchange_done`` once per request sent to an instance, live or mirrored: its series'
  counts (``metrics.Metrics``).
- ``own_answer``: the answers of the router's own URLs (``CONTROL_PATHS``: ``GET /-/router``, the
  status; ``GET /-/metrics``, the measures in Prometheus' text format). The key check of those URLs
  is ``table.Credentials.authorized``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

from .messages import CONTROL_PATHS, METRICS_PATH, Request, Response
from .metrics import CONTENT_TYPE, Metrics
from .pools import Pools, Upstream
from .table import Table

__all__ = ["CONTROL_PATHS", "Telemetry", "log", "own_answer", "redact", "status_document"]
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
        self.metrics = Metrics()

    def request_done(self, req: Request, resp: Response, deployment: str, addr: str, started: float,
                     own: bool = True) -> None:
        """``req`` got ``resp``; ``deployment`` and ``addr`` served it (empty when the router answered
        itself); ``started``: ``time.perf_counter()`` when it was routed; ``own``: no instance was
        involved (an answer to one of the router's own URLs is neither: pass False)."""
        if own:
            self.metrics.answered_itself(resp.status)
        if self.access_log:
            ms = (time.perf_counter() - started) * 1000
            log("info", f"{req.request_id} {req.method.decode()} {redact(req.target.decode('latin-1'))} "
                        f"{resp.status} {deployment or '-'} {addr or '-'} {ms:.2f}ms")


    def exchange_done(self, up: Upstream | None, mirror: bool, outcome: int, started: float, deployment: str) -> None:
        """A request sent to a deployment ended (``outcome``: metrics.Series.observe's; ``started``:
        ``time.perf_counter()`` when it was routed): counted in the series of ``up``, the instance it
        was last sent to; a mirrored copy sent nowhere (no free slot) is counted as dropped. Every
        request passes here: a few increments, no more."""
        if up is not None:
            series = up.live if not mirror else (up.mirror or self.metrics.mirror_series(up))
            if series is not None:
                series.observe(outcome, time.perf_counter() - started)
        elif mirror:
            self.metrics.dropped(deployment)

    def refused(self, status: int) -> None:
        """A client connection was answered ``status`` and closed while its request was read."""
        self.metrics.answered_itself(status)


def status_document(table: Table | None, pools: Pools, in_flight: int, stopping: bool,
                    discovery: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET /-/router``: the table in force (version, split, pools), what is in flight, and the pod
    watch's state (``discovery``: synced, pods seen, last error) when the pools follow one."""
    return {
        "discovery": discovery,
        "status": "stopping" if stopping else "ok",
        "endpoint": table.endpoint if table else None,
        "version": table.version if table else None,
        "traffic": dict(table.traffic) if table else {},  # the live split, as loaded
        "mirror_traffic": dict(table.mirror) if table else {},
        "pid": os.getpid(),
        "in_flight": in_flight,
        "deployments": {p.spec.name: {"upstreams": {u.addr: {"in_flight": u.in_flight, "digest": p.spec.digest_of(u.addr)}
                                                    for u in p.upstreams},
                                      "queued": sum(1 for ex in p.waiters if ex.waiting)}
                        for p in pools.by_name.values()},
        "draining": {a: u.in_flight for a, u in pools.removed.items() if u.in_flight},
    }


def own_answer(req: Request, table: Table | None, pools: Pools, in_flight: int, stopping: bool,
               metrics: Metrics, discovery: dict[str, Any] | None = None) -> Response:
    """The answer to a request for one of ``CONTROL_PATHS`` (authorized already)."""
    if req.target == METRICS_PATH:
        body = metrics.render(table.endpoint if table else "", table.version if table else None, in_flight)
        return Response(200, b"OK", [(b"content-type", CONTENT_TYPE)], body)
    doc = status_document(table, pools, in_flight, stopping, discovery)
    return Response(200, b"OK", [(b"content-type", b"application/json")], json.dumps(doc).encode())
