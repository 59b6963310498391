"""The ordered steps apply carries out, and rolling-update batches.

The rules that order them (DOMAIN.md "Traffic"; the traffic arithmetic is ``reconciler.plan.traffic``):

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
  metadata (tags, description, properties, scale settings) changes;
- a repaired resource (``Change.repair``, see ``reconciler.plan.actions``) is applied again: a
  deployment gets a scale to its count (when interrupted or unsettled: the instances outside the
  router's pool are adopted or stopped) and then a rollout over every instance (instances already
  at the desired configuration stay), which finishes the interrupted operation when the
  configuration is still the one it moved to and rolls it back when the configuration went back;
  an endpoint gets an update and its traffic set again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.resources import (
    DeploymentAttrs,
    Traffic,
    as_deployment,
    as_endpoint,
    endpoint_address,
    fast_model,
)
from reconciler.plan import graph, traffic
from reconciler.plan.actions import Actions, Change, deployment_label, warning
from reconciler.plan.types import (
    Action,
    Batch,
    NoParams,
    RolloutParams,
    ScaleParams,
    Step,
    StepKind,
    StepParams,
    TrafficParams,
)

TRAFFIC_PATHS = frozenset({"traffic", "mirror_traffic"})
SCALE_PATHS = frozenset({"instance_count"})
#: deployment attributes that change without touching the instances
METADATA_PATHS = frozenset({"tags", "description", "properties", "scale_settings"})
#: everything else of a deployment lives in its instances (code, model, environment, variables,
#: probes, request settings, resources ...): changing it is a rolling update


def batch_size(instances: int) -> int:
    """Rolling-update batch: ceil(0.2 x N), at least 1 (10 -> 2, 50 -> 10, 4 -> 1)."""
    return max(1, (instances + 4) // 5)


def rollout_params(instances: int) -> RolloutParams:
    """A rolling update of ``instances`` in batches of ``batch_size(instances)``."""
    return RolloutParams(instances=instances, batch_size=batch_size(instances))


def rollout_batches(instances: int) -> list[Batch]:
    return rollout_params(instances).batches


@dataclass
class _StepSpec:
    kind: StepKind
    address: str
    deps: set[str] = field(default_factory=set)
    params: StepParams = field(default_factory=NoParams)
    description: str = ""


class _Steps:
    """Turns resource changes into ordered steps (see the module docstring for the rules)."""

    def __init__(self, changes: Mapping[str, Change], p: Actions) -> None:
        self.changes = changes
        self.p = p
        self.specs: dict[str, _StepSpec] = {}
        self.ready: dict[str, str] = {}  # address -> step after which it exists and is ready
        self.touched: dict[str, list[str]] = {}  # address -> its create/scale/rollout/update steps
        self.drained: dict[str, set[str]] = {}  # endpoint address -> deployment names drained
        self.drain_result: dict[str, tuple[Traffic, Traffic]] = {}
        self.by_endpoint: dict[str, list[Change]] = {}
        self.users: dict[str, list[str]] = {}  # asset address -> deployments that used it (before)
        for c in changes.values():
            if c.type != "deployment":
                continue
            attrs = as_deployment(c.after or c.before or {})
            self.by_endpoint.setdefault(endpoint_address(str(attrs.get("endpoint_name", ""))), []).append(c)
            before = as_deployment(c.before or {})
            for ref in (before.get("model"), before.get("environment")):
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

    def _of_type(self, rtype: str) -> list[Change]:
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
            description=s.description,
        )

    # -- traffic --------------------------------------------------------------------------------
    def _drain(self, e: Change) -> None:
        if e.before is None:
            return
        before = as_endpoint(e.before)
        bt, bm = before.get("traffic") or {}, before.get("mirror_traffic") or {}
        name = str(before.get("name", e.name)).lower()
        replaced = None
        if e.action not in (Action.DELETE, Action.REPLACE):
            replaced = {
                str(d.before.get("name", "") if d.before else "").lower()
                for d in self.by_endpoint.get(e.address, [])
                if d.action is Action.REPLACE
            }
        drained = traffic.drain(bt, bm, replaced)
        if drained is None:
            return
        hit, new_t, new_m = drained
        if replaced is not None:
            for d in sorted(hit & set(bt)):
                self._warn_drain(e, name, d, bt[d], new_t)
        self.drained[e.address] = hit
        self.drain_result[e.address] = (new_t, new_m)
        self.add(
            f"set_traffic:{e.address}:drain",
            StepKind.SET_TRAFFIC,
            e.address,
            f"move traffic off {', '.join(sorted(hit))} of endpoint {name} first: {traffic.describe(new_t, new_m)}",
            params=TrafficParams(traffic=new_t, mirror_traffic=new_m, phase="drain"),
        )

    def _warn_drain(self, e: Change, ep: str, dep: str, pct: int, new_t: Mapping[str, int]) -> None:
        to = (
            ", ".join(f"{k}={v}%" for k, v in sorted(new_t.items()))
            if new_t
            else "nowhere (the endpoint serves nothing meanwhile)"
        )
        self.p.warnings.append(
            warning(
                f"deployment {ep}/{dep} carries {pct}% of live traffic and is replaced: its traffic "
                f"moves to {to} until the new one is ready",
                self.p.desired.resources.get(f"deployment.{ep}.{dep}"),
                "traffic",
                "a blue/green change avoids this: create a new deployment, move traffic, then delete the old one",
            )
        )

    def _final_traffic(self, e: Change) -> None:
        if e.after is None:
            return
        after = as_endpoint(e.after)
        at, am = after.get("traffic") or {}, after.get("mirror_traffic") or {}
        if e.action in (Action.CREATE, Action.REPLACE):
            base: tuple[Mapping[str, int], Mapping[str, int]] = ({}, {})
        elif e.address in self.drain_result:
            base = self.drain_result[e.address]
        else:
            before = as_endpoint(e.before or {})
            base = (before.get("traffic") or {}, before.get("mirror_traffic") or {})
        ep = str(after.get("name", e.name)).lower()
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
            f"set traffic of endpoint {ep}: {traffic.describe(at, am)}",
            deps=deps,
            params=TrafficParams(traffic=dict(at), mirror_traffic=dict(am), phase="final"),
        )
        # traffic leaves a deployment before it is deleted
        for d in (set(base[0]) | set(base[1])) - (set(at) | set(am)):
            delete = f"delete:deployment.{ep}.{d}"
            if delete in self.specs:
                self.specs[delete].deps.add(sid)

    def _check_targets(self, e: Change, ep: str, names: set[str]) -> None:
        declared = bool(e.after) and bool(as_endpoint(e.after or {}).get("traffic_declared", True))
        for d in sorted(names):
            addr = f"deployment.{ep}.{d}"
            if addr in self.p.after or (addr not in self.changes and addr in self.p.before):
                continue
            self.p.errors.append(traffic.dangling(e.source, e.address, ep, d, declared))

    # -- deletes --------------------------------------------------------------------------------
    def _delete(self, c: Change) -> None:
        sid = self.add(
            f"delete:{c.address}", StepKind.DELETE, c.address, f"delete {c.type} {c.address.split('.', 1)[1]}"
        )
        deps = self.specs[sid].deps
        if c.type == "deployment":
            b = as_deployment(c.before or {})
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
    def _create_or_update(self, c: Change) -> None:
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
            if c.type == "endpoint" and top <= TRAFFIC_PATHS and ((top and not c.repair) or c.rejudge):
                return  # only traffic (or a judgment): the SET_TRAFFIC steps do it
            self.ready[c.address] = self.add(
                f"update:{c.address}", StepKind.UPDATE, c.address, f"update {c.type} {short} in place"
            )

    def _asset_deps(self, attrs: DeploymentAttrs) -> set[str]:
        return {self.ready[ref] for ref in (attrs.get("model"), attrs.get("environment")) if ref in self.ready}

    def _deployment(self, c: Change) -> None:
        a = as_deployment(c.after or {})
        label = deployment_label(a)
        if c.action in (Action.CREATE, Action.REPLACE):
            deps = self._asset_deps(a)
            e = endpoint_address(str(a.get("endpoint_name", "")))
            if e in self.ready:
                deps.add(self.ready[e])
            if c.action is Action.REPLACE:
                deps.add(f"delete:{c.address}")
            n = a["instance_count"]
            self.ready[c.address] = self.add(
                f"create:{c.address}",
                StepKind.CREATE,
                c.address,
                f"create deployment {label} ({n} instance{'s' if n != 1 else ''}, {a.get('instance_type') or a.get('kind')})",
                deps=deps,
            )
        elif c.action is Action.UPDATE:
            self._deployment_update(c, a, label)

    def _deployment_update(self, c: Change, a: DeploymentAttrs, label: str) -> None:
        b = as_deployment(c.before or {})
        top = {ch.path.split(".", 1)[0] for ch in c.changes}
        template = sorted(top - METADATA_PATHS - SCALE_PATHS)
        if c.repair and not template:  # applied again: roll every instance (those at the desired
            template = [f"all again: {c.repair_words}"]  # configuration stay)
        last: str | None = None
        # a repair waits for its endpoint to be back (its router holds the pools)
        e = endpoint_address(str(a.get("endpoint_name", "")))
        ep_ready = {self.ready[e]} if c.repair and e in self.ready else set()
        if "instance_count" in top or c.rescale:
            frm, to = b["instance_count"], a["instance_count"]
            what = (f"scale deployment {label} from {frm} to {to} instances" if frm != to else
                    f"bring deployment {label} to {to} serving instance{'s' if to != 1 else ''} (a repair: "
                    "instances outside the router's pool are adopted or stopped)")
            last = self.add(
                f"scale:{c.address}",
                StepKind.SCALE,
                c.address,
                what,
                deps=set(ep_ready),
                params=ScaleParams(from_=frm, to=to, repair=c.rescale),
            )
        if template:
            n = a["instance_count"]
            deps = self._asset_deps(a) | ({last} if last else set()) | ep_ready
            params = rollout_params(n)
            batches = params.batches
            last = self.add(
                f"rollout:{c.address}",
                StepKind.ROLLOUT,
                c.address,
                f"rolling update of deployment {label} ({', '.join(template)}): {n} "
                f"instance{'s' if n != 1 else ''} in {len(batches)} batch{'es' if len(batches) != 1 else ''} "
                f"of {batch_size(n)}",
                deps=deps,
                params=params,
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
        self, c: Change, label: str, b: DeploymentAttrs, a: DeploymentAttrs, template: list[str]
    ) -> None:
        self.p.warnings.append(
            warning(
                f"deployment {label} changes instance_count ({b.get('instance_count')} -> "
                f"{a.get('instance_count')}) together with {', '.join(template)}: the scale runs first, "
                "then the rolling update",
                self.p.desired.resources.get(c.address),
                "instance_count",
                "in production, scale and change the deployment in separate applies",
            )
        )


def build_steps(changes: Mapping[str, Change], p: Actions) -> list[Step]:
    """The ordered steps for ``changes`` (topological order of their dependencies)."""
    return _Steps(changes, p).build()
