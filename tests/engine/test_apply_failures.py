"""Failures: dependents skipped, independents finished, the next plan holds exactly what is left;
retries bounded; a failing rollout batch rolled back with the instance's log lines; stale plans and
plans with errors refused before anything is touched; unsafe steps refused by the engine itself."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.apply.engine import apply_plan
from reconciler.apply.outcomes import RetryPolicy
from reconciler.model.errors import PlanError, StalePlanError
from reconciler.plan.types import Action, ResourceChange

from .helpers import MODEL, Env, Recording, blue_green, hand_plan, plan_for, step


def _apply(env: Env, want: Any, **kw: Any) -> Any:
    manager = env.manager()
    plan = plan_for(manager, want)
    return apply_plan(plan, provider=env.provider, state_manager=manager, desired_digest=want.digest, **kw)


def _remaining(env: Env, want: Any) -> tuple[dict[str, Action], set[str]]:
    plan = plan_for(env.manager(), want)
    changes = {rc.address: rc.action for rc in plan.resource_changes if rc.action is not Action.NOOP}
    return changes, {s.id for s in plan.steps}


def test_failed_step_skips_dependents_finishes_independents_and_leaves_exact_remaining_work(env: Env) -> None:
    want = blue_green(env.root, traffic={"blue": 100}, mirror={"green": 10})
    hooks = Recording()
    failing = env.with_settings(fail_on=["create:deployment.ep.green"])
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=failing.provider,
        state_manager=manager,
        desired_digest=want.digest,
        hooks=hooks,
    )
    assert not result.ok
    outcome = {o.step_id: o for o in result.outcomes}
    assert outcome["create:deployment.ep.green"].outcome == "failed"
    assert "injected failure" in (outcome["create:deployment.ep.green"].error or "")
    assert outcome["create:deployment.ep.green"].detail == ["fake: create:deployment.ep.green fails"]
    assert outcome["set_traffic:endpoint.ep"].outcome == "skipped"
    assert outcome["set_traffic:endpoint.ep"].reason == "upstream dependencies failed"
    assert outcome["create:deployment.ep.blue"].outcome == "created"
    assert ("step_skipped", "set_traffic:endpoint.ep", "upstream dependencies failed") in hooks.calls
    assert result.counts() == {"add": 4, "change": 0, "destroy": 0}
    state = env.state()
    assert "deployment.ep.green" not in state.resources  # a failed create leaves nothing behind
    assert state.resources["endpoint.ep"].attributes["traffic"] == {}  # not routed yet
    assert env.world.violations() == []

    changes, steps = _remaining(env, want)
    assert changes == {"deployment.ep.green": Action.CREATE, "endpoint.ep": Action.UPDATE}
    assert steps == {"create:deployment.ep.green", "set_traffic:endpoint.ep"}
    assert _apply(env, want).ok
    assert _remaining(env, want) == ({}, set())


def test_failed_rollout_batch_is_rolled_back_shows_logs_and_is_resumed(env: Env) -> None:
    assert _apply(env, blue_green(env.root, green=None, blue=10)).ok
    old = {i["id"] for i in env.world.objects()["deployment.ep.blue"]["instances"]}
    v2 = blue_green(env.root, green=None, blue=10, env_vars={"RELEASE": "v2"})
    failing = env.with_settings(fail_batch={"deployment.ep.blue": 3})
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, v2), provider=failing.provider, state_manager=manager, desired_digest=v2.digest
    )
    (failed,) = result.errors
    assert failed.step_id == "rollout:deployment.ep.blue" and failed.batches_done == 2
    assert any("init() raised" in line for line in failed.detail)
    blue = env.state().resources["deployment.ep.blue"]
    assert blue.status == "failed" and blue.pending is None  # failed, not interrupted: no intent is left
    assert blue.attributes["environment_variables"] == {}  # the old configuration is still recorded
    instances = env.world.objects()["deployment.ep.blue"]["instances"]
    assert len(instances) == 10 and len(old & {i["id"] for i in instances}) == 6  # 2 batches of 2 replaced

    changes, steps = _remaining(env, v2)
    assert changes == {"deployment.ep.blue": Action.UPDATE}
    assert steps == {"rollout:deployment.ep.blue"}
    assert _apply(env, v2).ok
    instances = env.world.objects()["deployment.ep.blue"]["instances"]
    assert len(instances) == 10 and not old & {i["id"] for i in instances}
    assert env.state().resources["deployment.ep.blue"].status == "ready"
    assert _remaining(env, v2) == ({}, set())


def test_retryable_errors_are_retried_with_backoff(env: Env) -> None:
    sleeps: list[float] = []
    flaky = env.with_settings(fail_times={f"create:{MODEL}": 2})
    want = blue_green(env.root)
    manager = env.manager()
    hooks = Recording()
    result = apply_plan(
        plan_for(manager, want),
        provider=flaky.provider,
        state_manager=manager,
        desired_digest=want.digest,
        sleep=sleeps.append,
        hooks=hooks,
    )
    assert result.ok
    assert result.outcome(f"create:{MODEL}").attempts == 3  # type: ignore[union-attr]
    assert sleeps == [0.5, 1.0]
    assert [c[2] for c in hooks.named("step_retrying")] == [1, 2]


def test_retries_are_bounded_and_capped(env: Env) -> None:
    sleeps: list[float] = []
    flaky = env.with_settings(fail_times={f"create:{MODEL}": 100})
    want = blue_green(env.root)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=flaky.provider,
        state_manager=manager,
        desired_digest=want.digest,
        sleep=sleeps.append,
        retry=RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=5.0),
    )
    failed = result.outcome(f"create:{MODEL}")
    assert failed is not None and failed.outcome == "failed" and failed.attempts == 6
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert result.outcome("create:deployment.ep.blue").outcome == "skipped"  # type: ignore[union-attr]


def test_permanent_errors_are_never_retried(env: Env) -> None:
    sleeps: list[float] = []
    broken = env.with_settings(fail_on=[f"create:{MODEL}"])
    want = blue_green(env.root)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=broken.provider,
        state_manager=manager,
        desired_digest=want.digest,
        sleep=sleeps.append,
    )
    assert result.outcome(f"create:{MODEL}").attempts == 1  # type: ignore[union-attr]
    assert sleeps == []
    assert len([c for c in env.world.calls() if c["op"] == "create" and c["address"] == MODEL]) == 1


def test_stale_plan_is_refused_when_the_serial_moved(env: Env) -> None:
    want = blue_green(env.root)
    assert _apply(env, want).ok
    manager = env.manager()
    plan = plan_for(manager, blue_green(env.root, blue=3))
    other = env.manager()
    made_at = plan.serial
    other.write(other.read())  # someone else wrote the state meanwhile
    calls = len(env.world.calls())
    with pytest.raises(
        StalePlanError,
        match=rf"the state has serial {made_at + 1} \(the plan was made at serial {made_at}\); run recon plan again",
    ):
        apply_plan(
            plan, provider=env.provider, state_manager=env.manager(), desired_digest=plan.desired_digest
        )
    assert len(env.world.calls()) == calls


def test_stale_plan_is_refused_when_the_configuration_moved(env: Env) -> None:
    manager = env.manager()
    plan = plan_for(manager, blue_green(env.root))
    moved = blue_green(env.root, blue=5).digest
    with pytest.raises(StalePlanError, match="configuration changed"):
        apply_plan(plan, provider=env.provider, state_manager=manager, desired_digest=moved)
    assert env.world.calls() == []


def test_stale_plan_is_refused_for_another_lineage(
    env: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    want = blue_green(env.root)
    assert _apply(env, want).ok
    plan = plan_for(env.manager(), want)
    elsewhere = Env(tmp_path_factory.mktemp("other"))
    assert _apply(elsewhere, want).ok  # same serial, another state
    with pytest.raises(StalePlanError, match="lineage"):
        apply_plan(
            plan, provider=elsewhere.provider, state_manager=elsewhere.manager(), desired_digest=want.digest
        )


def test_plan_with_errors_is_refused(env: Env) -> None:
    state = env.state()
    plan = hand_plan(state, [step("create", MODEL)], []).model_copy(update={"errors": ["quota exceeded"]})
    with pytest.raises(PlanError, match="quota exceeded"):
        apply_plan(plan, provider=env.provider, state_manager=env.manager(), desired_digest=None)


def test_engine_refuses_traffic_to_a_deployment_that_is_not_ready(env: Env) -> None:
    assert _apply(env, blue_green(env.root, green=None)).ok
    state = env.state()
    plan = hand_plan(state, [step("set_traffic", "endpoint.ep", traffic={"green": 100}, mirror_traffic={}, phase="final")], [])
    result = apply_plan(plan, provider=env.provider, state_manager=env.manager(), desired_digest=None)
    (failed,) = result.errors
    assert "refusing to route traffic to deployment.ep.green: it does not exist" in (failed.error or "")
    assert [c for c in env.world.calls() if c["op"] == "set_routing"][-1]["traffic"] == {"blue": 100}


def test_engine_refuses_to_delete_a_deployment_with_traffic(env: Env) -> None:
    assert _apply(env, blue_green(env.root, green=None)).ok
    state = env.state()
    rc = ResourceChange(
        address="deployment.ep.blue",
        type="deployment",
        name="blue",
        provider="fake",
        action=Action.DELETE,
        before=state.resources["deployment.ep.blue"].attributes,
    )
    plan = hand_plan(state, [step("delete", "deployment.ep.blue")], [rc])
    result = apply_plan(plan, provider=env.provider, state_manager=env.manager(), desired_digest=None)
    (failed,) = result.errors
    assert "still sends it 100% traffic" in (failed.error or "")
    assert not [c for c in env.world.calls() if c["op"] == "delete"]
    assert "deployment.ep.blue" in env.world.objects()


def test_a_provider_bug_is_a_failed_step_not_a_crash(env: Env) -> None:
    class Buggy(type(env.provider)):  # type: ignore[misc]
        def create(self, request: Any) -> dict[str, Any]:
            if request.type == "model":
                raise KeyError("oops")
            return super().create(request)

    want = blue_green(env.root)
    manager = env.manager()
    result = apply_plan(
        plan_for(manager, want),
        provider=Buggy({}, env.context),
        state_manager=manager,
        desired_digest=want.digest,
    )
    failed = result.outcome(f"create:{MODEL}")
    assert failed is not None and failed.outcome == "failed"
    assert "internal error: KeyError" in (failed.error or "")
    assert result.outcome("create:environment.e:1").outcome == "created"  # type: ignore[union-attr]
