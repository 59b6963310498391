"""Canonical values from a document's own values: defaults filled, values normalised.

Pure functions of one document (no files, no other documents): tags and environment variables as
strings, probes, request settings and scale settings with Azure's defaults, a Kubernetes
deployment's resources as quantity strings, an endpoint's attributes, the newer optional fields kept
in ``extra``, a scoring script's path written with ``/``, and the digest of a value's canonical JSON.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any, cast

from reconciler.load.run import LoadedFile
from reconciler.model import schema
from reconciler.model.resources import (
    ContainerResources,
    EndpointAttrs,
    Identity,
    Probe,
    RequestSettings,
    ScaleSettings,
    canonical_json,
    normal_traffic,
)


def text(value: Any) -> str:
    """Tag and environment-variable values are strings in Azure; YAML booleans read as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def is_remote(value: str) -> bool:
    """A build context Azure fetches (a git or https URL)."""
    return "://" in value or value.startswith("azureml:")


def content_digest(value: Any) -> str:
    """sha256 of ``value``'s canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def posix_path(value: str) -> str:
    """A relative path normalised and written with ``/`` (scoring scripts, as Azure records them)."""
    return Path(os.path.normpath(value)).as_posix()


def extra(doc: Any, *fields: str) -> dict[str, Any]:
    """``{"extra": {...}}`` with the newer optional fields the document sets (none: no key at all,
    so that a project that does not use them plans exactly as before)."""
    values = {k: getattr(doc, k) for k in fields if getattr(doc, k, None) is not None}
    found = {k: v.model_dump() if hasattr(v, "model_dump") else _dumped(v) for k, v in values.items()}
    return {"extra": found} if found else {}


def _dumped(value: Any) -> Any:
    return [v.model_dump() if hasattr(v, "model_dump") else v for v in value] if isinstance(value, list) else value


PROBE_DEFAULTS = {
    "initial_delay": 10,
    "period": 10,
    "timeout": 2,
    "success_threshold": 1,
    "failure_threshold": 30,
}


def probe(doc: schema.ProbeDoc | None) -> Probe:
    out: dict[str, Any] = dict(PROBE_DEFAULTS)
    if doc is not None:
        out.update({k: v for k, v in doc if v is not None})
    return cast(Probe, out)


def container_resources(res: schema.ResourcesDoc | None) -> ContainerResources | None:
    if res is None:
        return None
    out: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        amounts = getattr(res, part)
        out[part] = (
            {k: str(v) for k, v in amounts.model_dump(by_alias=True).items() if v is not None}
            if amounts
            else {}
        )
    return cast(ContainerResources, out)


def scale_settings(doc: Any) -> ScaleSettings:
    s = doc.scale_settings
    stype = (s.type or "default").lower() if s is not None else "default"
    if stype != "target_utilization":
        return {"type": "default"}
    return {
        "type": stype,
        "min_instances": s.min_instances if s.min_instances is not None else 1,
        "max_instances": s.max_instances if s.max_instances is not None else 1,
        "polling_interval": s.polling_interval if s.polling_interval is not None else 1,
        "target_utilization_percentage": s.target_utilization_percentage
        if s.target_utilization_percentage is not None
        else 70,
    }


def request_settings(rs: schema.RequestSettingsDoc | None) -> RequestSettings:
    out: dict[str, int] = {
        "request_timeout_ms": 5000,
        "max_concurrent_requests_per_instance": 1,
        "max_queue_wait_ms": 500,
    }
    if rs is not None:
        out.update({k: v for k, v in rs if v is not None})
    return cast(RequestSettings, out)


def endpoint_attrs(f: LoadedFile, doc: Any) -> EndpointAttrs:
    """An endpoint's canonical attributes."""
    k8s = f.kind == "kubernetes_endpoint"
    name = doc.name.lower()
    identity: Identity | None = None
    if doc.identity is not None:
        identity = {
            "type": doc.identity.type.replace(" ", "").lower(),
            "user_assigned_identities": doc.identity.user_assigned_identities,
        }
    attrs: EndpointAttrs = {
        "name": name,
        "kind": "kubernetes" if k8s else "managed",
        "auth_mode": (doc.auth_mode or "key").lower(),
        "compute": doc.compute if k8s else None,
        "identity": identity,
        "public_network_access": None
        if k8s or doc.public_network_access is None
        else doc.public_network_access.lower(),
        "description": doc.description,
        "tags": {str(k): text(v) for k, v in (doc.tags or {}).items()},
        "traffic": normal_traffic(doc.traffic),
        "mirror_traffic": normal_traffic(doc.mirror_traffic),
        "traffic_declared": "traffic" in f.data,
    }
    return attrs
