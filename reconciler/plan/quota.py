"""Quota, per VM family, in the service's own terms (DOMAIN.md "Quota").

A managed deployment reserves ``ceil(1.2 * instances) * cores`` of its VM family's quota
(``instances`` is ``max_instances`` under target_utilization autoscaling; exempt SKUs reserve no
extra 20%). Kubernetes deployments use their cluster's capacity and are not counted here.

Counted twice per family: after the apply (every deployment in ``after``) and at its peak (the union
of before and after; a deployment in both counts once, at its larger size, because an in-place
update keeps it and a replace deletes before it creates; two colours of a blue/green change are two
deployments and both count). Families without a declared limit are reported, never checked; no
``quota`` at all means no check (``checked`` False). Separately, a provider's ``Capacity`` (cpus,
memory) bounds what the deployments need after the apply (with ``rollout_reserve``: ceil(1.2 x
instances) of each, the room its rolling updates surge into).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.model.resources import DeploymentAttrs, InstanceType, fast_model
from reconciler.plan.provider import Capacity
from reconciler.plan.types import QuotaFamily, QuotaReport, QuotaUsage

Attrs = DeploymentAttrs


@dataclass(frozen=True)
class _Need:
    usage: QuotaUsage
    family: str
    label: str  # "endpoint/deployment", as people write it


def reserved_instances(instances: int, exempt: bool) -> int:
    """``ceil(1.2 * instances)`` in integers (1.2 * 10 is 12.000000000000002 in floats)."""
    return instances if exempt else (6 * instances + 4) // 5


def _lookup(catalog: Mapping[str, InstanceType]) -> dict[str, tuple[str, InstanceType]]:
    return {k.lower(): (k, v) for k, v in catalog.items()}


def _instances(attrs: Attrs) -> int:
    scale = attrs["scale_settings"]
    if scale["type"] == "target_utilization":
        return scale.get("max_instances") or attrs["instance_count"]
    return attrs["instance_count"]


def _need(address: str, attrs: Attrs, catalog: dict[str, tuple[str, InstanceType]]) -> _Need | None:
    if attrs.get("kind", "managed") != "managed" or not attrs.get("instance_type"):
        return None
    found = catalog.get(str(attrs["instance_type"]).lower())
    if found is None:
        return None  # unknown instance types are the loader's error to report
    name, it = found
    n = _instances(attrs)
    reserved = reserved_instances(n, it.quota_exempt)
    usage = fast_model(
        QuotaUsage,
        address=address,
        instance_type=name,
        instances=n,
        reserved_instances=reserved,
        cores_per_instance=float(it.cores),
        cores=float(reserved * it.cores),
        exempt=it.quota_exempt,
    )
    label = f"{attrs.get('endpoint_name', '')}/{attrs.get('name', '')}"
    return _Need(usage, it.family, label)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _explain(n: _Need) -> str:
    u = n.usage
    if u.exempt:
        how = f"{u.instances} instances x {_num(u.cores_per_instance)} cores, {u.instance_type} is exempt from the 20% reserve"
    else:
        how = f"ceil(1.2 x {u.instances}) = {u.reserved_instances} instances x {_num(u.cores_per_instance)} cores"
    return how


def _family_errors(
    family: str,
    limit: int,
    before: dict[str, _Need],
    after: dict[str, _Need],
    peak: float,
    total_after: float,
) -> list[str]:
    at_peak = total_after <= limit
    total = peak if at_peak else total_after
    errors: list[str] = []
    for address, n in sorted(after.items()):
        old = before.get(address)
        if old is not None and old.usage.cores >= n.usage.cores:
            continue  # not new and not growing: not what breaks the limit
        own = max(n.usage.cores, old.usage.cores if old else 0.0) if at_peak else n.usage.cores
        msg = (
            f"deployment {n.label} needs {_num(n.usage.cores)} cores of {family} ({_explain(n)}); "
            f"limit {limit}, already used {_num(total - own)}"
        )
        if at_peak:
            msg += (
                " at the peak of this apply, while the deployments it replaces still exist "
                "(create, move traffic and delete in separate applies, or ask for more quota)"
            )
        errors.append(msg)
    if not errors:
        errors.append(
            f"the deployments need {_num(total)} cores of {family} "
            f"{'at the peak of this apply' if at_peak else 'after this apply'}; limit {limit}"
        )
    return errors


def check_quota(
    before: Mapping[str, Attrs],
    after: Mapping[str, Attrs],
    instance_types: Mapping[str, InstanceType],
    limits: Mapping[str, int] | None,
    capacity: Capacity | None = None,
) -> QuotaReport:
    """Quota report for deployments ``before`` and ``after`` the apply (address -> attributes)."""
    catalog = _lookup(instance_types)
    by_family: dict[str, tuple[dict[str, _Need], dict[str, _Need]]] = {}
    seen: dict[int, _Need | None] = {}  # by id(attrs): an unchanged deployment is worked out once
    for side, deployments in enumerate((before, after)):
        for address, attrs in deployments.items():
            key = id(attrs)
            need = seen[key] if key in seen else seen.setdefault(key, _need(address, attrs, catalog))
            if need is not None:
                by_family.setdefault(need.family, ({}, {}))[side][address] = need
    families: list[QuotaFamily] = []
    errors: list[str] = []
    for family, (b, a) in sorted(by_family.items()):
        total_before = sum(n.usage.cores for n in b.values())
        total_after = sum(n.usage.cores for n in a.values())
        peak = sum(
            max(b[x].usage.cores if x in b else 0.0, a[x].usage.cores if x in a else 0.0)
            for x in set(b) | set(a)
        )
        limit = None if limits is None else limits.get(family)
        ok = limit is None or peak <= limit
        if not ok and limit is not None:
            errors.extend(_family_errors(family, limit, b, a, peak, total_after))
        usages = [n.usage for _, n in sorted(a.items())]
        families.append(
            QuotaFamily(
                family=family,
                limit=limit,
                before=total_before,
                after=total_after,
                peak=peak,
                ok=ok,
                usages=usages,
            )
        )
    cap_report = None
    if capacity is not None:
        cap_report, cap_errors = check_capacity(after, catalog, capacity)
        errors.extend(cap_errors)
    return QuotaReport(checked=limits is not None, families=families, capacity=cap_report, errors=errors)


# -- provider capacity --------------------------------------------------------------------------

def _per_instance(attrs: Attrs, catalog: dict[str, tuple[str, InstanceType]]) -> tuple[float, float, bool]:
    """CPUs and GiB per instance, and whether they were asked for explicitly (``resources.requests``)
    rather than taken from the VM size in the catalog."""
    resources = attrs.get("resources")
    requests = (resources.get("requests") if resources else None) or {}
    cpu = parse_cpu(requests["cpu"]) if "cpu" in requests else None
    mem = parse_memory_gb(requests["memory"]) if "memory" in requests else None
    explicit = cpu is not None or mem is not None
    found = catalog.get(str(attrs.get("instance_type") or "").lower())
    if found is not None and not explicit:
        cpu, mem = found[1].cores, found[1].memory_gb
    return cpu or 0.0, mem or 0.0, explicit


def check_capacity(
    after: Mapping[str, Attrs], catalog: dict[str, tuple[str, InstanceType]], capacity: Capacity
) -> tuple[dict[str, Any], list[str]]:
    """What the deployments after the apply need against what the provider can place.

    Only explicit per-instance requests (``resources.requests``) must fit: an Azure VM size says
    what Azure would reserve, not what an instance takes on the provider's machine, so those
    sizes are reported (``catalog_cpus``, ``catalog_memory_gb``) but not enforced.
    """
    cpus = mem = cat_cpus = cat_mem = 0.0
    for attrs in after.values():
        c, m, explicit = _per_instance(attrs, catalog)
        n = attrs["instance_count"]
        if capacity.rollout_reserve:  # room for a rollout's surge: ceil(1.2 x instances), max under autoscaling
            n = reserved_instances(_instances(attrs), False)
        if explicit:
            cpus, mem = cpus + c * n, mem + m * n
        else:
            cat_cpus, cat_mem = cat_cpus + c * n, cat_mem + m * n
    report = {
        "cpus": capacity.cpus,
        "memory_gb": capacity.memory_gb,
        "description": capacity.description,
        "needed_cpus": cpus,
        "needed_memory_gb": round(mem, 3),
        "catalog_cpus": cat_cpus,
        "catalog_memory_gb": round(cat_mem, 3),
    }
    when = "after this apply"
    if capacity.rollout_reserve:
        report["rollout_reserve"] = True
        when += " with the 20% rollout reserve (ceil(1.2 x instances))"
    where = f" ({capacity.description})" if capacity.description else ""
    errors = []
    if capacity.cpus is not None and cpus > capacity.cpus:
        errors.append(
            f"the deployments request {_num(cpus)} CPUs {when}; the provider can place "
            f"{_num(capacity.cpus)}{where}"
        )
    if capacity.memory_gb is not None and mem > capacity.memory_gb:
        errors.append(
            f"the deployments request {mem:.1f} GiB of memory {when}; the provider can place "
            f"{capacity.memory_gb:.1f} GiB{where}"
        )
    return report, errors
