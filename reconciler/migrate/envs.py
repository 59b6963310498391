"""inferenceconfig.json -> a v2 deployment's ``code_configuration``, ``environment`` and variables.

Contract: ``code_and_environment(path, base, out, name)`` reads and checks the inference config
(``code`` says how its paths resolve: against ``base``, the folder the v1 command ran in) and
returns a ``CodeEnv``: the v2 fields, the files to write beside the YAML (a conda file from inline
``condaDependencies``, a build folder from ``baseDockerfile`` or ``extraDockerfileSteps``, a lone
scoring script), a row for every key it read, and warnings for keys v1 ignored. Registry
credentials are never written. Problems raise ``ConfigError`` naming the file, line and key.

The environment is either a v1 ``environment`` object or the older flat keys (``runtime``,
``condaFile``, ``baseImage``, ``baseImageRegistry``, ``enableGpu``, ``cudaVersion``,
``extraDockerfileSteps``), never both (azureml-core refused that too). The flat keys become the
image azureml-core 1.61 itself would use: ``baseImage``, else its GPU image for ``enableGpu`` or a
``cudaVersion``, else its CPU image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.migrate.code import code_configuration, read_text, rel, resolve
from reconciler.migrate.docker import dockerfile_build, steps_build
from reconciler.migrate.files import V1File, read_data
from reconciler.migrate.models import EnvironmentDoc, InferenceConfigDoc, RegistryDoc
from reconciler.migrate.parse import parse
from reconciler.migrate.rows import Row, plain
from reconciler.model.errors import ConfigError, Diagnostic

# azureml-core 1.61's DEFAULT_CPU_IMAGE and DEFAULT_GPU_IMAGE (v1's older default images are retired)
DEFAULT_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
CUDA_VERSIONS = ("9.0", "9.1", "10.0")  # what azureml-core accepted
RUNTIMES = ("python", "python-slim")  # spark-py has no v2 equivalent
LEGACY = ("runtime", "conda_file", "extra_docker_file_steps", "enable_gpu", "cuda_version", "base_image")


@dataclass
class CodeEnv:
    """What one inference config becomes in a v2 deployment."""

    code_configuration: dict[str, str] | None = None
    environment: str | dict[str, Any] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path under the output folder -> text
    rows: list[Row] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)


def code_and_environment(path: Path | None, base: Path, out: Path, name: str) -> CodeEnv:
    """See the module docstring; without an inference config, no code and no environment."""
    scope = f"deployment {name}"
    if path is None:
        return CodeEnv(rows=[plain(scope, "inference config", None,
                                   "none given: no code_configuration or environment (v2 serves an "
                                   "MLflow model without them; other models need --inference-config)")])
    f = read_data(path)
    doc = parse(InferenceConfigDoc, f, f.data)
    result = CodeEnv()
    code = code_configuration(doc, f, base, out, name)
    result.code_configuration, result.files, result.rows = code.fields, code.files, code.rows
    src = base / doc.source_directory if doc.source_directory is not None else base
    _environment(doc, f, base, src, out, name, result)
    return result


def _environment(doc: InferenceConfigDoc, f: V1File, base: Path, src: Path, out: Path, name: str,
                 result: CodeEnv) -> None:
    scope, rows = f"deployment {name}", result.rows
    if doc.runtime is not None and doc.runtime.lower() not in RUNTIMES:
        raise ConfigError(f.diagnostic(("runtime",), f"runtime {doc.runtime!r} has no v2 equivalent",
                                       "v2 scoring scripts are Python: use runtime python"))
    if doc.cuda_version is not None and doc.cuda_version.lower() not in CUDA_VERSIONS:
        raise ConfigError(f.diagnostic((_written(f, "cudaVersion", "cuda_version"),),
                                       f"cudaVersion {doc.cuda_version!r} is not one v1 supported",
                                       "v1 took 9.0, 9.1 or 10.0 (all become Azure's CUDA 11.8 image)"))
    for key, value, why in (("description", doc.description, "dropped: an inference config's description "
                                                             "has no v2 field"),
                            ("schemaFile", doc.schema_file, "no v2 equivalent: v2 derives the Swagger "
                                                            "document from inference-schema decorators in "
                                                            "the scoring script")):
        if value is not None:
            rows.append(plain(scope, key, value, why))
    given = [k for k in LEGACY if getattr(doc, k)]  # enableGpu: false is not set
    if doc.environment is not None and given:
        raise ConfigError(f.diagnostic(("environment",), f"environment is given with {', '.join(given)}",
                                       "use either the environment object or the flat keys, as v1 required"))
    if doc.environment is not None:
        if doc.base_image_registry is not None:
            key = _written(f, "baseImageRegistry", "base_image_registry")
            result.warnings.append(f.diagnostic((key,), "ignored: with an environment v1 used the environment's "
                                                "registry (environment.docker.baseImageRegistry)",
                                                "move it into the environment", severity="warning"))
            rows.append(plain(scope, key, "(registry)", "ignored: the environment's own registry counts"))
        _v1_environment(doc.environment, f, base, out, name, result)
        return
    if not given:
        rows.append(plain(scope, "environment", None, "none given: the deployment has no environment"))
        if doc.base_image_registry is not None:
            rows.append(plain(scope, _written(f, "baseImageRegistry", "base_image_registry"), "(registry)",
                              "ignored: no baseImage to pull from it"))
        return
    result.environment = _legacy(doc, f, base, src, out, name, result)


def _written(f: V1File, *spellings: str) -> str:
    data = f.data if isinstance(f.data, dict) else {}
    return next((s for s in spellings if s in data), spellings[0])


def _legacy(doc: InferenceConfigDoc, f: V1File, base: Path, src: Path, out: Path, name: str,
            result: CodeEnv) -> dict[str, Any]:
    scope, rows = f"deployment {name}", result.rows
    gpu = bool(doc.enable_gpu) or doc.cuda_version is not None
    image = _registry_image(doc.base_image, doc.base_image_registry, rows, scope) if doc.base_image else None
    if image is None:
        image = GPU_IMAGE if gpu else DEFAULT_IMAGE
    rows.append(plain(scope, "runtime", doc.runtime, "v2 runs Python scoring scripts (no field)"))
    why = " (v1's default image is retired; azureml-core 1.61 uses this one)" if not doc.base_image else ""
    rows.append(plain(scope, "baseImage", doc.base_image, f"`environment.image: {image}`{why}"))
    if gpu:
        what = ("the base image is used as given: it must bring CUDA itself" if doc.base_image else
                f"Azure's CUDA 11.8 image (as azureml-core 1.61 maps it; v1's CUDA {doc.cuda_version or '9.1'} "
                "images are retired)")
        rows.append(plain(scope, "enableGpu/cudaVersion", {"enableGpu": doc.enable_gpu, "cudaVersion":
                                                           doc.cuda_version},
                          f"{what}; the deployment needs GPUs too (gpuCores, or a GPU instance type)"))
    conda_path = conda_text = None
    if doc.conda_file is not None:
        key = (_written(f, "condaFile", "conda_file"),)
        conda_path = resolve(f, key, doc.conda_file, src, base, False)
        conda_text = read_text(f, key, conda_path) if doc.extra_docker_file_steps else None
    if doc.extra_docker_file_steps is not None:
        key = (_written(f, "extraDockerfileSteps", "extraDockerFileSteps", "extra_docker_file_steps"),)
        steps_path = resolve(f, key, doc.extra_docker_file_steps, src, base, False)
        build = steps_build(name, image, conda_text, read_text(f, key, steps_path), str(steps_path), result.files)
        rows.append(plain(scope, key[0], doc.extra_docker_file_steps,
                          f"`environment.build.path: {name}-docker`: a Dockerfile of {image}, "
                          f"{'the conda file, ' if conda_text is not None else ''}then these steps, as v1 built "
                          "the image (Azure builds it, or `docker build` it yourself)"))
        rows.append(plain(scope, "condaFile", doc.conda_file, f"copied into {name}-docker/conda.yaml"
                          if conda_text is not None else "no conda file"))
        return build
    env: dict[str, Any] = {"image": image}
    if conda_path is not None:
        env["conda_file"] = rel(conda_path, out)
    rows.append(plain(scope, "condaFile", doc.conda_file,
                      f"`environment.conda_file: {env['conda_file']}`" if "conda_file" in env else "no conda file"))
    return env


def _registry_image(image: str, registry: RegistryDoc | str | None, rows: list[Row], scope: str) -> str:
    """``image`` with the registry's address in front (when it is not there already)."""
    address = registry if isinstance(registry, str) else registry.address if registry is not None else None
    if address and not image.startswith(address.rstrip("/") + "/"):
        image = f"{address.rstrip('/')}/{image}"
    if isinstance(registry, RegistryDoc) and (registry.username or registry.password or registry.registry_identity):
        rows.append(plain(scope, "baseImageRegistry credentials", "(withheld)",
                          "not written: give the workspace (or the cluster) access to the registry instead"))
    return image


def _v1_environment(env: EnvironmentDoc, f: V1File, base: Path, out: Path, name: str, result: CodeEnv) -> None:
    scope, rows = f"deployment {name}", result.rows
    result.environment_variables = {str(k): str(v) for k, v in (env.environment_variables or {}).items()}
    rows.append(plain(scope, "environment.environmentVariables", env.environment_variables or None,
                      "`environment_variables` of the deployment"))
    for key in ("r", "spark", "databricks"):
        if _used(getattr(env, key)):
            raise ConfigError(f.diagnostic(("environment", key), f"a v1 {key} environment has no v2 equivalent",
                                           "online deployments run Python environments"))
    if env.python is None and env.docker is None:  # a registered environment, by name
        if env.name is None:
            raise ConfigError(f.diagnostic(("environment",), "the environment has no name and no definition",
                                           "give name (and version) or python/docker settings"))
        ref = f"azureml:{env.name}:{env.version}" if env.version is not None else f"azureml:{env.name}@latest"
        result.environment = ref
        rows.append(plain(scope, "environment.name/version", _ident(env),
                          f"`environment: {ref}` (registered: declare it or use `az ml` to resolve it)"))
        return
    rows.append(plain(scope, "environment.name/version", _ident(env),
                      "not kept: the v2 environment is inline, versioned by its content"))
    for key, value, why in (("inferencingStackVersion", env.inferencing_stack_version, "dropped: v2 has no "
                             "inferencing stack; add azureml-inference-server-http to the conda file"),
                            ("assetId", env.asset_id, "not kept: the v2 environment is inline")):
        if value is not None:
            rows.append(plain(scope, f"environment.{key}", value, why))
    result.environment = _inline(env, f, base, out, name, result)


def _used(value: Any) -> bool:
    """Whether an ``r``/``spark``/``databricks`` section asks for anything (the SDK writes empty ones)."""
    if isinstance(value, dict):
        return any(_used(v) for k, v in value.items() if k != "precachePackages")
    if isinstance(value, list | str):
        return bool(value)
    return value is not None and value is not False


def _ident(env: EnvironmentDoc) -> str | None:
    if env.name is None:
        return None
    return env.name if env.version is None else f"{env.name}:{env.version}"


def _inline(env: EnvironmentDoc, f: V1File, base: Path, out: Path, name: str, result: CodeEnv) -> dict[str, Any]:
    scope, rows = f"deployment {name}", result.rows
    docker, python = env.docker, env.python
    conda = _conda(env, f, base, out, name, result)
    if docker is not None and docker.base_dockerfile is not None:
        if docker.base_image is not None:
            raise ConfigError(f.diagnostic(("environment", "docker", "baseDockerfile"), "baseDockerfile with "
                                           "baseImage", "give one of them (v1 refused both too)"))
        if conda is not None:
            raise ConfigError(f.diagnostic(("environment", "docker", "baseDockerfile"),
                                           "baseDockerfile with conda dependencies",
                                           "v2 cannot add a conda file to a build: install it in the Dockerfile"))
        rows.append(plain(scope, "environment.docker.baseDockerfile", "(Dockerfile text)",
                          f"`environment.build.path: {name}-docker` ({name}-docker/Dockerfile)"))
        return dockerfile_build(name, docker.base_dockerfile, result.files)
    image = _registry_image(docker.base_image, docker.base_image_registry, rows, scope) \
        if docker is not None and docker.base_image else DEFAULT_IMAGE
    why = " (v1's default image is retired)" if docker is None or not docker.base_image else ""
    rows.append(plain(scope, "environment.docker.baseImage", docker.base_image if docker else None,
                      f"`environment.image: {image}`{why}"))
    if python is not None:
        for key, value in (("interpreterPath", python.interpreter_path),
                           ("baseCondaEnvironment", python.base_conda_environment)):
            if value is not None:
                rows.append(plain(scope, f"environment.python.{key}", value,
                                  "dropped: v2 runs the conda environment's python"))
    if docker is not None:
        _docker_rows(docker, rows, scope)
    return {"image": image, **({"conda_file": conda} if conda else {})}


def _docker_rows(docker: Any, rows: list[Row], scope: str) -> None:
    if docker.enabled is not None:
        rows.append(plain(scope, "environment.docker.enabled", docker.enabled,
                          "v2 deployments always run in a container (no field)"))
    for key, why in (("arguments", "dropped: v2 deployments do not take docker run options"),
                     ("shared_volumes", "dropped: v2 deployments do not take docker run options"),
                     ("shm_size", "dropped: v2 deployments do not take docker run options"),
                     ("gpu_support", "no field: the image and the deployment's GPUs decide"),
                     ("platform", "no field: v2 runs Linux amd64 images"),
                     ("build_context", "not carried: v2 builds from a local folder; download the context "
                                       "and point `environment.build.path` at it")):
        if getattr(docker, key) is not None and getattr(docker, key) != []:
            rows.append(plain(scope, f"environment.docker.{key}", getattr(docker, key), why))


def _conda(env: EnvironmentDoc, f: V1File, base: Path, out: Path, name: str, result: CodeEnv) -> str | None:
    python, scope = env.python, f"deployment {name}"
    if python is None:
        return None
    if python.user_managed_dependencies:
        result.rows.append(plain(scope, "environment.python.userManagedDependencies", True,
                                 "no conda file: the image brings the packages"))
        return None
    if python.conda_dependencies is not None and python.conda_dependencies_file is not None:
        raise ConfigError(f.diagnostic(("environment", "python", "condaDependenciesFile"),
                                       "condaDependencies and condaDependenciesFile are both given", "keep one"))
    if python.conda_dependencies_file is not None:
        key = ("environment", "python", "condaDependenciesFile")
        path = rel(resolve(f, key, python.conda_dependencies_file, base, base, False), out)
        result.rows.append(plain(scope, "environment.python.condaDependenciesFile", python.conda_dependencies_file,
                                 f"`environment.conda_file: {path}`"))
        return path
    if python.conda_dependencies is None:
        return None
    target = f"{name}-conda.yaml"
    result.files[target] = yaml.safe_dump(python.conda_dependencies, sort_keys=False)
    result.rows.append(plain(scope, "environment.python.condaDependencies", "(inline)",
                             f"`environment.conda_file: {target}` (written beside the YAML)"))
    return target
