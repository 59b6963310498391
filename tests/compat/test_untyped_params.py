"""A plan saved before step params had types (plain dicts, a rollout's batches stored beside its
instances and batch size) still loads, with the same steps, and renders the same steps in the public JSON.

``untyped_params/plan.json`` is ``Plan.model_dump_json()`` of a planner plan made before the types
(a replaced deployment drained first, another scaled 2 -> 7 and rolled in batches 2, 2, 2, 1);
``plan-rendered.json`` is ``render_json`` of it, by that same recon."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.plan.types import NoParams, Plan, RolloutParams, ScaleParams, StepKind, TrafficParams
from reconciler.render.json import render_json

HERE = Path(__file__).parent / "untyped_params"


def _saved() -> dict[str, object]:
    data: dict[str, object] = json.loads((HERE / "plan.json").read_text())
    return data


def test_steps_of_a_plan_saved_before_the_types_load_as_their_kinds() -> None:
    plan = Plan.model_validate_json((HERE / "plan.json").read_text())
    by_kind = {s.kind: s.params for s in plan.steps}
    assert by_kind[StepKind.SCALE] == ScaleParams(from_=2, to=7)
    assert by_kind[StepKind.ROLLOUT] == RolloutParams(instances=7, batch_size=2)
    assert by_kind[StepKind.DELETE] == by_kind[StepKind.CREATE] == NoParams()
    drain, final = (s.params for s in plan.steps if s.kind is StepKind.SET_TRAFFIC)
    assert drain == TrafficParams(traffic={"green": 100}, mirror_traffic={}, phase="drain")
    assert final == TrafficParams(traffic={"blue": 80, "green": 20}, mirror_traffic={}, phase="final")
    saved = next(s for s in _saved()["steps"] if s["kind"] == "rollout")  # type: ignore[attr-defined]
    rollout = plan.steps[[s.kind for s in plan.steps].index(StepKind.ROLLOUT)]
    assert [b.model_dump() for b in rollout.params_as(RolloutParams).batches] == saved["batches"]


def test_a_plan_saved_before_the_types_renders_the_same_steps() -> None:
    plan = Plan.model_validate_json((HERE / "plan.json").read_text())
    now, then = json.loads(render_json(plan)), json.loads((HERE / "plan-rendered.json").read_text())
    assert now["steps"] == then["steps"]  # batches spelled out, params as they were


def test_a_saved_plan_stores_a_rollouts_batches_once() -> None:
    plan = Plan.model_validate_json((HERE / "plan.json").read_text())
    stored = json.loads(plan.model_dump_json())
    assert all("batches" not in s for s in stored["steps"])
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
