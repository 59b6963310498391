"""Discovery, normal form, references and versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.load.loader import load_project, load_settings
from reconciler.model.errors import ConfigError
from reconciler.model.settings import StateSettings
from reconciler.state.document import State, StateResource
from tests.loader.helpers import BLUE, ENDPOINT, S, deployment, project

MODEL = f"$schema: {S}model.schema.json\nname: my-model\npath: model\n"


def test_traffic_normal_form(tmp_path: Path) -> None:
    files = {
        "green.yml": deployment("Green"),
        "endpoint.yml": ENDPOINT + "traffic:\n  BLUE: 100\n  Green: 0\n",
    }
    ep = load_project(project(tmp_path, files)).resources["endpoint.my-endpoint"].attributes
    assert ep["traffic"] == {"blue": 100}
    assert ep["traffic_declared"] is True
    assert ep["mirror_traffic"] == {}


def test_discovery_skips_hidden_excluded_and_conda_files(tmp_path: Path) -> None:
    files = {
        ".recon/junk.yml": "not: a resource\n",
        "ci/pipeline.yml": "steps: [1]\n",
        "env/conda.yml": "name: x\nchannels: [conda-forge]\ndependencies: [python=3.11]\n",
        "recon.yaml": "exclude: ['ci/*']\n",
    }
    desired = load_project(project(tmp_path, files))
    assert set(desired.resources) >= {"endpoint.my-endpoint", "deployment.my-endpoint.blue"}


def test_kind_guessed_without_schema(tmp_path: Path) -> None:
    files = {
        "endpoint.yml": "name: my-endpoint\nauth_mode: key\n",
        "blue.yml": BLUE.replace(f"$schema: {S}managedOnlineDeployment.schema.json\n", ""),
        "m.yml": "name: my-model\nversion: 3\npath: model\n",
    }
    desired = load_project(project(tmp_path, files))
    assert "model.my-model:3" in desired.resources
    assert desired.resources["deployment.my-endpoint.blue"].attributes["kind"] == "managed"


def test_unversioned_model_gets_next_version_or_recorded_one(tmp_path: Path) -> None:
    root = project(tmp_path, {"m.yml": MODEL})
    first = load_project(root).resources["model.my-model:1"]
    recorded = State(
        resources={
            "model.my-model:1": StateResource(
                address="model.my-model:1",
                type="model",
                name="my-model",
                provider="local",
                attributes=dict(first.attributes),
            ),
        }
    )
    assert "model.my-model:1" in load_project(root, recorded).resources  # same content: same version
    (root / "model" / "model.pkl").write_bytes(b"new weights")
    assert "model.my-model:2" in load_project(root, recorded).resources  # changed: next integer


def test_latest_reference_resolves_to_highest_declared(tmp_path: Path) -> None:
    files = {
        "m1.yml": MODEL + "version: 1\n",
        "m2.yml": MODEL + "version: 2\n",
        "blue.yml": BLUE.replace("model:\n  path: model/", "model: azureml:my-model@latest\n#"),
    }
    blue = load_project(project(tmp_path, files)).resources["deployment.my-endpoint.blue"]
    assert blue.attributes["model"] == "model.my-model:2"
    assert "model.my-model:2" in blue.depends_on


def test_reference_resolves_against_recorded_state(tmp_path: Path) -> None:
    files = {"blue.yml": BLUE.replace("model:\n  path: model/", "model: azureml:old-model:4\n#")}
    recorded = State(
        resources={
            "model.old-model:4": StateResource(
                address="model.old-model:4",
                type="model",
                name="old-model",
                provider="local",
                attributes={"name": "old-model", "version": "4"},
            ),
        }
    )
    blue = load_project(project(tmp_path, files), recorded).resources["deployment.my-endpoint.blue"]
    assert blue.attributes["model"] == "model.old-model:4"


def test_code_digest_changes_with_the_scoring_script(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    before = load_project(root).resources["deployment.my-endpoint.blue"].attributes["code"]["digest"]
    (root / "code" / "score.py").write_text("def init():\n    pass\n")
    after = load_project(root).resources["deployment.my-endpoint.blue"].attributes["code"]["digest"]
    assert before != after


def test_settings(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text(
        "workspace: my-workspace\nprovider:\n  kind: docker\n  network: bridge\nquota:\n  standardDSv2Family: 40\n"
        "instance_types:\n  Custom_GPU_1: {cores: 8, memory_gb: 32, gpus: 1, family: customGpuFamily}\n"
        "state:\n  backend: postgres\n  dsn: postgresql://localhost/recon\n"
    )
    settings = load_settings(tmp_path)
    assert settings.workspace == "my-workspace"
    assert settings.provider.kind == "docker" and settings.provider.settings == {"network": "bridge"}
    assert settings.quota == {"standardDSv2Family": 40}
    assert settings.instance_types["Custom_GPU_1"].family == "customGpuFamily"
    assert "Standard_DS3_v2" in settings.instance_types
    assert settings.state == StateSettings(backend="postgres", dsn="postgresql://localhost/recon")


def test_state_settings_history_and_connect_timeout_are_settable(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text("state:\n  backend: postgres\n  history: 5\n  connect_timeout: 3\n")
    state = load_settings(tmp_path).state
    assert (state.backend, state.history, state.connect_timeout, state.name) == ("postgres", 5, 3, "default")
    (tmp_path / "recon.yaml").write_text("state:\n  path: st/prod.json\n  history: 2\n")
    assert load_settings(tmp_path).state == StateSettings(path="st/prod.json", history=2)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("state:\n  backend: file\n  dsn: postgresql://x/y\n", 3, "'dsn' is not a setting of the file state backend"),
        ("state:\n  backend: s3\n", 2, "'s3' is not an accepted value"),
        ("state:\n  backend: postgres\n  history: 0\n", 3, "0 is too small"),
        ("state:\n  backend: postgres\n  connect_timeout: soon\n", 3, "wrong type"),
    ],
)
def test_state_settings_are_checked_with_their_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    (tmp_path / "recon.yaml").write_text(body)
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path)
    found = [d for d in err.value.diagnostics if message in d.message]
    assert found and found[0].file == "recon.yaml" and found[0].line == line, err.value.diagnostics


def test_settings_absent_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.quota is None and settings.provider.kind == "local"
    assert settings.instance_types["Standard_NC24ads_A100_v4"].quota_exempt is True


def test_custom_instance_type_is_accepted(tmp_path: Path) -> None:
    files = {
        "recon.yaml": "instance_types:\n  Custom_GPU_1: {cores: 8, memory_gb: 32, gpus: 1, family: fam}\n",
        "blue.yml": BLUE.replace("Standard_DS3_v2", "Custom_GPU_1"),
    }
    desired = load_project(project(tmp_path, files))
    assert desired.instance_types["Custom_GPU_1"].cores == 8


def test_settings_errors_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text("provider: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert info.value.diagnostics[0].file == "recon.yaml"
