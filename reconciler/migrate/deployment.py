"""One v1 version's settings -> the fields of a v2 online deployment, with a row per setting.

Contract: ``deployment_fields(version, service, target, instance_type)`` returns the v2 fields the
settings decide (scale, resources, request settings, liveness probe, tags...) and the rows saying
what every per-version setting became. Every v1 default becomes an explicit v2 value, so the v2
deployment behaves as v1 did even where v2's own defaults differ (timeout 5 s vs 60 s, liveness
delay 10 s vs 310 s). ``ConfigError`` when a value has no v2 form (a timeout above v2's limit).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from reconciler.migrate.rows import Row, row
from reconciler.migrate.settings import Setting
from reconciler.model.errors import ConfigError

if TYPE_CHECKING:
    from reconciler.migrate.service import Service
    from reconciler.migrate.version import Version

MAX_TIMEOUT_MS = {"managed": 180_000, "kubernetes": 300_000}
PROBE = {
    "initial_delay_seconds": "initial_delay",
    "period_seconds": "period",
    "timeout_seconds": "timeout",
    "success_threshold": "success_threshold",
    "failure_threshold": "failure_threshold",
}
REQUEST = {
    "scoring_timeout_ms": "request_timeout_ms",
    "replica_max_concurrent_requests": "max_concurrent_requests_per_instance",
    "max_request_wait_time": "max_queue_wait_ms",
}


def quantity(value: float, unit: str = "") -> str:
    """A Kubernetes quantity: ``0.1`` -> ``"0.1"``, ``0.5, "Gi"`` -> ``"0.5Gi"``, ``2.0`` -> ``"2"``."""
    return format(Decimal(str(value)).normalize(), "f") + unit


def deployment_fields(v: Version, svc: Service, target: str, file: str) -> tuple[dict[str, Any], list[Row]]:
    """See the module docstring; ``file`` names the deployment's YAML file in the rows."""
    scope, s = f"deployment {v.name}", v.settings
    doc: dict[str, Any] = {}
    rows: list[Row] = []

    def put(name: str, path: str, value: Any) -> None:
        rows.append(row(scope, s[name], f"`{path}: {_show(value)}` ({file})"))

    def drop(name: str, why: str) -> None:
        rows.append(row(scope, s[name], why))

    _scale(s, target, doc, put, drop)
    _resources(s, target, doc, put, drop)
    _requests(v, target, doc, put, drop)
    doc["liveness_probe"] = {}
    for name, key in PROBE.items():
        doc["liveness_probe"][key] = s[name].value
        put(name, f"liveness_probe.{key}", s[name].value)
    _metadata(s, doc, put, drop)
    app = svc.settings["enable_app_insights"]
    doc["app_insights_enabled"] = bool(app.value)
    rows.append(row(scope, app, f"`app_insights_enabled: {_show(bool(app.value))}` ({file})"))
    return doc, rows


def _show(value: Any) -> str:
    if isinstance(value, bool | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _scale(s: dict[str, Setting], target: str, doc: dict[str, Any], put: Any, drop: Any) -> None:
    auto = s["autoscale_enabled"].value
    names = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_target_utilization",
             "autoscale_refresh_seconds")
    if auto and target == "kubernetes":
        keys = ("min_instances", "max_instances", "target_utilization_percentage", "polling_interval")
        doc["scale_settings"] = {"type": "target_utilization"}
        put("autoscale_enabled", "scale_settings.type", "target_utilization")
        for name, key in zip(names, keys, strict=True):
            doc["scale_settings"][key] = s[name].value
            put(name, f"scale_settings.{key}", s[name].value)
        drop("num_replicas", "not set: autoscale decides the instance count")
        return
    doc["scale_settings"] = {"type": "default"}
    if auto:  # managed: the YAML has no autoscale; start at v1's minimum
        doc["instance_count"] = s["autoscale_min_replicas"].value
        put("autoscale_enabled", "scale_settings.type", "default")
        put("autoscale_min_replicas", "instance_count", doc["instance_count"])
        for name in names[1:]:
            drop(name, "no managed-deployment field: autoscale managed endpoints with an Azure Monitor "
                       "autoscale rule (`az monitor autoscale create`)")
        drop("num_replicas", "not set: autoscale was on")
        return
    doc["instance_count"] = s["num_replicas"].value or 1
    put("autoscale_enabled", "scale_settings.type", "default")
    put("num_replicas", "instance_count", doc["instance_count"])
    for name in names:
        drop(name, "not used: autoscale is off")


def _resources(s: dict[str, Setting], target: str, doc: dict[str, Any], put: Any, drop: Any) -> None:
    names = ("cpu_cores", "cpu_cores_limit", "memory_gb", "memory_gb_limit", "gpu_cores")
    if target != "kubernetes":
        for name in names:
            drop(name, "no managed-deployment field: the instance type sets cpu, memory and GPUs")
        return
    requests: dict[str, str] = {"cpu": quantity(s["cpu_cores"].value), "memory": quantity(s["memory_gb"].value, "Gi")}
    limits: dict[str, str] = {}
    put("cpu_cores", "resources.requests.cpu", requests["cpu"])
    put("memory_gb", "resources.requests.memory", requests["memory"])
    for name, key, unit in (("cpu_cores_limit", "cpu", ""), ("memory_gb_limit", "memory", "Gi")):
        if s[name].value is None:
            drop(name, "not set: no limit, as in v1")
        else:
            limits[key] = quantity(s[name].value, unit)
            put(name, f"resources.limits.{key}", limits[key])
    gpus = s["gpu_cores"].value
    if gpus:  # Kubernetes needs the limit of an extended resource; the request equals it
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
        put("gpu_cores", "resources.requests/limits.nvidia.com/gpu", str(gpus))
    else:
        drop("gpu_cores", "not requested (0 GPUs): no nvidia.com/gpu")
    doc["resources"] = {"requests": requests, **({"limits": limits} if limits else {})}


def _requests(v: Version, target: str, doc: dict[str, Any], put: Any, drop: Any) -> None:
    s = v.settings
    timeout = s["scoring_timeout_ms"]
    top = MAX_TIMEOUT_MS[target]
    if timeout.value > top:
        raise ConfigError(v.file.diagnostic((*v.at, *(timeout.key or "scoring_timeout_ms").split(".")),
                                            f"{timeout.value} ms is above v2's limit for {target} deployments",
                                            f"use at most {top} ms"))
    doc["request_settings"] = {}
    for name, key in REQUEST.items():
        if name == "max_request_wait_time" and target != "kubernetes":
            drop(name, "dropped: max_queue_wait_ms is deprecated for managed deployments")
            continue
        doc["request_settings"][key] = s[name].value
        put(name, f"request_settings.{key}", s[name].value)


def _metadata(s: dict[str, Setting], doc: dict[str, Any], put: Any, drop: Any) -> None:
    for name in ("tags", "properties"):
        value = s[name].value
        if value:
            doc[name] = {str(k): str(val) for k, val in value.items()}
            put(name, name, doc[name])
        else:
            drop(name, "none")
    if s["description"].value is not None:
        doc["description"] = s["description"].value
        put("description", "description", doc["description"])
    else:
        drop("description", "none")
    if s["collect_model_data"].value:
        drop("collect_model_data", "no direct v2 equivalent: v2 collects data with `data_collector` and the "
                                   "azureml-ai-monitoring Collector in score.py (ModelDataCollector is v1 only)")
    else:
        drop("collect_model_data", "off, as in v1 (no data_collector)")
