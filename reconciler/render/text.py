"""The text view: plans, drift reports and state listings for a terminal, Terraform-like.

Every function here is pure: data in, string out. Nothing prints and nothing reads the clock, so
the same plan always renders to the same bytes (colour only when asked for). Strings come back
without a trailing newline; the caller adds one when writing.

- ``render_text(plan, color=False)``: symbols, ``before -> after``, reasons for replacements, the
  ordered steps, the quota table, the cost per deployment, drift apart from changes, warnings,
  errors, the cost line (``Cost: $1,204/month -> $1,806/month (+$602); peak during apply
  $3.30/h``), then exactly ``Plan: N to add, N to change, N to destroy.``
- ``render_drift_text(drift, plan=None)``: ``recon drift``.
- ``render_state_list(state)`` / ``render_state_show(resource)``: ``recon state list|show``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from reconciler.plan.types import Action, CostReport, DriftItem, FieldChange, Plan, ResourceChange, Step
from reconciler.render.common import (
    capacity_status,
    capacity_text,
    drift_line,
    drift_summary,
    drift_symbol,
    field_changes,
    format_number,
    format_value,
    gate_lines,
    group_drift,
    quota_status,
    replace_reason,
    split_repairs,
    step_detail,
    step_summary,
    summary_line,
    usage_text,
    warning_text,
)
from reconciler.render.costs import basis, budget_text, cost_line, cost_rows, peak_text, unchanged_text
from reconciler.state.document import State, StateResource

__all__ = ["render_drift_text", "render_state_list", "render_state_show", "render_text"]

HEADER = "recon will perform the following actions:"
DRIFT_HEADER = "Objects have changed outside of recon"

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
}
_COLOR = {"+": "32", "~": "33", "-": "31", "?": "36", "!": "31"}  # ANSI: green, yellow, red, cyan


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
    if plan.cost is not None:
        out += _cost_lines(plan.cost, plan.steps, paint)
    if plan.drift:
        out += _drift_lines(plan.drift, paint)
    out += _diagnostic_lines(plan, paint)
    if plan.errors:
        out.append(paint("This plan has errors and cannot be applied.", "31"))
    line = cost_line(plan.cost)
    if line is not None:
        out.append(line)
    out.append(paint.bold(summary_line(plan)))
    return "\n".join(out)


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
        lines += [f"  {'':>{width}}  {line}" for line in gate_lines(step)]
    return lines + [""]


def _quota_lines(plan: Plan, paint: _Paint) -> list[str]:
    q = plan.quota
    if not (q.families or q.errors or q.capacity):
        return []
    lines = ["Quota (vCPUs per VM family):"]
    rows = [["family", "limit", "before", "after", "peak", "status"]]
    for f in q.families:
        nums = [format_number(v) for v in (f.limit, f.before, f.after, f.peak)]
        rows.append([f.family, *nums, quota_status(f)])
    label = "capacity"
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    widths[0] = max(widths[0], len(label))
    if q.families or q.capacity:
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:5], widths[1:5], strict=True)]
            status = paint(r[5], "31") if r[5] == "EXCEEDED" else r[5]
            lines.append("  " + "  ".join(cells + [status]))
    if q.capacity:
        status = capacity_status(q.capacity)
        # a cloud provider's live quota figures are a sentence: shown whole, on a line of its own
        live = q.capacity.get("description") if q.capacity.get("cpus") is None else None
        text = f"{capacity_text(q.capacity)}  {paint(status, '31') if status == 'EXCEEDED' else status}"
        lines.append(f"  {label.ljust(widths[0])}  {text}")
        if live:
            lines.append(f"  live quota: {live}")
    for f in q.families:
        if not f.ok:
            lines += [f"  {f.family} usage:"] + [f"    {usage_text(u)}" for u in f.usages]
    lines += [f"  {paint('Error:', '31')} {e}" for e in q.errors]
    return lines + [""]


def _cost_lines(report: CostReport, steps: list[Step], paint: _Paint) -> list[str]:
    """Per changed deployment: instances and price, per month before -> after, the change, and the
    most it costs an hour while the apply runs when that is more than before and after."""
    rows = cost_rows(report)
    if report.unavailable is not None or not (rows or report.unpriced or report.errors):
        return []
    lines = [f"Cost ({basis(report)}):"]
    width = max((len(r.address) for r in rows), default=0)
    for r in rows:
        text = f"  {paint.symbol(r.symbol)} {r.address.ljust(width)}  {r.what}: {r.monthly} a month ({r.change})"
        if r.peak:
            text += f"; up to {r.peak} while applying"
        lines.append(text)
    for extra in (unchanged_text(report), peak_text(report, steps), budget_text(report)):
        if extra:
            lines.append(f"  {extra}")
    lines += [f"  not priced: {u}" for u in report.unpriced]
    return lines + [""]


def _drift_lines(drift: list[DriftItem], paint: _Paint) -> list[str]:
    lines = [paint.bold(f"{DRIFT_HEADER} (recorded -> actual):"), ""]
    for address, items in group_drift(drift):
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


def _diagnostic_lines(plan: Plan, paint: _Paint) -> list[str]:
    lines = [f"{paint('Warning:', '33')} {warning_text(w)}" for w in plan.warnings]
    lines += [f"{paint('Error:', '31')} {e}" for e in plan.errors]
    return lines + [""] if lines else []


def render_drift_text(drift: list[DriftItem], plan: Plan | None = None, color: bool = False) -> str:
    """``recon drift`` for a terminal. Drift (recorded -> actual) is named per resource and attribute
    and kept apart from pending changes, which are only summarised when ``plan`` is given."""
    paint = _Paint(color)
    lines = _drift_lines(drift, paint) if drift else []
    if plan is not None and plan.has_changes:
        repairs, pending = split_repairs(plan)
        if repairs:
            lines += ["The next apply repairs the drift:"]
            lines += [f"  {paint.symbol(rc.action.symbol)} {rc.address}" for rc in repairs] + [""]
        if pending:
            lines += ["Pending changes (not drift; the next apply makes these too):"]
            lines += [f"  {paint.symbol(rc.action.symbol)} {rc.address}" for rc in pending] + [""]
    lines.append(paint.bold(drift_summary(drift)))
    return "\n".join(lines)


def render_state_list(state: State) -> str:
    """One address a line, sorted (``recon state list``); status other than ready, and an operation
    an interrupted apply left pending, are noted."""
    lines = []
    for address in sorted(state.resources):
        res = state.resources[address]
        notes: list[str] = [res.status] if res.status != "ready" else []
        if res.pending is not None:
            notes.append(f"interrupted {res.pending.kind}")
        lines.append(f"{address}  ({', '.join(notes)})" if notes else address)
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
    if resource.pending is not None:  # what an interrupted apply was doing to it
        body["pending"] = resource.pending.model_dump(mode="json")
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
