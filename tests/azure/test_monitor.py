"""Azure Monitor's metrics of an online endpoint, read by the provider's ``Monitor`` against the ARM
emulator (its ``Metrics - List``), with a clock the test drives: windows of whole minutes after a
step, the documented query, what counts as a failure, the wait for a minute's data, throttling
retried, and a persistent failure that is an error (a gate never passes on metrics it lacks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from providers.azure.monitor import (
    TOP,
    MetricsError,
    Monitor,
    classify,
    iso,
    next_minute,
    series_of,
)
from tests.azure.emulator import Emulator
from tests.azure.metrics import Behaviour
from tests.contract.conftest import Harness
from tests.requests import routed

pytestmark = pytest.mark.azure
T0 = 1_714_564_830.0  # 2024-05-01T12:00:30Z: half a minute past a whole minute


class Clock:
    """A clock whose sleep moves it on at once."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)


@pytest.fixture
def clock(arm: Emulator) -> Clock:
    c = Clock(T0)
    arm.metrics.clock = c.now
    return c


@pytest.fixture
def harness(make_provider: Callable[..., Any], clock: Clock) -> Harness:
    provider = make_provider(metrics_delay=120)
    h = Harness("azure", provider, Path(provider.context.project_root))
    h.stack(names=("blue", "green"))
    return h


def _route(h: Harness, traffic: dict[str, int], mirror: dict[str, int] | None = None) -> None:
    ep = h.recorded["endpoint.ep"]
    h.provider.set_routing(routed(h.request("endpoint", "ep", ep.address, ep.attributes), traffic, mirror or {}))


def _monitor(h: Harness, clock: Clock) -> Monitor:
    return Monitor(h.provider.arm, now=clock.now, sleep=clock.sleep)  # type: ignore[attr-defined]


def _open(h: Harness, m: Monitor) -> dict[str, Any]:
    path = h.provider.endpoint_path("ep")  # type: ignore[attr-defined]
    live = h.provider.arm.get(path)  # type: ignore[attr-defined]
    return m.mark(path, live)


def test_a_window_counts_each_deployments_requests_failures_and_p99(harness: Harness, arm: Emulator,
                                                                    clock: Clock) -> None:
    arm.metrics.load["ep"] = 600
    arm.metrics.behave("ep", "green", Behaviour(p99_ms=2100.0, model_errors=0.3, timeouts=0.1))
    _route(harness, {"blue": 100})
    clock.sleep(125)  # some minutes of blue alone
    _route(harness, {"blue": 90, "green": 10})  # the step, mid-minute
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    assert mark["start"] == iso(next_minute(clock.now())) and mark["mirror"] == []
    clock.sleep(60)  # the bake
    lines: list[str] = []
    window = monitor.read(mark, lines.append)

    assert window.minutes == 1 and window.start == next_minute(float(mark["opened"]))
    green, blue = window.deployments["green"], window.deployments["blue"]
    # a whole minute at the new split: 10% of 600, of which 30% model errors (424) and 10% timeouts (408)
    assert (green.requests, green.failed, green.timeouts, green.p99_ms) == (60, 18, 6, 2100.0)
    assert (blue.requests, blue.failed, blue.timeouts, blue.p99_ms) == (540, 0, 0, 80.0)
    assert any("waiting" in line and "first whole minute" in line for line in lines)
    # the documented query: one per metric, per minute, split by the metric's own dimensions
    queries = list(arm.metrics.queries)
    assert [q["metricnames"] for q in queries] == ["RequestsPerMinute", "RequestLatency_P99"]
    for q in queries:
        assert (q["api-version"], q["interval"], q["aggregation"], q["top"]) == ("2023-10-01", "PT1M", "average", str(TOP))
        assert q["metricnamespace"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
        assert q["timespan"] == f"{iso(window.start)}/{iso(window.end)}"
    assert queries[0]["$filter"] == ("deployment eq '*' and statusCode eq '*' and statusCodeClass eq '*' "
                                     "and modelStatusCode eq '*'")
    assert queries[1]["$filter"] == "deployment eq '*'"
    sent = [r for r in arm.requests if r["path"].endswith("/providers/Microsoft.Insights/metrics")]
    assert len(sent) == 2 and all(r["auth"].startswith("Bearer ") for r in sent)
    assert parse_qs(sent[0]["query"])["metricnames"] == ["RequestsPerMinute"]


def test_the_window_grows_by_each_whole_minute_azure_monitor_has(harness: Harness, arm: Emulator,
                                                                  clock: Clock) -> None:
    arm.metrics.load["ep"] = 120
    _route(harness, {"blue": 50, "green": 50})
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)  # 12:00:30: the window starts at 12:01
    clock.sleep(1)  # the engine's first look, a second into the bake: waits for 12:01-12:02
    first = monitor.read(mark, lambda _: None)
    assert (first.minutes, first.deployments["green"].requests) == (1, 60)
    asked = len(arm.metrics.queries)
    clock.sleep(1)
    assert monitor.read(mark, lambda _: None) is first and len(arm.metrics.queries) == asked  # nothing new yet
    clock.sleep(60)
    second = monitor.read(mark, lambda _: None)
    assert (second.minutes, second.deployments["green"].requests) == (2, 120)
    assert len(arm.metrics.queries) == asked + 2


def test_the_last_minute_is_waited_for_until_azure_monitor_has_it(harness: Harness, arm: Emulator,
                                                                 clock: Clock) -> None:
    arm.metrics.load["ep"] = 60
    arm.metrics.delay = 40  # Azure Monitor has a minute 40 s after it ends
    _route(harness, {"blue": 100})
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    clock.sleep(60)
    lines: list[str] = []
    window = monitor.read(mark, lines.append)
    assert window.deployments["blue"].requests == 60
    waits = [line for line in lines if "has no data for" in line]
    assert waits and "metrics_delay" in waits[0]
    assert clock.now() >= window.end + 40


def test_an_endpoint_without_requests_is_found_idle_after_metrics_delay(harness: Harness, arm: Emulator,
                                                                       clock: Clock) -> None:
    _route(harness, {"blue": 100})  # no load at all
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    clock.sleep(60)
    window = monitor.read(mark, lambda _: None)
    assert window.deployments == {}
    assert clock.now() >= window.end + 120  # metrics_delay, then no more waiting


def test_mirrored_deployments_are_named_in_the_mark(harness: Harness, arm: Emulator, clock: Clock) -> None:
    arm.metrics.load["ep"] = 600
    _route(harness, {"blue": 100}, {"green": 20})
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    assert mark["mirror"] == ["green"]
    clock.sleep(60)
    window = monitor.read(mark, lambda _: None)
    assert window.mirror == ["green"]
    assert window.deployments["green"].requests == 120 and window.deployments["blue"].requests == 600


def test_throttling_of_the_metrics_api_is_retried(harness: Harness, arm: Emulator, clock: Clock) -> None:
    arm.metrics.load["ep"] = 60
    _route(harness, {"blue": 100})
    arm.fault("GET", r"/providers/microsoft\.insights/metrics$", status=429, code="TooManyRequests",
              message="throttled", retry_after="0.05", times=2)
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    clock.sleep(60)
    lines: list[str] = []
    window = monitor.read(mark, lines.append)
    assert window.deployments["blue"].requests == 60
    assert sum("HTTP 429" in line and "azure-core retries it" in line for line in lines) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_a_persistent_failure_of_the_metrics_api_is_an_error(harness: Harness, arm: Emulator, clock: Clock,
                                                            status: int) -> None:
    _route(harness, {"blue": 100})
    arm.fault("GET", r"/providers/microsoft\.insights/metrics$", status=status, code="ServiceUnavailable",
              message="metrics store unavailable", retry_after="0.05", times=1000)
    monitor = _monitor(harness, clock)
    mark = _open(harness, monitor)
    clock.sleep(60)
    with pytest.raises(MetricsError) as caught:
        monitor.read(mark, lambda _: None)
    text = str(caught.value)
    assert f"HTTP {status}" in text and "metrics store unavailable" in text and "cannot judge" in text
    assert "sent it 5 times" in text  # retry_total 4 in the emulator's settings, plus the first


def test_a_metric_azure_could_not_give_or_a_cut_answer_is_an_error() -> None:
    failed = {"value": [{"name": {"value": "RequestsPerMinute"}, "timeseries": [], "errorCode": "InvalidSamplingType",
                         "errorMessage": "Sampling type is not found"}]}
    with pytest.raises(MetricsError, match="InvalidSamplingType: Sampling type is not found"):
        series_of(failed, "RequestsPerMinute")
    cut = {"value": [{"name": {"value": "RequestsPerMinute"}, "errorCode": "Success",
                      "timeseries": [{"metadatavalues": [], "data": []}] * TOP}]}
    with pytest.raises(MetricsError, match="some may be missing"):
        series_of(cut, "RequestsPerMinute")
    with pytest.raises(MetricsError, match="has no RequestLatency_P99"):
        series_of(cut, "RequestLatency_P99")


@pytest.mark.parametrize(("status", "model", "expected"), [
    (200, 200, "ok"), (424, 500, "failed"), (424, None, "failed"), (424, 400, "ok"), (408, None, "timeout"),
    (500, None, "failed"), (502, None, "failed"), (503, None, "failed"), (429, None, "ignored"),
    (401, None, "ignored"), (404, None, "ok"),
])
def test_what_counts_as_a_failure(status: int, model: int | None, expected: str) -> None:
    assert classify(status, model) == expected


def test_a_series_without_status_code_is_judged_by_its_class() -> None:
    assert classify(None, None, "5xx") == "failed" and classify(None, None, "2xx") == "ok"


def test_the_emulator_refuses_what_azure_refuses(harness: Harness, arm: Emulator, clock: Clock) -> None:
    path = harness.provider.endpoint_path("ep") + "/providers/Microsoft.Insights/metrics"  # type: ignore[attr-defined]
    send = harness.provider.arm.send  # type: ignore[attr-defined]
    base = "?api-version=2023-10-01&interval=PT1M&timespan=2024-05-01T12:00:00Z/2024-05-01T12:01:00Z"
    wrong_dim = send("GET", path + base + "&metricnames=RequestLatency_P99&$filter=statusCode%20eq%20'*'")
    assert wrong_dim.status == 400 and "has no dimension statusCode" in wrong_dim.body["error"]["message"]
    unknown = send("GET", path + base + "&metricnames=Requests")
    assert unknown.status == 400 and "Failed to find metric configuration" in unknown.body["error"]["message"]
    total = send("GET", path + base + "&metricnames=RequestsPerMinute&aggregation=total")
    assert total.status == 400


# -- through the provider protocol, judged by recon's judge ------------------------------------------
def _endpoint_request(h: Harness) -> Any:
    ep = h.recorded["endpoint.ep"]
    return h.request("endpoint", "ep", ep.address, ep.attributes)


def _on_clock(h: Harness, clock: Clock) -> None:
    h.provider.monitor.now, h.provider.monitor.sleep = clock.now, clock.sleep  # type: ignore[attr-defined]


def test_the_provider_declares_minute_grain_and_no_configurations() -> None:
    from providers.azure import AzureProvider

    m = AzureProvider.measuring
    assert m.windows and not m.digests and m.min_bake_s == 60 and m.source == "Azure Monitor"


def test_a_traffic_step_whose_metrics_go_bad_fails_its_gate_and_a_healthy_one_passes(
        harness: Harness, arm: Emulator, clock: Clock) -> None:
    from reconciler.apply.judge import judge
    from reconciler.model.rollout import Analysis, Gate, LatencyLimit

    _on_clock(harness, clock)
    arm.metrics.load["ep"] = 1200
    # green answers well at 10% and fails 30% of its requests (424, the model answered 500) from 50% on
    arm.metrics.behave("ep", "green", Behaviour(p99_ms=90.0), Behaviour(p99_ms=90.0, model_errors=0.3, from_share=50))
    gate = Gate(kind="traffic", analysis=Analysis(bake_s=60, min_requests=50, max_latency_p99=LatencyLimit(relative=1.5)),
                judged=["green"], baseline=["blue"])
    request = _endpoint_request(harness)
    verdicts = []
    for split in ({"blue": 90, "green": 10}, {"blue": 50, "green": 50}):
        _route(harness, split)
        mark = harness.provider.open_window(request)
        assert mark == json.loads(json.dumps(mark))  # plain data
        clock.sleep(60)
        stats = harness.provider.close_window(request, mark)
        assert stats.window_s == 60 and stats.source.startswith("Azure Monitor, ")
        assert all(s.digest is None and s.traffic == "live" and s.buckets is None for s in stats.series)
        verdicts.append(judge(gate, stats))
    healthy, bad = verdicts
    assert healthy.result == "pass" and healthy.requests == 120 and healthy.error_rate == 0
    assert healthy.latency_p99_s == pytest.approx(0.09) and healthy.baseline_p99_s == pytest.approx(0.08)
    assert bad.result == "fail" and bad.requests == 600 and bad.failed == 180
    assert [c.name for c in bad.failing()] == ["error_rate"] and "30% (180/600)" in bad.describe_failure()


def test_a_step_without_requests_is_inconclusive(harness: Harness, arm: Emulator, clock: Clock) -> None:
    from reconciler.apply.judge import judge
    from reconciler.model.rollout import Analysis, Gate

    _on_clock(harness, clock)
    arm.metrics.load["ep"] = 0
    _route(harness, {"blue": 90, "green": 10})
    request = _endpoint_request(harness)
    mark = harness.provider.open_window(request)
    clock.sleep(60)
    stats = harness.provider.close_window(request, mark)
    verdict = judge(Gate(kind="traffic", analysis=Analysis(bake_s=60, min_requests=50), judged=["green"],
                         baseline=["blue"]), stats)
    assert stats.series == [] and verdict.result == "inconclusive" and verdict.requests == 0


def test_a_mirrored_deployment_is_measured_as_mirror_traffic(harness: Harness, arm: Emulator, clock: Clock) -> None:
    _on_clock(harness, clock)
    arm.metrics.load["ep"] = 600
    _route(harness, {"blue": 100}, {"green": 10})
    request = _endpoint_request(harness)
    mark = harness.provider.open_window(request)
    clock.sleep(60)
    stats = harness.provider.close_window(request, mark)
    assert {(s.deployment, s.traffic, s.requests) for s in stats.series} == {("blue", "live", 600),
                                                                             ("green", "mirror", 60)}


def test_a_rolling_update_is_judged_as_a_whole_after_it_and_rolled_back_by_a_put(
        harness: Harness, arm: Emulator, clock: Clock) -> None:
    from reconciler.apply.judge import judge
    from reconciler.model.rollout import Analysis, Gate, LatencyLimit
    from reconciler.plan.types import Batch

    _on_clock(harness, clock)
    arm.metrics.load["ep"] = 600
    arm.metrics.behave("ep", "blue", Behaviour(p99_ms=80.0), Behaviour(p99_ms=2500.0, running='"RELEASE": "v2"'))
    _route(harness, {"blue": 100})
    before = harness.recorded["deployment.ep.blue"]
    update = harness.deployment("blue", release="v2")
    harness.provider.roll_batch(update, Batch(index=1, size=1))  # Azure replaces every instance itself
    request = _endpoint_request(harness)
    mark = harness.provider.open_window(request)
    clock.sleep(60)
    stats = harness.provider.close_window(request, mark)
    assert [(s.deployment, s.digest, s.requests) for s in stats.series] == [("blue", None, 600)]
    gate = Gate(kind="batch", analysis=Analysis(bake_s=60, min_requests=50, max_latency_p99=LatencyLimit(absolute_s=1.0)),
                judged=["blue"], baseline=["blue"])
    verdict = judge(gate, stats, None)  # no configuration to tell apart: the whole deployment is judged
    assert verdict.result == "fail" and verdict.latency_p99_s == pytest.approx(2.5)
    # the rollback the engine asks for: the previous configuration, one PUT of the previous body
    arm.clear_log()
    previous = harness.request("deployment", "blue", before.address, before.attributes, update.refs)
    harness.provider.roll_batch(previous, Batch(index=1, size=1))
    writes = [(r["method"], r["path"].rsplit("/", 2)[-2:]) for r in arm.requests if r["method"] != "GET"]
    assert writes[0] == ("PUT", ["deployments", "blue"])
    put = next(r for r in arm.requests if r["method"] == "PUT")
    assert put["body"]["properties"]["environmentVariables"]["RELEASE"] == "v1"
    assert '"RELEASE": "v1"' in arm.metrics.body_of("ep", "blue")
