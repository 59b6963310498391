"""Pydantic models of the SDK v1 inputs, in both spellings.

Each field is named by the SDK keyword argument (``AksWebservice.deploy_configuration``,
``AksEndpoint.create_version``, ``InferenceConfig``) and accepts, as an alias, the camelCase name
the v1 CLI's files use (``deploymentconfig.json``, ``inferenceconfig.json``; where Microsoft's
documentation printed two spellings, both). The CLI file nests some settings (``autoScaler``,
``containerResourceRequirements``, ``livenessProbeRequirements``, ``keys``, ``dataCollection``):
those groups are sub-models whose fields carry the same canonical names, so that
``settings.flatten`` can merge both spellings into one mapping.

Every model forbids unknown keys and types its values strictly (``true`` is not a number, ``"1"`` is
not an integer). A known key whose value is null or the empty string is "not set", as the v1 tools
read it: Microsoft's templates write every key, most of them ``null`` (``"extraDockerfileSteps":
null``, ``baseImage:`` with nothing after it).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

Num = Annotated[float, Strict()]  # an int or a float, never a string or a bool
SECRETS = frozenset({"primary_key", "secondary_key", "password"})


def _a(*names: str) -> Any:
    """A field that accepts any of ``names`` as its key (the first is the SDK's)."""
    return Field(None, validation_alias=AliasChoices(*names))


@cache
def known_keys(model: type[BaseModel]) -> frozenset[str]:
    """Every key that sets a field of ``model``."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        out |= {str(c) for c in alias.choices} if isinstance(alias, AliasChoices) else {name}
    return frozenset(out)


class V1Model(BaseModel):
    """Base: unknown keys are errors, values are not coerced, instances are immutable; a known key
    set to null or "" is dropped (not set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = known_keys(cls)
        return {k: v for k, v in data.items() if not (k in known and (v is None or v == ""))}


class AutoScalerDoc(V1Model):
    """``autoScaler`` of deploymentconfig.json."""

    autoscale_enabled: StrictBool | None = _a("autoscaleEnabled", "autoscale_enabled")
    autoscale_min_replicas: StrictInt | None = _a("minReplicas", "autoscale_min_replicas")
    autoscale_max_replicas: StrictInt | None = _a("maxReplicas", "autoscale_max_replicas")
    autoscale_refresh_seconds: StrictInt | None = _a("refreshPeriodInSeconds", "autoscale_refresh_seconds")
    autoscale_target_utilization: StrictInt | None = _a("targetUtilization", "autoscale_target_utilization")


class ContainerResourcesDoc(V1Model):
    """``containerResourceRequirements``: per-replica cpu cores and memory in GB, requests and limits.
    ``gpu`` is accepted but the v1 CLI never read it (it read the top-level ``gpuCores``)."""

    cpu_cores: Num | None = _a("cpu", "cpu_cores")
    cpu_cores_limit: Num | None = _a("cpuLimit", "cpu_cores_limit")
    memory_gb: Num | None = _a("memoryInGB", "memory_gb")
    memory_gb_limit: Num | None = _a("memoryInGBLimit", "memory_gb_limit")
    container_gpu: StrictInt | None = _a("gpu")


class LivenessProbeDoc(V1Model):
    """``livenessProbeRequirements``."""

    period_seconds: StrictInt | None = _a("periodSeconds", "period_seconds")
    initial_delay_seconds: StrictInt | None = _a("initialDelaySeconds", "initial_delay_seconds")
    timeout_seconds: StrictInt | None = _a("timeoutSeconds", "timeout_seconds")
    success_threshold: StrictInt | None = _a("successThreshold", "success_threshold")
    failure_threshold: StrictInt | None = _a("failureThreshold", "failure_threshold")


class KeysDoc(V1Model):
    """``keys``: the service's auth keys. Read only to be reported as withheld, never written."""

    primary_key: StrictStr | None = _a("primaryKey", "primary_key")
    secondary_key: StrictStr | None = _a("secondaryKey", "secondary_key")


class DataCollectionDoc(V1Model):
    """``dataCollection``."""

    collect_model_data: StrictBool | None = _a("storageEnabled", "collect_model_data")


class VersionSettingsDoc(V1Model):
    """The settings of one served version (an AksWebservice, or one AksEndpoint version)."""

    autoscale_enabled: StrictBool | None = None
    autoscale_min_replicas: StrictInt | None = None
    autoscale_max_replicas: StrictInt | None = None
    autoscale_refresh_seconds: StrictInt | None = None
    autoscale_target_utilization: StrictInt | None = None
    collect_model_data: StrictBool | None = None
    cpu_cores: Num | None = None
    cpu_cores_limit: Num | None = None
    memory_gb: Num | None = None
    memory_gb_limit: Num | None = None
    gpu_cores: StrictInt | None = _a("gpu_cores", "gpuCores")
    scoring_timeout_ms: StrictInt | None = _a("scoring_timeout_ms", "scoringTimeoutMs")
    replica_max_concurrent_requests: StrictInt | None = _a(
        "replica_max_concurrent_requests", "maxConcurrentRequestsPerContainer"
    )
    max_request_wait_time: StrictInt | None = _a("max_request_wait_time", "maxQueueWaitMs")
    num_replicas: StrictInt | None = _a("num_replicas", "numReplicas")
    period_seconds: StrictInt | None = None
    initial_delay_seconds: StrictInt | None = None
    timeout_seconds: StrictInt | None = None
    success_threshold: StrictInt | None = None
    failure_threshold: StrictInt | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    description: StrictStr | None = None
    version_name: StrictStr | None = _a("version_name", "versionName")
    traffic_percentile: StrictInt | None = _a("traffic_percentile", "trafficPercentile")
    # the v1 CLI's nested groups
    autoScaler: AutoScalerDoc | None = None  # noqa: N815 - the v1 CLI's key
    containerResourceRequirements: ContainerResourcesDoc | None = None  # noqa: N815
    livenessProbeRequirements: LivenessProbeDoc | None = None  # noqa: N815
    dataCollection: DataCollectionDoc | None = None  # noqa: N815


class DeployConfigDoc(VersionSettingsDoc):
    """``deploymentconfig.json`` or the ``deploy_configuration(...)`` kwargs: one version plus the
    settings of the whole service (auth, compute, namespace, keys, Application Insights), and the
    keys v1 read only for other compute types (``ACI_ONLY``)."""

    compute_type: StrictStr | None = _a("compute_type", "computeType")
    auth_enabled: StrictBool | None = _a("auth_enabled", "authEnabled")
    token_auth_enabled: StrictBool | None = _a("token_auth_enabled", "tokenAuthEnabled")
    enable_app_insights: StrictBool | None = _a("enable_app_insights", "appInsightsEnabled")
    namespace: StrictStr | None = None
    compute_target_name: StrictStr | None = _a("compute_target_name", "computeTargetName")
    compute_target: StrictStr | None = _a("ComputeTarget", "computeTarget")
    blobfuse_enabled: StrictBool | None = _a("blobfuse_enabled", "blobfuseEnabled")
    primary_key: StrictStr | None = None
    secondary_key: StrictStr | None = None
    keys: KeysDoc | None = None
    # AciWebservice.deploy_configuration (and LocalWebservice's port): read by v1 for ACI only
    location: StrictStr | None = None
    ssl_enabled: StrictBool | None = _a("ssl_enabled", "sslEnabled")
    ssl_cert_pem_file: StrictStr | None = _a("ssl_cert_pem_file", "sslCertificate")
    ssl_key_pem_file: StrictStr | None = _a("ssl_key_pem_file", "sslKey")
    ssl_cname: StrictStr | None = _a("ssl_cname", "cname")
    dns_name_label: StrictStr | None = _a("dns_name_label", "dnsNameLabel")
    cmk_vault_base_url: StrictStr | None = _a("cmk_vault_base_url", "vaultBaseUrl")
    cmk_key_name: StrictStr | None = _a("cmk_key_name", "keyName")
    cmk_key_version: StrictStr | None = _a("cmk_key_version", "keyVersion")
    vnet_name: StrictStr | None = _a("vnet_name", "vnetName")
    subnet_name: StrictStr | None = _a("subnet_name", "subnetName")
    port: StrictInt | None = None


class VersionDoc(VersionSettingsDoc):
    """One entry of the versions file: ``AksEndpoint.create_version(version_name, ...)`` kwargs,
    plus the model and inference config of that version (paths relative to the versions file)."""

    is_default: StrictBool | None = _a("is_default", "isDefault")
    is_control_version_type: StrictBool | None = _a("is_control_version_type", "isControlVersionType")
    inference_config: StrictStr | None = _a("inference_config", "inferenceConfig")
    models: list[StrictStr] | None = None
    model: StrictStr | None = None
    model_path: StrictStr | None = _a("model_path", "modelPath")


GROUPS: dict[str, type[V1Model]] = {
    "autoScaler": AutoScalerDoc,
    "containerResourceRequirements": ContainerResourcesDoc,
    "livenessProbeRequirements": LivenessProbeDoc,
    "dataCollection": DataCollectionDoc,
    "keys": KeysDoc,
}
# SDK name -> what the setting did where v1 read it (ACI: ``AciWebservice.deploy_configuration``)
ACI_ONLY: dict[str, str] = {
    "location": "the Azure region of an ACI service",
    "ssl_enabled": "TLS on an ACI service",
    "ssl_cert_pem_file": "the TLS certificate of an ACI service",
    "ssl_key_pem_file": "the TLS key of an ACI service",
    "ssl_cname": "the TLS host name of an ACI service",
    "dns_name_label": "the DNS label of an ACI service",
    "cmk_vault_base_url": "the customer-managed key vault of an ACI service",
    "cmk_key_name": "the customer-managed key of an ACI service",
    "cmk_key_version": "the customer-managed key version of an ACI service",
    "vnet_name": "the virtual network of an ACI service",
    "subnet_name": "the subnet of an ACI service",
    "port": "the port of a LocalWebservice (computeType: local)",
}
ENDPOINT_ONLY = frozenset(
    set(DeployConfigDoc.model_fields) - set(VersionSettingsDoc.model_fields) - {"keys"} - set(ACI_ONLY)
) | {"primary_key", "secondary_key"}


# --- inferenceconfig.json -----------------------------------------------------------------------


class RegistryDoc(V1Model):
    """``baseImageRegistry`` as an object; the credentials are never written."""

    address: StrictStr | None = None
    username: StrictStr | None = None
    password: StrictStr | None = None
    registry_identity: dict[str, Any] | None = _a("registryIdentity", "registry_identity")


Registry = RegistryDoc | StrictStr  # Microsoft's documented example writes the address alone


class DockerDoc(V1Model):
    """``environment.docker`` of a v1 Environment (as ``Environment.save_to_directory`` writes it)."""

    enabled: StrictBool | None = None
    base_image: StrictStr | None = _a("baseImage", "base_image")
    base_dockerfile: StrictStr | None = _a("baseDockerfile", "base_dockerfile")
    base_image_registry: Registry | None = _a("baseImageRegistry", "base_image_registry")
    build_context: dict[str, Any] | None = _a("buildContext", "build_context")
    arguments: list[Any] | None = None
    shared_volumes: StrictBool | None = _a("sharedVolumes", "shared_volumes")
    shm_size: StrictStr | None = _a("shmSize", "shm_size")
    gpu_support: StrictBool | None = _a("gpuSupport", "gpu_support")
    platform: dict[str, Any] | None = None


class PythonDoc(V1Model):
    """``environment.python`` of a v1 Environment."""

    user_managed_dependencies: StrictBool | None = _a("userManagedDependencies", "user_managed_dependencies")
    interpreter_path: StrictStr | None = _a("interpreterPath", "interpreter_path")
    conda_dependencies_file: StrictStr | None = _a("condaDependenciesFile", "conda_dependencies_file")
    conda_dependencies: dict[str, Any] | None = _a("condaDependencies", "conda_dependencies")
    base_conda_environment: StrictStr | None = _a("baseCondaEnvironment", "base_conda_environment")


class EnvironmentDoc(V1Model):
    """A v1 Environment: by ``name`` (and ``version``) alone, or defined by its python/docker parts."""

    name: StrictStr | None = None
    version: StrictStr | StrictInt | None = None
    python: PythonDoc | None = None
    docker: DockerDoc | None = None
    environment_variables: dict[str, Any] | None = _a("environmentVariables", "environment_variables")
    inferencing_stack_version: StrictStr | None = _a("inferencingStackVersion", "inferencing_stack_version")
    asset_id: StrictStr | None = _a("assetId", "asset_id")
    r: Any = None
    spark: Any = None
    databricks: Any = None


class InferenceConfigDoc(V1Model):
    """``inferenceconfig.json`` (``InferenceConfig`` kwargs): the scoring script and its environment,
    either as an ``environment`` or as the older flat keys (runtime, condaFile, baseImage...)."""

    entry_script: StrictStr | None = _a("entryScript", "entry_script")
    source_directory: StrictStr | None = _a("sourceDirectory", "source_directory")
    environment: EnvironmentDoc | None = None
    runtime: StrictStr | None = None
    conda_file: StrictStr | None = _a("condaFile", "conda_file")
    extra_docker_file_steps: StrictStr | None = _a("extraDockerfileSteps", "extraDockerFileSteps",
                                                   "extra_docker_file_steps")
    enable_gpu: StrictBool | None = _a("enableGpu", "enable_gpu")
    cuda_version: StrictStr | None = _a("cudaVersion", "cuda_version")
    base_image: StrictStr | None = _a("baseImage", "base_image")
    base_image_registry: Registry | None = _a("baseImageRegistry", "base_image_registry")
    schema_file: StrictStr | None = _a("schemaFile", "schema_file")
    description: StrictStr | None = None
