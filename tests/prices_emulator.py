"""An emulator of the Azure Retail Prices API (``GET /api/retail/prices``), for recon's cost tests.

A real HTTP server on 127.0.0.1 that answers in the API's documented shape::

    {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
     "Items": [{"currencyCode", "tierMinimumUnits", "retailPrice", "unitPrice", "armRegionName",
                "location", "effectiveStartDate", "meterId", "meterName", "productId", "skuId",
                "productName", "skuName", "serviceName", "serviceId", "serviceFamily",
                "unitOfMeasure", "type", "isPrimaryMeterRegion", "armSkuName"}, ...],
     "NextPageLink": "http://127.0.0.1:PORT/api/retail/prices?...&$skip=N" or null, "Count": n}

- ``$filter``: ``field eq 'value'`` (or ``true``/``false``/a number) joined by ``and``, compared
  case-insensitively as the API's default version does; ``priceType`` filters the items' ``type``.
  Anything else is a 400 with the API's error body.
- ``currencyCode='EUR'``: prices converted at a fixed rate (``RATES``).
- Paging: ``page_size`` items a page (the API sends 100), ``$skip``, ``NextPageLink``.
- Each catalogued size has the variants the real catalogue has: Linux and Windows pay-as-you-go,
  Spot, Low Priority, a one-year reservation and a non-primary meter region, so that a client must
  choose the right item. Prices are illustrative (round numbers tests can check by hand), not Azure's.
- Faults scripted by tests (``script()``): a status (429 with ``Retry-After``, 500), malformed JSON,
  an answer that never comes (the connection is held open), for the next requests in order.
- ``requests``: every request's path and query, for assertions.

``python -m tests.prices_emulator`` serves it in a process of its own, printing its URL first, until
its stdin closes (the tests' session emulator: a thread in the test process would keep recon from
forking its parsing workers, which it does only in a process with no other thread).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

PATH = "/api/retail/prices"
# Linux pay-as-you-go USD per hour in eastus (westeurope: +10%), illustrative round numbers
CATALOGUE: dict[str, float] = {
    "Standard_DS2_v2": 0.125,
    "Standard_DS3_v2": 0.25,
    "Standard_DS4_v2": 0.5,
    "Standard_F2s_v2": 0.1,
    "Standard_F4s_v2": 0.2,
    "Standard_F8s_v2": 0.4,
    "Standard_E4s_v3": 0.3,
    "Standard_NC6s_v3": 3.0,
}
REGIONS = {"eastus": ("US East", 1.0), "westeurope": ("EU West", 1.1)}
RATES = {"USD": 1.0, "EUR": 0.9, "GBP": 0.8}
_FIELDS = {
    "servicename": "serviceName", "armregionname": "armRegionName", "armskuname": "armSkuName",
    "pricetype": "type", "productname": "productName", "skuname": "skuName", "metername": "meterName",
    "servicefamily": "serviceFamily", "location": "location", "meterid": "meterId", "skuid": "skuId",
    "productid": "productId", "serviceid": "serviceId", "isprimarymeterregion": "isPrimaryMeterRegion",
}


def _variants(sku: str, usd: float, region: str) -> list[dict[str, Any]]:
    location, factor = REGIONS[region]
    short = sku.removeprefix("Standard_").replace("_", " ")
    words = short.split()
    series = "".join(c for c in words[0] if not c.isdigit()) + "".join(words[1:])
    product = f"Virtual Machines {series} Series"
    base = usd * factor
    rows = [  # (skuName, productName, type, unit, price, primary)
        (short, product, "Consumption", "1 Hour", base, True),
        (short, product + " Windows", "Consumption", "1 Hour", base * 1.8, True),
        (f"{short} Spot", product, "Consumption", "1 Hour", base * 0.2, True),
        (f"{short} Low Priority", product, "Consumption", "1 Hour", base * 0.25, True),
        (short, product, "Reservation", "1 Hour", base * 0.6 * 8760, True),
        (short, product, "DevTestConsumption", "1 Hour", base * 0.9, True),
        (short, product, "Consumption", "1 Hour", base * 1.5, False),  # a non-primary meter region
    ]
    out = []
    for i, (sku_name, prod, kind, unit, price, primary) in enumerate(rows):
        out.append({
            "currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price, "unitPrice": price,
            "armRegionName": region, "location": location, "effectiveStartDate": "2024-03-01T00:00:00Z",
            "meterId": f"{sku.lower()}-{region}-{i}", "meterName": sku_name, "productId": f"DZH318Z0{i:04d}",
            "skuId": f"DZH318Z0{i:04d}/{sku}", "productName": prod, "skuName": sku_name,
            "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
            "unitOfMeasure": unit, "type": kind, "isPrimaryMeterRegion": primary, "armSkuName": sku,
        })
    return out


def catalogue_items(prices: dict[str, float] | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for sku, usd in sorted((prices or CATALOGUE).items()):
        for region in REGIONS:
            items += _variants(sku, usd, region)
    # an item of another service the filter must leave out
    items.append({**items[0], "serviceName": "Azure Machine Learning", "productName": "Machine Learning service",
                  "meterName": "vCPU Surcharge", "retailPrice": 0.0, "unitPrice": 0.0, "meterId": "surcharge"})
    return items


class FilterError(ValueError):
    pass


def parse_filter(text: str) -> list[tuple[str, Any]]:
    """``a eq 'x' and b eq true`` -> [("a", "x"), ("b", True)]; anything else raises FilterError."""
    clauses: list[tuple[str, Any]] = []
    rest = text.strip()
    while rest:
        name, _, rest = rest.partition(" ")
        op, _, rest = rest.lstrip().partition(" ")
        if name.lower() not in _FIELDS or op.lower() != "eq":
            raise FilterError(f"unsupported filter near {name!r}")
        rest = rest.lstrip()
        if rest.startswith("'"):
            end, value = 1, ""
            while True:
                quote = rest.find("'", end)
                if quote < 0:
                    raise FilterError("unterminated string")
                value += rest[end:quote]
                if rest[quote + 1 : quote + 2] == "'":  # '' is a quote inside the string
                    value += "'"
                    end = quote + 2
                    continue
                rest = rest[quote + 1 :].lstrip()
                break
            clauses.append((_FIELDS[name.lower()], value))
        else:
            token, _, rest = rest.partition(" ")
            parsed: Any = {"true": True, "false": False}.get(token.lower())
            if parsed is None:
                try:
                    parsed = float(token)
                except ValueError:
                    raise FilterError(f"cannot read {token!r}") from None
            clauses.append((_FIELDS[name.lower()], parsed))
        if rest:
            conj, _, rest = rest.partition(" ")
            if conj.lower() != "and" or not rest:
                raise FilterError(f"unsupported operator {conj!r}")
    return clauses


def _matches(item: dict[str, Any], clauses: list[tuple[str, Any]]) -> bool:
    for key, want in clauses:
        have = item.get(key)
        if isinstance(want, str):
            if str(have).lower() != want.lower():
                return False
        elif have != want:
            return False
    return True


@dataclass
class Fault:
    kind: str  # "status", "malformed", "hang", "html"
    status: int = 500
    retry_after: float | None = None
    seconds: float = 60.0


@dataclass
class Emulator:
    """The API on 127.0.0.1 (``url``). ``items`` is the catalogue; ``page_size`` items a page."""

    items: list[dict[str, Any]] = field(default_factory=catalogue_items)
    page_size: int = 100
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    def serve(self) -> Emulator:
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="prices-emulator", daemon=True).start()
        return self

    def close(self) -> None:
        self.released.set()  # let held ("hang") requests go
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def script(self, *faults: Fault) -> None:
        """The next requests, in order, meet these faults (then normal answers again)."""
        with self.lock:
            self.faults.extend(faults)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.requests.clear()

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            clauses = parse_filter(query.get("$filter", ""))
        except FilterError as exc:
            return 400, {"Error": {"Code": "BadRequest", "Message": f"Invalid OData parameters supplied: {exc}"}}
        currency = query.get("currencyCode", "USD").strip("'\"").upper()
        if currency not in RATES:
            return 400, {"Error": {"Code": "BadRequest", "Message": f"Invalid currency code {currency}"}}
        found = [i for i in self.items if _matches(i, clauses)]
        skip = int(query.get("$skip", "0") or 0)
        page = [{**i, "currencyCode": currency, "retailPrice": round(i["retailPrice"] * RATES[currency], 6),
                 "unitPrice": round(i["unitPrice"] * RATES[currency], 6)} for i in found[skip : skip + self.page_size]]
        next_link = None
        if skip + self.page_size < len(found):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            next_link = f"{self.url}?{urlencode({**rest, '$skip': str(skip + self.page_size)})}"
        return 200, {"BillingCurrency": currency, "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
                     "Items": page, "NextPageLink": next_link, "Count": len(page)}


class _Handler(BaseHTTPRequestHandler):
    emu: Emulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.emu.lock:
            self.emu.requests.append({"path": parts.path, "query": query})
            fault = self.emu.faults.pop(0) if self.emu.faults else None
        if parts.path.rstrip("/") != PATH:
            self._send(404, b'{"Error": {"Code": "NotFound", "Message": "Not found"}}')
            return
        if fault is not None:
            self._fault(fault)
            return
        status, doc = self.emu.answer(query)
        self._send(status, json.dumps(doc).encode())

    def _fault(self, fault: Fault) -> None:
        if fault.kind == "hang":
            self.emu.released.wait(fault.seconds)
            self.close_connection = True
            return
        if fault.kind == "malformed":
            self._send(200, b'{"BillingCurrency": "USD", "Items": [{"retailPrice": 0.25,')
            return
        if fault.kind == "html":
            self._send(200, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        body = json.dumps({"Error": {"Code": "TooManyRequests" if fault.status == 429 else "ServerError",
                                     "Message": "Too many requests" if fault.status == 429 else "Internal error"}})
        self._send(fault.status, body.encode(), headers=headers)


def main() -> None:
    """Serve until stdin closes or the process is told to stop; the first line out is the URL."""
    emu = Emulator().serve()
    print(f"RECON_PRICES_URL={emu.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # the parent holds the pipe: when it goes, so does the emulator
    emu.close()


if __name__ == "__main__":
    main()
