"""What a plan makes of a state a killed apply left: a pending create is created again (or deleted
when no longer declared), any other pending operation or an unsettled resource is repaired
(finishing or rolling back), the record of what is gone goes, and every drift item has a step."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.apply.refresh import refresh
from reconciler.model.errors import StateError
from reconciler.plan.planner import make_plan
from reconciler.plan.provider import Observation
from reconciler.plan.types import Action, Plan, ScaleParams, StepKind, TrafficParams
from reconciler.state.document import STATE_FORMAT_VERSION, Pending, State, StateResource
from tests.planner.helpers import base, changed, deployment, desired, endpoint, state
from tests.planner.test_refresh_graph import WorldProvider

BLUE = "deployment.my-endpoint.blue"
EP = "endpoint.my-endpoint"


class UnsettledWorld(WorldProvider):
    """A world whose objects may be unsettled: ``unsettled[address]`` are the reasons."""

    def __init__(self, world: dict[str, Any], unsettled: dict[str, list[str]]) -> None:
        super().__init__(world)
        self.unsettled_by = unsettled

    def observe(self, resource: StateResource) -> Observation:
        seen = super().observe(resource)
        return Observation(seen.exists, seen.attributes, seen.outputs, seen.problems,
                           list(self.unsettled_by.get(resource.address, [])))


def _pending(st: State, address: str, kind: str, attributes: dict[str, Any] | None = None,
             step: str | None = None) -> State:
    res = st.resources[address]
    intent = Pending(step=step or f"{kind}:{address}", kind=kind,  # type: ignore[arg-type]
                     attributes=dict(attributes if attributes is not None else res.attributes))
    return st.model_copy(update={"resources": {**st.resources, address: res.model_copy(update={"pending": intent})}})


def _kinds(plan: Plan, address: str) -> list[StepKind]:
    return [s.kind for s in plan.steps if s.address == address]


def _assert_drift_planned(plan: Plan) -> None:
    stepped = {s.address for s in plan.steps}
    assert all(d.address in stepped for d in plan.drift if d.kind != "unmanaged"), (plan.drift, stepped)


def test_pending_create_is_created_again_without_a_before() -> None:
    res = base()
    st = _pending(state(*res), BLUE, "create")
    refreshed, drift = refresh(st, WorldProvider({}))
    plan = make_plan(desired(*res), refreshed, drift=drift)
    change = plan.change(BLUE)
    assert change is not None and change.action is Action.CREATE and change.before is None
    assert "interrupted while creating it" in (change.reason or "")
    assert _kinds(plan, BLUE) == [StepKind.CREATE]
    assert any(d.address == BLUE and d.actual == "interrupted" for d in drift)
    _assert_drift_planned(plan)


def test_pending_create_no_longer_declared_is_deleted() -> None:
    res = base()
    green = deployment("green")
    st = _pending(state(*res, green), green.address, "create")
    refreshed, drift = refresh(st, WorldProvider({}))
    plan = make_plan(desired(*res), refreshed, drift=drift)
    assert plan.change(green.address).action is Action.DELETE  # type: ignore[union-attr]
    assert _kinds(plan, green.address) == [StepKind.DELETE]


@pytest.mark.parametrize("config, how", [("target", "which finishes it"), ("recorded", "rolls it back")])
def test_interrupted_rollout_is_finished_or_rolled_back_by_scale_and_rollout(config: str, how: str) -> None:
    res = base()
    blue = next(r for r in res if r.address == BLUE)
    v2 = changed(blue, environment_variables={"RELEASE": "v2"})
    st = _pending(state(*res), BLUE, "rollout", v2.attributes)
    declared = [r for r in res if r.address != BLUE] + [v2 if config == "target" else blue]
    refreshed, drift = refresh(st, WorldProvider({}))
    plan = make_plan(desired(*declared), refreshed, drift=drift)
    change = plan.change(BLUE)
    assert change is not None and change.action is Action.UPDATE and how in (change.reason or "")
    assert _kinds(plan, BLUE) == [StepKind.SCALE, StepKind.ROLLOUT]
    scale = next(s for s in plan.steps if s.kind is StepKind.SCALE)
    assert scale.params == ScaleParams(from_=1, to=1, repair=True) and "repair" in scale.description
    _assert_drift_planned(plan)


def test_interrupted_traffic_change_sets_the_traffic_again() -> None:
    res = base()
    st = _pending(state(*res), EP, "set_traffic")
    refreshed, drift = refresh(st, WorldProvider({}))
    plan = make_plan(desired(*res), refreshed, drift=drift)
    assert _kinds(plan, EP) == [StepKind.UPDATE, StepKind.SET_TRAFFIC]
    traffic = next(s for s in plan.steps if s.kind is StepKind.SET_TRAFFIC)
    assert traffic.params_as(TrafficParams).traffic == {"blue": 100}
    assert _kinds(plan, BLUE) == []  # nothing wrong with the deployment


def test_unsettled_deployment_is_drift_marked_failed_and_repaired() -> None:
    res = base()
    why = "instance 3 (pid 42) runs, but the router does not send it requests"
    refreshed, drift = refresh(state(*res), UnsettledWorld({}, {BLUE: [why]}))
    assert [(d.address, d.kind, d.path, d.actual, d.detail) for d in drift] == [
        (BLUE, "changed", "status", "unsettled", why)
    ]
    assert refreshed.resources[BLUE].status == "failed"
    plan = make_plan(desired(*res), refreshed, drift=drift)
    assert _kinds(plan, BLUE) == [StepKind.SCALE, StepKind.ROLLOUT]
    assert why in (plan.change(BLUE).reason or "")  # type: ignore[union-attr]
    _assert_drift_planned(plan)


def test_unsettled_endpoint_gets_its_table_and_traffic_again_after_its_deployments() -> None:
    res = base()
    why = "its router serves version 4 of the routing table, but version 5 was written"
    refreshed, drift = refresh(state(*res), UnsettledWorld({}, {EP: [why]}))
    plan = make_plan(desired(*res), refreshed, drift=drift)
    assert _kinds(plan, EP) == [StepKind.UPDATE, StepKind.SET_TRAFFIC]
    _assert_drift_planned(plan)


def test_gone_and_no_longer_declared_only_its_record_is_removed() -> None:
    res = base()
    green = deployment("green")
    refreshed, drift = refresh(state(*res, green), WorldProvider({green.address: None}))
    assert green.address not in refreshed.resources
    missing = next(d for d in drift if d.address == green.address)
    assert missing.kind == "missing" and missing.recorded == green.attributes
    plan = make_plan(desired(*res), refreshed, drift=drift)
    change = plan.change(green.address)
    assert change is not None and change.action is Action.DELETE and "only its record" in (change.reason or "")
    assert change.name == "green" and _kinds(plan, green.address) == [StepKind.DELETE]
    destroy = make_plan(desired(*res), refreshed, drift=drift, destroy=True)
    assert green.address in {s.address for s in destroy.steps}
    assert destroy.quota.families[0].before == 8  # blue's reserved cores only: what is gone uses none


def test_drift_to_exactly_what_is_declared_is_applied_so_that_it_is_recorded() -> None:
    res = [r for r in base() if r.address != EP] + [endpoint(traffic={"blue": 100})]
    green = deployment("green")
    recorded = state(*res, green)
    declared = [r for r in res if r.address != EP] + [endpoint(traffic={"blue": 30, "green": 70}), green]
    world = {EP: {"traffic": {"blue": 30, "green": 70}, "mirror_traffic": {}}}
    refreshed, drift = refresh(recorded, WorldProvider(world))
    assert {d.path for d in drift} == {"traffic.blue", "traffic.green"}
    plan = make_plan(desired(*declared), refreshed, drift=drift)
    assert _kinds(plan, EP) == [StepKind.UPDATE, StepKind.SET_TRAFFIC]
    assert "changed outside of recon" in (plan.change(EP).reason or "")  # type: ignore[union-attr]
    _assert_drift_planned(plan)


def test_state_of_format_1_loads_and_is_written_as_the_current_format() -> None:
    st = state(*base())
    doc = st.model_dump(mode="json")
    doc["format_version"] = 1
    loaded = State.from_bytes(__import__("json").dumps(doc).encode())
    assert loaded.format_version == STATE_FORMAT_VERSION == 2
    assert loaded.resources == st.resources
    assert b'"pending"' not in loaded.to_bytes()  # a settled resource is stored as format 1 stored it


def test_state_of_an_unknown_format_is_refused_naming_it() -> None:
    doc = state(*base()).model_dump(mode="json")
    doc["format_version"] = 3
    with pytest.raises(StateError, match="format_version 3; this recon reads versions 1 and 2"):
        State.from_bytes(__import__("json").dumps(doc).encode())


def test_pending_operation_round_trips() -> None:
    st = _pending(state(*base()), BLUE, "rollout")
    intent = st.resources[BLUE].pending
    assert intent is not None
    intent = intent.model_copy(update={"batches": 5, "batches_done": 2})
    st.resources[BLUE] = st.resources[BLUE].model_copy(update={"pending": intent})
    again = State.from_bytes(st.to_bytes())
    assert again.resources[BLUE].pending == intent
    assert intent.describe() == f"rollout (step rollout:{BLUE}, 2 of 5 batches done)"


def test_interrupted_delete_is_deleted_again_or_repaired_when_declared_again() -> None:
    res = base()
    green = deployment("green")
    st = _pending(state(*res, green), green.address, "delete")
    refreshed, drift = refresh(st, WorldProvider({}))
    gone = make_plan(desired(*res), refreshed, drift=drift)
    change = gone.change(green.address)
    assert change is not None and change.action is Action.DELETE and "interrupted" in (change.reason or "")
    kept = make_plan(desired(*res, green), refreshed, drift=drift)
    change = kept.change(green.address)
    assert change is not None and change.action is Action.UPDATE and "still declared" in (change.reason or "")
    assert _kinds(kept, green.address) == [StepKind.SCALE, StepKind.ROLLOUT]
    _assert_drift_planned(kept)
