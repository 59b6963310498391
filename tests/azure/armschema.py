"""The 2024-04-01 resource model the ARM emulator checks request bodies against.

Written from ARM's REST reference for Microsoft.MachineLearningServices 2024-04-01 (the seed
document 002 lists the online deployment model: OnlineDeploymentTrackedResource, Managed/
KubernetesOnlineDeployment, ProbeSettings, OnlineRequestSettings, Default/TargetUtilization scale
settings, ContainerResourceRequirements, PartialMinimalTrackedResourceWithSku, Sku, ...). As ARM
does, a property the model does not have, or a value of the wrong type, is a 400; read-only
properties (provisioningState, scoringUri, ...) are accepted and ignored.

A type is one of: ``"str"``, ``"int"``, ``"bool"``, ``"num"``, ``"dur"`` (an ISO 8601 duration
string), ``Enum(...)``, ``Map(type)`` (a JSON object of any keys), ``List(type)``, ``Obj(fields,
required, readonly)``, or ``Poly(discriminator, {value: Obj})``; ``"any"`` takes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Map:
    of: Any


@dataclass(frozen=True)
class List:
    of: Any


@dataclass(frozen=True)
class Obj:
    fields: dict[str, Any]
    required: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()


@dataclass(frozen=True)
class Poly:
    discriminator: str
    kinds: dict[str, Obj] = field(default_factory=dict)


def _extend(base: Obj, **more: Any) -> Obj:
    return Obj({**base.fields, **more}, base.required, base.readonly)


STRINGS = Map("str")
SKU_TIER = Enum(("Free", "Basic", "Standard", "Premium"))
SKU = Obj({"name": "str", "tier": SKU_TIER, "size": "str", "family": "str", "capacity": "int"}, ("name",))
PARTIAL_SKU = Obj({"name": "str", "tier": SKU_TIER, "size": "str", "family": "str", "capacity": "int"})
IDENTITY_TYPE = Enum(("None", "SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned"))
USER_IDENTITY = Obj({}, readonly=("principalId", "clientId"))
IDENTITY = Obj({"type": IDENTITY_TYPE, "userAssignedIdentities": Map(USER_IDENTITY)}, ("type",),
               readonly=("principalId", "tenantId"))
TRACKED = {"location": "str", "tags": STRINGS, "identity": IDENTITY, "kind": "str", "sku": SKU}
TRACKED_READONLY = ("id", "name", "type", "systemData")

# -- online endpoints --------------------------------------------------------------------------------
ENDPOINT_PROPS = Obj(
    {
        "authMode": Enum(("AMLToken", "Key", "AADToken")),
        "compute": "str",
        "description": "str",
        "keys": Obj({"primaryKey": "str", "secondaryKey": "str"}),
        "mirrorTraffic": Map("int"),
        "properties": STRINGS,
        "publicNetworkAccess": Enum(("Enabled", "Disabled")),
        "traffic": Map("int"),
    },
    ("authMode",),
    readonly=("provisioningState", "scoringUri", "swaggerUri"),
)
ENDPOINT = Obj({**TRACKED, "properties": ENDPOINT_PROPS}, ("location", "properties"), TRACKED_READONLY)
ENDPOINT_PATCH = Obj({"tags": STRINGS, "identity": Obj({"type": IDENTITY_TYPE,
                                                          "userAssignedIdentities": Map(USER_IDENTITY)})})

# -- online deployments --------------------------------------------------------------------------------
PROBE = Obj({"failureThreshold": "int", "initialDelay": "dur", "period": "dur", "successThreshold": "int",
             "timeout": "dur"})
REQUEST_SETTINGS = Obj({"maxConcurrentRequestsPerInstance": "int", "maxQueueWait": "dur", "requestTimeout": "dur"})
SCALE = Poly("scaleType", {
    "Default": Obj({"scaleType": "str"}, ("scaleType",)),
    "TargetUtilization": Obj({"scaleType": "str", "maxInstances": "int", "minInstances": "int",
                              "pollingInterval": "dur", "targetUtilizationPercentage": "int"}, ("scaleType",)),
})
COLLECTION = Obj({"clientId": "str", "dataCollectionMode": Enum(("Enabled", "Disabled")), "dataId": "str",
                  "samplingRate": "num"})
DATA_COLLECTOR = Obj({"collections": Map(COLLECTION), "requestLogging": Obj({"captureHeaders": List("str")}),
                      "rollingRate": Enum(("Year", "Month", "Day", "Hour", "Minute"))}, ("collections",))
RESOURCE_SETTINGS = Obj({"cpu": "str", "gpu": "str", "memory": "str"})
DEPLOYMENT_COMMON = Obj(
    {
        "appInsightsEnabled": "bool",
        "codeConfiguration": Obj({"codeId": "str", "scoringScript": "str"}, ("scoringScript",)),
        "dataCollector": DATA_COLLECTOR,
        "description": "str",
        "egressPublicNetworkAccess": Enum(("Enabled", "Disabled")),
        "endpointComputeType": "str",
        "environmentId": "str",
        "environmentVariables": STRINGS,
        "instanceType": "str",
        "livenessProbe": PROBE,
        "model": "str",
        "modelMountPath": "str",
        "properties": STRINGS,
        "readinessProbe": PROBE,
        "requestSettings": REQUEST_SETTINGS,
        "scaleSettings": SCALE,
    },
    ("endpointComputeType",),
    readonly=("provisioningState",),
)
DEPLOYMENT_PROPS = Poly("endpointComputeType", {
    "Managed": DEPLOYMENT_COMMON,
    "Kubernetes": _extend(DEPLOYMENT_COMMON, containerResourceRequirements=Obj(
        {"containerResourceLimits": RESOURCE_SETTINGS, "containerResourceRequests": RESOURCE_SETTINGS})),
})
DEPLOYMENT = Obj({**TRACKED, "properties": DEPLOYMENT_PROPS}, ("location", "properties"), TRACKED_READONLY)
DEPLOYMENT_PATCH = Obj({"sku": PARTIAL_SKU, "tags": STRINGS})

# -- assets ------------------------------------------------------------------------------------------------
ASSET_BASE = {"description": "str", "tags": STRINGS, "properties": STRINGS, "isAnonymous": "bool",
              "isArchived": "bool"}
ROUTE = Obj({"path": "str", "port": "int"}, ("path", "port"))
MODEL_VERSION = Obj({"properties": Obj({**ASSET_BASE, "flavors": Map(Obj({"data": STRINGS})), "jobName": "str",
                                        "modelType": "str", "modelUri": "str", "stage": "str"},
                                       readonly=("provisioningState",))}, ("properties",), TRACKED_READONLY)
ENVIRONMENT_VERSION = Obj({"properties": Obj({
    **ASSET_BASE,
    "autoRebuild": Enum(("Disabled", "OnBaseImageUpdate")),
    "build": Obj({"contextUri": "str", "dockerfilePath": "str"}, ("contextUri",)),
    "condaFile": "str",
    "image": "str",
    "inferenceConfig": Obj({"livenessRoute": ROUTE, "readinessRoute": ROUTE, "scoringRoute": ROUTE}),
    "osType": Enum(("Linux", "Windows")),
    "stage": "str",
}, readonly=("provisioningState", "environmentType"))}, ("properties",), TRACKED_READONLY)
CODE_VERSION = Obj({"properties": Obj({**ASSET_BASE, "codeUri": "str"}, readonly=("provisioningState",))},
                   ("properties",), TRACKED_READONLY)
PENDING_UPLOAD = Obj({"pendingUploadId": "str", "pendingUploadType": Enum(("None", "TemporaryBlobReference"))})
LOGS_REQUEST = Obj({"containerType": Enum(("StorageInitializer", "InferenceServer")), "tail": "int"})
EMPTY = Obj({})


def validate(value: Any, schema: Any, where: str = "") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: problem`` strings (empty: valid)."""
    name = where or "(body)"
    if schema == "any":
        return []
    if isinstance(schema, str):
        return _scalar(value, schema, name)
    if isinstance(schema, Enum):
        return [] if value in schema.values else [f"{name}: {value!r} is not one of {', '.join(schema.values)}"]
    if isinstance(schema, Map):
        if not isinstance(value, dict):
            return [f"{name}: expected an object, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in validate(v, schema.of, f"{where}.{k}" if where else str(k))]
    if isinstance(schema, List):
        if not isinstance(value, list):
            return [f"{name}: expected an array, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in validate(v, schema.of, f"{name}[{i}]")]
    if isinstance(schema, Poly):
        if not isinstance(value, dict):
            return [f"{name}: expected an object, got {type(value).__name__}"]
        kind = value.get(schema.discriminator)
        if kind not in schema.kinds:
            return [f"{name}.{schema.discriminator}: {kind!r} is not one of {', '.join(schema.kinds)}"]
        return validate(value, schema.kinds[kind], where)
    return _object(value, schema, where)


def _object(value: Any, schema: Obj, where: str) -> list[str]:
    name = where or "(body)"
    if not isinstance(value, dict):
        return [f"{name}: expected an object, got {type(value).__name__}"]
    errors = [f"{where + '.' if where else ''}{k}: is required" for k in schema.required if value.get(k) is None]
    for key, item in value.items():
        path = f"{where}.{key}" if where else key
        if key in schema.readonly:
            continue
        if key not in schema.fields:
            errors.append(f"{path}: the resource model has no such property")
        elif item is not None:
            errors += validate(item, schema.fields[key], path)
    return errors


def _scalar(value: Any, kind: str, name: str) -> list[str]:
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "num": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "dur": isinstance(value, str) and bool(DURATION.match(value)),
    }[kind]
    if ok:
        return []
    want = {"dur": "an ISO 8601 duration such as PT5S", "int": "an integer", "num": "a number",
            "bool": "true or false", "str": "a string"}[kind]
    return [f"{name}: expected {want}, got {value!r}"]
