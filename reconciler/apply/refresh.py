"""Refresh: observe every recorded resource and report drift, kept apart from pending changes.

``refresh(state, provider)`` returns a new state (the input is not changed) and the drift found:

- ``missing``: the object is gone; it is dropped from the refreshed state, so the plan creates it.
- ``changed``: an attribute the provider sees differs from the recorded one (one item per dotted
  path); the refreshed state carries the observed value, so the plan repairs it.
- ``unmanaged``: an object carrying recon's marks that no state knows (reported, never deleted).

Two more facts are drift of the ``status`` path, so that plan and drift always agree: an object
the provider finds ``unsettled`` (instances of two configurations, instances outside the router's
pool, a router serving another table: ``Observation.unsettled``), which the refreshed state marks
``failed``; and an operation recorded as ``pending`` (an apply was killed part-way). The next plan
repairs both. A ``missing`` item carries the recorded attributes, so the plan can remove the
record of an object that is gone and no longer declared.

Traffic is compared in normal form (zero entries dropped, names lowercased), so nothing drifts
falsely. Whatever goes wrong inside the provider reaches the caller as ``ProviderError`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model.errors import ProviderError
from reconciler.model.resources import normal_traffic
from reconciler.plan.diff import diff_attributes
from reconciler.plan.provider import Observation, Provider
from reconciler.plan.types import DriftItem
from reconciler.state.document import State, StateResource

_TRAFFIC = ("traffic", "mirror_traffic")


def _normal(rtype: str, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Recorded or observed attributes (observed: only some keys) with traffic in normal form."""
    if rtype != "endpoint" or not any(k in attrs for k in _TRAFFIC):
        return attrs
    out = dict(attrs)
    for key in _TRAFFIC:
        if key in out:
            out[key] = normal_traffic(out[key])
    return out


def _observe(provider: Provider, resource: StateResource) -> Observation:
    try:
        return provider.observe(resource)
    except ProviderError:
        raise
    except Exception as exc:  # the provider's contract says ProviderError; keep it so
        raise ProviderError(f"observing {resource.address} failed: {type(exc).__name__}: {exc}") from exc


def refresh_resource(
    provider: Provider, resource: StateResource
) -> tuple[StateResource | None, list[DriftItem]]:
    """One resource: its refreshed record (None when gone) and the drift found."""
    obs = _observe(provider, resource)
    interrupted = _interrupted(resource)
    if not obs.exists:
        detail = "; ".join(obs.problems) or "the object no longer exists"
        if interrupted:
            detail += f"; {interrupted}"
        return None, [
            DriftItem(address=resource.address, kind="missing", detail=detail, recorded=dict(resource.attributes))
        ]
    recorded = _normal(resource.type, resource.attributes)
    seen = _normal(resource.type, {k: v for k, v in obs.attributes.items() if k in recorded})
    overlay = {**recorded, **seen}
    changes = diff_attributes(recorded, overlay)
    changed_detail = "; ".join(obs.problems) or None
    items = [
        DriftItem(
            address=resource.address,
            kind="changed",
            path=c.path,
            recorded=c.before,
            actual=c.after,
            detail=changed_detail,
        )
        for c in changes
    ]
    items += [
        DriftItem(address=resource.address, kind="changed", path="status", recorded=resource.status,
                  actual="unsettled", detail=reason)
        for reason in obs.unsettled
    ]
    if interrupted:
        items.append(DriftItem(address=resource.address, kind="changed", path="status",
                               recorded=resource.status, actual="interrupted", detail=interrupted))
    if not changes and not obs.outputs and not obs.unsettled:
        return resource, items
    update: dict[str, Any] = {"outputs": {**resource.outputs, **obs.outputs}}
    if changes:
        update["attributes"] = overlay
    if obs.unsettled and resource.status == "ready":
        update["status"] = "failed"  # applied again by the next plan
    return resource.model_copy(update=update), items


def _interrupted(resource: StateResource) -> str | None:
    """The words for an operation an apply left pending on ``resource`` (None: none)."""
    if resource.pending is None:
        return None
    return (f"an apply was interrupted during its {resource.pending.describe()}; "
            "the next apply finishes or rolls it back")


def refresh(state: State, provider: Provider) -> tuple[State, list[DriftItem]]:
    """Observe everything in ``state``; return the refreshed state and the drift (sorted by address)."""
    resources: dict[str, StateResource] = {}
    drift: list[DriftItem] = []
    for address in sorted(state.resources):
        refreshed, items = refresh_resource(provider, state.resources[address])
        drift.extend(items)
        if refreshed is not None:
            resources[address] = refreshed
    try:
        unmanaged = provider.find_unmanaged(list(state.resources.values()))
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(f"looking for unmanaged objects failed: {type(exc).__name__}: {exc}") from exc
    drift.extend(
        DriftItem(address=a, kind="unmanaged", detail="carries recon's marks but no state records it")
        for a in sorted(unmanaged)
    )
    return state.model_copy(update={"resources": resources}), drift
