"""recon's plan and state JSON read by hashicorp/terraform-json, the Go library Terraform's own
tooling reads plans with: tests/readers/tfjson (``planreader``) decodes them into ``tfjson.Plan`` and
``tfjson.State``, runs ``Validate`` and ``sanitize.SanitizePlan``, and walks every section. The same
program reads a real Terraform plan, so what it reports is what a Terraform plan gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.readers.project import Project

pytestmark = pytest.mark.plan_readers


def read(bin_dir: Path, kind: str, path: Path) -> dict[str, Any]:
    done = subprocess.run([str(bin_dir / "planreader"), kind, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _key(r: dict[str, Any]) -> tuple[str, str, Any]:
    return r["type"], r["name"], r.get("index")


def test_the_plan_validates_and_every_section_is_read(
    readers_bin: Path, recon_project: Project, recon_plan: dict[str, Any]
) -> None:
    report = read(readers_bin, "plan", recon_project.plan)
    assert (report["format_version"], report["terraform_version"]) == ("1.2", "1.15.5")
    assert report["sanitized"] is True and report["complete"] is True and report["timestamp"]
    assert report["duplicates"] == []  # type + name + index tell every resource apart
    planned = recon_plan["planned_values"]["root_module"]["resources"]
    assert [(r["type"], r["name"], r["index"]) for r in report["planned"]] == [_key(r) for r in planned]
    assert {r["key"] for r in report["planned"]} >= {
        'recon_deployment.blue["my-endpoint"]', 'recon_deployment.blue["other-endpoint"]', "recon_endpoint.my-endpoint"}
    blue = next(r for r in report["planned"] if r["address"] == "deployment.my-endpoint.blue")
    assert blue["values"]["instance_count"] == 3 and blue["provider_name"] == "recon/fake"
    with_before = [rc["address"] for rc in recon_plan["resource_changes"] if rc["change"]["before"] is not None]
    assert [r["address"] for r in report["prior"]] == with_before
    assert report["providers"] == ["recon=recon/fake"]
    assert [c["address"] for c in report["config"]] == [r["address"] for r in planned]
    assert report["relevant"] == [
        {"resource": "deployment.my-endpoint.blue", "attribute": ["environment_variables", "MODE"]}]
    assert [d["address"] for d in report["drift"]] == ["deployment.my-endpoint.blue"]


def test_actions_and_reasons_as_terraform_json_classifies_them(readers_bin: Path, recon_project: Project) -> None:
    changes = {c["address"]: c for c in read(readers_bin, "plan", recon_project.plan)["changes"]}
    assert {a: (c["kind"], c["action_reason"]) for a, c in changes.items() if c["kind"] != "no-op"} == {
        "deployment.my-endpoint.blue": ("update", ""),
        "deployment.my-endpoint.green": ("replace (delete first)", "replace_because_cannot_update"),
        "deployment.my-endpoint.old": ("delete", "delete_because_no_resource_config"),
        "deployment.other-endpoint.blue": ("create", ""),
        "endpoint.my-endpoint": ("update", ""),
        "endpoint.other-endpoint": ("create", ""),
        "environment.my-endpoint-old:83e524c0b465": ("delete", "delete_because_no_resource_config"),
        "environment.other-endpoint-blue:83e524c0b465": ("create", ""),
        "model.my-endpoint-old:b5ddaf3a80a0": ("delete", "delete_because_no_resource_config"),
        "model.other-endpoint-blue:b5ddaf3a80a0": ("create", ""),
    }
    green = changes["deployment.my-endpoint.green"]
    assert green["replace_paths"] == [["instance_type"]] and green["after"]["instance_type"] == "Standard_F4s_v2"
    assert changes["deployment.my-endpoint.old"]["after"] is None


def test_a_destroy_plan_plans_no_values(readers_bin: Path, recon_project: Project) -> None:
    report = read(readers_bin, "plan", recon_project.destroy)
    assert report["planned"] == [] and report["config"] == []
    assert {c["kind"] for c in report["changes"]} == {"delete"}
    assert {c["action_reason"] for c in report["changes"]} == {""}  # deleted on request, as Terraform's destroy
    assert len(report["prior"]) == len(report["changes"])


def test_the_state_is_read_as_terraform_state(readers_bin: Path, recon_project: Project) -> None:
    report = read(readers_bin, "state", recon_project.state)
    assert (report["format_version"], report["terraform_version"]) == ("1.0", "1.15.5")
    endpoint = next(r for r in report["resources"] if r["address"] == "endpoint.my-endpoint")
    assert (endpoint["type"], endpoint["name"], endpoint["index"]) == ("recon_endpoint", "my-endpoint", None)
    assert endpoint["values"]["scoring_uri"] == "http://fake.invalid/my-endpoint/score"  # what the provider reported
    blue = next(r for r in report["resources"] if r["address"] == "deployment.my-endpoint.blue")
    assert blue["index"] == "my-endpoint" and blue["depends_on"][0] == "endpoint.my-endpoint"
    assert len({r["key"] for r in report["resources"]}) == len(report["resources"])


def test_the_same_program_reads_a_real_terraform_plan(readers_bin: Path, terraform_plan_file: Path) -> None:
    report = read(readers_bin, "plan", terraform_plan_file)
    assert report["terraform_version"] == "1.15.5" and report["duplicates"] == []
    assert {r["key"] for r in report["planned"]} == {
        'terraform_data.deployment["blue"]', 'terraform_data.deployment["green"]', "terraform_data.endpoint",
        "terraform_data.model[0]", "terraform_data.model[1]"}
    assert {c["address"]: c["action_reason"] for c in report["changes"]}["terraform_data.old"] == (
        "delete_because_no_resource_config")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"format_version": "2.0"}, 'unsupported plan format version: "2.0.0" does not satisfy'),
        ({"format_version": None}, "format version is missing"),
    ],
)
def test_validate_refuses_what_terraform_json_does_not_support(
    readers_bin: Path, recon_plan: dict[str, Any], tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    doc = {**recon_plan, **change}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))
    done = subprocess.run([str(readers_bin / "planreader"), "plan", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and error in done.stderr


def test_without_planned_values_and_configuration_the_reader_fails(
    readers_bin: Path, recon_plan: dict[str, Any], tmp_path: Path
) -> None:
    """recon's plan JSON before format 2.0 had only resource_changes: sanitize.SanitizePlan, which
    tools run before printing a plan, dereferences the sections it lacked."""
    path = tmp_path / "plan.json"
    drop = {"planned_values", "prior_state", "configuration"}
    path.write_text(json.dumps({k: v for k, v in recon_plan.items() if k not in drop}))
    done = subprocess.run([str(readers_bin / "planreader"), "plan", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "nil pointer dereference" in done.stderr
