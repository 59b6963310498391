"""recon's canonical attributes <-> ARM's 2024-04-01 request and response bodies. Pure functions.

Requests (``*_body``) carry every canonical value explicitly, defaults included, so that what a plan
shows is what is sent and a change of Azure's defaults cannot move a deployment. The properties
Azure ML's SDK v2 (azure-ai-ml) would send from the same YAML are the same, property by property,
except where docs/azure.md ("Request bodies") lists a deliberate difference;
``tests/azure/test_oracle.py`` checks that on Azure's sample files.

Responses (``observed_*``) give back only what the service reports in recon's canonical shape, for
refresh and drift: an attribute recon cannot see (a code folder's digest, a model's files) is
left out rather than guessed.

Wire formats: durations are ISO 8601 (``PT5S``, ``PT0.5S``, ``PT1M30S``; azure-ai-ml's
``isodate`` forms), enums PascalCase (``Key``, ``AMLToken``, ``TargetUtilization``), names
camelCase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from providers.azure.arm import iso_seconds
from reconciler.model.resources import (
    Attributes,
    CodeRef,
    ContainerResources,
    DeploymentAttrs,
    EndpointAttrs,
    EnvironmentAttrs,
    Identity,
    ModelAttrs,
    RequestSettings,
    ScaleSettings,
    as_asset,
    digest_of,
    normal_traffic,
)
from reconciler.plan.provider import EndpointToken

AUTH_MODES = {"key": "Key", "aml_token": "AMLToken", "aad_token": "AADToken"}
IDENTITY_TYPES = {
    "system_assigned": "SystemAssigned",
    "systemassigned": "SystemAssigned",
    "user_assigned": "UserAssigned",
    "userassigned": "UserAssigned",
    "system_assigned,user_assigned": "SystemAssigned,UserAssigned",
    "systemassigned,userassigned": "SystemAssigned,UserAssigned",
    "none": "None",
}
MODEL_TYPES = {"custom_model": "custom_model", "mlflow_model": "mlflow_model", "triton_model": "triton_model"}
NETWORK = {"enabled": "Enabled", "disabled": "Disabled"}


# -- small conversions -----------------------------------------------------------------------------
def iso_duration(seconds: float) -> str:
    """``10`` -> ``PT10S``, ``0.5`` -> ``PT0.5S``, ``90`` -> ``PT1M30S``, ``0`` -> ``PT0S`` (isodate's forms)."""
    total = round(float(seconds), 6)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{int(days)}D" if days else "")
    clock = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if secs or not (days or clock):
        clock += f"{_num(secs)}S"
    return out + ("T" + clock if clock else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def seconds_of(value: Any) -> float | None:
    return iso_seconds(str(value)) if isinstance(value, str) else None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def camel_keys(value: Any) -> Any:
    """snake_case keys of YAML data (data_collector) as ARM's camelCase, recursively."""
    if isinstance(value, dict):
        return {_camel(str(k)): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# -- ARM ids ---------------------------------------------------------------------------------------
def asset_id(workspace_path: str, kind: str, name: str, version: str) -> str:
    """``/subscriptions/.../workspaces/W/models/NAME/versions/V`` (kind: models, environments, codes)."""
    return f"{workspace_path}/{kind}/{name}/versions/{version}"


def reference_id(workspace_path: str, kind: str, value: str, refs: Mapping[str, Attributes]) -> str:
    """The ARM id (or registry URI) a deployment's ``model``/``environment`` attribute names.

    An address of a resource of the plan (``model.m:1``) is that asset's version in the workspace;
    ``azureml:NAME:VERSION`` the same by name; ``azureml://registries/...`` and ARM ids go as they are.
    """
    if value in refs:
        ref = as_asset(refs[value])
        return asset_id(workspace_path, kind, str(ref["name"]), str(ref["version"]))
    m = re.fullmatch(r"(?:model|environment)\.([^:]+):(.+)", value)
    if m:
        return asset_id(workspace_path, kind, m[1], m[2])
    m = re.fullmatch(r"azureml:([^:/@]+):(.+)", value)
    if m:
        return asset_id(workspace_path, kind, m[1], m[2])
    if value.startswith("azureml:/subscriptions/"):  # an ARM id as the CLI writes it: ARM takes the id
        return value.removeprefix("azureml:")
    return value


def code_id(workspace_path: str, code: CodeRef) -> str:
    """A deployment's ``codeId``: a folder is uploaded as ``codes/{digest}/versions/1``; a registered
    code asset (``{"asset": "azureml:NAME:VERSION"}``, an ARM id, a registry URI) is named as it is
    (``azureml:NAME@latest`` is resolved by the provider before the body is made)."""
    if "asset" in code:
        return reference_id(workspace_path, "codes", str(code["asset"]), {})
    return asset_id(workspace_path, "codes", code_name(code["digest"]), "1")


def compute_id(workspace_path: str, compute: str | None) -> str | None:
    """A Kubernetes endpoint's ``compute``: ``azureml:NAME`` or ``NAME`` -> the compute's ARM id."""
    if not compute:
        return None
    if compute.startswith("/subscriptions/"):
        return compute
    return f"{workspace_path}/computes/{compute.removeprefix('azureml:')}"


def code_name(digest: str) -> str:
    """The name of the code asset of a folder: its content digest (azure-ai-ml also names anonymous
    code by its hash), version ``1``. The same content is uploaded once per workspace."""
    return digest.removeprefix("sha256:")[:64]


# -- endpoints -------------------------------------------------------------------------------------
def identity_body(identity: Identity | None) -> dict[str, Any]:
    """ManagedServiceIdentity; none declared is ``SystemAssigned``, as azure-ai-ml sends."""
    if not identity:
        return {"type": "SystemAssigned"}
    kind = IDENTITY_TYPES.get(str(identity.get("type") or "").lower(), str(identity.get("type")))
    body: dict[str, Any] = {"type": kind}
    uai = identity.get("user_assigned_identities")
    if uai:
        ids = [u.get("resource_id") for u in uai] if isinstance(uai, list) else list(uai)
        body["userAssignedIdentities"] = {str(i): {} for i in ids if i}
    return body


def endpoint_body(attrs: EndpointAttrs, location: str, workspace_path: str,
                  traffic: dict[str, int], mirror_traffic: dict[str, int]) -> dict[str, Any]:
    """PUT onlineEndpoints/{name}. ``traffic``/``mirror_traffic`` are what the endpoint must keep
    (creation: none; later PUTs: the live split, so an update never zeroes it)."""
    props: dict[str, Any] = {
        "authMode": AUTH_MODES.get(str(attrs.get("auth_mode") or "key"), "Key"),
        "description": attrs.get("description"),
        "traffic": dict(traffic),
        "mirrorTraffic": dict(mirror_traffic),
    }
    if attrs.get("kind") == "kubernetes":
        props["compute"] = compute_id(workspace_path, attrs.get("compute"))
    elif attrs.get("public_network_access"):
        props["publicNetworkAccess"] = NETWORK.get(str(attrs["public_network_access"]).lower(),
                                                   attrs["public_network_access"])
    return {
        "location": location,
        "identity": identity_body(attrs.get("identity")),
        "tags": dict(attrs.get("tags") or {}),
        "properties": _drop_none(props),
    }


def observed_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties") or {}
    auth = {v: k for k, v in AUTH_MODES.items()}
    out: dict[str, Any] = {
        "auth_mode": auth.get(str(props.get("authMode")), str(props.get("authMode") or "key").lower()),
        "traffic": normal_traffic(props.get("traffic")),
        "mirror_traffic": normal_traffic(props.get("mirrorTraffic")),
        "tags": dict(body.get("tags") or {}),
        "description": props.get("description"),
    }
    if props.get("publicNetworkAccess"):
        out["public_network_access"] = str(props["publicNetworkAccess"]).lower()
    return out


def endpoint_token(answer: Any, scoring_uri: str) -> EndpointToken:
    """The ``token`` action's answer (``EndpointAuthToken``: ``accessToken``, ``tokenType``, and
    ``expiryTimeUtc``/``refreshAfterTimeUtc`` in Unix seconds) as recon's ``EndpointToken``."""
    body = answer if isinstance(answer, dict) else {}

    def seconds(key: str) -> int:
        value = body.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    return EndpointToken(access_token=str(body.get("accessToken") or ""), expiry_time_utc=seconds("expiryTimeUtc"),
                         refresh_after_time_utc=seconds("refreshAfterTimeUtc"),
                         token_type=str(body.get("tokenType") or "Bearer"), scoring_uri=scoring_uri)


# -- deployments -----------------------------------------------------------------------------------
def probe_body(probe: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """ProbeSettings. ``method``/``path``/``port``/``scheme`` are not in the 2024-04-01 model (the
    service probes its own routes); recon's local providers use them, ARM gets the rest."""
    if probe is None:
        return None
    return _drop_none({
        "initialDelay": iso_duration(probe["initial_delay"]) if probe.get("initial_delay") is not None else None,
        "period": iso_duration(probe["period"]) if probe.get("period") is not None else None,
        "timeout": iso_duration(probe["timeout"]) if probe.get("timeout") is not None else None,
        "successThreshold": probe.get("success_threshold"),
        "failureThreshold": probe.get("failure_threshold"),
    })


def request_settings_body(rs: RequestSettings | None) -> dict[str, Any] | None:
    if rs is None:
        return None
    timeout, wait = rs.get("request_timeout_ms"), rs.get("max_queue_wait_ms")
    return _drop_none({
        "requestTimeout": iso_duration(timeout / 1000) if timeout is not None else None,
        "maxConcurrentRequestsPerInstance": rs.get("max_concurrent_requests_per_instance"),
        "maxQueueWait": iso_duration(wait / 1000) if wait is not None else None,
    })


def scale_body(scale: ScaleSettings | None) -> dict[str, Any]:
    scale = scale or {"type": "default"}
    if scale.get("type") != "target_utilization":
        return {"scaleType": "Default"}
    return _drop_none({
        "scaleType": "TargetUtilization",
        "minInstances": scale.get("min_instances"),
        "maxInstances": scale.get("max_instances"),
        "pollingInterval": iso_duration(scale["polling_interval"]) if scale.get("polling_interval") is not None else None,
        "targetUtilizationPercentage": scale.get("target_utilization_percentage"),
    })


def resources_body(resources: ContainerResources | None) -> dict[str, Any] | None:
    if not resources:
        return None

    def amounts(d: dict[str, Any] | None) -> dict[str, Any] | None:
        if not d:
            return None
        return _drop_none({"cpu": d.get("cpu"), "memory": d.get("memory"), "gpu": d.get("nvidia.com/gpu")})

    return _drop_none({
        "containerResourceRequests": amounts(resources.get("requests")),
        "containerResourceLimits": amounts(resources.get("limits")),
    })


def deployment_body(attrs: DeploymentAttrs, location: str, workspace_path: str,
                    refs: Mapping[str, Attributes]) -> dict[str, Any]:
    """PUT onlineEndpoints/{ep}/deployments/{name}: the whole deployment (create and rolling update)."""
    k8s = attrs.get("kind") == "kubernetes"
    code, model, environment = attrs.get("code"), attrs.get("model"), attrs.get("environment")
    extra = attrs.get("extra") or {}
    props: dict[str, Any] = {
        "endpointComputeType": "Kubernetes" if k8s else "Managed",
        "description": attrs.get("description"),
        "properties": {str(k): str(v) for k, v in (attrs.get("properties") or {}).items()},
        "model": reference_id(workspace_path, "models", model, refs) if model else None,
        "environmentId": reference_id(workspace_path, "environments", environment, refs) if environment else None,
        "codeConfiguration": {
            "codeId": code_id(workspace_path, code),
            "scoringScript": attrs.get("scoring_script"),
        } if code else None,
        "environmentVariables": {str(k): str(v) for k, v in (attrs.get("environment_variables") or {}).items()},
        "instanceType": attrs.get("instance_type"),
        "scaleSettings": scale_body(attrs.get("scale_settings")),
        "requestSettings": request_settings_body(attrs.get("request_settings")),
        "livenessProbe": probe_body(attrs.get("liveness_probe")),
        "readinessProbe": probe_body(attrs.get("readiness_probe")),
        "appInsightsEnabled": bool(attrs.get("app_insights_enabled")),
        "modelMountPath": extra.get("model_mount_path"),
        "dataCollector": camel_keys(attrs["data_collector"]) if attrs.get("data_collector") else None,
    }
    if k8s:
        props["containerResourceRequirements"] = resources_body(attrs.get("resources"))
    elif attrs.get("egress_public_network_access"):
        value = str(attrs["egress_public_network_access"]).lower()
        props["egressPublicNetworkAccess"] = NETWORK.get(value, value)
    return {
        "location": location,
        "tags": dict(attrs.get("tags") or {}),
        "sku": {"name": "Default", "capacity": int(attrs.get("instance_count") or 0)},
        "properties": _drop_none(props),
    }


def deployment_patch(attrs: DeploymentAttrs, count: int) -> dict[str, Any]:
    """PATCH onlineEndpoints/{ep}/deployments/{name} (PartialMinimalTrackedResourceWithSku): the
    instance count and the tags, the two things Azure changes without a rolling update."""
    return {"sku": {"name": "Default", "capacity": int(count)}, "tags": dict(attrs.get("tags") or {})}


def template_of(body: dict[str, Any]) -> dict[str, Any]:
    """What an instance runs: the properties a PUT sends, less what PATCH changes (count, tags) and
    what the service fills in. Two bodies with equal templates need no rolling update."""
    props = dict(body.get("properties") or {})
    for key in ("provisioningState", "scaleSettings", "description"):
        props.pop(key, None)
    return props


def same_template(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a live deployment already runs ``desired``'s template: every property recon sends has
    exactly the value it sends; properties it does not send (the service's own, defaults it fills
    in) are not compared, and neither are entries the service adds to the free-form ``properties``."""
    have, want = template_of(live), template_of(desired)
    for key, value in want.items():
        seen = have.get(key)
        if key == "properties" and isinstance(seen, dict):
            seen = {k: v for k, v in seen.items() if k in value}
        if seen != value:
            return False
    return True


def observed_deployment(body: dict[str, Any]) -> dict[str, Any]:
    """The canonical attributes a deployment's GET shows (the ones recon compares for drift).

    Under target-utilization scaling the instance count is the autoscaler's to move: not reported."""
    props = body.get("properties") or {}
    autoscaled = str((props.get("scaleSettings") or {}).get("scaleType")) == "TargetUtilization"
    out: dict[str, Any] = {
        "environment_variables": {str(k): str(v) for k, v in (props.get("environmentVariables") or {}).items()},
        "tags": dict(body.get("tags") or {}),
        "description": props.get("description"),
        "app_insights_enabled": bool(props.get("appInsightsEnabled")),
    }
    if not autoscaled:
        out["instance_count"] = int((body.get("sku") or {}).get("capacity") or 0)
    if props.get("instanceType") is not None:
        out["instance_type"] = props["instanceType"]
    if props.get("scaleSettings") is not None:
        out["scale_settings"] = _observed_scale(props["scaleSettings"])
    if props.get("requestSettings") is not None:
        out["request_settings"] = _observed_request_settings(props["requestSettings"])
    for key, name in (("livenessProbe", "liveness_probe"), ("readinessProbe", "readiness_probe")):
        if props.get(key) is not None:
            out[name] = _observed_probe(props[key])
    return out


def _observed_scale(s: dict[str, Any]) -> dict[str, Any]:
    if str(s.get("scaleType")) != "TargetUtilization":
        return {"type": "default"}
    return {
        "type": "target_utilization",
        "min_instances": s.get("minInstances", 1),
        "max_instances": s.get("maxInstances", 1),
        "polling_interval": _int(seconds_of(s.get("pollingInterval")) or 1),
        "target_utilization_percentage": s.get("targetUtilizationPercentage", 70),
    }


def _observed_request_settings(rs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rs.get("requestTimeout") is not None:
        out["request_timeout_ms"] = _int(1000 * (seconds_of(rs["requestTimeout"]) or 0))
    if rs.get("maxConcurrentRequestsPerInstance") is not None:
        out["max_concurrent_requests_per_instance"] = int(rs["maxConcurrentRequestsPerInstance"])
    if rs.get("maxQueueWait") is not None:
        out["max_queue_wait_ms"] = _int(1000 * (seconds_of(rs["maxQueueWait"]) or 0))
    return out


def _observed_probe(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (("initialDelay", "initial_delay"), ("period", "period"), ("timeout", "timeout")):
        if p.get(key) is not None:
            out[name] = _int(seconds_of(p[key]) or 0)
    for key, name in (("successThreshold", "success_threshold"), ("failureThreshold", "failure_threshold")):
        if p.get(key) is not None:
            out[name] = int(p[key])
    return out


def _int(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- assets ----------------------------------------------------------------------------------------
def model_body(attrs: ModelAttrs, model_uri: str) -> dict[str, Any]:
    """PUT models/{name}/versions/{version}. ``model_uri``: where the files were uploaded, or the
    model's own URI (``runs:/...``, ``azureml://...``, ``https://...``: Azure fetches it). The newer
    optional fields of the file (``extra``) go as azure-ai-ml sends them."""
    extra = attrs.get("extra") or {}
    default = extra.get("default_deployment_template")
    allowed = extra.get("allowed_deployment_templates")
    props = _drop_none({
        "description": attrs.get("description"),
        "tags": dict(attrs.get("tags") or {}),
        "properties": {"recon.content_digest": str(attrs.get("content_digest"))},
        "modelType": MODEL_TYPES.get(str(attrs.get("type") or "custom_model"), "custom_model"),
        "modelUri": model_uri,
        "isAnonymous": bool(attrs.get("anonymous")),
        "systemMetadata": extra.get("system_metadata"),
        "defaultDeploymentTemplate": {"assetId": default["asset_id"]} if isinstance(default, dict) else None,
        "allowedDeploymentTemplates": [{"assetId": t["asset_id"]} for t in allowed if isinstance(t, dict)]
        if isinstance(allowed, list) else None,
    })
    return {"properties": props}


DEFAULT_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def environment_body(attrs: EnvironmentAttrs, context_uri: str | None) -> dict[str, Any]:
    """PUT environments/{name}/versions/{version}: an image (+ conda file) or a build context. An
    environment that names neither gets Azure ML's default base image (as the other providers)."""
    build = attrs.get("build")
    ic = attrs.get("inference_config")
    props = _drop_none({
        "description": attrs.get("description"),
        "tags": dict(attrs.get("tags") or {}),
        "properties": {"recon.content_digest": str(attrs.get("content_digest"))},
        "image": attrs.get("image") or (None if build and context_uri else DEFAULT_IMAGE),
        "condaFile": yaml.safe_dump(attrs["conda"], sort_keys=False) if attrs.get("conda") else None,
        "build": _drop_none({"contextUri": context_uri, "dockerfilePath": build.get("dockerfile_path") or "Dockerfile"})
        if build and context_uri else None,
        "osType": "Windows" if str(attrs.get("os_type") or "linux").lower() == "windows" else "Linux",
        "inferenceConfig": camel_keys(ic) if ic else None,
    })
    return {"properties": props}


def code_body(code_uri: str, digest: str) -> dict[str, Any]:
    """PUT codes/{digest}/versions/1: a code folder uploaded to blob storage."""
    return {"properties": {"codeUri": code_uri, "isAnonymous": True,
                           "properties": {"recon.content_digest": digest}}}


def observed_asset(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties") or {}
    return {"tags": dict(props.get("tags") or {}), "description": props.get("description")}


def endpoint_outputs(body: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's outputs (recorded in state) from its ARM body."""
    props = body.get("properties") or {}
    return {"id": body.get("id"), "scoring_uri": props.get("scoringUri"),
            "provisioning_state": props.get("provisioningState")}


def deployment_outputs(body: dict[str, Any]) -> dict[str, Any]:
    """A deployment's outputs from its ARM body: its template's digest is the configuration it runs."""
    props = body.get("properties") or {}
    digest = digest_of(template_of(body)) if props else None
    count = int((body.get("sku") or {}).get("capacity") or 0)
    return {"id": body.get("id"), "provisioning_state": props.get("provisioningState"),
            "config_digest": digest, "instances": {"count": count, "config_digest": digest}}


__all__ = [
    "deployment_outputs",
    "endpoint_outputs",
    "asset_id", "code_body", "code_id", "code_name", "compute_id", "deployment_body", "deployment_patch", "endpoint_body",
    "environment_body", "iso_duration", "model_body", "observed_asset", "observed_deployment", "observed_endpoint",
    "reference_id", "same_template", "template_of",
]

