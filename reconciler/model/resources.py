"""The desired state, after loading: resources in canonical form.

The loader turns YAML documents into ``Resource`` values; the planner, the state and the providers
all speak this one shape. ``attributes`` is plain JSON data (str/int/float/bool/None/list/dict),
with every default filled and every value normalised, so that two equal configurations have equal
attributes and nothing drifts falsely. Paths are POSIX paths relative to the project root.

Addresses: ``endpoint.NAME``, ``deployment.ENDPOINT.NAME``, ``model.NAME:VERSION``,
``environment.NAME:VERSION``. Deployment and endpoint names in addresses are lowercased
(the service compares them case-insensitively).

Canonical attributes (keys always present; None where unset):

environment::
    name, version (str), image, conda_file (rel path|None), conda (parsed conda YAML|None),
    build {path, dockerfile_path}|None, inference_config|None, os_type ("linux"),
    description, tags {}, content_digest (sha256 of image + conda content + build context files)

model::
    name, version (str of a positive int, or the digest for anonymous models), path (rel path of
    a file or folder), type ("custom_model" | "mlflow_model" | "triton_model"), description, tags {},
    content_digest (sha256 over relative file names and bytes), anonymous (bool)

endpoint::
    name, kind ("managed" | "kubernetes"), auth_mode ("key" | "aml_token" | "aad_token"),
    compute (str|None, kubernetes only), identity (dict|None), public_network_access|None,
    description, tags {}, traffic {deployment: pct>0} (lowercased names, zero entries dropped),
    mirror_traffic {deployment: pct>0}, traffic_declared (bool: False when the file has no
    ``traffic`` key, in which case the recorded traffic is kept, never zeroed)

deployment::
    name, endpoint_name, kind ("managed" | "kubernetes"), model (address|None),
    environment (address|None), code {path, digest}|None, scoring_script|None,
    instance_type|None, instance_count (int), scale_settings {type, min_instances, max_instances,
    polling_interval, target_utilization_percentage} (type "default" has only {type}),
    request_settings {request_timeout_ms, max_concurrent_requests_per_instance, max_queue_wait_ms},
    liveness_probe {initial_delay, period, timeout, success_threshold, failure_threshold, ...},
    readiness_probe {...}, environment_variables {str: str}, resources {requests, limits}|None,
    properties {}, tags {}, description, app_insights_enabled (bool),
    egress_public_network_access|None, data_collector|None, extra {} (other schema fields kept
    verbatim)
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.rollout import RolloutSettings

ResourceType = Literal["environment", "model", "endpoint", "deployment"]


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
    attributes: dict[str, Any]
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
    state_settings: dict[str, Any] = Field(default_factory=dict)
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
