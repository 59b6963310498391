"""Pull-request comments: marker, layout, escaping and cutting to GitHub's limit."""

from __future__ import annotations

import re

import pytest

from reconciler.plan.types import Action, DriftItem, Plan, ResourceChange
from reconciler.render.markdown import render_drift_markdown, render_markdown
from tests.render.plans import BLUE, GREEN, OLD, big_plan, empty_plan, full_plan

SECTIONS = ["## ", "> [!WARNING]", "### Resources", "### Rollout", "### Quota", "### Drift", "### Warnings"]


def _positions(text: str) -> list[int]:
    return [text.index(s) for s in SECTIONS]


def test_marker_first_with_the_plan_digest() -> None:
    plan = full_plan()
    text = render_markdown(plan)
    assert text.splitlines()[0] == f"<!-- recon:plan digest={plan.digest} -->"


def test_sections_in_fixed_order() -> None:
    pos = _positions(render_markdown(full_plan()))
    assert pos == sorted(pos)


def test_summary_counts_and_no_changes() -> None:
    assert "**Plan: 2 to add, 2 to change, 2 to destroy.**" in render_markdown(full_plan())
    text = render_markdown(empty_plan())
    assert "No changes" in text
    assert "[!WARNING]" not in text and "### Resources" not in text


def test_destroys_and_replaces_are_called_out_at_the_top() -> None:
    text = render_markdown(full_plan())
    callout = text.split("> [!WARNING]", 1)[1].split("\n\n", 1)[0]
    assert "destroys 1 resource and replaces 1 resource" in callout
    assert f"`{OLD}` will be **destroyed**" in callout
    assert f"`{GREEN}` will be **replaced** (forces replacement: `instance_type`)" in callout
    assert text.index("> [!WARNING]") < text.index("### Resources")


def test_resource_details_are_collapsible_diffs() -> None:
    text = render_markdown(full_plan())
    blue = text.split(f"<code>{BLUE}</code>", 1)[1].split("</details>", 1)[0]
    assert "- instance_count: 2\n+ instance_count: 10" in blue
    assert text.count("<details>") == text.count("</details>") == 5  # the no-op is not listed
    green = text.split(f"<code>{GREEN}</code>", 1)[1].split("</details>", 1)[0]
    assert '+ instance_type: "Standard_F4s_v2"  # forces replacement' in green
    assert "Replaced because instance\\_type cannot change in place" in green


def test_rollout_and_quota_sections() -> None:
    text = render_markdown(full_plan())
    assert f"**rollout** `{BLUE}`: 10 instances in 5 batches of 2" in text
    assert "| `standardDSv2Family` | 40 | 8 | 48 | 56 | ❌ **exceeded** |" in text
    assert "| `standardFSv2Family` | 100 | 0 | 24 | 24 | ✅ ok |" in text


def test_drift_is_kept_apart_from_changes() -> None:
    text = render_markdown(full_plan())
    drift = text.split("### Drift", 1)[1].split("### Warnings", 1)[0]
    assert f"`{BLUE}` `instance_count`: `2 → 1`" in drift
    assert "instance_count: 10" not in drift
    assert "### Drift" not in render_markdown(full_plan(drift=[]))


def test_everything_from_the_plan_is_escaped() -> None:
    nasty = "<script>alert(1)</script> @octocat [x](http://e) ``` | *b*"
    rc = ResourceChange(
        address="endpoint.my-endpoint",
        type="endpoint",
        name="my-endpoint",
        provider="local",
        action=Action.REPLACE,
        before={"description": "a"},
        after={"description": nasty},
        replace_paths=["compute"],
        reason=nasty,
        source="e`p.yml:1",
    )
    text = render_markdown(
        Plan(
            resource_changes=[rc],
            warnings=[{"message": nasty}],
            errors=[nasty],
            drift=[DriftItem(address="endpoint.x", kind="missing", detail=nasty)],
        )
    )
    outside_code = re.sub(r"(`{3,})diff\n.*?\n\1", "", text, flags=re.S)
    assert "<script>" not in outside_code
    assert "&lt;script&gt;" in text or "\\<script\\>" in text
    assert "@octocat" not in outside_code.replace("\\@octocat", "")
    assert "[x](http" not in outside_code
    assert "````diff" in text  # the fence is longer than the ``` inside the value


def test_truncation_keeps_marker_stays_under_limit_for_5000_resources() -> None:
    plan = big_plan(5000)
    text = render_markdown(plan, plan_location="the plan artifact")
    assert len(text) <= 65536
    assert text.splitlines()[0] == f"<!-- recon:plan digest={plan.digest} -->"
    m = re.search(r"([\d,]+) characters and ([\d,]+) of 5,000 resources were left out", text)
    assert m is not None and int(m.group(2).replace(",", "")) > 0
    assert "The full plan is in the plan artifact." in text
    assert "**Plan: 5000 to add, 0 to change, 1667 to destroy.**" in text
    pos = [text.index(s) for s in ["## ", "> [!WARNING]", "### Resources", "### Rollout", "### Drift"]]
    assert pos == sorted(pos)
    assert "more resources not shown" in text
    assert text.count("<details>") == text.count("</details>")


@pytest.mark.parametrize("limit", [1500, 3000, 8000, 20000])
def test_truncation_fits_any_reasonable_limit(limit: int) -> None:
    plan = full_plan(errors=["quota exceeded"])
    text = render_markdown(plan, max_chars=limit)
    assert len(text) <= limit
    assert text.startswith(f"<!-- recon:plan digest={plan.digest} -->")
    if len(render_markdown(plan)) > limit:
        assert "This comment was shortened" in text


def test_tiny_limit_keeps_only_the_marker_and_too_small_is_an_error() -> None:
    plan = full_plan()
    marker = f"<!-- recon:plan digest={plan.digest} -->"
    assert render_markdown(plan, max_chars=len(marker)) == marker
    assert len(render_markdown(plan, max_chars=200)) <= 200
    with pytest.raises(ValueError):
        render_markdown(plan, max_chars=10)


def test_drift_markdown_has_the_same_layout() -> None:
    plan = full_plan()
    text = render_drift_markdown(plan.drift, plan=plan)
    assert text.startswith("<!-- recon:drift digest=sha256:")
    pos = _positions(text)
    assert pos == sorted(pos)
    assert "**Drift: 1 changed, 1 missing, 1 unmanaged.**" in text
    assert (
        "the next apply: Plan: 2 to add, 2 to change, 2 to destroy. (0 repairs of the drift, 5 other pending)"
        in text
    )


def test_drift_markdown_without_plan_or_drift() -> None:
    text = render_drift_markdown([])
    assert "No drift" in text and "### Drift" in text and "### Resources" not in text
    drift = [DriftItem(address=BLUE, kind="changed", path="instance_count", recorded=2, actual=1)] * 3000
    cut = render_drift_markdown(drift, max_chars=5000, report_location="the job log")
    assert len(cut) <= 5000 and "more drift entries not shown" in cut and "the job log" in cut


def test_capacity_is_a_row_of_the_quota_table() -> None:
    from tests.render.test_text import _capacity_plan

    text = render_markdown(_capacity_plan())
    table = text[text.index("### Quota (vCPUs)") :].splitlines()
    assert table[2:6] == [
        "| VM family | limit | before | after | peak | status |",
        "|---|--:|--:|--:|--:|---|",
        "| `standardDSv2Family` | - | 0 | 8 | 8 | not checked |",
        "| capacity | this machine: 2 CPUs, 23.5 GB; needed: 0 CPUs, 0 GB | | | | ✅ ok |",
    ]
    assert "catalog\\_cpus" not in text
