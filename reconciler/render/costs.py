"""The words and numbers of a plan's cost (``Plan.cost``), shared by the text and Markdown views.

- ``cost_line(report)``: the summary line, ``Cost: $1,204/month -> $1,806/month (+$602); peak during
  apply $3.30/h``, or ``Cost: prices unavailable: <why>``; None when no deployment exists before or after.
- ``cost_rows(report)``: one row per changed deployment (symbol, address, what, per month, change, peak).
- ``basis(report)``: what the numbers mean and where the prices come from.
- ``peak_text(report, steps)``: which step the apply costs most per hour in.
- ``budget_text(report)``: the budget and whether the plan keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.plan.budget import money, side_words
from reconciler.plan.types import Action, CostReport, CostSide, DeploymentCost, Step

_SOURCE_WORDS = {"azure-retail-prices": "Azure retail prices", "recon.yaml": "prices from recon.yaml"}


def _has_deployments(report: CostReport) -> bool:
    return bool(report.deployments or report.unchanged_count or report.unpriced)


def span(low: float | None, high: float | None, currency: str, sign: bool = False) -> str:
    """``$365`` or, under autoscaling, ``$183-$913`` (``+$183 to +$913`` for a signed change)."""
    if low is None or high is None:
        return "no price"
    a, b = money(low, currency, sign=sign), money(high, currency, sign=sign)
    if a == b:
        return a
    return f"{a} to {b}" if sign else f"{a}-{b}"


def cost_line(report: CostReport | None) -> str | None:
    if report is None or not _has_deployments(report):
        return None
    if report.unavailable is not None:
        return f"Cost: prices unavailable: {report.unavailable}"
    cur = report.currency
    before = span(report.before_min, report.before_max, cur)
    after = span(report.after_min, report.after_max, cur)
    text = f"Cost: {before}/month -> {after}/month"
    if (report.change_min, report.change_max) != (0, 0):
        text += f" ({span(report.change_min, report.change_max, cur, sign=True)})"
    else:
        text += " (no change)"
    if report.peak_hourly is not None:
        text += f"; peak during apply {money(report.peak_hourly, cur, decimals=2)}/h"
    if report.unpriced:
        n = len(report.unpriced)
        text += f"; {n} deployment{'s' if n != 1 else ''} not priced"
    return text


def basis(report: CostReport) -> str:
    """``USD, 730 h a month x instances x hourly price; Azure retail prices for eastus of 2026-12-07``."""
    sources = []
    for s in report.sources:
        words = _SOURCE_WORDS.get(s, s)
        if s == "azure-retail-prices":
            words += f" for {report.region}" + (f" of {report.price_date}" if report.price_date else "")
        sources.append(words)
    text = f"{report.currency}, {report.hours_per_month} h a month x instances x hourly price"
    return text + (f"; {' and '.join(sources)}" if sources else "")


@dataclass(frozen=True)
class CostRow:
    symbol: str
    address: str
    what: str  # "1 -> 2 x Standard_DS3_v2 at $0.25/h"
    monthly: str  # "$183 -> $365"
    change: str  # "+$183"
    peak: str | None  # "$0.75/h" when the apply holds more than before and after


_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.NOOP: " "}


def _what(before: CostSide | None, after: CostSide | None, currency: str) -> str:
    if before is None or after is None:
        side = after or before
        return side_words(side, currency) if side is not None else ""
    if (before.instance_type, before.price_per_hour) == (after.instance_type, after.price_per_hour):
        if (before.instances_min, before.instances_max) == (after.instances_min, after.instances_max):
            return side_words(after, currency)
        n = before.instances_max if before.instances_min == before.instances_max else (
            f"{before.instances_min}-{before.instances_max}"
        )
        return f"{n} -> {side_words(after, currency)}"
    return f"{side_words(before, currency)} -> {side_words(after, currency)}"


def _row(d: DeploymentCost, currency: str) -> CostRow:
    before = span(d.before.monthly_min, d.before.monthly_max, currency) if d.before else money(0, currency)
    after = span(d.after.monthly_min, d.after.monthly_max, currency) if d.after else money(0, currency)
    steady = max(d.before.monthly_max or 0 if d.before else 0, d.after.monthly_max or 0 if d.after else 0) / 730
    peak = None
    if d.peak_hourly is not None and d.peak_hourly > steady + 1e-9:
        peak = f"{money(d.peak_hourly, currency, decimals=2)}/h"
    return CostRow(
        symbol=_SYMBOL[d.action],
        address=d.address,
        what=_what(d.before, d.after, currency),
        monthly=f"{before} -> {after}",
        change=span(d.change_min, d.change_max, currency, sign=True) if d.change_max is not None else "no price",
        peak=peak,
    )


def cost_rows(report: CostReport) -> list[CostRow]:
    return [_row(d, report.currency) for d in report.deployments]


def unchanged_text(report: CostReport) -> str | None:
    if not report.unchanged_count:
        return None
    n = report.unchanged_count
    return (
        f"{n:,} unchanged deployment{'s' if n != 1 else ''}: "
        f"{span(report.unchanged_monthly_min, report.unchanged_monthly_max, report.currency)}/month"
    )


def peak_text(report: CostReport, steps: list[Step]) -> str | None:
    """``Peak during apply: $1.10/h while step 3 runs (create:deployment.my-endpoint.green)``; None
    when the apply never costs more than before or after it."""
    if report.peak_step is None or report.peak_hourly is None:
        return None
    number = next((i for i, s in enumerate(steps, 1) if s.id == report.peak_step), None)
    where = f"step {number} ({report.peak_step})" if number else report.peak_step
    return f"Peak during apply: {money(report.peak_hourly, report.currency, decimals=2)}/h while {where} runs"


def budget_text(report: CostReport) -> str | None:
    """``Budget: $2,000/month (ok), +$500 a plan (EXCEEDED)``; None without a budget."""
    if report.budget_monthly is None and report.budget_increase is None:
        return None
    cur = report.currency
    unknown = report.after_max is None
    parts = []
    if report.budget_monthly is not None:
        ok = unknown or report.after_max is None or report.after_max <= report.budget_monthly + 1e-9
        parts.append(f"{money(report.budget_monthly, cur)}/month ({'not checked' if unknown else 'ok' if ok else 'EXCEEDED'})")
    if report.budget_increase is not None:
        ok = unknown or report.change_max is None or report.change_max <= report.budget_increase + 1e-9
        parts.append(
            f"{money(report.budget_increase, cur, sign=True)}/month a plan "
            f"({'not checked' if unknown else 'ok' if ok else 'EXCEEDED'})"
        )
    return "Budget: " + ", ".join(parts)
