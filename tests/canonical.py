"""Canonical attributes (the shape documented in reconciler/resources.py) for hand-built tests.

One definition of every key each kind carries, so the engine, planner and contract tests that
build resources without the loader cannot drift from the canonical form or from each other.
Each builder takes the identifying values and keyword overrides for anything else.
"""

from __future__ import annotations

from typing import Any

DEFAULT_PROBE = {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1, "failure_threshold": 30}
DEFAULT_REQUEST_SETTINGS = {
    "request_timeout_ms": 5000,
    "max_concurrent_requests_per_instance": 1,
    "max_queue_wait_ms": 500,
}


def model_attrs(name: str, version: str, **overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": name,
        "version": version,
        "path": "model",
        "type": "custom_model",
        "description": None,
        "tags": {},
        "content_digest": f"sha256:{name}{version}",
        "anonymous": False,
    }
    attrs.update(overrides)
    return attrs


def environment_attrs(name: str, version: str, **overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": name,
        "version": version,
        "image": "python:3.11",
        "conda_file": None,
        "conda": None,
        "build": None,
        "inference_config": None,
        "os_type": "linux",
        "description": None,
        "tags": {},
        "content_digest": f"sha256:{name}{version}",
    }
    attrs.update(overrides)
    return attrs


def endpoint_attrs(name: str, **overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": name,
        "kind": "managed",
        "auth_mode": "key",
        "compute": None,
        "identity": None,
        "public_network_access": None,
        "description": None,
        "tags": {},
        "traffic": {},
        "mirror_traffic": {},
        "traffic_declared": True,
    }
    attrs.update(overrides)
    return attrs


def deployment_attrs(name: str, endpoint_name: str, **overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": name,
        "endpoint_name": endpoint_name,
        "kind": "managed",
        "model": None,
        "environment": None,
        "code": {"path": "code", "digest": "sha256:c"},
        "scoring_script": "score.py",
        "instance_type": "Standard_DS3_v2",
        "instance_count": 1,
        "scale_settings": {"type": "default"},
        "request_settings": dict(DEFAULT_REQUEST_SETTINGS),
        "liveness_probe": dict(DEFAULT_PROBE),
        "readiness_probe": dict(DEFAULT_PROBE),
        "environment_variables": {},
        "resources": None,
        "properties": {},
        "tags": {},
        "description": None,
        "app_insights_enabled": False,
        "egress_public_network_access": None,
        "data_collector": None,
        "extra": {},
    }
    attrs.update(overrides)
    return attrs
