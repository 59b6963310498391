"""Hourly prices for a plan: recon.yaml's ``prices:`` first, then the Azure Retail Prices API, cached
on disk (docs/cost.md). The only module that talks to the API; the arithmetic is
``reconciler.plan.cost``, which is pure.

What bills a managed online deployment: its instances are virtual machines of its instance type,
billed per hour at the Linux pay-as-you-go rate of that size (Azure ML adds no surcharge), under
the service "Virtual Machines". So for each instance type recon asks::

    GET {url}?currencyCode='{currency}'&$filter=serviceName eq 'Virtual Machines'
        and armRegionName eq '{region}' and armSkuName eq '{sku}' and priceType eq 'Consumption'

follows ``NextPageLink`` until it is null (at most ``MAX_PAGES`` pages, on the same host), and takes
the item priced per ``1 Hour`` that is neither Windows (``productName`` ending in "Windows") nor
Spot nor Low Priority, preferring the primary meter region and then the latest
``effectiveStartDate``.

Time: one deadline for the whole fetch (``pricing.timeout``, 10 s by default; connecting gets at most
3 s of it). A 429 or 5xx answer is retried while its ``Retry-After`` (at most 5 s) fits in the
deadline. Any failure makes the plan say "prices unavailable: <why>" instead of a number, never
fail, and is remembered for ``FAILURE_TTL_S`` (or the ``Retry-After``, if longer), so that the plans
after it neither wait nor ask again. ``RECON_PRICES_URL`` overrides ``pricing.url`` (tests point it
at an emulator on 127.0.0.1).

Cache: ``<cache dir>/prices/<region>-<currency>.json`` (for another URL than Azure's,
``<region>-<currency>-<12 hex of the URL's sha256>.json``: an emulator or a proxy never displaces
Azure's prices) holds, per instance type, the price and the time it was fetched (and the types the API has no price for); entries older than
``pricing.cache_hours`` are asked again. Written atomically; a cache that cannot be read or written
is only a slower plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from reconciler import __version__
from reconciler.model.settings import RETAIL_PRICES_URL, ProjectSettings
from reconciler.plan.cost import SOURCE_API, SOURCE_TABLE, Price, PriceTable

if TYPE_CHECKING:
    import httpx

ENV_URL = "RECON_PRICES_URL"
DEFAULT_REGION = "eastus"
FAILURE_TTL_S = 600.0
MAX_PAGES = 20
CONNECT_TIMEOUT_S = 3.0
MAX_RETRY_WAIT_S = 5.0
CACHE_FORMAT = 1
SERVICE = "Virtual Machines"


class PricesUnavailable(Exception):
    """The API could not be asked or did not answer usefully: ``reason`` for the plan, remembered
    for ``ttl`` seconds."""

    def __init__(self, reason: str, ttl: float = FAILURE_TTL_S) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ttl = ttl


def region_of(settings: ProjectSettings) -> str:
    """``pricing.region``, else the azure provider's ``location`` (recon.yaml, else
    ``AZURE_LOCATION``), else eastus."""
    location = settings.provider.settings.get("location")
    if not location and settings.provider.kind == "azure":
        location = os.environ.get("AZURE_LOCATION")
    return settings.pricing.region or str(location or "").replace(" ", "").lower() or DEFAULT_REGION


def _plain(url: str) -> str:
    """``url`` without any user name or password in it (for messages and the cache)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def odata_filter(region: str, sku: str) -> str:
    """The ``$filter`` recon sends for one instance type (quotes doubled, as OData escapes them)."""
    def q(s: str) -> str:
        return "'" + s.replace("'", "''") + "'"

    return (
        f"serviceName eq {q(SERVICE)} and armRegionName eq {q(region)} and armSkuName eq {q(sku)} "
        "and priceType eq 'Consumption'"
    )


def price_table(
    settings: ProjectSettings,
    skus: Iterable[str],
    cache_root: Path,
    *,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PriceTable:
    """Prices for ``skus`` (managed instance types) and for every type recon.yaml prices."""
    pricing = settings.pricing
    region, currency = region_of(settings), pricing.currency
    known: dict[str, Price] = {sku: Price(per_hour, SOURCE_TABLE) for sku, per_hour in settings.prices.items()}
    table_keys = {k.lower() for k in known}
    needed = sorted({s for s in skus if s.lower() not in table_keys})
    if not needed:
        return PriceTable(currency, region, known)
    if not pricing.fetch:
        why = "pricing.fetch is false in recon.yaml: price the instance types under `prices:`"
        return PriceTable(currency, region, known, unavailable=why)
    url = os.environ.get(ENV_URL) or pricing.url
    clock = now or (lambda: datetime.now(UTC))
    cache = PriceCache(cache_path(cache_root, region, currency, url), _plain(url), region, currency, clock)
    todo = [s for s in needed if not cache.fresh(s, pricing.cache_hours)]
    unavailable = cache.failure() if todo else None
    if todo and unavailable is None:
        try:
            _Fetcher(url, region, currency, pricing.timeout, sleep).fetch(todo, cache)
        except PricesUnavailable as exc:
            unavailable = exc.reason
            cache.fail(exc.reason, exc.ttl)
        cache.save()
    prices, missing = cache.found(needed)
    return PriceTable(currency, region, {**prices, **known}, missing, unavailable)


# -- the cache ------------------------------------------------------------------------------------


def cache_path(cache_root: Path, region: str, currency: str, url: str) -> Path:
    """Where the prices of ``region`` and ``currency`` asked at ``url`` are cached (see the module docstring)."""
    if url == RETAIL_PRICES_URL:
        return cache_root / "prices" / f"{region}-{currency}.json"
    digest = hashlib.sha256(_plain(url).encode()).hexdigest()[:12]
    return cache_root / "prices" / f"{region}-{currency}-{digest}.json"


class PriceCache:
    """``<cache dir>/prices/<region>-<currency>.json`` (see the module docstring). A file written for
    another URL, region or currency, or one that cannot be read, counts as empty."""

    def __init__(self, path: Path, url: str, region: str, currency: str, now: Callable[[], datetime]) -> None:
        self.path, self.now = path, now
        self.head = {"format": CACHE_FORMAT, "url": url, "region": region, "currency": currency}
        self.data: dict[str, Any] = {"prices": {}, "missing": {}, "failure": None}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and all(doc.get(k) == v for k, v in self.head.items()):
            for key in ("prices", "missing"):
                if isinstance(doc.get(key), dict):
                    self.data[key] = doc[key]
            self.data["failure"] = doc.get("failure") if isinstance(doc.get("failure"), dict) else None

    def _age_h(self, entry: Any) -> float | None:
        try:
            return (self.now() - datetime.fromisoformat(entry["fetched_at"])).total_seconds() / 3600
        except (TypeError, KeyError, ValueError):
            return None

    def fresh(self, sku: str, hours: float) -> bool:
        for key in ("prices", "missing"):
            age = self._age_h(self.data[key].get(sku.lower()))
            if age is not None and 0 <= age < hours:
                return True
        return False

    def failure(self) -> str | None:
        """The last failure while it is remembered, with when it happened and when recon asks again."""
        f = self.data["failure"]
        try:
            at, until = datetime.fromisoformat(f["at"]), datetime.fromisoformat(f["until"])
        except (TypeError, KeyError, ValueError):
            return None
        if not at <= self.now() < until:
            return None
        return f"{f['why']} (at {at:%H:%M} UTC; recon asks again after {until:%H:%M} UTC)"

    def put(self, sku: str, price: Price) -> None:
        entry = {"instance_type": sku, "per_hour": price.per_hour, "fetched_at": self.now().isoformat(),
                 "product": price.product, "meter": price.meter}
        self.data["prices"][sku.lower()] = entry
        self.data["missing"].pop(sku.lower(), None)

    def put_missing(self, sku: str, why: str) -> None:
        self.data["missing"][sku.lower()] = {"instance_type": sku, "why": why, "fetched_at": self.now().isoformat()}

    def fail(self, why: str, ttl: float) -> None:
        at = self.now()
        self.data["failure"] = {"why": why, "at": at.isoformat(), "until": (at + timedelta(seconds=ttl)).isoformat()}

    def found(self, skus: Iterable[str]) -> tuple[dict[str, Price], dict[str, str]]:
        prices: dict[str, Price] = {}
        missing: dict[str, str] = {}
        for sku in skus:
            p = self.data["prices"].get(sku.lower())
            if isinstance(p, dict) and isinstance(p.get("per_hour"), int | float):
                date = str(p.get("fetched_at", ""))[:10] or None
                prices[sku] = Price(float(p["per_hour"]), SOURCE_API, date, p.get("product"), p.get("meter"))
            elif isinstance(m := self.data["missing"].get(sku.lower()), dict):
                missing[sku] = str(m.get("why"))
        return prices, missing

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**self.head, **self.data}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only makes the next plan ask again


# -- the API --------------------------------------------------------------------------------------


def choose(items: list[Any], sku: str, region: str, currency: str) -> Price | None:
    """The Linux pay-as-you-go hourly price of ``sku`` among the API's items (module docstring)."""
    good = []
    for i in items:
        if not isinstance(i, dict) or isinstance(i.get("retailPrice"), bool):
            continue
        text = f"{i.get('skuName', '')} {i.get('meterName', '')}"
        if (
            str(i.get("armSkuName", "")).lower() == sku.lower()
            and str(i.get("armRegionName", "")).lower() == region
            and i.get("type", "Consumption") == "Consumption"
            and i.get("unitOfMeasure") == "1 Hour"
            and not str(i.get("productName", "")).endswith("Windows")
            and "Spot" not in text
            and "Low Priority" not in text
            and str(i.get("currencyCode", currency)).upper() == currency
            and isinstance(i.get("retailPrice"), int | float)
            and i["retailPrice"] >= 0
        ):
            good.append(i)
    if not good:
        return None
    best = max(good, key=lambda i: (i.get("isPrimaryMeterRegion") is not False, str(i.get("effectiveStartDate", ""))))
    return Price(float(best["retailPrice"]), SOURCE_API, product=best.get("productName"), meter=best.get("meterName"))


class _Fetcher:
    """One plan's questions to the API, under one deadline."""

    def __init__(self, url: str, region: str, currency: str, timeout: float, sleep: Callable[[float], None]) -> None:
        self.url, self.region, self.currency, self.timeout, self.sleep = url, region, currency, timeout, sleep
        self.deadline = time.monotonic() + timeout
        self.host = urlsplit(_plain(url)).netloc or "the Retail Prices API"

    def fetch(self, skus: list[str], cache: PriceCache) -> None:
        import httpx  # only a plan that asks the API pays for importing it

        headers = {"User-Agent": f"recon/{__version__}", "Accept": "application/json"}
        with httpx.Client(headers=headers, follow_redirects=False) as client:
            for sku in skus:
                items = self._items(client, sku)
                price = choose(items, sku, self.region, self.currency)
                if price is not None:
                    cache.put(sku, price)
                else:
                    cache.put_missing(
                        sku,
                        f"the Azure Retail Prices API has no hourly Linux pay-as-you-go price for {sku} in "
                        f"{self.region} ({len(items)} item{'s' if len(items) != 1 else ''} for its filter): "
                        "add it under `prices:` in recon.yaml",
                    )

    def _items(self, client: httpx.Client, sku: str) -> list[Any]:
        params: dict[str, str] | None = {
            "currencyCode": f"'{self.currency}'",
            "$filter": odata_filter(self.region, sku),
        }
        url, items = self.url, []
        for _ in range(MAX_PAGES):
            page = self._get(client, url, params)
            items += page["Items"]
            link = page.get("NextPageLink")
            if not link:
                return items
            if not isinstance(link, str) or not _same_origin(link, self.url):
                raise PricesUnavailable(f"{self.host} sent a NextPageLink to another place: {str(link)[:120]!r}")
            url, params = link, None  # the link carries the query
        raise PricesUnavailable(f"{self.host} sent more than {MAX_PAGES} pages for {sku}")

    def _get(self, client: httpx.Client, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        import httpx

        for attempt in range(3):
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            try:
                reply = client.get(url, params=params, timeout=httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT_S)))
            except httpx.TimeoutException:
                break
            except httpx.HTTPError as exc:
                raise PricesUnavailable(f"cannot reach {self.host}: {exc or type(exc).__name__}") from exc
            if reply.status_code == 429 or reply.status_code >= 500:
                wait = _retry_after(reply)
                if attempt < 2 and wait <= min(MAX_RETRY_WAIT_S, self.deadline - time.monotonic()):
                    self.sleep(wait)
                    continue
                raise PricesUnavailable(
                    f"{self.host} answered {reply.status_code} {reply.reason_phrase}"
                    + (f" and asks to wait {wait:g} s" if reply.status_code == 429 else ""),
                    ttl=max(FAILURE_TTL_S, wait),
                )
            return self._page(reply)
        raise PricesUnavailable(f"no answer from {self.host} within {self.timeout:g} s (pricing.timeout in recon.yaml)")

    def _page(self, reply: httpx.Response) -> dict[str, Any]:
        if reply.status_code != 200:
            raise PricesUnavailable(f"{self.host} answered {reply.status_code} {reply.reason_phrase}: {_error_text(reply)}")
        try:
            page = json.loads(reply.content)
        except ValueError:
            kind = reply.headers.get("content-type", "no content type")
            raise PricesUnavailable(
                f"{self.host} answered with something that is not JSON ({kind}, {len(reply.content)} bytes)"
            ) from None
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise PricesUnavailable(f"{self.host} answered JSON that is not a Retail Prices page (no Items list)")
        return page


def _retry_after(reply: httpx.Response) -> float:
    try:
        return max(0.0, float(reply.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _error_text(reply: httpx.Response) -> str:
    try:
        doc = json.loads(reply.content)
        err = doc.get("Error") or doc.get("error") if isinstance(doc, dict) else None
        text = err.get("Message") or err.get("message") if isinstance(err, dict) else err
    except ValueError:
        text = None
    return " ".join(str(text or reply.text or "no detail").split())[:200]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)
