"""``provider:`` settings of ``kind: kubernetes`` (recon.yaml), checked once, with clear errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from providers.shared.endpoint_tokens import token_lifetime
from providers.shared.routing_table import router_limits
from reconciler.model.errors import ConfigError, Diagnostic

DEFAULT_IMAGE = "python:3.12-slim"
# The router runs with recon's own httptools (a compiled module): the official image of recon's Python.
DEFAULT_ROUTER_IMAGE = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
KNOWN = {"router_limits", "kubeconfig", "context", "namespace", "image_overrides", "default_image", "router_image",
         "image_pull_policy", "node_selector", "tolerations", "progress_deadline_seconds",
         "rollout_timeout_seconds", "scoring_host", "router_reload_check",
         "catalog_resources", "token_lifetime_s", "router_replicas"}


@dataclass(frozen=True)
class KubeSettings:
    """Where recon talks to (kubeconfig, context, namespace) and how its pods are placed and run.

    ``kubeconfig``/``context``: None means what the ``kubernetes`` client finds (``KUBECONFIG``,
    ``~/.kube/config``, else the in-cluster service account). ``image_overrides``: {image: replacement},
    as on the docker provider (an environment's image, or Azure's base image, from your registry).
    ``default_image``: the image of deployments whose environment names none; it needs ``python3``
    (standard library only). ``router_image``: the router's image (default ``python:<recon's
    major.minor>-slim``, after ``image_overrides``): ``python3``, and either its own ``httptools`` or the
    same Python minor version as recon (glibc), since recon delivers its own httptools to the pod.
    ``catalog_resources``: a deployment without ``resources`` requests (and is limited to) its
    instance type's catalog size; false: no requests or limits then.
    ``router_reload_check``: after a routing table change, wait (through the API server's pod proxy)
    until every router pod serves the new table version. ``router_replicas``: router pods (spread over
    the nodes, at most one taken away at a time by an eviction: a PodDisruptionBudget).
    """

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "default"
    image_overrides: dict[str, str] = field(default_factory=dict)
    default_image: str = DEFAULT_IMAGE
    router_image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    progress_deadline_seconds: int = 600
    rollout_timeout_seconds: float = 900.0
    scoring_host: str | None = None
    router_reload_check: bool = True
    catalog_resources: bool = True
    router_replicas: int = 2

    def image(self, image: str | None) -> str:
        chosen = image or self.default_image
        return self.image_overrides.get(chosen, chosen)

    def router(self) -> str:
        return self.image(self.router_image or DEFAULT_ROUTER_IMAGE)


def _error(key: str, message: str, hint: str) -> ConfigError:
    return ConfigError(Diagnostic(message, file="recon.yaml", path=f"provider.{key}", hint=hint))


def parse_settings(raw: dict[str, Any]) -> KubeSettings:
    unknown = sorted(set(raw) - KNOWN - {"kind"})
    if unknown:
        raise _error(unknown[0], f"unknown setting {unknown[0]!r} for provider kubernetes",
                     "known: " + ", ".join(sorted(KNOWN)))
    values: dict[str, Any] = {}
    for key in ("kubeconfig", "context", "namespace", "default_image", "router_image", "image_pull_policy",
                "scoring_host"):
        if raw.get(key) is not None:
            if not isinstance(raw[key], str) or not raw[key]:
                raise _error(key, f"wrong type: got {raw[key]!r}", "expected a non-empty string")
            values[key] = raw[key]
    if values.get("image_pull_policy", "IfNotPresent") not in ("Always", "IfNotPresent", "Never"):
        raise _error("image_pull_policy", f"{values['image_pull_policy']!r} is not a pull policy",
                     "use Always, IfNotPresent or Never")
    for key in ("image_overrides", "node_selector"):
        if raw.get(key) is not None:
            value = raw[key]
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise _error(key, f"wrong type: got {value!r}", "expected a mapping of strings")
            values[key] = {str(k): str(v) for k, v in value.items()}
    if raw.get("tolerations") is not None:
        tol = raw["tolerations"]
        if not isinstance(tol, list) or not all(isinstance(t, dict) for t in tol):
            raise _error("tolerations", f"wrong type: got {tol!r}", "expected a list of Kubernetes tolerations")
        values["tolerations"] = [dict(t) for t in tol]
    for key, kind in (("progress_deadline_seconds", int), ("rollout_timeout_seconds", float)):
        if raw.get(key) is not None:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise _error(key, f"wrong value: got {value!r}", "expected a positive number of seconds")
            values[key] = kind(value)
    for key in ("router_reload_check", "catalog_resources"):
        if raw.get(key) is not None:
            if not isinstance(raw[key], bool):
                raise _error(key, f"wrong type: got {raw[key]!r}", "expected true or false")
            values[key] = raw[key]
    if raw.get("router_replicas") is not None:
        value = raw["router_replicas"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _error("router_replicas", f"wrong value: got {value!r}", "expected a whole number of router pods >= 1")
        values["router_replicas"] = value
    router_limits(raw, "")  # the router's limits (as on local and docker): a bad one is an error at its key
    token_lifetime(raw)  # aml_token endpoints' tokens (as on local and docker)
    return KubeSettings(**values)
