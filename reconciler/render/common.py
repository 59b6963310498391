"""What the views of ``reconciler.render`` share: value formatting, field changes of a resource,
step and drift descriptions, quota cells, summary lines. The text, JSON and Markdown views all import
this module, so that they say the same thing in the same words; no view imports another."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from reconciler import __version__
from reconciler.model.errors import printable
from reconciler.plan.types import (
    Action,
    DriftItem,
    FieldChange,
    Plan,
    QuotaFamily,
    QuotaUsage,
    ResourceChange,
    RolloutParams,
    ScaleParams,
    Step,
    TrafficParams,
)

# A value the planner cannot know before apply (Terraform's "(known after apply)"). The planner
# puts this exact string as a FieldChange.after (or an attribute of ``after``) to mark it.
UNKNOWN = "(known after apply)"
NO_CHANGES = "No changes. Your endpoints match the configuration."
MAX_VALUE_CHARS = 60  # longer values are summarised; the JSON plan always has them in full

def recon_version(plan: Plan | None = None) -> str:
    """The plan's recorded recon version, else the installed package's."""
    if plan is not None and plan.recon_version:
        return plan.recon_version
    return __version__


def format_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """One attribute value on one line: strings quoted, JSON for the rest, long values summarised.

    A summary keeps enough to tell two values apart (a prefix of a string, the keys of a mapping)
    and says how long the full value is, so that nothing misleads a reader.
    """
    if value == UNKNOWN:
        return UNKNOWN
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return json.dumps(value[: limit - 20], ensure_ascii=False)[:-1] + f'…" ({len(value)} chars)'
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in sorted(value, key=str))
        if len(keys) > limit - 12:
            keys = keys[: limit - 13] + "…"
        return f"{{{len(value)} keys: {keys}}}"
    if isinstance(value, list | tuple):
        return f"[{len(value)} items]"
    return text[: limit - 1] + "…"


def format_number(value: float | int | None) -> str:
    """Quota numbers: integers without a decimal point, others with at most two decimals."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def field_changes(rc: ResourceChange) -> list[FieldChange]:
    """The attribute changes to show for one resource, marking those that force a replacement.

    Uses the planner's ``changes``; when it gave none, derives them: every set top-level
    attribute for a create, the differing leaves of ``before``/``after`` for an update or replace.
    """
    changes = list(rc.changes)
    if not changes and rc.action is Action.CREATE and rc.after:
        changes = [FieldChange(path=k, after=v) for k, v in _leaves(rc.after, "") if _is_set(v)]
    elif not changes and rc.action in (Action.UPDATE, Action.REPLACE):
        changes = _leaf_diff(rc.before or {}, rc.after or {}, "")
    return [
        fc.model_copy(update={"forces_replacement": True})
        if not fc.forces_replacement and _forces(fc.path, rc.replace_paths)
        else fc
        for fc in changes
    ]


def replace_reason(rc: ResourceChange) -> str:
    """Why a resource is replaced: the planner's reason, else the paths that force it."""
    if rc.reason:
        return rc.reason
    if rc.replace_paths:
        return f"{', '.join(rc.replace_paths)} cannot change in place"
    return "the resource cannot be updated in place"


def step_summary(step: Step) -> str:
    """One line per step: ``rollout deployment.e.blue: 10 instances in 5 batches of 2``."""
    p = step.params
    head = f"{step.kind.value} {step.address}"
    if isinstance(p, ScaleParams):
        return f"{head}: {p.from_} -> {p.to} instances"
    if isinstance(p, RolloutParams):
        return f"{head}: {_batches_text(p)}"
    if isinstance(p, TrafficParams):
        part = f" (traffic step {p.part}/{p.parts})" if p.parts else ""
        text = f"{head}{part}: traffic {pct_map(p.traffic)}"
        if p.mirror_traffic:
            text += f", mirror {pct_map(p.mirror_traffic)}"
        if p.phase == "drain":
            text += " (drain before delete)"
        return text
    return head


def gate_lines(step: Step) -> list[str]:
    """A guarded step's gates, one line each, then what a failure does: ``batch 2/5: bake 30s,
    5xx <= 1%, p99 <= 1.5x old, >= 50 requests``; ``then bake 30s, ...`` after a traffic step;
    none for an unguarded step."""
    p = step.params
    lines: list[str] = []
    if isinstance(p, RolloutParams) and p.gate is not None:
        count = len(p.batches) or 1
        if p.gate.once:  # the provider's metrics do not tell the old and new instances apart (azure)
            lines.append(f"after batch {count}/{count}, the whole deployment (the provider's metrics do not tell "
                         f"old and new instances apart): {p.gate.describe()}")
        for i in [] if p.gate.once else range(1, count + 1):
            lines.append(f"batch {i}/{count}: {p.gate.describe()}")
        if p.gate.on_failure == "rollback":
            lines.append(f"on failure: the updated instances roll back to the previous configuration, "
                         f"{p.batch_size} at a time")
        else:
            lines.append("on failure: pause where it is (recon plan then shows how to go on)")
    elif isinstance(p, TrafficParams) and p.gates:
        if p.mirror_gate is not None:
            lines.append(f"first, {'+'.join(p.mirror_gate.judged)} on its mirrored answers: {p.mirror_gate.describe()}")
        if p.gate is not None:
            lines.append(f"then {p.gate.describe()}")
        gate = p.gate or p.mirror_gate
        if gate is not None and gate.on_failure == "pause":
            lines.append("on failure: pause where it is (recon plan then shows how to go on)")
        elif p.restore is not None:
            lines.append(f"on failure: traffic back to {pct_map(p.restore.traffic)}"
                         + (f", mirror {pct_map(p.restore.mirror_traffic)}" if p.restore.mirror_traffic else ""))
    return lines


_FILLER = {"of", "from", "to", "in", "place", "the", "a", "and", "at"}


def step_detail(step: Step) -> str | None:
    """The planner's description of a step when it says more than ``step_summary`` does.

    Descriptions are display-only sentences; most repeat the summary ("create model m:1"), some
    add to it ("(code, model)", "without traffic"). Only those are worth a line.
    """
    if not step.description:
        return None
    words = set(re.split(r"[^a-z0-9]+", step_summary(step).lower()))
    extra = set(re.split(r"[^a-z0-9]+", step.description.lower())) - words - _FILLER - {""}
    return step.description if extra else None


def drift_line(item: DriftItem) -> str:
    """What drifted on one resource, in words: recorded -> actual (the provider's detail kept)."""
    if item.kind == "changed":
        text = f"{item.path or '(attributes)'}: {format_value(item.recorded)} -> {format_value(item.actual)}"
        return f"{text} ({item.detail})" if item.detail else text
    if item.kind == "missing":
        return f"missing: {item.detail or 'recorded in state, gone from the real world'}"
    return f"unmanaged: {item.detail or 'carries recon labels but no state knows it'}; recon never deletes it"


def drift_symbol(item: DriftItem) -> str:
    return {"changed": "~", "missing": "-", "unmanaged": "?"}[item.kind]


def drift_counts(drift: Iterable[DriftItem]) -> dict[str, int]:
    """Per kind; ``changed`` counts resources, not attributes."""
    items = list(drift)
    changed = {d.address for d in items if d.kind == "changed"}
    return {
        "changed": len(changed),
        "missing": sum(d.kind == "missing" for d in items),
        "unmanaged": sum(d.kind == "unmanaged" for d in items),
    }


def split_repairs(plan: Plan) -> tuple[list[ResourceChange], list[ResourceChange]]:
    """The plan's changes as (repairs of its drift, other pending changes).

    A plan is made against the refreshed state, so drift comes back as changes: a resource gone
    behind recon's back is created again, a changed attribute set back. Those changes are the
    repair of the drift, not changes waiting in the configuration; ``recon drift`` lists them
    apart. A change counts as a repair when every attribute it changes drifted (or, for a
    create, when the resource went missing)."""
    missing = {d.address for d in plan.drift if d.kind == "missing"}
    drifted: dict[str, set[str]] = {}
    for d in plan.drift:
        if d.kind == "changed":
            drifted.setdefault(d.address, set()).add(d.path or "")
    repairs: list[ResourceChange] = []
    pending: list[ResourceChange] = []
    for rc in plan.resource_changes:
        if rc.action is Action.NOOP:
            continue
        paths = drifted.get(rc.address)
        repaired = (rc.action is Action.CREATE and rc.address in missing) or (
            rc.action is Action.UPDATE
            and paths is not None
            and all(_under(fc.path, paths) for fc in field_changes(rc))
        )
        (repairs if repaired else pending).append(rc)
    return repairs, pending


def _under(path: str, prefixes: set[str]) -> bool:
    return "" in prefixes or any(path == p or path.startswith(p + ".") for p in prefixes)


def drift_summary(drift: list[DriftItem]) -> str:
    if not drift:
        return "No drift. The real world matches the recorded state."
    c = drift_counts(drift)
    return f"Drift: {c['changed']} changed, {c['missing']} missing, {c['unmanaged']} unmanaged."


def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        return NO_CHANGES
    c = plan.counts()
    return f"Plan: {c['add']} to add, {c['change']} to change, {c['destroy']} to destroy."


def warning_text(w: dict[str, Any]) -> str:
    """A Diagnostic.to_dict() entry as ``file:line: path: message (hint)``."""
    where = w.get("file") or ""
    if where and w.get("line") is not None:
        where += f":{w['line']}"
    text = f"{where}: " if where else ""
    if w.get("path"):
        text += f"{w['path']}: "
    text += str(w.get("message", ""))
    if w.get("hint"):
        text += f" ({w['hint']})"
    return printable(text)  # a value from a file cannot forge a line of output


def quota_status(fam: QuotaFamily) -> str:
    if fam.limit is None:
        return "not checked"
    return "ok" if fam.ok else "EXCEEDED"


def capacity_text(capacity: dict[str, Any]) -> str:
    """The provider's capacity against what the plan needs, in words:
    ``this machine: 2 CPUs, 23.5 GB; needed: 0 CPUs, 0 GB``.

    "needed" counts explicit ``resources.requests`` (what the plan enforces); the VM sizes of the
    instance types are what Azure would reserve, not enforced here (the planner warns when they
    add up to more than the provider has)."""
    description = str(capacity.get("description") or "")
    where = description.split(":", 1)[0].strip() if description else "the provider"
    text = f"{where}: {_size(capacity.get('cpus'), capacity.get('memory_gb'))}"
    return text + f"; needed: {_size(capacity.get('needed_cpus'), capacity.get('needed_memory_gb'))}"


def capacity_status(capacity: dict[str, Any]) -> str:
    """``ok`` or ``EXCEEDED`` (explicit requests beyond what the provider can place)."""
    for need, have in (("needed_cpus", "cpus"), ("needed_memory_gb", "memory_gb")):
        if capacity.get(have) is not None and float(capacity.get(need) or 0) > float(capacity[have]):
            return "EXCEEDED"
    return "ok"


def _size(cpus: Any, memory_gb: Any) -> str:
    cpu_text = "? CPUs" if cpus is None else f"{format_number(round(float(cpus), 2))} CPU{'s' if cpus != 1 else ''}"
    mem_text = "? GB" if memory_gb is None else f"{format_number(round(float(memory_gb), 1))} GB"
    return f"{cpu_text}, {mem_text}"


def usage_text(u: QuotaUsage) -> str:
    """One deployment's share: ``Standard_DS3_v2: ceil(1.2 x 10) = 12 instances x 4 cores = 48``."""
    if u.exempt:
        reserve = f"{u.reserved_instances} instances (exempt from the 20% reserve)"
    else:
        reserve = f"ceil(1.2 x {u.instances}) = {u.reserved_instances} instances"
    cores = format_number(u.cores_per_instance)
    return f"{u.address} {u.instance_type}: {reserve} x {cores} cores = {format_number(u.cores)} cores"


def _is_set(v: Any) -> bool:
    return v is not None and v != {} and v != []


def _leaves(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """Dotted paths to the non-mapping values of a nested mapping, sorted."""
    if not isinstance(value, dict) or (not value and prefix):
        return [(prefix, value)]
    out: list[tuple[str, Any]] = []
    for key in sorted(value, key=str):
        out += _leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    return out


def _forces(path: str, replace_paths: list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in replace_paths)


def _leaf_diff(before: Any, after: Any, prefix: str) -> list[FieldChange]:
    if isinstance(before, dict) and isinstance(after, dict) and before and after:
        out: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _leaf_diff(before.get(key), after.get(key), path)
        return out
    return [] if before == after else [FieldChange(path=prefix, before=before, after=after)]


def _batches_text(p: RolloutParams) -> str:
    batches = p.batches
    n = p.instances
    size = p.batch_size or (batches[0].size if batches else max(1, n))
    count = len(batches) or (math.ceil(n / size) if size else 0)
    noun = "instance" if n == 1 else "instances"
    text = f"{n} {noun} in {count} batch{'es' if count != 1 else ''} of {size}"
    last = batches[-1].size if batches else (n - size * (count - 1) if count else 0)
    if count > 1 and last != size:
        text += f" (last batch {last})"
    return text


def pct_map(m: Any) -> str:
    if not m:
        return "{}"
    return "{" + ", ".join(f"{k}: {v}%" for k, v in sorted(m.items())) + "}"


def group_drift(drift: list[DriftItem]) -> list[tuple[str, list[DriftItem]]]:
    groups: dict[str, list[DriftItem]] = {}
    for d in drift:
        groups.setdefault(d.address, []).append(d)
    return list(groups.items())
