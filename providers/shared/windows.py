"""Measuring windows from the routers' ``GET /-/metrics`` (docs/runtime.md): written once for every
provider whose endpoints are served by recon's router (local, docker, kubernetes).

- ``open_window``: the mark is the counters of every router replica of the endpoint, parsed (JSON
  data: the engine may keep it).
- ``close_window``: the counters read again, the mark's subtracted replica by replica, series by
  series, then added over the replicas; the p99 comes from the subtracted histogram buckets, as
  Prometheus' ``histogram_quantile`` computes it (``reconciler.model.windows``).

Counters only grow while a router runs. A replica whose ``process_start_time_seconds`` changed
(restarted), or that the mark does not know (a new replica), counts from zero; a counter that went
down is taken whole, as Prometheus' ``increase`` does after a reset. A replica that no longer answers
at close is missing from the window: ``WindowStats.source`` says how many replicas were read.

The exposition is parsed with ``prometheus_client``'s parser (the ecosystem's, not one of recon's),
whose families drop ``_total`` from counter names.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from reconciler.model.errors import RetryableError
from reconciler.model.windows import SeriesStats, WindowStats, histogram_quantile
from reconciler.plan.provider import ApplyRequest, Measuring

REQUESTS = "recon_router_requests"
TIMEOUTS = "recon_router_upstream_timeouts"
CONNECT_FAILURES = "recon_router_upstream_connect_failures"
DURATION = "recon_router_request_duration_seconds"
START_TIME = "process_start_time_seconds"
CODES = ("1xx", "2xx", "3xx", "4xx", "5xx")

Scrape = tuple[str, str | None]  # (replica, its GET /-/metrics text, or None: it did not answer)


def _key(labels: dict[str, str]) -> str:
    return "\t".join((labels.get("deployment", ""), labels.get("digest", ""), labels.get("traffic", "live")))


def _le(value: str) -> float:
    return math.inf if value in ("+Inf", "Inf") else float(value)


def parse_counts(text: str) -> dict[str, Any]:
    """One scrape as JSON data: ``{"start": S, "series": {"DEPLOYMENT\\tDIGEST\\tTRAFFIC": {"codes":
    {"2xx": n, ...}, "timeouts": n, "connect_failures": n, "buckets": {"0.005": n, ..., "+Inf": n}}}}``
    (bucket bounds as the router wrote them, cumulative counts)."""
    series: dict[str, dict[str, Any]] = {}
    start: float | None = None

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        return series.setdefault(_key(labels), {"codes": {}, "timeouts": 0, "connect_failures": 0, "buckets": {}})

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if family.name == START_TIME:
                start = value
            elif family.name == REQUESTS and sample.name.endswith("_total"):
                codes = entry(labels)["codes"]
                codes[labels.get("code", "")] = codes.get(labels.get("code", ""), 0) + int(value)
            elif family.name == TIMEOUTS and sample.name.endswith("_total"):
                entry(labels)["timeouts"] += int(value)
            elif family.name == CONNECT_FAILURES and sample.name.endswith("_total"):
                entry(labels)["connect_failures"] += int(value)
            elif family.name == DURATION and sample.name.endswith("_bucket"):
                entry(labels)["buckets"][labels["le"]] = int(value)
    return {"start": start, "series": series}


def _increase(now: float, before: float) -> float:
    """What a counter gained; after a reset (it went down) all of its value is new."""
    return now - before if now >= before else now


def _subtract(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The series of one replica between two scrapes (``before`` None: everything it counted)."""
    if before is None or before.get("start") != now.get("start"):
        before = {"series": {}}
    out: dict[str, dict[str, Any]] = {}
    for key, cur in now["series"].items():
        old = before["series"].get(key) or {"codes": {}, "timeouts": 0, "connect_failures": 0, "buckets": {}}
        out[key] = {
            "codes": {c: _increase(n, old["codes"].get(c, 0)) for c, n in cur["codes"].items()},
            "timeouts": _increase(cur["timeouts"], old["timeouts"]),
            "connect_failures": _increase(cur["connect_failures"], old["connect_failures"]),
            "buckets": {le: _increase(n, old["buckets"].get(le, 0)) for le, n in cur["buckets"].items()},
        }
    return out


def series_stats(parts: Iterable[dict[str, dict[str, Any]]]) -> list[SeriesStats]:
    """Series of several replicas (``_subtract``'s results) added up, as ``SeriesStats``."""
    total: dict[str, dict[str, Any]] = {}
    for part in parts:
        for key, got in part.items():
            acc = total.setdefault(key, {"codes": {}, "timeouts": 0, "connect_failures": 0, "buckets": {}})
            for c, n in got["codes"].items():
                acc["codes"][c] = acc["codes"].get(c, 0) + n
            acc["timeouts"] += got["timeouts"]
            acc["connect_failures"] += got["connect_failures"]
            for le, n in got["buckets"].items():
                bound = _le(le)
                acc["buckets"][bound] = acc["buckets"].get(bound, 0) + n
    out: list[SeriesStats] = []
    for key in sorted(total):
        deployment, digest, traffic = key.split("\t")
        got = total[key]
        requests = int(sum(got["codes"].values()))
        timeouts, failures = int(got["timeouts"]), int(got["connect_failures"])
        buckets = sorted((le, int(n)) for le, n in got["buckets"].items()) or None
        out.append(SeriesStats(
            deployment=deployment, digest=digest or None, traffic="mirror" if traffic == "mirror" else "live",
            requests=requests,
            # the router counts timeouts and connection failures among its 5xx (docs/runtime.md); the
            # stats keep the three apart (reconciler/model/windows.py)
            errors_5xx=max(0, int(got["codes"].get("5xx", 0)) - timeouts - failures),
            timeouts=timeouts, connect_failures=failures,
            latency_p99_s=histogram_quantile(0.99, buckets) if buckets and requests else None, buckets=buckets))
    return out


def open_mark(endpoint: str, scrapes: list[Scrape], now: float) -> dict[str, Any]:
    """The mark of a window: every replica's counters (None for a replica that did not answer)."""
    return {"endpoint": endpoint, "opened_at": now,
            "replicas": {rid: parse_counts(text) if text is not None else None for rid, text in scrapes}}


def close_stats(mark: dict[str, Any], scrapes: list[Scrape], now: float) -> WindowStats:
    """What happened since ``mark`` on every replica that answers now."""
    before = mark.get("replicas") or {}
    parts = [_subtract(parse_counts(text), before.get(rid)) for rid, text in scrapes if text is not None]
    read, unread = len(parts), sum(1 for _, text in scrapes if text is None)
    source = f"router /-/metrics x{read} replica{'s' if read != 1 else ''}"
    if unread:
        source += f" ({unread} not answering)"
    return WindowStats(series=series_stats(parts), window_s=max(0.0, now - float(mark.get("opened_at") or now)),
                       source=source)


def endpoint_of(request: ApplyRequest) -> str:
    """The endpoint a request is about (an endpoint, or the one a deployment is behind), lowercased."""
    attrs = request.attributes
    name = attrs.get("endpoint_name") if request.type == "deployment" else attrs.get("name")
    return str(name or request.name).lower()


class RouterWindows:
    """``open_window`` / ``close_window`` for providers whose endpoints are served by recon's router:
    a provider names only how it reads ``GET /-/metrics`` of every router replica of an endpoint."""

    measuring = Measuring(windows=True, digests=True, source="router /-/metrics")
    #: how a window read waits before asking again when no replica answered (bounded: then it fails)
    read_pauses: tuple[float, ...] = (0.5, 1.0, 2.0)
    pause: Callable[[float], None] = staticmethod(time.sleep)

    @abstractmethod
    def _router_metrics(self, endpoint: str) -> list[Scrape]:
        """``(replica, GET /-/metrics text or None)`` for every router replica of ``endpoint``."""

    def _scrapes(self, request: ApplyRequest, endpoint: str) -> list[Scrape]:
        """Every replica's scrape; asked again (``read_pauses``) while no replica answers (a router
        busy on a loaded machine, an API server's pod proxy slow to answer), then an error."""
        for pause in (*self.read_pauses, None):
            scrapes = self._router_metrics(endpoint)
            if any(text is not None for _, text in scrapes):
                return scrapes
            if pause is not None:
                self.pause(pause)
        raise RetryableError(f"{request.address}: no router of endpoint {endpoint} answers GET /-/metrics "
                             f"({len(self.read_pauses) + 1} attempts)")

    def open_window(self, request: ApplyRequest) -> dict[str, Any]:
        endpoint = endpoint_of(request)
        return open_mark(endpoint, self._scrapes(request, endpoint), time.time())

    def close_window(self, request: ApplyRequest, mark: dict[str, Any]) -> WindowStats:
        endpoint = str(mark.get("endpoint") or endpoint_of(request))
        return close_stats(mark, self._scrapes(request, endpoint), time.time())
