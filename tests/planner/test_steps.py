"""Step ordering: traffic, drains, deletes in reverse, rollout batches, scale before rollout."""

from __future__ import annotations

import pytest

from reconciler.plan.planner import make_plan
from reconciler.plan.steps import batch_size, rollout_batches
from reconciler.plan.traffic import redistribute
from reconciler.plan.types import Action, Plan, RolloutParams, ScaleParams, StepKind, TrafficParams
from reconciler.state.document import State
from tests.planner.helpers import base, before, changed, deployment, desired, endpoint, state


def assert_traffic_safe(plan: Plan) -> None:
    """Every SET_TRAFFIC waits for the creation/update of each deployment it names, and every
    delete of a deployment that had traffic waits for a SET_TRAFFIC that no longer names it."""
    steps = {s.id: s for s in plan.steps}
    for s in plan.steps:
        if s.kind is SET:
            ep = s.address.split(".", 1)[1]
            routed = s.params_as(TrafficParams)
            for name in {**routed.traffic, **routed.mirror_traffic}:
                for kind in ("create", "rollout", "scale"):
                    sid = f"{kind}:deployment.{ep}.{name}"
                    if sid in steps:
                        assert before(plan, sid, s.id), f"{s.id} does not wait for {sid}"
        if s.kind is StepKind.DELETE and s.address.startswith("deployment."):
            _, ep, name = s.address.split(".")
            rc = plan.change(f"endpoint.{ep}")
            had = rc.before if rc and rc.before else {}
            if name in {**had.get("traffic", {}), **had.get("mirror_traffic", {})}:
                assert any(
                    t.kind is SET
                    and t.address == f"endpoint.{ep}"
                    and before(plan, t.id, s.id)
                    and name not in {**t.params_as(TrafficParams).traffic, **t.params_as(TrafficParams).mirror_traffic}
                    for t in plan.steps
                ), f"{s.id} runs while traffic may still point at it"


SET = StepKind.SET_TRAFFIC


def test_new_endpoint_created_without_traffic_then_deployments_then_traffic() -> None:
    plan = make_plan(desired(*base()), State())
    ids = [s.id for s in plan.steps]
    assert ids == [
        "create:environment.my-env:1",
        "create:model.my-model:1",
        "create:endpoint.my-endpoint",
        "create:deployment.my-endpoint.blue",
        "set_traffic:endpoint.my-endpoint",
    ]
    create_dep = plan.steps[3]
    assert set(create_dep.depends_on) == {
        "create:environment.my-env:1",
        "create:model.my-model:1",
        "create:endpoint.my-endpoint",
    }
    assert plan.steps[-1].params == TrafficParams(traffic={"blue": 100}, mirror_traffic={}, phase="final")
    assert plan.steps[-1].depends_on == ["create:endpoint.my-endpoint", "create:deployment.my-endpoint.blue"]
    assert_traffic_safe(plan)


def test_new_endpoint_without_traffic_gets_no_traffic_step() -> None:
    res = base()
    plan = make_plan(desired(res[0], res[1], endpoint(), res[3]), State())
    assert all(s.kind is not StepKind.SET_TRAFFIC for s in plan.steps)


def test_blue_green_switch_sets_traffic_after_green_is_ready_and_deletes_blue_after() -> None:
    res = base()
    green = deployment("green")
    plan = make_plan(desired(res[0], res[1], endpoint(traffic={"green": 100}), green), state(*res))
    ids = [s.id for s in plan.steps]
    assert ids == [
        "create:deployment.my-endpoint.green",
        "set_traffic:endpoint.my-endpoint",
        "delete:deployment.my-endpoint.blue",
    ]
    assert before(plan, "set_traffic:endpoint.my-endpoint", "delete:deployment.my-endpoint.blue")
    assert before(plan, "create:deployment.my-endpoint.green", "set_traffic:endpoint.my-endpoint")
    assert_traffic_safe(plan)


def test_mirror_traffic_waits_for_the_mirror_deployment() -> None:
    res = base()
    green = deployment("green")
    ep = endpoint(traffic={"blue": 100}, mirror_traffic={"green": 10})
    plan = make_plan(desired(res[0], res[1], ep, res[3], green), state(*res))
    step = plan.steps[-1]
    assert step.params_as(TrafficParams).mirror_traffic == {"green": 10}
    assert before(plan, "create:deployment.my-endpoint.green", step.id)


def test_mirror_removed_before_its_deployment_is_deleted() -> None:
    res = base()
    green = deployment("green")
    ep_mirror = endpoint(traffic={"blue": 100}, mirror_traffic={"green": 10})
    plan = make_plan(desired(res[0], res[1], res[2], res[3]), state(res[0], res[1], ep_mirror, res[3], green))
    assert [s.id for s in plan.steps] == [
        "set_traffic:endpoint.my-endpoint",
        "delete:deployment.my-endpoint.green",
    ]
    assert before(plan, "set_traffic:endpoint.my-endpoint", "delete:deployment.my-endpoint.green")
    assert_traffic_safe(plan)


def test_replaced_deployment_with_live_traffic_is_drained_first() -> None:
    res = base()
    green = deployment("green")
    ep = endpoint(traffic={"blue": 80, "green": 20})
    new_blue = changed(res[3], instance_type="Standard_F4s_v2")
    plan = make_plan(desired(res[0], res[1], ep, new_blue, green), state(res[0], res[1], ep, res[3], green))
    ids = [s.id for s in plan.steps]
    assert ids == [
        "set_traffic:endpoint.my-endpoint:drain",
        "delete:deployment.my-endpoint.blue",
        "create:deployment.my-endpoint.blue",
        "set_traffic:endpoint.my-endpoint",
    ]
    drain = plan.steps[0]
    assert drain.params == TrafficParams(traffic={"green": 100}, mirror_traffic={}, phase="drain")
    assert plan.steps[-1].params_as(TrafficParams).traffic == {"blue": 80, "green": 20}
    assert before(plan, "create:deployment.my-endpoint.blue", "set_traffic:endpoint.my-endpoint")
    assert any("80% of live traffic" in w["message"] and "blue/green" in w["hint"] for w in plan.warnings)
    assert plan.change("endpoint.my-endpoint").action is Action.NOOP
    assert_traffic_safe(plan)


def test_replaced_only_deployment_drains_to_zero() -> None:
    res = base()
    new_blue = changed(res[3], instance_type="Standard_F4s_v2")
    plan = make_plan(desired(*res[:3], new_blue), state(*res))
    assert plan.steps[0].params_as(TrafficParams).traffic == {}
    assert plan.steps[-1].params_as(TrafficParams).traffic == {"blue": 100}
    assert any("nowhere" in w["message"] for w in plan.warnings)
    assert_traffic_safe(plan)


def test_traffic_omitted_from_file_keeps_recorded_traffic() -> None:
    res = base()
    undeclared = endpoint(description="new words")  # no traffic key in the file
    assert undeclared.attributes["traffic_declared"] is False
    plan = make_plan(desired(res[0], res[1], undeclared, res[3]), state(*res))
    rc = plan.change("endpoint.my-endpoint")
    assert rc.after["traffic"] == {"blue": 100}
    assert {c.path for c in rc.changes} == {"description"}
    assert all(s.kind is not StepKind.SET_TRAFFIC for s in plan.steps)


def test_traffic_omitted_but_kept_traffic_names_deleted_deployment_is_an_error() -> None:
    res = base()
    plan = make_plan(desired(res[0], res[1], endpoint()), state(*res))
    assert any("declares no traffic" in e and "traffic.blue" in e for e in plan.errors)


@pytest.mark.parametrize(
    "recorded",
    [{"blue": 100, "green": 0}, {"Blue": 100}, {"BLUE": 100, "Green": 0}],
)
def test_traffic_normal_form_means_no_false_drift(recorded: dict[str, int]) -> None:
    res = base()
    old_ep = endpoint(traffic=recorded)
    green = deployment("green")
    plan = make_plan(
        desired(res[0], res[1], res[2], res[3], green), state(res[0], res[1], old_ep, res[3], green)
    )
    assert plan.change("endpoint.my-endpoint").action is Action.NOOP
    assert not plan.has_changes


def test_deleting_an_endpoint_deletes_deployments_first_then_assets() -> None:
    res = base()
    plan = make_plan(desired(), state(*res))
    ids = [s.id for s in plan.steps]
    assert ids.index("set_traffic:endpoint.my-endpoint:drain") < ids.index(
        "delete:deployment.my-endpoint.blue"
    )
    assert before(plan, "delete:deployment.my-endpoint.blue", "delete:endpoint.my-endpoint")
    assert before(plan, "delete:deployment.my-endpoint.blue", "delete:model.my-model:1")
    assert_traffic_safe(plan)


@pytest.mark.parametrize(
    ("n", "size", "count"),
    [(1, 1, 1), (4, 1, 4), (5, 1, 5), (10, 2, 5), (50, 10, 5), (7, 2, 4)],
)
def test_rollout_batches(n: int, size: int, count: int) -> None:
    assert batch_size(n) == size
    batches = rollout_batches(n)
    assert len(batches) == count
    assert sum(b.size for b in batches) == n
    assert [b.index for b in batches] == list(range(1, count + 1))


@pytest.mark.parametrize(("n", "size", "count"), [(1, 1, 1), (4, 1, 4), (5, 1, 5), (10, 2, 5), (50, 10, 5)])
def test_rollout_step_batches_in_plan(n: int, size: int, count: int) -> None:
    res = base()
    old = changed(res[3], instance_count=n)
    new = changed(old, code={"path": "onlinescoring", "digest": "sha256:c2"})
    plan = make_plan(desired(*res[:3], new), state(*res[:3], old))
    (step,) = plan.steps
    assert step.kind is StepKind.ROLLOUT
    assert step.params == RolloutParams(instances=n, batch_size=size)
    batches = step.params_as(RolloutParams).batches
    assert len(batches) == count and {b.size for b in batches} == {size}


def test_scale_then_rollout_with_warning() -> None:
    res = base()
    old = changed(res[3], instance_count=2)
    new = changed(res[3], instance_count=4, environment_variables={"FOO": "bar"})
    plan = make_plan(desired(*res[:3], new), state(*res[:3], old))
    assert [s.kind for s in plan.steps] == [StepKind.SCALE, StepKind.ROLLOUT]
    scale, rollout = plan.steps
    assert scale.params == ScaleParams(from_=2, to=4)
    assert rollout.depends_on == [scale.id] and rollout.params_as(RolloutParams).instances == 4
    assert any("separate applies" in (w["hint"] or "") for w in plan.warnings)


def test_scale_only_has_no_rollout_and_no_warning() -> None:
    res = base()
    new = changed(res[3], instance_count=3)
    plan = make_plan(desired(*res[:3], new), state(*res))
    assert [(s.kind, s.params) for s in plan.steps] == [(StepKind.SCALE, ScaleParams(from_=1, to=3))]
    assert plan.warnings == []


def test_redistribute_keeps_whole_percentages_summing_to_100() -> None:
    assert redistribute({"a": 50, "b": 25, "c": 25}, ["a"]) == {"b": 50, "c": 50}
    out = redistribute({"a": 34, "b": 33, "c": 33}, ["a"])
    assert sum(out.values()) == 100 and set(out) == {"b", "c"}
    assert redistribute({"a": 100}, ["a"]) == {}
