"""Apply with gates, on the fake provider (its clients simulated: providers/fake/windows.py) and a
real state manager: every batch and traffic step judged, a failing one rolled back (or paused), the
state truthful afterwards, the next plan showing the change again. The engine's sleep is injected:
the bakes take no time, and what they slept is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.fake import template_digest
from reconciler.apply.engine import apply_plan
from reconciler.apply.hooks import ApplyHooks
from reconciler.apply.judge import Verdict
from reconciler.apply.outcomes import ApplyResult
from reconciler.apply.refresh import refresh
from reconciler.model.resources import DesiredState
from reconciler.model.rollout import Analysis, LatencyLimit, RolloutSettings
from reconciler.plan.types import Action, Step, StepKind, TrafficParams
from tests.engine.helpers import Env, blue_green, plan_for

BLUE, EP = "deployment.ep.blue", "endpoint.ep"
GUARDED = RolloutSettings(analysis=Analysis(bake_s=30, min_requests=50, max_error_rate=0.01,
                                            max_latency_p99=LatencyLimit(relative=1.5)),
                          traffic_steps=(10, 50, 100))


class Clock:
    """The engine's sleep: returns at once, counts what was asked."""

    def __init__(self) -> None:
        self.slept = 0.0

    def __call__(self, seconds: float) -> None:
        self.slept += seconds


class Seen(ApplyHooks):
    def __init__(self) -> None:
        self.judged: list[tuple[str, str, str]] = []
        self.progress = 0
        self.events: list[str] = []

    def gate_judged(self, step: Step, label: str, verdict: Verdict) -> None:
        self.judged.append((step.id, label, verdict.result))

    def gate_progress(self, step: Step, label: str, verdict: Verdict, elapsed: float, bake: float) -> None:
        self.progress += 1

    def event(self, step: Step, line: str) -> None:
        self.events.append(line)


def guarded(want: DesiredState, rollout: RolloutSettings = GUARDED) -> DesiredState:
    return want.model_copy(update={"rollout": rollout})


def apply(env: Env, want: DesiredState, hooks: ApplyHooks | None = None, clock: Clock | None = None) -> ApplyResult:
    manager = env.manager()
    return apply_plan(plan_for(manager, want), provider=env.provider, state_manager=manager,
                      desired_digest=want.digest, hooks=hooks, sleep=clock or Clock())


def started(tmp_path: Path, count: int = 4, **settings: Any) -> Env:
    """blue at V=1 with all the traffic (applied without gates)."""
    env = Env(tmp_path, {"window_requests": 400, **settings})
    assert apply(env, blue_green(tmp_path, blue=count, green=None, env_vars={"V": "1"})).ok
    return env


def blue_instances(env: Env) -> list[dict[str, Any]]:
    return env.world.objects()[BLUE]["instances"]


def remaining(env: Env, want: DesiredState) -> dict[str, Action]:
    plan = plan_for(env.manager(), want)
    return {rc.address: rc.action for rc in plan.resource_changes if rc.action is not Action.NOOP}


def test_a_healthy_version_passes_every_batch(tmp_path: Path) -> None:
    env = started(tmp_path)
    want = guarded(blue_green(tmp_path, blue=4, green=None, env_vars={"V": "2"}))
    hooks, clock = Seen(), Clock()
    result = apply(env, want, hooks, clock)
    assert result.ok, result.errors
    [rollout] = [o for o in result.outcomes if o.kind is StepKind.ROLLOUT]
    assert [v.result for v in rollout.verdicts] == ["pass"] * 4
    assert [label for _, label, _ in hooks.judged] == [f"batch {i}/4" for i in range(1, 5)]
    assert clock.slept == pytest.approx(4 * 30) and hooks.progress >= 4 * 29
    # each batch's new instances judged against the old ones in the same window (until none is left)
    assert rollout.verdicts[0].requests == 100 and rollout.verdicts[0].baseline_requests == 300
    assert rollout.verdicts[-1].baseline_requests == 0 and rollout.verdicts[-1].checks[-1].result == "pass"
    assert {i["config"] for i in blue_instances(env)} == {template_digest(want.resources[BLUE].attributes)}
    assert remaining(env, want) == {}


def test_a_failing_version_is_rolled_back_in_its_first_batch(tmp_path: Path) -> None:
    env = started(tmp_path)
    old = {i["config"] for i in blue_instances(env)}
    want = guarded(blue_green(tmp_path, blue=4, green=None, env_vars={"V": "2", "FAKE_ERROR_RATE": "0.3"}))
    hooks, clock = Seen(), Clock()
    result = apply(env, want, hooks, clock)
    assert not result.ok
    [failed] = result.errors
    assert failed.gate_failed and failed.batches_done == 1 and "rolled back" in (failed.undone or "")
    assert "batch 1/4" in (failed.error or "") and "error rate 30% (30/100) > 1%" in (failed.error or "")
    [verdict] = failed.verdicts
    assert verdict.result == "fail" and [c.name for c in verdict.failing()] == ["error_rate"]
    assert clock.slept == 1.0  # a clear failure ends the bake at its first look
    # every instance runs the previous configuration again; the state says so, settled
    assert {i["config"] for i in blue_instances(env)} == old and len(blue_instances(env)) == 4
    state = env.state()
    blue = state.resources[BLUE]
    assert blue.attributes["environment_variables"] == {"V": "1"} and blue.pending is None and blue.status == "ready"
    calls = [(c["op"], c.get("batch")) for c in env.world.calls() if c["op"] == "roll_batch"]
    assert calls == [("roll_batch", 1), ("roll_batch", 1)]  # one forward, one back
    assert any("rolling back" in e for e in hooks.events)
    # the history keeps why; the next plan shows the same change again; nothing drifted
    notes = [e.note for e in env.manager().history() if e.note]
    assert notes == ["rollback of deployment.ep.blue: error rate failed (batch gate)"]
    assert remaining(env, want) == {BLUE: Action.UPDATE}
    _, drift = refresh(env.state(), env.provider)
    assert drift == []


def test_a_slower_version_is_rolled_back_by_the_latency_gate(tmp_path: Path) -> None:
    env = started(tmp_path)
    want = guarded(blue_green(tmp_path, blue=4, green=None, env_vars={"V": "2", "FAKE_LATENCY_S": "2"}))
    result = apply(env, want)
    [failed] = result.errors
    assert [c.name for c in failed.verdicts[-1].failing()] == ["latency_p99"]
    assert env.state().resources[BLUE].attributes["environment_variables"] == {"V": "1"}


@pytest.mark.parametrize(("on_inconclusive", "ok"), [("proceed", True), ("fail", False), ("wait", False)])
def test_no_traffic_follows_on_inconclusive(tmp_path: Path, on_inconclusive: str, ok: bool) -> None:
    rollout = GUARDED.model_copy(update={"analysis": Analysis(bake_s=10, on_inconclusive=on_inconclusive,
                                                               max_wait_s=60)})
    env = started(tmp_path, count=2, window_requests=0)
    want = guarded(blue_green(tmp_path, blue=2, green=None, env_vars={"V": "2"}), rollout)
    hooks, clock = Seen(), Clock()
    result = apply(env, want, hooks, clock)
    assert result.ok is ok
    rollout_outcome = next(o for o in result.outcomes if o.kind is StepKind.ROLLOUT)
    assert rollout_outcome.verdicts[0].result == "inconclusive"
    if on_inconclusive == "proceed":
        assert [r for _, _, r in hooks.judged] == ["inconclusive", "inconclusive"]
        assert env.state().resources[BLUE].attributes["environment_variables"] == {"V": "2"}
    else:
        assert "inconclusive" in (rollout_outcome.error or "")
        assert env.state().resources[BLUE].attributes["environment_variables"] == {"V": "1"}
    if on_inconclusive == "wait":  # bakes again and again, up to max_wait
        assert clock.slept == pytest.approx(60) and len(hooks.judged) == 6


def test_pause_stops_where_it_is_and_the_state_says_so(tmp_path: Path) -> None:
    rollout = GUARDED.model_copy(update={"on_failure": "pause"})
    env = started(tmp_path)
    want = guarded(blue_green(tmp_path, blue=4, green=None, env_vars={"V": "2", "FAKE_ERROR_RATE": "0.5"}), rollout)
    result = apply(env, want)
    [failed] = result.errors
    assert "paused where it is" in (failed.error or "") and "1 of 4 batches done" in (failed.error or "")
    blue = env.state().resources[BLUE]
    assert blue.pending is not None and blue.pending.batches_done == 1  # the interrupted-rollout record
    assert len({i["config"] for i in blue_instances(env)}) == 2
    assert [c["op"] for c in env.world.calls() if c["op"] == "roll_batch"] == ["roll_batch"]
    assert remaining(env, want) == {BLUE: Action.UPDATE}


def _moved(tmp_path: Path, green_vars: dict[str, str]) -> tuple[Env, DesiredState]:
    env = Env(tmp_path, {"window_requests": 1000})  # step 1 sends green 10%: 100 requests
    start = guarded(blue_green(tmp_path, blue=1, green=1, traffic={"blue": 100}))
    assert apply(env, start).ok
    green = env.world.objects()["deployment.ep.green"]
    for inst in green["instances"]:  # green's instances answer as these say (started before)
        inst["behaviour"] = {"error_rate": float(green_vars.get("FAKE_ERROR_RATE", 0)), "latency_s": 0.02}
    with env.world.transaction() as world:
        world["objects"]["deployment.ep.green"] = green
    return env, guarded(blue_green(tmp_path, blue=1, green=1, traffic={"green": 100}))


def test_a_traffic_change_passes_each_step(tmp_path: Path) -> None:
    env, want = _moved(tmp_path, {})
    hooks = Seen()
    result = apply(env, want, hooks)
    assert result.ok, result.errors
    assert [label for _, label, _ in hooks.judged] == ["traffic step 1/3", "traffic step 2/3", "traffic step 3/3"]
    routed = [c["traffic"] for c in env.world.calls() if c["op"] == "set_routing"]
    assert routed[-3:] == [{"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}]
    assert env.state().resources[EP].attributes["traffic"] == {"green": 100}


def test_a_failing_traffic_step_restores_the_split_and_skips_the_rest(tmp_path: Path) -> None:
    env, want = _moved(tmp_path, {"FAKE_ERROR_RATE": "0.3"})
    result = apply(env, want)
    assert not result.ok
    [failed] = result.errors
    assert failed.step_id == "set_traffic:endpoint.ep:step1" and "traffic restored to blue 100%" in (failed.undone or "")
    skipped = {o.step_id for o in result.outcomes if o.outcome == "skipped"}
    assert {"set_traffic:endpoint.ep:step2", "set_traffic:endpoint.ep"} <= skipped
    routed = [c["traffic"] for c in env.world.calls() if c["op"] == "set_routing"]
    assert routed[-2:] == [{"blue": 90, "green": 10}, {"blue": 100}]
    endpoint = env.state().resources[EP]
    assert endpoint.attributes["traffic"] == {"blue": 100} and endpoint.pending is None
    assert env.world.objects()[EP]["traffic"] == {"blue": 100}
    assert remaining(env, want) == {EP: Action.UPDATE}
    assert env.world.violations() == []


def test_a_mirrored_deployment_failing_on_its_mirror_is_never_routed(tmp_path: Path) -> None:
    env = Env(tmp_path, {"window_requests": 400})
    start = guarded(blue_green(tmp_path, blue=1, green=1, traffic={"blue": 100}, mirror={"green": 20}))
    assert apply(env, start).ok
    with env.world.transaction() as world:
        for inst in world["objects"]["deployment.ep.green"]["instances"]:
            inst["behaviour"] = {"error_rate": 0.5, "latency_s": 0.02}
    want = guarded(blue_green(tmp_path, blue=1, green=1, traffic={"blue": 50, "green": 50}))
    hooks = Seen()
    result = apply(env, want, hooks)
    [failed] = result.errors
    assert hooks.judged == [("set_traffic:endpoint.ep:step1", "its mirrored answers", "fail")]
    assert "not routed" in (failed.undone or "")
    endpoint = env.state().resources[EP]
    assert endpoint.attributes["traffic"] == {"blue": 100} and endpoint.attributes["mirror_traffic"] == {"green": 20}
    assert endpoint.pending is None and env.world.objects()[EP]["traffic"] == {"blue": 100}


def test_traffic_steps_filter_is_a_plan_property(tmp_path: Path) -> None:
    env, want = _moved(tmp_path, {})
    plan = plan_for(env.manager(), want)
    parts = [s.params_as(TrafficParams).part for s in plan.steps if s.kind is StepKind.SET_TRAFFIC]
    assert parts == [1, 2, 3]


def test_a_guarded_rollout_is_recorded_done_only_after_its_last_gate(tmp_path: Path) -> None:
    """A SIGKILL during the last bake must leave work for the next plan (to roll and judge again)."""
    env = started(tmp_path, count=2)
    seen: list[object] = []

    class Look(ApplyHooks):
        def gate_progress(self, step: Step, label: str, verdict: Verdict, elapsed: float, bake: float) -> None:
            if label == "batch 2/2" and not seen:
                seen.append(env.state().resources[BLUE].pending)

    want = guarded(blue_green(tmp_path, blue=2, green=None, env_vars={"V": "2"}))
    assert apply(env, want, Look()).ok
    [pending] = seen
    assert pending is not None and pending.batches_done == 2  # type: ignore[attr-defined]
    assert env.state().resources[BLUE].pending is None and remaining(env, want) == {}


class SlowsAfter(Seen):
    """Seen, and green's instances slow down (5x blue's latency) once ``label`` has been judged."""

    def __init__(self, env: Env, label: str) -> None:
        super().__init__()
        self.env, self.label = env, label

    def gate_judged(self, step: Step, label: str, verdict: Verdict) -> None:
        super().gate_judged(step, label, verdict)
        if label == self.label:
            with self.env.world.transaction() as world:
                for inst in world["objects"]["deployment.ep.green"]["instances"]:
                    inst["behaviour"] = {"error_rate": 0.0, "latency_s": 0.1}


def test_the_last_traffic_step_compares_latency_with_an_earlier_steps_baseline(tmp_path: Path) -> None:
    # At green 100% blue answers nothing in the window: the relative p99 gate compares with blue's
    # p99 of the last window of this apply that had enough of its requests (traffic step 2/3).
    env, want = _moved(tmp_path, {})
    hooks = SlowsAfter(env, "traffic step 2/3")
    result = apply(env, want, hooks)
    assert [(label, verdict) for _, label, verdict in hooks.judged] == [
        ("traffic step 1/3", "pass"), ("traffic step 2/3", "pass"), ("traffic step 3/3", "fail")]
    [failed] = result.errors
    assert failed.step_id == "set_traffic:endpoint.ep" and "traffic restored to blue 100%" in (failed.undone or "")
    assert env.world.objects()[EP]["traffic"] == {"blue": 100}
