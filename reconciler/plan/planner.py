"""``make_plan``: desired state + (refreshed) recorded state in, ``Plan`` out. Pure: no I/O, no printing.

Per resource the action is create, update (in place), replace (delete, then create: the paths in
``REPLACE_PATHS`` cannot change in place), delete or no-op. Every resource in scope gets a
``ResourceChange``, no-ops included (with their full ``after``), so apply never reads the config.

The steps apply carries out, and the rules that order them (DOMAIN.md "Traffic"):

- assets (models, environments) before the deployments that use them;
- an endpoint is created without traffic, then its deployments, then ``SET_TRAFFIC`` (traffic and
  mirror traffic), once every deployment it names exists and is ready;
- traffic leaves a deployment (``SET_TRAFFIC``) before the deployment is deleted; a replaced
  deployment that carries live traffic gets a drain step first (its share to the others, or all
  zero), and its traffic comes back in the final ``SET_TRAFFIC``;
- deletions run in reverse: deployments before their endpoint, deployments before the assets they
  used; an endpoint being deleted is drained to no traffic first;
- a deployment update is ``SCALE`` (when instance_count changes) then ``ROLLOUT`` in batches of
  ceil(0.2 x N) (when anything living in the instances changes), or a plain ``UPDATE`` when only
  metadata (tags, description, properties, scale settings) changes.

Endpoint traffic absent from the file (``traffic_declared`` False) keeps the recorded traffic: it is
never zeroed (the Azure SDK hazard).

After a crash (the refreshed state is the truth, see ``reconciler.apply.refresh``):

- a resource recorded with a ``pending`` create (an apply was killed while creating it) is created
  again (providers keep what the killed create left when it matches) or, no longer declared, deleted;
- a resource with another ``pending`` operation, refreshed as unsettled, or whose last operation
  failed is *repaired*: applied again even when nothing differs. A deployment gets a scale to its
  count (interrupted or unsettled: the instances outside the router's pool are adopted or stopped)
  and then a rollout over every instance (instances already at the desired configuration stay), which finishes the
  interrupted operation when the configuration is still the one it moved to and rolls it back when
  the configuration went back; an endpoint gets an update and its traffic set again;
- a resource refreshed as missing and no longer declared (or destroyed) gets a delete step that
  only removes its record (deleting what is gone is not an error).

So every drift item but ``unmanaged`` (never touched) has a step in the plan: plan and drift never
disagree, and an apply after a crash records the truth (a resource that drifted to exactly what the
configuration declares is applied again, idempotently, so that the state records it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from providers.base import Capacity
from reconciler.model.errors import Diagnostic, PlanError
from reconciler.model.resources import DesiredState, Resource, endpoint_address, fast_model
from reconciler.plan import graph
from reconciler.plan.diff import diff_attributes, normalize_traffic
from reconciler.plan.quota import check_quota
from reconciler.plan.types import Action, Batch, DriftItem, FieldChange, Plan, ResourceChange, Step, StepKind
from reconciler.state.document import State, StateResource

Attrs = dict[str, Any]

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
TRAFFIC_PATHS = frozenset({"traffic", "mirror_traffic"})
SCALE_PATHS = frozenset({"instance_count"})
#: deployment attributes that change without touching the instances
METADATA_PATHS = frozenset({"tags", "description", "properties", "scale_settings"})
#: everything else of a deployment lives in its instances (code, model, environment, variables,
#: probes, request settings, resources ...): changing it is a rolling update


def batch_size(instances: int) -> int:
    """Rolling-update batch: ceil(0.2 x N), at least 1 (10 -> 2, 50 -> 10, 4 -> 1)."""
    return max(1, (instances + 4) // 5)


def rollout_batches(instances: int) -> list[Batch]:
    size = batch_size(instances)
    out: list[Batch] = []
    left = instances
    while left > 0:
        out.append(Batch(index=len(out) + 1, size=min(size, left)))
        left -= size
    return out


@dataclass
class _Change:
    """Working form of one resource change (turned into a ``ResourceChange`` at the end)."""

    address: str
    type: str
    name: str
    provider: str
    action: Action
    before: Attrs | None
    after: Attrs | None
    changes: list[FieldChange] = field(default_factory=list)
    replace_paths: list[str] = field(default_factory=list)
    reason: str | None = None
    source: str | None = None
    depends_on: list[str] = field(default_factory=list)
    repair: bool = False  # applied again although nothing may differ (see the module docstring)
    rescale: bool = False  # a deployment's repair scales it too (interrupted or unsettled, not only failed)
    repair_words: str = "a repair"  # why, in the rollout's description


def _source(resource: Resource | None) -> str | None:
    if resource is None or resource.source is None:
        return None
    src = resource.source
    return f"{src.file}:{src.line}" if src.line is not None else src.file


def _warning(
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


def _label(attrs: Mapping[str, Any]) -> str:
    """``endpoint/deployment`` as people write it."""
    return f"{attrs.get('endpoint_name', '')}/{attrs.get('name', '')}"


def _norm_endpoint(attrs: Attrs) -> Attrs:
    """Endpoint attributes with traffic in normal form (a copy only when something changes)."""
    t, m = attrs.get("traffic"), attrs.get("mirror_traffic")
    nt, nm = normalize_traffic(t), normalize_traffic(m)
    if t == nt and m == nm:
        return attrs
    return {**attrs, "traffic": nt, "mirror_traffic": nm}


class _Planner:
    """One planning pass. Holds only this pass's working data; ``make_plan`` is the public face."""

    def __init__(
        self, desired: DesiredState, prior: State, destroy: bool, drift: Iterable[DriftItem] = ()
    ) -> None:
        self.desired = desired
        self.prior = prior
        self.destroy = destroy
        self.errors: list[str] = []
        self.warnings: list[dict[str, Any]] = []
        self.before: dict[str, Attrs] = {}
        self.after: dict[str, Attrs] = {}
        self.unsettled: dict[str, list[str]] = {}  # address -> why refresh found it unsettled
        self.drifted: dict[str, list[str]] = {}  # address -> attribute paths refresh found changed
        self.gone: set[str] = set()  # found missing, no longer declared: only the record goes
        for address, sr in prior.resources.items():
            self.before[address] = _norm_endpoint(sr.attributes) if sr.type == "endpoint" else sr.attributes
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
                attrs = item.recorded
                self.before[item.address] = _norm_endpoint(attrs) if item.address.startswith("endpoint.") else attrs
                self.gone.add(item.address)

    # -- desired attributes ---------------------------------------------------------------------
    def _after_of(self, r: Resource) -> Attrs:
        if r.type != "endpoint":
            return r.attributes
        attrs = _norm_endpoint(r.attributes)
        recorded = self.before.get(r.address)
        if attrs.get("traffic_declared", True) or recorded is None:
            return attrs
        # traffic not in the file: keep what is recorded, never zero it
        kept = {**attrs, "traffic": dict(recorded.get("traffic") or {})}
        if not attrs.get("mirror_traffic"):
            kept["mirror_traffic"] = dict(recorded.get("mirror_traffic") or {})
        return kept

    # -- scope ----------------------------------------------------------------------------------
    def _type_of(self, address: str) -> str:
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
        return str((self.before.get(address) or {}).get("name") or address)

    def needs(self, address: str) -> list[str]:
        """What a resource needs, in the desired state or (when gone from it) the recorded one."""
        attrs = self.after.get(address, self.before.get(address))
        if attrs is None:
            return []
        rtype = self._type_of(address)
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
            _warning(
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
            if self._type_of(address) == "endpoint":
                continue
            for needed in self.needs(address):
                users.setdefault(needed, []).append(address)
        return lambda address: users.get(address, [])

    # -- per-resource actions -------------------------------------------------------------------
    def classify(self, address: str) -> _Change:
        r = self.desired.resources.get(address)
        sr = self.prior.resources.get(address)
        before, after = self.before.get(address), self.after.get(address)
        rtype = self._type_of(address)
        provider = sr.provider if sr is not None and after is None else self.desired.provider.kind
        name = self._name_of(address, r, sr)
        ch = _Change(address, rtype, name, provider, Action.NOOP, before, after, source=_source(r))
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

    def _repair_reason(self, ch: _Change, sr: StateResource | None) -> str | None:
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
        return None

    def _compare(self, ch: _Change, sr: StateResource | None, r: Resource | None) -> None:
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

    def _replace_reason(self, ch: _Change, paths: list[str], r: Resource | None) -> str:
        what = ", ".join(paths)
        if ch.type == "deployment":
            b, a = ch.before or {}, ch.after or {}
            detail = "; ".join(f"{p}: {b.get(p)!r} -> {a.get(p)!r}" for p in paths)
            self.warnings.append(
                _warning(
                    f"deployment {_label(a)} is replaced ({detail}): {what} cannot change in place, "
                    "so it is deleted and created again",
                    r,
                    paths[0],
                    "for no downtime, create a new deployment beside it (blue/green) and move the traffic",
                )
            )
            return f"{what} cannot change in place (blue/green recommended: a new deployment, then traffic)"
        return f"{what} of an endpoint cannot change in place"

    def _validate(self, ch: _Change, r: Resource | None) -> None:
        b, a = ch.before or {}, ch.after or {}
        where = f"{ch.source}: " if ch.source else ""
        immutable = ch.type in ("model", "environment") and not a.get("anonymous", False)
        if immutable and b.get("content_digest") != a.get("content_digest"):
            self.errors.append(
                f"{where}{ch.address}: content_digest: the content of registered {ch.type} "
                f"{a.get('name')} version {a.get('version')} changed, but its version did not: "
                "registered versions are immutable; bump the version"
            )
        if ch.type == "deployment":
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
        a, b = _norm_endpoint(dict(a)), _norm_endpoint(dict(b))
    return not diff_attributes(dict(a), dict(b))


def _propagate_endpoint_replace(changes: dict[str, _Change]) -> None:
    """Deployments of a replaced endpoint go with it: delete before, create after."""
    replaced = {
        str((c.after or {}).get("name", "")).lower()
        for c in changes.values()
        if c.type == "endpoint" and c.action is Action.REPLACE
    }
    if not replaced:
        return
    for c in changes.values():
        ep = str((c.after or c.before or {}).get("endpoint_name", "")).lower()
        if c.type == "deployment" and ep in replaced and c.action in (Action.NOOP, Action.UPDATE):
            c.action = Action.REPLACE
            c.reason = f"its endpoint {ep} is replaced"


def make_plan(
    desired: DesiredState,
    prior: State,
    *,
    drift: Iterable[DriftItem] = (),
    targets: Iterable[str] = (),
    destroy: bool = False,
    capacity: Capacity | None = None,
    recon_version: str = "",
) -> Plan:
    """The plan that moves ``prior`` (the refreshed recorded state) to ``desired``.

    ``targets``: plan only these addresses and what they depend on (a partial plan, with a warning).
    ``destroy``: delete everything recorded, traffic first. ``capacity``: what the provider can place.
    Problems that make the plan unapplicable (quota, immutable assets and properties, traffic kept
    pointing at a deleted deployment) are in ``Plan.errors``; the plan is still returned, for display.
    """
    return _make_plan(desired, prior, list(drift), list(targets), destroy, capacity, recon_version)


def _make_plan(
    desired: DesiredState,
    prior: State,
    drift: list[DriftItem],
    targets: list[str],
    destroy: bool,
    capacity: Capacity | None,
    recon_version: str,
) -> Plan:
    p = _Planner(desired, prior, destroy, drift)
    in_scope = p.scope(targets)
    changes = {a: p.classify(a) for a in in_scope}
    if destroy and targets:
        _check_traffic_kept(p, changes)
    _propagate_endpoint_replace(changes)
    steps = build_steps(changes, p)
    quota = _quota(p, changes, desired, capacity)
    _capacity_warning(p, quota.capacity)
    rcs = [_to_resource_change(c) for c in changes.values()]
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


def _check_traffic_kept(p: _Planner, changes: Mapping[str, _Change]) -> None:
    """A targeted destroy of a deployment whose endpoint stays and still routes to it."""
    for c in changes.values():
        if c.type != "deployment" or c.action is not Action.DELETE or not c.before:
            continue
        ep = endpoint_address(str(c.before.get("endpoint_name", "")))
        if ep in changes or ep not in p.before:
            continue
        for key in ("traffic", "mirror_traffic"):
            pct = {k.lower(): v for k, v in (p.before[ep].get(key) or {}).items()}.get(c.name.lower())
            if pct:
                p.errors.append(
                    f"{c.address} cannot be destroyed alone: {ep} still sends it {pct}% "
                    f"{'mirrored ' if key == 'mirror_traffic' else ''}traffic; move the traffic in the "
                    f"endpoint's file and apply first, or destroy the endpoint too (--target {ep})"
                )


def _quota(
    p: _Planner, changes: Mapping[str, _Change], desired: DesiredState, capacity: Capacity | None
) -> Any:
    before = {a: b for a, b in p.before.items() if p._type_of(a) == "deployment" and a not in p.gone}
    after = {a: b for a, b in before.items() if a not in changes}  # untouched by a partial plan
    for a, c in changes.items():
        if c.type == "deployment" and c.after is not None:
            after[a] = c.after
    limits = desired.quota
    if capacity is not None and capacity.quota is not None:  # live limits (azure): the smaller wins
        declared = limits or {}
        limits = {**declared, **{f: min(v, declared.get(f, v)) for f, v in capacity.quota.items()}}
    return check_quota(before, after, desired.instance_types, limits, capacity)


def _capacity_warning(p: _Planner, report: Mapping[str, Any] | None) -> None:
    if not report or report.get("cpus") is None:
        return
    total = float(report.get("needed_cpus") or 0) + float(report.get("catalog_cpus") or 0)
    if total > float(report["cpus"]):
        p.warnings.append(
            _warning(
                f"the deployments' instance types add up to {total:g} vCPUs, more than the provider's "
                f"{float(report['cpus']):g} ({report.get('description') or 'its capacity'}); "
                "instances share what there is",
                hint="set resources.requests on deployments to have the plan enforce a size",
            )
        )


def _to_resource_change(c: _Change) -> ResourceChange:
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


# -- steps ----------------------------------------------------------------------------------------


def _fmt_traffic(traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
    text = ", ".join(f"{k}={v}%" for k, v in sorted(traffic.items())) or "no traffic"
    if mirror:
        text += "; mirror " + ", ".join(f"{k}={v}%" for k, v in sorted(mirror.items()))
    return text


def redistribute(traffic: Mapping[str, int], removed: Iterable[str]) -> dict[str, int]:
    """``traffic`` without ``removed``; their share goes to the others in proportion (whole
    percentages, largest remainder, still summing to 100), or nothing when no other is left."""
    removed = set(removed)
    keep = {k: v for k, v in traffic.items() if k not in removed and v}
    total = sum(keep.values())
    if not total:
        return {}
    target = sum(traffic.values())
    exact = {k: v * target / total for k, v in keep.items()}
    out = {k: int(x) for k, x in exact.items()}
    left = target - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:left]:
        out[k] += 1
    return out


@dataclass
class _StepSpec:
    kind: StepKind
    address: str
    deps: set[str] = field(default_factory=set)
    params: dict[str, Any] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    description: str = ""


class _Steps:
    """Turns resource changes into ordered steps (see the module docstring for the rules)."""

    def __init__(self, changes: Mapping[str, _Change], p: _Planner) -> None:
        self.changes = changes
        self.p = p
        self.specs: dict[str, _StepSpec] = {}
        self.ready: dict[str, str] = {}  # address -> step after which it exists and is ready
        self.touched: dict[str, list[str]] = {}  # address -> its create/scale/rollout/update steps
        self.drained: dict[str, set[str]] = {}  # endpoint address -> deployment names drained
        self.drain_result: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self.by_endpoint: dict[str, list[_Change]] = {}
        self.users: dict[str, list[str]] = {}  # asset address -> deployments that used it (before)
        for c in changes.values():
            if c.type != "deployment":
                continue
            attrs = c.after or c.before or {}
            self.by_endpoint.setdefault(endpoint_address(str(attrs.get("endpoint_name", ""))), []).append(c)
            for key in ("model", "environment"):
                ref = (c.before or {}).get(key)
                if ref:
                    self.users.setdefault(ref, []).append(c.address)

    def add(self, sid: str, kind: StepKind, address: str, description: str, **kw: Any) -> str:
        self.specs[sid] = _StepSpec(kind, address, description=description, **kw)
        if kind is not StepKind.DELETE and not sid.endswith(":drain"):
            self.touched.setdefault(address, []).append(sid)
        return sid

    def build(self) -> list[Step]:
        of = self._of_type
        for c in of("endpoint"):
            self._drain(c)
        for kind in ("deployment", "endpoint", "model", "environment"):
            for c in of(kind):
                if c.action in (Action.DELETE, Action.REPLACE):
                    self._delete(c)
        for kind in ("environment", "model", "endpoint"):
            for c in of(kind):
                self._create_or_update(c)
        for c in of("deployment"):
            self._deployment(c)
        for c in of("endpoint"):
            self._final_traffic(c)
        self._link_asset_deletes()
        order = graph.step_order(list(self.specs), lambda sid: self.specs[sid].deps)
        rank = {sid: i for i, sid in enumerate(order)}
        return [self._step(sid, rank) for sid in order]

    def _of_type(self, rtype: str) -> list[_Change]:
        return [c for c in self.changes.values() if c.type == rtype]

    def _step(self, sid: str, rank: Mapping[str, int]) -> Step:
        s = self.specs[sid]
        deps = sorted((d for d in s.deps if d in rank), key=rank.__getitem__)
        return fast_model(
            Step,
            id=sid,
            kind=s.kind,
            address=s.address,
            depends_on=deps,
            params=s.params,
            batches=s.batches,
            description=s.description,
        )

    # -- traffic --------------------------------------------------------------------------------
    def _drain(self, e: _Change) -> None:
        if e.before is None:
            return
        bt, bm = e.before.get("traffic") or {}, e.before.get("mirror_traffic") or {}
        if not bt and not bm:
            return
        name = str(e.before.get("name", e.name)).lower()
        if e.action in (Action.DELETE, Action.REPLACE):
            hit = set(bt) | set(bm)
            new_t: dict[str, int] = {}
            new_m: dict[str, int] = {}
        else:
            replaced = {
                str((d.before or {}).get("name", "")).lower()
                for d in self.by_endpoint.get(e.address, [])
                if d.action is Action.REPLACE
            }
            hit = replaced & (set(bt) | set(bm))
            if not hit:
                return
            new_t = redistribute(bt, hit)
            new_m = {} if set(bm) & hit else dict(bm)
            for d in sorted(hit & set(bt)):
                self._warn_drain(e, name, d, bt[d], new_t)
        self.drained[e.address] = hit
        self.drain_result[e.address] = (new_t, new_m)
        self.add(
            f"set_traffic:{e.address}:drain",
            StepKind.SET_TRAFFIC,
            e.address,
            f"move traffic off {', '.join(sorted(hit))} of endpoint {name} first: {_fmt_traffic(new_t, new_m)}",
            params={"traffic": new_t, "mirror_traffic": new_m, "phase": "drain"},
        )

    def _warn_drain(self, e: _Change, ep: str, dep: str, pct: int, new_t: Mapping[str, int]) -> None:
        to = (
            ", ".join(f"{k}={v}%" for k, v in sorted(new_t.items()))
            if new_t
            else "nowhere (the endpoint serves nothing meanwhile)"
        )
        self.p.warnings.append(
            _warning(
                f"deployment {ep}/{dep} carries {pct}% of live traffic and is replaced: its traffic "
                f"moves to {to} until the new one is ready",
                self.p.desired.resources.get(f"deployment.{ep}.{dep}"),
                "traffic",
                "a blue/green change avoids this: create a new deployment, move traffic, then delete the old one",
            )
        )

    def _final_traffic(self, e: _Change) -> None:
        if e.after is None:
            return
        at, am = e.after.get("traffic") or {}, e.after.get("mirror_traffic") or {}
        if e.action in (Action.CREATE, Action.REPLACE):
            base: tuple[Mapping[str, int], Mapping[str, int]] = ({}, {})
        elif e.address in self.drain_result:
            base = self.drain_result[e.address]
        else:
            base = ((e.before or {}).get("traffic") or {}, (e.before or {}).get("mirror_traffic") or {})
        ep = str(e.after.get("name", e.name)).lower()
        self._check_targets(e, ep, set(at) | set(am))
        if (dict(at), dict(am)) == (dict(base[0]), dict(base[1])) and not e.repair:
            return
        sid = f"set_traffic:{e.address}"
        deps = {self.ready[e.address]} if e.address in self.ready else set()
        for d in set(at) | set(am):
            ready = self.ready.get(f"deployment.{ep}.{d}")
            if ready:
                deps.add(ready)
        self.add(
            sid,
            StepKind.SET_TRAFFIC,
            e.address,
            f"set traffic of endpoint {ep}: {_fmt_traffic(at, am)}",
            deps=deps,
            params={"traffic": dict(at), "mirror_traffic": dict(am), "phase": "final"},
        )
        # traffic leaves a deployment before it is deleted
        for d in (set(base[0]) | set(base[1])) - (set(at) | set(am)):
            delete = f"delete:deployment.{ep}.{d}"
            if delete in self.specs:
                self.specs[delete].deps.add(sid)

    def _check_targets(self, e: _Change, ep: str, names: set[str]) -> None:
        for d in sorted(names):
            addr = f"deployment.{ep}.{d}"
            if addr in self.p.after or (addr not in self.changes and addr in self.p.before):
                continue
            msg = f"{e.source + ': ' if e.source else ''}{e.address}: traffic.{d}: endpoint {ep} would route to deployment {d}, which does not exist after this plan"
            if not e.after or not e.after.get("traffic_declared", True):
                msg += "; the file declares no traffic, so the recorded traffic is kept: declare `traffic:` for this endpoint"
            self.p.errors.append(msg)

    # -- deletes --------------------------------------------------------------------------------
    def _delete(self, c: _Change) -> None:
        sid = self.add(
            f"delete:{c.address}", StepKind.DELETE, c.address, f"delete {c.type} {c.address.split('.', 1)[1]}"
        )
        deps = self.specs[sid].deps
        if c.type == "deployment":
            b = c.before or {}
            e = endpoint_address(str(b.get("endpoint_name", "")))
            if str(b.get("name", "")).lower() in self.drained.get(e, set()):
                deps.add(f"set_traffic:{e}:drain")
        elif c.type == "endpoint":
            if c.address in self.drained:
                deps.add(f"set_traffic:{c.address}:drain")
            deps.update(
                f"delete:{d.address}" for d in self.by_endpoint.get(c.address, []) if d.before is not None
            )

    def _link_asset_deletes(self) -> None:
        """An asset is deleted only after every deployment that used it moved off it or is gone."""
        for asset, users in self.users.items():
            sid = f"delete:{asset}"
            if sid in self.specs:
                for user in users:
                    self.specs[sid].deps.update(self.touched.get(user, []))
                    self.specs[sid].deps.add(f"delete:{user}")

    # -- creates and updates --------------------------------------------------------------------
    def _create_or_update(self, c: _Change) -> None:
        short = c.address.split(".", 1)[1]
        if c.action in (Action.CREATE, Action.REPLACE):
            note = (
                " (without traffic; traffic is set once its deployments are ready)"
                if c.type == "endpoint"
                else ""
            )
            sid = self.add(
                f"create:{c.address}", StepKind.CREATE, c.address, f"create {c.type} {short}{note}"
            )
            if c.action is Action.REPLACE:
                self.specs[sid].deps.add(f"delete:{c.address}")
            self.ready[c.address] = sid
        elif c.action is Action.UPDATE:
            top = {ch.path.split(".", 1)[0] for ch in c.changes}
            if c.type == "endpoint" and top and top <= TRAFFIC_PATHS and not c.repair:
                return  # only traffic: the SET_TRAFFIC step does it
            self.ready[c.address] = self.add(
                f"update:{c.address}", StepKind.UPDATE, c.address, f"update {c.type} {short} in place"
            )

    def _asset_deps(self, attrs: Mapping[str, Any]) -> set[str]:
        return {self.ready[ref] for key in ("model", "environment") if (ref := attrs.get(key)) in self.ready}

    def _deployment(self, c: _Change) -> None:
        a = c.after or {}
        label = _label(a)
        if c.action in (Action.CREATE, Action.REPLACE):
            deps = self._asset_deps(a)
            e = endpoint_address(str(a.get("endpoint_name", "")))
            if e in self.ready:
                deps.add(self.ready[e])
            if c.action is Action.REPLACE:
                deps.add(f"delete:{c.address}")
            n = int(a.get("instance_count") or 0)
            self.ready[c.address] = self.add(
                f"create:{c.address}",
                StepKind.CREATE,
                c.address,
                f"create deployment {label} ({n} instance{'s' if n != 1 else ''}, {a.get('instance_type') or a.get('kind')})",
                deps=deps,
            )
        elif c.action is Action.UPDATE:
            self._deployment_update(c, a, label)

    def _deployment_update(self, c: _Change, a: Mapping[str, Any], label: str) -> None:
        b = c.before or {}
        top = {ch.path.split(".", 1)[0] for ch in c.changes}
        template = sorted(top - METADATA_PATHS - SCALE_PATHS)
        if c.repair and not template:  # applied again: roll every instance (those at the desired
            template = [f"all again: {c.repair_words}"]  # configuration stay)
        last: str | None = None
        # a repair waits for its endpoint to be back (its router holds the pools)
        e = endpoint_address(str(a.get("endpoint_name", "")))
        ep_ready = {self.ready[e]} if c.repair and e in self.ready else set()
        if "instance_count" in top or c.rescale:
            frm, to = int(b.get("instance_count") or 0), int(a.get("instance_count") or 0)
            what = (f"scale deployment {label} from {frm} to {to} instances" if frm != to else
                    f"bring deployment {label} to {to} serving instance{'s' if to != 1 else ''} (a repair: "
                    "instances outside the router's pool are adopted or stopped)")
            last = self.add(
                f"scale:{c.address}",
                StepKind.SCALE,
                c.address,
                what,
                deps=set(ep_ready),
                params={"from": frm, "to": to, **({"repair": True} if c.rescale else {})},
            )
        if template:
            n = int(a.get("instance_count") or 0)
            deps = self._asset_deps(a) | ({last} if last else set()) | ep_ready
            batches = rollout_batches(n)
            last = self.add(
                f"rollout:{c.address}",
                StepKind.ROLLOUT,
                c.address,
                f"rolling update of deployment {label} ({', '.join(template)}): {n} "
                f"instance{'s' if n != 1 else ''} in {len(batches)} batch{'es' if len(batches) != 1 else ''} "
                f"of {batch_size(n)}",
                deps=deps,
                params={"instances": n, "batch_size": batch_size(n)},
                batches=batches,
            )
            if "instance_count" in top and not c.repair:
                self._warn_scale_and_rollout(c, label, b, a, template)
        elif top & METADATA_PATHS:
            last = self.add(
                f"update:{c.address}",
                StepKind.UPDATE,
                c.address,
                f"update deployment {label} in place ({', '.join(sorted(top & METADATA_PATHS))})",
                deps={last} if last else set(),
            )
        if last:
            self.ready[c.address] = last

    def _warn_scale_and_rollout(
        self, c: _Change, label: str, b: Mapping[str, Any], a: Mapping[str, Any], template: list[str]
    ) -> None:
        self.p.warnings.append(
            _warning(
                f"deployment {label} changes instance_count ({b.get('instance_count')} -> "
                f"{a.get('instance_count')}) together with {', '.join(template)}: the scale runs first, "
                "then the rolling update",
                self.p.desired.resources.get(c.address),
                "instance_count",
                "in production, scale and change the deployment in separate applies",
            )
        )


def build_steps(changes: Mapping[str, _Change], p: _Planner) -> list[Step]:
    """The ordered steps for ``changes`` (topological order of their dependencies)."""
    return _Steps(changes, p).build()
