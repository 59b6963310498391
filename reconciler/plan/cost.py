"""What a plan costs: pure arithmetic over its changes and steps and a table of hourly prices.

No I/O here: the prices come in as a ``PriceTable`` (``reconciler.apply.prices`` fetches them from
the Azure Retail Prices API and recon.yaml's ``prices:``), the plan comes out with a ``CostReport``
and, when a ``budget:`` is exceeded, errors in the same place as a quota failure (docs/cost.md; the
gate and money in words: ``reconciler.plan.budget``).

Steady cost, per deployment: 730 hours x instances x hourly price, before and after the apply; under
target-utilization autoscaling at ``min_instances`` and at ``max_instances`` (the min and the max).

Peak, per hour, while the apply runs. Each deployment goes through its own steps in order (before,
during step 1, after step 1, during step 2, ...): a create brings up its instances, a delete keeps
them until it is done, a scale holds the larger of its two counts, a rolling update holds its count
plus the largest batch (the surge), a replace deletes the old instances before the new ones come up.
Steps of different deployments overlap unless the plan orders them: while a step runs, every other
deployment may be at any point of its own steps that the step's ancestors (done) and descendants
(not started) allow, and is counted at the most it costs there. So both colours of a blue/green
change count together (the old one is deleted after the traffic moved to the new one, which is
created first), and a deployment deleted before another is created (an endpoint replaced) never
adds to it. Deployments are counted at their max instances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.errors import Diagnostic
from reconciler.model.resources import DeploymentAttrs, as_deployment, fast_model
from reconciler.model.settings import SETTINGS_FILE, Budget
from reconciler.plan.budget import budget_errors, budget_warnings
from reconciler.plan.types import (
    Action,
    CostReport,
    CostSide,
    DeploymentCost,
    Plan,
    PriceUsed,
    RolloutParams,
    Step,
    StepKind,
)

Attrs = DeploymentAttrs
HOURS_PER_MONTH = 730
SOURCE_API = "azure-retail-prices"
SOURCE_TABLE = "recon.yaml"
#: Azure ML's name for a Kubernetes deployment's instance type when it names none
KUBERNETES_DEFAULT_TYPE = "defaultinstancetype"
_INSTANCE_STEPS = frozenset({StepKind.CREATE, StepKind.DELETE, StepKind.SCALE, StepKind.ROLLOUT, StepKind.UPDATE})


@dataclass(frozen=True)
class Price:
    """An hourly price and where it came from (``date``: the day the API was asked, YYYY-MM-DD)."""

    per_hour: float
    source: str
    date: str | None = None
    product: str | None = None
    meter: str | None = None


@dataclass(frozen=True)
class PriceTable:
    """Prices by instance type (compared case-insensitively), the types the API has no price for
    (``missing``: type -> why) and, when the API could not be asked or did not answer, why
    (``unavailable``: the reason for every managed type neither priced nor missing)."""

    currency: str = "USD"
    region: str = "eastus"
    prices: Mapping[str, Price] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    unavailable: str | None = None

    def find(self, sku: str) -> Price | None:
        folded = sku.lower()
        for name, price in self.prices.items():
            if name.lower() == folded:
                return price
        return None

    def why_missing(self, sku: str) -> str:
        folded = sku.lower()
        for name, why in self.missing.items():
            if name.lower() == folded:
                return why
        return self.unavailable or f"no price for {sku}"


# -- what needs a price -------------------------------------------------------------------------


def is_managed(attrs: Attrs) -> bool:
    return bool(attrs.get("kind", "managed") == "managed")


def instance_type_of(attrs: Attrs) -> str | None:
    """The type a deployment is priced by (a Kubernetes deployment without one: the cluster's default)."""
    sku = attrs.get("instance_type")
    if sku:
        return str(sku)
    return None if is_managed(attrs) else KUBERNETES_DEFAULT_TYPE


def api_instance_types(plan: Plan, unchanged: Mapping[str, Attrs], table: Mapping[str, float]) -> list[str]:
    """The managed instance types of every deployment before or after ``plan`` that recon.yaml's
    ``prices:`` (``table``) does not price: the ones to ask the Retail Prices API for."""
    known = {k.lower() for k in table}
    found: dict[str, str] = {}
    for attrs in _all_attrs(plan, unchanged):
        sku = attrs.get("instance_type")
        if is_managed(attrs) and sku and str(sku).lower() not in known:
            found.setdefault(str(sku).lower(), str(sku))
    return sorted(found.values())


def _all_attrs(plan: Plan, unchanged: Mapping[str, Attrs]) -> Iterable[Attrs]:
    yield from unchanged.values()
    for rc in plan.resource_changes:
        if rc.type == "deployment":
            yield from (as_deployment(a) for a in (rc.before, rc.after) if a is not None)


# -- one deployment -------------------------------------------------------------------------------


def _counts(attrs: Attrs) -> tuple[int, int]:
    """Instances (min, max): the count, or min/max_instances under target-utilization autoscaling."""
    scale = attrs["scale_settings"]
    count = attrs["instance_count"]
    if scale["type"] == "target_utilization":
        low = scale.get("min_instances") or 1
        return low, max(low, scale.get("max_instances") or low)
    return count, count


@dataclass
class _Dep:
    """One deployment of the plan: its sides, prices and the cost at each point of its steps."""

    address: str
    action: Action
    before: CostSide | None
    after: CostSide | None
    steps: list[Step]
    rates: list[float] = field(default_factory=list)  # before, during 1, after 1, during 2, ...
    peak: float = 0.0  # max(rates)


class _Pricer:
    """Prices deployments' sides, remembering each (type, min, max) it priced (plans repeat them:
    10,000 deployments are a handful of sides), the prices used and what has no price."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        self.used: dict[str, PriceUsed] = {}
        self.unpriced: dict[str, None] = {}  # "ADDRESS: why", in order, once each
        self.sides: dict[tuple[str | None, int, int], CostSide] = {}
        self.found: dict[str, Price | None] = {}

    def price(self, sku: str) -> Price | None:
        key = sku.lower()
        if key not in self.found:
            price = self.found[key] = self.table.find(sku)
            if price is not None:
                self.used[key] = PriceUsed(instance_type=sku, per_hour=price.per_hour, source=price.source,
                                           date=price.date, product=price.product, meter=price.meter)
        return self.found[key]

    def side(self, address: str, attrs: Attrs | None) -> CostSide | None:
        if attrs is None:
            return None
        low, high = _counts(attrs)
        sku = instance_type_of(attrs)
        price = self.price(sku) if sku else None
        if price is None:
            self._unpriced(address, attrs, sku)
        key = (sku, low, high)
        side = self.sides.get(key)
        if side is None:
            per_hour = price.per_hour if price is not None else None
            side = self.sides[key] = fast_model(
                CostSide,
                instance_type=sku,
                instances_min=low,
                instances_max=high,
                price_per_hour=per_hour,
                monthly_min=_round(HOURS_PER_MONTH * low * per_hour) if per_hour is not None else None,
                monthly_max=_round(HOURS_PER_MONTH * high * per_hour) if per_hour is not None else None,
            )
        return side

    def _unpriced(self, address: str, attrs: Attrs, sku: str | None) -> None:
        if sku is None:
            why = "no instance type to price"
        elif not is_managed(attrs):
            why = (f"Kubernetes instance type {sku!r} has no price: add it under `prices:` in recon.yaml "
                   "(a node's share per hour)")
        else:
            why = self.table.why_missing(sku)
        self.unpriced[f"{address}: {why}"] = None


def _round(x: float) -> float:
    return round(x, 6)


def _rate(side: CostSide | None, extra: int = 0) -> float:
    """Per hour at the max instances (plus ``extra`` surge instances); 0 when not priced."""
    if side is None or side.price_per_hour is None:
        return 0.0
    return (side.instances_max + extra) * side.price_per_hour


def _chain_rates(dep: _Dep) -> list[float]:
    """The cost per hour before the first step, during each step and after it (module docstring)."""
    cur = _rate(dep.before)
    final = _rate(dep.after)
    rates = [cur]
    for step in dep.steps:
        if step.kind is StepKind.DELETE:
            during, cur = cur, 0.0
        elif step.kind is StepKind.CREATE:
            during = cur = final
        elif step.kind is StepKind.ROLLOUT:
            surge = max((b.size for b in step.params_as(RolloutParams).batches), default=0)
            during, cur = _rate(dep.after, surge), final
        else:  # scale, update: the larger of the two counts while it runs
            during, cur = max(cur, final), final
        rates += [during, cur]
    return rates


# -- the plan -----------------------------------------------------------------------------------


def _deployments(plan: Plan, pricer: _Pricer) -> list[_Dep]:
    gone = {d.address for d in plan.drift if d.kind == "missing"}  # nothing runs: costs nothing before
    steps: dict[str, list[Step]] = {}
    for s in plan.steps:
        if s.kind in _INSTANCE_STEPS and s.address.startswith("deployment."):
            steps.setdefault(s.address, []).append(s)
    deps = []
    for rc in plan.resource_changes:
        if rc.type != "deployment" or rc.action is Action.NOOP:
            continue
        before = None if rc.address in gone or rc.before is None else as_deployment(rc.before)
        after = None if rc.after is None else as_deployment(rc.after)
        dep = _Dep(rc.address, rc.action, pricer.side(rc.address, before), pricer.side(rc.address, after),
                   steps.get(rc.address, []))
        dep.rates = _chain_rates(dep)
        dep.peak = max(dep.rates)
        deps.append(dep)
    return deps


_NONE: frozenset[str] = frozenset()


class _Overlap:
    """The steps' order as a graph, to find what may run at the same time as a step: for every step,
    the deployment steps among its ancestors and among its descendants, gathered once along the
    plan's order (a topological order: every step after those it depends on)."""

    def __init__(self, steps: list[Step], deps: list[_Dep]) -> None:
        # step id -> (deployment, its 1-based place in that deployment's steps)
        self.place = {s.id: (dep, i) for dep in deps for i, s in enumerate(dep.steps, 1)}
        children: dict[str, list[str]] = {}
        for s in steps:
            for d in s.depends_on:
                children.setdefault(d, []).append(s.id)
        self.ancestors = self._gather([(s.id, s.depends_on) for s in steps])
        self.descendants = self._gather([(s.id, children.get(s.id, [])) for s in reversed(steps)])

    def _gather(self, order: list[tuple[str, list[str]]]) -> dict[str, frozenset[str]]:
        found: dict[str, frozenset[str]] = {}
        for sid, edges in order:
            parts = []
            for e in edges:
                part = found.get(e, _NONE)
                if e in self.place:
                    part = part | {e}
                if part:
                    parts.append(part)
            found[sid] = parts[0] if len(parts) == 1 else frozenset().union(*parts) if parts else _NONE
        return found

    def load(self, step: Step, base: float) -> float:
        """The most the deployments may cost per hour while ``step`` runs."""
        own, i = self.place[step.id]
        bounds: dict[int, tuple[_Dep, int, int]] = {}  # other deployments' allowed positions
        for sids, done in ((self.ancestors[step.id], True), (self.descendants[step.id], False)):
            for sid in sids:
                dep, j = self.place[sid]
                if dep is own:
                    continue
                _, lo, hi = bounds.get(id(dep), (dep, 0, len(dep.rates) - 1))
                lo, hi = (max(lo, 2 * j), hi) if done else (lo, min(hi, 2 * j - 2))
                bounds[id(dep)] = (dep, lo, hi)
        total = base - own.peak + own.rates[2 * i - 1]
        for dep, lo, hi in bounds.values():
            total += max(dep.rates[lo : max(lo, hi) + 1]) - dep.peak
        return total


def _peak(plan: Plan, deps: list[_Dep], steady: float) -> tuple[float, str | None]:
    base = steady + sum(d.peak for d in deps)
    overlap = _Overlap(plan.steps, deps)
    best, where = max(steady + sum(d.rates[0] for d in deps), steady + sum(d.rates[-1] for d in deps)), None
    for step in plan.steps:  # in plan order: the first step that reaches the peak names it
        if step.id in overlap.place:
            load = overlap.load(step, base)
            if load > best + 1e-9:
                best, where = load, step.id
    return _round(best), where


def _sum(values: Iterable[float | None]) -> float:
    return _round(sum(v for v in values if v is not None))


def estimate(
    plan: Plan, table: PriceTable, budget: Budget | None = None, unchanged: Mapping[str, Attrs] | None = None
) -> CostReport:
    """The ``CostReport`` of ``plan`` with ``table``'s prices. ``unchanged``: deployments that exist
    and that the plan does not list (outside ``--target``): they cost the same before and after."""
    pricer = _Pricer(table)
    steady = list((unchanged or {}).items()) + [
        (rc.address, as_deployment(rc.after)) for rc in plan.resource_changes
        if rc.type == "deployment" and rc.action is Action.NOOP and rc.after is not None
    ]
    sides = [s for a, attrs in steady if (s := pricer.side(a, attrs)) is not None]
    deps = _deployments(plan, pricer)
    un_min, un_max = _sum(s.monthly_min for s in sides), _sum(s.monthly_max for s in sides)
    report: dict[str, Any] = {
        "currency": table.currency,
        "region": table.region,
        "hours_per_month": HOURS_PER_MONTH,
        "deployments": _deployment_costs(deps),
        "unchanged_count": len(sides),
        "unchanged_monthly_min": un_min,
        "unchanged_monthly_max": un_max,
        "prices": sorted(pricer.used.values(), key=lambda p: p.instance_type.lower()),
        "sources": sorted({p.source for p in pricer.used.values()}),
        "price_date": min((p.date for p in pricer.used.values() if p.date), default=None),
        "unpriced": list(pricer.unpriced),
        "budget_monthly": budget.monthly if budget else None,
        "budget_increase": budget.increase if budget else None,
    }
    if not pricer.used and pricer.unpriced:  # nothing could be priced: no totals, only why
        report["unavailable"] = _common_reason(list(pricer.unpriced), table)
        return CostReport(**report)
    report["before_min"] = _round(un_min + _sum(d.before.monthly_min for d in deps if d.before))
    report["before_max"] = _round(un_max + _sum(d.before.monthly_max for d in deps if d.before))
    report["after_min"] = _round(un_min + _sum(d.after.monthly_min for d in deps if d.after))
    report["after_max"] = _round(un_max + _sum(d.after.monthly_max for d in deps if d.after))
    report["change_min"] = _round(report["after_min"] - report["before_min"])
    report["change_max"] = _round(report["after_max"] - report["before_max"])
    report["peak_hourly"], report["peak_step"] = _peak(plan, deps, sum(_rate(s) for s in sides))
    partial = CostReport(**report)
    return partial.model_copy(update={"errors": budget_errors(partial, budget)})


def _common_reason(unpriced: list[str], table: PriceTable) -> str:
    reasons = {u.split(": ", 1)[1] for u in unpriced}
    if table.unavailable and table.unavailable in reasons:
        return table.unavailable
    return next(iter(reasons)) if len(reasons) == 1 else "; ".join(sorted(unpriced))


def _changes(before: CostSide | None, after: CostSide | None) -> tuple[float | None, float | None]:
    def one(b: float | None, a: float | None) -> float | None:
        return None if a is None or b is None else _round(a - b)

    return (
        one(before.monthly_min if before else 0.0, after.monthly_min if after else 0.0),
        one(before.monthly_max if before else 0.0, after.monthly_max if after else 0.0),
    )


def _deployment_costs(deps: list[_Dep]) -> list[DeploymentCost]:
    memo: dict[tuple[int, int], tuple[float | None, float | None]] = {}  # sides are shared: so are changes
    out = []
    for d in deps:
        key = (id(d.before), id(d.after))
        if key not in memo:
            memo[key] = _changes(d.before, d.after)
        change_min, change_max = memo[key]
        priced = (d.before is None or d.before.price_per_hour is not None) and (
            d.after is None or d.after.price_per_hour is not None
        )
        out.append(fast_model(
            DeploymentCost,
            address=d.address,
            action=d.action,
            before=d.before,
            after=d.after,
            change_min=change_min,
            change_max=change_max,
            peak_hourly=_round(d.peak) if priced else None,
        ))
    return out


def add_cost(
    plan: Plan, table: PriceTable, budget: Budget | None = None, unchanged: Mapping[str, Attrs] | None = None
) -> Plan:
    """``plan`` with its ``cost``; a budget exceeded joins ``errors`` (the plan cannot be applied),
    a budget that could not be checked joins ``warnings``."""
    report = estimate(plan, table, budget, unchanged)
    update: dict[str, Any] = {"cost": report}
    if report.errors:
        update["errors"] = [*plan.errors, *report.errors]
    warnings = [
        Diagnostic(w, file=SETTINGS_FILE, path="budget", severity="warning").to_dict()
        for w in budget_warnings(report, budget)
    ]
    if warnings:
        update["warnings"] = [*plan.warnings, *warnings]
    priced = plan.model_copy(update=update)
    priced.__dict__.pop("digest", None)  # a digest cached on ``plan`` must not follow the update
    return priced
