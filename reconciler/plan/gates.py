"""Guarded rollouts in the plan: a gate on every judged step, and a traffic change split into steps.

With ``rollout.analysis`` in recon.yaml (``DesiredState.rollout``) the steps ``build_steps`` made
are guarded, after the fact and without changing their order:

- a ``ROLLOUT`` carries a ``batch`` gate, judged after each batch (the deployment's new instances
  against its old ones), when the deployment receives live or mirrored traffic while it rolls (a
  deployment no request reaches has nothing to judge: the step says so); a provider whose
  measurements cannot tell a deployment's configurations apart judges once, after the last batch;
- the final ``SET_TRAFFIC`` of an endpoint that moves live traffic onto a deployment becomes one step
  per ``traffic_steps`` entry (``set_traffic:endpoint.E:step1`` ... and the final
  ``set_traffic:endpoint.E`` last, each depending on the one before), whole percentages
  interpolated between the split before and the declared one, each with a ``traffic`` gate (the
  deployments whose share grew against those whose share shrank) and the split to restore on a
  failure (the one before the first step);
- a deployment mirrored before and given live traffic is first judged on its mirrored answers (a
  ``mirror`` gate on the first traffic step, judged before it routes anything).

Drain steps and deletes never get a gate. A provider that cannot measure makes
``rollout.analysis`` a plan error; a bake shorter than the provider's metrics grain is raised to it,
with a warning. Pure, like the rest of the planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.model.resources import Traffic, as_deployment, as_endpoint, endpoint_address, normal_traffic
from reconciler.model.rollout import Analysis, Gate, RolloutSettings, format_duration
from reconciler.plan import traffic
from reconciler.plan.actions import Actions, Change, warning
from reconciler.plan.provider import Measuring
from reconciler.plan.types import Action, RolloutParams, Split, Step, StepKind, TrafficParams


@dataclass(frozen=True)
class _Context:
    rollout: RolloutSettings
    measuring: Measuring | None
    p: Actions


def guard_steps(steps: list[Step], changes: Mapping[str, Change], p: Actions, measuring: Measuring | None) -> list[Step]:
    """``steps`` with their gates (see the module docstring); unchanged without ``rollout.analysis``.

    ``measuring``: what the provider can measure (None: not known, e.g. a plan made without the
    provider; nothing is refused then)."""
    rollout = p.desired.rollout
    if rollout is None or rollout.analysis is None:
        return steps
    if measuring is not None and not measuring.windows:
        p.errors.append(
            f"recon.yaml: rollout.analysis: the {p.desired.provider.kind} provider cannot measure what clients "
            "get, so no step can be judged; remove rollout.analysis, or use a provider that measures "
            "(local, docker, kubernetes, azure)"
        )
        return steps
    ctx = _Context(rollout, measuring, p)
    drained = {s.address: s.params_as(TrafficParams) for s in steps
               if s.kind is StepKind.SET_TRAFFIC and s.params_as(TrafficParams).phase == "drain"}
    # the step after which each deployment is ready (the last of its create/scale/rollout/update)
    ready = {s.address: s.id for s in steps if s.address.startswith("deployment.") and s.kind is not StepKind.DELETE}
    out: list[Step] = []
    for step in steps:
        if step.kind is StepKind.ROLLOUT:
            out.append(_gated_rollout(ctx, step))
        elif step.kind is StepKind.SET_TRAFFIC and step.params_as(TrafficParams).phase == "final":
            base = _routing_before(changes.get(step.address), p, drained.get(step.address))
            out.extend(_traffic_steps(ctx, step, base, ready))
        else:
            out.append(step)
    return out


# -- rolling updates -------------------------------------------------------------------------------
def _gated_rollout(ctx: _Context, step: Step) -> Step:
    params = step.params_as(RolloutParams)
    dep = as_deployment(ctx.p.after.get(step.address) or ctx.p.before.get(step.address) or {})
    name = str(dep.get("name", step.address.rsplit(".", 1)[-1])).lower()
    routing = as_endpoint(ctx.p.before.get(endpoint_address(str(dep.get("endpoint_name", "")))) or {})
    reached = name in normal_traffic(routing.get("traffic")) or name in normal_traffic(routing.get("mirror_traffic"))
    if not reached:
        text = f"{step.description}; no gate: no live or mirrored request reaches it while it rolls"
        return step.model_copy(update={"description": text})
    once = ctx.measuring is not None and not ctx.measuring.digests
    gate = Gate(kind="batch", analysis=_analysis(ctx, step.address), judged=[name], baseline=[name],
                on_failure=ctx.rollout.on_failure, once=once)
    return step.model_copy(update={"params": params.model_copy(update={"gate": gate})})


# -- traffic ---------------------------------------------------------------------------------------
def _routing_before(e: Change | None, p: Actions, drain: TrafficParams | None) -> Split:
    """What the endpoint routes when its final traffic step starts."""
    if drain is not None:
        return Split(traffic=dict(drain.traffic), mirror_traffic=dict(drain.mirror_traffic))
    if e is not None and e.action in (Action.CREATE, Action.REPLACE):
        return Split(traffic={}, mirror_traffic={})
    before = as_endpoint((e.before if e is not None else None) or {})
    return Split(traffic=normal_traffic(before.get("traffic")), mirror_traffic=normal_traffic(before.get("mirror_traffic")))


def interpolate(base: Traffic, target: Traffic, pct: int) -> Traffic:
    """The split ``pct``% of the way from ``base`` to ``target`` (both summing to 100): whole
    percentages, largest remainder (ties by name), summing to 100; zero entries dropped."""
    names = sorted(set(base) | set(target))
    exact = {n: base.get(n, 0) + (target.get(n, 0) - base.get(n, 0)) * pct / 100 for n in names}
    out = {n: int(x) for n, x in exact.items()}
    left = 100 - sum(out.values())
    for n in sorted(names, key=lambda n: (out[n] - exact[n], n))[:left]:
        out[n] += 1
    return {n: v for n, v in out.items() if v}


def _traffic_steps(ctx: _Context, step: Step, base: Split, ready: Mapping[str, str]) -> list[Step]:
    params = step.params_as(TrafficParams)
    target = normal_traffic(params.traffic)
    grown = [n for n in sorted(target) if target[n] > base.traffic.get(n, 0)]
    if not grown:  # nothing gains live traffic (a mirror change, traffic taken away): not judged
        return [step]
    splits: list[Traffic] = []
    if sum(base.traffic.values()) == 100:
        for pct in ctx.rollout.traffic_steps:
            split = interpolate(base.traffic, target, pct)
            if split != (splits[-1] if splits else base.traffic):
                splits.append(split)
    splits = splits or [target]
    ep = step.address.split(".", 1)[1]
    restore = base if sum(base.traffic.values()) in (0, 100) else None
    # the first part routes to deployments the final step may not name (the old ones): each must be
    # ready first (a deployment with an unfinished rollout is never routed to)
    named = {n for split in splits for n in split} | {n for n in params.mirror_traffic}
    first_deps = sorted({*step.depends_on, *(ready[a] for n in named if (a := f"deployment.{ep}.{n}") in ready)})
    out: list[Step] = []
    previous = base.traffic
    for k, split in enumerate(splits, 1):
        last = k == len(splits)
        mirror = dict(params.mirror_traffic) if last else {d: v for d, v in params.mirror_traffic.items() if d not in split}
        gate = _traffic_gate(ctx, step.address, previous, split)
        mirror_gate = _mirror_gate(ctx, step.address, base, target) if k == 1 else None
        part = TrafficParams(traffic=split, mirror_traffic=mirror, phase="final", part=k if len(splits) > 1 else 0,
                             parts=len(splits) if len(splits) > 1 else 0, gate=gate, mirror_gate=mirror_gate,
                             restore=restore)
        sid = step.id if last else f"{step.id}:step{k}"
        deps = first_deps if k == 1 else [out[-1].id]
        what = f"traffic step {k}/{len(splits)} of" if len(splits) > 1 else "set traffic of"
        text = f"{what} endpoint {ep}: {traffic.describe(split, mirror)}"
        out.append(step.model_copy(update={"id": sid, "depends_on": list(deps), "params": part, "description": text}))
        previous = split
    return out


def _traffic_gate(ctx: _Context, address: str, before: Traffic, after: Traffic) -> Gate | None:
    judged = sorted(n for n in after if after[n] > before.get(n, 0))
    if not judged:
        return None
    shrunk = sorted(n for n in before if after.get(n, 0) < before[n])
    baseline = shrunk or sorted(n for n in after if n not in judged)
    ep = address.split(".", 1)[1]
    analysis = _analysis(ctx, address, *(f"deployment.{ep}.{n}" for n in judged))
    return Gate(kind="traffic", analysis=analysis, judged=judged, baseline=baseline, on_failure=ctx.rollout.on_failure)


def _mirror_gate(ctx: _Context, address: str, base: Split, target: Traffic) -> Gate | None:
    """A deployment mirrored now that gains live traffic: judged on its mirrored answers first."""
    mirrored = sorted(n for n in base.mirror_traffic if target.get(n, 0) > 0 and not base.traffic.get(n))
    if not mirrored or not base.traffic:
        return None
    ep = address.split(".", 1)[1]
    analysis = _analysis(ctx, *(f"deployment.{ep}.{n}" for n in mirrored), address)
    return Gate(kind="mirror", analysis=analysis, judged=mirrored, baseline=sorted(base.traffic),
                on_failure=ctx.rollout.on_failure)


# -- shared ----------------------------------------------------------------------------------------
def _analysis(ctx: _Context, *addresses: str) -> Analysis:
    analysis = ctx.rollout.analysis_for(*addresses)
    assert analysis is not None  # guard_steps runs only with rollout.analysis
    grain = ctx.measuring.min_bake_s if ctx.measuring is not None else 0.0
    if analysis.bake_s < grain:
        words = f"rollout.analysis: bake {format_duration(analysis.bake_s)} for {addresses[0]} is raised to " \
                f"{format_duration(grain)}: the {ctx.p.desired.provider.kind} provider's metrics come in " \
                f"{format_duration(grain)} steps"
        if not any(w.get("message") == words for w in ctx.p.warnings):
            ctx.p.warnings.append(warning(words, hint=f"set bake to {format_duration(grain)} or more"))
        analysis = analysis.model_copy(update={"bake_s": grain})
    return analysis


__all__ = ["guard_steps", "interpolate"]
