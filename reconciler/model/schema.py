"""Pydantic models of the YAML documents recon reads, and the rules one document must obey alone.

The models mirror the Azure ML CLI v2 schemas (managedOnlineEndpoint, kubernetesOnlineEndpoint,
managedOnlineDeployment, kubernetesOnlineDeployment, model, environment) and recon.yaml. Every model
forbids unknown fields. Enumerated values stay plain strings here and are checked (case-insensitively,
as Azure does) by ``reconciler.model.checks``, which also applies the per-document service limits.
Fields that accept several shapes (``model``, ``environment``, asset ``version``, ``conda_file``) are
typed ``Any`` and checked by hand so that an error names one expected type, not a union's noise.

Azure's loader also reads what ``az ml ... show`` writes into an exported file: read-only fields
(``id``, ``provisioning_state``, ``creation_context``, ``utc_time_created``, ...). They are accepted
here, as Azure accepts them, and never used: they change no plan (``_ReadOnly*``).

This module holds what a document may contain (the models, the accepted values, the service
limits); ``reconciler.model.checks`` holds what is wrong with one (``Problem``, ``parse_model``,
``check_*``). Cross-document rules (traffic, references, duplicates, counts) live in
``reconciler.load.crossdoc``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from reconciler.model.collector import DataCollectorDoc

NAME_RE = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
WORKSPACE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
PLACEHOLDER_RE = re.compile(r"\{\{.*?\}\}|<[A-Z_]+>")

AUTH_MODES = ("key", "aml_token", "aad_token")
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
SCALE_TYPES = ("default", "target_utilization")
NETWORK_ACCESS = ("enabled", "disabled")
OS_TYPES = ("linux", "windows")
DEPLOYMENT_TYPES = ("managed", "kubernetes")
IDENTITY_TYPES = ("system_assigned", "user_assigned", "system_assigned,user_assigned", "none")
STATE_BACKENDS = ("file", "postgres")

MAX_INSTANCES_MANAGED = 50
MAX_TIMEOUT_MS = {"managed": 180_000, "kubernetes": 300_000}
MAX_DEPLOYMENTS_PER_ENDPOINT = 20
MAX_ENDPOINTS = 100
MAX_DEPLOYMENTS = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Document(_Strict):
    schema_: str | None = Field(None, alias="$schema")


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's true/false: Azure's integer fields refuse them too
        raise ValueError(f"got {value!r}, not a whole number")
    return value


# A whole number as Azure's loader reads one (marshmallow's Integer): 50, 50.0 and "50" alike.
Percent = Annotated[int, BeforeValidator(_not_a_boolean)]


class _ReadOnlyEndpoint(_Strict):
    """What ``az ml online-endpoint show`` adds to an endpoint: the service's, never used."""

    id: Any = None
    provisioning_state: Any = None
    scoring_uri: Any = None
    openapi_uri: Any = None
    location: Any = None


# --- endpoints -------------------------------------------------------------------------------


class IdentityDoc(_Strict):
    type: str
    user_assigned_identities: Any = None


class ManagedEndpointDoc(_Document, _ReadOnlyEndpoint):
    name: str
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    auth_mode: str | None = None
    identity: IdentityDoc | None = None
    traffic: dict[str, Percent] | None = None
    mirror_traffic: dict[str, Percent] | None = None
    public_network_access: str | None = None
    kind: str | None = None


class KubernetesEndpointDoc(_Document, _ReadOnlyEndpoint):
    name: str
    compute: str
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    auth_mode: str | None = None
    identity: IdentityDoc | None = None
    traffic: dict[str, Percent] | None = None
    mirror_traffic: dict[str, Percent] | None = None
    kind: str | None = None


# --- assets ----------------------------------------------------------------------------------


class RouteDoc(_Strict):
    path: str
    port: int


class InferenceConfigDoc(_Strict):
    liveness_route: RouteDoc | None = None
    readiness_route: RouteDoc | None = None
    scoring_route: RouteDoc | None = None


class BuildDoc(_Strict):
    path: str
    dockerfile_path: str | None = None


class _ReadOnlyAsset(_Strict):
    """What ``az ml model|environment show`` adds to an asset: the service's, never used."""

    id: Any = None
    creation_context: Any = None
    latest_version: Any = None
    intellectual_property: Any = None


class InlineEnvironmentDoc(_ReadOnlyAsset):
    name: str | None = None
    version: Any = None
    description: str | None = None
    tags: dict[str, Any] | None = None
    image: str | None = None
    conda_file: Any = None  # a path, or the conda environment inline (checked by hand)
    build: BuildDoc | None = None
    inference_config: InferenceConfigDoc | None = None
    os_type: str | None = None
    datastore: str | None = None
    auto_delete_setting: dict[str, Any] | None = None  # newer: kept, sent to Azure


class EnvironmentDoc(InlineEnvironmentDoc):
    schema_: str | None = Field(None, alias="$schema")
    name: str  # required at top level


class DeploymentTemplateRef(_Strict):
    asset_id: str


class InlineModelDoc(_ReadOnlyAsset):
    name: str | None = None
    version: Any = None
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    path: str
    type: str | None = None
    flavors: dict[str, Any] | None = None
    stage: str | None = None
    job_name: str | None = None
    datastore: str | None = None
    utc_time_created: Any = None  # read-only
    # newer optional fields: kept, sent to Azure
    system_metadata: dict[str, Any] | None = None
    default_deployment_template: DeploymentTemplateRef | None = None
    allowed_deployment_templates: list[DeploymentTemplateRef] | None = None


class ModelDoc(InlineModelDoc):
    schema_: str | None = Field(None, alias="$schema")
    name: str


# --- deployments -----------------------------------------------------------------------------


class CodeConfigurationDoc(_Strict):
    code: str | None = None
    scoring_script: str


class ProbeDoc(_Strict):
    initial_delay: int | None = None
    period: int | None = None
    timeout: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None


class RequestSettingsDoc(_Strict):
    request_timeout_ms: int | None = None
    max_concurrent_requests_per_instance: int | None = None
    max_queue_wait_ms: int | None = None


class ScaleSettingsDoc(_Strict):
    type: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    polling_interval: int | None = None
    target_utilization_percentage: int | None = None


class ResourceAmountsDoc(_Strict):
    """Kubernetes quantities, as strings (Azure's schema refuses ``cpu: 0.5``: write ``cpu: "0.5"``)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: str | None = Field(None, alias="nvidia.com/gpu")


class ResourcesDoc(_Strict):
    requests: ResourceAmountsDoc | None = None
    limits: ResourceAmountsDoc | None = None


class _DeploymentDoc(_Document):
    name: str
    endpoint_name: str
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    type: str | None = None
    model: Any = None
    code_configuration: CodeConfigurationDoc | None = None
    environment: Any = None
    environment_variables: dict[str, Any] | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    scale_settings: ScaleSettingsDoc | None = None
    request_settings: RequestSettingsDoc | None = None
    liveness_probe: ProbeDoc | None = None
    readiness_probe: ProbeDoc | None = None
    app_insights_enabled: bool | None = None
    data_collector: DataCollectorDoc | None = None
    model_mount_path: str | None = None
    # read-only (``az ml online-deployment show``): never used
    id: Any = None
    provisioning_state: Any = None
    creation_context: Any = None


class ManagedDeploymentDoc(_DeploymentDoc):
    egress_public_network_access: str | None = None
    private_network_connection: bool | None = None


class KubernetesDeploymentDoc(_DeploymentDoc):
    resources: ResourcesDoc | None = None


# --- recon.yaml ------------------------------------------------------------------------------


class InstanceTypeDoc(_Strict):
    cores: float
    memory_gb: float
    gpus: int = 0
    family: str
    quota_exempt: bool = False


class StateDoc(_Strict):
    """``state:`` as written; ``reconciler.model.settings.StateSettings`` says which keys each backend takes."""

    backend: str = "file"
    path: str | None = None
    dsn: str | None = None
    name: str | None = None
    history: int | None = None
    connect_timeout: int | None = None


class PricingDoc(_Strict):
    fetch: bool | None = None
    region: str | None = None
    currency: str | None = None
    cache_hours: float | None = None
    url: str | None = None
    timeout: float | None = None


class BudgetDoc(_Strict):
    monthly: float | None = None
    increase: float | None = None


class ReconFileDoc(_Strict):
    workspace: str | None = None
    provider: dict[str, Any] | None = None
    quota: dict[str, int] | None = None
    instance_types: dict[str, InstanceTypeDoc] | None = None
    state: StateDoc | None = None
    exclude: list[str] | None = None
    limits: Any = None  # checked by the loader (endpoints/deployments: positive integers)
    pricing: PricingDoc | None = None
    prices: Any = None  # checked by the loader (instance type: a price per hour >= 0)
    budget: BudgetDoc | None = None
    rollout: Any = None  # checked by reconciler.model.rollout_checks (guarded rollouts)


KIND_MODELS: dict[str, type[_Strict]] = {
    "managed_endpoint": ManagedEndpointDoc,
    "kubernetes_endpoint": KubernetesEndpointDoc,
    "managed_deployment": ManagedDeploymentDoc,
    "kubernetes_deployment": KubernetesDeploymentDoc,
    "model": ModelDoc,
    "environment": EnvironmentDoc,
}


__all__ = [
    "AUTH_MODES",
    "BudgetDoc",
    "BuildDoc",
    "CodeConfigurationDoc",
    "DEPLOYMENT_TYPES",
    "DeploymentTemplateRef",
    "EnvironmentDoc",
    "IDENTITY_TYPES",
    "IdentityDoc",
    "InferenceConfigDoc",
    "InlineEnvironmentDoc",
    "InlineModelDoc",
    "InstanceTypeDoc",
    "KIND_MODELS",
    "KubernetesDeploymentDoc",
    "KubernetesEndpointDoc",
    "MAX_DEPLOYMENTS",
    "MAX_DEPLOYMENTS_PER_ENDPOINT",
    "MAX_ENDPOINTS",
    "MAX_INSTANCES_MANAGED",
    "MAX_TIMEOUT_MS",
    "MODEL_TYPES",
    "ManagedDeploymentDoc",
    "ManagedEndpointDoc",
    "ModelDoc",
    "NAME_RE",
    "NETWORK_ACCESS",
    "OS_TYPES",
    "PLACEHOLDER_RE",
    "Percent",
    "PricingDoc",
    "ProbeDoc",
    "ReconFileDoc",
    "RequestSettingsDoc",
    "ResourceAmountsDoc",
    "ResourcesDoc",
    "RouteDoc",
    "SCALE_TYPES",
    "STATE_BACKENDS",
    "ScaleSettingsDoc",
    "StateDoc",
    "WORKSPACE_RE",
]
