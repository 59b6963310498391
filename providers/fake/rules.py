"""The fake world's domain rules: what a real service would refuse, or a caller must never ask.

A broken rule is recorded in the world's ``violations`` (tests assert there are none) and raised as
``FakeInvariantError``: a resource created before what it references, traffic set while an endpoint
is created, traffic that does not sum to 100 or goes to a deployment that is missing or not ready,
a deployment deleted while it has traffic.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.errors import PermanentError
from reconciler.plan.provider import ApplyRequest
from reconciler.state.document import StateResource


class FakeInvariantError(PermanentError):
    """The caller broke a domain rule (the fake's assertion). Recorded in ``violations``."""


def violate(world: dict[str, Any], message: str) -> FakeInvariantError:
    world["violations"].append(message)
    return FakeInvariantError(f"domain rule broken: {message}")


def check_create(world: dict[str, Any], request: ApplyRequest) -> FakeInvariantError | None:
    objects = world["objects"]
    if request.type == "endpoint" and (request.endpoint.get("traffic") or request.endpoint.get("mirror_traffic")):
        return violate(world, f"{request.address}: traffic set in the request that creates it")
    if request.type != "deployment":
        return None
    attrs = request.deployment
    for ref in (
        f"endpoint.{str(attrs['endpoint_name']).lower()}",
        attrs.get("model"),
        attrs.get("environment"),
    ):
        if ref and ref not in objects:
            return violate(world, f"{request.address} created before {ref} exists")
    return None


def check_routing(
    world: dict[str, Any], request: ApplyRequest, traffic: dict[str, int], mirror: dict[str, int]
) -> FakeInvariantError | None:
    address = request.address
    if address not in world["objects"]:
        return violate(world, f"set_routing on {address}, which does not exist")
    live = {k.lower() for k, v in traffic.items() if v}
    mirrored = {k.lower() for k, v in mirror.items() if v}
    if sum(traffic.values()) not in (0, 100):
        return violate(world, f"{address}: traffic sums to {sum(traffic.values())}")
    if live & mirrored:
        return violate(world, f"{address}: {sorted(live & mirrored)} get live and mirrored traffic")
    endpoint = address.split(".", 1)[1]
    for name in sorted(live | mirrored):
        dep = world["objects"].get(f"deployment.{endpoint}.{name}")
        if (
            dep is None
            or dep.get("state") != "Succeeded"
            or not any(i["alive"] for i in dep["instances"])
        ):
            return violate(
                world, f"{address}: traffic to deployment {name}, which is missing or not ready"
            )
    return None


def check_delete(world: dict[str, Any], resource: StateResource) -> FakeInvariantError | None:
    if resource.type != "deployment" or resource.address not in world["objects"]:
        return None
    _, endpoint, name = resource.address.split(".", 2)
    ep = world["objects"].get(f"endpoint.{endpoint}") or {}
    if ep.get("traffic", {}).get(name) or ep.get("mirror_traffic", {}).get(name):
        return violate(world, f"{resource.address} deleted while it still has traffic")
    return None


def remove(world: dict[str, Any], resource: StateResource) -> None:
    objects = world["objects"]
    if resource.type == "endpoint":  # Azure deletes an endpoint's deployments with it
        prefix = f"deployment.{resource.address.split('.', 1)[1]}."
        for other in [a for a in objects if a.startswith(prefix)]:
            del objects[other]
        world["keys"].pop(resource.address, None)
    objects.pop(resource.address, None)  # deleting what is already gone is not an error


__all__ = ["FakeInvariantError", "check_create", "check_delete", "check_routing", "remove", "violate"]
