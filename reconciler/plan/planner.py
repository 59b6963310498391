"""``make_plan``: desired state + (refreshed) recorded state in, ``Plan`` out. Pure: no I/O, no printing.

One planning pass, in the order the parts run:

1. ``reconciler.plan.actions``: the scope (everything, or ``--target`` and what it needs) and, per
   resource, the action (create, update in place, replace, delete, no-op), its reason, and whether
   it is a repair of what an interrupted or failed apply left. Every resource in scope gets a
   ``ResourceChange``, no-ops included (with their full ``after``), so apply never reads the config.
2. ``reconciler.plan.steps``: the ordered steps apply carries out (creates, scales, rolling-update
   batches, traffic, deletes) with the steps each waits for, following the traffic rules of
   ``reconciler.plan.traffic`` (never zeroed when undeclared; drained before deletes).
3. ``reconciler.plan.gates``: with ``rollout.analysis`` in recon.yaml, a gate on every judged step
   (rolling-update batches, traffic steps; a traffic change split into ``traffic_steps``).
4. ``reconciler.plan.quota``: quota and capacity before, after and at the peak of the apply.

The drift a refresh found (``reconciler.apply.refresh`` makes it; the planner only reads the
``DriftItem`` values it is given) steers repairs: every drift item but ``unmanaged`` (never touched)
has a step in the plan, so plan and drift never disagree, and an apply after a crash records the
truth (a resource that drifted to exactly what the configuration declares is applied again,
idempotently, so that the state records it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model.resources import DesiredState, as_deployment, as_endpoint, endpoint_address
from reconciler.plan import traffic
from reconciler.plan.actions import Actions, Change, propagate_endpoint_replace, to_resource_change, warning
from reconciler.plan.gates import guard_steps
from reconciler.plan.provider import Capacity, Measuring
from reconciler.plan.quota import check_quota
from reconciler.plan.steps import build_steps
from reconciler.plan.types import Action, DriftItem, Plan
from reconciler.state.document import State


def make_plan(
    desired: DesiredState,
    prior: State,
    *,
    drift: Iterable[DriftItem] = (),
    targets: Iterable[str] = (),
    destroy: bool = False,
    capacity: Capacity | None = None,
    measuring: Measuring | None = None,
    recon_version: str = "",
) -> Plan:
    """The plan that moves ``prior`` (the refreshed recorded state) to ``desired``.

    ``targets``: plan only these addresses and what they depend on (a partial plan, with a warning).
    ``destroy``: delete everything recorded, traffic first. ``capacity``: what the provider can place.
    ``measuring``: what it can measure (``rollout.analysis`` puts gates on steps: ``reconciler.plan.gates``).
    Problems that make the plan unapplicable (quota, immutable assets and properties, traffic kept
    pointing at a deleted deployment) are in ``Plan.errors``; the plan is still returned, for display.
    """
    return _make_plan(desired, prior, list(drift), list(targets), destroy, capacity, measuring, recon_version)


def _make_plan(
    desired: DesiredState,
    prior: State,
    drift: list[DriftItem],
    targets: list[str],
    destroy: bool,
    capacity: Capacity | None,
    measuring: Measuring | None,
    recon_version: str,
) -> Plan:
    p = Actions(desired, prior, destroy, drift)
    in_scope = p.scope(targets)
    changes = {a: p.classify(a) for a in in_scope}
    if destroy and targets:
        _check_traffic_kept(p, changes)
    propagate_endpoint_replace(changes)
    steps = guard_steps(build_steps(changes, p), changes, p, measuring)
    quota = _quota(p, changes, desired, capacity)
    _capacity_warning(p, quota.capacity)
    rcs = [to_resource_change(c) for c in changes.values()]
    return Plan(
        recon_version=recon_version,
        workspace=desired.workspace or prior.workspace,
        provider=desired.provider.kind,
        lineage=prior.lineage if prior.serial > 0 else None,
        serial=prior.serial,
        desired_digest=desired.digest,
        targets=targets,
        destroy=destroy,
        resource_changes=rcs,
        steps=steps,
        quota=quota,
        drift=drift,
        warnings=list(desired.warnings) + p.warnings,
        errors=p.errors + quota.errors,
    )


def _check_traffic_kept(p: Actions, changes: Mapping[str, Change]) -> None:
    """A targeted destroy of a deployment whose endpoint stays and still routes to it."""
    for c in changes.values():
        if c.type != "deployment" or c.action is not Action.DELETE or not c.before:
            continue
        ep = endpoint_address(str(as_deployment(c.before).get("endpoint_name", "")))
        if ep in changes or ep not in p.before:
            continue
        p.errors.extend(traffic.kept_traffic(c.address, c.name, ep, as_endpoint(p.before[ep])))


def _quota(
    p: Actions, changes: Mapping[str, Change], desired: DesiredState, capacity: Capacity | None
) -> Any:
    before = {
        a: as_deployment(b) for a, b in p.before.items() if p.type_of(a) == "deployment" and a not in p.gone
    }
    after = {a: b for a, b in before.items() if a not in changes}  # untouched by a partial plan
    for a, c in changes.items():
        if c.type == "deployment" and c.after is not None:
            after[a] = as_deployment(c.after)
    limits = desired.quota
    if capacity is not None and capacity.quota is not None:  # live limits (azure): the smaller wins
        declared = limits or {}
        limits = {**declared, **{f: min(v, declared.get(f, v)) for f, v in capacity.quota.items()}}
    return check_quota(before, after, desired.instance_types, limits, capacity)


def _capacity_warning(p: Actions, report: Mapping[str, Any] | None) -> None:
    if not report or report.get("cpus") is None:
        return
    total = float(report.get("needed_cpus") or 0) + float(report.get("catalog_cpus") or 0)
    if total > float(report["cpus"]):
        p.warnings.append(
            warning(
                f"the deployments' instance types add up to {total:g} vCPUs, more than the provider's "
                f"{float(report['cpus']):g} ({report.get('description') or 'its capacity'}); "
                "instances share what there is",
                hint="set resources.requests on deployments to have the plan enforce a size",
            )
        )
