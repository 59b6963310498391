"""What recon reads as Azure's loader reads it (issue 25), and what each accepted-but-remote thing
means for the providers: every error names file, line, field, what is wrong and what would be right."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.load.loader import load_project
from reconciler.model.errors import ConfigError, Diagnostic
from tests.loader.helpers import BLUE, ENDPOINT, S, find, project

AZURE = "provider:\n  kind: azure\n"
K8S_ENDPOINT = f"$schema: {S}kubernetesOnlineEndpoint.schema.json\nname: my-endpoint\ncompute: azureml:k8s\n"


def blue(old: str, new: str) -> str:
    assert old in BLUE
    return BLUE.replace(old, new)


def errors(root: Path) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return info.value.diagnostics


def test_a_deployment_is_kubernetes_by_its_type_and_a_contradicting_schema_is_a_warning(tmp_path: Path) -> None:
    k8s = BLUE + "type: kubernetes\nresources:\n  requests:\n    cpu: \"1\"\n"
    desired = load_project(project(tmp_path, {"endpoint.yml": K8S_ENDPOINT, "blue.yml": k8s}))
    assert desired.resources["deployment.my-endpoint.blue"].attributes["kind"] == "kubernetes"
    [warning] = [w for w in desired.warnings if w["file"] == "blue.yml"]
    assert (warning["line"], warning["path"]) == (1, "$schema")
    assert "$schema says managed, but type: kubernetes" in warning["message"]


def test_resources_on_a_managed_deployment_say_how_the_kind_is_decided(tmp_path: Path) -> None:
    no_type = BLUE.replace("managedOnlineDeployment", "kubernetesOnlineDeployment") + "resources: {}\n"
    diag = find(errors(project(tmp_path, {"blue.yml": no_type})), "blue.yml", "resources")
    assert diag.line == 13 and "a managed deployment has no resources" in diag.message
    assert diag.hint is not None and "type: kubernetes" in diag.hint


def test_an_endpoint_with_a_compute_is_kubernetes(tmp_path: Path) -> None:
    ep = ENDPOINT.replace("auth_mode: key\n", "compute: azureml:k8s\n")
    k8s = BLUE + "type: kubernetes\n"
    desired = load_project(project(tmp_path, {"endpoint.yml": ep, "blue.yml": k8s}))
    assert desired.resources["endpoint.my-endpoint"].attributes["compute"] == "azureml:k8s"
    assert any(w["file"] == "endpoint.yml" and "it has a compute" in w["message"] for w in desired.warnings)


@pytest.mark.parametrize("uri", ["runs:/run-1/model", "azureml://jobs/j/outputs/artifacts/paths/model/",
                                 "azureml://datastores/workspaceblobstore/paths/m/", "https://a.blob.core.windows.net/c/m",
                                 "wasbs://c@a.blob.core.windows.net/m"])
def test_a_model_at_a_uri_goes_to_azure_and_is_refused_by_the_local_provider(tmp_path: Path, uri: str) -> None:
    named = blue("model:\n  path: model/\n", f"model:\n  name: m\n  version: 1\n  path: {uri}\n")
    root = project(tmp_path, {"blue.yml": named, "recon.yaml": AZURE})
    assert load_project(root).resources["model.m:1"].attributes["path"] == uri
    (root / "recon.yaml").unlink()
    diag = find(errors(root), "blue.yml", "model.path")
    assert diag.line == 7 and "the local provider runs models from the project's files" in diag.message
    assert diag.hint is not None and "kind: azure" in diag.hint


@pytest.mark.parametrize("ref", ["azureml:my-code:2", "azureml:my-code@latest", "azureml://registries/r/codes/c/versions/1",
                                 "azureml:/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/"
                                 "workspaces/w/codes/c/versions/1"])
def test_a_registered_code_asset_goes_to_azure_and_is_refused_by_the_local_provider(tmp_path: Path, ref: str) -> None:
    root = project(tmp_path, {"blue.yml": blue("code: code/", f"code: {ref}"), "recon.yaml": AZURE})
    attrs = load_project(root).resources["deployment.my-endpoint.blue"].attributes
    assert attrs["code"] == {"asset": ref} and attrs["scoring_script"] == "score.py"
    (root / "recon.yaml").write_text("provider:\n  kind: docker\n")
    diag = find(errors(root), "blue.yml", "code_configuration.code")
    assert diag.line == 7 and "is a registered code asset: the docker provider" in diag.message


def test_a_code_asset_that_names_no_version_is_refused_with_the_forms_azure_takes(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue("code: code/", "code: azureml:my-code"), "recon.yaml": AZURE})
    diag = find(errors(root), "blue.yml", "code_configuration.code")
    assert "names no version" in diag.message and diag.hint is not None and "azureml:NAME:VERSION" in diag.hint


def test_a_registry_model_is_refused_by_recons_own_providers_and_an_environment_is_a_warning(tmp_path: Path) -> None:
    ref = blue("model:\n  path: model/\n", "model: azureml://registries/r/models/m/versions/1\n")
    root = project(tmp_path, {"blue.yml": ref, "recon.yaml": "provider:\n  kind: kubernetes\n"})
    diag = find(errors(root), "blue.yml", "model")
    assert "the kubernetes provider cannot fetch" in diag.message
    (root / "recon.yaml").write_text(AZURE)
    desired = load_project(root)
    assert desired.resources["deployment.my-endpoint.blue"].attributes["model"].startswith("azureml://registries/")
    assert not desired.warnings  # Azure fetches it: nothing to say


def test_a_scoring_script_that_is_not_python_is_refused_naming_the_script_and_its_line(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw)\n    return raw\n")
    diag = find(errors(root), "blue.yml", "code_configuration.scoring_script")
    assert diag.line == 8
    assert "the scoring script code/score.py is not valid Python: line 5: expected ':' (def run(raw))" in diag.message


def test_a_gpu_request_needs_an_equal_limit_on_kubernetes(tmp_path: Path) -> None:
    k8s = BLUE + "type: kubernetes\nresources:\n  requests:\n    nvidia.com/gpu: \"1\"\n"
    diag = find(errors(project(tmp_path, {"endpoint.yml": K8S_ENDPOINT, "blue.yml": k8s})),
                "blue.yml", "resources.requests.nvidia.com/gpu")
    assert diag.line == 16 and "1 GPU(s) requested without a GPU limit" in diag.message
    assert diag.hint == 'Kubernetes requires them equal: set resources.limits.nvidia.com/gpu: "1"'


def test_a_conda_environment_written_inline_is_read_and_checked(tmp_path: Path) -> None:
    inline = "environment:\n  image: python:3.11\n  conda_file:\n    name: e\n    dependencies:\n      - python=3.11\n"
    root = project(tmp_path, {"blue.yml": blue("environment:\n  image: python:3.11\n", inline)})
    desired = load_project(root)
    env = desired.resources[desired.resources["deployment.my-endpoint.blue"].attributes["environment"]]
    assert env.attributes["conda"] == {"name": "e", "dependencies": ["python=3.11"]}
    assert env.attributes["conda_file"] is None
    bad = inline.replace("      - python=3.11\n", "      - 3\n")
    diags = errors(project(tmp_path, {"blue.yml": blue("environment:\n  image: python:3.11\n", bad)}))
    assert any(d.file == "blue.yml" and (d.path or "").startswith("environment.conda_file") for d in diags), diags


def test_read_only_fields_of_an_exported_file_change_nothing(tmp_path: Path) -> None:
    before = load_project(project(tmp_path / "a", {})).resources
    exported = {
        "endpoint.yml": ENDPOINT + "id: /subscriptions/s/x\nprovisioning_state: Succeeded\nscoring_uri: https://e/score\n"
        "openapi_uri: https://e/swagger.json\nlocation: eastus\nkind: Managed\n",
        "blue.yml": BLUE + "id: /subscriptions/s/y\nprovisioning_state: Succeeded\ncreation_context:\n  created_by: me\n",
    }
    after = load_project(project(tmp_path / "b", exported)).resources
    assert {a: r.attributes for a, r in after.items()} == {a: r.attributes for a, r in before.items()}


def test_data_collector_is_checked_as_azure_checks_it(tmp_path: Path) -> None:
    dc = "data_collector:\n  collections:\n    model_inputs:\n      enabled: 'True'\n  rolling_rate: weekly\n"
    diag = find(errors(project(tmp_path, {"blue.yml": BLUE + dc})), "blue.yml", "data_collector.rolling_rate")
    assert diag.line == 17 and "'weekly' is not a rolling rate" in diag.message and diag.hint == "use one of: minute, hour, day"
    boolean = dc.replace("'True'", "true").replace("weekly", "hour")
    diag = find(errors(project(tmp_path, {"blue.yml": BLUE + boolean})), "blue.yml",
                "data_collector.collections.model_inputs.enabled")
    assert diag.line == 16 and "wrong type" in diag.message


def test_target_utilization_on_a_managed_deployment(tmp_path: Path) -> None:
    scale = BLUE + "scale_settings:\n  type: target_utilization\n  max_instances: 3\n"
    desired = load_project(project(tmp_path, {"blue.yml": scale}))
    assert any("the local provider autoscales it" in w["message"] for w in desired.warnings)
    diag = find(errors(project(tmp_path, {"blue.yml": scale, "recon.yaml": AZURE})), "blue.yml", "scale_settings.type")
    assert diag.line == 14 and "Azure refuses target_utilization scaling on a managed deployment" in diag.message


def test_an_environment_name_that_cannot_be_split_is_refused(tmp_path: Path) -> None:
    env = f"$schema: {S}environment.schema.json\nname: my:env\nversion: \"1\"\nimage: python:3.11\n"
    diag = find(errors(project(tmp_path, {"env.yml": env})), "env.yml", "name")
    assert diag.line == 2 and "azureml:my:env:1 cannot be split into one name and one version" in diag.message
    ref = blue("environment:\n  image: python:3.11\n", "environment: azureml:my-env:1:2\n")
    diag = find(errors(project(tmp_path, {"env.yml": None, "blue.yml": ref})), "blue.yml", "environment")
    assert "does not split into one name and one version" in diag.message


def test_a_percentage_is_read_as_azure_reads_a_whole_number(tmp_path: Path) -> None:
    traffic = ENDPOINT + "traffic:\n  blue: \"100\"\n"
    assert load_project(project(tmp_path, {"endpoint.yml": traffic})).resources["endpoint.my-endpoint"].attributes[
        "traffic"] == {"blue": 100}
    diag = find(errors(project(tmp_path, {"endpoint.yml": ENDPOINT + "traffic:\n  blue: true\n"})),
                "endpoint.yml", "traffic.blue")
    assert diag.line == 5
