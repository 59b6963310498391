"""The judge (pure): which series a gate judges, against what, and what it decides; and the window
arithmetic it stands on (Prometheus' histogram_quantile)."""

from __future__ import annotations

import math

import pytest

from reconciler.apply.judge import clearly_failing, judge
from reconciler.model.rollout import Analysis, Gate, LatencyLimit
from reconciler.model.windows import SeriesStats, WindowStats, histogram_quantile, merge_buckets, totals

NEW, OLD = "sha256:new", "sha256:old"


def hist(*pairs: tuple[float, int]) -> list[tuple[float, int]]:
    return [*pairs, (math.inf, pairs[-1][1])]


def fast(n: int) -> list[tuple[float, int]]:
    """``n`` answers all under 50 ms (p99 interpolated inside 0.025..0.05)."""
    return hist((0.025, 0), (0.05, n), (0.1, n), (2.5, n), (5.0, n))


def slow(n: int) -> list[tuple[float, int]]:
    """``n`` answers between 2.5 s and 5 s."""
    return hist((0.025, 0), (0.05, 0), (0.1, 0), (2.5, 0), (5.0, n))


def series(dep: str, digest: str | None, requests: int, failed: int = 0, buckets: list[tuple[float, int]] | None = None,
           traffic: str = "live") -> SeriesStats:
    return SeriesStats(deployment=dep, digest=digest, traffic=traffic, requests=requests,  # type: ignore[arg-type]
                       errors_5xx=failed, buckets=buckets if buckets is not None else fast(requests - failed))


def batch_gate(**analysis: object) -> Gate:
    return Gate(kind="batch", analysis=Analysis(**analysis), judged=["blue"], baseline=["blue"])  # type: ignore[arg-type]


def window(*s: SeriesStats) -> WindowStats:
    return WindowStats(series=list(s), window_s=30.0, source="test")


def test_a_healthy_batch_passes_every_check() -> None:
    gate = batch_gate(max_latency_p99=LatencyLimit(relative=1.5))
    v = judge(gate, window(series("blue", NEW, 100), series("blue", OLD, 400)), NEW)
    assert v.result == "pass" and [c.result for c in v.checks] == ["pass", "pass", "pass"]
    assert v.requests == 100 and v.baseline_requests == 400 and v.error_rate == 0
    assert v.baseline_p99_s is not None and v.latency_p99_s == pytest.approx(v.baseline_p99_s)


def test_errors_of_the_new_configuration_fail_the_batch_and_old_errors_do_not_count() -> None:
    stats = window(series("blue", NEW, 100, failed=30), series("blue", OLD, 400, failed=0))
    v = judge(batch_gate(), stats, NEW)
    assert v.result == "fail" and v.failing()[0].name == "error_rate"
    assert v.failing()[0].measured == pytest.approx(0.3) and v.failing()[0].threshold == 0.01
    assert "30% (30/100)" in v.describe_failure() and "> 1%" in v.describe_failure()
    # the same errors on the old instances: the new configuration is not to blame
    assert judge(batch_gate(), window(series("blue", NEW, 100), series("blue", OLD, 400, failed=30)), NEW).result == "pass"


def test_timeouts_and_connection_failures_are_errors() -> None:
    s = SeriesStats(deployment="blue", digest=NEW, requests=100, timeouts=1, connect_failures=1, buckets=fast(98))
    assert judge(batch_gate(), window(s), NEW).result == "fail"
    assert judge(batch_gate(max_error_rate=0.02), window(s), NEW).result == "pass"


def test_slower_new_configuration_fails_the_relative_latency_check() -> None:
    gate = batch_gate(max_latency_p99=LatencyLimit(relative=1.5))
    v = judge(gate, window(series("blue", NEW, 100, buckets=slow(100)), series("blue", OLD, 400)), NEW)
    assert v.result == "fail" and [c.name for c in v.failing()] == ["latency_p99"]
    check = v.failing()[0]
    assert check.measured is not None and check.measured > 2.5 and "1.5x old" in check.threshold_text


def test_absolute_latency_needs_no_baseline() -> None:
    gate = batch_gate(max_latency_p99=LatencyLimit(absolute_s=1.0))
    assert judge(gate, window(series("blue", NEW, 100, buckets=slow(100))), NEW).result == "fail"
    assert judge(gate, window(series("blue", NEW, 100)), NEW).result == "pass"


def test_too_few_requests_is_inconclusive_even_when_they_fail() -> None:
    v = judge(batch_gate(min_requests=50), window(series("blue", NEW, 10, failed=10)), NEW)
    assert v.result == "inconclusive" and v.checks[0].note.startswith("fewer than 50")
    assert not clearly_failing(v.gate, window(series("blue", NEW, 10, failed=10)), NEW)


def test_relative_latency_without_baseline_uses_an_earlier_window_or_is_inconclusive() -> None:
    gate = batch_gate(max_latency_p99=LatencyLimit(relative=1.5))
    alone = window(series("blue", NEW, 100, buckets=slow(100)))
    v = judge(gate, alone, NEW)
    assert v.result == "inconclusive" and v.checks[-1].result == "inconclusive" and "no baseline" in v.checks[-1].threshold_text
    assert v.checks[1].result == "pass"  # the error rate still judged
    v = judge(gate, alone, NEW, earlier_baseline_p99_s=0.05)
    assert v.result == "fail" and "earlier window" in v.failing()[0].threshold_text


def test_traffic_gate_judges_live_responses_of_the_growing_deployment() -> None:
    gate = Gate(kind="traffic", analysis=Analysis(max_latency_p99=LatencyLimit(relative=2)), judged=["green"],
                baseline=["blue"])
    stats = window(series("green", "g1", 100, failed=5), series("blue", "b1", 900),
                   series("green", "g1", 100, failed=0, traffic="mirror"))
    v = judge(gate, stats)
    assert v.result == "fail" and v.requests == 100 and v.failed == 5 and v.baseline_requests == 900
    assert gate.describe() == "bake 30s, 5xx <= 1%, p99 <= 2x blue, >= 50 requests"


def test_mirror_gate_judges_mirrored_responses_only() -> None:
    gate = Gate(kind="mirror", analysis=Analysis(), judged=["green"], baseline=["blue"])
    bad_mirror = window(series("green", "g1", 100, failed=50, traffic="mirror"), series("blue", "b1", 900))
    assert judge(gate, bad_mirror).result == "fail"
    good_mirror_no_live = window(series("green", "g1", 100, traffic="mirror"), series("green", "g1", 3, failed=3))
    assert judge(gate, good_mirror_no_live).result == "pass"


def test_deployment_names_compare_case_insensitively() -> None:
    gate = Gate(kind="traffic", analysis=Analysis(), judged=["Green"], baseline=["blue"])
    assert judge(gate, window(series("green", None, 100, failed=50))).result == "fail"


def test_clear_failure_needs_min_requests_and_an_error_rate_over_the_limit() -> None:
    gate = batch_gate(min_requests=20)
    assert clearly_failing(gate, window(series("blue", NEW, 20, failed=5)), NEW)
    assert not clearly_failing(gate, window(series("blue", NEW, 19, failed=5)), NEW)
    assert not clearly_failing(batch_gate(max_error_rate=None), window(series("blue", NEW, 100, failed=90)), NEW)


def test_verdicts_are_plain_data() -> None:
    v = judge(batch_gate(), window(series("blue", NEW, 100, failed=3)), NEW)
    assert type(v).model_validate_json(v.model_dump_json()) == v
    assert "100 requests, 3% errors, p99" in v.summary()


# -- the window arithmetic ------------------------------------------------------------------------
def test_histogram_quantile_interpolates_as_prometheus_does() -> None:
    # 100 observations: 50 <= 0.1 s, 90 <= 0.5 s, 100 <= 1 s
    buckets = [(0.1, 50), (0.5, 90), (1.0, 100), (math.inf, 100)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 9 / 10)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    # a rank in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.99, [(0.1, 10), (1.0, 10), (math.inf, 20)]) == 1.0
    assert histogram_quantile(0.99, [(0.1, 0), (math.inf, 0)]) is None
    assert histogram_quantile(0.99, []) is None


def test_series_add_up_bucket_by_bucket() -> None:
    a = [(0.1, 10), (1.0, 10), (math.inf, 10)]
    b = [(0.1, 0), (1.0, 10), (math.inf, 10)]
    assert merge_buckets([a, b]) == [(0.1, 10), (1.0, 20), (math.inf, 20)]
    t = totals([SeriesStats(deployment="x", requests=10, buckets=a), SeriesStats(deployment="x", requests=10, buckets=b)])
    assert t.requests == 20 and t.latency_p99_s == pytest.approx(0.1 + 0.9 * (19.8 - 10) / 10)


def test_without_buckets_the_highest_p99_stands_for_several_series() -> None:
    t = totals([SeriesStats(deployment="x", requests=5, latency_p99_s=0.2),
                SeriesStats(deployment="y", requests=5, latency_p99_s=0.7), SeriesStats(deployment="z")])
    assert t.latency_p99_s == 0.7 and t.error_rate == 0


def test_window_stats_round_trip_through_json_with_infinite_buckets() -> None:
    stats = window(series("blue", NEW, 10))
    assert WindowStats.model_validate_json(stats.model_dump_json()) == stats


def test_series_without_digest_count_whole_for_a_batch_gate() -> None:
    """A provider that cannot tell configurations apart (azure) reports a deployment as one series
    without digest: a batch gate judged once, after the update, judges it whole whatever the
    deployment's new digest is; it has no old instances to compare with."""
    stats = window(series("blue", None, 200, failed=60))
    v = judge(batch_gate(), stats, NEW)
    assert v.result == "fail" and v.requests == 200 and v.failed == 60 and v.baseline_requests == 0
    assert judge(batch_gate(), window(series("blue", None, 200)), NEW).result == "pass"


def test_measurements_that_cannot_be_read_fail_the_gate() -> None:
    from reconciler.apply.judge import unmeasured
    from reconciler.render.verdicts import verdict_table

    v = unmeasured(batch_gate(), "Azure Monitor's RequestsPerMinute could not be read: HTTP 503")
    assert v.result == "fail" and [c.name for c in v.failing()] == ["metrics"]
    assert v.describe_failure() == "metrics could not be read: Azure Monitor's RequestsPerMinute could not be read: HTTP 503"
    table = "\n".join(verdict_table(v))
    assert "metrics" in table and "unreadable" in table and "FAILED" in table and "HTTP 503" in table
