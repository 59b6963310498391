"""inferenceconfig.json -> a v2 deployment's ``code_configuration``, ``environment`` and variables.

Contract: ``code_and_environment(path, out, name)`` reads and checks the inference config (paths in
it are relative to its own folder) and returns a ``CodeEnv``: the v2 fields, the files to write
beside the YAML (a conda file from inline ``condaDependencies``, a Dockerfile from
``baseDockerfile``) and a row for every key it read. Registry credentials are never written.
Problems raise ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.migrate.files import V1File, read_data
from reconciler.migrate.models import EnvironmentDoc, InferenceConfigDoc
from reconciler.migrate.parse import parse
from reconciler.migrate.rows import Row, plain
from reconciler.model.errors import ConfigError

# v1's default base image is retired; this is the image Azure's v2 samples use
DEFAULT_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


@dataclass
class CodeEnv:
    """What one inference config becomes in a v2 deployment."""

    code_configuration: dict[str, str] | None = None
    environment: str | dict[str, Any] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path under the output folder -> text
    rows: list[Row] = field(default_factory=list)


def rel(target: Path, out: Path) -> str:
    """``target`` relative to the output folder, as v2 YAML writes paths (relative to the file)."""
    return Path(os.path.relpath(target.resolve(), out.resolve())).as_posix()


def code_and_environment(path: Path | None, out: Path, name: str) -> CodeEnv:
    """See the module docstring; without an inference config, no code and no environment."""
    scope = f"deployment {name}"
    if path is None:
        return CodeEnv(rows=[plain(scope, "inference config", None,
                                   "none given: no code_configuration or environment (v2 serves an "
                                   "MLflow model without them; other models need --inference-config)")])
    f = read_data(path)
    doc = parse(InferenceConfigDoc, f, f.data)
    result = CodeEnv()
    result.code_configuration = _code(doc, f, out, scope, result.rows)
    _environment(doc, f, out, name, result)
    return result


def _code(doc: InferenceConfigDoc, f: V1File, out: Path, scope: str, rows: list[Row]) -> dict[str, str]:
    base = f.path.parent
    if doc.entry_script is None:
        raise ConfigError(f.diagnostic((), "entryScript is missing", "name the scoring script: "
                                       '"entryScript": "score.py"'))
    if doc.source_directory is not None:
        code = base / doc.source_directory
        if not code.is_dir():
            raise ConfigError(f.diagnostic(("sourceDirectory",), f"{code} is not a folder",
                                           "sourceDirectory is relative to the inference config's folder"))
        script, code_dir = doc.entry_script, code
    else:
        script, code_dir = Path(doc.entry_script).name, (base / doc.entry_script).parent
    if not (code_dir / script).is_file():
        raise ConfigError(f.diagnostic(("entryScript",), f"{code_dir / script} does not exist",
                                       "entryScript is relative to sourceDirectory (or to this file's folder)"))
    rows.append(plain(scope, "entryScript", doc.entry_script, f"`code_configuration.scoring_script: {script}`"))
    rows.append(plain(scope, "sourceDirectory", doc.source_directory,
                      f"`code_configuration.code: {rel(code_dir, out)}`"))
    return {"code": rel(code_dir, out), "scoring_script": Path(script).as_posix()}


def _environment(doc: InferenceConfigDoc, f: V1File, out: Path, name: str, result: CodeEnv) -> None:
    scope = f"deployment {name}"
    env = doc.environment
    if doc.runtime is not None and doc.runtime.lower() != "python":
        raise ConfigError(f.diagnostic(("runtime",), f"runtime {doc.runtime!r} is not supported",
                                       "v2 scoring scripts are Python: use runtime python"))
    if doc.description is not None:
        result.rows.append(plain(scope, "description", doc.description,
                                 "dropped: an inference config's description has no v2 field"))
    legacy = doc.conda_file is not None or doc.base_image is not None or doc.runtime is not None
    if env is not None and legacy:
        raise ConfigError(f.diagnostic(("environment",), "environment is given with condaFile/baseImage/runtime",
                                       "use either the environment object or the older flat keys"))
    if env is None and not legacy:
        result.rows.append(plain(scope, "environment", None, "none given: the deployment has no environment"))
        return
    if env is None:
        result.environment = _legacy(doc, f, out, scope, result.rows)
        return
    _v1_environment(env, f, out, name, result)


def _legacy(doc: InferenceConfigDoc, f: V1File, out: Path, scope: str, rows: list[Row]) -> dict[str, Any]:
    env: dict[str, Any] = {"image": doc.base_image or DEFAULT_IMAGE}
    rows.append(plain(scope, "runtime", doc.runtime, "v2 runs Python scoring scripts (no field)"))
    rows.append(plain(scope, "baseImage", doc.base_image, f"`environment.image: {env['image']}`"))
    if doc.conda_file is not None:
        env["conda_file"] = _existing(f, ("condaFile",), doc.conda_file, out)
    rows.append(plain(scope, "condaFile", doc.conda_file,
                      f"`environment.conda_file: {env['conda_file']}`" if "conda_file" in env else "no conda file"))
    return env


def _existing(f: V1File, key: tuple[str, ...], value: str, out: Path) -> str:
    target = f.path.parent / value
    if not target.is_file():
        raise ConfigError(f.diagnostic(key, f"{target} does not exist", "the path is relative to this file"))
    return rel(target, out)


def _v1_environment(env: EnvironmentDoc, f: V1File, out: Path, name: str, result: CodeEnv) -> None:
    scope, rows = f"deployment {name}", result.rows
    result.environment_variables = {str(k): str(v) for k, v in (env.environment_variables or {}).items()}
    rows.append(plain(scope, "environment.environmentVariables", env.environment_variables or None,
                      "`environment_variables` of the deployment"))
    for key in ("r", "spark", "databricks"):
        if getattr(env, key):
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
    if env.inferencing_stack_version is not None:
        rows.append(plain(scope, "environment.inferencingStackVersion", env.inferencing_stack_version,
                          "dropped: v2 has no inferencing stack; add azureml-inference-server-http to the conda file"))
    result.environment = _inline(env, f, out, name, result)


def _ident(env: EnvironmentDoc) -> str | None:
    if env.name is None:
        return None
    return env.name if env.version is None else f"{env.name}:{env.version}"


def _inline(env: EnvironmentDoc, f: V1File, out: Path, name: str, result: CodeEnv) -> dict[str, Any]:
    scope, rows = f"deployment {name}", result.rows
    docker, python = env.docker, env.python
    conda = _conda(env, f, out, name, result)
    if docker is not None and docker.base_dockerfile is not None:
        if conda is not None:
            raise ConfigError(f.diagnostic(("environment", "docker", "baseDockerfile"),
                                           "baseDockerfile with conda dependencies",
                                           "v2 cannot add a conda file to a build: install it in the Dockerfile"))
        folder = f"{name}-docker"
        result.files[f"{folder}/Dockerfile"] = docker.base_dockerfile
        rows.append(plain(scope, "environment.docker.baseDockerfile", "(Dockerfile text)",
                          f"`environment.build.path: {folder}` ({folder}/Dockerfile)"))
        return {"build": {"path": folder, "dockerfile_path": "Dockerfile"}}
    image = _image(docker, rows, scope)
    if python is not None:
        for key, value in (("interpreterPath", python.interpreter_path),
                           ("baseCondaEnvironment", python.base_conda_environment)):
            if value is not None:
                rows.append(plain(scope, f"environment.python.{key}", value,
                            "dropped: v2 runs the conda environment's python"))
    return {"image": image, **({"conda_file": conda} if conda else {})}


def _conda(env: EnvironmentDoc, f: V1File, out: Path, name: str, result: CodeEnv) -> str | None:
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
        path = _existing(f, ("environment", "python", "condaDependenciesFile"), python.conda_dependencies_file, out)
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


def _image(docker: Any, rows: list[Row], scope: str) -> str:
    base = docker.base_image if docker is not None else None
    image = str(base) if base is not None else DEFAULT_IMAGE
    registry = docker.base_image_registry if docker is not None else None
    if base is not None and registry is not None and registry.address and not image.startswith(registry.address):
        image = f"{registry.address.rstrip('/')}/{image}"
    why = " (v1's default image is retired)" if base is None else ""
    rows.append(plain(scope, "environment.docker.baseImage", base, f"`environment.image: {image}`{why}"))
    if registry is not None and (registry.username or registry.password):
        rows.append(plain(scope, "environment.docker.baseImageRegistry credentials", "(withheld)",
                          "not written: give the workspace access to the registry instead"))
    if docker is None:
        return image
    if docker.enabled is not None:
        rows.append(plain(scope, "environment.docker.enabled", docker.enabled,
                          "v2 deployments always run in a container (no field)"))
    for key in ("arguments", "shared_volumes", "shm_size"):
        if getattr(docker, key) is not None:
            rows.append(plain(scope, f"environment.docker.{key}", getattr(docker, key),
                              "dropped: v2 deployments do not take docker run options"))
    return image
