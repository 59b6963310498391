"""Azure's own sample files load unchanged (the corpus has no scoring scripts: tests add them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.load.loader import load_project
from reconciler.model.errors import ConfigError
from tests.conftest import ONLINE, SKLEARN_SCORE_PY, copy_online_samples

CLI = ONLINE.parents[1]


def test_managed_sample_blue_green_loads(sample_project: Callable[..., Path]) -> None:
    root = sample_project("blue-deployment.yml", "green-deployment.yml")
    desired = load_project(root)
    blue = desired.resources["deployment.my-endpoint.blue"]
    assert blue.attributes["instance_type"] == "Standard_DS3_v2"
    assert blue.attributes["code"]["path"] == "../../model-1/onlinescoring"
    assert blue.attributes["scoring_script"] == "score.py"
    assert blue.depends_on[0] == "endpoint.my-endpoint"
    model = desired.resources[blue.attributes["model"]]
    assert model.attributes["anonymous"] is True
    assert model.attributes["path"] == "../../model-1/model"
    assert model.address == f"model.my-endpoint-blue:{model.attributes['version']}"
    env = desired.resources[blue.attributes["environment"]]
    assert env.attributes["conda_file"] == "../../model-1/environment/conda.yaml"
    assert env.attributes["conda"]["name"]
    endpoint = desired.resources["endpoint.my-endpoint"]
    assert endpoint.attributes["auth_mode"] == "key"
    assert endpoint.attributes["traffic_declared"] is False
    assert endpoint.source is not None and endpoint.source.file == "endpoint.yml"


def test_registered_assets_load(sample_project: Callable[..., Path]) -> None:
    root = sample_project("blue-deployment-with-registered-assets.yml")
    (root / "model.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\n"
        "name: my-model\nversion: 1\npath: ../../model-1/model/\n"
    )
    (root / "environment.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        "name: my-env\nversion: 1\nconda_file: ../../model-1/environment/conda.yaml\n"
        "image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\n"
    )
    desired = load_project(root)
    blue = desired.resources["deployment.my-endpoint.blue"]
    assert blue.attributes["model"] == "model.my-model:1"
    assert blue.attributes["environment"] == "environment.my-env:1"
    assert set(blue.depends_on) == {"endpoint.my-endpoint", "model.my-model:1", "environment.my-env:1"}


def test_curated_environment_is_an_external_reference(sample_project: Callable[..., Path]) -> None:
    root = sample_project("blue-deployment-with-curated-env.yml")
    desired = load_project(root)
    blue = desired.resources["deployment.my-endpoint.blue"]
    assert blue.attributes["environment"].startswith("azureml://registries/azureml/")
    assert any("external" in w["message"] for w in desired.warnings)


def test_kubernetes_samples_load(tmp_path: Path) -> None:
    copy_online_samples(tmp_path)
    shutil.copytree(ONLINE / "kubernetes", tmp_path / "kubernetes")
    desired = load_project(tmp_path / "kubernetes")
    ep = desired.resources["endpoint.my-endpoint"]
    assert ep.attributes["kind"] == "kubernetes"
    assert ep.attributes["auth_mode"] == "key"  # the sample says `Key`
    assert ep.attributes["compute"] == "azureml:inferencecompute"
    blue = desired.resources["deployment.my-endpoint.blue"].attributes
    assert blue["resources"]["limits"] == {"cpu": "0.2", "memory": "200Mi"}
    assert blue["request_settings"]["request_timeout_ms"] == 3000
    green = desired.resources["deployment.my-endpoint.green"].attributes
    assert green["scale_settings"]["max_instances"] == 3
    assert green["app_insights_enabled"] is True
    assert green["instance_type"] == "defaultinstancetype"


def test_assets_folder_loads(tmp_path: Path) -> None:
    shutil.copytree(CLI / "assets", tmp_path / "assets")
    desired = load_project(tmp_path / "assets")
    names = {r.attributes["name"] for r in desired.resources.values()}
    assert names == {
        "docker-context-example",
        "docker-image-plus-conda-example",
        "docker-image-example",
        "local-file-example",
        "local-mlflow-example",
    }
    ctx = desired.resources["environment.docker-context-example:1"].attributes
    assert ctx["build"] == {
        "path": "environment/docker-contexts/python-and-pip",
        "dockerfile_path": "Dockerfile",
    }
    assert desired.resources["model.local-mlflow-example:1"].attributes["type"] == "mlflow_model"


def test_missing_score_py_is_a_clear_error(tmp_path: Path) -> None:
    copy_online_samples(tmp_path, with_scripts=False)
    root = tmp_path / "managed" / "sample"
    for f in root.iterdir():
        if f.name not in ("endpoint.yml", "blue-deployment.yml"):
            f.unlink()
    with pytest.raises(ConfigError) as info:
        load_project(root)
    [diag] = info.value.diagnostics
    assert diag.file == "blue-deployment.yml"
    assert diag.line == 7
    assert diag.path == "code_configuration.code"
    assert "../../model-1/onlinescoring" in diag.message


def test_missing_scoring_script_in_existing_folder(tmp_path: Path) -> None:
    root = copy_online_samples(tmp_path)
    (tmp_path / "model-1" / "onlinescoring" / "score.py").unlink()
    (tmp_path / "model-1" / "onlinescoring" / "other.py").write_text(SKLEARN_SCORE_PY)
    for f in root.iterdir():
        if f.name not in ("endpoint.yml", "blue-deployment.yml"):
            f.unlink()
    with pytest.raises(ConfigError) as info:
        load_project(root)
    [diag] = info.value.diagnostics
    assert (diag.file, diag.line, diag.path) == (
        "blue-deployment.yml",
        8,
        "code_configuration.scoring_script",
    )
    assert "../../model-1/onlinescoring/score.py" in diag.message
