"""A traffic step whose bake an apply never finished (SIGKILL, Ctrl-C): the state records the
judgment before the bake (``StateResource.judging``), the next plan shows it and judges that step
again before anything else, and carries out its ``on_failure``. On the fake provider with a real
state manager; the kill is the state and the world as they were during the bake, written back
(the real SIGKILL is the kill loop's: tests/e2e/killloop.py, ``gate.pending``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from reconciler.apply.hooks import ApplyHooks
from reconciler.apply.judge import Verdict
from reconciler.model.resources import DesiredState
from reconciler.plan.types import Action, Step, StepKind, TrafficParams
from reconciler.state.document import State
from tests.engine.helpers import Env, blue_green, plan_for
from tests.rollout.test_apply_gates import EP, Seen, _moved, apply, guarded, remaining

GREEN = "deployment.ep.green"


class KilledWhileBaking(ApplyHooks):
    """Keeps the state and the world as they were at the first look into ``label``'s bake."""

    def __init__(self, env: Env, label: str) -> None:
        self.env, self.label = env, label
        self.state: State | None = None
        self.objects: dict[str, Any] | None = None

    def gate_progress(self, step: Step, label: str, verdict: Verdict, elapsed: float, bake: float) -> None:
        if label == self.label and self.state is None:
            self.state = self.env.state()
            with self.env.world.transaction() as world:
                self.objects = copy.deepcopy(world["objects"])


def killed_at(tmp_path: Path, label: str) -> tuple[Env, DesiredState]:
    """blue 100% moved to green 100% in guarded steps, killed during ``label``'s bake."""
    env, want = _moved(tmp_path, {})
    kill = KilledWhileBaking(env, label)
    assert apply(env, want, kill).ok
    assert kill.state is not None and kill.objects is not None
    manager = env.manager()
    manager.read()
    manager.write(kill.state)
    with env.world.transaction() as world:
        world["objects"] = kill.objects
    return env, want


def green_fails(env: Env) -> None:
    with env.world.transaction() as world:
        for inst in world["objects"][GREEN]["instances"]:
            inst["behaviour"] = {"error_rate": 0.3, "latency_s": 0.02}


def test_the_judgment_is_recorded_before_the_bake_with_the_split_to_restore(tmp_path: Path) -> None:
    env, _ = killed_at(tmp_path, "traffic step 3/3")
    endpoint = env.state().resources[EP]
    judging = endpoint.judging
    assert judging is not None and judging.step == "set_traffic:endpoint.ep" and judging.label == "traffic step 3/3"
    assert judging.traffic == {"green": 100} and judging.restore == {"blue": 100}
    assert judging.gate.judged == ["green"] and endpoint.attributes["traffic"] == {"green": 100}
    # plain data, in the state document; a settled resource stores none
    assert '"judging"' in env.state().to_bytes().decode()
    assert State.from_bytes(env.state().to_bytes()).resources[EP].judging == judging
    assert "judging" not in env.state().resources["deployment.ep.blue"].model_dump(mode="json")


def test_the_next_plan_judges_the_last_step_again_before_anything_else(tmp_path: Path) -> None:
    env, want = killed_at(tmp_path, "traffic step 3/3")
    plan = plan_for(env.manager(), want)
    [change] = [rc for rc in plan.resource_changes if rc.action is not Action.NOOP]
    assert change.address == EP and change.action is Action.UPDATE
    assert "traffic step 3/3 (green 100%) was never judged" in (change.reason or "")
    first = plan.steps[0]
    params = first.params_as(TrafficParams)
    assert first.kind is StepKind.SET_TRAFFIC and first.description.startswith("judge traffic step 3/3")
    assert params.gate is not None and params.traffic == {"green": 100}
    assert params.restore is not None and params.restore.traffic == {"blue": 100}
    assert [s.id for s in plan.steps] == ["set_traffic:endpoint.ep"]  # nothing else: the split is the declared one
    hooks = Seen()
    result = apply(env, want, hooks)
    assert result.ok, result.errors
    assert hooks.judged == [("set_traffic:endpoint.ep", "traffic step 3/3", "pass")]
    endpoint = env.state().resources[EP]
    assert endpoint.judging is None and endpoint.pending is None and endpoint.attributes["traffic"] == {"green": 100}
    assert remaining(env, want) == {}


def test_a_judgment_failing_on_the_next_apply_restores_the_split_before_the_change(tmp_path: Path) -> None:
    env, want = killed_at(tmp_path, "traffic step 3/3")
    green_fails(env)
    result = apply(env, want)
    [failed] = result.errors
    assert failed.gate_failed and "traffic restored to blue 100%" in (failed.undone or "")
    endpoint = env.state().resources[EP]
    assert endpoint.attributes["traffic"] == {"blue": 100} and endpoint.judging is None
    assert env.world.objects()[EP]["traffic"] == {"blue": 100}
    assert remaining(env, want) == {EP: Action.UPDATE}  # the change is shown again, judged from the start
    again = plan_for(env.manager(), want)
    assert [s.params_as(TrafficParams).part for s in again.steps] == [1, 2, 3]


def test_a_judgment_of_an_earlier_step_comes_first_and_the_rest_restore_the_same_split(tmp_path: Path) -> None:
    env, want = killed_at(tmp_path, "traffic step 1/3")
    assert env.state().resources[EP].attributes["traffic"] == {"blue": 90, "green": 10}
    plan = plan_for(env.manager(), want)
    judge, *rest = plan.steps
    assert judge.id == "set_traffic:endpoint.ep:judge" and judge.depends_on == []
    assert all(judge.id in s.depends_on for s in rest) and rest
    # the same change goes on after the judged step, numbered as before (not split again from 10%)
    parts = [(s.params_as(TrafficParams).part, s.params_as(TrafficParams).traffic) for s in rest]
    assert parts == [(2, {"blue": 50, "green": 50}), (3, {"green": 100})]
    for s in rest:
        restore = s.params_as(TrafficParams).restore
        assert restore is not None and restore.traffic == {"blue": 100}  # not the 10% split the kill left
    green_fails(env)
    result = apply(env, want)
    [failed] = result.errors
    assert failed.step_id == judge.id and "traffic restored to blue 100%" in (failed.undone or "")
    assert {o.step_id for o in result.outcomes if o.outcome == "skipped"} == {s.id for s in rest}
    assert env.state().resources[EP].judging is None


def test_an_endpoint_removed_from_the_configuration_drops_its_judgment(tmp_path: Path) -> None:
    env, _ = killed_at(tmp_path, "traffic step 3/3")
    gone = guarded(blue_green(tmp_path, blue=1, green=1, traffic={"green": 100}))
    gone = gone.model_copy(update={"resources": {}})
    plan = plan_for(env.manager(), gone, destroy=True)
    assert not any(s.id.endswith(":judge") or "judge" in s.description for s in plan.steps)
