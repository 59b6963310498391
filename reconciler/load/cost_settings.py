"""recon.yaml's ``pricing:``, ``prices:`` and ``budget:`` (docs/cost.md), checked as the rest of the
file is: every problem names recon.yaml, the line, the field, what is wrong and what would be right.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import checks, schema
from reconciler.model.settings import CURRENCIES, Budget, PricingSettings

_REGION_RE = re.compile(r"^[a-z][a-z0-9]{1,39}$")  # armRegionName: eastus, westeurope, southcentralus
_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_PRICE_EXAMPLE = "e.g. `prices: {Standard_DS3_v2: 0.25, gpu-node: 1.10}` (per hour, in the pricing currency)"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def pricing_settings(run: LoadRun, f: LoadedFile, doc: schema.ReconFileDoc) -> PricingSettings:
    """``pricing:`` over the defaults (region, currency, cache lifetime, API URL, timeout)."""
    p = doc.pricing
    if p is None:
        return PricingSettings()
    out: dict[str, Any] = {k: v for k, v in p.model_dump().items() if v is not None}
    if p.region is not None and not _REGION_RE.match(p.region):
        run.error(
            f,
            ("pricing", "region"),
            f"{p.region!r} is not an Azure region name",
            "use the region as the Retail Prices API spells it (armRegionName), e.g. eastus, westeurope",
        )
    if p.currency is not None:
        currency = p.currency.upper()
        if currency not in CURRENCIES:
            hint = checks.suggest(currency, CURRENCIES)
            run.error(
                f,
                ("pricing", "currency"),
                f"{p.currency!r} is not a currency the Azure Retail Prices API offers",
                (hint + "; " if hint else "") + "use one of: " + ", ".join(CURRENCIES),
            )
        out["currency"] = currency
    if p.cache_hours is not None and p.cache_hours < 0:
        run.error(f, ("pricing", "cache_hours"), f"{p.cache_hours:g} is negative", "use hours >= 0 (0: ask every plan)")
    if p.timeout is not None and not 0 < p.timeout <= 300:
        run.error(f, ("pricing", "timeout"), f"{p.timeout:g} is out of range", "use seconds > 0 and <= 300")
    if p.url is not None and not _URL_RE.match(p.url):
        run.error(
            f,
            ("pricing", "url"),
            f"{p.url!r} is not an http(s) URL",
            "e.g. https://prices.azure.com/api/retail/prices (the default)",
        )
    return PricingSettings(**out)


def price_table(run: LoadRun, f: LoadedFile, raw: Any) -> dict[str, float]:
    """``prices:``: instance type -> price per hour (a number >= 0)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        run.error(f, ("prices",), f"prices must be a mapping, not a {type(raw).__name__}", _PRICE_EXAMPLE)
        return {}
    out: dict[str, float] = {}
    seen: dict[str, str] = {}  # folded name -> the spelling first given (names compare case-insensitively)
    for sku, value in raw.items():
        if not isinstance(sku, str) or not sku.strip():
            run.error(f, ("prices", str(sku)), f"{sku!r} is not an instance type name", _PRICE_EXAMPLE)
        elif sku.lower() in seen:
            run.error(f, ("prices", sku), f"{sku!r} prices the same instance type as {seen[sku.lower()]!r}: "
                      "instance type names compare case-insensitively", "keep one of the two")
        elif isinstance(value, str):
            run.error(f, ("prices", sku), *_text_price(sku, value))
        elif not _number(value) or value < 0:
            run.error(f, ("prices", sku), f"{value!r} is not a price per hour >= 0", _PRICE_EXAMPLE)
        else:
            out[sku] = float(value)
        if isinstance(sku, str):
            seen.setdefault(sku.lower(), sku)
    return out


def _text_price(sku: str, value: str) -> tuple[str, str]:
    """What is wrong with a price written as text, and the number it should be."""
    plain = value.strip().lstrip("$€£¥").strip()
    try:
        number = float(plain)
    except ValueError:
        return f"{value!r} is not a price per hour >= 0", _PRICE_EXAMPLE
    if number < 0:
        return f"{value!r} is not a price per hour >= 0", _PRICE_EXAMPLE
    shown = f"{number:g}"
    return (f"{value!r} is text, not a number",
            f"write the number alone, per hour in the pricing currency: `{sku}: {shown}`")


def budget(run: LoadRun, f: LoadedFile, doc: schema.ReconFileDoc) -> Budget | None:
    """``budget:``: ``monthly`` and/or ``increase``, amounts >= 0 in the pricing currency."""
    b = doc.budget
    if b is None:
        return None
    example = "e.g. `budget: {monthly: 2000, increase: 500}` (per month, in the pricing currency)"
    if b.monthly is None and b.increase is None:
        run.error(f, ("budget",), "the budget sets neither monthly nor increase", example)
    for key in ("monthly", "increase"):
        value = getattr(b, key)
        if value is not None and value < 0:
            run.error(f, ("budget", key), f"{value:g} is negative", example)
    return Budget(monthly=b.monthly, increase=b.increase)
