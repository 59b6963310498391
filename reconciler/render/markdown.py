"""Plans and drift reports as Markdown for pull-request comments and CI job summaries.

One layout for both, sections always in this order (empty ones left out): summary, destroys and
replaces, resources, rollout, quota, cost, drift, warnings. The first line is a hidden marker carrying
the digest (``<!-- recon:plan digest=sha256:... -->``) that CI uses to find and update its comment
and that ``recon apply --expect-digest`` checks; it survives every cut.

Everything taken from a plan is escaped for its context (Markdown text, inline code, table cell,
HTML, code fence), so no value can inject markup, links or mentions. Plans carry no secrets.

A comment longer than ``max_chars`` (GitHub accepts 65,536) loses whole lines and blocks, least
important first: attribute details collapse to one line per resource, then resource lines go,
then rollout steps, warnings, drift, quota and cost lines, destroys, the cost headline and errors. Each cut section says how many
entries it lost, and the summary says how many characters and resources were left out and where
the full plan is. The result is never longer than ``max_chars``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.model.resources import digest_of
from reconciler.plan.types import Action, CostReport, DriftItem, FieldChange, Plan, ResourceChange, Step
from reconciler.render.common import (
    capacity_status,
    capacity_text,
    drift_counts,
    drift_line,
    drift_symbol,
    field_changes,
    format_number,
    format_value,
    gate_lines,
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

__all__ = ["GITHUB_COMMENT_LIMIT", "plan_marker", "render_drift_markdown", "render_markdown"]

GITHUB_COMMENT_LIMIT = 65536

_VERB = {
    Action.CREATE: "create",
    Action.UPDATE: "update in place",
    Action.REPLACE: "replace",
    Action.DELETE: "destroy",
}

# What to cut first when the comment is too long (lower goes first).
_KEEP_STEP, _KEEP_RESOURCE, _KEEP_WARNING, _KEEP_DRIFT = 10, 20, 30, 40
_KEEP_USAGE, _KEEP_QUOTA, _KEEP_DESTROY, _KEEP_ERROR = 50, 60, 80, 90
_HEAD, _HEAD_BONUS = 10, 100  # the first entries of every section outlast the tails of all others
_PINNED = 1_000  # never cut


# --------------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~#!{}@$])")  # "$": GitHub reads $...$ as math


def _one_line(text: object) -> str:
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def esc(text: object) -> str:
    """Markdown text: every character that could start markup, a link or a mention escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _one_line(text))


def code(text: object, table: bool = False) -> str:
    """Inline code that no backtick inside can close early (``|`` escaped inside tables)."""
    s = _one_line(text)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`") or longest:
        s = f" {s} "
    if table:
        s = s.replace("|", "\\|")
    return f"{fence}{s}{fence}"


def _html(text: object) -> str:
    return html.escape(_one_line(text), quote=True).replace("@", "&#64;")


def _fence(lines: list[str], lang: str = "") -> str:
    body = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`{3,}", body)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


def plan_marker(digest: str, kind: str = "plan") -> str:
    """The hidden first line CI looks for: ``<!-- recon:plan digest=sha256:... -->``."""
    return f"<!-- recon:{kind} digest={re.sub(r'[^A-Za-z0-9:._-]', '', digest)} -->"


# --------------------------------------------------------------------------------------------
# Sections and cutting
# --------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One cuttable unit: a line, or a resource's details with a one-line ``short`` form."""

    text: str
    keep: int
    short: str | None = None
    resource: bool = False
    dropped: bool = False
    reduced: bool = False

    def render(self) -> str:
        return self.short if self.reduced and self.short is not None else self.text


@dataclass
class _Section:
    heading: str  # "" for none
    intro: str  # shown only while at least one block is
    blocks: list[_Block] = field(default_factory=list)
    noun: str = "entries"  # "… 12 more entries not shown"
    prefix: str = ""  # "> " inside a call-out

    def note(self, count: int) -> str:
        # after a blank (quoted) line, so that it is not read as part of the list above
        return f"{self.prefix.rstrip()}\n{self.prefix}_… {count:,} more {self.noun} not shown; see the full plan._"

    def render(self) -> str:
        kept = [b.render() for b in self.blocks if not b.dropped]
        omitted = len(self.blocks) - len(kept)
        parts = [self.heading] if self.heading else []
        body = ([self.intro] if kept and self.intro else []) + kept
        if omitted:
            body.append(self.note(omitted) if kept else self.note(omitted).split("\n", 1)[1])
        if body:
            parts.append("\n".join(body))
        return "\n\n".join(parts)


def _assemble(marker: str, sections: list[_Section], footer: str) -> str:
    texts = [s.render() for s in sections]
    texts = [t for t in texts if t]
    if footer:
        texts.insert(1, footer)  # right under the summary, where a reviewer looks first
    return marker + "\n" + "\n\n".join(texts)


def _cuts(sections: list[_Section]) -> list[tuple[_Section, _Block, str]]:
    """Every cut in the order it is made: reductions (from the end), then drops by priority, the
    tails of sections before their first entries, each from the end."""
    blocks = [
        (s, b, b.keep + (_HEAD_BONUS if i < _HEAD else 0))
        for s in sections
        for i, b in enumerate(s.blocks)
        if b.keep < _PINNED
    ]
    reduce = [(s, b, "reduce") for s, b, _ in reversed(blocks) if b.short is not None]
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i][2], -i))
    return reduce + [(blocks[i][0], blocks[i][1], "drop") for i in order]


def _cut_size(block: _Block, how: str) -> int:
    if how == "reduce":
        return len(block.text) - len(block.short or "")
    return len(block.render()) + 1


def _footer(max_chars: int, chars: int, left: int, total: int, location: str | None) -> str:
    # ``location`` comes from the caller (the CLI), not from the plan: Markdown such as a link is kept.
    where = (
        f"The full plan is in {_one_line(location)}."
        if location
        else "`recon show PLANFILE` prints it in full."
    )
    return (
        f"> [!NOTE]\n> This comment was shortened to fit {max_chars:,} characters: "
        f"{chars:,} characters and {left:,} of {total:,} resources were left out. {where}"
    )


def _fit(marker: str, sections: list[_Section], max_chars: int, location: str | None) -> str:
    if max_chars < len(marker):
        raise ValueError(f"max_chars {max_chars} cannot even hold the marker ({len(marker)} characters)")
    full = _assemble(marker, sections, "")
    if len(full) <= max_chars:
        return full
    total = sum(b.resource for s in sections for b in s.blocks)
    # Room for the footer and for the note of each section once it loses an entry (worst-case
    # numbers, so that the real ones always fit).
    reserve = len(_footer(max_chars, len(full), total, total, location)) + 2
    noted: set[int] = set()
    size = len(full)
    for section, block, how in _cuts(sections):
        if size + reserve <= max_chars:
            break
        size -= _cut_size(block, how)
        if how == "reduce":
            block.reduced = True
            continue
        block.dropped = True
        if id(section) not in noted:
            noted.add(id(section))
            reserve += len(section.note(len(section.blocks))) + 1
    body = _assemble(marker, sections, "")
    left = sum(b.resource and b.dropped for s in sections for b in s.blocks)
    text = _assemble(marker, sections, _footer(max_chars, len(full) - len(body), left, total, location))
    if len(text) > max_chars:  # only when even the pinned summary does not fit
        text = text[: text.rfind("\n", 0, max_chars + 1)] if "\n" in text[:max_chars] else marker
    return text


# --------------------------------------------------------------------------------------------
# Section builders
# --------------------------------------------------------------------------------------------


def _summary_section(title: str, headline: str, meta: list[str], errors: list[str]) -> _Section:
    blocks = [_Block(f"**{headline}**", _PINNED)]  # recon's own words and numbers: nothing to escape
    if meta:
        blocks.append(_Block("\n" + " · ".join(meta), _PINNED))
    if errors:
        blocks.append(_Block("\n> [!CAUTION]\n> **This plan has errors and cannot be applied:**", _PINNED))
        blocks += [_Block(f"> - {esc(e)}", _KEEP_ERROR) for e in errors]
    return _Section(f"## {esc(title)}", "", blocks, noun="errors", prefix="> ")


def _meta(plan: Plan, digest: str) -> list[str]:
    meta = []
    if plan.workspace:
        meta.append(f"workspace {code(plan.workspace)}")
    meta.append(f"provider {code(plan.provider)}")
    meta.append(f"state serial {plan.serial}")
    meta.append(f"plan digest {code(digest[:19])}")
    return meta


def _destroy_section(changes: list[ResourceChange]) -> _Section:
    destroys = [rc for rc in changes if rc.action is Action.DELETE]
    replaces = [rc for rc in changes if rc.action is Action.REPLACE]
    blocks = []
    for rc in changes:
        if rc.action is Action.DELETE:
            blocks.append(_Block(f"> - `-` {code(rc.address)} will be **destroyed**", _KEEP_DESTROY))
        elif rc.action is Action.REPLACE:
            paths = ", ".join(code(p) for p in rc.replace_paths)
            forced = f" (forces replacement: {paths})" if paths else ""
            line = f"> - `-/+` {code(rc.address)} will be **replaced**{forced}: {esc(replace_reason(rc))}"
            blocks.append(_Block(line, _KEEP_DESTROY))
    what = [
        f"{verb} {_n(len(rcs), 'resource')}" for verb, rcs in (("destroys", destroys), ("replaces", replaces))
    ]
    intro = (
        f"> [!WARNING]\n> **This plan {' and '.join(w for w in what if not w.endswith(' 0 resources'))}.**"
    )
    intro += " Check that this is intended."
    return _Section("", intro, blocks, noun="destroys and replaces", prefix="> ")


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _resources_section(changes: list[ResourceChange], intro: str) -> _Section:
    blocks = [_resource_block(rc) for rc in changes if rc.action is not Action.NOOP]
    return _Section("### Resources", intro, blocks, noun="resources")


def _resource_block(rc: ResourceChange) -> _Block:
    sym, verb = rc.action.symbol, _VERB[rc.action]
    where = f" · {code(rc.source)}" if rc.source else ""
    short = f"- {code(sym)} {code(rc.address)} {verb}{where}"
    diff = _diff_lines(rc)
    html_where = f" · <code>{_html(rc.source)}</code>" if rc.source else ""
    count = f", {len(diff)} line{'s' if len(diff) != 1 else ''}" if diff else ""
    summary = f"<code>{_html(sym)}</code> <code>{_html(rc.address)}</code> {verb}{count}{html_where}"
    inner = []
    if rc.action is Action.REPLACE:
        inner.append(f"Replaced because {esc(replace_reason(rc))}.\n")
    inner.append(_fence(diff, "diff") if diff else "_No attribute details._")
    text = f"<details><summary>{summary}</summary>\n\n" + "\n".join(inner) + "\n\n</details>\n"
    return _Block(text, _KEEP_RESOURCE, short=short, resource=True)


def _diff_lines(rc: ResourceChange) -> list[str]:
    if rc.action is Action.DELETE:
        before: Mapping[str, object] = rc.before or {}
        return [
            f"- {_one_line(k)}: {format_value(v)}"
            for k, v in sorted(before.items())
            if v not in (None, {}, [])
        ]
    return [line for fc in field_changes(rc) for line in _fc_lines(fc)]


def _fc_lines(fc: FieldChange) -> list[str]:
    path = _one_line(fc.path)
    mark = "  # forces replacement" if fc.forces_replacement else ""
    lines = []
    if fc.before is not None:
        lines.append(f"- {path}: {format_value(fc.before)}")
    if fc.after is not None:
        lines.append(f"+ {path}: {format_value(fc.after)}{mark}")
    elif mark:
        lines[-1] += mark
    return lines


def _rollout_section(steps: list[Step]) -> _Section:
    number = {s.id: i for i, s in enumerate(steps, 1)}
    blocks = []
    for i, step in enumerate(steps, 1):
        head = f"{step.kind.value} {step.address}"
        rest = step_summary(step)[len(head) :]
        line = f"{i}. **{step.kind.value}** {code(step.address)}{esc(rest)}"
        after = sorted(number[d] for d in step.depends_on if d in number)
        if after:
            line += f" (after {', '.join(map(str, after))})"
        detail = step_detail(step)
        if detail:
            line += f" — {esc(detail)}"
        line += "".join(f"\n   - {esc(g)}" for g in gate_lines(step))
        blocks.append(_Block(line, _KEEP_STEP))
    return _Section("### Rollout", "Steps in the order apply runs them:\n", blocks, noun="steps")


def _quota_section(plan: Plan) -> _Section:
    q = plan.quota
    blocks = []
    for f in q.families:
        nums = " | ".join(format_number(v) for v in (f.limit, f.before, f.after, f.peak))
        status = {"ok": "✅ ok", "EXCEEDED": "❌ **exceeded**"}.get(quota_status(f), quota_status(f))
        blocks.append(_Block(f"| {code(f.family, table=True)} | {nums} | {status} |", _KEEP_QUOTA))
    if q.capacity:
        status = {"ok": "✅ ok", "EXCEEDED": "❌ **exceeded**"}[capacity_status(q.capacity)]
        cell = esc(capacity_text(q.capacity)).replace("|", "\\|")
        blocks.append(_Block(f"| capacity | {cell} | | | | {status} |", _KEEP_QUOTA))
    extra: list[_Block] = []
    for f in q.families:
        if not f.ok and f.usages:
            extra.append(_Block(f"Usage of {code(f.family)}:", _KEEP_USAGE))
            extra += [_Block(f"- {esc(usage_text(u))}", _KEEP_USAGE) for u in f.usages]
    extra += [_Block(f"- ❌ {esc(e)}", _KEEP_QUOTA) for e in q.errors]
    if extra and blocks:
        extra[0].text = "\n" + extra[0].text  # a blank line ends the table
    intro = (
        "| VM family | limit | before | after | peak | status |\n|---|--:|--:|--:|--:|---|" if blocks else ""
    )
    return _Section("### Quota (vCPUs)", intro, blocks + extra, noun="quota lines")


def _cost_sections(report: CostReport, steps: list[Step]) -> list[_Section]:
    """The cost headline (what the plan's text ends with), then a table of the changed deployments,
    the unchanged ones, the budget and what has no price."""
    line = cost_line(report)
    if line is None:
        return []
    head = line.removeprefix("Cost: ").replace(" -> ", " → ")
    blocks = [_Block(f"**{esc(head)}**", _KEEP_DESTROY)]
    if report.unavailable is None:
        blocks.append(_Block(f"_{esc(basis(report))}_", _KEEP_DESTROY))
    rows = [
        _Block(
            f"| {code(r.symbol)} {code(r.address, table=True)} | {esc(r.what)} | "
            f"{esc(r.monthly.replace(' -> ', ' → '))} | {esc(r.change)} | {esc(r.peak or '')} |",
            _KEEP_QUOTA,
        )
        for r in cost_rows(report)
    ] if report.unavailable is None else []
    header = "| deployment | instances and price | per month | change | peak while applying |\n|---|---|--:|--:|--:|"
    notes = (unchanged_text(report), peak_text(report, steps), budget_text(report))
    tail = [_Block(f"- {esc(t)}", _KEEP_QUOTA) for t in notes if t]
    tail += [_Block(f"- ⚠️ not priced: {esc(u)}", _KEEP_WARNING) for u in report.unpriced]
    return [
        _Section("### Cost", "", blocks, noun="cost lines"),
        _Section("", header, rows, noun="deployments"),
        _Section("", "", tail, noun="cost notes"),
    ]


def _drift_section(drift: list[DriftItem], empty_text: str | None) -> _Section:
    blocks = []
    for d in drift:
        if d.kind == "changed":
            path, rest = (d.path or "(attributes)"), f"{format_value(d.recorded)} → {format_value(d.actual)}"
            line = f"- `~` {code(d.address)} {code(path)}: {code(rest)}"
            if d.detail:
                line += f" ({esc(d.detail)})"
        else:
            line = f"- {code(drift_symbol(d))} {code(d.address)} {esc(drift_line(d))}"
        blocks.append(_Block(line, _KEEP_DRIFT))
    intro = "Changed outside of recon (recorded → actual); not part of the changes above:\n"
    if not blocks and empty_text:
        blocks.append(_Block(empty_text, _PINNED))
        intro = ""
    return _Section("### Drift", intro, blocks, noun="drift entries")


def _warnings_section(warnings: list[dict[str, object]]) -> _Section:
    blocks = [_Block(f"- ⚠️ {esc(warning_text(w))}", _KEEP_WARNING) for w in warnings]
    return _Section("### Warnings", "", blocks, noun="warnings")


def _plan_sections(plan: Plan, resources_intro: str) -> list[_Section]:
    """Destroys/replaces, resources, rollout and quota: the parts that come from a plan."""
    changes = plan.resource_changes
    noop = sum(rc.action is Action.NOOP for rc in changes)
    if noop:
        resources_intro += f"_{noop:,} unchanged resource{'s' if noop != 1 else ''} not listed._\n"
    sections = [_resources_section(changes, resources_intro), _rollout_section(plan.steps)]
    if any(rc.action in (Action.DELETE, Action.REPLACE) for rc in changes):
        sections.insert(0, _destroy_section(changes))
    q = plan.quota
    if q.families or q.errors or q.capacity:
        sections.append(_quota_section(plan))
    if plan.cost is not None:
        sections += _cost_sections(plan.cost, plan.steps)
    return [s for s in sections if s.blocks]


# --------------------------------------------------------------------------------------------
# Public
# --------------------------------------------------------------------------------------------


def render_markdown(
    plan: Plan,
    max_chars: int = GITHUB_COMMENT_LIMIT,
    plan_location: str | None = None,
    title: str = "recon plan",
) -> str:
    """A pull-request comment for ``plan``, at most ``max_chars`` characters, marker first."""
    digest = plan.digest  # a hash of the whole plan: computed once
    sections = [_summary_section(title, summary_line(plan), _meta(plan, digest), plan.errors)]
    sections += _plan_sections(plan, "")
    if plan.drift:
        sections.append(_drift_section(plan.drift, None))
    if plan.warnings:
        sections.append(_warnings_section(plan.warnings))
    return _fit(plan_marker(digest), sections, max_chars, plan_location)


def render_drift_markdown(
    drift: list[DriftItem],
    plan: Plan | None = None,
    max_chars: int = GITHUB_COMMENT_LIMIT,
    report_location: str | None = None,
    title: str = "recon drift",
) -> str:
    """A drift report (CI job summary) in the same layout as ``render_markdown``.

    The marker carries the digest of the drift items (``<!-- recon:drift digest=... -->``). With a
    ``plan``, its pending changes, rollout and quota follow in the usual sections, apart from drift.
    """
    c = drift_counts(drift)
    if drift:
        headline = f"Drift: {c['changed']} changed, {c['missing']} missing, {c['unmanaged']} unmanaged."
    else:
        headline = "No drift. The real world matches the recorded state."
    meta = []
    intro = ""
    if plan is not None:
        repairs, pending = split_repairs(plan)
        meta = [
            f"the next apply: {esc(summary_line(plan))} ({_n(len(repairs), 'repair')} of the drift, "
            f"{len(pending)} other pending)",
            *_meta(plan, plan.digest),
        ]
        if repairs:
            intro = "The next apply repairs the drift with " + ", ".join(code(rc.address) for rc in repairs)
            intro += "; the other changes are pending changes, not drift.\n" if pending else ".\n"
        else:
            intro = "Pending changes (the next apply makes these; they are not drift):\n"
    sections = [_summary_section(title, headline, meta, plan.errors if plan is not None else [])]
    if plan is not None:
        sections += _plan_sections(plan, intro)
    sections.append(_drift_section(drift, "_No drift detected._"))
    if plan is not None and plan.warnings:
        sections.append(_warnings_section(plan.warnings))
    digest = digest_of([d.model_dump(mode="json") for d in drift])
    return _fit(plan_marker(digest, "drift"), sections, max_chars, report_location)
