"""The budget gate over a plan's cost report, and money in words.

``budget_errors``: recon.yaml's ``budget:`` exceeded, in the words of a quota failure (what, how
much, the limit, the largest contributors, what to do); ``budget_warnings``: why the budget could
not be checked. ``money``, ``hourly`` and ``side_words`` write amounts as people read them.
"""

from __future__ import annotations

import math

from reconciler.model.settings import Budget
from reconciler.plan.types import CostReport, CostSide

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩"}


def money(amount: float, currency: str, *, sign: bool = False, decimals: int | None = None) -> str:
    """``$1,204``, ``+$602``, ``-€12``, ``CHF 3.30``: whole units from 10 up, cents below
    (``decimals`` fixes the places)."""
    places = decimals if decimals is not None else (0 if abs(amount) >= 10 or amount == 0 else 2)
    if currency in ("JPY", "KRW"):
        places = 0
    text = f"{math.floor(abs(amount) * 10**places + 0.5 + 1e-9) / 10**places:,.{places}f}"  # half up
    symbol = _SYMBOLS.get(currency)
    body = f"{symbol}{text}" if symbol else f"{currency} {text}"
    if amount < 0 and round(abs(amount), places) != 0:
        return "-" + body
    return ("+" + body) if sign else body


def hourly(amount: float, currency: str) -> str:
    """``$0.229/h``: up to four places, at least two."""
    text = money(amount, currency, decimals=4)
    if "." in text:
        head, tail = text.split(".")
        text = f"{head}.{tail.rstrip('0').ljust(2, '0')}"
    return text + "/h"


def budget_errors(report: CostReport, budget: Budget | None) -> list[str]:
    """A budget exceeded, in the words of a quota failure: what, how much, the limit, the largest
    contributors, what to do."""
    if budget is None or report.after_max is None or report.change_max is None:
        return []
    cur = report.currency
    errors = []
    top = sorted(report.deployments, key=lambda d: -((d.after.monthly_max or 0) if d.after else 0))
    if budget.monthly is not None and report.after_max > budget.monthly + 1e-9:
        largest = [f"{d.address} {money(d.after.monthly_max or 0, cur)}/month ({side_words(d.after, cur)})"
                   for d in top[:3] if d.after and d.after.monthly_max]
        errors.append(
            f"budget exceeded: the deployments cost {money(report.after_max, cur)}/month after this apply "
            f"(730 h x instances x hourly price{', at max_instances under autoscaling' if _autoscaled(report) else ''}); "
            f"budget.monthly in recon.yaml is {money(budget.monthly, cur)}"
            + (f"; of it: {', '.join(largest)}" if largest else "")
            + " (lower the instance counts or types, or raise budget.monthly)"
        )
    if budget.increase is not None and report.change_max > budget.increase + 1e-9:
        grow = sorted((d for d in report.deployments if (d.change_max or 0) > 0), key=lambda d: -(d.change_max or 0))
        parts = [f"{d.address} {money(d.change_max or 0, cur, sign=True)}/month" for d in grow[:3]]
        errors.append(
            f"budget exceeded: this plan adds {money(report.change_max, cur)}/month "
            f"({money(report.before_max or 0, cur)}/month -> {money(report.after_max, cur)}/month); "
            f"budget.increase in recon.yaml is {money(budget.increase, cur)}"
            + (f"; from: {', '.join(parts)}" if parts else "")
            + " (split the change into smaller applies, or raise budget.increase)"
        )
    return errors


def budget_warnings(report: CostReport, budget: Budget | None) -> list[str]:
    """Why a budget could not be checked (fully or at all)."""
    if budget is None:
        return []
    if report.unavailable is not None:
        return [f"the budget was not checked: prices unavailable: {report.unavailable}"]
    if report.unpriced:
        n = len(report.unpriced)
        return [f"the budget was checked without {n} deployment{'s' if n != 1 else ''} that ha{'ve' if n != 1 else 's'} "
                f"no price: {'; '.join(report.unpriced)}"]
    return []


def _autoscaled(report: CostReport) -> bool:
    return any(s and s.instances_min != s.instances_max for d in report.deployments for s in (d.before, d.after))


def side_words(side: CostSide, currency: str) -> str:
    """``2 x Standard_DS3_v2 at $0.229/h`` (``1-4 x ...`` under autoscaling)."""
    n = (f"{side.instances_min}-{side.instances_max}" if side.instances_min != side.instances_max
         else str(side.instances_max))
    price = hourly(side.price_per_hour, currency) if side.price_per_hour is not None else "no price"
    return f"{n} x {side.instance_type} at {price}"
