"""The cost of a plan through the real CLI: the text line, the JSON object, the Markdown section;
prices from the emulated Retail Prices API (the session's, see tests/conftest.py) or recon.yaml;
offline plans; the budget gate with its exit codes; recon.yaml's errors.

The project is Azure's managed sample on the fake provider: blue is 1 x Standard_DS3_v2 ($0.25/h
in the emulator: 730 x 0.25 = $182.50 a month), the pull request adds green as 2 x Standard_F4s_v2
($0.20/h: 730 x 2 x 0.20 = $292 a month) and sends it 10% of the traffic.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from providers.fake import WORLD_FILE, FakeWorld
from reconciler.cli import cli
from tests.prices_emulator import Emulator, Fault

RECON_YAML = "workspace: ml-prod\nprovider: {kind: fake}\n"
COST_LINE = "Cost: $183/month -> $475/month (+$292); peak during apply $0.65/h"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["-C", str(root), *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(sample_project: Callable[..., Path], tmp_path: Path) -> Path:
    """blue applied (all traffic); green (2 x F4s_v2) and 90/10 traffic in the files, not applied."""
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text().rstrip() + "\ntraffic:\n  blue: 100\n")
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    green = (tmp_path / "unused" / "green-deployment.yml").read_text()
    green = green.replace("instance_type: Standard_DS3_v2", "instance_type: Standard_F4s_v2")
    (root / "green-deployment.yml").write_text(green.replace("instance_count: 1", "instance_count: 2"))
    ep.write_text(ep.read_text().replace("blue: 100", "blue: 90\n  green: 10"))
    return root


def set_yaml(root: Path, extra: str) -> None:
    (root / "recon.yaml").write_text(RECON_YAML + extra)


def test_text_plan_ends_with_the_cost_line(project: Path) -> None:
    code, out, err = run(project, "plan", "--detailed-exitcode")
    assert code == 2, err
    lines = out.splitlines()
    assert lines[-3:-1] == [COST_LINE, "Plan: 3 to add, 1 to change, 0 to destroy."]
    block = out[out.index("Cost (USD") :]
    assert block.startswith("Cost (USD, 730 h a month x instances x hourly price; Azure retail prices for eastus of ")
    assert "  + deployment.my-endpoint.green  2 x Standard_F4s_v2 at $0.20/h: $0 -> $292 a month (+$292)" in block
    assert "  1 unchanged deployment: $183/month" in block
    # peak: blue (0.25) and green (2 x 0.20) together, as after the apply: no step holds more
    assert "peak during apply while" not in block


def test_json_cost_object(project: Path) -> None:
    code, out, err = run(project, "plan", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["format_version"], doc["recon_format_version"]) == ("1.2", "2.1")  # 2.1 added cost
    cost = doc["cost"]
    assert (cost["currency"], cost["region"], cost["hours_per_month"]) == ("USD", "eastus", 730)
    assert (cost["before_min"], cost["before_max"]) == (182.5, 182.5)
    assert (cost["after_min"], cost["after_max"], cost["change_max"]) == (474.5, 474.5, 292.0)
    assert cost["peak_hourly"] == 0.65 and cost["peak_step"] is None  # as much as after the apply
    assert cost["sources"] == ["azure-retail-prices"] and len(cost["price_date"]) == 10
    (green,) = cost["deployments"]
    assert green["address"] == "deployment.my-endpoint.green" and green["action"] == "create"
    assert green["after"] == {
        "instance_type": "Standard_F4s_v2", "instances_min": 2, "instances_max": 2,
        "price_per_hour": 0.2, "monthly_min": 292.0, "monthly_max": 292.0,
    }
    assert [(p["instance_type"], p["per_hour"], p["source"]) for p in cost["prices"]] == [
        ("Standard_DS3_v2", 0.25, "azure-retail-prices"), ("Standard_F4s_v2", 0.2, "azure-retail-prices"),
    ]
    assert cost["unavailable"] is None and cost["unpriced"] == [] and cost["errors"] == []


def test_markdown_comment_has_a_cost_section(project: Path, tmp_path: Path) -> None:
    code, _, err = run(project, "plan", "--out", str(tmp_path / "plan.bin"))
    assert code == 0, err
    code, md, _ = run(project, "show", str(tmp_path / "plan.bin"), "--format", "markdown")
    assert code == 0
    order = [md.index(h) for h in ("### Rollout", "### Quota", "### Cost")]
    assert order == sorted(order)
    section = md[md.index("### Cost") :]
    assert section.startswith(
        "### Cost\n\n**\\$183/month → \\$475/month (+\\$292); peak during apply \\$0.65/h**\n"
    )
    assert (
        "| `+` `deployment.my-endpoint.green` | 2 x Standard\\_F4s\\_v2 at \\$0.20/h | \\$0 → \\$292 | +\\$292 |  |"
        in section
    )
    assert "- 1 unchanged deployment: \\$183/month" in section


def test_recon_yaml_prices_win_and_price_other_instance_types(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = Emulator().serve()
    try:
        monkeypatch.setenv("RECON_PRICES_URL", emulator.url)
        set_yaml(project, "prices:\n  Standard_DS3_v2: 0.10\n  Standard_F4s_v2: 0.05\n")
        code, out, err = run(project, "plan", "--format", "json")
        assert code == 0, err
        cost = json.loads(out)["cost"]
        assert cost["after_max"] == pytest.approx(730 * (0.10 + 2 * 0.05))  # 146
        assert cost["sources"] == ["recon.yaml"] and cost["price_date"] is None
        assert emulator.requests == []  # nothing to ask the API
        set_yaml(project, "prices:\n  Standard_DS3_v2: 0.10\n")
        code, out, err = run(project, "plan", "--format", "json")
        cost = json.loads(out)["cost"]
        assert cost["sources"] == ["azure-retail-prices", "recon.yaml"]
        assert [r["query"]["$filter"].split("armSkuName eq ")[1][:17] for r in emulator.requests] == [
            "'Standard_F4s_v2'"
        ]  # DS3_v2 is not asked for
    finally:
        emulator.close()


def test_offline_plan_says_prices_unavailable_and_does_not_ask_again(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RECON_PRICES_URL", f"http://127.0.0.1:{port}/api/retail/prices")
    code, out, err = run(project, "plan", "--detailed-exitcode")
    assert code == 2, err  # the plan itself succeeds
    line = out.splitlines()[-3]  # then the Plan: line and the digest
    assert line.startswith(f"Cost: prices unavailable: cannot reach 127.0.0.1:{port}: ")
    code, out, _ = run(project, "plan")
    assert code == 0
    assert " (at " in out.splitlines()[-3] and "recon asks again after" in out.splitlines()[-3]


def test_an_api_that_never_answers_costs_at_most_the_timeout(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hang = Emulator().serve()
    try:
        hang.script(Fault("hang", seconds=30))
        monkeypatch.setenv("RECON_PRICES_URL", hang.url)
        set_yaml(project, "pricing:\n  timeout: 1\n")
        code, out, err = run(project, "plan")
        assert code == 0, err
        host = hang.url.split("/")[2]
        assert out.splitlines()[-3] == (
            f"Cost: prices unavailable: no answer from {host} within 1 s (pricing.timeout in recon.yaml)"
        )
        run(project, "plan")
        assert len(hang.requests) == 1  # the failure is remembered
    finally:
        hang.close()


def test_budget_gate_fails_the_plan_as_a_quota_failure_does(project: Path, tmp_path: Path) -> None:
    set_yaml(project, "budget:\n  monthly: 1000\n  increase: 200\n")
    code, out, err = run(project, "plan", "--detailed-exitcode", "--out", str(tmp_path / "plan.bin"))
    assert code == 1  # an error, not "changes" (2)
    error = (
        "budget exceeded: this plan adds $292/month ($183/month -> $475/month); budget.increase in recon.yaml "
        "is $200; from: deployment.my-endpoint.green +$292/month (split the change into smaller applies, or "
        "raise budget.increase)"
    )
    assert f"Error: {error}" in out.splitlines()
    assert "  Budget: $1,000/month (ok), +$200/month a plan (EXCEEDED)" in out.splitlines()
    assert "This plan has errors and cannot be applied." in out
    assert "The plan has errors; nothing was saved or changed." in err
    assert not (tmp_path / "plan.bin").exists()

    code, out, err = run(project, "plan", "--format", "json")
    assert code == 1 and f"Error: {error}" in err
    doc = json.loads(out)
    assert doc["applicable"] is False and error in doc["errors"] and doc["cost"]["errors"] == [error]
    assert (doc["cost"]["budget_monthly"], doc["cost"]["budget_increase"]) == (1000, 200)

    code, md, _ = run(project, "plan", "--format", "markdown")
    assert code == 1
    assert "**This plan has errors and cannot be applied:**" in md
    assert "> - budget exceeded: this plan adds \\$292/month" in md
    assert "Budget: \\$1,000/month (ok), +\\$200/month a plan (EXCEEDED)" in md

    # apply refuses before anything runs
    code, out, err = run(project, "apply", "--auto-approve")
    assert code == 1 and "the plan has errors; nothing was changed" in err
    world = FakeWorld(project / ".recon" / WORLD_FILE)
    assert "deployment.my-endpoint.green" not in world.objects()

    # within budget: the plan has changes again (2)
    set_yaml(project, "budget:\n  monthly: 1000\n  increase: 300\n")
    code, out, _ = run(project, "plan", "--detailed-exitcode")
    assert code == 2 and "  Budget: $1,000/month (ok), +$300/month a plan (ok)" in out.splitlines()


def test_budget_monthly_names_the_largest_deployments(project: Path) -> None:
    set_yaml(project, "budget: {monthly: 400}\n")
    code, out, _ = run(project, "plan")
    assert code == 1
    assert (
        "Error: budget exceeded: the deployments cost $475/month after this apply (730 h x instances x hourly "
        "price); budget.monthly in recon.yaml is $400; of it: deployment.my-endpoint.green $292/month "
        "(2 x Standard_F4s_v2 at $0.20/h) (lower the instance counts or types, or raise budget.monthly)"
    ) in out.splitlines()


def test_budget_without_prices_is_a_warning(project: Path) -> None:
    set_yaml(project, "pricing: {fetch: false}\nbudget: {monthly: 10}\n")
    code, out, _ = run(project, "plan", "--detailed-exitcode")
    assert code == 2
    assert (
        "Warning: recon.yaml: budget: the budget was not checked: prices unavailable: pricing.fetch is false in "
        "recon.yaml: price the instance types under `prices:`"
    ) in out.splitlines()


@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        ("pricing:\n  currency: EURO\n", "recon.yaml:4: pricing.currency: 'EURO' is not a currency the Azure Retail Prices API offers"),
        ("pricing:\n  region: West Europe\n", "recon.yaml:4: pricing.region: 'West Europe' is not an Azure region name"),
        ("pricing:\n  tiemout: 3\n", "recon.yaml:4: pricing.tiemout: unknown field 'tiemout'"),
        ("prices:\n  Standard_DS3_v2: cheap\n", "recon.yaml:4: prices.Standard_DS3_v2: 'cheap' is not a price per hour >= 0"),
        ("prices:\n  Standard_DS3_v2: '0.21'\n", "recon.yaml:4: prices.Standard_DS3_v2: '0.21' is text, not a number "
         "(write the number alone, per hour in the pricing currency: `Standard_DS3_v2: 0.21`)"),
        ("prices:\n  Standard_DS3_v2: $0.21\n", "recon.yaml:4: prices.Standard_DS3_v2: '$0.21' is text, not a number"),
        ("prices:\n  Standard_DS3_v2: 0.21\n  standard_ds3_v2: 0.3\n",  # which would win was the file's order
         "recon.yaml:5: prices.standard_ds3_v2: 'standard_ds3_v2' prices the same instance type as "
         "'Standard_DS3_v2': instance type names compare case-insensitively (keep one of the two)"),
        ("budget:\n  monthly: -5\n", "recon.yaml:4: budget.monthly: -5 is negative"),
        ("budget:\n  weekly: 5\n", "recon.yaml:4: budget.weekly: unknown field 'weekly'"),
    ],
)
def test_bad_settings_name_recon_yaml_the_line_and_the_field(project: Path, yaml: str, error: str) -> None:
    set_yaml(project, yaml)
    code, _, err = run(project, "plan")
    assert code == 1
    assert any(line.startswith(f"Error: {error}") for line in err.splitlines()), err


def test_a_destroy_plan_saves_the_whole_cost(project: Path) -> None:
    shutil.rmtree(project / ".recon" / "cache", ignore_errors=True)
    code, out, _ = run(project, "plan", "--destroy", "--format", "json")
    assert code == 0
    cost: dict[str, Any] = json.loads(out)["cost"]
    assert (cost["before_max"], cost["after_max"], cost["change_max"]) == (182.5, 0, -182.5)
    assert cost["peak_hourly"] == 0.25
