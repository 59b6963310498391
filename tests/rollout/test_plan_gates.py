"""Gates in the plan (pure): on rolling-update batches, on traffic steps split by traffic_steps, the
mirror gate, what the plan refuses, and how the views and the digest carry them."""

from __future__ import annotations

import json

import pytest

from reconciler.model.rollout import Analysis, LatencyLimit, RolloutSettings
from reconciler.plan.gates import interpolate
from reconciler.plan.planner import make_plan
from reconciler.plan.provider import Measuring
from reconciler.plan.types import Plan, RolloutParams, StepKind, TrafficParams
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from tests.planner.helpers import (
    base,
    before,
    changed,
    deployment,
    desired,
    endpoint,
    environment,
    model,
    state,
)

GUARDED = RolloutSettings(
    analysis=Analysis(bake_s=30, max_error_rate=0.01, max_latency_p99=LatencyLimit(relative=1.5)),
    traffic_steps=(10, 50, 100),
)
MEASURES = Measuring(windows=True, source="test")


def plan_of(resources: list, prior: list, rollout: RolloutSettings | None = GUARDED,
            measuring: Measuring | None = MEASURES) -> Plan:
    want = desired(*resources, rollout=rollout)
    plan = make_plan(want, state(*prior), measuring=measuring)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    return plan


def blue10(**kw: object) -> list:
    return [model(), environment(), endpoint(traffic={"blue": 100}), deployment("blue", count=10, **kw)]


def test_every_batch_of_a_rolling_update_is_gated() -> None:
    plan = plan_of(blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"}))
    [rollout] = [s for s in plan.steps if s.kind is StepKind.ROLLOUT]
    gate = rollout.params_as(RolloutParams).gate
    assert gate is not None and gate.kind == "batch" and gate.judged == gate.baseline == ["blue"]
    assert gate.analysis.bake_s == 30 and gate.on_failure == "rollback" and not gate.once
    text = render_text(plan)
    for i in range(1, 6):
        assert f"batch {i}/5: bake 30s, 5xx <= 1%, p99 <= 1.5x old, >= 50 requests" in text
    assert "on failure: the updated instances roll back to the previous configuration, 2 at a time" in text


def test_without_analysis_the_plan_is_what_it_was() -> None:
    resources, prior = blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"})
    plain = plan_of(resources, prior, rollout=None)
    no_analysis = plan_of(resources, prior, rollout=RolloutSettings(traffic_steps=(10, 100)))
    assert [s.model_dump() for s in plain.steps] == [s.model_dump() for s in no_analysis.steps]
    assert "gate" not in json.dumps(plain.model_dump(mode="json")["steps"])
    assert "bake" not in render_text(plain)


def test_gates_are_in_the_plan_digest() -> None:
    resources, prior = blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"})
    plain, guarded = plan_of(resources, prior, rollout=None), plan_of(resources, prior)
    slower = plan_of(resources, prior, rollout=GUARDED.model_copy(update={"analysis": Analysis(bake_s=60)}))
    assert len({plain.digest, guarded.digest, slower.digest}) == 3
    assert len({plain.desired_digest, guarded.desired_digest, slower.desired_digest}) == 3


def test_a_deployment_no_request_reaches_is_not_gated() -> None:
    green = deployment("green", count=2)
    prior = [*base(), changed(green, environment_variables={"V": "1"})]
    plan = plan_of([*base(), changed(green, environment_variables={"V": "2"})], prior)
    [rollout] = [s for s in plan.steps if s.kind is StepKind.ROLLOUT]
    assert rollout.params_as(RolloutParams).gate is None
    assert "no gate: no live or mirrored request reaches it" in rollout.description


def test_a_traffic_change_goes_in_judged_steps_and_restores_the_split_before_it() -> None:
    green = deployment("green")
    prior = [*base(), green]
    want = [model(), environment(), endpoint(traffic={"green": 100}), deployment("blue"), green]
    plan = plan_of(want, prior)
    traffic = [s for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    assert [s.id for s in traffic] == ["set_traffic:endpoint.my-endpoint:step1", "set_traffic:endpoint.my-endpoint:step2",
                                       "set_traffic:endpoint.my-endpoint"]
    params = [s.params_as(TrafficParams) for s in traffic]
    assert [p.traffic for p in params] == [{"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}]
    assert [(p.part, p.parts) for p in params] == [(1, 3), (2, 3), (3, 3)]
    assert all(p.gate is not None and p.gate.judged == ["green"] and p.gate.baseline == ["blue"] for p in params)
    assert all(p.restore is not None and p.restore.traffic == {"blue": 100} for p in params)
    assert before(plan, traffic[0].id, traffic[1].id) and before(plan, traffic[1].id, traffic[2].id)
    text = render_text(plan)
    assert "set_traffic endpoint.my-endpoint (traffic step 2/3): traffic {blue: 50%, green: 50%}" in text
    assert "then bake 30s, 5xx <= 1%, p99 <= 1.5x blue, >= 50 requests" in text
    assert "on failure: traffic back to {blue: 100%}" in text
    markdown = render_markdown(plan)
    assert "traffic step 2/3" in markdown and "   - then bake 30s" in markdown
    steps = json.loads(render_json(plan))["steps"]
    gate = steps[[s["id"] for s in steps].index(traffic[1].id)]["params"]["gate"]
    assert gate["kind"] == "traffic" and gate["analysis"]["bake_s"] == 30 and gate["judged"] == ["green"]


def test_a_deleted_deployment_waits_for_the_last_traffic_step() -> None:
    green = deployment("green")
    want = [model(), environment(), endpoint(traffic={"green": 100}), green]
    plan = plan_of(want, [*base(), green])
    assert before(plan, "set_traffic:endpoint.my-endpoint", "delete:deployment.my-endpoint.blue")
    assert before(plan, "set_traffic:endpoint.my-endpoint:step2", "delete:deployment.my-endpoint.blue")


def test_first_traffic_is_one_judged_step_and_restores_no_traffic() -> None:
    want = base()
    plan = plan_of(want, [])
    [step] = [s for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    params = step.params_as(TrafficParams)
    assert params.traffic == {"blue": 100} and params.parts == 0
    assert params.gate is not None and params.gate.baseline == [] and params.restore is not None
    assert params.restore.traffic == {}


def test_a_mirrored_deployment_is_judged_on_its_mirror_before_its_first_live_step() -> None:
    green = deployment("green")
    prior_ep = endpoint(traffic={"blue": 100}, mirror_traffic={"green": 20})
    prior = [model(), environment(), prior_ep, deployment("blue"), green]
    want = [model(), environment(), endpoint(traffic={"blue": 50, "green": 50}), deployment("blue"), green]
    plan = plan_of(want, prior)
    traffic = [s.params_as(TrafficParams) for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    assert traffic[0].mirror_gate is not None and traffic[0].mirror_gate.kind == "mirror"
    assert traffic[0].mirror_gate.judged == ["green"] and traffic[0].mirror_gate.baseline == ["blue"]
    assert all(t.mirror_gate is None for t in traffic[1:])
    assert all(not t.mirror_traffic for t in traffic)  # live traffic to green: never mirrored with it
    assert traffic[0].restore is not None and traffic[0].restore.mirror_traffic == {"green": 20}
    assert "first, green on its mirrored answers: bake 30s" in render_text(plan)


def test_a_mirror_only_change_is_not_gated() -> None:
    green = deployment("green")
    want = [model(), environment(), endpoint(traffic={"blue": 100}, mirror_traffic={"green": 10}),
            deployment("blue"), green]
    plan = plan_of(want, [*base(), green])
    [step] = [s for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    assert step.params_as(TrafficParams).gates == []


def test_overrides_choose_the_analysis_by_address() -> None:
    rollout = GUARDED.model_copy(update={"overrides": (("deployment.my-endpoint.g*", Analysis(bake_s=120)),)})
    green = deployment("green")
    want = [model(), environment(), endpoint(traffic={"blue": 50, "green": 50}), deployment("blue"), green]
    plan = plan_of(want, [*base(), green], rollout=rollout)
    gates = [s.params_as(TrafficParams).gate for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    assert {g.analysis.bake_s for g in gates if g} == {120}


def test_a_provider_that_cannot_measure_refuses_analysis() -> None:
    plan = plan_of(blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"}),
                   measuring=Measuring())
    assert not plan.applicable
    assert "cannot measure what clients get" in plan.errors[0] and "rollout.analysis" in plan.errors[0]


def test_a_bake_under_the_provider_s_grain_is_raised_and_a_provider_without_digests_judges_once() -> None:
    azure_like = Measuring(windows=True, digests=False, min_bake_s=60, source="Azure Monitor")
    plan = plan_of(blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"}),
                   measuring=azure_like)
    [rollout] = [s for s in plan.steps if s.kind is StepKind.ROLLOUT]
    gate = rollout.params_as(RolloutParams).gate
    assert gate is not None and gate.once and gate.analysis.bake_s == 60
    assert any("raised to 1m" in w["message"] for w in plan.warnings)
    text = render_text(plan)
    assert ("after batch 5/5, the whole deployment (the provider's metrics do not tell old and new instances "
            "apart): bake 1m") in text and "batch 1/5" not in text


def test_pause_is_said_in_the_plan() -> None:
    plan = plan_of(blue10(environment_variables={"V": "2"}), blue10(environment_variables={"V": "1"}),
                   rollout=GUARDED.model_copy(update={"on_failure": "pause"}))
    assert "on failure: pause where it is" in render_text(plan)


@pytest.mark.parametrize("pct", [1, 10, 33, 50, 67, 99, 100])
def test_interpolated_splits_are_whole_percentages_summing_to_100(pct: int) -> None:
    for start, end in [({"a": 100}, {"b": 100}), ({"a": 70, "b": 30}, {"a": 10, "b": 20, "c": 70}),
                       ({"a": 33, "b": 33, "c": 34}, {"c": 100})]:
        split = interpolate(start, end, pct)
        assert sum(split.values()) == 100 and all(isinstance(v, int) and v > 0 for v in split.values())
    assert interpolate({"a": 100}, {"b": 100}, 100) == {"b": 100}


def test_every_traffic_step_waits_for_the_deployments_it_routes_to() -> None:
    """The final split names green only; the steps before it route to blue too, which rolls."""
    green = deployment("green")
    prior = [*base(), green]
    want = [model(), environment(), endpoint(traffic={"green": 100}),
            changed(deployment("blue"), environment_variables={"V": "2"}), green]
    plan = plan_of(want, prior)
    assert before(plan, "rollout:deployment.my-endpoint.blue", "set_traffic:endpoint.my-endpoint:step1")
