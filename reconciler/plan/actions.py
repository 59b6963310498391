"""What happens to each resource: create, update (in place), replace, delete or no-op, and why.

Per resource the action is create, update (in place), replace (delete, then create: the paths in
``REPLACE_PATHS`` cannot change in place), delete or no-op. Every resource in scope gets a
``Change``, no-ops included (with their full ``after``), so apply never reads the config. The
scope is everything, or the ``--target`` addresses and what they need (for a destroy: what needs
them, which must go first).

After a crash (the refreshed state is the truth, see ``reconciler.apply.refresh``):

- a resource recorded with a ``pending`` create (an apply was killed while creating it) is created
  again (providers keep what the killed create left when it matches) or, no longer declared, deleted;
- a resource with another ``pending`` operation, refreshed as unsettled, or whose last operation
  failed is *repaired*: applied again even when nothing differs (``Change.repair``; a deployment's
  repair also scales it when it was interrupted or unsettled: ``Change.rescale``);
- an endpoint recorded with a traffic step being judged (``judging``: an apply was killed while
  baking it) is repaired too: that step is judged again first (``reconciler.plan.gates``);
- a resource refreshed as missing and no longer declared (or destroyed) gets a delete that only
  removes its record (deleting what is gone is not an error).

Immutable things are errors, not actions: the content of a registered asset version, a
deployment's ``properties`` once created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.errors import Diagnostic, PlanError
from reconciler.model.resources import (
    Attributes,
    DesiredState,
    Resource,
    as_asset,
    as_attributes,
    as_deployment,
    as_endpoint,
    endpoint_address,
    fast_model,
    normal_traffic,
)
from reconciler.plan import graph, traffic
from reconciler.plan.diff import diff_attributes
from reconciler.plan.types import Action, DriftItem, FieldChange, ResourceChange
from reconciler.state.document import State, StateResource

#: attributes that cannot change in place: a change is a replacement (delete, then create)
REPLACE_PATHS: dict[str, tuple[str, ...]] = {
    "deployment": ("instance_type", "kind", "endpoint_name"),
    "endpoint": ("kind", "compute", "identity"),
    "model": (),
    "environment": (),
}
#: attributes never compared (bookkeeping, not configuration)
IGNORED: dict[str, frozenset[str]] = {
    "endpoint": frozenset({"traffic_declared"}),
    "deployment": frozenset(),
    "model": frozenset(),
    "environment": frozenset(),
}


@dataclass
class Change:
    """Working form of one resource change (turned into a ``ResourceChange`` at the end)."""

    address: str
    type: str
    name: str
    provider: str
    action: Action
    before: Attributes | None
    after: Attributes | None
    changes: list[FieldChange] = field(default_factory=list)
    replace_paths: list[str] = field(default_factory=list)
    reason: str | None = None
    source: str | None = None
    depends_on: list[str] = field(default_factory=list)
    repair: bool = False  # applied again although nothing may differ (see the module docstring)
    rescale: bool = False  # a deployment's repair scales it too (interrupted or unsettled, not only failed)
    repair_words: str = "a repair"  # why, in the rollout's description
    rejudge: bool = False  # an endpoint's traffic step whose gate an interrupted apply never judged


def serves(before: Attributes | None, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> bool:
    """Whether the endpoint (refreshed) routes exactly this split."""
    live = as_endpoint(before or {})
    return (normal_traffic(live.get("traffic")), normal_traffic(live.get("mirror_traffic"))) == (
        normal_traffic(traffic), normal_traffic(mirror))


def _source(resource: Resource | None) -> str | None:
    if resource is None or resource.source is None:
        return None
    src = resource.source
    return f"{src.file}:{src.line}" if src.line is not None else src.file


def warning(
    message: str, resource: Resource | None = None, path: str | None = None, hint: str | None = None
) -> dict[str, Any]:
    src = resource.source if resource is not None else None
    return Diagnostic(
        message,
        file=src.file if src else None,
        line=src.line if src else None,
        path=path,
        hint=hint,
        severity="warning",
    ).to_dict()


def _unknown_targets(unknown: list[str], known: set[str]) -> str:
    """``--target nope.x: no resource has this address ...; did you mean ...?``"""
    import difflib

    parts = []
    for target in unknown:
        kind = target.split(".", 1)[0]
        same = sorted(a for a in known if a.split(".", 1)[0] == kind)
        close = (
            difflib.get_close_matches(target, same, n=3, cutoff=0.6)
            or difflib.get_close_matches(target, sorted(known), n=3, cutoff=0.6)
            or same[:5]
        )
        text = f"--target {target}: no resource has this address in the configuration or the state"
        if close:
            text += f"; did you mean {', '.join(close)}?"
        elif known:
            text += f" (addresses look like {sorted(known)[0]}; see recon state list)"
        parts.append(text)
    return "; ".join(parts)


def deployment_label(attrs: Attributes) -> str:
    """``endpoint/deployment`` as people write it."""
    a = as_deployment(attrs)
    return f"{a.get('endpoint_name', '')}/{a.get('name', '')}"


class Actions:
    """One planning pass's decisions per resource: scope, action, reason. Holds only this pass's
    working data (``make_plan`` is the public face); ``errors`` and ``warnings`` collect what the
    plan reports."""

    def __init__(
        self, desired: DesiredState, prior: State, destroy: bool, drift: Iterable[DriftItem] = ()
    ) -> None:
        self.desired = desired
        self.prior = prior
        self.destroy = destroy
        self.errors: list[str] = []
        self.warnings: list[dict[str, Any]] = []
        self.before: dict[str, Attributes] = {}
        self.after: dict[str, Attributes] = {}
        self.unsettled: dict[str, list[str]] = {}  # address -> why refresh found it unsettled
        self.drifted: dict[str, list[str]] = {}  # address -> attribute paths refresh found changed
        self.gone: set[str] = set()  # found missing, no longer declared: only the record goes
        for address, sr in prior.resources.items():
            recorded = as_attributes(sr.attributes)
            self.before[address] = traffic.normal_endpoint(as_endpoint(recorded)) if sr.type == "endpoint" else recorded
        if not destroy:
            for address, r in desired.resources.items():
                self.after[address] = self._after_of(r)
        for item in drift:
            if item.kind == "changed" and item.path == "status" and item.actual == "unsettled":
                self.unsettled.setdefault(item.address, []).append(str(item.detail or "unsettled"))
            elif item.kind == "changed" and item.path != "status":
                self.drifted.setdefault(item.address, []).append(str(item.path))
            elif (item.kind == "missing" and isinstance(item.recorded, dict)
                  and item.address not in self.before and item.address not in self.after):
                attrs = as_attributes(item.recorded)
                self.before[item.address] = (
                    traffic.normal_endpoint(as_endpoint(attrs)) if item.address.startswith("endpoint.") else attrs
                )
                self.gone.add(item.address)

    # -- desired attributes ---------------------------------------------------------------------
    def _after_of(self, r: Resource) -> Attributes:
        if r.type != "endpoint":
            return r.attributes
        recorded = self.before.get(r.address)
        return traffic.desired_endpoint(as_endpoint(r.attributes), None if recorded is None else as_endpoint(recorded))

    # -- scope ----------------------------------------------------------------------------------
    def type_of(self, address: str) -> str:
        r = self.desired.resources.get(address)
        if r is not None:
            return r.type
        sr = self.prior.resources.get(address)
        return sr.type if sr is not None else address.split(".", 1)[0]

    def _name_of(self, address: str, r: Resource | None, sr: StateResource | None) -> str:
        if r is not None:
            return r.name
        if sr is not None:
            return sr.name
        before = self.before.get(address)
        return str(before.get("name") or address) if before is not None else address

    def needs(self, address: str) -> list[str]:
        """What a resource needs, in the desired state or (when gone from it) the recorded one."""
        attrs = self.after.get(address, self.before.get(address))
        if attrs is None:
            return []
        rtype = self.type_of(address)
        r = self.desired.resources.get(address)
        sr = self.prior.resources.get(address)
        extra: Iterable[str] = r.depends_on if r is not None else (sr.depends_on if sr else ())
        found = graph.uses(rtype, attrs, extra)
        if rtype == "deployment":
            found.insert(0, endpoint_address(str(attrs.get("endpoint_name", ""))))
        return found

    def scope(self, targets: Iterable[str]) -> list[str]:
        """The addresses to plan: everything, or the targets and what they need (for a destroy:
        the targets and what needs them, which must go first). An address neither the
        configuration nor the state has is an error that names the closest known ones."""
        everything = set(self.before) | set(self.after)
        targets = list(targets)
        if not targets:
            return sorted(everything)
        unknown = [t for t in targets if t not in everything]
        if unknown:
            raise PlanError(_unknown_targets(unknown, everything))
        follow = self._dependents() if self.destroy else self.needs
        seen: set[str] = set()
        queue = list(targets)
        while queue:
            addr = queue.pop()
            if addr in seen or addr not in everything:
                continue
            seen.add(addr)
            queue.extend(follow(addr))
        self.warnings.append(
            warning(
                "the plan is partial: only the targeted resources and what they depend on were planned; "
                "other changes may be pending",
                hint="use --target for exceptional cases only, such as recovering from a mistake",
            )
        )
        return sorted(seen)

    def _dependents(self) -> Any:
        """``address -> what cannot exist without it`` (a destroy must delete those first). An
        endpoint names its deployments only for its traffic, which is drained, not deleted."""
        users: dict[str, list[str]] = {}
        for address in set(self.before) | set(self.after):
            if self.type_of(address) == "endpoint":
                continue
            for needed in self.needs(address):
                users.setdefault(needed, []).append(address)
        return lambda address: users.get(address, [])

    # -- per-resource actions -------------------------------------------------------------------
    def classify(self, address: str) -> Change:
        r = self.desired.resources.get(address)
        sr = self.prior.resources.get(address)
        before, after = self.before.get(address), self.after.get(address)
        rtype = self.type_of(address)
        provider = sr.provider if sr is not None and after is None else self.desired.provider.kind
        name = self._name_of(address, r, sr)
        ch = Change(address, rtype, name, provider, Action.NOOP, before, after, source=_source(r))
        ch.depends_on = self.needs(address)
        pending = sr.pending if sr is not None else None
        if before is None:
            ch.action = Action.CREATE
        elif after is None:
            ch.action = Action.DELETE
            if address in self.gone:
                ch.reason = "it is gone already (refresh found it missing): only its record is removed"
            elif pending is not None:
                ch.reason = f"an apply was interrupted during its {pending.describe()}: it is deleted"
        elif pending is not None and pending.kind == "create" and (sr is None or sr.status != "tainted"):
            ch.action, ch.before = Action.CREATE, None
            ch.reason = ("an apply was interrupted while creating it: it is created again (what the "
                         "interrupted create left is kept where it matches)")
        else:
            self._compare(ch, sr, r)
        return ch

    def _repair_reason(self, ch: Change, sr: StateResource | None) -> str | None:
        """Why a resource is applied again although its attributes may not differ (None: it is not)."""
        if sr is None:
            return None
        if sr.pending is not None and sr.pending.kind == "delete":
            return (f"an apply was interrupted while deleting it ({sr.pending.describe()}), and it is still "
                    "declared: it is applied again")
        if sr.pending is not None:
            target = {k: v for k, v in sr.pending.attributes.items() if k not in IGNORED[ch.type]}
            after = {k: v for k, v in (ch.after or {}).items() if k not in IGNORED[ch.type]}
            recorded = {k: v for k, v in (sr.attributes or {}).items() if k not in IGNORED[ch.type]}
            if _same(target, after, ch.type):
                how = "which finishes it"
            elif _same(recorded, after, ch.type):
                how = "which rolls it back to the recorded configuration"
            else:
                how = "to the configuration declared now"
            return f"an apply was interrupted during its {sr.pending.describe()}: it is applied again, {how}"
        if ch.address in self.unsettled:
            return "it is not settled (" + "; ".join(self.unsettled[ch.address]) + "): it is applied again"
        if sr.status == "failed":
            return "the last operation on it failed: it is applied again"
        if ch.address in self.drifted and not ch.changes:  # drifted to what is declared: recorded by applying it
            paths = ", ".join(sorted(set(self.drifted[ch.address])))
            return f"it changed outside of recon ({paths}) to what the configuration declares: it is applied again"
        if sr.judging is not None and serves(ch.before, sr.judging.traffic, sr.judging.mirror_traffic):
            # only this: its traffic steps do it (no update of the endpoint)
            ch.rejudge = True
            return (f"{sr.judging.describe()} (an apply was interrupted while baking it): it is judged again "
                    "before anything else")
        return None

    def _compare(self, ch: Change, sr: StateResource | None, r: Resource | None) -> None:
        ch.changes = diff_attributes(
            ch.before, ch.after, ignore=IGNORED[ch.type], replace_paths=REPLACE_PATHS[ch.type]
        )
        self._validate(ch, r)
        forcing = sorted({c.path.split(".", 1)[0] for c in ch.changes if c.forces_replacement})
        status = sr.status if sr is not None else "ready"
        repair = self._repair_reason(ch, sr)
        if forcing:
            ch.action, ch.replace_paths = Action.REPLACE, forcing
            ch.reason = self._replace_reason(ch, forcing, r)
        elif status == "tainted":
            ch.action, ch.reason = Action.REPLACE, "it is tainted (a create did not finish): it is replaced"
        elif ch.changes or repair:
            ch.action, ch.repair, ch.reason = Action.UPDATE, repair is not None, repair
            ch.rescale = sr is not None and (sr.pending is not None or ch.address in self.unsettled)
            if sr is not None and sr.status == "failed" and not ch.rescale:
                ch.repair_words = "the last operation failed"

    def _replace_reason(self, ch: Change, paths: list[str], r: Resource | None) -> str:
        what = ", ".join(paths)
        if ch.type == "deployment":
            b, a = as_deployment(ch.before or {}), as_deployment(ch.after or {})
            detail = "; ".join(f"{p}: {b.get(p)!r} -> {a.get(p)!r}" for p in paths)
            self.warnings.append(
                warning(
                    f"deployment {deployment_label(a)} is replaced ({detail}): {what} cannot change in place, "
                    "so it is deleted and created again",
                    r,
                    paths[0],
                    "for no downtime, create a new deployment beside it (blue/green) and move the traffic",
                )
            )
            return f"{what} cannot change in place (blue/green recommended: a new deployment, then traffic)"
        return f"{what} of an endpoint cannot change in place"

    def _validate(self, ch: Change, r: Resource | None) -> None:
        where = f"{ch.source}: " if ch.source else ""
        if ch.type in ("model", "environment"):
            ba, aa = as_asset(ch.before or {}), as_asset(ch.after or {})
            if not aa.get("anonymous", False) and ba.get("content_digest") != aa.get("content_digest"):
                self.errors.append(
                    f"{where}{ch.address}: content_digest: the content of registered {ch.type} "
                    f"{aa.get('name')} version {aa.get('version')} changed, but its version did not: "
                    "registered versions are immutable; bump the version"
                )
        if ch.type == "deployment":
            b, a = as_deployment(ch.before or {}), as_deployment(ch.after or {})
            old, new = b.get("properties") or {}, a.get("properties") or {}
            for key in sorted(old):
                if key not in new:
                    self.errors.append(
                        f"{where}{ch.address}: properties.{key}: properties cannot be removed after "
                        f"creation (recorded {old[key]!r}); put it back, or replace the deployment under a new name"
                    )
                elif new[key] != old[key]:
                    self.errors.append(
                        f"{where}{ch.address}: properties.{key}: properties cannot be changed after "
                        f"creation ({old[key]!r} -> {new[key]!r}); only new keys may be added"
                    )


def _same(a: Mapping[str, Any], b: Mapping[str, Any], rtype: str) -> bool:
    if rtype == "endpoint":
        a, b = traffic.normal_endpoint(as_endpoint(a)), traffic.normal_endpoint(as_endpoint(b))
    return not diff_attributes(a, b)


def propagate_endpoint_replace(changes: dict[str, Change]) -> None:
    """Deployments of a replaced endpoint go with it: delete before, create after."""
    replaced = {
        str(c.after.get("name", "") if c.after else "").lower()
        for c in changes.values()
        if c.type == "endpoint" and c.action is Action.REPLACE
    }
    if not replaced:
        return
    for c in changes.values():
        if c.type != "deployment":
            continue
        ep = str(as_deployment(c.after or c.before or {}).get("endpoint_name", "")).lower()
        if ep in replaced and c.action in (Action.NOOP, Action.UPDATE):
            c.action = Action.REPLACE
            c.reason = f"its endpoint {ep} is replaced"


def to_resource_change(c: Change) -> ResourceChange:
    return fast_model(
        ResourceChange,
        address=c.address,
        type=c.type,
        name=c.name,
        provider=c.provider,
        action=c.action,
        before=c.before,
        after=c.after,
        changes=c.changes,
        replace_paths=c.replace_paths,
        depends_on=c.depends_on,
        reason=c.reason,
        source=c.source,
    )
