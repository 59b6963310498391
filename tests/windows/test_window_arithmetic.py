"""The arithmetic of a measuring window (providers/shared/windows.py): the counts of a window from two
scrapes (mark and close) of one or several router replicas, in the stats' disjoint counting rules; a
read that no replica answers is asked again a bounded number of times."""

from __future__ import annotations

import math

import pytest

from providers.shared.windows import RouterWindows, close_stats, open_mark
from reconciler.model.errors import RetryableError
from reconciler.model.windows import histogram_quantile
from reconciler.plan.provider import ApplyRequest

INF = math.inf


def exposition(requests: dict[str, int], timeouts: int, failures: int, buckets: list[int], start: float,
               digest: str = "d1") -> str:
    labels = f'endpoint="ep",deployment="blue",digest="{digest}",traffic="live"'
    bounds = ["0.1", "1", "+Inf"]
    lines = ["# TYPE recon_router_requests_total counter"]
    lines += [f'recon_router_requests_total{{{labels},code="{c}"}} {n}' for c, n in requests.items()]
    lines += ["# TYPE recon_router_upstream_timeouts_total counter",
              f"recon_router_upstream_timeouts_total{{{labels}}} {timeouts}",
              "# TYPE recon_router_upstream_connect_failures_total counter",
              f"recon_router_upstream_connect_failures_total{{{labels}}} {failures}",
              "# TYPE recon_router_request_duration_seconds histogram"]
    lines += [f'recon_router_request_duration_seconds_bucket{{{labels},le="{b}"}} {n}'
              for b, n in zip(bounds, buckets, strict=True)]
    lines += [f"recon_router_request_duration_seconds_count{{{labels}}} {buckets[-1]}",
              "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {start}"]
    return "\n".join(lines) + "\n"


def test_a_window_is_the_difference_of_two_scrapes_added_over_replicas() -> None:
    before = [("r1", exposition({"2xx": 100, "5xx": 5}, 1, 1, [90, 105, 105], 1000.0)),
              ("r2", exposition({"2xx": 50, "5xx": 0}, 0, 0, [50, 50, 50], 2000.0))]
    mark = open_mark("ep", before, now=10.0)
    after = [("r1", exposition({"2xx": 130, "5xx": 15}, 3, 2, [100, 140, 145], 1000.0)),
             # r2 restarted (another start time): everything it counted since is in the window
             ("r2", exposition({"2xx": 20, "5xx": 0}, 0, 0, [20, 20, 20], 3000.0)),
             ("r3", None)]
    stats = close_stats(mark, after, now=40.0)
    (series,) = stats.series
    assert series.requests == 30 + 10 + 20
    assert (series.timeouts, series.connect_failures) == (2, 1)
    assert series.errors_5xx == 10 - 2 - 1  # the router counts timeouts and failures among the 5xx
    assert series.buckets == [(0.1, 10 + 20), (1.0, 35 + 20), (INF, 40 + 20)]
    assert series.digest == "d1" and series.traffic == "live"
    assert stats.window_s == 30.0
    assert stats.source == "router /-/metrics x2 replicas (1 not answering)"
    assert series.latency_p99_s == histogram_quantile(0.99, series.buckets)


def test_a_counter_that_went_down_counts_whole() -> None:
    mark = open_mark("ep", [("r1", exposition({"2xx": 100}, 0, 0, [100, 100, 100], 1000.0))], now=0.0)
    stats = close_stats(mark, [("r1", exposition({"2xx": 7}, 0, 0, [7, 7, 7], 1000.0))], now=1.0)
    assert stats.series[0].requests == 7


class Replicas(RouterWindows):
    """Router replicas that answer as scripted: each read takes the next list of scrapes."""

    def __init__(self, reads: list[list[tuple[str, str | None]]]) -> None:
        self.reads = reads
        self.slept: list[float] = []
        self.pause = self.slept.append

    def _router_metrics(self, endpoint: str) -> list[tuple[str, str | None]]:
        return self.reads.pop(0)


REQUEST = ApplyRequest("endpoint.ep", "endpoint", "ep", {"name": "ep"}, None)


def test_a_read_no_replica_answers_is_asked_again_then_fails() -> None:
    busy: list[tuple[str, str | None]] = [("r1", None)]
    answer: list[tuple[str, str | None]] = [("r1", exposition({"2xx": 3}, 0, 0, [3, 3, 3], 1000.0))]
    windows = Replicas([busy, busy, answer])
    mark = windows.open_window(REQUEST)
    assert windows.slept == [0.5, 1.0] and mark["replicas"]["r1"] is not None
    never = Replicas([busy] * 4)
    with pytest.raises(RetryableError, match="no router of endpoint ep answers GET /-/metrics \\(4 attempts\\)"):
        never.close_window(REQUEST, mark)
    assert never.slept == [0.5, 1.0, 2.0] and never.reads == []
