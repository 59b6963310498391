"""Refresh and drift, live quota, and adopting an existing endpoint, through the ``recon`` command."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.azure.conftest import Recon, write_recon_yaml
from tests.azure.emulator import Emulator
from tests.azure.test_rollout_cli import _project, _step

pytestmark = pytest.mark.azure


def test_a_deployment_scaled_in_the_portal_is_drift_and_apply_repairs_it(
        arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    live = _project(tmp_path)
    recon = make_recon(live)
    _step(live, arm, "02-scale-blue")
    recon("apply", "--auto-approve")
    blue = arm.deployment("my-endpoint", "blue")
    assert blue is not None and blue["sku"]["capacity"] == 2
    blue["sku"]["capacity"] = 5  # someone scales it in the portal
    blue["properties"]["environmentVariables"] = {"DEBUG": "1"}
    drift = recon("drift", check=False)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "instance_count" in drift.stdout and "5" in drift.stdout and "environment_variables" in drift.stdout
    applied = recon("apply", "--auto-approve")
    assert "sku.capacity=2" in applied.stdout  # the count by PATCH first, then the template by PUT
    assert "batch 1: one PUT of the new configuration; Azure replaces the instances itself" in applied.stdout
    assert "batch 2: every instance already runs the new configuration" in applied.stdout
    blue = arm.deployment("my-endpoint", "blue")
    assert blue is not None and blue["sku"]["capacity"] == 2 and blue["properties"]["environmentVariables"] == {}
    assert recon("drift", check=False).returncode == 0
    recon("destroy", "--auto-approve")


def test_the_plan_checks_quota_against_azures_live_usage(
        arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    live = _project(tmp_path)
    recon = make_recon(live)
    _step(live, arm, "01-blue")
    recon("apply", "--auto-approve")  # blue: 1 x Standard_DS3_v2 reserves ceil(1.2) x 4 = 8 vCPUs
    arm.other_usage["standardDSv2Family"] = 90  # other workspaces use 90 of the region's 100
    _step(live, arm, "02-scale-blue")  # 2 instances reserve ceil(2.4) x 4 = 12: 90 + 12 > 100
    plan = recon("plan", check=False)
    assert plan.returncode == 1, plan.stdout
    assert "live quota: Azure usages in eastus: standardDSv2Family 98/100 vCPUs used (recon's deployments here: 8)" \
        in plan.stdout
    assert "needs 12 cores of standardDSv2Family" in plan.stdout and "limit 10" in plan.stdout
    arm.other_usage["standardDSv2Family"] = 80
    assert recon("plan", check=False).returncode == 0
    arm.workspace_quota["standardDSv2Family"] = 10  # a workspace-level quota, lower still
    plan = recon("plan", check=False)
    assert plan.returncode == 1 and "workspace quota 10 (8 used)" in plan.stdout, plan.stdout
    recon("destroy", "--auto-approve")


def test_an_existing_endpoint_comes_under_recon_without_being_recreated(
        arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    first = _project(tmp_path)
    _step(first, arm, "03-add-green")
    make_recon(first)("apply", "--auto-approve")  # made by "someone else": another project
    before = {p: r["id"] for p, r in arm.resources.items()}
    shutil.rmtree(first / ".recon")  # a project with no state of it
    arm.clear_log()
    recon = make_recon(first)
    write_recon_yaml(first, arm)
    plan = recon("plan")
    assert "endpoint.my-endpoint will be created" in plan.stdout
    recon("apply", "--auto-approve")
    assert not arm.calls("DELETE")  # adopted in place: PUT is create-or-update, nothing deleted
    ep = arm.endpoint("my-endpoint")
    assert ep is not None and ep["properties"]["traffic"] == {"blue": 100}  # live traffic kept throughout
    assert all(r["body"]["properties"]["traffic"] == {"blue": 100}
               for r in arm.calls("PUT", r"/onlineendpoints/my-endpoint$"))
    assert {p: r["id"] for p, r in arm.resources.items()} == before
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 0
    recon("destroy", "--auto-approve")


def test_recon_import_reads_live_objects_into_the_state(
        arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    first = _project(tmp_path)
    _step(first, arm, "03-add-green")
    make_recon(first)("apply", "--auto-approve")
    green = arm.deployment("my-endpoint", "green")
    assert green is not None
    green["properties"]["environmentVariables"] = {"MODE": "portal"}  # changed live since
    shutil.rmtree(first / ".recon")
    arm.clear_log()
    recon = make_recon(first)
    one = recon("import", "endpoint.My-Endpoint")
    assert "endpoint.my-endpoint: imported" in one.stdout
    assert recon.state()["resources"]["endpoint.my-endpoint"]["attributes"]["traffic"] == {"blue": 100}
    missing = recon("import", "deployment.my-endpoint.nope", check=False)
    assert missing.returncode == 1 and "not declared in the project's files" in missing.stderr
    rest = recon("import", "--all")
    assert "Imported 5 resource(s); nothing was changed" in rest.stdout
    assert not [r for r in arm.requests if r["method"] != "GET"]  # import only reads
    state = recon.state()["resources"]
    assert state["deployment.my-endpoint.green"]["attributes"]["environment_variables"] == {"MODE": "portal"}
    assert state["deployment.my-endpoint.blue"]["attributes"]["instance_count"] == 2
    plan = recon("plan", "--detailed-exitcode", check=False)
    assert plan.returncode == 2  # only what differs from the files: green's environment variables
    assert "deployment.my-endpoint.green" in plan.stdout and "environment_variables.MODE" in plan.stdout
    assert "endpoint.my-endpoint will be" not in plan.stdout and "blue will be" not in plan.stdout
    again = recon("import", "endpoint.my-endpoint")
    assert "already in the state" in again.stdout
    recon("apply", "--auto-approve")
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 0
    recon("destroy", "--auto-approve")


def test_an_apply_killed_mid_operation_leaves_a_state_the_next_apply_completes(
        arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    live = _project(tmp_path)
    recon = make_recon(live)
    _step(live, arm, "01-blue")
    arm.fault("PUT", r"/deployments/blue$", kind="hang")  # Azure is still creating it when recon dies
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(live), "apply", "--auto-approve"],
                            env=recon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(arm.calls("GET", "mfeOperationsStatus")) < 6:
        time.sleep(0.05)  # the endpoint's three polls, then the deployment's
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = recon.state()["resources"]
    assert "endpoint.my-endpoint" in state and "pending" not in state["endpoint.my-endpoint"]
    # the deployment's intent was recorded before its PUT: the next plan sees the interrupted create
    assert state["deployment.my-endpoint.blue"]["pending"]["kind"] == "create"
    arm.finish()  # Azure finished the deployment meanwhile
    plan = recon("plan")
    assert "deployment.my-endpoint.blue will be created" in plan.stdout
    recon("apply", "--auto-approve")
    assert not arm.calls("DELETE")  # taken over by its PUT, not recreated
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 0
    ep = arm.endpoint("my-endpoint")
    assert ep is not None and ep["properties"]["traffic"] == {"blue": 100}
    recon("destroy", "--auto-approve")
