"""The state is written after every step and every rollout batch; parallelism is respected;
Ctrl-C finishes what is in flight and a second one stops at once; a state backend failure keeps
what was done in memory for the CLI to save."""

from __future__ import annotations

import threading
import time
from typing import Any

from reconciler.apply.engine import apply_plan
from reconciler.apply.outcomes import CancelToken
from reconciler.model.errors import StateError
from reconciler.plan.types import Batch, Step
from reconciler.state.document import State

from .helpers import Env, Recording, blue_green, desired, model, plan_for


class _Intents(Recording):
    """Reads the stored state from disk when each step starts and ends."""

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        self.at_start: dict[str, Any] = {}
        self.at_end: dict[str, Any] = {}

    def pre_step(self, step: Step) -> None:
        res = self.env.state().resources.get(step.address)
        self.at_start[step.id] = res.pending if res is not None else None
        super().pre_step(step)

    def post_step(self, step: Step, result: Any, elapsed: float) -> None:
        res = self.env.state().resources.get(step.address)
        self.at_end[step.id] = res.pending if res is not None else None
        super().post_step(step, result, elapsed)


def test_state_records_each_steps_intent_before_it_acts_and_its_result_after(env: Env) -> None:
    want = blue_green(env.root)
    manager = env.manager()
    plan = plan_for(manager, want)
    hooks = _Intents(env)
    result = apply_plan(
        plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, hooks=hooks
    )
    assert result.ok
    serials = [c[1] for c in hooks.named("state_persisted")]
    assert serials == list(range(1, len(serials) + 1)) and result.serial == env.state().serial == serials[-1]
    for step in plan.steps:  # stored before the provider is called: a crash here is visible
        intent = hooks.at_start[step.id]
        assert intent is not None and intent.step == step.id and intent.kind == step.kind.value, step.id
        assert hooks.at_end[step.id] is None, f"{step.id}: the result clears the intent"
    creates = [s for s in plan.steps if s.kind.value == "create"]
    blue = next(s for s in creates if s.address == "deployment.ep.blue")
    assert hooks.at_start[blue.id].attributes["instance_count"] == 2  # the configuration it moves to
    # each step's result is written before a dependent step starts
    names = [c[0] for c in hooks.calls if c[0] in ("post_step", "state_persisted")]
    assert names.count("state_persisted") >= names.count("post_step")
    assert all(r.pending is None for r in env.state().resources.values())


def test_steps_that_start_together_record_their_intents_in_one_write(env: Env) -> None:
    want = _many_models(env, 6)
    manager = env.manager()
    plan = plan_for(manager, want)
    hooks = Recording()
    assert apply_plan(plan, provider=env.provider, state_manager=manager, desired_digest=want.digest,
                      hooks=hooks, parallelism=6).ok
    # one write for the six intents, one per result
    assert len(hooks.named("state_persisted")) == 1 + len(plan.steps)


class _Watching(Recording):
    """Reads the stored state from disk at the end of every batch."""

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        self.seen: list[tuple[int, dict[str, str], int]] = []

    def batch_finished(self, step: Step, batch: Batch, total: int, elapsed: float = 0.0) -> None:
        blue = self.env.state().resources["deployment.ep.blue"]
        self.seen.append(
            (batch.index, blue.attributes["environment_variables"], len(blue.outputs["instances"]))
        )
        super().batch_finished(step, batch, total, elapsed)


def test_state_is_written_after_every_rollout_batch(env: Env) -> None:
    manager = env.manager()
    want = blue_green(env.root, green=None, blue=10)
    assert apply_plan(
        plan_for(manager, want), provider=env.provider, state_manager=manager, desired_digest=want.digest
    ).ok
    recorded_instances = [set(env.state().resources["deployment.ep.blue"].outputs["instances"])]
    v2 = blue_green(env.root, green=None, blue=10, env_vars={"RELEASE": "v2"})
    hooks = _Watching(env)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, v2),
        provider=env.provider,
        state_manager=manager,
        desired_digest=v2.digest,
        hooks=hooks,
    )
    assert result.ok
    assert len(hooks.named("state_persisted")) == 1 + 5  # the intent, then each batch
    # mid-rollout the old attributes stay recorded, the outputs already name the new instances
    assert [s[1] for s in hooks.seen] == [{}, {}, {}, {}, {"RELEASE": "v2"}]
    assert all(s[2] == 10 for s in hooks.seen)
    final = set(env.state().resources["deployment.ep.blue"].outputs["instances"])
    assert not final & recorded_instances[0]


def _many_models(env: Env, n: int) -> Any:
    return desired(env.root, *[model(f"m{i}") for i in range(n)])


def test_parallelism_is_respected(env: Env) -> None:
    slow = env.with_settings(delay_ms=150)
    want = _many_models(env, 8)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=slow.provider,
        state_manager=manager,
        desired_digest=want.digest,
        parallelism=3,
    )
    assert result.ok
    assert slow.provider.max_active == 3
    calls = env.world.calls()
    overlapping = sum(
        1 for a in calls for b in calls if a is not b and a["start"] < b["end"] and b["start"] < a["end"]
    )
    assert overlapping > 0


def test_parallelism_one_runs_one_step_at_a_time(env: Env) -> None:
    slow = env.with_settings(delay_ms=50)
    want = _many_models(env, 4)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=slow.provider,
        state_manager=manager,
        desired_digest=want.digest,
        parallelism=1,
    )
    assert result.ok and slow.provider.max_active == 1


class _CancelAfterBatch(Recording):
    def __init__(self, token: CancelToken, after: int) -> None:
        super().__init__()
        self.token, self.after = token, after

    def batch_finished(self, step: Step, batch: Batch, total: int, elapsed: float = 0.0) -> None:
        super().batch_finished(step, batch, total, elapsed)
        if batch.index == self.after:
            self.token.cancel()


def test_cancel_finishes_the_batch_in_flight_records_it_and_starts_nothing_new(env: Env) -> None:
    manager = env.manager()
    base = blue_green(env.root, green=None, blue=10)
    assert apply_plan(
        plan_for(manager, base), provider=env.provider, state_manager=manager, desired_digest=base.digest
    ).ok
    v2 = blue_green(env.root, green=None, blue=10, env_vars={"RELEASE": "v2"})
    v2 = desired(env.root, *v2.resources.values(), model("late"))
    token = CancelToken()
    manager = env.manager()
    plan = plan_for(manager, v2)
    # the model create comes after the rollout when steps run one at a time
    plan = plan.model_copy(update={"steps": sorted(plan.steps, key=lambda s: s.kind != "rollout")})
    result = apply_plan(
        plan,
        provider=env.provider,
        state_manager=manager,
        desired_digest=v2.digest,
        hooks=_CancelAfterBatch(token, 2),
        cancel=token,
        parallelism=1,
    )
    assert result.cancelled and not result.ok
    rollout = result.outcome("rollout:deployment.ep.blue")
    assert rollout is not None and rollout.outcome == "cancelled" and rollout.batches_done == 2
    assert result.outcome("create:model.late:1").outcome == "cancelled"  # type: ignore[union-attr]
    assert [c["batch"] for c in env.world.calls() if c["op"] == "roll_batch"] == [1, 2]
    assert "model.late:1" not in env.world.objects()
    blue = env.state().resources["deployment.ep.blue"]
    assert blue.attributes["environment_variables"] == {}  # the rollout is not done: recorded as before
    # the next apply resumes and converges
    manager = env.manager()
    assert apply_plan(
        plan_for(manager, v2), provider=env.provider, state_manager=manager, desired_digest=v2.digest
    ).ok
    assert plan_for(env.manager(), v2).has_changes is False
    instances = env.world.objects()["deployment.ep.blue"]["instances"]
    assert len(instances) == 10 and len({i["config"] for i in instances}) == 1


def test_second_cancel_stops_at_once(env: Env) -> None:
    slow = env.with_settings(delay_ms=6000)
    want = desired(env.root, model())
    token = CancelToken()
    manager = env.manager()
    plan = plan_for(manager, want)
    threading.Timer(0.2, lambda: (token.cancel(), token.cancel())).start()
    started = time.monotonic()
    result = apply_plan(
        plan, provider=slow.provider, state_manager=manager, desired_digest=want.digest, cancel=token
    )
    assert time.monotonic() - started < 3.0  # the step in flight would take 6 s
    assert result.aborted and result.outcomes[0].outcome == "cancelled"
    assert result.outcomes[0].reason == "interrupted"
    # the create in flight is recorded as tainted: the next plan replaces it
    assert env.state().resources["model.m:1"].status == "tainted"
    time.sleep(1.6)  # let the abandoned call finish before the temporary directory goes


class _FailingWrites:
    def __init__(self, env: Env, ok_writes: int) -> None:
        self.inner = env.manager()
        self.left = ok_writes

    def read(self) -> State:
        return self.inner.read()

    def write(self, state: State) -> State:
        if self.left <= 0:
            raise StateError("disk full")
        self.left -= 1
        return self.inner.write(state)


def test_state_write_failure_stops_new_steps_and_keeps_the_unsaved_state(env: Env) -> None:
    want = blue_green(env.root, green=None)
    manager = _FailingWrites(env, ok_writes=3)  # intent and result of step 1, intent of step 2
    plan = plan_for(env.manager(), want)
    result = apply_plan(
        plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, parallelism=1
    )
    assert result.state_error == "disk full" and not result.ok
    assert result.unsaved_state is not None
    # what was done after the failure is kept (step 2's result), without an intent left over
    assert len(result.unsaved_state.resources) == 2
    assert all(r.pending is None for r in result.unsaved_state.resources.values())
    assert env.state().serial == 3
    assert any(o.outcome == "cancelled" for o in result.outcomes)


def test_a_step_whose_intent_cannot_be_written_never_acts(env: Env) -> None:
    want = blue_green(env.root, green=None)
    manager = _FailingWrites(env, ok_writes=2)  # intent and result of step 1 only
    plan = plan_for(env.manager(), want)
    result = apply_plan(
        plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, parallelism=1
    )
    assert result.state_error == "disk full" and not result.ok
    second = result.outcomes[1]
    assert second.outcome == "cancelled" and second.reason == "the state could not be written"
    assert [c for c in env.world.calls() if c["address"] == second.address] == []  # never called
    assert result.unsaved_state is not None and second.address not in result.unsaved_state.resources
