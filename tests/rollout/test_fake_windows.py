"""The fake provider's simulated clients (what engine tests of guarded rollouts judge): a window
follows the endpoint's split and each instance answers as its configuration says."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply.engine import apply_plan
from reconciler.model.errors import PermanentError
from reconciler.plan.provider import ApplyRequest
from tests.engine.helpers import Env, blue_green, plan_for


def applied(tmp_path: Path, settings: dict[str, object] | None = None, **kw: object) -> Env:
    env = Env(tmp_path, settings or {})
    want = blue_green(tmp_path, **kw)  # type: ignore[arg-type]
    manager = env.manager()
    result = apply_plan(plan_for(manager, want), provider=env.provider, state_manager=manager, desired_digest=None)
    assert result.ok, result
    return env


def endpoint_request(env: Env) -> ApplyRequest:
    res = env.state().get("endpoint.ep")
    assert res is not None
    return ApplyRequest(res.address, "endpoint", res.name, dict(res.attributes), res)


def test_a_window_follows_the_split_and_each_configuration(tmp_path: Path) -> None:
    env = applied(tmp_path, {"window_requests": 1000}, blue=2, green=1, traffic={"blue": 90, "green": 10})
    request = endpoint_request(env)
    mark = env.provider.open_window(request)
    stats = env.provider.close_window(request, mark)
    by = {(s.deployment, s.traffic): s for s in stats.series}
    assert by[("blue", "live")].requests == 900 and by[("green", "live")].requests == 100
    assert all(s.failed == 0 and s.digest for s in stats.series)
    green_digest = env.state().get("deployment.ep.green").outputs["config_digest"]  # type: ignore[union-attr]
    assert by[("green", "live")].digest == green_digest
    # looked at twice, a window reads the same; each open is logged
    assert env.provider.close_window(request, mark) == stats
    assert [c["op"] for c in env.world.calls() if "window" in c["op"]] == ["open_window", "close_window", "close_window"]


def test_instances_answer_as_their_variables_say(tmp_path: Path) -> None:
    env = applied(tmp_path, {"window_requests": 200}, blue=2, green=None,
                  env_vars={"FAKE_ERROR_RATE": "0.25", "FAKE_LATENCY_S": "2"})
    stats = env.provider.close_window(endpoint_request(env), {"endpoint": "endpoint.ep", "window": 1})
    [blue] = stats.series
    assert blue.requests == 200 and blue.errors_5xx == 50
    assert blue.buckets is not None and dict(blue.buckets)[1.0] == 0 and dict(blue.buckets)[2.5] == 150


def test_mirrored_copies_are_a_series_of_their_own(tmp_path: Path) -> None:
    env = applied(tmp_path, blue=1, green=1, traffic={"blue": 100}, mirror={"green": 20})
    stats = env.provider.close_window(endpoint_request(env), {"endpoint": "endpoint.ep", "window": 1})
    assert {(s.deployment, s.traffic, s.requests) for s in stats.series} == {("blue", "live", 1000), ("green", "mirror", 200)}


def test_a_provider_without_metrics_cannot_measure(tmp_path: Path) -> None:
    from reconciler.plan.provider import Provider

    env = applied(tmp_path, blue=1, green=None)
    request = endpoint_request(env)
    assert not Provider.measuring.windows
    with pytest.raises(PermanentError, match="cannot measure"):
        Provider.open_window(env.provider, request)
    with pytest.raises(PermanentError, match="cannot measure"):
        Provider.close_window(env.provider, request, {})
