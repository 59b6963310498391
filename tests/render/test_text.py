"""Terminal output: symbols, before -> after, replacements, steps, quota, drift, summary."""

from __future__ import annotations

import re

import pytest

from reconciler.cli.plan_cmds import digest_footer, render_plan
from reconciler.plan.types import Action, FieldChange, Plan, ResourceChange, Step, StepKind
from reconciler.render.common import UNKNOWN, format_value
from reconciler.render.text import render_text
from tests.render.plans import BLUE, EP, GREEN, MODEL, OLD, empty_plan, full_plan

ANSI = re.compile(r"\x1b\[")


def test_summary_line_counts_a_replace_as_add_and_destroy() -> None:
    text = render_text(full_plan())
    assert text.splitlines()[-1] == "Plan: 2 to add, 2 to change, 2 to destroy."
    assert text.startswith("recon will perform the following actions:\n")


def test_no_changes_has_the_no_changes_line_and_no_header() -> None:
    text = render_text(empty_plan())
    assert text.splitlines()[-1] == "No changes. Your endpoints match the configuration."
    assert "will perform" not in text and "Steps:" not in text


@pytest.mark.parametrize(
    ("address", "symbol"),
    [(MODEL, "+"), (BLUE, "~"), (GREEN, "-/+"), (OLD, "-"), (EP, "~")],
)
def test_each_action_has_its_symbol(address: str, symbol: str) -> None:
    assert f"  {symbol} {address}\n" in render_text(full_plan())


def test_noop_resources_are_omitted() -> None:
    assert "environment.my-env:1" not in render_text(full_plan())


def test_attribute_changes_show_before_and_after() -> None:
    text = render_text(full_plan())
    assert "~ instance_count: 2 -> 10" in text
    assert '+ environment_variables.MODE: "fast"' in text
    assert '~ traffic: {"blue": 100} -> {"blue": 90, "green": 10}' in text
    assert "(blue-deployment.yml:1)" in text  # source file:line


def test_replacement_names_path_and_reason() -> None:
    text = render_text(full_plan())
    assert '~ instance_type: "Standard_DS3_v2" -> "Standard_F4s_v2" # forces replacement' in text
    assert "# replaced because instance_type cannot change in place" in text


def test_replacement_without_reason_derives_one_from_replace_paths() -> None:
    rc = ResourceChange(
        address=EP,
        type="endpoint",
        name="my-endpoint",
        provider="local",
        action=Action.REPLACE,
        before={"compute": "a"},
        after={"compute": "b"},
        replace_paths=["compute"],
    )
    text = render_text(Plan(resource_changes=[rc]))
    assert '~ compute: "a" -> "b" # forces replacement' in text  # derived from before/after
    assert "# replaced because compute cannot change in place" in text


def test_long_values_are_summarised_and_unknown_is_marked() -> None:
    long = "x" * 500
    assert len(format_value(long)) < 80 and "(500 chars)" in format_value(long)
    assert format_value({f"k{i}": i for i in range(50)}).startswith("{50 keys: k0, k1")
    rc = ResourceChange(
        address=EP,
        type="endpoint",
        name="my-endpoint",
        provider="local",
        action=Action.UPDATE,
        changes=[FieldChange(path="scoring_uri", before="http://a", after=UNKNOWN)],
    )
    assert '~ scoring_uri: "http://a" -> (known after apply)' in render_text(Plan(resource_changes=[rc]))


def test_steps_in_plan_order_with_batches_scale_and_traffic() -> None:
    text = render_text(full_plan())
    steps = text.split("Steps:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    numbered = [s for s in steps if re.match(r"\s+\d+\. ", s)]
    assert [s.split(". ", 1)[1].split(" ", 1)[0] for s in numbered] == [
        "create",
        "set_traffic",
        "delete",
        "scale",
        "rollout",
        "delete",
        "create",
        "set_traffic",
    ]
    assert f"rollout {BLUE}: 10 instances in 5 batches of 2  (after 1, 4)" in text
    assert f"scale {BLUE}: 2 -> 10 instances" in text
    assert f"set_traffic {EP}: traffic {{blue: 90%, green: 10%}}, mirror {{green: 5%}}" in text
    assert "(drain before delete)" in text


def test_uneven_batches_name_the_last_one() -> None:
    step = Step(id="r", kind=StepKind.ROLLOUT, address=BLUE, params={"instances": 7, "batch_size": 2})
    text = render_text(Plan(steps=[step], resource_changes=full_plan().resource_changes))
    assert "7 instances in 4 batches of 2 (last batch 1)" in text


def test_quota_table_values_and_usage_on_failure() -> None:
    text = render_text(full_plan())
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.startswith("  standard") and "usage:" not in line
    }
    assert rows["standardDSv2Family"][1:] == ["40", "8", "48", "56", "EXCEEDED"]
    assert rows["standardFSv2Family"][1:] == ["100", "0", "24", "24", "ok"]
    assert rows["standardNCADSA100v4Family"][1:] == ["-", "0", "0", "0", "not", "checked"]
    assert f"{BLUE} Standard_DS3_v2: ceil(1.2 x 10) = 12 instances x 4 cores = 48 cores" in text
    assert "limit 40, already used 8" in text


def test_drift_is_its_own_section_after_the_changes() -> None:
    text = render_text(full_plan())
    drift = text.index("Objects have changed outside of recon")
    assert drift > text.index("Steps:")
    section = text[drift:].split("\n\n  These changes", 1)[0]
    assert "instance_count: 2 -> 1" in section
    assert "missing" in section and "unmanaged" in section
    assert "-> 10" not in section  # pending changes stay out of the drift section


def test_warnings_and_errors_are_shown() -> None:
    text = render_text(full_plan(errors=["quota exceeded"]))
    assert "Warning: blue-deployment.yml:4: instance_count: scale and template change" in text
    assert "Error: quota exceeded" in text
    assert "cannot be applied" in text


def test_no_colour_codes_without_color() -> None:
    assert not ANSI.search(render_text(full_plan(errors=["e"])))


def test_colour_when_asked_and_same_text_underneath() -> None:
    coloured = render_text(full_plan(), color=True)
    assert (
        "\x1b[32m+\x1b[0m" in coloured and "\x1b[33m~\x1b[0m" in coloured and "\x1b[31m-\x1b[0m" in coloured
    )
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_text(full_plan())


def test_output_is_byte_stable() -> None:
    assert render_text(full_plan()) == render_text(full_plan())


def test_the_cli_picks_the_plan_view_by_format() -> None:
    plan = full_plan()
    assert render_plan(plan, "text") == render_text(plan) + digest_footer(plan)
    assert render_plan(plan, "json").startswith(b"{")  # type: ignore[arg-type]
    assert str(render_plan(plan, "markdown")).startswith("<!-- recon:plan")
    assert digest_footer(plan).endswith(plan.digest)


def test_step_descriptions_only_when_they_add_something() -> None:
    same = Step(id="c", kind=StepKind.CREATE, address=MODEL, description="create model my-model:1")
    more = Step(
        id="d", kind=StepKind.CREATE, address=EP, description="create endpoint my-endpoint (without traffic)"
    )
    text = render_text(Plan(steps=[same, more], resource_changes=full_plan().resource_changes))
    assert "create model my-model:1" not in text
    assert "     create endpoint my-endpoint (without traffic)" in text


def test_create_shows_nested_attributes_as_leaf_paths() -> None:
    rc = ResourceChange(
        address=BLUE,
        type="deployment",
        name="blue",
        provider="local",
        action=Action.CREATE,
        after={"request_settings": {"request_timeout_ms": 5000}, "tags": {}, "description": None},
    )
    text = render_text(Plan(resource_changes=[rc]))
    assert "+ request_settings.request_timeout_ms: 5000" in text
    assert "tags" not in text and "description" not in text  # unset values are not listed


CAPACITY = {
    "cpus": 2.0,
    "memory_gb": 23.54,
    "description": "this machine: 2 CPUs, 23.54 GB memory",
    "needed_cpus": 0.0,
    "needed_memory_gb": 0.0,
    "catalog_cpus": 4.0,
    "catalog_memory_gb": 14.0,
}


def _capacity_plan(**capacity: object) -> Plan:
    from reconciler.plan.types import QuotaFamily, QuotaReport

    family = QuotaFamily(family="standardDSv2Family", limit=None, before=0, after=8, peak=8, ok=True)
    return Plan(quota=QuotaReport(families=[family], capacity={**CAPACITY, **capacity}))


def test_capacity_is_a_row_of_the_quota_table_in_words() -> None:
    text = render_text(_capacity_plan())
    assert text.splitlines()[:4] == [
        "Quota (vCPUs per VM family):",
        "  family              limit  before  after  peak  status",
        "  standardDSv2Family      -       0      8     8  not checked",
        "  capacity            this machine: 2 CPUs, 23.5 GB; needed: 0 CPUs, 0 GB  ok",
    ]
    assert "catalog_cpus" not in text and "description=" not in text


def test_capacity_row_says_exceeded_when_requests_do_not_fit() -> None:
    text = render_text(_capacity_plan(needed_cpus=3.5, needed_memory_gb=30.25))
    assert "  capacity            this machine: 2 CPUs, 23.5 GB; needed: 3.5 CPUs, 30.2 GB  EXCEEDED" in text
