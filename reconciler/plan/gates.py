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
from reconciler.plan.actions import Actions, Change, serves, warning
from reconciler.plan.provider import Measuring
from reconciler.plan.types import Action, RolloutParams, Split, Step, StepKind, TrafficParams
from reconciler.state.document import Judging


@dataclass(frozen=True)
class _Context:
    rollout: RolloutSettings
    measuring: Measuring | None
    p: Actions


def guard_steps(steps: list[Step], changes: Mapping[str, Change], p: Actions, measuring: Measuring | None) -> list[Step]:
    """``steps`` with their gates (see the module docstring); unchanged without ``rollout.analysis``
    (but for a judgment an interrupted apply left: ``judge_again``).

    ``measuring``: what the provider can measure (None: not known, e.g. a plan made without the
    provider; nothing is refused then)."""
    return judge_again(_guarded(steps, changes, p, measuring), changes, p)


def _guarded(steps: list[Step], changes: Mapping[str, Change], p: Actions, measuring: Measuring | None) -> list[Step]:
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
            out.extend(_traffic_steps(ctx, step, base, ready, _resumed(p, changes.get(step.address))))
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


def _splits(ctx: _Context, base: Traffic, target: Traffic) -> list[Traffic]:
    """The splits of the steps from ``base`` to ``target`` (``traffic_steps``; one step from a split
    that is not whole)."""
    splits: list[Traffic] = []
    if sum(base.values()) == 100:
        for pct in ctx.rollout.traffic_steps:
            split = interpolate(base, target, pct)
            if split != (splits[-1] if splits else base):
                splits.append(split)
    return splits or [target]


def _resumed(p: Actions, e: Change | None) -> Judging | None:
    """The judgment an interrupted apply left on the endpoint (``judge_again``), if any."""
    return pending_judgment(p, e)


def _traffic_steps(ctx: _Context, step: Step, base: Split, ready: Mapping[str, str],
                   resume: Judging | None = None) -> list[Step]:
    """The traffic steps from ``base``; after an interrupted one (``resume``, judged again first:
    ``judge_again``) the steps of the same change that follow it, numbered as before, restoring the
    split before the change."""
    params = step.params_as(TrafficParams)
    target = normal_traffic(params.traffic)
    grown = [n for n in sorted(target) if target[n] > base.traffic.get(n, 0)]
    if not grown:  # nothing gains live traffic (a mirror change, traffic taken away): not judged
        return [step]
    splits = _splits(ctx, base.traffic, target)
    done = 0
    if resume is not None and resume.restore is not None:
        whole = _splits(ctx, resume.restore, target)
        judged = normal_traffic(resume.traffic)
        if judged in whole[:-1]:  # the same change: go on after the judged step
            splits, done = whole, whole.index(judged) + 1
            base = Split(traffic=dict(resume.restore), mirror_traffic=dict(resume.restore_mirror or {}))
    ep = step.address.split(".", 1)[1]
    restore = base if sum(base.traffic.values()) in (0, 100) else None
    # the first part routes to deployments the final step may not name (the old ones): each must be
    # ready first (a deployment with an unfinished rollout is never routed to)
    named = {n for split in splits[done:] for n in split} | {n for n in params.mirror_traffic}
    first_deps = sorted({*step.depends_on, *(ready[a] for n in named if (a := f"deployment.{ep}.{n}") in ready)})
    out: list[Step] = []
    previous = splits[done - 1] if done else base.traffic
    for k, split in enumerate(splits, 1):
        if k <= done:
            continue
        last = k == len(splits)
        mirror = dict(params.mirror_traffic) if last else {d: v for d, v in params.mirror_traffic.items() if d not in split}
        gate = _traffic_gate(ctx, step.address, previous, split)
        mirror_gate = _mirror_gate(ctx, step.address, base, target) if k == 1 else None
        part = TrafficParams(traffic=split, mirror_traffic=mirror, phase="final", part=k if len(splits) > 1 else 0,
                             parts=len(splits) if len(splits) > 1 else 0, gate=gate, mirror_gate=mirror_gate,
                             restore=restore)
        sid = step.id if last else f"{step.id}:step{k}"
        deps = [out[-1].id] if out else first_deps
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


# -- a judgment an interrupted apply left -----------------------------------------------------------
def judge_again(steps: list[Step], changes: Mapping[str, Change], p: Actions) -> list[Step]:
    """An endpoint recorded with ``judging`` (an apply was killed while baking one of its traffic
    steps) and kept: that step comes first, judged again with the recorded gate (routing the split
    it routed: nothing moves) and its ``on_failure`` carried out on the recorded split to restore.
    Every other step waits for it (a failure skips them all); the endpoint's later traffic steps
    restore the same split (the one before the interrupted change). With the declared split the
    judged one, the judgment is the endpoint's traffic step."""
    for address in sorted(p.prior.resources):
        judging = pending_judgment(p, changes.get(address))
        if judging is None:  # nearly every resource: the steps are not scanned for it (16,100 x steps)
            continue
        finals = [s for s in steps if s.address == address and s.kind is StepKind.SET_TRAFFIC
                  and s.params_as(TrafficParams).phase == "final"]
        if finals:
            steps = _judged_first(steps, address, judging, finals)
    return steps


def pending_judgment(p: Actions, e: Change | None) -> Judging | None:
    """The judgment an interrupted apply left on endpoint ``e`` (kept, updated), while the split it
    judges still serves (refreshed): one the killed apply carried out without recording it (the split
    it restores serves) judges nothing, and the endpoint's repair records the split that serves."""
    if e is None or e.action is not Action.UPDATE:
        return None
    sr = p.prior.resources.get(e.address)
    j = sr.judging if sr is not None else None
    if j is None:
        return None
    return j if serves(p.before.get(e.address), j.traffic, j.mirror_traffic) else None


def _judged_first(steps: list[Step], address: str, j: Judging, finals: list[Step]) -> list[Step]:
    restore = Split(traffic=j.restore, mirror_traffic=j.restore_mirror or {}) if j.restore is not None else None
    params = TrafficParams(traffic=dict(j.traffic), mirror_traffic=dict(j.mirror_traffic), phase="final",
                           part=j.part, parts=j.parts, gate=j.gate, restore=restore, baseline_p99_s=j.baseline_p99_s)
    ep = address.split(".", 1)[1]
    text = f"judge {j.label} of endpoint {ep} again: an apply was interrupted while baking it"
    own = {s.id for s in steps if s.address == address and s.kind is StepKind.UPDATE}
    [last] = [s for s in finals if s.id == f"set_traffic:{address}"] or finals[-1:]
    last_params = last.params_as(TrafficParams)
    same = (normal_traffic(last_params.traffic), normal_traffic(last_params.mirror_traffic)) == (
        normal_traffic(j.traffic), normal_traffic(j.mirror_traffic))
    replaced = len(finals) == 1 and last_params.gate is None and same
    judge = Step(id=last.id if replaced else f"set_traffic:{address}:judge", kind=StepKind.SET_TRAFFIC,
                 address=address, description=text, depends_on=sorted(own), params=params)
    out = [judge]
    final_ids = {s.id for s in finals}
    for s in steps:
        if replaced and s.id == judge.id:
            continue
        if s.id not in own:
            s = s.model_copy(update={"depends_on": sorted({*s.depends_on, judge.id})})
        if s.id in final_ids and restore is not None and s.params_as(TrafficParams).gate is not None:
            s = s.model_copy(update={"params": s.params_as(TrafficParams).model_copy(update={"restore": restore})})
        out.append(s)
    return out


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


__all__ = ["guard_steps", "interpolate", "judge_again"]
