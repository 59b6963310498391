"""The output is what recon (and az ml) accept: ``recon validate`` and ``recon plan`` on it at once;
environments from every inference-config shape; keys never in any file or output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.migrate.helpers import V1, write

CONDA = {"name": "project_environment", "channels": ["conda-forge"],
         "dependencies": ["python=3.11", {"pip": ["azureml-inference-server-http", "numpy"]}]}
V1_ENV = {"name": "fraud-env", "version": "3", "python": {"userManagedDependencies": False,
                                                         "condaDependencies": CONDA},
          "docker": {"enabled": True, "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                     "sharedVolumes": True},
          "environmentVariables": {"MODE": "strict"}}
KEYS = {"primaryKey": "pk-0d9c1e7a-primary-secret", "secondaryKey": "sk-77aa02b3-secondary-secret"}


def _recon(root: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["-C", str(root), *args])


def _three_versions(v1: V1, *args: str) -> Any:
    ic = v1.inference(environment=V1_ENV)
    versions = write(v1.root / "versions.yaml", [
        {"version_name": "control", "is_control_version_type": True, "traffic_percentile": 30},
        {"version_name": "canary", "traffic_percentile": 10, "num_replicas": 2},
    ])
    config = {"computeType": "aks", "versionName": "prod", "keys": KEYS, "appInsightsEnabled": True}
    return v1.ok(config, "--inference-config", str(ic), "--versions", str(versions), *args)


def test_three_versions_validate_and_plan(v1: V1) -> None:
    _three_versions(v1)
    valid = _recon(v1.out, "validate")
    assert valid.exit_code == 0, valid.output
    assert "3 deployments" in valid.output and "1 endpoint" in valid.output
    plan = _recon(v1.out, "plan", "--format", "json")
    assert plan.exit_code == 0, plan.output
    body = json.loads(plan.stdout)
    actions = {rc["address"]: rc["change"]["actions"] for rc in body["resource_changes"]}
    for address in ("endpoint.my-service", "deployment.my-service.prod", "deployment.my-service.control",
                    "deployment.my-service.canary"):
        assert actions[address] == ["create"], actions
    traffic = [st["params"]["traffic"] for st in body["steps"] if st["kind"] == "set_traffic"]
    assert traffic == [{"prod": 60, "control": 30, "canary": 10}]


def test_managed_output_validates_and_plans(v1: V1) -> None:
    ic = v1.inference(environment=V1_ENV)
    v1.ok({"numReplicas": 1}, "--inference-config", str(ic), "--target", "managed",
          "--instance-type", "Standard_DS3_v2", compute=False)
    (v1.out / "recon.yaml").write_text("quota: {standardDSv2Family: 40}\n")
    valid = _recon(v1.out, "validate")
    assert valid.exit_code == 0, valid.output
    plan = _recon(v1.out, "plan", "--format", "json")
    assert plan.exit_code == 0, plan.output


def test_keys_are_never_written(v1: V1) -> None:
    result = _three_versions(v1)
    texts = {p.name: p.read_text() for p in v1.out.rglob("*") if p.is_file()}
    assert {"endpoint.yml", "MIGRATION.md", "prod-deployment.yml"} <= set(texts)
    for secret in KEYS.values():
        assert all(secret not in text for text in texts.values())
        assert secret not in result.output
    assert "(withheld)" in texts["MIGRATION.md"]
    plan = _recon(v1.out, "plan", "--format", "json")
    assert all(secret not in plan.output for secret in KEYS.values())


def test_snake_case_keys_are_never_written(v1: V1) -> None:
    v1.ok({"primary_key": "pk-snake-secret-1", "secondary_key": "sk-snake-secret-2"}, name="kwargs.yaml")
    for p in v1.out.rglob("*"):
        assert not p.is_file() or "snake-secret" not in p.read_text()


def test_inline_environment_becomes_an_inline_v2_environment(v1: V1) -> None:
    _three_versions(v1)
    prod = v1.deployment("prod")
    assert prod["environment"] == {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                                   "conda_file": "prod-conda.yaml"}
    assert v1.doc("prod-conda.yaml") == CONDA
    assert prod["environment_variables"] == {"MODE": "strict"}
    assert prod["app_insights_enabled"] is True and v1.deployment("canary")["app_insights_enabled"] is True
    md = v1.migration()
    assert "`environment.docker.sharedVolumes`" in md or "`environment.docker.shared_volumes`" in md


@pytest.mark.parametrize("environment,expected", [
    ({"name": "AzureML-sklearn-1.5", "version": "7"}, "azureml:AzureML-sklearn-1.5:7"),
    ({"name": "my-env"}, "azureml:my-env@latest"),
    ({"docker": {"baseImage": "img/scoring:1", "baseImageRegistry": {"address": "myacr.azurecr.io",
                                                                      "username": "u", "password": "hunter2-pw"}},
      "python": {"userManagedDependencies": True}}, {"image": "myacr.azurecr.io/img/scoring:1"}),
    ({"docker": {"baseDockerfile": "FROM python:3.11-slim\nRUN pip install numpy\n"}},
     {"build": {"path": "blue-docker", "dockerfile_path": "Dockerfile"}}),
])
def test_environment_shapes(v1: V1, environment: dict[str, Any], expected: Any) -> None:
    ic = v1.inference(environment=environment)
    v1.ok({}, "--inference-config", str(ic))
    assert v1.deployment()["environment"] == expected
    for p in v1.out.rglob("*"):
        assert not p.is_file() or "hunter2-pw" not in p.read_text()
    if isinstance(expected, dict) and "build" in expected:
        assert (v1.out / "blue-docker" / "Dockerfile").read_text().startswith("FROM python:3.11-slim")


def test_legacy_flat_inference_config(v1: V1) -> None:
    v1.inference()
    write(v1.root / "env" / "conda.yml", CONDA)
    ic = write(v1.root / "ic.json", {"entryScript": "source_dir/score.py", "runtime": "python",
                                     "condaFile": "env/conda.yml"})
    v1.ok({}, "--ic", str(ic))
    dep = v1.deployment()
    # without sourceDirectory v1 packaged the script alone: so does the v2 code folder
    assert dep["code_configuration"] == {"code": "blue-code", "scoring_script": "score.py"}
    assert (v1.out / "blue-code" / "score.py").read_text() == (v1.root / "source_dir" / "score.py").read_text()
    assert dep["environment"] == {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                                  "conda_file": "../env/conda.yml"}
    valid = _recon(v1.out, "validate")
    assert valid.exit_code == 0, valid.output


def test_registered_model_with_its_files_is_declared(v1: V1) -> None:
    v1.ok({}, "--model", "azureml:fraud-model:4", model=False)
    assert v1.deployment()["model"] == "azureml:fraud-model:4"
    assert not (v1.out / "fraud-model-4-model.yml").exists()
    v1.ok({}, "--model", "fraud-model:4")  # --model-path too (the helper gives it)
    assert v1.doc("fraud-model-4-model.yml")["version"] == 4
    valid = _recon(v1.out, "validate")
    assert valid.exit_code == 0, valid.output


FULL_CAMEL = {
    "computeType": "aks", "computeTargetName": "my-aks", "versionName": "prod",
    "autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 6, "refreshPeriodInSeconds": 5,
                   "targetUtilization": 60},
    "containerResourceRequirements": {"cpu": 0.5, "cpuLimit": 1, "memoryInGB": 1.5, "memoryInGBLimit": 2, "gpu": 4},
    "gpuCores": 1,
    "authEnabled": False, "tokenAuthEnabled": True, "appInsightsEnabled": True, "scoringTimeoutMs": 90000,
    "maxConcurrentRequestsPerContainer": 2, "maxQueueWaitMs": 1000,
    "livenessProbeRequirements": {"periodSeconds": 5, "initialDelaySeconds": 60, "timeoutSeconds": 3,
                                  "successThreshold": 1, "failureThreshold": 5},
    "namespace": "fraud", "keys": KEYS, "tags": {"team": "fraud"}, "properties": {"owner": "ml"},
    "description": "fraud scoring", "dataCollection": {"storageEnabled": True}, "blobfuseEnabled": False,
}
FULL_SNAKE = {
    "compute_target_name": "my-aks", "version_name": "prod", "autoscale_enabled": False, "num_replicas": 3,
    "cpu_cores": 0.5, "cpu_cores_limit": 1, "memory_gb": 1.5, "memory_gb_limit": 2, "gpu_cores": 1,
    "auth_enabled": True, "token_auth_enabled": False, "enable_app_insights": True, "scoring_timeout_ms": 90000,
    "replica_max_concurrent_requests": 2, "max_request_wait_time": 1000, "period_seconds": 5,
    "initial_delay_seconds": 60, "timeout_seconds": 3, "success_threshold": 1, "failure_threshold": 5,
    "namespace": "fraud", "primary_key": "pk-snake-secret-3", "secondary_key": "sk-snake-secret-4",
    "tags": {"team": "fraud"}, "properties": {"owner": "ml"}, "description": "fraud scoring",
    "collect_model_data": True, "blobfuse_enabled": False, "traffic_percentile": 100,
}


@pytest.mark.parametrize("config,name", [(FULL_CAMEL, "deploymentconfig.json"), (FULL_SNAKE, "kwargs.yaml")])
def test_every_setting_at_once_validates(v1: V1, config: dict[str, Any], name: str) -> None:
    ic = v1.inference(environment=V1_ENV)
    v1.ok(config, "--ic", str(ic), name=name, compute=False)
    valid = _recon(v1.out, "validate")
    assert valid.exit_code == 0, valid.output
    dep, ep = v1.deployment("prod"), v1.endpoint()
    assert ep["compute"] == "azureml:my-aks" and ep["description"] == "fraud scoring"
    assert dep["resources"] == {"requests": {"cpu": "0.5", "memory": "1.5Gi", "nvidia.com/gpu": "1"},
                                "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}}
    assert dep["liveness_probe"] == {"initial_delay": 60, "period": 5, "timeout": 3, "success_threshold": 1,
                                     "failure_threshold": 5}
    md = v1.migration()
    rows = [ln for ln in md.split("## Every v1 setting")[1].split("## Not carried")[0].splitlines()
            if ln.startswith("| endpoint") or ln.startswith("| deployment prod")]
    written = {ln.split("`")[1] for ln in rows}
    flat = {k for k, v in config.items() if not isinstance(v, dict) or k in ("tags", "properties")}
    nested = {f"{k}.{inner}" for k, v in config.items() if isinstance(v, dict) and k not in ("tags", "properties")
              for inner in v}
    assert flat | nested <= written, (flat | nested) - written
