"""AksEndpoint: several versions behind one endpoint, and the v2 traffic map v1's rules give."""

from __future__ import annotations

from typing import Any

import pytest

from tests.migrate.helpers import V1, write

ENDPOINT_CONFIG = {"version_name": "prod", "autoscale_enabled": False, "num_replicas": 2, "tags": {"app": "fraud"}}
VERSIONS: list[dict[str, Any]] = [
    {"version_name": "control", "is_control_version_type": True, "traffic_percentile": 30, "cpu_cores": 0.5},
    {"version_name": "canary", "traffic_percentile": 10, "memory_gb": 1},
]


def _run(v1: V1, versions: Any, config: dict[str, Any] | None = None, name: str = "versions.yaml") -> Any:
    path = write(v1.root / name, versions)
    return v1.run(config if config is not None else ENDPOINT_CONFIG, "--versions", str(path))


def test_three_versions_default_control_and_canary(v1: V1) -> None:
    result = _run(v1, VERSIONS)
    assert result.exit_code == 0, result.output
    ep = v1.endpoint()
    assert ep["traffic"] == {"prod": 60, "control": 30, "canary": 10}
    assert sum(ep["traffic"].values()) == 100
    assert ep["tags"] == {"app": "fraud"}
    prod, control, canary = v1.deployment("prod"), v1.deployment("control"), v1.deployment("canary")
    assert prod["instance_count"] == 2 and prod["scale_settings"] == {"type": "default"}
    # a version does not inherit the config's settings: v1's create_version defaults apply
    assert control["scale_settings"]["type"] == "target_utilization"
    assert control["resources"]["requests"] == {"cpu": "0.5", "memory": "0.5Gi"}
    assert canary["resources"]["requests"] == {"cpu": "0.1", "memory": "1Gi"}
    assert {d["endpoint_name"] for d in (prod, control, canary)} == {"my-service"}
    md = v1.migration()
    assert "| prod | default (takes the rest) | 60% |" in md
    assert "| control | control | 30% |" in md and "| canary | version | 10% |" in md


def test_marked_default_in_the_versions_file_takes_the_rest(v1: V1) -> None:
    versions = [{"versionName": "green", "isDefault": True},
                {"versionName": "blue", "trafficPercentile": 25}]
    result = _run(v1, versions, config={"computeType": "aks", "authEnabled": True}, name="versions.json")
    assert result.exit_code == 0, result.output
    assert v1.endpoint()["traffic"] == {"green": 75, "blue": 25}


def test_the_config_version_is_default_unless_one_is_marked(v1: V1) -> None:
    versions = [{"version_name": "next", "is_default": True}]
    result = _run(v1, versions, config={"version_name": "prod", "traffic_percentile": 20})
    assert result.exit_code == 0, result.output
    assert v1.endpoint()["traffic"] == {"prod": 20, "next": 80}


def test_the_default_version_takes_the_rest_whatever_it_states(v1: V1) -> None:
    versions = [{"version_name": "alpha", "is_default": True, "traffic_percentile": 50},
                {"version_name": "beta", "traffic_percentile": 20}]
    result = _run(v1, versions)
    assert result.exit_code == 0, result.output
    assert v1.endpoint()["traffic"] == {"prod": 0, "alpha": 80, "beta": 20}
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("Warning: ")]
    assert len(warnings) == 1 and "versions.yaml:3: 0.traffic_percentile: ignored: 'alpha' is the default " \
        "version: it takes the traffic the others leave, 80%, not the 50% it states" in warnings[0], warnings
    assert "ignored: the default version takes the rest, `traffic.alpha: 80`" in v1.migration()


def test_versions_may_bring_their_own_model_and_inference_config(v1: V1) -> None:
    ic = v1.inference("canary-ic.json")
    other = v1.model("model-2", slope=3.0)
    versions = [{"version_name": "canary", "traffic_percentile": 10, "inference_config": ic.name,
                 "model_path": other.name}]
    result = _run(v1, versions)
    assert result.exit_code == 0, result.output
    canary = v1.deployment("canary")
    assert canary["model"] == {"path": "../model-2"}
    assert canary["code_configuration"] == {"code": "../source_dir", "scoring_script": "score.py"}
    assert v1.deployment("prod")["model"] == {"path": "../model"}
    assert "code_configuration" not in v1.deployment("prod")


@pytest.mark.parametrize("versions,config,key,words", [
    ([{"version_name": "alpha", "traffic_percentile": 60}, {"version_name": "beta", "traffic_percentile": 50}],
     ENDPOINT_CONFIG, "1.traffic_percentile", "take 110%"),
    ([{"version_name": "alpha", "is_default": True}, {"version_name": "beta", "isDefault": True}],
     ENDPOINT_CONFIG, "1.isDefault", "both is_default"),
    ([{"version_name": "alpha"}, {"version_name": "beta"}], {"auth_enabled": True}, None, "no version is the default"),
    ([{"version_name": "gamma", "traffic_percentile": 120}], ENDPOINT_CONFIG, "0.traffic_percentile",
     "not a percentage"),
    ([{"version_name": "prod"}], ENDPOINT_CONFIG, "0.version_name", "given twice"),
    ([{"version_name": "no_underscores"}], ENDPOINT_CONFIG, "0.version_name", "not a valid v2 deployment name"),
    ([{"traffic_percentile": 5}], ENDPOINT_CONFIG, "0", "needs version_name"),
    ([{"version_name": "gamma", "auth_enabled": False}], ENDPOINT_CONFIG, "0.auth_enabled",
     "setting of the whole endpoint"),
    ({"version_name": "gamma"}, ENDPOINT_CONFIG, None, "must be a list"),
    ([{"version_name": "gamma", "modelPath": "nowhere"}], ENDPOINT_CONFIG, "0.modelPath", "does not exist"),
])
def test_impossible_versions_are_errors_naming_file_and_key(v1: V1, versions: Any, config: dict[str, Any],
                                                            key: str | None, words: str) -> None:
    result = _run(v1, versions, config=config)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
    assert errors and any(words in ln for ln in errors), result.output
    line = next(ln for ln in errors if words in ln)
    assert "versions.yaml" in line
    if key is not None:
        assert f": {key}: " in line, line
    assert not v1.out.exists(), "nothing is written when the input is bad"


def test_version_settings_without_version_name_in_the_config(v1: V1) -> None:
    result = _run(v1, VERSIONS, config={"cpu_cores": 1})
    assert result.exit_code == 1
    assert "deploymentconfig.json:2: cpu_cores: cpu_cores is a version setting" in result.output
