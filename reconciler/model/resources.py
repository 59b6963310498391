"""The desired state, after loading: resources in canonical form.

The loader turns YAML documents into ``Resource`` values; the planner, the state and the providers
all speak this one shape. ``attributes`` is plain JSON data (str/int/float/bool/None/list/dict),
with every default filled and every value normalised, so that two equal configurations have equal
attributes and nothing drifts falsely. Paths are POSIX paths relative to the project root.

Addresses: ``endpoint.NAME``, ``deployment.ENDPOINT.NAME``, ``model.NAME:VERSION``,
``environment.NAME:VERSION``. Deployment and endpoint names in addresses are lowercased
(the service compares them case-insensitively).

The canonical attributes of each type are the TypedDicts below (every key always present; None
where unset): ``EnvironmentAttrs``, ``ModelAttrs``, ``EndpointAttrs``, ``DeploymentAttrs``, and
``Attributes`` for any of them. They are types for the checker only: at run time attributes are
plain dicts (what the state and the plan store), so they cost nothing and validate nothing;
``as_endpoint`` and its siblings tell the checker which type a resource's attributes are, once
the code knows the resource's type. Traffic has one normal form (``normal_traffic``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Required, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.rollout import RolloutSettings

ResourceType = Literal["environment", "model", "endpoint", "deployment"]

#: ``{deployment name: percent}``: names lowercased, no zero entries (``normal_traffic``)
Traffic = dict[str, int]


class BuildContext(TypedDict):
    """An environment's Docker build: the context folder (or a remote URL) and its Dockerfile."""

    path: str
    dockerfile_path: str


class EnvironmentAttrs(TypedDict):
    """``content_digest``: sha256 of the image, the conda file's content and the build context's files.
    ``conda``: the parsed conda file. ``version``: as declared, picked, or the digest (anonymous)."""

    name: str
    version: str
    anonymous: bool
    image: str | None
    conda_file: str | None
    conda: dict[str, Any] | None
    build: BuildContext | None
    inference_config: dict[str, Any] | None
    os_type: str
    description: str | None
    tags: dict[str, str]
    content_digest: str
    extra: NotRequired[dict[str, Any]]  # newer optional fields the file sets (auto_delete_setting)


class ModelAttrs(TypedDict):
    """``path``: a file or folder (relative) or a remote URI; ``type``: custom_model, mlflow_model or
    triton_model; ``content_digest``: sha256 over relative file names and bytes."""

    name: str
    version: str
    anonymous: bool
    path: str
    type: str
    description: str | None
    tags: dict[str, str]
    content_digest: str
    extra: NotRequired[dict[str, Any]]  # newer optional fields the file sets (system_metadata, templates)


class Identity(TypedDict):
    type: str  # system_assigned, user_assigned, "system_assigned,user_assigned" or none
    user_assigned_identities: Any


class EndpointAttrs(TypedDict):
    """``kind``: managed or kubernetes (``compute`` only on kubernetes); ``traffic_declared``: False
    when the file has no ``traffic`` key, in which case the recorded traffic is kept, never zeroed."""

    name: str
    kind: str
    auth_mode: str  # key, aml_token or aad_token
    compute: str | None
    identity: Identity | None
    public_network_access: str | None
    description: str | None
    tags: dict[str, str]
    traffic: Traffic
    mirror_traffic: Traffic
    traffic_declared: bool


class CodeRef(TypedDict, total=False):
    """A code folder of the project (``path``, ``digest``) or a registered code asset (``asset``)."""

    path: str
    digest: str
    asset: str


class ScaleSettings(TypedDict, total=False):
    """``{"type": "default"}``, or target_utilization with every other key."""

    type: Required[str]
    min_instances: int
    max_instances: int
    polling_interval: int
    target_utilization_percentage: int


class RequestSettings(TypedDict):
    request_timeout_ms: int
    max_concurrent_requests_per_instance: int
    max_queue_wait_ms: int


class Probe(TypedDict):
    initial_delay: int
    period: int
    timeout: int
    success_threshold: int
    failure_threshold: int
    method: NotRequired[str]
    path: NotRequired[str]
    port: NotRequired[int]
    scheme: NotRequired[str]


class ContainerResources(TypedDict):
    """A Kubernetes deployment's ``resources``: quantities as strings, by resource name."""

    requests: dict[str, str]
    limits: dict[str, str]


class DeploymentAttrs(TypedDict):
    """``model``/``environment``: an address, a verbatim registry or ARM reference, or None.
    ``instance_count``: always set (the file's, else scale_settings.min_instances, else 1).
    ``extra``: other schema fields kept verbatim (model_mount_path, private_network_connection)."""

    name: str
    endpoint_name: str
    kind: str
    model: str | None
    environment: str | None
    code: CodeRef | None
    scoring_script: str | None
    instance_type: str | None
    instance_count: int
    scale_settings: ScaleSettings
    request_settings: RequestSettings
    liveness_probe: Probe
    readiness_probe: Probe
    environment_variables: dict[str, str]
    resources: ContainerResources | None
    properties: dict[str, Any]
    tags: dict[str, str]
    description: str | None
    app_insights_enabled: bool
    egress_public_network_access: str | None
    data_collector: dict[str, Any] | None
    extra: dict[str, Any]


Attributes = EnvironmentAttrs | ModelAttrs | EndpointAttrs | DeploymentAttrs


class ObservedEndpoint(TypedDict, total=False):
    """The ``EndpointAttrs`` a provider can see of a live endpoint: any subset of them."""

    name: str
    kind: str
    auth_mode: str
    compute: str | None
    identity: Identity | None
    public_network_access: str | None
    description: str | None
    tags: dict[str, str]
    traffic: Traffic
    mirror_traffic: Traffic


class ObservedDeployment(TypedDict, total=False):
    """The ``DeploymentAttrs`` a provider can see of a live deployment: any subset of them (the
    ones that drift: instance_count, environment_variables, scale_settings, settings a cloud shows)."""

    name: str
    endpoint_name: str
    model: str | None
    environment: str | None
    code: CodeRef | None
    scoring_script: str | None
    instance_type: str | None
    instance_count: int
    scale_settings: ScaleSettings
    request_settings: RequestSettings
    liveness_probe: Probe
    readiness_probe: Probe
    environment_variables: dict[str, str]
    properties: dict[str, Any]
    tags: dict[str, str]
    description: str | None
    app_insights_enabled: bool
    egress_public_network_access: str | None


class ObservedAsset(TypedDict, total=False):
    """The ``ModelAttrs``/``EnvironmentAttrs`` a provider can see of a registered asset."""

    name: str
    version: str
    description: str | None
    tags: dict[str, str]
    image: str | None
    path: str
    type: str


#: what ``Observation.attributes`` holds: some canonical attributes of the observed resource's type
ObservedAttrs = ObservedEndpoint | ObservedDeployment | ObservedAsset

if TYPE_CHECKING:
    AttributesField = Attributes
else:  # what pydantic validates and serialises: the plain dict the TypedDicts describe
    AttributesField = dict[str, Any]


def as_endpoint(attrs: Attributes | Mapping[str, Any]) -> EndpointAttrs:
    """``attrs`` of a resource known to be an endpoint (for the type checker; no copy, no check)."""
    # not typing.cast: that is a function call, and a 10,000-deployment plan makes about 200,000 of these
    return attrs  # type: ignore[return-value]


def as_deployment(attrs: Attributes | Mapping[str, Any]) -> DeploymentAttrs:
    """``attrs`` of a resource known to be a deployment (for the type checker; no copy, no check)."""
    return attrs  # type: ignore[return-value]


def as_asset(attrs: Attributes | Mapping[str, Any]) -> ModelAttrs | EnvironmentAttrs:
    """``attrs`` of a model or an environment (their common keys: name, version, anonymous,
    description, tags, content_digest)."""
    return attrs  # type: ignore[return-value]


def as_model(attrs: Attributes | Mapping[str, Any]) -> ModelAttrs:
    """``attrs`` of a resource known to be a model (for the type checker; no copy, no check)."""
    return attrs  # type: ignore[return-value]


def as_environment(attrs: Attributes | Mapping[str, Any]) -> EnvironmentAttrs:
    """``attrs`` of a resource known to be an environment (for the type checker; no copy, no check)."""
    return attrs  # type: ignore[return-value]


def as_observed(attrs: Mapping[str, Any]) -> ObservedAttrs:
    """A provider's translation of what it read (JSON data, keyed by canonical names) as observed
    attributes (for the type checker; no copy, no check)."""
    return attrs  # type: ignore[return-value]


def as_attributes(attrs: Mapping[str, Any]) -> Attributes:
    """Recorded or observed JSON data as canonical attributes (for the type checker)."""
    return attrs  # type: ignore[return-value]


def normal_traffic(traffic: Mapping[str, Any] | None) -> Traffic:
    """Traffic normal form: names lowercased, zero entries dropped (0% is the same as absent)."""
    if not traffic:
        return {}
    return {str(k).lower(): int(v) for k, v in traffic.items() if v}


_M = TypeVar("_M", bound=BaseModel)


def fast_model(cls: type[_M], **values: Any) -> _M:
    """A pydantic model from values already known to be valid, *every* field given.

    ``model_construct`` costs about as much as validation here (it walks the fields and their
    defaults); plans hold tens of thousands of these, so set the instance dict directly.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class SourceRef(BaseModel):
    """Where a resource was declared: project-relative file and 1-based line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int | None = None


class Resource(BaseModel):
    """One desired object in canonical form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    type: ResourceType
    name: str
    attributes: AttributesField
    depends_on: tuple[str, ...] = ()
    source: SourceRef | None = None


class ProviderSettings(BaseModel):
    """``provider:`` in recon.yaml: the kind plus that provider's own settings (kept verbatim)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "local"
    settings: dict[str, Any] = Field(default_factory=dict)


class InstanceType(BaseModel):
    """A VM size: vCPUs, memory, GPUs, quota family and whether the 20% reserve is waived."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cores: float
    memory_gb: float
    gpus: int = 0
    family: str
    quota_exempt: bool = False


class DesiredState(BaseModel):
    """Everything the loader produced: resources, project settings and warnings.

    ``digest`` is the sha256 of the canonical JSON of the resources (and the settings that change
    a plan), so that a saved plan can be refused when the desired state moved.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str  # absolute project root
    workspace: str = ""
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    quota: dict[str, int] | None = None
    instance_types: dict[str, InstanceType] = Field(default_factory=dict)  # catalog incl. built-ins
    rollout: RolloutSettings | None = None  # recon.yaml ``rollout:`` (the gates the plan puts on steps)
    resources: dict[str, Resource] = Field(default_factory=dict)
    warnings: list[dict[str, Any]] = Field(default_factory=list)  # Diagnostic.to_dict() entries

    @cached_property
    def digest(self) -> str:  # computed once: it is a JSON dump of every resource
        data: dict[str, Any] = {
            "resources": {a: r.attributes for a, r in sorted(self.resources.items())},
            "provider": self.provider.model_dump(),
            "quota": self.quota,
            "instance_types": {k: v.model_dump() for k, v in sorted(self.instance_types.items())},
        }
        if self.rollout is not None:  # absent: the digest of a project without the section is unchanged
            data["rollout"] = self.rollout.model_dump(mode="json")
        return digest_of(data)


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the form digests are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest_of(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


def endpoint_address(name: str) -> str:
    return f"endpoint.{name.lower()}"


def deployment_address(endpoint: str, name: str) -> str:
    return f"deployment.{endpoint.lower()}.{name.lower()}"


def asset_address(kind: str, name: str, version: str) -> str:
    return f"{kind}.{name}:{version}"


__all__ = [
    "Attributes",
    "AttributesField",
    "BuildContext",
    "CodeRef",
    "ContainerResources",
    "DeploymentAttrs",
    "DesiredState",
    "EndpointAttrs",
    "EnvironmentAttrs",
    "Identity",
    "InstanceType",
    "ModelAttrs",
    "ObservedAsset",
    "ObservedAttrs",
    "ObservedDeployment",
    "ObservedEndpoint",
    "Probe",
    "ProviderSettings",
    "RequestSettings",
    "Resource",
    "ResourceType",
    "ScaleSettings",
    "SourceRef",
    "Traffic",
    "as_asset",
    "as_attributes",
    "as_deployment",
    "as_endpoint",
    "as_environment",
    "as_model",
    "as_observed",
    "asset_address",
    "canonical_json",
    "deployment_address",
    "digest_of",
    "endpoint_address",
    "fast_model",
    "normal_traffic",
]
