"""The order of operations the domain demands, proved on the fake provider's call log.

The fake refuses (and records as a violation) any call that breaks a domain rule, so "no
violations" plus the timing of the calls shows that the engine carried out the plan in order.
"""

from __future__ import annotations

from typing import Any

from providers.fake import FakeProvider
from reconciler.apply.engine import apply_plan
from reconciler.plan.provider import ApplyRequest

from .helpers import (
    ENV,
    MODEL,
    Env,
    Recording,
    blue_green,
    deployment,
    desired,
    endpoint,
    environment,
    model,
    plan_for,
)


def _calls(env: Env) -> list[dict[str, Any]]:
    calls = env.world.calls()
    assert all(c["ok"] for c in calls), calls
    return calls


def _one(calls: list[dict[str, Any]], op: str, address: str) -> dict[str, Any]:
    found = [c for c in calls if c["op"] == op and c["address"] == address]
    assert len(found) == 1, (op, address, calls)
    return found[0]


def _before(first: dict[str, Any], then: dict[str, Any]) -> bool:
    return first["end"] <= then["start"]


def _apply(env: Env, want: Any, **kw: Any) -> Any:
    manager = env.manager()
    plan = plan_for(manager, want, destroy=kw.pop("destroy", False))
    return apply_plan(plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, **kw)


def test_create_runs_endpoint_and_assets_before_deployments_and_traffic_last(env: Env) -> None:
    want = blue_green(env.root, traffic={"blue": 100}, mirror={"green": 10})
    result = _apply(env, want)
    assert result.ok, result.errors
    calls = _calls(env)
    endpoint = _one(calls, "create", "endpoint.ep")
    routing = _one(calls, "set_routing", "endpoint.ep")
    for name in ("blue", "green"):
        dep = _one(calls, "create", f"deployment.ep.{name}")
        for needed in (endpoint, _one(calls, "create", MODEL), _one(calls, "create", ENV)):
            assert _before(needed, dep), (needed, dep)
        assert _before(dep, routing)
    assert routing["traffic"] == {"blue": 100} and routing["mirror_traffic"] == {"green": 10}
    assert env.world.violations() == []
    assert [o.outcome for o in result.outcomes].count("created") == 5


def test_destroy_moves_traffic_first_then_deletes_in_reverse(env: Env) -> None:
    want = blue_green(env.root, traffic={"blue": 60, "green": 40})
    assert _apply(env, want).ok
    before = len(env.world.calls())
    result = _apply(env, want, destroy=True)
    assert result.ok, result.errors
    calls = _calls(env)[before:]
    drain = _one(calls, "set_routing", "endpoint.ep")
    assert drain["traffic"] == {}
    deletes = {c["address"]: c for c in calls if c["op"] == "delete"}
    assert set(deletes) == {"deployment.ep.blue", "deployment.ep.green", "endpoint.ep", MODEL, ENV}
    for dep in ("deployment.ep.blue", "deployment.ep.green"):
        assert _before(drain, deletes[dep])
        for later in ("endpoint.ep", MODEL, ENV):
            assert _before(deletes[dep], deletes[later]), (dep, later)
    assert env.world.objects() == {}
    assert env.state().resources == {}
    assert result.counts() == {"add": 0, "change": 0, "destroy": 5}
    assert env.world.violations() == []


def test_blue_green_switch_moves_traffic_before_deleting_blue(env: Env) -> None:
    assert _apply(env, blue_green(env.root, green=None, traffic={"blue": 100})).ok
    assert _apply(env, blue_green(env.root, green=1, traffic={"green": 100})).ok
    start = len(env.world.calls())
    only_green = desired(
        env.root, model(), environment(), endpoint(traffic={"green": 100}), deployment("green")
    )
    assert _apply(env, only_green).ok
    calls = _calls(env)
    switch = [c for c in calls[:start] if c["op"] == "set_routing"][-1]
    assert switch["traffic"] == {"green": 100}
    assert _before(_one(calls, "create", "deployment.ep.green"), switch)
    delete = _one(calls[start:], "delete", "deployment.ep.blue")
    assert _before(switch, delete)
    assert env.world.violations() == []


def test_scale_runs_before_the_rolling_update_and_batches_are_in_order(env: Env) -> None:
    assert _apply(env, blue_green(env.root, green=None, blue=4)).ok
    start = len(env.world.calls())
    result = _apply(env, blue_green(env.root, green=None, blue=10, env_vars={"RELEASE": "v2"}))
    assert result.ok, result.errors
    calls = _calls(env)[start:]
    assert [c["op"] for c in calls] == ["scale"] + ["roll_batch"] * 5
    assert [c["batch"] for c in calls[1:]] == [1, 2, 3, 4, 5]
    assert calls[0]["count"] == 10
    instances = env.world.objects()["deployment.ep.blue"]["instances"]
    assert len(instances) == 10 and len({i["id"] for i in instances}) == 10
    assert len({i["config"] for i in instances}) == 1


class _Capturing(FakeProvider):
    """The fake, keeping every request it was given (to check what the engine sends)."""

    requests: list[tuple[str, ApplyRequest]]

    def create(self, request: ApplyRequest) -> dict[str, Any]:
        self.requests.append(("create", request))
        return super().create(request)

    def roll_batch(self, request: ApplyRequest, batch: Any) -> dict[str, Any]:
        self.requests.append(("roll_batch", request))
        return super().roll_batch(request, batch)


def test_requests_come_from_the_plan_with_refs_and_prior(env: Env) -> None:
    provider = _Capturing({}, env.context)
    provider.requests = []
    manager = env.manager()
    want = blue_green(env.root, green=None)
    plan = plan_for(manager, want)
    assert apply_plan(plan, provider=provider, state_manager=manager, desired_digest=want.digest).ok
    by_address = {r.address: r for op, r in provider.requests}
    ep = by_address["endpoint.ep"]
    assert ep.attributes["traffic"] == {} and ep.prior is None  # traffic is never set on create
    blue = by_address["deployment.ep.blue"]
    assert blue.attributes == plan.change("deployment.ep.blue").after
    assert set(blue.refs) == {"endpoint.ep", MODEL, ENV}
    assert blue.refs[MODEL] == plan.change(MODEL).after

    provider.requests = []
    manager = env.manager()
    want2 = blue_green(env.root, green=None, env_vars={"RELEASE": "v2"})
    plan2 = plan_for(manager, want2)
    assert apply_plan(plan2, provider=provider, state_manager=manager, desired_digest=want2.digest).ok
    op, roll = provider.requests[0]
    assert op == "roll_batch"
    assert roll.prior is not None and roll.prior.attributes["environment_variables"] == {}
    assert roll.attributes["environment_variables"] == {"RELEASE": "v2"}


def test_hooks_report_each_step_once_in_dependency_order(env: Env) -> None:
    hooks = Recording()
    result = _apply(env, blue_green(env.root), hooks=hooks)
    assert result.ok
    pre = [c[1] for c in hooks.named("pre_step")]
    post = [c[1] for c in hooks.named("post_step")]
    assert sorted(pre) == sorted(post) == sorted(o.step_id for o in result.outcomes)
    assert pre.index("create:endpoint.ep") < pre.index("create:deployment.ep.blue")
    assert post[-1] == "set_traffic:endpoint.ep"
