"""Desired states in canonical form, the fake provider and a real state manager, for engine tests.

Plans come from the real planner (``reconciler.plan.planner.make_plan``) where it matters that the
engine carries out what the planner makes; a few tests build a plan by hand to reach a case the
planner never produces (a step that would break a domain rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.fake import FakeProvider
from reconciler.apply.hooks import ApplyHooks
from reconciler.cli.registries import open_state_manager
from reconciler.model.resources import DesiredState, ProviderSettings, Resource
from reconciler.plan.provider import ProviderContext
from reconciler.plan.types import Batch, Plan, Step
from reconciler.state.document import State
from reconciler.state.manager import StateManager
from tests.canonical import deployment_attrs, endpoint_attrs, environment_attrs, model_attrs

MODEL = "model.m:1"
ENV = "environment.e:1"


def model(name: str = "m", version: str = "1") -> Resource:
    return Resource(address=f"model.{name}:{version}", type="model", name=name, attributes=model_attrs(name, version))


def environment(name: str = "e", version: str = "1") -> Resource:
    attrs = environment_attrs(name, version)
    return Resource(address=f"environment.{name}:{version}", type="environment", name=name, attributes=attrs)


def endpoint(
    name: str = "ep", traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None
) -> Resource:
    attrs = endpoint_attrs(name, traffic=traffic or {}, mirror_traffic=mirror or {})
    return Resource(address=f"endpoint.{name}", type="endpoint", name=name, attributes=attrs)


def deployment(
    name: str, ep: str = "ep", count: int = 1, env_vars: dict[str, str] | None = None, model_ref: str = MODEL
) -> Resource:
    attrs = deployment_attrs(
        name,
        ep,
        model=model_ref,
        environment=ENV,
        instance_count=count,
        liveness_probe=None,
        readiness_probe=None,
        environment_variables=env_vars or {},
    )
    address = f"deployment.{ep}.{name}"
    return Resource(
        address=address,
        type="deployment",
        name=name,
        attributes=attrs,
        depends_on=(f"endpoint.{ep}", model_ref, ENV),
    )


def desired(root: Path, *resources: Resource, settings: dict[str, Any] | None = None) -> DesiredState:
    return DesiredState(
        root=str(root),
        workspace="test",
        provider=ProviderSettings(kind="fake", settings=settings or {}),
        resources={r.address: r for r in resources},
    )


def blue_green(
    root: Path,
    *,
    blue: int = 2,
    green: int | None = 1,
    traffic: dict[str, int] | None = None,
    mirror: dict[str, int] | None = None,
    env_vars: dict[str, str] | None = None,
) -> DesiredState:
    """model + environment + endpoint ep + blue (+ green) with the given traffic."""
    res = [
        model(),
        environment(),
        endpoint(traffic=traffic if traffic is not None else {"blue": 100}, mirror=mirror),
    ]
    res.append(deployment("blue", count=blue, env_vars=env_vars))
    if green is not None:
        res.append(deployment("green", count=green))
    return desired(root, *res)


def plan_for(state_manager: StateManager, want: DesiredState, destroy: bool = False) -> Plan:
    from reconciler.plan.planner import make_plan

    plan = make_plan(want, state_manager.read(), destroy=destroy)
    assert plan.applicable, plan.errors
    return plan


def hand_plan(state: State, steps: list[Step], changes: list[Any], digest: str = "sha256:x") -> Plan:
    return Plan(
        provider="fake",
        lineage=state.lineage if state.serial else None,
        serial=state.serial,
        desired_digest=digest,
        resource_changes=changes,
        steps=steps,
    )


def step(kind: str, address: str, *deps: str, **params: Any) -> Step:
    """A step made by hand; ``params`` are its kind's (``reconciler.plan.types.PARAMS``), as a saved plan holds them."""
    from reconciler.plan.types import StepKind

    return Step(id=f"{kind}:{address}", kind=StepKind(kind), address=address, depends_on=list(deps), params=params)


class Env:
    """A project directory with a file state and the fake provider over it."""

    def __init__(self, root: Path, settings: dict[str, Any] | None = None) -> None:
        self.root = root
        self.settings = settings or {}
        self.context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=root / "cache")
        self.provider = FakeProvider(self.settings, self.context)
        self.world = self.provider.world

    def manager(self) -> StateManager:
        return open_state_manager(self.root, None)

    def state(self) -> State:
        return self.manager().read()

    def with_settings(self, **settings: Any) -> Env:
        return Env(self.root, {**self.settings, **settings})


class Recording(ApplyHooks):
    """Records every hook call as (name, step id or value, ...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def pre_step(self, step: Step) -> None:
        self.calls.append(("pre_step", step.id))

    def post_step(self, step: Step, result: Any, elapsed: float) -> None:
        self.calls.append(("post_step", step.id, result.outcome))

    def step_failed(self, step: Step, error: Exception) -> None:
        self.calls.append(("step_failed", step.id, str(error)))

    def step_skipped(self, step: Step, reason: str) -> None:
        self.calls.append(("step_skipped", step.id, reason))

    def step_retrying(self, step: Step, attempt: int, delay: float, error: Exception) -> None:
        self.calls.append(("step_retrying", step.id, attempt, delay))

    def batch_started(self, step: Step, batch: Batch, total: int) -> None:
        self.calls.append(("batch_started", step.id, batch.index, total))

    def batch_finished(self, step: Step, batch: Batch, total: int, elapsed: float = 0.0) -> None:
        self.calls.append(("batch_finished", step.id, batch.index, total))

    def state_persisted(self, serial: int) -> None:
        self.calls.append(("state_persisted", serial))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]
