"""Azure Monitor's metrics of an online endpoint: what a guarded rollout judges on azure.

The router-based providers count every request themselves. On Azure requests never pass through
recon, so a gate reads what Azure measured at the endpoint: the Azure Monitor metrics REST API
(``Metrics - List``, api-version 2023-10-01) on the endpoint's ARM id, sent through the ARM client
of ``arm.py`` (its credential, azure-core's retries of 408/429/5xx and dropped connections, its
progress lines). Two queries per window, one per metric (their dimensions differ, and a filter
naming a dimension a metric lacks is refused)::

    GET {endpoint id}/providers/Microsoft.Insights/metrics?api-version=2023-10-01
        &metricnamespace=Microsoft.MachineLearningServices/workspaces/onlineEndpoints
        &metricnames=RequestsPerMinute&timespan={start}/{end}&interval=PT1M&aggregation=average&top=500
        &$filter=deployment eq '*' and statusCode eq '*' and statusCodeClass eq '*' and modelStatusCode eq '*'
    GET ...&metricnames=RequestLatency_P99&...&$filter=deployment eq '*'

The metrics, as Azure documents them for ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``
(sources in docs/azure.md, "Guarded rollouts"):

- ``RequestsPerMinute``: Count, aggregation Average, grain PT1M, dimensions ``deployment``,
  ``statusCode``, ``statusCodeClass``, ``modelStatusCode``. At PT1M a minute's value is the number
  of requests of that minute; a window's requests are the sum of its minutes.
- ``RequestLatency_P99``: Milliseconds, Average, PT1M, dimension ``deployment``. A window's p99 is
  that of its worst minute (quantiles do not add; the worst minute is what a client saw at worst).

What counts, by Azure's status codes of online endpoints (its troubleshooting guide):

- failed (``errors_5xx``): any 5xx, and 424 "Model Error" (the container answered other than 200)
  unless the model's own status (``modelStatusCode``) was a 4xx: the caller's fault;
- timed out (``timeouts``): 408, the model ran past ``request_timeout_ms``;
- not the deployment's answer, in no count: 401 and 403 (authentication) and 429 (Azure's
  throttling and its pending-request limit), like the answers recon's router gives itself.

A window is whole minutes: Azure Monitor's grain is one minute, and a partial minute would mix in
what happened before the step. The mark holds when the window opened; the window starts at the
next whole minute and holds every whole minute after it that Azure Monitor has when it is closed.
The first close waits for the first minute to end and for its data, asking again every ``POLL_S``
for at most ``metrics_delay`` seconds after it (Azure Monitor needs a little time to have a
minute; an endpoint that got no request in that minute shows nothing either, so an idle endpoint
is found idle only after ``metrics_delay``); later closes add each minute as Azure has it, without
waiting. The engine closes a window every second of a bake, looking for a clear failure, so on
azure the first look comes after one whole minute of the new split, and the verdict at the end of
the bake covers the whole minutes from the step to then.

Metrics that cannot be read (a 429 or 5xx that outlived azure-core's retries, a per-metric error,
an answer cut at ``top``) raise ``MetricsError``: a gate never passes on metrics it does not have.

Azure Monitor does not tell the old and new configuration of one deployment apart (Azure's rolling
update of a managed deployment is one ARM operation): every series is a whole deployment.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from providers.azure.arm import ArmClient, Emit, Reply, status_error
from reconciler.model.errors import PermanentError, ProviderError

METRICS_API_VERSION = "2023-10-01"
NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS = "RequestsPerMinute"
LATENCY = "RequestLatency_P99"
REQUEST_DIMENSIONS = ("deployment", "statusCode", "statusCodeClass", "modelStatusCode")
GRAIN_S = 60
TOP = 500  # series per query; the API's default is 10 (an endpoint has up to 20 deployments)
NOT_COUNTED = frozenset({401, 403, 429})
POLL_S = 15.0  # between queries while the window's last minute has no data yet


class MetricsError(PermanentError):
    """Azure Monitor's metrics could not be read, or were not whole: the gate cannot judge."""


@dataclass
class Counts:
    """One deployment over one window: requests, failed, timed out, worst minute's p99 (ms)."""

    requests: float = 0.0
    failed: float = 0.0
    timeouts: float = 0.0
    p99_ms: float | None = None


@dataclass
class Window:
    """What Azure Monitor reported for one window (plain data)."""

    start: float
    end: float
    deployments: dict[str, Counts] = field(default_factory=dict)
    mirror: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> int:
        return round((self.end - self.start) / GRAIN_S)

    def describe(self) -> str:
        return f"Azure Monitor, {iso(self.start)}..{iso(self.end)} ({self.minutes} min)"


def iso(t: float) -> str:
    """``2024-05-01T12:01:00Z``: the form Azure Monitor's timespan and timeStamp use."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()


def next_minute(t: float) -> float:
    """The first whole minute at or after ``t``."""
    return float(math.ceil(t / GRAIN_S) * GRAIN_S)


def classify(status: int | None, model_status: int | None, status_class: str = "") -> str:
    """``ok``, ``failed``, ``timeout`` or ``ignored`` for one answer (see the module docstring)."""
    if status is None:  # no statusCode: its class is all there is
        return "failed" if status_class.lower() == "5xx" else "ok"
    if status in NOT_COUNTED:
        return "ignored"
    if status >= 500:
        return "failed"
    if status == 424:
        return "ok" if model_status is not None and 400 <= model_status < 500 else "failed"
    if status == 408:
        return "timeout"
    return "ok"


def metrics_path(resource: str, metric: str, dimensions: tuple[str, ...], start: float, end: float) -> str:
    """The query of one metric over ``[start, end)``, per minute, split by ``dimensions``."""
    flt = " and ".join(f"{d} eq '*'" for d in dimensions)
    params = [("api-version", METRICS_API_VERSION), ("metricnamespace", NAMESPACE), ("metricnames", metric),
              ("timespan", f"{iso(start)}/{iso(end)}"), ("interval", "PT1M"), ("aggregation", "average"),
              ("top", str(TOP)), ("$filter", flt)]
    return f"{resource}/providers/Microsoft.Insights/metrics?" + "&".join(
        f"{k}={quote(v, safe='*/:')}" for k, v in params)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def series_of(body: Any, metric: str) -> list[tuple[dict[str, str], dict[float, float]]]:
    """(dimensions, {minute: value}) of each time series of ``metric`` in a ``Metrics - List``
    answer; dimension names lower-cased, minutes without a value left out."""
    values = body.get("value") if isinstance(body, dict) else None
    found = [m for m in values or [] if str((m.get("name") or {}).get("value", "")).lower() == metric.lower()]
    if not found:
        raise MetricsError(f"Azure Monitor's answer has no {metric}")
    m = found[0]
    if m.get("errorCode") not in (None, "", "Success"):
        raise MetricsError(f"Azure Monitor could not give {metric}: {m.get('errorCode')}: {m.get('errorMessage') or ''}")
    out = []
    timeseries = m.get("timeseries") or []
    if len(timeseries) >= TOP:
        raise MetricsError(f"Azure Monitor answered {len(timeseries)} series of {metric}, as many as recon asked "
                           "for (top): some may be missing")
    for ts in timeseries:
        dims = {str((md.get("name") or {}).get("value", "")).lower(): str(md.get("value") or "")
                for md in ts.get("metadatavalues") or []}
        points = {parse_time(p["timeStamp"]): float(p["average"])
                  for p in ts.get("data") or [] if p.get("average") is not None}
        out.append((dims, points))
    return out


def summarise(requests: Any, latency: Any, start: float, end: float) -> dict[str, Counts]:
    """Per deployment (lower-cased), the window's counts from the two answers."""
    counts: dict[str, Counts] = {}
    for dims, points in series_of(requests, REQUESTS):
        total = sum(v for t, v in points.items() if start <= t < end)
        kind = classify(_int(dims.get("statuscode", "")), _int(dims.get("modelstatuscode", "")),
                        dims.get("statuscodeclass", ""))
        if kind == "ignored" or not total:
            continue
        c = counts.setdefault(dims.get("deployment", "").lower(), Counts())
        c.requests += total
        c.failed += total if kind == "failed" else 0.0
        c.timeouts += total if kind == "timeout" else 0.0
    for dims, points in series_of(latency, LATENCY):
        inside = [v for t, v in points.items() if start <= t < end]
        if inside:
            c = counts.setdefault(dims.get("deployment", "").lower(), Counts())
            c.p99_ms = max(inside + ([c.p99_ms] if c.p99_ms is not None else []))
    return counts


def _minutes_with_data(bodies: list[Any], metrics: list[str]) -> set[float]:
    """The minutes for which some series of some metric has a value."""
    return {t for body, metric in zip(bodies, metrics, strict=True) for _, points in series_of(body, metric)
            for t in points}


def _minutes(start: float, end: float) -> list[float]:
    return [start + k * GRAIN_S for k in range(round((end - start) / GRAIN_S))]


class Monitor:
    """Windows over Azure Monitor's metrics of one endpoint. ``now`` and ``sleep`` are the clock
    (injectable: tests run minutes in no time)."""

    def __init__(self, arm: ArmClient, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.arm = arm
        self.now = now
        self.sleep = sleep
        self._seen: dict[str, tuple[float, Window]] = {}  # per window: when Azure Monitor was asked, its answer

    def mark(self, resource: str, endpoint: dict[str, Any]) -> dict[str, Any]:
        """The mark of a window opened now (plain data): the endpoint's ARM id, the time, and the
        deployments that get mirrored traffic (their series are mirrored responses: a deployment
        gets live or mirrored traffic, never both)."""
        opened = self.now()
        mirror = (endpoint.get("properties") or {}).get("mirrorTraffic") or {}
        return {"source": "azure-monitor", "id": uuid.uuid4().hex, "resource": resource, "opened": opened,
                "start": iso(next_minute(opened)), "mirror": sorted(k.lower() for k, v in mirror.items() if v)}

    def read(self, mark: dict[str, Any], emit: Emit) -> Window:
        """The window since ``mark``: the whole minutes after it that Azure Monitor has so far (at
        least one: the first call waits for the first). Cheap to call often (the engine looks every
        second during a bake): Azure Monitor is asked again only when a minute has ended since the
        last answer, and no more often than every ``POLL_S`` while a minute's data is awaited."""
        opened = float(mark["opened"])
        start = next_minute(opened)
        resource = str(mark["resource"])
        key = str(mark.get("id") or f"{resource}@{opened!r}")
        delay = self.arm.settings.metrics_delay
        while True:
            now = self.now()
            ended = int((now - start) // GRAIN_S)
            if ended < 1:
                wait = start + GRAIN_S - now
                emit(f"Azure Monitor: waiting {wait:.0f} s for the window's first whole minute ({iso(start)}) to end")
                self.sleep(wait)
                continue
            seen = self._seen.get(key)
            if seen is not None and (seen[1].minutes >= ended or now - seen[0] < POLL_S):
                return seen[1]
            end = start + ended * GRAIN_S
            bodies = [self._query(resource, REQUESTS, REQUEST_DIMENSIONS, start, end, emit),
                      self._query(resource, LATENCY, ("deployment",), start, end, emit)]
            data = _minutes_with_data(bodies, [REQUESTS, LATENCY])
            have = [m for m in _minutes(start, end) if m in data or m + GRAIN_S + delay <= now]
            if have:
                last = max(have) + GRAIN_S
                window = Window(start, last, summarise(bodies[0], bodies[1], start, last), list(mark.get("mirror") or []))
                self._seen[key] = (now, window)
                return window
            pause = min(POLL_S, start + GRAIN_S + delay - now)
            emit(f"Azure Monitor has no data for {iso(start)} yet; asking again in {pause:.0f} s "
                 f"(for at most {delay:g} s after the minute: metrics_delay)")
            self.sleep(pause)

    def _query(self, resource: str, metric: str, dimensions: tuple[str, ...], start: float, end: float,
               emit: Emit) -> Any:
        path = metrics_path(resource, metric, dimensions, start, end)
        try:
            reply: Reply = self.arm.send("GET", path, emit=emit)
        except ProviderError as exc:
            raise MetricsError(f"Azure Monitor's {metric} could not be read: {exc}; the gate cannot judge "
                               "without it") from exc
        if reply.status != 200:
            error = status_error("GET", self.arm.url(path), reply)
            tried = (f" (azure-core sent it {self.arm.settings.retry_total + 1} times)"
                     if reply.status in (408, 429) or reply.status >= 500 else "")
            raise MetricsError(f"Azure Monitor's {metric} could not be read: {error}{tried}; the gate cannot "
                               "judge without it")
        return reply.body


__all__ = ["GRAIN_S", "LATENCY", "METRICS_API_VERSION", "NAMESPACE", "REQUESTS", "Counts", "MetricsError",
           "Monitor", "Window", "classify", "iso", "metrics_path", "next_minute", "summarise"]
