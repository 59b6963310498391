"""Every row of the migration table, in both spellings, and every v1 default when the file is silent.

A row: the SDK keyword (snake_case, as written to a YAML file of ``deploy_configuration`` kwargs),
the v1 CLI's deploymentconfig.json key (camelCase, nested), a value, the v2 field of the deployment
it becomes, the v2 value for it, and the v2 value v1's default becomes when the file is silent
(None: the field is absent, as v1 set nothing either).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.migrate.helpers import V1, at, nested

MISSING = object()

ROWS: list[tuple[str, str, Any, str, Any, Any]] = [
    ("autoscale_min_replicas", "autoScaler.minReplicas", 2, "scale_settings.min_instances", 2, 1),
    ("autoscale_max_replicas", "autoScaler.maxReplicas", 5, "scale_settings.max_instances", 5, 10),
    ("autoscale_target_utilization", "autoScaler.targetUtilization", 55,
     "scale_settings.target_utilization_percentage", 55, 70),
    ("autoscale_refresh_seconds", "autoScaler.refreshPeriodInSeconds", 7, "scale_settings.polling_interval", 7, 1),
    ("autoscale_enabled", "autoScaler.autoscaleEnabled", True, "scale_settings.type", "target_utilization",
     "target_utilization"),
    ("num_replicas", "numReplicas", 3, "instance_count", 3, MISSING),
    ("cpu_cores", "containerResourceRequirements.cpu", 0.5, "resources.requests.cpu", "0.5", "0.1"),
    ("cpu_cores_limit", "containerResourceRequirements.cpuLimit", 2, "resources.limits.cpu", "2", MISSING),
    ("memory_gb", "containerResourceRequirements.memoryInGB", 2.5, "resources.requests.memory", "2.5Gi", "0.5Gi"),
    ("memory_gb_limit", "containerResourceRequirements.memoryInGBLimit", 4, "resources.limits.memory", "4Gi",
     MISSING),
    ("gpu_cores", "gpuCores", 1, "resources.requests.nvidia.com/gpu", "1", MISSING),
    ("scoring_timeout_ms", "scoringTimeoutMs", 1500, "request_settings.request_timeout_ms", 1500, 60000),
    ("replica_max_concurrent_requests", "maxConcurrentRequestsPerContainer", 4,
     "request_settings.max_concurrent_requests_per_instance", 4, 1),
    ("max_request_wait_time", "maxQueueWaitMs", 900, "request_settings.max_queue_wait_ms", 900, 500),
    ("initial_delay_seconds", "livenessProbeRequirements.initialDelaySeconds", 30, "liveness_probe.initial_delay",
     30, 310),
    ("period_seconds", "livenessProbeRequirements.periodSeconds", 7, "liveness_probe.period", 7, 10),
    ("timeout_seconds", "livenessProbeRequirements.timeoutSeconds", 5, "liveness_probe.timeout", 5, 2),
    ("success_threshold", "livenessProbeRequirements.successThreshold", 2, "liveness_probe.success_threshold", 2, 1),
    ("failure_threshold", "livenessProbeRequirements.failureThreshold", 6, "liveness_probe.failure_threshold", 6, 3),
    ("enable_app_insights", "appInsightsEnabled", True, "app_insights_enabled", True, False),
    ("tags", "tags", {"team": "fraud"}, "tags", {"team": "fraud"}, MISSING),
    ("properties", "properties", {"owner": "ml"}, "properties", {"owner": "ml"}, MISSING),
    ("description", "description", "scores fraud", "description", "scores fraud", MISSING),
]

ENDPOINT_ROWS: list[tuple[str, str, Any, str, Any, Any]] = [
    ("auth_enabled", "authEnabled", False, "auth_mode", "key", "key"),
    ("compute_target_name", "computeTargetName", "my-aks", "compute", "azureml:my-aks", MISSING),
    ("tags", "tags", {"team": "fraud"}, "tags", {"team": "fraud"}, MISSING),
    ("description", "description", "scores fraud", "description", "scores fraud", MISSING),
]

SPELLINGS = [("snake", "deploy_configuration.yaml"), ("camel", "deploymentconfig.json")]


def _get(doc: Any, path: str) -> Any:
    try:
        return at(doc, path)
    except KeyError:
        return MISSING


BOUNDS = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_target_utilization",
          "autoscale_refresh_seconds")


def _config(spelling: str, snake: str, camel: str, value: Any) -> dict[str, Any]:
    """The file giving one setting; an autoscale bound with autoscale enabled (v1 applied it only then)."""
    if snake in BOUNDS:
        return ({snake: value, "autoscale_enabled": True} if spelling == "snake"
                else {"autoScaler": {camel.split(".")[1]: value, "autoscaleEnabled": True}})
    return {snake: value} if spelling == "snake" else nested(camel, value)


@pytest.mark.parametrize("spelling,file", SPELLINGS)
@pytest.mark.parametrize("snake,camel,value,path,expected,default", ROWS, ids=[r[0] for r in ROWS])
def test_deployment_row_given(v1: V1, spelling: str, file: str, snake: str, camel: str, value: Any,
                              path: str, expected: Any, default: Any) -> None:
    v1.ok(_config(spelling, snake, camel, value), name=file)
    assert _get(v1.deployment(), path) == expected
    written = camel if spelling == "camel" else snake
    assert f"`{written}`" in v1.migration(), "MIGRATION.md names the key as the file wrote it"


@pytest.mark.parametrize("snake,camel,value,path,expected,default", ROWS, ids=[r[0] for r in ROWS])
def test_deployment_row_default(v1: V1, snake: str, camel: str, value: Any, path: str, expected: Any,
                                default: Any) -> None:
    v1.ok({"computeType": "aks"})
    assert _get(v1.deployment(), path) == default
    assert f"`{snake}`" in v1.migration(), "every v1 setting is listed, defaults too"


@pytest.mark.parametrize("spelling,file", SPELLINGS)
@pytest.mark.parametrize("snake,camel,value,path,expected,default", ENDPOINT_ROWS, ids=[r[0] for r in ENDPOINT_ROWS])
def test_endpoint_row(v1: V1, spelling: str, file: str, snake: str, camel: str, value: Any, path: str,
                      expected: Any, default: Any) -> None:
    compute = snake != "compute_target_name"
    v1.ok(_config(spelling, snake, camel, value), name=file, compute=compute)
    assert _get(v1.endpoint(), path) == expected
    v1.ok({}, name=file)
    assert _get(v1.endpoint(), path) == (default if compute else "azureml:aks-compute")


def test_silent_config_gets_every_v1_default_explicitly(v1: V1) -> None:
    v1.ok({})
    dep = v1.deployment()
    assert dep["scale_settings"] == {"type": "target_utilization", "min_instances": 1, "max_instances": 10,
                                     "target_utilization_percentage": 70, "polling_interval": 1}
    assert "instance_count" not in dep
    assert dep["resources"] == {"requests": {"cpu": "0.1", "memory": "0.5Gi"}}
    assert dep["request_settings"] == {"request_timeout_ms": 60000, "max_concurrent_requests_per_instance": 1,
                                       "max_queue_wait_ms": 500}
    assert dep["liveness_probe"] == {"initial_delay": 310, "period": 10, "timeout": 2, "success_threshold": 1,
                                     "failure_threshold": 3}
    assert dep["app_insights_enabled"] is False
    ep = v1.endpoint()
    assert ep["auth_mode"] == "key" and ep["traffic"] == {"blue": 100}
    assert ep["$schema"].endswith("/kubernetesOnlineEndpoint.schema.json")
    assert dep["$schema"].endswith("/kubernetesOnlineDeployment.schema.json") and dep["type"] == "kubernetes"


def test_fixed_replicas_become_instance_count_with_default_scale(v1: V1) -> None:
    v1.ok({"autoscale_enabled": False, "num_replicas": 4})
    dep = v1.deployment()
    assert dep["instance_count"] == 4 and dep["scale_settings"] == {"type": "default"}


def test_gpu_is_requested_and_limited(v1: V1) -> None:
    v1.ok({"gpu_cores": 2})
    res = v1.deployment()["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "2" and res["limits"]["nvidia.com/gpu"] == "2"


def test_token_auth_becomes_aml_token(v1: V1) -> None:
    v1.ok({"tokenAuthEnabled": True, "authEnabled": False})
    assert v1.endpoint()["auth_mode"] == "aml_token"
    v1.ok({"token_auth_enabled": True, "auth_enabled": False}, name="kwargs.yaml")
    assert v1.endpoint()["auth_mode"] == "aml_token"


@pytest.mark.parametrize("snake,camel,value,why", [
    ("namespace", "namespace", "ml-prod", "az ml compute attach"),
    ("collect_model_data", "dataCollection.storageEnabled", True, "data_collector"),
    ("blobfuse_enabled", "blobfuseEnabled", False, "downloads the model"),
    ("primary_key", "keys.primaryKey", "k-123-primary", "never written"),
    ("secondary_key", "keys.secondaryKey", "k-456-secondary", "never written"),
])
@pytest.mark.parametrize("spelling,file", SPELLINGS)
def test_settings_without_v2_field_are_listed_not_written(v1: V1, spelling: str, file: str, snake: str,
                                                          camel: str, value: Any, why: str) -> None:
    v1.ok(_config(spelling, snake, camel, value), name=file)
    md = v1.migration()
    written = camel if spelling == "camel" else snake
    line = next(ln for ln in md.splitlines() if f"`{written}`" in ln)
    assert why in line
    not_carried = md.split("## Not carried over")[1]
    assert f"`{written}`" in not_carried
    yaml_text = "".join(p.read_text() for p in v1.out.glob("*.yml"))
    assert str(value) not in yaml_text if isinstance(value, str) else snake not in yaml_text


def test_version_name_names_the_deployment(v1: V1) -> None:
    v1.ok({"versionName": "prod"})
    assert v1.deployment("prod")["name"] == "prod"
    assert v1.endpoint()["traffic"] == {"prod": 100}


def test_managed_target_uses_the_instance_type(v1: V1) -> None:
    v1.ok({"autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 6},
           "containerResourceRequirements": {"cpu": 1}},
          "--target", "managed", "--instance-type", "Standard_DS3_v2", compute=False)
    dep, ep = v1.deployment(), v1.endpoint()
    assert ep["$schema"].endswith("/managedOnlineEndpoint.schema.json") and "compute" not in ep
    assert dep["$schema"].endswith("/managedOnlineDeployment.schema.json")
    assert dep["instance_type"] == "Standard_DS3_v2" and dep["instance_count"] == 2
    assert dep["scale_settings"] == {"type": "default"} and "resources" not in dep
    assert "max_queue_wait_ms" not in dep["request_settings"]
    md = v1.migration()
    assert "Azure Monitor autoscale" in md and "instance type sets cpu" in md
