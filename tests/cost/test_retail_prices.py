"""Fetching prices (``reconciler.apply.prices``) from an emulator of the Azure Retail Prices API on
127.0.0.1: the filter sent, paging, currency and region, the item chosen among its variants, an
empty result, a 429, malformed JSON, an answer that never comes, a closed port, the cache and its
lifetime, the failure remembered, and recon.yaml's table winning over the API."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply.prices import ENV_URL, cache_path, choose, odata_filter, price_table
from reconciler.model.resources import ProviderSettings
from reconciler.model.settings import RETAIL_PRICES_URL, PricingSettings, ProjectSettings
from reconciler.plan.cost import SOURCE_API, SOURCE_TABLE
from tests.prices_emulator import Emulator, Fault, catalogue_items, parse_filter

DS3, F4S = "Standard_DS3_v2", "Standard_F4s_v2"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    emu = Emulator(page_size=2).serve()  # 7 items per size and region: 4 pages
    monkeypatch.setenv(ENV_URL, emu.url)
    yield emu
    emu.close()


def settings(**pricing: Any) -> ProjectSettings:
    prices = pricing.pop("prices", {})
    provider = pricing.pop("provider", ProviderSettings())
    return ProjectSettings(pricing=PricingSettings(**pricing), prices=prices, provider=provider)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 7, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_asks_for_the_linux_pay_as_you_go_price_and_follows_next_page_link(emulator: Emulator, tmp_path: Path) -> None:
    table = price_table(settings(), [DS3, F4S], tmp_path)
    assert table.unavailable is None and table.missing == {}
    ds3 = table.prices[DS3]
    assert (ds3.per_hour, ds3.source, ds3.product, ds3.meter) == (0.25, SOURCE_API, "Virtual Machines DSv2 Series", "DS3 v2")
    assert table.prices[F4S].per_hour == 0.2
    first = emulator.requests[0]["query"]
    assert first["$filter"] == (
        "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq 'Standard_DS3_v2' "
        "and priceType eq 'Consumption'"
    )
    assert first["currencyCode"] == "'USD'"
    # 6 consumption-type items of DS3 in eastus (Linux, Windows, Spot, Low Priority, DevTest is another
    # type, the non-primary region) at 2 a page: 3 pages per size, the later ones by NextPageLink
    skips = [r["query"].get("$skip") for r in emulator.requests]
    assert skips == [None, "2", "4", None, "2", "4"]


def test_currency_and_region(emulator: Emulator, tmp_path: Path) -> None:
    table = price_table(settings(region="westeurope", currency="EUR"), [DS3], tmp_path)
    assert table.prices[DS3].per_hour == pytest.approx(0.25 * 1.1 * 0.9)  # the emulator's region and rate
    assert (table.region, table.currency) == ("westeurope", "EUR")
    assert emulator.requests[0]["query"]["currencyCode"] == "'EUR'"
    assert cache_path(tmp_path, "westeurope", "EUR", emulator.url).is_file()
    assert not (tmp_path / "prices" / "westeurope-EUR.json").exists()  # Azure's own prices' file stays Azure's
    # the provider's location is the default region
    az = settings(provider=ProviderSettings(kind="azure", settings={"location": "westeurope"}))
    assert price_table(az, [DS3], tmp_path / "b").region == "westeurope"


def test_choose_skips_windows_spot_low_priority_and_secondary_meters() -> None:
    items = [i for i in catalogue_items() if i["armSkuName"] == DS3 and i["armRegionName"] == "eastus"]
    assert len(items) == 7
    price = choose(items, DS3, "eastus", "USD")
    assert price is not None and price.per_hour == 0.25
    linux = [i for i in items if i["retailPrice"] == 0.25]
    assert choose([i for i in items if i not in linux], DS3, "eastus", "USD") is not None  # the non-primary one
    assert choose([i for i in items if i not in linux and i["isPrimaryMeterRegion"]], DS3, "eastus", "USD") is None


def test_an_empty_result_is_a_type_without_price(emulator: Emulator, tmp_path: Path) -> None:
    table = price_table(settings(), ["Standard_ZZ9_v9"], tmp_path)
    assert table.prices == {} and table.unavailable is None
    assert table.missing["Standard_ZZ9_v9"] == (
        "the Azure Retail Prices API has no hourly Linux pay-as-you-go price for Standard_ZZ9_v9 in eastus "
        "(0 items for its filter): add it under `prices:` in recon.yaml"
    )
    # remembered as fetched: the next plan does not ask again
    price_table(settings(), ["Standard_ZZ9_v9"], tmp_path)
    assert len(emulator.requests) == 1


def test_a_429_is_retried_after_its_retry_after(emulator: Emulator, tmp_path: Path) -> None:
    emulator.script(Fault("status", 429, retry_after=0.05))
    waits: list[float] = []
    table = price_table(settings(), [DS3], tmp_path, sleep=waits.append)
    assert table.prices[DS3].per_hour == 0.25 and waits == [0.05]
    assert len(emulator.requests) == 4  # the 429, then the three pages


def test_a_429_that_asks_too_long_a_wait_makes_prices_unavailable_and_is_remembered(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.script(Fault("status", 429, retry_after=900))
    clock = Clock()
    table = price_table(settings(), [DS3], tmp_path, now=clock)
    host = emulator.url.split("/")[2]
    assert table.unavailable == f"{host} answered 429 Too Many Requests and asks to wait 900 s"
    # the next plan within the wait does not ask: it says why and since when
    again = price_table(settings(), [DS3], tmp_path, now=clock)
    assert again.unavailable == (
        f"{host} answered 429 Too Many Requests and asks to wait 900 s (at 09:30 UTC; recon asks again after 09:45 UTC)"
    )
    assert len(emulator.requests) == 1
    clock.now += timedelta(minutes=16)
    assert price_table(settings(), [DS3], tmp_path, now=clock).prices[DS3].per_hour == 0.25


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        (Fault("malformed"), "answered with something that is not JSON (application/json, 58 bytes)"),
        (Fault("html"), "answered with something that is not JSON (text/html, 45 bytes)"),
        (Fault("status", 500), "answered 500 Internal Server Error"),
        (Fault("status", 400), "answered 400 Bad Request: Internal error"),
    ],
)
def test_a_bad_answer_makes_prices_unavailable(emulator: Emulator, tmp_path: Path, fault: Fault, why: str) -> None:
    emulator.script(fault, fault, fault)
    table = price_table(settings(), [DS3, F4S], tmp_path, sleep=lambda s: None)
    assert table.unavailable == f"{emulator.url.split('/')[2]} {why}"
    assert table.prices == {}


def test_prices_fetched_before_a_failure_are_kept(emulator: Emulator, tmp_path: Path) -> None:
    price_table(settings(), [DS3], tmp_path)
    emulator.script(Fault("malformed"))
    table = price_table(settings(), [DS3, F4S], tmp_path)
    assert table.prices[DS3].per_hour == 0.25 and F4S not in table.prices
    assert table.unavailable is not None and "not JSON" in table.unavailable


def test_an_answer_that_never_comes_ends_at_the_timeout_and_is_remembered(emulator: Emulator, tmp_path: Path) -> None:
    emulator.script(Fault("hang", seconds=30))
    table = price_table(settings(timeout=0.5), [DS3], tmp_path)
    assert table.unavailable == f"no answer from {emulator.url.split('/')[2]} within 0.5 s (pricing.timeout in recon.yaml)"
    again = price_table(settings(timeout=0.5), [DS3], tmp_path)
    assert again.unavailable is not None and again.unavailable.startswith(table.unavailable + " (at ")
    assert len(emulator.requests) == 1  # the second plan did not wait again


def test_nothing_listening_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(ENV_URL, f"http://127.0.0.1:{port}/api/retail/prices")
    table = price_table(settings(), [DS3], tmp_path)
    assert table.unavailable is not None
    assert table.unavailable.startswith(f"cannot reach 127.0.0.1:{port}: ")


def test_next_page_link_elsewhere_is_not_followed(emulator: Emulator, tmp_path: Path) -> None:
    original = emulator.answer

    def answer(query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, doc = original(query)
        doc["NextPageLink"] = "https://elsewhere.example/api/retail/prices?$skip=2"
        return status, doc

    emulator.answer = answer  # type: ignore[method-assign]
    table = price_table(settings(), [DS3], tmp_path)
    assert table.unavailable is not None and "NextPageLink to another place" in table.unavailable
    assert len(emulator.requests) == 1


def test_the_cache_holds_prices_with_their_date_for_its_lifetime(emulator: Emulator, tmp_path: Path) -> None:
    clock = Clock()
    first = price_table(settings(cache_hours=24), [DS3], tmp_path, now=clock)
    assert first.prices[DS3].date == "2025-01-07"
    doc = json.loads(cache_path(tmp_path, "eastus", "USD", emulator.url).read_text())
    assert doc["url"] == emulator.url and doc["prices"]["standard_ds3_v2"]["fetched_at"] == "2025-01-07T09:30:00+00:00"
    asked = len(emulator.requests)
    clock.now += timedelta(hours=23)
    assert price_table(settings(cache_hours=24), [DS3], tmp_path, now=clock).prices[DS3].date == "2025-01-07"
    assert len(emulator.requests) == asked  # from the cache
    clock.now += timedelta(hours=2)
    assert price_table(settings(cache_hours=24), [DS3], tmp_path, now=clock).prices[DS3].date == "2025-01-08"
    assert len(emulator.requests) > asked  # older than cache_hours: asked again
    # another API URL (another emulator, the real API) does not reuse these prices
    other = Emulator().serve()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(ENV_URL, other.url)
            price_table(settings(), [DS3], tmp_path, now=clock)
        assert len(other.requests) == 1
    finally:
        other.close()


def test_a_stale_price_is_used_when_the_api_fails(emulator: Emulator, tmp_path: Path) -> None:
    clock = Clock()
    price_table(settings(), [DS3], tmp_path, now=clock)
    clock.now += timedelta(days=3)
    emulator.script(*[Fault("status", 503)] * 3)
    table = price_table(settings(), [DS3], tmp_path, now=clock, sleep=lambda s: None)
    assert table.prices[DS3].date == "2025-01-07"  # the plan says how old the price is
    assert table.unavailable is not None


def test_recon_yaml_prices_win_over_the_api(emulator: Emulator, tmp_path: Path) -> None:
    table = price_table(settings(prices={"standard_ds3_v2": 0.19, "gpu-node": 1.1}), [DS3], tmp_path)
    assert table.find(DS3) is not None and table.find(DS3).per_hour == 0.19  # type: ignore[union-attr]
    assert table.find(DS3).source == SOURCE_TABLE  # type: ignore[union-attr]
    assert table.find("GPU-node").per_hour == 1.1  # type: ignore[union-attr]
    assert emulator.requests == []  # nothing left to ask


def test_fetch_false_never_asks(emulator: Emulator, tmp_path: Path) -> None:
    table = price_table(settings(fetch=False), [DS3], tmp_path)
    assert table.unavailable == "pricing.fetch is false in recon.yaml: price the instance types under `prices:`"
    assert emulator.requests == []


def test_the_filter_quotes_names_as_odata_does() -> None:
    text = odata_filter("eastus", "Odd'Name")
    assert "armSkuName eq 'Odd''Name'" in text
    assert ("armSkuName", "Odd'Name") in parse_filter(text)  # the emulator reads it back


def test_the_azure_location_is_the_default_region(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_LOCATION", "westeurope")
    az = settings(provider=ProviderSettings(kind="azure", settings={}))
    assert price_table(az, [DS3], tmp_path).region == "westeurope"
    assert price_table(settings(), [DS3], tmp_path).region == "eastus"  # other providers: not theirs


def test_a_password_in_the_url_stays_out_of_messages_and_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(ENV_URL, f"http://reader:s3cret@127.0.0.1:{port}/api/retail/prices")
    table = price_table(settings(), [DS3], tmp_path)
    assert table.unavailable is not None and table.unavailable.startswith(f"cannot reach 127.0.0.1:{port}: ")
    assert "s3cret" not in table.unavailable
    cached = list((tmp_path / "prices").glob("eastus-USD-*.json"))
    assert len(cached) == 1 and "s3cret" not in cached[0].read_text() and "s3cret" not in cached[0].name


def test_the_cache_of_another_url_is_a_file_of_its_own(tmp_path: Path) -> None:
    azure = cache_path(tmp_path, "eastus", "USD", RETAIL_PRICES_URL)
    assert azure == tmp_path / "prices" / "eastus-USD.json"
    one = cache_path(tmp_path, "eastus", "USD", "http://127.0.0.1:8080/api/retail/prices")
    other = cache_path(tmp_path, "eastus", "USD", "http://127.0.0.1:8081/api/retail/prices")
    assert len({azure, one, other}) == 3 and one.parent == azure.parent
