"""Every key Microsoft documented for ``az ml model deploy --ic --dc``, in files shaped like the ones its
documentation printed and public MLOps templates ran in CI: accepted, null/false/empty read as "not
set", carried where v2 has a form, listed in MIGRATION.md where it has none, and a warning (with file,
line and key) wherever v1 itself ignored the value. Each import's output passes ``recon validate``
where it matters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.migrate.helpers import SCORE_PY, V1, write

CONDA = {"name": "project_environment", "channels": ["conda-forge"],
         "dependencies": ["python=3.11", {"pip": ["azureml-inference-server-http", "scikit-learn"]}]}
CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"

# the AKS deployment configuration of Microsoft's v1 CLI documentation
DOC_AKS = {"computeType": "aks",
           "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3,
                          "refreshPeriodInSeconds": 1, "targetUtilization": 70},
           "dataCollection": {"storageEnabled": True}, "authEnabled": True,
           "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0}}
# its inference configuration: every flat key, most of them null
DOC_IC = {"entryScript": "score.py", "runtime": "python", "condaFile": "myenv.yml", "extraDockerfileSteps": None,
          "sourceDirectory": None, "enableGpu": False, "baseImage": None, "baseImageRegistry": None}


def _warnings(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("Warning: ")]


def _validate(out: Path) -> None:
    result = CliRunner().invoke(cli, ["-C", str(out), "validate"])
    assert result.exit_code == 0, result.output


def _project(root: Path) -> None:
    """A v1 project folder: score.py and myenv.yml where the v1 command ran."""
    (root / "score.py").write_text(SCORE_PY)
    write(root / "myenv.yml", CONDA)


def test_the_documented_aks_config_and_inference_config(v1: V1) -> None:
    _project(v1.root)
    ic = write(v1.root / "inferenceconfig.json", DOC_IC)
    result = v1.ok(DOC_AKS, "--ic", str(ic))
    assert _warnings(result.output) == []
    dep = v1.deployment()
    assert dep["scale_settings"] == {"type": "target_utilization", "min_instances": 1, "max_instances": 3,
                                     "target_utilization_percentage": 70, "polling_interval": 1}
    assert dep["resources"] == {"requests": {"cpu": "0.5", "memory": "1Gi"}}
    assert dep["code_configuration"] == {"code": "blue-code", "scoring_script": "score.py"}
    assert dep["environment"] == {"image": CPU_IMAGE, "conda_file": "../myenv.yml"}
    assert v1.endpoint()["auth_mode"] == "key"
    md = v1.migration()
    for key in ("`sourceDirectory`", "`baseImage`", "`runtime`", "`condaFile`"):
        assert key in md
    _validate(v1.out)


@pytest.mark.parametrize("key", ["ComputeTarget", "computeTarget"])
def test_the_documented_compute_target_key_names_the_compute(v1: V1, key: str) -> None:
    result = v1.ok({"computeType": "aks", key: "akscomputetarget"}, compute=False)
    assert v1.endpoint()["compute"] == "azureml:akscomputetarget"
    (warning,) = _warnings(result.output)
    assert f"deploymentconfig.json:3: {key}: the v1 CLI did not read {key}" in warning
    v1.ok({"computeType": "aks", key: "akscomputetarget"}, "--compute", "other-aks", compute=False)
    assert v1.endpoint()["compute"] == "azureml:other-aks"


def test_a_custom_image_with_its_registry_as_the_docs_wrote_it(v1: V1) -> None:
    _project(v1.root)
    ic = write(v1.root / "ic.json", {**DOC_IC, "baseImage": "azureml/o16n-sample-user-base/ubuntu-miniconda",
                                     "baseImageRegistry": "mcr.microsoft.com", "condaFile": "myenv.yml"})
    v1.ok({}, "--ic", str(ic))
    assert v1.deployment()["environment"]["image"] == "mcr.microsoft.com/azureml/o16n-sample-user-base/ubuntu-miniconda"
    ic = write(v1.root / "ic.json", {**DOC_IC, "baseImage": "myacr.azurecr.io/scoring:2",
                                     "baseImageRegistry": {"address": "myacr.azurecr.io", "username": "u",
                                                           "password": "pw-never-written-42"}})
    v1.ok({}, "--ic", str(ic))
    assert v1.deployment()["environment"]["image"] == "myacr.azurecr.io/scoring:2"
    assert all("pw-never-written-42" not in p.read_text() for p in v1.out.rglob("*") if p.is_file())


def test_an_mlops_template_run_in_its_scoring_folder(tmp_path: Path, monkeypatch: Any) -> None:
    """The shape of a public MLOps template: YAML configs beside score.py, the conda file one folder up,
    ``az ml model deploy`` run from the scoring folder; ``sslEnabled`` (read by v1 for ACI only)."""
    scoring = tmp_path / "model_folder" / "scoring"
    scoring.mkdir(parents=True)
    (scoring / "score.py").write_text(SCORE_PY)
    write(tmp_path / "model_folder" / "conda_dependencies.yml", CONDA)
    (scoring / "inference_config.yml").write_text(
        "entryScript: score.py\nruntime: python\ncondaFile: ../conda_dependencies.yml\nextraDockerfileSteps:\n"
        "schemaFile:\nsourceDirectory:\nenableGpu: False\nbaseImage:\nbaseImageRegistry:\n")
    (scoring / "deployment_config_aks.yml").write_text(
        "computeType: AKS\nautoScaler:\n    autoscaleEnabled: True\n    minReplicas: 1\n    maxReplicas: 3\n"
        "    refreshPeriodInSeconds: 10\n    targetUtilization: 70\nauthEnabled: True\n"
        "containerResourceRequirements:\n    cpu: 0.5\n    memoryInGB: 2\nappInsightsEnabled: True\n"
        "scoringTimeoutMs: 5000\nmaxConcurrentRequestsPerContainer: 2\nmaxQueueWaitMs: 5000\nsslEnabled: True\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text('{"slope": 2, "intercept": 1}')
    monkeypatch.chdir(scoring)
    result = CliRunner().invoke(cli, ["import-v1", "--ic", "inference_config.yml", "--dc", "deployment_config_aks.yml",
                                      "-n", "diabetes-aks", "--model-path", "../../model", "--compute", "aks",
                                      "--out", "../../v2"])
    assert result.exit_code == 0, result.output
    (warning,) = _warnings(result.output)
    assert "deployment_config_aks.yml:16: sslEnabled: ignored: v1 read it only for ACI services" in warning
    out = tmp_path / "v2"
    dep = yaml_of(out / "blue-deployment.yml")
    assert dep["environment"] == {"image": CPU_IMAGE, "conda_file": "../model_folder/conda_dependencies.yml"}
    assert dep["request_settings"] == {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 2,
                                       "max_queue_wait_ms": 5000}
    assert dep["app_insights_enabled"] is True and dep["scale_settings"]["polling_interval"] == 10
    md = (out / "MIGRATION.md").read_text()
    assert "`sslEnabled`" in md.split("## Not carried over")[1]
    _validate(out)


def yaml_of(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def test_the_documented_environment_object(v1: V1) -> None:
    v1.inference()
    env = {"docker": {"arguments": [], "baseDockerfile": None,
                      "baseImage": "mcr.microsoft.com/azureml/intelmpi2018.3-ubuntu18.04", "enabled": False,
                      "sharedVolumes": True, "shmSize": None},
           "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}, "name": "my-deploy-env",
           "python": {"baseCondaEnvironment": None, "condaDependencies": CONDA, "condaDependenciesFile": None,
                      "interpreterPath": "python", "userManagedDependencies": False},
           "version": "1"}
    ic = write(v1.root / "ic.json", {"entryScript": "score.py", "sourceDirectory": "source_dir", "environment": env})
    v1.ok({}, "--ic", str(ic))
    dep = v1.deployment()
    assert dep["environment"] == {"image": "mcr.microsoft.com/azureml/intelmpi2018.3-ubuntu18.04",
                                  "conda_file": "blue-conda.yaml"}
    assert dep["environment_variables"] == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    _validate(v1.out)


def test_an_environment_as_the_sdk_saves_it(v1: V1) -> None:
    """``Environment.save_to_directory`` writes spark, databricks and platform sections, empty."""
    v1.inference()
    env = {"name": "saved", "version": None, "environmentVariables": {},
           "python": {"userManagedDependencies": False, "interpreterPath": "python", "condaDependenciesFile": None,
                      "baseCondaEnvironment": None, "condaDependencies": CONDA},
           "docker": {"enabled": False, "baseImage": CPU_IMAGE, "baseDockerfile": None, "buildContext": None,
                      "sharedVolumes": True, "shmSize": "2g", "arguments": [],
                      "baseImageRegistry": {"address": None, "username": None, "password": None,
                                            "registryIdentity": None},
                      "platform": {"os": "Linux", "architecture": "amd64"}},
           "spark": {"repositories": [], "packages": [], "precachePackages": True},
           "databricks": {"mavenLibraries": [], "pypiLibraries": [], "rcranLibraries": [], "jarLibraries": [],
                          "eggLibraries": []},
           "r": None, "inferencingStackVersion": None, "assetId": None}
    ic = write(v1.root / "ic.json", {"entryScript": "score.py", "sourceDirectory": "source_dir", "environment": env})
    v1.ok({}, "--ic", str(ic))
    assert v1.deployment()["environment"] == {"image": CPU_IMAGE, "conda_file": "blue-conda.yaml"}
    assert "`environment.docker.platform`" in v1.migration()


@pytest.mark.parametrize("keys,image", [
    ({"enableGpu": True}, GPU_IMAGE),
    ({"cudaVersion": "10.0"}, GPU_IMAGE),
    ({"enableGpu": True, "cudaVersion": "9.1"}, GPU_IMAGE),
    ({"enableGpu": True, "baseImage": "myacr.azurecr.io/cuda:12"}, "myacr.azurecr.io/cuda:12"),
])
def test_gpu_images_as_azureml_core_chose_them(v1: V1, keys: dict[str, Any], image: str) -> None:
    _project(v1.root)
    ic = write(v1.root / "ic.json", {**DOC_IC, **keys})
    v1.ok({"gpuCores": 1}, "--ic", str(ic))
    dep = v1.deployment()
    assert dep["environment"]["image"] == image
    assert dep["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "needs GPUs too" in v1.migration()


def test_extra_dockerfile_steps_become_a_build_with_the_conda_file(v1: V1) -> None:
    _project(v1.root)
    (v1.root / "steps.dockerfile").write_text("RUN apt-get update && apt-get install -y libgomp1\nENV MODE=strict\n")
    for spelling in ("extraDockerfileSteps", "extraDockerFileSteps", "extra_docker_file_steps"):
        ic = write(v1.root / "ic.json", {**{k: v for k, v in DOC_IC.items() if k != "extraDockerfileSteps"},
                                         spelling: "steps.dockerfile"})
        v1.ok({}, "--ic", str(ic))
        dep = v1.deployment()
        assert dep["environment"] == {"build": {"path": "blue-docker", "dockerfile_path": "Dockerfile"}}
        dockerfile = (v1.out / "blue-docker" / "Dockerfile").read_text()
        lines = [ln for ln in dockerfile.splitlines() if not ln.startswith("#")]
        assert lines == [f"FROM {CPU_IMAGE}", "COPY conda.yaml /tmp/conda.yaml",
                         "RUN conda env update --name base --file /tmp/conda.yaml && conda clean --all --yes",
                         "RUN apt-get update && apt-get install -y libgomp1", "ENV MODE=strict"]
        assert yaml_of(v1.out / "blue-docker" / "conda.yaml") == CONDA
        assert f"`{spelling}`" in v1.migration()
    _validate(v1.out)


def test_token_auth_alone_is_token_auth(v1: V1) -> None:
    result = v1.ok({"tokenAuthEnabled": True})
    assert v1.endpoint()["auth_mode"] == "aml_token" and _warnings(result.output) == []
    assert "its default, true, gives way to token auth" in v1.migration()


def test_a_gpu_count_v1_never_read_is_a_warning(v1: V1) -> None:
    result = v1.ok({"containerResourceRequirements": {"cpu": 1, "gpu": 2}})
    assert "nvidia.com/gpu" not in v1.deployment()["resources"]["requests"]
    (warning,) = _warnings(result.output)
    assert "deploymentconfig.json:4: containerResourceRequirements.gpu: ignored: the v1 CLI read the GPU count " \
           "from gpuCores" in warning and '"gpuCores": 2' in warning
    result = v1.ok({"containerResourceRequirements": {"gpu": 2}, "gpuCores": 1})
    assert v1.deployment()["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "gpuCores (1) is used" in _warnings(result.output)[0]


@pytest.mark.parametrize("config,expected", [
    ({"autoScaler": {"minReplicas": 3, "maxReplicas": 4}},
     {"type": "target_utilization", "min_instances": 1, "max_instances": 10, "target_utilization_percentage": 70,
      "polling_interval": 1}),
    ({"autoScaler": {"autoscaleEnabled": False, "targetUtilization": 50}, "numReplicas": 2}, {"type": "default"}),
    ({"autoscale_max_replicas": 4, "num_replicas": 2}, {"type": "default"}),
])
def test_autoscale_bounds_without_autoscale_are_a_warning(v1: V1, config: dict[str, Any],
                                                          expected: dict[str, Any]) -> None:
    result = v1.ok(config, name="deploymentconfig.json" if "autoScaler" in config else "kwargs.yaml")
    assert v1.deployment()["scale_settings"] == expected
    warnings = _warnings(result.output)
    assert warnings and all("v1 applied no autoscale bound without it" in w for w in warnings), warnings
    assert all("set autoscaleEnabled: true for it to apply" in w for w in warnings)


ACI_KEYS = [("location", "location", "westeurope"), ("sslEnabled", "ssl_enabled", True),
            ("sslCertificate", "ssl_cert_pem_file", "cert.pem"), ("sslKey", "ssl_key_pem_file", "key.pem"),
            ("cname", "ssl_cname", "scoring.contoso.com"), ("dnsNameLabel", "dns_name_label", "scorer"),
            ("vaultBaseUrl", "cmk_vault_base_url", "https://kv.vault.azure.net"), ("keyName", "cmk_key_name", "cmk-key-7"),
            ("keyVersion", "cmk_key_version", "v-7f3a"), ("vnetName", "vnet_name", "vnet"),
            ("subnetName", "subnet_name", "default"), ("port", "port", 6789)]


@pytest.mark.parametrize("camel,snake,value", ACI_KEYS, ids=[k[0] for k in ACI_KEYS])
def test_keys_v1_read_only_for_aci_are_named_as_such(v1: V1, camel: str, snake: str, value: Any) -> None:
    for key, name, line in ((camel, "deploymentconfig.json", 2), (snake, "kwargs.yaml", 1)):
        result = v1.ok({key: value}, name=name)
        (warning,) = _warnings(result.output)
        kind = "a LocalWebservice" if snake == "port" else "ACI services"
        assert f"{name}:{line}: {key}: ignored: v1 read it only for {kind}" in warning, warning
        row = next(ln for ln in v1.migration().split("## Not carried over")[1].splitlines() if f"`{key}`" in ln)
        assert row.startswith("| endpoint |") and "an AKS service ignored it" in row
        assert str(value) not in "".join(p.read_text() for p in v1.out.glob("*.yml"))


def test_an_aksendpoint_config_is_read_as_an_aksendpoint(v1: V1) -> None:
    result = v1.ok({"computeType": "AKSENDPOINT", "versionName": "prod", "trafficPercentile": 100,
                    "computeTargetName": "ignored-by-v1"})
    assert v1.endpoint()["traffic"] == {"prod": 100} and v1.deployment("prod")["name"] == "prod"
    assert v1.endpoint()["compute"] == "azureml:aks-compute"  # --compute, as v1's --ct
    assert _warnings(result.output) == []
    assert "an AksEndpoint" in v1.migration()
    v1.ok({"computeType": "AksEndpoint"})  # no versionName: v1 named the version after the endpoint
    assert v1.endpoint()["traffic"] == {"my-service": 100}
    result = v1.ok({"computeType": "aksendpoint", "computeTargetName": "my-aks"}, compute=False)
    assert v1.endpoint()["compute"] == "azureml:my-aks"
    (warning,) = _warnings(result.output)
    assert "computeTargetName: the v1 CLI did not read computeTargetName for an AksEndpoint" in warning


def test_an_aksendpoint_config_with_versions(v1: V1) -> None:
    versions = write(v1.root / "versions.yaml", [{"version_name": "canary", "traffic_percentile": 10}])
    v1.ok({"computeType": "AKSENDPOINT", "versionName": "prod"}, "--versions", str(versions))
    assert v1.endpoint()["traffic"] == {"prod": 90, "canary": 10}


def test_version_name_under_compute_type_aks_is_a_warning(v1: V1) -> None:
    result = v1.ok({"computeType": "aks", "versionName": "prod"})
    assert v1.endpoint()["traffic"] == {"prod": 100}
    (warning,) = _warnings(result.output)
    assert "deploymentconfig.json:3: versionName: computeType is AKS: v1 read versionName" in warning
    assert "write computeType: AKSENDPOINT" in warning


def test_every_documented_key_null_or_empty_means_not_set(v1: V1) -> None:
    config = {"computeType": "aks", "autoScaler": {"autoscaleEnabled": None, "minReplicas": None,
                                                   "maxReplicas": None, "refreshPeriodInSeconds": None,
                                                   "targetUtilization": None},
              "dataCollection": {"storageEnabled": None}, "authEnabled": None, "tokenAuthEnabled": None,
              "containerResourceRequirements": {"cpu": None, "memoryInGB": None, "cpuLimit": None,
                                                "memoryInGBLimit": None, "gpu": None},
              "appInsightsEnabled": None, "scoringTimeoutMs": None, "maxConcurrentRequestsPerContainer": None,
              "maxQueueWaitMs": None, "numReplicas": None, "keys": {"primaryKey": None, "secondaryKey": None},
              "gpuCores": None, "livenessProbeRequirements": {"periodSeconds": None, "initialDelaySeconds": None,
                                                              "timeoutSeconds": None, "successThreshold": None,
                                                              "failureThreshold": None},
              "namespace": "", "computeTargetName": "", "ComputeTarget": None, "sslEnabled": None,
              "location": "", "description": None}
    result = v1.ok(config)
    assert _warnings(result.output) == []
    silent = v1.out.parent / "silent"
    V1(silent, v1.runner).ok({"computeType": "aks"}) if silent.mkdir() is None else None
    for doc in ("endpoint.yml", "blue-deployment.yml"):
        assert yaml_of(v1.out / doc) == yaml_of(silent / "v2" / doc)
