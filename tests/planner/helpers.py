"""Hand-built desired and recorded states in canonical form (no loader needed)."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.model.resources import DesiredState, InstanceType, Resource, SourceRef
from reconciler.state.document import State, StateResource
from tests.canonical import deployment_attrs, endpoint_attrs, environment_attrs, model_attrs

CATALOG = {
    "Standard_DS2_v2": InstanceType(cores=2, memory_gb=7, family="standardDSv2Family"),
    "Standard_DS3_v2": InstanceType(cores=4, memory_gb=14, family="standardDSv2Family"),
    "Standard_F4s_v2": InstanceType(cores=4, memory_gb=8, family="standardFSv2Family"),
    "Standard_NC24ads_A100_v4": InstanceType(
        cores=24, memory_gb=220, gpus=1, family="standardNCADSA100v4Family", quota_exempt=True
    ),
}


def model(name: str = "my-model", version: str = "1", digest: str = "sha256:m1", **kw: Any) -> Resource:
    attrs = model_attrs(name, version, content_digest=digest, **kw)
    return Resource(
        address=f"model.{name}:{version}",
        type="model",
        name=name,
        attributes=attrs,
        source=SourceRef(file="model.yml", line=1),
    )


def environment(name: str = "my-env", version: str = "1", digest: str = "sha256:e1", **kw: Any) -> Resource:
    attrs = environment_attrs(name, version, content_digest=digest, **kw)
    return Resource(
        address=f"environment.{name}:{version}",
        type="environment",
        name=name,
        attributes=attrs,
        source=SourceRef(file="environment.yml", line=1),
    )


def endpoint(name: str = "my-endpoint", traffic: dict[str, int] | None = None, **kw: Any) -> Resource:
    attrs = endpoint_attrs(name, traffic=dict(traffic or {}), traffic_declared=traffic is not None, **kw)
    return Resource(
        address=f"endpoint.{name}",
        type="endpoint",
        name=name,
        attributes=attrs,
        source=SourceRef(file="endpoint.yml", line=1),
    )


def deployment(
    name: str = "blue",
    endpoint_name: str = "my-endpoint",
    *,
    count: int = 1,
    instance_type: str = "Standard_DS3_v2",
    model_ref: str | None = "model.my-model:1",
    env_ref: str | None = "environment.my-env:1",
    **kw: Any,
) -> Resource:
    attrs = deployment_attrs(
        name,
        endpoint_name,
        model=model_ref,
        environment=env_ref,
        code={"path": "onlinescoring", "digest": "sha256:c1"},
        instance_type=instance_type,
        instance_count=count,
        **kw,
    )
    deps = tuple(x for x in (f"endpoint.{endpoint_name}", model_ref, env_ref) if x)
    return Resource(
        address=f"deployment.{endpoint_name}.{name}",
        type="deployment",
        name=name,
        attributes=attrs,
        depends_on=deps,
        source=SourceRef(file=f"{name}-deployment.yml", line=1),
    )


def changed(r: Resource, **attrs: Any) -> Resource:
    """A copy of ``r`` with some attributes replaced (dotted keys go one level deep: a__b=...)."""
    new = copy.deepcopy(r.attributes)
    for key, value in attrs.items():
        if "__" in key:
            outer, inner = key.split("__", 1)
            new[outer] = {**(new[outer] or {}), inner: value}
        else:
            new[key] = value
    return r.model_copy(update={"attributes": new})


def desired(*resources: Resource, quota: dict[str, int] | None = None, **kw: Any) -> DesiredState:
    return DesiredState(
        root="/tmp/project",
        resources={r.address: r for r in resources},
        quota=quota,
        instance_types=CATALOG,
        **kw,
    )


def state(*resources: Resource, serial: int = 3, status: dict[str, str] | None = None) -> State:
    """A recorded state holding exactly these resources, as if applied."""
    status = status or {}
    return State(
        lineage="lineage-1",
        serial=serial,
        resources={
            r.address: StateResource(
                address=r.address,
                type=r.type,
                name=r.name,
                provider="local",
                attributes=copy.deepcopy(r.attributes),
                depends_on=list(r.depends_on),
                status=status.get(r.address, "ready"),  # type: ignore[arg-type]
            )
            for r in resources
        },
    )


def base() -> list[Resource]:
    """An endpoint with blue (all traffic), its model and environment."""
    return [model(), environment(), endpoint(traffic={"blue": 100}), deployment("blue")]


def step_ids(plan: Any) -> list[str]:
    return [s.id for s in plan.steps]


def before(plan: Any, a: str, b: str) -> bool:
    """Step ``a`` is (transitively) a prerequisite of step ``b``."""
    steps = {s.id: s for s in plan.steps}
    seen: set[str] = set()
    todo = list(steps[b].depends_on)
    while todo:
        x = todo.pop()
        if x == a:
            return True
        if x not in seen:
            seen.add(x)
            todo.extend(steps[x].depends_on)
    return False
