"""A Kubernetes online endpoint and deployment in the emulated workspace: compute by ARM id, resource
requests and limits, target-utilization scaling; bodies the resource model accepts, read back as
recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.azure.emulator import Emulator
from tests.contract.conftest import Harness

pytestmark = pytest.mark.azure


def test_a_kubernetes_endpoint_and_deployment_round_trip(make_provider: Callable[..., Any], arm: Emulator) -> None:
    provider = make_provider()
    h = Harness("azure", provider, Path(provider.context.project_root))
    for r in (h.environment(), h.model()):
        h.create(r)
    ep = h.endpoint()
    ep = h.request("endpoint", "ep", ep.address, {**ep.attributes, "kind": "kubernetes",
                                                   "compute": "azureml:inferencecompute"})
    h.create(ep)
    dep = h.deployment()
    attrs = {**dep.attributes, "kind": "kubernetes", "instance_type": "defaultinstancetype",
             "resources": {"requests": {"cpu": "0.1", "memory": "0.1Gi"}, "limits": {"cpu": "0.2", "memory": "200Mi"}},
             "scale_settings": {"type": "target_utilization", "min_instances": 1, "max_instances": 3,
                                "polling_interval": 10, "target_utilization_percentage": 70}}
    made = h.create(h.request("deployment", "blue", dep.address, attrs, dep.refs))
    live = arm.deployment("ep", "blue")
    endpoint = arm.endpoint("ep")
    assert endpoint is not None and endpoint["properties"]["compute"] == f"{arm.workspace_path}/computes/inferencecompute"
    assert live is not None and live["properties"]["endpointComputeType"] == "Kubernetes"
    assert live["properties"]["containerResourceRequirements"] == {
        "containerResourceRequests": {"cpu": "0.1", "memory": "0.1Gi"},
        "containerResourceLimits": {"cpu": "0.2", "memory": "200Mi"}}
    assert live["properties"]["scaleSettings"]["pollingInterval"] == "PT10S"
    seen = provider.observe(made)
    assert seen.exists and seen.problems == []
    assert {k: v for k, v in seen.attributes.items() if v != attrs.get(k)} == {}
    assert provider.capacity().quota is not None  # Kubernetes deployments count for no VM family
    h.teardown()
