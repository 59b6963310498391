"""The plan JSON has every section of Terraform's plan representation, filled as Terraform fills
it: planned_values, prior_state, configuration, relevant_attributes, the change fields, action_reason
keywords, timestamp/applyable/complete/errored, and type + name + index that tell resources apart."""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan.types import Action, DriftItem, Plan, ResourceChange
from reconciler.render.common import UNKNOWN
from reconciler.render.json import render_json, render_state_json
from reconciler.state.document import State, StateResource
from tests.render.plans import BLUE, ENV, EP, GREEN, MODEL, OLD, empty_plan, full_plan

TERRAFORM_KEYS = [  # terraform show -json of a plan, Terraform 1.15, in its order (no variables, outputs)
    "format_version",
    "terraform_version",
    "planned_values",
    "resource_drift",
    "resource_changes",
    "prior_state",
    "configuration",
    "relevant_attributes",
    "timestamp",
    "applyable",
    "complete",
    "errored",
]


def _doc(plan: Plan) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_json(plan))
    return doc


def _rc(address: str, rtype: str, action: Action, **over: Any) -> ResourceChange:
    fields: dict[str, Any] = {"address": address, "type": rtype, "name": "x", "provider": "local", "action": action}
    if action is not Action.CREATE:
        fields["before"] = {"name": address}
    if action is not Action.DELETE:
        fields["after"] = {"name": address}
    fields.update(over)
    return ResourceChange(**fields)


def test_terraform_sections_come_first_in_terraform_order_then_recons_keys() -> None:
    doc = _doc(full_plan())
    assert list(doc)[: len(TERRAFORM_KEYS)] == TERRAFORM_KEYS
    assert doc["terraform_version"] == "1.15.5"
    assert doc["recon_format_version"] == "2.1" and doc["recon_version"] == "0.1.0"
    assert doc["plan_digest"] == full_plan().digest


def test_planned_values_hold_every_resource_that_exists_after_apply() -> None:
    plan = full_plan()
    resources = _doc(plan)["planned_values"]["root_module"]["resources"]
    assert [r["address"] for r in resources] == [MODEL, ENV, BLUE, GREEN, EP]  # OLD is deleted
    by_address = {r["address"]: r for r in resources}
    for rc in plan.resource_changes:
        if rc.after is None:
            continue
        entry = by_address[rc.address]
        assert entry["values"] == rc.after
        assert (entry["mode"], entry["type"], entry["provider_name"]) == ("managed", f"recon_{rc.type}", "recon/local")
        assert entry["sensitive_values"] == {} and entry["schema_version"] == 0
    assert by_address[GREEN]["values"]["instance_type"] == "Standard_F4s_v2"


def test_prior_state_holds_every_recorded_resource_before_the_plan() -> None:
    prior = _doc(full_plan())["prior_state"]
    assert (prior["format_version"], prior["terraform_version"]) == ("1.0", "1.15.5")
    resources = prior["values"]["root_module"]["resources"]
    assert [r["address"] for r in resources] == [ENV, BLUE, GREEN, OLD, EP]  # MODEL is created
    green = next(r for r in resources if r["address"] == GREEN)
    assert green["values"]["instance_type"] == "Standard_DS3_v2"
    assert _doc(empty_plan())["prior_state"]["values"] == {"root_module": {"resources": []}}


def test_type_name_and_index_tell_every_resource_apart() -> None:
    """Two endpoints each with a deployment blue, two versions of one model, two of an environment:
    recon's names repeat, Terraform's (type, name, index) does not; an endpoint has no index."""
    changes = [
        _rc("endpoint.a", "endpoint", Action.CREATE, name="a"),
        _rc("endpoint.b", "endpoint", Action.CREATE, name="b"),
        _rc("deployment.a.blue", "deployment", Action.CREATE, name="blue"),
        _rc("deployment.b.blue", "deployment", Action.CREATE, name="blue"),
        _rc("model.m:1", "model", Action.NOOP, name="m"),
        _rc("model.m:2", "model", Action.CREATE, name="m"),
        _rc("environment.env:1.0", "environment", Action.DELETE, name="env"),
        _rc("environment.env:2.0", "environment", Action.CREATE, name="env"),
    ]
    doc = _doc(Plan(resource_changes=changes))
    keys = [(r["type"], r["name"], r.get("index")) for r in doc["resource_changes"]]
    assert keys == [
        ("recon_endpoint", "a", None),
        ("recon_endpoint", "b", None),
        ("recon_deployment", "blue", "a"),
        ("recon_deployment", "blue", "b"),
        ("recon_model", "m", "1"),
        ("recon_model", "m", "2"),
        ("recon_environment", "env", "1.0"),
        ("recon_environment", "env", "2.0"),
    ]
    assert len(set(keys)) == len(keys)
    assert all("index" not in r for r in doc["resource_changes"] if r["type"] == "recon_endpoint")
    planned = {(r["type"], r["name"], r.get("index")) for r in doc["planned_values"]["root_module"]["resources"]}
    assert planned == set(keys) - {("recon_environment", "env", "1.0")}


def test_action_reason_is_terraforms_keyword_and_recons_words_are_in_reason() -> None:
    changes = [
        _rc(GREEN, "deployment", Action.REPLACE, replace_paths=["instance_type"], reason="instance_type cannot change"),
        _rc("endpoint.e2", "endpoint", Action.REPLACE, replace_paths=["compute"]),
        _rc("deployment.e2.d", "deployment", Action.REPLACE, reason="its endpoint e2 is replaced"),
        _rc(BLUE, "deployment", Action.REPLACE, reason="it is tainted (a create did not finish): it is replaced"),
        _rc(OLD, "deployment", Action.DELETE),
        _rc(MODEL, "model", Action.CREATE, reason="an apply was interrupted while creating it"),
        _rc(EP, "endpoint", Action.UPDATE),
    ]
    doc = _doc(Plan(resource_changes=changes))
    reasons = {r["address"]: r.get("action_reason") for r in doc["resource_changes"]}
    assert reasons == {
        GREEN: "replace_because_cannot_update",
        "endpoint.e2": "replace_because_cannot_update",
        "deployment.e2.d": "replace_by_triggers",
        BLUE: "replace_because_tainted",
        OLD: "delete_because_no_resource_config",
        MODEL: None,
        EP: None,
    }
    # Terraform leaves the key out when it has no keyword; recon's own words are always in reason
    assert "action_reason" not in doc["resource_changes"][5]
    assert doc["resource_changes"][0]["reason"] == "instance_type cannot change"
    assert doc["resource_changes"][5]["reason"] == "an apply was interrupted while creating it"
    destroy = _doc(Plan(resource_changes=[_rc(OLD, "deployment", Action.DELETE)], destroy=True))
    assert "action_reason" not in destroy["resource_changes"][0]  # a destroy plan deletes on request


def test_change_fields_unknown_and_sensitive_as_terraform_writes_them() -> None:
    by_address = {r["address"]: r["change"] for r in _doc(full_plan())["resource_changes"]}
    create, delete, update = by_address[MODEL], by_address[OLD], by_address[BLUE]
    assert (create["before_sensitive"], create["after_sensitive"], create["after_unknown"]) == (False, {}, {})
    assert (delete["before_sensitive"], delete["after_sensitive"], delete["after_unknown"]) == ({}, False, {})
    assert (update["before_sensitive"], update["after_sensitive"]) == ({}, {})


def test_values_known_only_after_apply_are_left_out_and_marked_in_after_unknown() -> None:
    after = {"name": "ep", "scoring_uri": UNKNOWN, "identity": {"type": "system", "principal_id": UNKNOWN},
             "ips": ["10.0.0.1", UNKNOWN], "tags": {}}
    doc = _doc(Plan(resource_changes=[_rc("endpoint.ep", "endpoint", Action.CREATE, after=after)]))
    change = doc["resource_changes"][0]["change"]
    assert change["after"] == {"name": "ep", "identity": {"type": "system"}, "tags": {}}
    assert change["after_unknown"] == {"scoring_uri": True, "identity": {"principal_id": True}, "ips": True}
    assert doc["planned_values"]["root_module"]["resources"][0]["values"] == change["after"]
    assert "scoring_uri" not in doc["configuration"]["root_module"]["resources"][0]["expressions"]


def test_configuration_lists_what_the_files_declare_as_constant_expressions() -> None:
    plan = full_plan()
    config = _doc(plan)["configuration"]
    assert config["provider_config"] == {"recon": {"name": "recon", "full_name": "recon/local"}}
    resources = config["root_module"]["resources"]
    assert [r["address"] for r in resources] == [MODEL, ENV, BLUE, GREEN, EP]
    blue = next(r for r in resources if r["address"] == BLUE)
    assert (blue["type"], blue["name"], blue["provider_config_key"]) == ("recon_deployment", "blue", "recon")
    assert blue["expressions"]["instance_count"] == {"constant_value": 10}
    assert blue["expressions"]["environment_variables"] == {"constant_value": {}}
    with_deps = plan.model_copy(
        update={"resource_changes": [plan.resource_changes[2].model_copy(update={"depends_on": [MODEL, ENV]})]}
    )
    assert _doc(with_deps)["configuration"]["root_module"]["resources"][0]["depends_on"] == [MODEL, ENV]


def test_relevant_attributes_are_the_drifted_attributes_the_plan_acts_on() -> None:
    doc = _doc(full_plan())
    assert doc["relevant_attributes"] == [
        {"resource": BLUE, "attribute": ["instance_count"]},
        {"resource": BLUE, "attribute": ["environment_variables", "MODE"]},
        {"resource": "deployment.my-endpoint.gone", "attribute": []},
    ]  # the unmanaged object is recon's alone
    drifted = {r["address"] for r in doc["resource_drift"]}
    assert {a["resource"] for a in doc["relevant_attributes"]} == drifted


def test_timestamp_applyable_complete_and_errored() -> None:
    doc = _doc(full_plan(created_at="2026-03-01T10:20:30+01:00"))
    assert doc["timestamp"] == "2026-03-01T09:20:30Z" and doc["created_at"] == "2026-03-01T10:20:30+01:00"
    assert (doc["applyable"], doc["complete"], doc["errored"]) == (True, True, False)
    failed = _doc(full_plan(errors=["deployment my-endpoint/blue needs 48 cores of standardDSv2Family"]))
    assert (failed["applyable"], failed["errored"], failed["applicable"]) == (False, True, False)
    assert _doc(full_plan(targets=[BLUE]))["complete"] is False
    nothing = Plan(resource_changes=[_rc(EP, "endpoint", Action.NOOP)], created_at="2026-03-01T10:00:00Z")
    assert (_doc(nothing)["applyable"], _doc(nothing)["timestamp"]) == (False, "2026-03-01T10:00:00Z")
    assert _doc(empty_plan())["timestamp"] is None  # saved before recon recorded the time


def test_drift_entries_are_full_terraform_changes() -> None:
    drift = {d["address"]: d for d in _doc(full_plan())["resource_drift"]}
    blue = drift[BLUE]
    assert (blue["name"], blue["index"], blue["type"]) == ("blue", "my-endpoint", "recon_deployment")
    assert (blue["change"]["before_sensitive"], blue["change"]["after_unknown"]) == ({}, {})
    assert drift["deployment.my-endpoint.gone"]["change"]["after_sensitive"] is False


def test_state_as_terraform_show_json_prints_it() -> None:
    state = State(lineage="l-1", serial=3, workspace="ws", recon_version="0.2.0", resources={
        "deployment.ep.blue": StateResource(
            address="deployment.ep.blue", type="deployment", name="blue", provider="docker",
            attributes={"name": "blue", "instance_count": 2}, depends_on=["endpoint.ep"],
            outputs={"instance_count": 1, "container": "recon-ep-blue"}, status="tainted"),
        "endpoint.ep": StateResource(address="endpoint.ep", type="endpoint", name="ep", provider="docker",
                                     attributes={"name": "ep"}),
    })
    doc = json.loads(render_state_json(state))
    assert list(doc)[:3] == ["format_version", "terraform_version", "values"]
    assert (doc["format_version"], doc["lineage"], doc["serial"]) == ("1.0", "l-1", 3)
    blue, ep = doc["values"]["root_module"]["resources"]
    assert (blue["type"], blue["name"], blue["index"], blue["provider_name"]) == (
        "recon_deployment", "blue", "ep", "recon/docker")
    # recorded attributes win over what the provider reported under the same name
    assert blue["values"] == {"name": "blue", "instance_count": 2, "container": "recon-ep-blue"}
    assert (blue["depends_on"], blue["tainted"]) == (["endpoint.ep"], True)
    assert "tainted" not in ep and "index" not in ep


def test_drift_report_carries_both_format_versions() -> None:
    from reconciler.render.json import render_drift_json

    plan = full_plan()
    doc = json.loads(render_drift_json([DriftItem(address=BLUE, kind="missing")], plan))
    assert (doc["format_version"], doc["recon_format_version"]) == ("1.2", "2.1")
    assert doc["resource_drift"][0]["index"] == "my-endpoint"
