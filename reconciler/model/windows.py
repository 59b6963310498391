"""What a provider measured in one window of time: plain data across the provider interface.

A guarded rollout asks the provider to open a window after a batch or a traffic step
(``open_window``: an opaque mark of JSON data) and, after the bake, to close it
(``close_window``: a ``WindowStats``). The stats hold one ``SeriesStats`` per deployment,
configuration (``digest``: the deployment's ``config_digest`` output, which a router labels its
upstreams with) and kind of traffic (``live``, or ``mirror`` for mirrored copies whose answers
are thrown away). The judge (``reconciler.apply.judge``) reads them; it never sees a metric name.

Counting rules every provider follows (so that error rates mean one thing everywhere):

- ``requests``: the requests sent to that series' instances (answered or not);
- ``errors_5xx``: answers from an instance with a 5xx status; ``timeouts``: requests an instance did
  not answer in time; ``connect_failures``: requests that could not be sent to it. The three are
  disjoint (a timeout, which the router answers with 408 as Azure does, counts as a timeout, not a
  5xx): their sum is the requests that failed;
- answers the router gave itself before choosing an upstream (401, 413, 429, 503 no upstream) are
  in no series: they are not the model's fault;
- ``buckets``: the latency histogram of the series' requests (the router's: every request, a timeout
  with the time it waited), cumulative (Prometheus' ``le``
  buckets, the last one ``inf``), diffed over the window; ``latency_p99_s``: its 0.99 quantile
  (``histogram_quantile``), or a provider's own p99 when it has no buckets (Azure Monitor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TrafficKind = Literal["live", "mirror"]


class SeriesStats(BaseModel):
    """One deployment, one configuration, one kind of traffic, over one window."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    deployment: str
    digest: str | None = None  # None: the provider cannot tell configurations apart
    traffic: TrafficKind = "live"
    requests: int = 0
    errors_5xx: int = 0
    timeouts: int = 0
    connect_failures: int = 0
    latency_p99_s: float | None = None
    buckets: list[tuple[float, int]] | None = None  # (le seconds, cumulative count), ascending, last inf

    @property
    def failed(self) -> int:
        return self.errors_5xx + self.timeouts + self.connect_failures


class WindowStats(BaseModel):
    """Every series seen in one window. ``window_s``: how long it was; ``source``: where the numbers
    come from, for people ("router /-/metrics x2 replicas", "Azure Monitor")."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    series: list[SeriesStats] = Field(default_factory=list)
    window_s: float = 0.0
    source: str = ""


class Totals(BaseModel):
    """Several series taken together: requests, failed requests, and their p99 (None: unknown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = 0
    failed: int = 0
    latency_p99_s: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.requests if self.requests else None


def histogram_quantile(q: float, buckets: Sequence[tuple[float, int]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, as Prometheus' ``histogram_quantile`` computes
    it: linear interpolation inside the bucket the rank falls in (from 0 for the first bucket); a
    rank in the ``inf`` bucket gives the highest finite bound. None for an empty histogram."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            if lower == 0.0 and le <= 0:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def merge_buckets(histograms: Iterable[Sequence[tuple[float, int]]]) -> list[tuple[float, int]]:
    """Cumulative histograms added bound by bound (bounds missing from one count what its next
    lower bound counted, as a cumulative histogram does)."""
    lists = [sorted(h) for h in histograms]
    bounds = sorted({le for h in lists for le, _ in h})
    merged = []
    for le in bounds:
        total = 0
        for h in lists:
            total += max((count for bound, count in h if bound <= le), default=0)
        merged.append((le, total))
    return merged


def totals(series: Sequence[SeriesStats]) -> Totals:
    """``series`` together. The p99 is that of their added histograms when each has one; else the
    one series' p99, or the highest of several (an upper bound: quantiles do not add)."""
    requests = sum(s.requests for s in series)
    failed = sum(s.failed for s in series)
    with_data = [s for s in series if s.requests > 0 or s.buckets]
    p99: float | None = None
    if with_data and all(s.buckets for s in with_data):
        p99 = histogram_quantile(0.99, merge_buckets(s.buckets or [] for s in with_data))
    else:
        known = [s.latency_p99_s for s in with_data if s.latency_p99_s is not None]
        p99 = max(known) if known else None
    return Totals(requests=requests, failed=min(failed, requests) if requests else failed, latency_p99_s=p99)


__all__ = ["SeriesStats", "Totals", "TrafficKind", "WindowStats", "histogram_quantile", "merge_buckets", "totals"]
