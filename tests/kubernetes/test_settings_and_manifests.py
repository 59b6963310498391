"""The provider's settings and manifests as data (no cluster needed)."""

from __future__ import annotations

import pytest

from providers.kubernetes import manifests as m
from providers.kubernetes.settings import parse_settings
from reconciler.model.errors import ConfigError


def test_unknown_and_wrong_settings_are_errors_at_their_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"kind": "kubernetes", "namespcae": "x"})
    text = info.value.diagnostics[0].format()
    assert text.startswith("recon.yaml: provider.namespcae: unknown setting 'namespcae'") and "namespace" in text
    for raw, key in (({"namespace": 3}, "namespace"), ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
                     ({"tolerations": "all"}, "tolerations"), ({"progress_deadline_seconds": -1},
                                                                "progress_deadline_seconds"),
                     ({"router_reload_check": "yes"}, "router_reload_check")):
        with pytest.raises(ConfigError) as info:
            parse_settings(raw)
        assert info.value.diagnostics[0].path == f"provider.{key}"


def test_defaults_and_image_overrides() -> None:
    s = parse_settings({"image_overrides": {"mcr.microsoft.com/azureml/x:latest": "registry.local/x:1"}})
    assert s.namespace == "default" and s.kubeconfig is None and s.image_pull_policy == "IfNotPresent"
    assert s.image("mcr.microsoft.com/azureml/x:latest") == "registry.local/x:1"
    assert s.image(None) == "python:3.12-slim" and s.router() == "python:3.12-slim"


@pytest.mark.parametrize(("count", "surge"), [(1, 1), (4, 1), (5, 1), (6, 2), (10, 2), (11, 3), (100, 20)])
def test_max_surge_is_ceil_of_20_percent(count: int, surge: int) -> None:
    assert m.max_surge(count) == surge


def test_names_are_dns_labels_and_unique_when_shortened() -> None:
    a = m.deployment_name("e" * 32, "d" * 32 + "1")
    b = m.deployment_name("e" * 32, "d" * 32 + "2")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert m.deployment_name("my-endpoint", "blue") == "my-endpoint-blue"


def test_resources_from_the_yaml_else_the_catalog() -> None:
    own = {"resources": {"requests": {"cpu": "0.1", "memory": "0.1Gi"}}, "instance_type": "Standard_DS3_v2"}
    assert m.resources_for(own) == {"requests": {"cpu": "0.1", "memory": "0.1Gi"}}
    sized = m.resources_for({"instance_type": "Standard_DS3_v2"})
    assert sized["requests"] == sized["limits"] and sized["requests"]["cpu"] == "4"
    assert m.resources_for({"instance_type": "Standard_DS3_v2"}, use_catalog=False) == {}
