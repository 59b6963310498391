"""Every v1 setting of a service or version, merged from both spellings, with v1's defaults.

Contract: ``flatten`` turns a parsed document into ``{sdk_name: Setting}`` for the keys the file
gives (a setting given twice, e.g. ``numReplicas`` and ``num_replicas``, or ``cpu_cores`` and
``containerResourceRequirements.cpu``, is an error naming both). ``with_defaults`` adds every setting
the file is silent about with the SDK v1 default (seeds 000 and 003), marked ``key=None``.
``check_version`` and ``check_service`` return the rules v1 itself enforced, as diagnostics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from reconciler.migrate.files import V1File
from reconciler.migrate.models import GROUPS
from reconciler.migrate.parse import spellings
from reconciler.model.errors import Diagnostic

# per-version settings in the order MIGRATION.md lists them; None: no default (see with_defaults)
VERSION_DEFAULTS: dict[str, Any] = {
    "autoscale_enabled": None,  # True when num_replicas is absent
    "autoscale_min_replicas": 1,
    "autoscale_max_replicas": 10,
    "autoscale_target_utilization": 70,
    "autoscale_refresh_seconds": 1,
    "num_replicas": None,
    "cpu_cores": 0.1,
    "cpu_cores_limit": None,
    "memory_gb": 0.5,
    "memory_gb_limit": None,
    "gpu_cores": 0,
    "scoring_timeout_ms": 60000,
    "replica_max_concurrent_requests": 1,
    "max_request_wait_time": 500,
    "initial_delay_seconds": 310,
    "period_seconds": 10,
    "timeout_seconds": 2,
    "success_threshold": 1,
    "failure_threshold": 3,
    "collect_model_data": False,
    "tags": None,
    "properties": None,
    "description": None,
    "traffic_percentile": None,
}
SERVICE_DEFAULTS: dict[str, Any] = {
    "compute_type": "aks",
    "auth_enabled": True,
    "token_auth_enabled": False,
    "enable_app_insights": False,
    "namespace": None,
    "compute_target_name": None,
    "compute_target": None,  # ComputeTarget / computeTarget: in Microsoft's examples, never read by v1
    "blobfuse_enabled": True,
    "primary_key": None,
    "secondary_key": None,
}
COMPUTE_TYPES = ("aks", "aksendpoint")  # as v1 compared them: case-insensitively
OTHER_COMPUTE = {"aci": "an Azure Container Instances service, not an AKS one",
                 "local": "a local Docker service, not an AKS one"}
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Setting:
    """One v1 setting: its SDK name, the key as the file wrote it (None: v1's default), its value."""

    name: str
    value: Any
    key: str | None = None


def flatten(doc: BaseModel, raw: dict[str, Any], f: V1File, at: Path, out: list[Diagnostic]) -> dict[str, Setting]:
    """The settings ``doc`` gives, by SDK name, nested groups merged in."""
    given: dict[str, Setting] = {}
    for name in sorted(doc.model_fields_set, key=lambda n: n in GROUPS):  # flat keys first
        value = getattr(doc, name)
        if name in GROUPS and isinstance(value, BaseModel):
            for inner in value.model_fields_set:
                key = _written(type(value), inner, raw.get(name) or {})
                _put(given, Setting(inner, getattr(value, inner), f"{name}.{key}"), f, at, out)
        elif name not in GROUPS:
            _put(given, Setting(name, value, _written(type(doc), name, raw)), f, at, out)
    return given


def _written(model: type[BaseModel], name: str, raw: dict[str, Any]) -> str:
    return next((s for s in spellings(model, name) if s in raw), name)


def _put(given: dict[str, Setting], s: Setting, f: V1File, at: Path, out: list[Diagnostic]) -> None:
    before = given.get(s.name)
    if before is not None:
        out.append(f.diagnostic((*at, *str(s.key).split(".")),
                                f"{s.key!r} sets the same setting as {before.key!r}",
                                "give it once"))
    given[s.name] = s


def with_defaults(given: dict[str, Setting], defaults: dict[str, Any]) -> dict[str, Setting]:
    """``given`` plus a ``Setting(key=None)`` for every name of ``defaults`` it lacks, in table order."""
    out = {name: given.get(name) or Setting(name, default) for name, default in defaults.items()}
    auto = out.get("autoscale_enabled")
    if auto is not None and auto.key is None:
        out["autoscale_enabled"] = Setting("autoscale_enabled", out["num_replicas"].value is None)
    return out


def check_version(s: dict[str, Setting], f: V1File, at: Path) -> list[Diagnostic]:
    """v1's own rules for one version's settings (``s`` has every name, defaults included)."""
    out: list[Diagnostic] = []

    def bad(name: str, message: str, hint: str) -> None:
        key = s[name].key or name
        out.append(f.diagnostic((*at, *key.split(".")), message, hint))

    v = {name: setting.value for name, setting in s.items()}
    if v["autoscale_enabled"] and v["num_replicas"] is not None:
        bad("num_replicas", "autoscale is enabled and num_replicas is set (v1 refused this too)",
            "remove num_replicas, or set autoscale_enabled: false")
    if not v["autoscale_enabled"] and v["num_replicas"] is None:
        bad("autoscale_enabled", "autoscale is disabled and num_replicas is not set (v1 refused this too)",
            "give num_replicas, or enable autoscale")
    # as azureml-core's validate_configuration: each of these must be above zero
    for name in ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
                 "scoring_timeout_ms", "replica_max_concurrent_requests", "num_replicas", "max_request_wait_time",
                 "period_seconds", "initial_delay_seconds", "timeout_seconds", "success_threshold",
                 "failure_threshold"):
        if v[name] is not None and v[name] < 1:
            bad(name, f"{v[name]} is too small (v1 refused it too)", "use a whole number of at least 1")
    if v["gpu_cores"] < 0:
        bad("gpu_cores", f"{v['gpu_cores']} is negative", "use 0 or more")
    if v["autoscale_min_replicas"] > v["autoscale_max_replicas"]:
        bad("autoscale_min_replicas",
            f"autoscale_min_replicas {v['autoscale_min_replicas']} is above autoscale_max_replicas "
            f"{v['autoscale_max_replicas']}", "make the minimum at most the maximum")
    if not 1 <= v["autoscale_target_utilization"] <= 100:
        bad("autoscale_target_utilization", f"{v['autoscale_target_utilization']} is not a percentage",
            "use 1 to 100")
    tp = v["traffic_percentile"]
    if tp is not None and not 0 <= tp <= 100:
        bad("traffic_percentile", f"{tp} is not a percentage", "use a whole number from 0 to 100")
    _check_amounts(v, bad)
    return out


def _check_amounts(v: dict[str, Any], bad: Any) -> None:
    for req, lim in (("cpu_cores", "cpu_cores_limit"), ("memory_gb", "memory_gb_limit")):
        if v[req] <= 0:
            bad(req, f"{v[req]:g} is not a positive amount", "use a number above 0, e.g. 0.5")
        elif v[lim] is not None and v[lim] < v[req]:
            bad(lim, f"the limit {v[lim]:g} is below the request {v[req]:g} ({req})",
                f"make {lim} at least {req}")


def check_service(s: dict[str, Setting], f: V1File) -> list[Diagnostic]:
    """v1's rules for the service-wide settings."""
    out: list[Diagnostic] = []
    # token auth alone is token auth: key auth's default (true) gives way, as azureml-core lets it
    if s["auth_enabled"].key is not None and s["auth_enabled"].value and s["token_auth_enabled"].value:
        key = s["token_auth_enabled"].key or "token_auth_enabled"
        out.append(f.diagnostic((key,), "cannot enable both key auth and token auth (both are true), as in v1",
                                "set auth_enabled: false to use token auth, or drop token_auth_enabled"))
    ctype = str(s["compute_type"].value)
    if ctype.lower() not in COMPUTE_TYPES:
        what = OTHER_COMPUTE.get(ctype.lower(), "not an AKS service")
        out.append(f.diagnostic((s["compute_type"].key or "computeType",), f"computeType {ctype!r}: {what}",
                                "import-v1 migrates AKS services: computeType AKS (an AksWebservice) or "
                                "AKSENDPOINT (an AksEndpoint)"))
    ns = s["namespace"].value
    if ns is not None and not NAMESPACE_RE.match(ns):
        out.append(f.diagnostic(("namespace",), f"{ns!r} is not a Kubernetes namespace",
                                "up to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'"))
    return out
