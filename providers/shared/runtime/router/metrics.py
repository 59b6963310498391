"""What the router measures, and ``GET /-/metrics``: Prometheus' text exposition format 0.0.4.

Every request the router sends to an instance is counted once, when it ends, in the *series* of the
instance it was last sent to: its deployment, the configuration digest the routing table gives that
instance, and whether it is a live request or a mirrored copy (whose answer is measured and thrown
away). A request ends in one of three ways: the instance answered (``code`` is the class of the
instance's own status, before the router turns a 4xx or 5xx into Azure's 424), the deployment's
request timeout passed (a timeout), or no whole answer came from any instance tried (a connection
failure). Timeouts and connection failures are counted among the ``5xx`` as well (as Envoy charges a
504 or 503 to the upstream), so ``code="5xx"`` over all codes is the error ratio, and the ``timeouts``
and ``connect_failures`` counters say how many of those 5xx were which. Its latency (from routing to
the end, queueing included) goes into the series' histogram.

The answers the router gives itself (401, 404, 408, 413, 429 before an upstream, 503, ...) belong
to no instance: ``recon_router_responses_total{endpoint,code}``, by exact status.

Counting is on the data path, so it is kept to a few integer increments per request: an upstream
holds its series (``attach``, at every table change), an exchange remembers the last upstream it
was sent to and how it ended. Series are kept for the life of the router (a configuration that went
away keeps its counts: counters never go down while a router runs).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# Prometheus' default buckets (0.005 .. 10 s) with two below (a local instance answers in about a
# millisecond: relative latency gates need resolution there) and 30 and 60 s above (request timeouts
# go up to 180 s on managed endpoints); 16 with +Inf.
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)
CODES = ("1xx", "2xx", "3xx", "4xx", "5xx")
FIVE = 4  # index of "5xx" in CODES
# How a request ended (Exchange.outcome): the instance's status (100..599), or one of these
FAILED, TIMEOUT = 0, 1


class Series:
    """The counts of one deployment, configuration and kind of traffic."""

    __slots__ = ("deployment", "digest", "traffic", "codes", "timeouts", "failures", "retries", "buckets", "sum")

    def __init__(self, deployment: str, digest: str, traffic: str) -> None:
        self.deployment, self.digest, self.traffic = deployment, digest, traffic
        self.codes = [0, 0, 0, 0, 0]  # by CODES
        self.timeouts = 0
        self.failures = 0
        self.retries = 0
        self.buckets = [0] * len(BOUNDS)  # not cumulative: each observation in its first bucket
        self.sum = 0.0

    def observe(self, outcome: int, seconds: float) -> None:
        """One request ended: ``outcome`` the instance's status, TIMEOUT or FAILED; ``seconds`` it took."""
        if outcome >= 100:
            self.codes[min(outcome // 100, 5) - 1] += 1
        else:
            self.codes[FIVE] += 1
            if outcome == TIMEOUT:
                self.timeouts += 1
            else:
                self.failures += 1
        self.buckets[bisect_left(BOUNDS, seconds)] += 1
        self.sum += seconds


class Upstream(Protocol):
    """An instance address as the pools hold it (pools.Upstream), with the series it counts in."""

    addr: str
    live: Series | None
    mirror: Series | None


class Spec(Protocol):
    @property
    def name(self) -> str: ...

    def digest_of(self, addr: str) -> str: ...


class Pool(Protocol):
    """A deployment at run time (pools.Pool): its spec and its upstreams."""

    @property
    def spec(self) -> Spec: ...

    @property
    def upstreams(self) -> Sequence[Upstream]: ...


class Metrics:
    """Every series of the router, its own answers, and the exposition."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], Series] = {}
        self.own: dict[int, int] = {}
        self.mirror_dropped: dict[str, int] = {}
        self.started = time.time()

    def get(self, deployment: str, digest: str, traffic: str) -> Series:
        key = (deployment, digest, traffic)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(deployment, digest, traffic)
        return series

    def attach(self, pools: Iterable[Pool]) -> None:
        """After a table change: each upstream of a pool counts in its deployment's series at the
        digest the table gives it (its live series exists from now on, with zero counts)."""
        for pool in pools:
            spec = pool.spec
            for up in pool.upstreams:
                digest = spec.digest_of(up.addr)
                live = self.get(spec.name, digest, "live")
                if up.live is not live:
                    up.live, up.mirror = live, None

    # -- off the common path (a request's end is counted by status.Telemetry.exchange_done)

    def retried(self, up: Upstream, mirror: bool) -> None:
        """A request got no byte back from ``up`` and goes to another instance."""
        series = up.live if not mirror else (up.mirror or self.mirror_series(up))
        if series is not None:
            series.retries += 1

    def mirror_series(self, up: Upstream) -> Series | None:
        """The series of ``up``'s mirrored copies, made with the first one."""
        live = up.live
        if live is None:
            return None
        up.mirror = self.get(live.deployment, live.digest, "mirror")
        return up.mirror

    def answered_itself(self, status: int) -> None:
        self.own[status] = self.own.get(status, 0) + 1

    def dropped(self, deployment: str) -> None:
        """A mirrored copy found no free slot and was not sent."""
        self.mirror_dropped[deployment] = self.mirror_dropped.get(deployment, 0) + 1

    # -- the exposition

    def render(self, endpoint: str, version: Any, in_flight: int) -> bytes:
        """``GET /-/metrics``: every family with its HELP and TYPE lines, series sorted."""
        ep = f'endpoint="{escape(endpoint)}"'
        ordered = [self.series[k] for k in sorted(self.series)]
        labels = {id(s): f'{ep},deployment="{escape(s.deployment)}",digest="{escape(s.digest)}",'
                         f'traffic="{s.traffic}"' for s in ordered}
        out: list[str] = []
        family(out, "recon_router_requests_total", "counter",
               "Requests sent to an instance, counted when they end, by the class of the instance's answer "
               "(timeouts and connection failures count as 5xx).")
        for s in ordered:
            for i in range(1, len(CODES)):
                out.append(f'recon_router_requests_total{{{labels[id(s)]},code="{CODES[i]}"}} {s.codes[i]}')
        for name, attr, text in (
                ("recon_router_upstream_timeouts_total", "timeouts",
                 "Requests that reached the deployment's request timeout (the client got 408)."),
                ("recon_router_upstream_connect_failures_total", "failures",
                 "Requests that got no whole answer from any instance tried (the client got 502)."),
                ("recon_router_upstream_retries_total", "retries",
                 "Requests that got no byte back from an instance and were sent to another.")):
            family(out, name, "counter", text)
            out += [f"{name}{{{labels[id(s)]}}} {getattr(s, attr)}" for s in ordered]
        family(out, "recon_router_request_duration_seconds", "histogram",
               "Time from routing a request to the end of its answer (queueing included).")
        for s in ordered:
            cumulative = 0
            for bound, count in zip(BOUNDS, s.buckets, strict=True):
                cumulative += count
                le = "+Inf" if math.isinf(bound) else f"{bound:g}"
                out.append(f'recon_router_request_duration_seconds_bucket{{{labels[id(s)]},le="{le}"}} {cumulative}')
            out.append(f"recon_router_request_duration_seconds_sum{{{labels[id(s)]}}} {s.sum!r}")
            out.append(f"recon_router_request_duration_seconds_count{{{labels[id(s)]}}} {cumulative}")
        family(out, "recon_router_responses_total", "counter",
               "Answers the router gave itself (no instance involved), by status.")
        out += [f'recon_router_responses_total{{{ep},code="{code}"}} {n}' for code, n in sorted(self.own.items())]
        family(out, "recon_router_mirror_dropped_total", "counter",
               "Mirrored copies not sent: no instance of the mirrored deployment had a free slot.")
        out += [f'recon_router_mirror_dropped_total{{{ep},deployment="{escape(d)}"}} {n}'
                for d, n in sorted(self.mirror_dropped.items())]
        family(out, "recon_router_requests_in_flight", "gauge", "Client requests being answered now.")
        out.append(f"recon_router_requests_in_flight{{{ep}}} {in_flight}")
        family(out, "recon_router_info", "gauge", "The routing table in force (version), always 1.")
        out.append(f'recon_router_info{{{ep},version="{escape(str(version))}"}} 1')
        family(out, "process_start_time_seconds", "gauge", "When the router started, in seconds since the epoch.")
        out.append(f"process_start_time_seconds {self.started!r}")
        return ("\n".join(out) + "\n").encode()


def family(out: list[str], name: str, kind: str, text: str) -> None:
    out.append(f"# HELP {name} {text}")
    out.append(f"# TYPE {name} {kind}")


def escape(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
