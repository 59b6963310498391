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


def test_state_is_written_after_every_step(env: Env) -> None:
    hooks = Recording()
    want = blue_green(env.root)
    manager = env.manager()
    plan = plan_for(manager, want)
    result = apply_plan(
        plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, hooks=hooks
    )
    assert result.ok
    serials = [c[1] for c in hooks.named("state_persisted")]
    assert serials == list(range(1, len(plan.steps) + 1))
    assert result.serial == env.state().serial == len(plan.steps)
    # each step's write comes right after its provider call, before the next dependent step starts
    names = [c[0] for c in hooks.calls if c[0] in ("post_step", "state_persisted")]
    assert names.count("state_persisted") == names.count("post_step")


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
    assert len(hooks.named("state_persisted")) == 5
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
    manager = _FailingWrites(env, ok_writes=2)
    plan = plan_for(env.manager(), want)
    result = apply_plan(
        plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, parallelism=1
    )
    assert result.state_error == "disk full" and not result.ok
    assert result.unsaved_state is not None
    assert len(result.unsaved_state.resources) == 3  # what was done after the failure is kept
    assert env.state().serial == 2
    assert any(o.outcome == "cancelled" for o in result.outcomes)
