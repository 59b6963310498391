"""The Azure provider's pure parts: settings, body conversions, live-quota arithmetic (no server)."""

from __future__ import annotations

import pytest

from providers.azure import bodies
from providers.azure.arm import iso_seconds, scrub, short_path
from providers.azure.quota import deployment_cores, live_quota
from providers.azure.settings import DEFAULT_ARM, parse_settings
from reconciler.model.errors import ConfigError
from tests.canonical import deployment_attrs, endpoint_attrs

SUB = "00000000-1111-2222-3333-444444444444"
FULL = {"subscription_id": SUB, "resource_group": "rg", "workspace": "ws-1", "location": "eastus"}


def test_settings_come_from_recon_yaml_then_the_environment() -> None:
    env = {"AZURE_SUBSCRIPTION_ID": SUB, "AZURE_RESOURCE_GROUP": "env-rg", "AZUREML_WORKSPACE_NAME": "env-ws",
           "AZURE_LOCATION": "westeurope"}
    s = parse_settings({"kind": "azure", "resource_group": "yaml-rg"}, env)
    assert (s.subscription_id, s.resource_group, s.workspace, s.location) == (SUB, "yaml-rg", "env-ws", "westeurope")
    assert s.arm_endpoint == DEFAULT_ARM and s.scope == "https://management.azure.com/.default"
    sovereign = parse_settings({**FULL, "arm_endpoint": "https://management.usgovcloudapi.net/"}, {})
    assert sovereign.arm_endpoint == "https://management.usgovcloudapi.net"
    assert sovereign.workspace_path.endswith("/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-1")


def test_settings_errors_name_every_key_and_what_would_be_right() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"subscription_id": "not-a-guid", "workspace": "x", "arm_endpoint": "http://127.0.0.1",
                        "poll_interval": "fast", "colour": "blue"}, {})
    text = str(caught.value)
    for line in ("recon.yaml: provider.resource_group: resource_group is not set (set provider.resource_group in "
                 "recon.yaml or the environment variable AZURE_RESOURCE_GROUP)",
                 "provider.location: location is not set",
                 "provider.subscription_id: subscription_id 'not-a-guid' is not a subscription ID",
                 "provider.workspace: workspace name 'x' is not valid",
                 "provider.arm_endpoint: arm_endpoint 'http://127.0.0.1' is not an https:// URL",
                 "provider.poll_interval: poll_interval must be a number of seconds >= 0, not 'fast'",
                 "provider.colour: unknown setting 'colour' of provider kind azure"):
        assert line in text, text


@pytest.mark.parametrize(("seconds", "iso"), [(10, "PT10S"), (0.5, "PT0.5S"), (90, "PT1M30S"), (3600, "PT1H"),
                                              (0, "PT0S"), (86400 + 7200, "P1DT2H"), (180, "PT3M")])
def test_durations_round_trip_in_isodate_forms(seconds: float, iso: str) -> None:
    assert bodies.iso_duration(seconds) == iso
    assert iso_seconds(iso) == seconds


def test_a_deployment_body_names_its_assets_by_arm_id_and_sends_every_setting() -> None:
    ws = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
    attrs = deployment_attrs("blue", "ep", model="model.m:3", environment="azureml://registries/azureml/environments/e/versions/1",
                             code={"path": "code", "digest": "sha256:" + "ab" * 32}, instance_count=4,
                             request_settings={"request_timeout_ms": 90000, "max_concurrent_requests_per_instance": 2,
                                               "max_queue_wait_ms": 500},
                             environment_variables={"N": 1}, tags={"t": "v"})
    body = bodies.deployment_body(attrs, "eastus", ws, {"model.m:3": {"name": "m", "version": "3"}})
    props = body["properties"]
    assert props["model"] == f"{ws}/models/m/versions/3"
    assert props["environmentId"] == "azureml://registries/azureml/environments/e/versions/1"
    assert props["codeConfiguration"] == {"codeId": f"{ws}/codes/{'ab' * 32}/versions/1", "scoringScript": "score.py"}
    assert props["requestSettings"] == {"requestTimeout": "PT1M30S", "maxConcurrentRequestsPerInstance": 2,
                                        "maxQueueWait": "PT0.5S"}
    assert props["environmentVariables"] == {"N": "1"} and body["sku"] == {"name": "Default", "capacity": 4}
    assert bodies.observed_deployment(body)["request_settings"] == attrs["request_settings"]
    assert bodies.observed_deployment(body)["liveness_probe"] == attrs["liveness_probe"]


def test_an_endpoint_body_keeps_the_traffic_it_is_given_and_maps_enums() -> None:
    attrs = endpoint_attrs("ep", auth_mode="aml_token", public_network_access="disabled",
                           identity={"type": "user_assigned", "user_assigned_identities": [{"resource_id": "/id/1"}]})
    body = bodies.endpoint_body(attrs, "eastus", "/ws", {"blue": 100}, {"green": 10})
    assert body["properties"] == {"authMode": "AMLToken", "traffic": {"blue": 100}, "mirrorTraffic": {"green": 10},
                                  "publicNetworkAccess": "Disabled"}
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"/id/1": {}}}
    seen = bodies.observed_endpoint({**body, "properties": {**body["properties"], "traffic": {"Blue": 100, "g": 0}}})
    assert seen["auth_mode"] == "aml_token" and seen["traffic"] == {"blue": 100}


def test_live_quota_leaves_recon_what_others_do_not_use() -> None:
    ws = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
    usages = [{"type": "Microsoft.MachineLearningServices/vmFamily/usages", "name": {"value": "standardDSv2Family"},
               "currentValue": 60, "limit": 100},
              {"type": "Microsoft.MachineLearningServices/workspaces/dedicatedCores/usages", "id": f"{ws}/usages/x",
               "name": {"value": "standardDSv2Family"}, "currentValue": 20, "limit": 100}]
    quotas = [{"id": f"{ws}/quotas/standardDSv2Family", "name": {"value": "standardDSv2Family"}, "limit": 30}]
    assert live_quota(usages, [], ws, {"standardDSv2Family": 12}).limits == {"standardDSv2Family": 52}
    assert live_quota(usages, quotas, ws, {"standardDSv2Family": 12}).limits == {"standardDSv2Family": 22}
    # what recon's deployments hold is never taken from them: shrinking is always possible
    assert live_quota(usages, [], ws, {"standardDSv2Family": 0}).limits["standardDSv2Family"] == 40
    full = [{**usages[0], "currentValue": 120}]
    assert live_quota(full, [], ws, {"standardDSv2Family": 12}).limits == {"standardDSv2Family": 12}


def test_the_reserve_is_the_planners() -> None:
    from providers.azure.quota import reserved_instances
    from reconciler.plan import quota

    for n in range(0, 60):
        for exempt in (False, True):
            assert reserved_instances(n, exempt) == quota.reserved_instances(n, exempt)


def test_deployment_cores_follow_the_20_percent_reserve() -> None:
    assert deployment_cores(deployment_attrs("b", "e", instance_count=10)) == ("standardDSv2Family", 48.0)
    scaled = deployment_attrs("b", "e", scale_settings={"type": "target_utilization", "max_instances": 5})
    assert deployment_cores(scaled) == ("standardDSv2Family", 24.0)
    assert deployment_cores(deployment_attrs("b", "e", kind="kubernetes")) is None


def test_scrub_and_short_paths_keep_secrets_out_of_messages() -> None:
    assert scrub("url: https://a.blob/c/x?sv=1&sig=SECRET end") == "url: https://a.blob/c/x?<query removed> end"
    assert "SECRET" not in scrub("Authorization: Bearer SECRET.tok")
    assert short_path("https://h/subscriptions/s/resourceGroups/g/providers/M/workspaces/w/onlineEndpoints/e?api-version=1") \
        == "onlineEndpoints/e"


def test_the_azure_sdks_are_imported_on_first_use_only() -> None:
    import subprocess
    import sys

    code = ("import sys, providers, providers.azure; from providers.azure import AzureProvider; "
            "print(sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_template_is_judged_by_what_recon_sends_and_autoscaled_counts_are_not_drift() -> None:
    attrs = deployment_attrs("b", "e", environment_variables={"A": "1"})
    desired = bodies.deployment_body(attrs, "eastus", "/ws", {})
    filled = {**desired, "properties": {**desired["properties"], "provisioningState": "Succeeded",
                                        "egressPublicNetworkAccess": "Enabled",
                                        "properties": {"AzureAsyncOperationUri": "x"}}}
    assert bodies.same_template(filled, desired)  # what the service adds is not a difference
    changed = bodies.deployment_body({**attrs, "environment_variables": {"A": "2"}}, "eastus", "/ws", {})
    assert not bodies.same_template(filled, changed)
    extra = bodies.deployment_body({**attrs, "environment_variables": {}}, "eastus", "/ws", {})
    assert not bodies.same_template(filled, extra)  # a variable set live and not declared is a difference
    auto = bodies.deployment_body({**attrs, "scale_settings": {"type": "target_utilization", "min_instances": 1,
                                                               "max_instances": 5}}, "eastus", "/ws", {})
    auto["sku"]["capacity"] = 4  # the autoscaler's choice
    assert "instance_count" not in bodies.observed_deployment(auto)
    assert bodies.observed_deployment(desired)["instance_count"] == 1


def test_registered_references_go_as_arm_takes_them_and_models_carry_their_newer_fields() -> None:
    ws = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
    arm_id = f"{ws}/codes/c/versions/4"
    assert bodies.code_id(ws, {"asset": f"azureml:{arm_id}"}) == arm_id  # the CLI's azureml: prefix dropped
    assert bodies.code_id(ws, {"asset": "azureml:c:2"}) == f"{ws}/codes/c/versions/2"
    registry = "azureml://registries/r/codes/c/versions/1"
    assert bodies.code_id(ws, {"asset": registry}) == registry
    template = "azureml://registries/r/deploymenttemplates/t/versions/1"
    attrs = {"name": "m", "version": "1", "content_digest": "sha256:00", "extra": {
        "system_metadata": {"source": "registry"}, "default_deployment_template": {"asset_id": template},
        "allowed_deployment_templates": [{"asset_id": template}]}}
    props = bodies.model_body(attrs, "runs:/run/model")["properties"]
    assert props["modelUri"] == "runs:/run/model" and props["systemMetadata"] == {"source": "registry"}
    assert props["defaultDeploymentTemplate"] == {"assetId": template}
    assert props["allowedDeploymentTemplates"] == [{"assetId": template}]
    assert "systemMetadata" not in bodies.model_body({**attrs, "extra": {}}, "u")["properties"]
