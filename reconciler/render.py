"""Plan output for people and for machines: text, JSON, drift reports, graphs and state listings.

Every function here is pure: data in, string out. Nothing prints and nothing reads the clock, so
the same plan always renders to the same bytes (colour only when asked for). Strings come back
without a trailing newline; the caller adds one when writing.

- ``render_text(plan, color=False)``: Terraform-like terminal output (symbols, ``before -> after``,
  reasons for replacements, the ordered steps, the quota table, drift apart from changes, warnings,
  errors, then exactly ``Plan: N to add, N to change, N to destroy.``).
- ``render_json(plan)``: the versioned public JSON documented in ``docs/plan-json.md``;
  ``resource_changes`` and ``resource_drift`` follow Terraform's plan JSON entries.
- ``render_drift(drift, fmt, plan=None)``: ``recon drift`` in text, json or markdown.
- ``render_graph(g, fmt)``: DOT or Mermaid, sorted so that the output is stable.
- ``render_state_list(state)`` / ``render_state_show(resource)``: ``recon state list|show``.

Markdown for pull-request comments lives in ``reconciler.render_markdown``; it shares the value
formatting and step descriptions defined here so that both say the same thing in the same words.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from reconciler import __version__
from reconciler.plan import (
    PLAN_FORMAT_VERSION,
    Action,
    DriftItem,
    FieldChange,
    Plan,
    QuotaFamily,
    QuotaUsage,
    ResourceChange,
    Step,
    StepKind,
)
from reconciler.state import State, StateResource

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "UNKNOWN",
    "render_drift",
    "render_graph",
    "render_json",
    "render_plan",
    "render_state_list",
    "render_state_show",
    "render_text",
]

# A value the planner cannot know before apply (Terraform's "(known after apply)"). The planner
# puts this exact string as a FieldChange.after (or an attribute of ``after``) to mark it.
UNKNOWN = "(known after apply)"

HEADER = "recon will perform the following actions:"
NO_CHANGES = "No changes. Your endpoints match the configuration."
DRIFT_HEADER = "Objects have changed outside of recon"
MAX_VALUE_CHARS = 60  # longer values are summarised; the JSON plan always has them in full

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
}
_COLOR = {"+": "32", "~": "33", "-": "31", "?": "36", "!": "31"}  # ANSI: green, yellow, red, cyan


# --------------------------------------------------------------------------------------------
# Shared formatting (also used by render_markdown)
# --------------------------------------------------------------------------------------------


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
    if step.kind is StepKind.SCALE:
        return f"{head}: {p.get('from', '?')} -> {p.get('to', '?')} instances"
    if step.kind is StepKind.ROLLOUT:
        return f"{head}: {_batches_text(step)}"
    if step.kind is StepKind.SET_TRAFFIC:
        text = f"{head}: traffic {_pct_map(p.get('traffic'))}"
        if p.get("mirror_traffic"):
            text += f", mirror {_pct_map(p.get('mirror_traffic'))}"
        if p.get("phase") == "drain":
            text += " (drain before delete)"
        return text
    return head


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
    return text


def quota_status(fam: QuotaFamily) -> str:
    if fam.limit is None:
        return "not checked"
    return "ok" if fam.ok else "EXCEEDED"


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


def _batches_text(step: Step) -> str:
    n = int(step.params.get("instances", sum(b.size for b in step.batches)))
    size = int(step.params.get("batch_size") or (step.batches[0].size if step.batches else max(1, n)))
    count = len(step.batches) or (math.ceil(n / size) if size else 0)
    noun = "instance" if n == 1 else "instances"
    text = f"{n} {noun} in {count} batch{'es' if count != 1 else ''} of {size}"
    last = step.batches[-1].size if step.batches else (n - size * (count - 1) if count else 0)
    if count > 1 and last != size:
        text += f" (last batch {last})"
    return text


def _pct_map(m: Any) -> str:
    if not m:
        return "{}"
    return "{" + ", ".join(f"{k}: {v}%" for k, v in sorted(m.items())) + "}"


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


class _Paint:
    """ANSI colour when enabled, the plain text otherwise (byte-stable without colour)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def symbol(self, sym: str) -> str:
        if sym == "-/+":
            return self("-", "31") + "/" + self("+", "32")
        return self(sym, _COLOR.get(sym.strip(), "0"))

    def bold(self, text: str) -> str:
        return self(text, "1")


def render_text(plan: Plan, color: bool = False) -> str:
    """The plan for a terminal. No ANSI escape at all unless ``color`` is True."""
    paint = _Paint(color)
    out: list[str] = []
    changes = [rc for rc in plan.resource_changes if rc.action is not Action.NOOP]
    if changes:
        out += [paint.bold(HEADER), ""]
        for rc in changes:
            out += _resource_lines(rc, paint) + [""]
        out += _steps_lines(plan.steps)
    out += _quota_lines(plan, paint)
    if plan.drift:
        out += _drift_lines(plan.drift, paint)
    out += _diagnostic_lines(plan, paint)
    if plan.errors:
        out.append(paint("This plan has errors and cannot be applied.", "31"))
    out.append(paint.bold(summary_line(plan)))
    return "\n".join(out)


def render_plan(plan: Plan, fmt: str = "text", color: bool = False, **markdown_options: Any) -> str:
    """Dispatch on ``--format``: text, json or markdown (options go to ``render_markdown``)."""
    if fmt == "text":
        return render_text(plan, color=color)
    if fmt == "json":
        return render_json(plan)
    if fmt == "markdown":
        from reconciler.render_markdown import render_markdown

        return render_markdown(plan, **markdown_options)
    raise ValueError(f"unknown plan format {fmt!r} (expected text, json or markdown)")


def _resource_lines(rc: ResourceChange, paint: _Paint) -> list[str]:
    where = f" ({rc.source})" if rc.source else ""
    lines = [
        f"  # {rc.address} {_VERB[rc.action]}{where}",
        f"  {paint.symbol(rc.action.symbol)} {paint.bold(rc.address)}",
    ]
    for fc in field_changes(rc):
        lines.append("      " + _change_text(fc, paint))
    if rc.action is Action.REPLACE:
        lines.append(f"      # replaced because {replace_reason(rc)}")
    elif rc.reason:
        lines.append(f"      # {rc.reason}")
    return lines


def _change_text(fc: FieldChange, paint: _Paint) -> str:
    if fc.before is None and fc.after is not None:
        text = f"{paint.symbol('+')} {fc.path}: {format_value(fc.after)}"
    elif fc.after is None and fc.before is not None:
        text = f"{paint.symbol('-')} {fc.path}: {format_value(fc.before)} -> null"
    else:
        text = f"{paint.symbol('~')} {fc.path}: {format_value(fc.before)} -> {format_value(fc.after)}"
    if fc.forces_replacement:
        text += " " + paint("# forces replacement", "31")
    return text


def _steps_lines(steps: list[Step]) -> list[str]:
    if not steps:
        return []
    number = {s.id: i for i, s in enumerate(steps, 1)}
    width = len(str(len(steps)))
    lines = ["Steps:"]
    for i, step in enumerate(steps, 1):
        after = [str(n) for n in sorted(number[d] for d in step.depends_on if d in number)]
        text = f"  {i:>{width}}. {step_summary(step)}"
        if after:
            text += f"  (after {', '.join(after)})"
        lines.append(text)
        detail = step_detail(step)
        if detail:
            lines.append(f"  {'':>{width}}  {detail}")
    return lines + [""]


def _quota_lines(plan: Plan, paint: _Paint) -> list[str]:
    q = plan.quota
    if not (q.families or q.errors or q.capacity):
        return []
    lines = ["Quota (vCPUs per VM family):"]
    if q.families:
        rows = [["family", "limit", "before", "after", "peak", "status"]]
        for f in q.families:
            nums = [format_number(v) for v in (f.limit, f.before, f.after, f.peak)]
            rows.append([f.family, *nums, quota_status(f)])
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:5], widths[1:5], strict=True)]
            status = paint(r[5], "31") if r[5] == "EXCEEDED" else r[5]
            lines.append("  " + "  ".join(cells + [status]))
        for f in q.families:
            if not f.ok:
                lines += [f"  {f.family} usage:"] + [f"    {usage_text(u)}" for u in f.usages]
    if q.capacity:
        # a cloud provider's live quota figures are a sentence: shown whole, on a line of its own
        live = q.capacity.get("description") if q.capacity.get("cpus") is None else None
        shown = {k: v for k, v in q.capacity.items() if not (live and k == "description")}
        lines.append("  capacity: " + ", ".join(f"{k}={format_value(v)}" for k, v in sorted(shown.items())))
        if live:
            lines.append(f"  live quota: {live}")
    lines += [f"  {paint('Error:', '31')} {e}" for e in q.errors]
    return lines + [""]


def _drift_lines(drift: list[DriftItem], paint: _Paint) -> list[str]:
    lines = [paint.bold(f"{DRIFT_HEADER} (recorded -> actual):"), ""]
    for address, items in _group_drift(drift):
        kinds = {d.kind for d in items}
        sym = "~" if "changed" in kinds else drift_symbol(items[0])
        lines.append(f"  {paint.symbol(sym)} {address}")
        lines += [f"      {drift_line(d)}" for d in items]
    lines += [
        "",
        "  These changes happened outside of recon; they are listed apart from recon's own actions.",
        "",
    ]
    return lines


def _group_drift(drift: list[DriftItem]) -> list[tuple[str, list[DriftItem]]]:
    groups: dict[str, list[DriftItem]] = {}
    for d in drift:
        groups.setdefault(d.address, []).append(d)
    return list(groups.items())


def _diagnostic_lines(plan: Plan, paint: _Paint) -> list[str]:
    lines = [f"{paint('Warning:', '33')} {warning_text(w)}" for w in plan.warnings]
    lines += [f"{paint('Error:', '31')} {e}" for e in plan.errors]
    return lines + [""] if lines else []


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def render_json(plan: Plan) -> str:
    """The public, versioned plan JSON (``docs/plan-json.md``); key order is fixed."""
    doc: dict[str, Any] = {
        "format_version": PLAN_FORMAT_VERSION,
        "recon_version": recon_version(plan),
        "plan_digest": plan.digest,
        "created_at": plan.created_at or None,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "desired_digest": plan.desired_digest,
        "workspace": plan.workspace,
        "provider": plan.provider,
        "targets": list(plan.targets),
        "destroy": plan.destroy,
        "applicable": plan.applicable,
        "resource_changes": [_rc_json(rc) for rc in plan.resource_changes],
        "resource_drift": resource_drift(plan.drift, plan),
        "drift": [d.model_dump(mode="json") for d in plan.drift],
        "steps": [s.model_dump(mode="json") for s in plan.steps],
        "quota": plan.quota.model_dump(mode="json"),
        "warnings": list(plan.warnings),
        "errors": list(plan.errors),
        "summary": plan.counts(),
    }
    return _dumps(doc)


def _rc_json(rc: ResourceChange) -> dict[str, Any]:
    entry = rc.to_terraform()
    entry["source"] = rc.source
    entry["depends_on"] = list(rc.depends_on)
    return entry


def resource_drift(drift: list[DriftItem], plan: Plan | None = None) -> list[dict[str, Any]]:
    """Terraform's ``resource_drift`` entries, one per drifted resource recon manages.

    ``changed`` items become ``["update"]`` with ``before``/``after`` holding only the drifted
    attributes (recorded/actual, nested by path); ``missing`` becomes ``["delete"]``. Unmanaged
    objects have no Terraform counterpart; they are only in recon's own ``drift`` list.
    """
    out = []
    for address, items in _group_drift([d for d in drift if d.kind != "unmanaged"]):
        rtype, name = _split_address(address, plan)
        before: dict[str, Any] | None = {}
        after: dict[str, Any] | None = {}
        if any(d.kind == "missing" for d in items):
            actions, after = ["delete"], None
            before = next((d.recorded for d in items if isinstance(d.recorded, dict)), None)
        else:
            actions = ["update"]
            for d in items:
                _put(before, d.path or "", d.recorded)
                _put(after, d.path or "", d.actual)
        change = {"actions": actions, "before": before, "after": after}
        out.append(
            {
                "address": address,
                "mode": "managed",
                "type": f"recon_{rtype}",
                "name": name,
                "provider_name": f"recon/{plan.provider if plan else 'local'}",
                "change": change,
            }
        )
    return out


def _split_address(address: str, plan: Plan | None) -> tuple[str, str]:
    rc = plan.change(address) if plan is not None else None
    if rc is not None:
        return rc.type, rc.name
    rtype, _, rest = address.partition(".")
    return rtype, rest.rsplit(".", 1)[-1] if rtype == "deployment" else rest


def _put(target: dict[str, Any] | None, path: str, value: Any) -> None:
    if target is None:
        return
    parts = path.split(".") if path else ["(attributes)"]
    for part in parts[:-1]:
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[parts[-1]] = value


def _dumps(doc: Any) -> str:
    # Compact, like `terraform show -json`: with an indent Python falls back to its pure-Python
    # encoder, which took 11 s of a 16,000-resource plan; compact JSON uses the C encoder.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


# --------------------------------------------------------------------------------------------
# Drift reports (recon drift)
# --------------------------------------------------------------------------------------------


def render_drift(
    drift: list[DriftItem],
    fmt: str = "text",
    plan: Plan | None = None,
    color: bool = False,
    location: str | None = None,
) -> str:
    """``recon drift`` output. Drift (recorded -> actual) is named per resource and attribute and
    kept apart from pending changes, which are only summarised when ``plan`` is given.
    ``location`` (markdown only) says where the full report is when the markdown is shortened."""
    if fmt == "json":
        return _drift_json(drift, plan)
    if fmt == "markdown":
        from reconciler.render_markdown import render_drift_markdown

        return render_drift_markdown(drift, plan=plan, report_location=location)
    if fmt != "text":
        raise ValueError(f"unknown drift format {fmt!r} (expected text, json or markdown)")
    paint = _Paint(color)
    lines = _drift_lines(drift, paint) if drift else []
    if plan is not None and plan.has_changes:
        lines += ["Pending changes (not drift):"]
        lines += [
            f"  {paint.symbol(rc.action.symbol)} {rc.address}"
            for rc in plan.resource_changes
            if rc.action is not Action.NOOP
        ]
        lines += [f"  {summary_line(plan)}", ""]
    lines.append(paint.bold(drift_summary(drift)))
    return "\n".join(lines)


def _drift_json(drift: list[DriftItem], plan: Plan | None) -> str:
    doc: dict[str, Any] = {
        "format_version": PLAN_FORMAT_VERSION,
        "recon_version": recon_version(plan),
        "plan_digest": plan.digest if plan is not None else None,
        "workspace": plan.workspace if plan is not None else None,
        "resource_drift": resource_drift(drift, plan),
        "drift": [d.model_dump(mode="json") for d in drift],
        "summary": drift_counts(drift),
        "pending_changes": plan.counts() if plan is not None else None,
    }
    return _dumps(doc)


# --------------------------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------------------------

_DOT_SHAPE = {
    "environment": "component",
    "model": "cylinder",
    "endpoint": "doubleoctagon",
    "deployment": "box",
}
_MERMAID_SHAPE = {"environment": ("[[", "]]"), "model": ("[(", ")]"), "endpoint": ("([", "])")}


def render_graph(g: nx.DiGraph[str], fmt: str = "dot") -> str:
    """The dependency graph (edges dependency -> dependent) as DOT or Mermaid, sorted."""
    nodes = sorted(g.nodes, key=str)
    edges = sorted(g.edges, key=lambda e: (str(e[0]), str(e[1])))
    if fmt == "dot":
        return _dot(g, nodes, edges)
    if fmt == "mermaid":
        return _mermaid(g, nodes, edges)
    raise ValueError(f"unknown graph format {fmt!r} (expected dot or mermaid)")


def _dot_quote(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(g: nx.DiGraph[str], nodes: list[Any], edges: list[tuple[Any, Any]]) -> str:
    lines = ["digraph recon {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for n in nodes:
        rtype = g.nodes[n].get("type") or str(n).partition(".")[0]
        attrs = f"label={_dot_quote(n)}"
        if rtype in _DOT_SHAPE:
            attrs += f", shape={_DOT_SHAPE[rtype]}"
        lines.append(f"  {_dot_quote(n)} [{attrs}];")
    lines += [f"  {_dot_quote(u)} -> {_dot_quote(v)};" for u, v in edges]
    return "\n".join(lines + ["}"])


def mermaid_ids(nodes: Iterable[Any]) -> dict[Any, str]:
    """Unique Mermaid-safe ids (``[A-Za-z0-9_]``, prefixed so no id is a keyword like ``end``)."""
    ids: dict[Any, str] = {}
    used: set[str] = set()
    for n in nodes:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", str(n))
        nid, k = base, 2
        while nid in used:
            nid, k = f"{base}_{k}", k + 1
        used.add(nid)
        ids[n] = nid
    return ids


def _mermaid_label(text: Any) -> str:
    return '"' + str(text).replace('"', "#quot;").replace("\n", " ") + '"'


def _mermaid(g: nx.DiGraph[str], nodes: list[Any], edges: list[tuple[Any, Any]]) -> str:
    ids = mermaid_ids(nodes)
    lines = ["flowchart LR"]
    for n in nodes:
        rtype = g.nodes[n].get("type") or str(n).partition(".")[0]
        left, right = _MERMAID_SHAPE.get(rtype, ("[", "]"))
        lines.append(f"  {ids[n]}{left}{_mermaid_label(n)}{right}")
    lines += [f"  {ids[u]} --> {ids[v]}" for u, v in edges]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


def render_state_list(state: State) -> str:
    """One address a line, sorted (``recon state list``); status other than ready is noted."""
    lines = []
    for address in sorted(state.resources):
        status = state.resources[address].status
        lines.append(address if status == "ready" else f"{address}  ({status})")
    return "\n".join(lines)


def render_state_show(resource: StateResource) -> str:
    """One recorded resource (``recon state show ADDRESS``), Terraform-like, keys sorted."""
    body: dict[str, Any] = {
        "provider": resource.provider,
        "status": resource.status,
        "depends_on": list(resource.depends_on),
        "attributes": resource.attributes,
        "outputs": resource.outputs,
    }
    lines = [f"# {resource.address}:", f'resource "recon_{resource.type}" {json.dumps(resource.name)} {{']
    lines += _hcl_body(body, "    ")
    return "\n".join(lines + ["}"])


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _hcl_body(mapping: dict[str, Any], indent: str) -> list[str]:
    keys = [k if _IDENT.match(str(k)) else json.dumps(str(k)) for k in mapping]
    width = max((len(k) for k in keys), default=0)
    lines = []
    for key, value in zip(keys, mapping.values(), strict=True):
        lines += _hcl_value(f"{indent}{key.ljust(width)} = ", value, indent)
    return lines


def _hcl_value(prefix: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [prefix + "{", *_hcl_body(dict(sorted(value.items())), indent + "    "), indent + "}"]
    if isinstance(value, list) and value:
        inner = indent + "    "
        items: list[str] = []
        for v in value:
            element = _hcl_value(inner, v, inner)
            element[-1] += ","
            items += element
        return [prefix + "[", *items, indent + "]"]
    return [prefix + json.dumps(value, ensure_ascii=False, default=str)]
