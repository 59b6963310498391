"""Azure Monitor's metrics of online endpoints, as the ARM emulator serves them (tests only).

``GET {endpoint id}/providers/Microsoft.Insights/metrics`` (``Metrics - List``, api-version 2023-10-01
or 2018-01-01) answers in the documented shape: ``value[]`` one per metric (``id``, ``type``,
``name {value, localizedValue}``, ``unit``, ``errorCode: Success``) with ``timeseries[]`` of
``metadatavalues[] {name {value, localizedValue}, value}`` and ``data[] {timeStamp, <aggregation>}``
(a minute without data carries only its ``timeStamp``). It checks the query as Azure does: known
metric names of ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``, dimensions in
``$filter`` that the metric has (``ValidateDimensions``), the documented aggregation (Average), the
grain PT1M (the only one this emulator serves), a ``timespan``, and ``top`` (default 10: the answer
is cut there, as Azure cuts it).

The numbers come from a model of the endpoint that the test sets up: ``load[endpoint]`` requests
per minute reach it and are split by the traffic in force (every accepted endpoint PUT is recorded
with the emulator's clock; a minute's share is weighted by how long each split held in it;
mirrored copies count under the deployment they went to), and each deployment answers as its
``Behaviour`` says (model errors: the container answers 500, Azure 424; server errors 503;
timeouts 408; throttled 429; its p99), which may change with its live share (``from_share``:
"the metrics go bad after the 50% step") or with the configuration it runs (``running``: text its
ARM body must contain, "the metrics go bad once the update to model version 2 is done"; read when
a query is answered, so a configuration holds for every minute it is asked about). A minute is served once it has ended and ``delay``
seconds have passed (Azure Monitor's ingestion). ``clock`` is injectable, so a test can run
minutes in no time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

API_VERSIONS = ("2023-10-01", "2018-01-01")
NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUEST_DIMENSIONS = ("deployment", "statusCode", "statusCodeClass", "modelStatusCode")
# name -> (display name, unit, documented aggregations, dimensions), from Azure's table of supported
# metrics of Microsoft.MachineLearningServices/workspaces/onlineEndpoints
METRICS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "RequestsPerMinute": ("Requests Per Minute", "Count", ("average",), REQUEST_DIMENSIONS),
    "RequestLatency_P99": ("Request Latency P99", "Milliseconds", ("average",), ("deployment",)),
    "RequestLatency_P50": ("Request Latency P50", "Milliseconds", ("average",), ("deployment",)),
    "ConnectionsActive": ("Connections Active", "Count", ("average",), ()),
}
Answer = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Behaviour:
    """How a deployment answers: fractions of its requests per kind of answer, and its p99.
    ``from_share``: applies while the deployment's live share is at least this percentage."""

    p99_ms: float = 80.0
    model_errors: float = 0.0
    server_errors: float = 0.0
    timeouts: float = 0.0
    throttled: float = 0.0
    from_share: int = 0
    running: str = ""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str) -> Answer:
    return status, {}, {"error": {"code": code, "message": message}}


class Metrics:
    """The emulated endpoints' metrics: their model (load, behaviours, traffic history) and the
    ``Metrics - List`` handler."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.delay = 0.0
        self.load: dict[str, float] = {}
        self.behaviours: dict[tuple[str, str], list[Behaviour]] = {}
        self.history: dict[str, list[tuple[float, dict[str, int], dict[str, int]]]] = {}
        self.queries: list[dict[str, str]] = []
        self.body_of: Callable[[str, str], str] = lambda endpoint, deployment: ""  # the deployment's ARM body

    # -- the model, for tests ---------------------------------------------------------------------
    def behave(self, endpoint: str, deployment: str, *behaviours: Behaviour) -> None:
        self.behaviours[(endpoint.lower(), deployment.lower())] = sorted(behaviours, key=lambda b: b.from_share)

    def record(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int]) -> None:
        """The endpoint's split from now on (the emulator calls it on every accepted PUT)."""
        self.history.setdefault(endpoint.lower(), []).append(
            (self.clock(), {k.lower(): int(v) for k, v in traffic.items() if v},
             {k.lower(): int(v) for k, v in mirror.items() if v}))

    def shares(self, endpoint: str, start: float, end: float) -> dict[str, tuple[float, float]]:
        """Per deployment, its (live, mirrored) share of ``[start, end)``, weighted by time."""
        out: dict[str, tuple[float, float]] = {}
        history = self.history.get(endpoint.lower(), [])
        for i, (t, live, mirror) in enumerate(history):
            until = history[i + 1][0] if i + 1 < len(history) else float("inf")
            overlap = max(0.0, min(end, until) - max(start, t)) / (end - start)
            for name in set(live) | set(mirror):
                old = out.get(name, (0.0, 0.0))
                out[name] = (old[0] + live.get(name, 0) * overlap, old[1] + mirror.get(name, 0) * overlap)
        return out

    def behaviour(self, endpoint: str, deployment: str, live_share: float) -> Behaviour:
        chosen = Behaviour()
        body = self.body_of(endpoint, deployment)
        for b in self.behaviours.get((endpoint.lower(), deployment.lower()), []):
            if live_share >= b.from_share and b.running in body:
                chosen = b
        return chosen

    def minute(self, endpoint: str, m: float) -> tuple[dict[tuple[str, ...], float], dict[str, float]]:
        """One minute: request counts by (deployment, statusCode, statusCodeClass, modelStatusCode),
        and p99 (ms) by deployment."""
        counts: dict[tuple[str, ...], float] = {}
        p99: dict[str, float] = {}
        load = self.load.get(endpoint.lower(), 0.0)
        for name, (live, mirror) in sorted(self.shares(endpoint, m, m + 60).items()):
            n = round(load * (live + mirror) / 100)
            if n <= 0:
                continue
            b = self.behaviour(endpoint, name, live)
            kinds = {("424", "4xx", "500"): round(n * b.model_errors), ("503", "5xx", ""): round(n * b.server_errors),
                     ("408", "4xx", ""): round(n * b.timeouts), ("429", "4xx", ""): round(n * b.throttled)}
            kinds[("200", "2xx", "200")] = n - sum(kinds.values())
            for (code, cls, model), count in kinds.items():
                if count > 0:
                    counts[(name, code, cls, model)] = float(count)
            p99[name] = b.p99_ms
        return counts, p99

    # -- the API ------------------------------------------------------------------------------------
    def handle(self, endpoint: str | None, resource: str, query: dict[str, list[str]]) -> Answer:
        """``Metrics - List`` of the endpoint at ``resource`` (``endpoint`` None: no such endpoint)."""
        q = {k: v[0] for k, v in query.items()}
        self.queries.append(q)
        if q.get("api-version") not in API_VERSIONS:
            return _error(400, "InvalidApiVersionParameter", f"api-version must be one of {', '.join(API_VERSIONS)}")
        if endpoint is None:
            return _error(404, "ResourceNotFound", f"The Resource '{resource}' was not found.")
        if q.get("metricnamespace", NAMESPACE).lower() != NAMESPACE.lower():
            return _error(400, "BadRequest", f"metric namespace {q['metricnamespace']} is not {NAMESPACE}")
        names = [n.strip() for n in q.get("metricnames", "").split(",") if n.strip()]
        known = {k.lower(): k for k in METRICS}
        unknown = [n for n in names if n.lower() not in known]
        if not names or unknown:
            return _error(400, "BadRequest", f"Failed to find metric configuration for provider: "
                          f"Microsoft.MachineLearningServices, resource Type: workspaces/onlineEndpoints, metric: "
                          f"{','.join(unknown) or '(none)'}, Valid metrics: {', '.join(METRICS)}")
        if q.get("interval", "PT1M").upper() != "PT1M":
            return _error(400, "BadRequest", f"interval {q['interval']} is not served here: PT1M")
        try:
            start, end = (datetime.fromisoformat(p.replace("Z", "+00:00")).timestamp()
                          for p in q["timespan"].split("/"))
        except (KeyError, ValueError):
            return _error(400, "BadRequest", f"timespan {q.get('timespan')!r} is not START/END in ISO 8601")
        clauses = self._filter(q.get("$filter", ""))
        if clauses is None:
            return _error(400, "BadRequest", f"$filter {q.get('$filter')!r} is not of the form dim eq 'value' and ...")
        aggregations = [a.strip().lower() for a in q.get("aggregation", "average").split(",")]
        top = int(q.get("top", "10"))
        value = []
        for name in (known[n.lower()] for n in names):
            display, unit, allowed, dims = METRICS[name]
            bad = [d for d in clauses if d.lower() not in {x.lower() for x in dims}]
            if bad:
                return _error(400, "BadRequest", f"Metric {name} has no dimension {', '.join(bad)} "
                              f"(its dimensions: {', '.join(dims) or 'none'})")
            if any(a not in allowed for a in aggregations):
                return _error(400, "BadRequest", f"aggregation {q.get('aggregation')} is not supported by {name}: "
                              + ", ".join(a.capitalize() for a in allowed))
            series = self._series(endpoint, name, dims, clauses, start, end, aggregations)[:top]
            value.append({"id": f"{resource}/providers/Microsoft.Insights/metrics/{name}", "type": "Microsoft.Insights/metrics",
                          "name": {"value": name, "localizedValue": display}, "unit": unit, "timeseries": series,
                          "errorCode": "Success"})
        return 200, {}, {"cost": 0, "timespan": f"{iso(start)}/{iso(end)}", "interval": "PT1M", "value": value,
                         "namespace": NAMESPACE.lower(), "resourceregion": "eastus"}

    @staticmethod
    def _filter(text: str) -> dict[str, str] | None:
        if not text.strip():
            return {}
        clauses = {}
        for part in re.split(r"\s+and\s+", text.strip()):
            m = re.fullmatch(r"(\w+)\s+eq\s+'([^']*)'", part.strip())
            if m is None:
                return None
            clauses[m[1]] = m[2]
        return clauses

    def _series(self, endpoint: str, metric: str, dims: tuple[str, ...], clauses: dict[str, str],
                start: float, end: float, aggregations: list[str]) -> list[dict[str, Any]]:
        split = [d for d in dims if any(c.lower() == d.lower() for c in clauses)]
        wanted = {d: next(v for c, v in clauses.items() if c.lower() == d.lower()) for d in split}
        minutes = [float(m) for m in range(int(start) // 60 * 60, int(end), 60)]
        served = [m for m in minutes if m + 60 + self.delay <= self.clock()]
        table: dict[tuple[str, ...], dict[float, float]] = {}
        for m in served:
            counts, p99 = self.minute(endpoint, m)
            rows: list[tuple[dict[str, str], float]]
            if metric == "RequestsPerMinute":
                rows = [(dict(zip(REQUEST_DIMENSIONS, key, strict=True)), n) for key, n in counts.items()]
            elif metric.startswith("RequestLatency"):
                rows = [({"deployment": d}, ms) for d, ms in p99.items()]
            else:
                rows = [({}, float(len(p99)))]
            for row, number in rows:
                if any(wanted[d] not in ("*", row.get(d)) for d in split):
                    continue
                key = tuple(row.get(d, "") for d in split)
                cell = table.setdefault(key, {})
                # summed over the dimensions not split on (a latency has one row per deployment)
                cell[m] = cell.get(m, 0.0) + number
        out = []
        for key in sorted(table):
            data = [{"timeStamp": iso(m), **({a: table[key][m] for a in aggregations} if m in table[key] else {})}
                    for m in minutes]
            out.append({"metadatavalues": [{"name": {"value": d.lower(), "localizedValue": d}, "value": v}
                                           for d, v in zip(split, key, strict=True)], "data": data})
        return out


__all__ = ["API_VERSIONS", "METRICS", "NAMESPACE", "Behaviour", "Metrics"]
