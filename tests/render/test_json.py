"""The public plan JSON: versioned, Terraform-shaped resource_changes, recon's own sections."""

from __future__ import annotations

import json

from reconciler.render.json import render_json
from tests.render.plans import BLUE, EP, GREEN, MODEL, OLD, empty_plan, full_plan


def test_round_trips_through_json_loads_with_top_level_keys() -> None:
    plan = full_plan()
    doc = json.loads(render_json(plan))
    assert doc["format_version"] == "1.2"  # Terraform's plan JSON format, as its readers check it
    assert doc["recon_format_version"] == "2.1"
    assert doc["plan_digest"] == plan.digest
    assert doc["recon_version"] == "0.1.0"
    assert (doc["lineage"], doc["serial"], doc["workspace"], doc["provider"]) == (
        plan.lineage,
        7,
        "my-ws",
        "local",
    )
    assert doc["desired_digest"] == plan.desired_digest
    assert doc["summary"] == {"add": 2, "change": 2, "destroy": 2}
    for key in ("resource_changes", "resource_drift", "drift", "steps", "quota", "warnings", "errors"):
        assert isinstance(doc[key], list | dict), key


def test_resource_changes_follow_terraform_shape() -> None:
    doc = json.loads(render_json(full_plan()))
    by_address = {rc["address"]: rc for rc in doc["resource_changes"]}
    assert by_address[MODEL]["change"]["actions"] == ["create"]
    assert by_address[BLUE]["change"]["actions"] == ["update"]
    assert by_address[GREEN]["change"]["actions"] == ["delete", "create"]
    assert by_address[OLD]["change"]["actions"] == ["delete"]
    assert by_address["environment.my-env:1"]["change"]["actions"] == ["no-op"]
    green = by_address[GREEN]
    assert green["change"]["replace_paths"] == [["instance_type"]]
    assert (green["mode"], green["type"], green["name"], green["index"], green["provider_name"]) == (
        "managed",
        "recon_deployment",
        "green",
        "my-endpoint",
        "recon/local",
    )
    assert green["change"]["before"]["instance_type"] == "Standard_DS3_v2"
    assert green["change"]["after"]["instance_type"] == "Standard_F4s_v2"
    assert by_address[MODEL]["change"]["before"] is None
    assert by_address[OLD]["change"]["after"] is None


def test_replace_paths_are_lists_of_segments() -> None:
    plan = full_plan()
    rc = plan.resource_changes[3].model_copy(update={"replace_paths": ["identity.type", "compute"]})
    plan = plan.model_copy(update={"resource_changes": [rc]})
    entry = json.loads(render_json(plan))["resource_changes"][0]
    assert entry["change"]["replace_paths"] == [["identity", "type"], ["compute"]]


def test_steps_quota_and_warnings_are_recons_own() -> None:
    doc = json.loads(render_json(full_plan()))
    rollout = next(s for s in doc["steps"] if s["kind"] == "rollout")
    assert rollout["params"] == {"instances": 10, "batch_size": 2}
    assert [b["size"] for b in rollout["batches"]] == [2, 2, 2, 2, 2]
    fam = doc["quota"]["families"][0]
    assert (fam["family"], fam["limit"], fam["peak"], fam["ok"]) == ("standardDSv2Family", 40, 56, False)
    assert doc["warnings"][0]["path"] == "instance_count"


def test_drift_as_terraform_resource_drift_and_recons_list() -> None:
    doc = json.loads(render_json(full_plan()))
    drift = {d["address"]: d for d in doc["resource_drift"]}
    assert drift[BLUE]["change"]["actions"] == ["update"]
    assert drift[BLUE]["change"]["before"] == {"instance_count": 2, "environment_variables": {"MODE": "slow"}}
    assert drift[BLUE]["change"]["after"] == {"instance_count": 1, "environment_variables": {"MODE": "x"}}
    assert drift["deployment.my-endpoint.gone"]["change"]["actions"] == ["delete"]
    assert drift["deployment.my-endpoint.gone"]["name"] == "gone"
    assert "deployment.my-endpoint.stray" not in drift  # no Terraform counterpart
    assert {d["kind"] for d in doc["drift"]} == {"changed", "missing", "unmanaged"}


def test_empty_plan_and_stability() -> None:
    doc = json.loads(render_json(empty_plan()))
    assert doc["resource_changes"] == [] and doc["summary"] == {"add": 0, "change": 0, "destroy": 0}
    assert render_json(full_plan()) == render_json(full_plan())
    assert list(json.loads(render_json(full_plan())))[:3] == [
        "format_version",
        "terraform_version",
        "planned_values",
    ]
    assert EP in render_json(full_plan())


def test_same_json_as_the_standard_library_encoder_and_its_fallback() -> None:
    """orjson writes the plan; the document must be the one the standard library would write
    (equal once parsed, keys in the same order), non-ASCII kept as is, and a value orjson refuses
    (an integer beyond 64 bits) must still render through the standard library."""
    from reconciler.render.json import _dumps

    plan = full_plan()
    text = render_json(plan)
    doc = json.loads(text)
    assert text == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    odd = {"name": "modèle-ü", "big": 2**70, "nested": {"z": 1, "a": [1.5, None, True]}}
    out = _dumps(odd)
    assert out == '{"name":"modèle-ü","big":1180591620717411303424,"nested":{"z":1,"a":[1.5,null,true]}}'
    assert list(json.loads(_dumps({"z": 1, "a": 2}))) == ["z", "a"]
