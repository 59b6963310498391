"""Rego policies as platform teams write them for Terraform plans (tests/readers/policies), run by
OPA itself (``opa eval``) on recon's plan JSON: rules over resource_changes, planned_values and
prior_state all see recon's resources."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.readers.project import Project

pytestmark = pytest.mark.plan_readers

POLICIES = Path(__file__).parent / "policies"


def opa_eval(bin_dir: Path, plan: Path, query: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "opa"), "eval", "--format", "json", "--data", str(POLICIES), "--input", str(plan), *extra, query],
        capture_output=True, text=True, timeout=120,
    )


def evaluate(bin_dir: Path, plan: Path) -> dict[str, Any]:
    done = opa_eval(bin_dir, plan, "data.platform.endpoints")
    assert done.returncode == 0, done.stderr
    value: dict[str, Any] = json.loads(done.stdout)["result"][0]["expressions"][0]["value"]
    return value


def test_policies_over_changes_and_planned_values_see_recons_resources(readers_bin: Path, recon_project: Project) -> None:
    result = evaluate(readers_bin, recon_project.plan)
    assert sorted(result["deny"]) == [
        "endpoint.other-endpoint: tags.team is required",
        'recon_deployment.blue["other-endpoint"]: instance_count 5 is above 4',
    ]
    assert sorted(result["warn"]) == [
        "deployment.my-endpoint.green is replaced (replace_because_cannot_update)",
        "deployment.my-endpoint.old is removed from my-endpoint",
    ]
    assert result["resources_after"] == {
        "recon_deployment": 3, "recon_endpoint": 2, "recon_environment": 3, "recon_model": 3}


def test_a_destroy_plan_is_denied_for_its_endpoints(readers_bin: Path, recon_project: Project) -> None:
    result = evaluate(readers_bin, recon_project.destroy)
    # other-endpoint was never applied: a destroy plan deletes what the state records
    assert result["deny"] == ["endpoint.my-endpoint: deleting an endpoint is not allowed"]
    assert result["warn"] == [] and result["resources_after"] == {}


def test_a_ci_gate_fails_on_a_denial(readers_bin: Path, recon_project: Project, tmp_path: Path) -> None:
    """``opa eval --fail-defined`` exits 1 when a rule denies, as CI gates run it; once the plan
    complies (the team tag added, the deployment at 4 instances) it exits 0."""
    gate = "data.platform.endpoints.deny[_]"
    assert opa_eval(readers_bin, recon_project.plan, gate, "--fail-defined").returncode == 1
    doc = json.loads(recon_project.plan.read_text())
    for r in doc["planned_values"]["root_module"]["resources"]:
        if r["address"] == "endpoint.other-endpoint":
            r["values"]["tags"] = {"team": "search"}
        if r["address"] == "deployment.other-endpoint.blue":
            r["values"]["instance_count"] = 4
    compliant = tmp_path / "compliant.json"
    compliant.write_text(json.dumps(doc))
    done = opa_eval(readers_bin, compliant, gate, "--fail-defined")
    assert done.returncode == 0, done.stdout + done.stderr
