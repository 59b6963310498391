"""Which kind of resource a document declares, decided as Azure's own loader decides it.

azure-ai-ml reads a deployment as a Kubernetes deployment when its ``type`` is ``kubernetes`` (that
exact word) and as a managed one otherwise, whatever its ``$schema`` says; it reads an endpoint as
a Kubernetes endpoint when it has a ``compute``, and as a managed one otherwise. recon does the same,
so that the fields of the document (``resources``, ``instance_type``, ``egress_public_network_access``)
are read for the kind Azure will create. A ``$schema`` that names the other kind is a warning
(the file deploys, but not as its ``$schema`` says), never an error.

``$schema`` still tells a deployment from an endpoint, a model or an environment; a document
without one is classified by its fields.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model.checks import Problem

SCHEMA_HINT = "add `$schema: https://azuremlschemas.azureedge.net/latest/<kind>.schema.json` (kind: managedOnlineEndpoint, managedOnlineDeployment, kubernetesOnlineEndpoint, kubernetesOnlineDeployment, model, environment), or exclude the file in recon.yaml (`exclude: [path/glob]`)"
_SCHEMA_KINDS = {
    "managedonlineendpoint": "managed_endpoint",
    "managedonlinedeployment": "managed_deployment",
    "kubernetesonlineendpoint": "kubernetes_endpoint",
    "kubernetesonlinedeployment": "kubernetes_deployment",
    "model": "model",
    "environment": "environment",
}
_SCHEMA_RE = re.compile(r"([A-Za-z]+)\.schema\.json\s*$")
_K8S_ONLY = ("resources",)  # a managed deployment with these was meant to be a Kubernetes one


def deployment_kind(data: dict[str, Any]) -> str:
    """azure-ai-ml's ``OnlineDeployment._load``: ``type: kubernetes`` or managed."""
    return "kubernetes_deployment" if data.get("type") == "kubernetes" else "managed_deployment"


def endpoint_kind(data: dict[str, Any]) -> str:
    """azure-ai-ml's ``OnlineEndpoint._load``: a ``compute`` makes a Kubernetes endpoint."""
    return "kubernetes_endpoint" if data.get("compute") else "managed_endpoint"


def classify(run: LoadRun, f: LoadedFile) -> str | None:
    """The document's kind; None (and an error, or a warning for an empty file) if there is none."""
    data = f.data
    if data is None:
        run.warn(f, (), "empty YAML file ignored", "delete it or exclude it in recon.yaml")
        return None
    if not isinstance(data, dict):
        run.error(f, (), f"a resource document must be a mapping, not a {type(data).__name__}", SCHEMA_HINT)
        return None
    declared = data.get("$schema")
    if declared is None:
        guessed = _guess_kind(run, f, data)
        if guessed == "managed_deployment" and _miscased(data):
            run.warn(f, ("type",), f"type: {data['type']} is read as a managed deployment by Azure's loader",
                     _MISCASED_FIX)
        return guessed
    m = _SCHEMA_RE.search(str(declared))
    kind = _SCHEMA_KINDS.get(m.group(1).lower()) if m else None
    if kind is None:
        run.error(
            f,
            ("$schema",),
            f"{declared!r} is not a kind recon manages",
            "recon reads managed/kubernetes online endpoints and deployments, models and "
            "environments; exclude other files in recon.yaml (`exclude: [glob]`)",
        )
        return None
    actual = _by_fields(kind, data)
    if actual != kind:
        _contradiction(run, f, kind, actual, data)
    return actual


def _by_fields(kind: str, data: dict[str, Any]) -> str:
    if kind.endswith("_deployment"):
        return deployment_kind(data)
    if kind.endswith("_endpoint"):
        return endpoint_kind(data)
    return kind


def _contradiction(run: LoadRun, f: LoadedFile, said: str, actual: str, data: dict[str, Any]) -> None:
    flavour, other = actual.split("_")[0], said.split("_")[0]
    if actual.endswith("_deployment"):
        why = f"type: {data['type']}" if "type" in data else "it has no `type: kubernetes`"
        fix = "add `type: kubernetes`" if flavour == "managed" else "remove `type: kubernetes`"
        fix = _MISCASED_FIX if _miscased(data) else fix
    else:
        why = "it has a compute" if flavour == "kubernetes" else "it has no compute"
        fix = "add `compute: azureml:NAME`" if flavour == "managed" else "remove compute"
    run.warn(
        f,
        ("$schema",),
        f"$schema says {other}, but {why}: Azure's loader reads a {flavour} "
        f"{actual.split('_')[1]}, and so does recon",
        f"{fix} to make it {other}, or make $schema say {flavour}",
    )


_MISCASED_FIX = "write `type: kubernetes` in lower case: Azure reads any other spelling as managed"


def _miscased(data: dict[str, Any]) -> bool:
    kind = data.get("type")
    return isinstance(kind, str) and kind.lower() == "kubernetes" and kind != "kubernetes"


def _guess_kind(run: LoadRun, f: LoadedFile, data: dict[str, Any]) -> str | None:
    keys = set(data)
    if "endpoint_name" in keys:
        return deployment_kind(data)
    if "compute" in keys:
        return endpoint_kind(data)
    if keys & {"auth_mode", "traffic", "mirror_traffic", "public_network_access", "identity"}:
        return "managed_endpoint"
    envish = keys & {"image", "build", "conda_file", "inference_config", "os_type"}
    if envish and "path" not in keys:
        return "environment"
    if "path" in keys and not envish:
        return "model"
    run.error(
        f,
        (),
        "cannot tell which kind of resource this file declares (fields: "
        + ", ".join(sorted(map(str, keys)))
        + ")",
        SCHEMA_HINT,
    )
    return None


def explain(kind: str, problem: Problem) -> Problem:
    """A field of the other kind of deployment gets a hint that says how the kind is decided."""
    if kind == "managed_deployment" and problem.path[:1] == _K8S_ONLY and problem.message.startswith("unknown"):
        return Problem(
            problem.path,
            f"{problem.message}: a managed deployment has no {problem.path[0]}",
            "a Kubernetes deployment says `type: kubernetes` (Azure reads the kind from type, not from $schema)",
        )
    return problem
