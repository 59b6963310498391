"""The azureml-core side of the oracle test (tests/migrate/test_oracle.py): run by the interpreter of
.ci/setup-azureml-core.sh, which has azureml-core and nothing of recon.

stdin: a JSON list of cases ``{"id", "kind", "data", "cwd"}``; stdout: a JSON list of
``{"id", "ok", "error", "values"}``. ``kind``:

- ``dc``: a deploymentconfig.json, through ``deploy_config_dict_to_obj`` (what ``az ml model deploy
  --dc`` called; the file's tags, properties and description passed as the CLI passed its options),
  then ``validate_configuration()``;
- ``kwargs``: ``AksWebservice.deploy_configuration(**data)`` (``AksEndpoint``'s when the kwargs name a
  version), then ``validate_configuration()``;
- ``ic``: an inferenceconfig.json as ``InferenceConfig`` keyword arguments, constructed (which validates
  it) in ``cwd``, the folder the v1 command ran in; ``values`` holds the resolved paths and, where
  azureml-core turns the flat keys into an environment (``convert_parts_to_environment``), its image,
  conda file and variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from typing import Any

warnings.simplefilter("ignore")

import azureml.core.webservice  # noqa: E402  (before _util: azureml's own import order)
from azureml._model_management._util import (  # noqa: E402
    convert_parts_to_environment,
    deploy_config_dict_to_obj,
    joinPath,
)
from azureml.core import Environment  # noqa: E402
from azureml.core.container_registry import ContainerRegistry  # noqa: E402
from azureml.core.model import InferenceConfig  # noqa: E402

IC_KWARGS = {"entryScript": "entry_script", "runtime": "runtime", "condaFile": "conda_file",
             "extraDockerfileSteps": "extra_docker_file_steps", "extraDockerFileSteps": "extra_docker_file_steps",
             "sourceDirectory": "source_directory", "enableGpu": "enable_gpu", "baseImage": "base_image",
             "baseImageRegistry": "base_image_registry", "cudaVersion": "cuda_version",
             "description": "description", "environment": "environment"}


def _plain(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and isinstance(v, (str, int, float, bool,
                                                                                          dict, list, type(None)))}


def _deploy_config(case: dict[str, Any]) -> dict[str, Any]:
    data = case["data"]
    if case["kind"] == "dc":
        obj = deploy_config_dict_to_obj(data, data.get("tags"), data.get("properties"), data.get("description"))
    else:
        endpoint = "version_name" in data or "traffic_percentile" in data
        cls = azureml.core.webservice.AksEndpoint if endpoint else azureml.core.webservice.AksWebservice
        obj = cls.deploy_configuration(**data)
    obj.validate_configuration()
    return {"type": type(obj).__name__, **_plain(obj)}


def _registry(value: Any) -> ContainerRegistry | None:
    if value is None:
        return None
    registry = ContainerRegistry()
    if isinstance(value, str):
        registry.address = value
    else:
        registry.address, registry.username, registry.password = (value.get(k) for k in
                                                                  ("address", "username", "password"))
    return registry


def _inference_config(case: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, value in case["data"].items():
        name = IC_KWARGS.get(key, key)
        if name in ("schemaFile", "schema_file"):
            continue  # not an InferenceConfig argument
        kwargs[name] = value
    if kwargs.get("environment") is not None:
        kwargs["environment"] = Environment._deserialize_and_add_to_object(kwargs["environment"])
    kwargs["base_image_registry"] = _registry(kwargs.get("base_image_registry"))
    os.chdir(case["cwd"])
    ic = InferenceConfig(**kwargs)
    values: dict[str, Any] = {
        "entry_script": os.path.realpath(joinPath(ic.source_directory, ic.entry_script)),
        "source_directory": ic.source_directory and os.path.realpath(ic.source_directory),
    }
    converted, _ = convert_parts_to_environment("oracle", ic)
    env = converted.environment
    if env is not None:
        values["image"] = env.docker.base_image
        values["dockerfile"] = env.docker.base_dockerfile
        values["variables"] = env.environment_variables
        deps = env.python.conda_dependencies
        values["conda"] = deps._conda_dependencies if deps is not None and not env.python.user_managed_dependencies \
            else None
    if ic.conda_file:
        values["conda_file"] = os.path.realpath(joinPath(ic.source_directory, ic.conda_file))
    return values


def main() -> None:
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # azureml prints notices on stdout
                values = _inference_config(case) if case["kind"] == "ic" else _deploy_config(case)
            results.append({"id": case["id"], "ok": True, "error": None, "values": values})
        except Exception as exc:  # the verdict is the point: any refusal is "not accepted"
            cause = exc.__cause__ or exc
            results.append({"id": case["id"], "ok": False, "values": None,
                            "error": f"{type(cause).__name__}: {str(cause).strip().splitlines()[0:2]}"})
    json.dump(results, sys.stdout, default=str)


if __name__ == "__main__":
    main()
