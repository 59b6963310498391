"""What a document may name outside the project, as Azure's own tools read it.

A model's ``path`` is a URI when azure-ai-ml treats it as one (``is_url`` or ``is_mlflow_uri``): a
scheme and a host (``https://``, ``wasbs://``, ``abfss://``, ``azureml://datastores/...``,
``azureml://jobs/...``), or an MLflow URI (``runs:/RUN/PATH``, ``models:/NAME/VERSION``). Azure
registers such a model without uploading anything.

A deployment's ``code_configuration.code`` names a registered code asset when it starts with
``azureml:`` (the strings the Azure ML CLI v2 does not look for on disk): ``azureml:NAME:VERSION``,
``azureml:NAME@latest``, ``azureml:/subscriptions/.../codes/NAME/versions/V`` and
``azureml://registries/REGISTRY/codes/NAME/versions/V``.

Both are Azure's to fetch. The providers that run instances from the project's own files
(``RUNS_PROJECT_FILES``: local, docker, kubernetes) cannot: a plan for them refuses such a path at
the field that names it. The azure provider passes the reference through in its ARM bodies.

Asset names and versions are joined into references (``azureml:NAME:VERSION``, ``NAME@latest``):
``unsplittable`` says why one cannot be (a ``:``, ``@`` or ``/`` inside a name or a version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

RUNS_PROJECT_FILES = frozenset({"local", "docker", "kubernetes"})

_MLFLOW = re.compile(r"^(runs|models):/")
_SEGMENT = r"[^/:@\s]+"
_ARM_CODE = re.compile(
    rf"^/subscriptions/{_SEGMENT}/resourceGroups/{_SEGMENT}/providers/Microsoft\.MachineLearningServices/"
    rf"workspaces/{_SEGMENT}/codes/{_SEGMENT}/versions/{_SEGMENT}$",
    re.IGNORECASE,
)
_REGISTRY_CODE = re.compile(rf"^azureml://registries/{_SEGMENT}/codes/{_SEGMENT}/versions/{_SEGMENT}$")
_NAMED = re.compile(rf"^azureml:({_SEGMENT})(?::({_SEGMENT})|@({_SEGMENT}))$")
CODE_FORMS = (
    "azureml:NAME:VERSION, azureml:NAME@latest, azureml://registries/REGISTRY/codes/NAME/versions/VERSION, "
    "an ARM id (azureml:/subscriptions/.../codes/NAME/versions/VERSION), or a folder"
)


def is_uri(value: str) -> bool:
    """Whether azure-ai-ml takes ``value`` as a URI, not a local path (its ``is_url``: a scheme and a
    host; its ``is_mlflow_uri``: ``runs:/`` or ``models:/``)."""
    if _MLFLOW.match(value):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def is_code_asset(value: str) -> bool:
    """Whether ``code_configuration.code`` names a registered code asset rather than a folder: it
    starts with ``azureml:`` (an ARM id without it is a path to the Azure ML CLI, which then fails to
    open the scoring script under it)."""
    return value.startswith("azureml:")


@dataclass(frozen=True)
class CodeAsset:
    """A registered code asset: ``reference`` as written; ``name``/``version`` when it names them
    in the workspace (``version`` None for ``@latest``), else the ARM id or registry URI is all."""

    reference: str
    name: str | None = None
    version: str | None = None


def code_asset(value: str) -> CodeAsset | str:
    """The code asset ``value`` names, or what is wrong with it (a message; the hint is ``CODE_FORMS``)."""
    if _REGISTRY_CODE.match(value) or (value.startswith("azureml:/") and _ARM_CODE.match(value[len("azureml:"):])):
        return CodeAsset(value)
    if value.startswith(("azureml://", "azureml:/")):
        return f"{value!r} is not a code asset's ARM id or registry URI"
    m = _NAMED.match(value)
    if m is None:
        body = value.removeprefix("azureml:")
        if body and re.fullmatch(_SEGMENT, body):
            return f"{value!r} names no version"
        return f"{value!r} does not split into one name and one version"
    name, version, label = m.groups()
    if label is not None and label != "latest":
        return f"label @{label} is not supported (only @latest)"
    return CodeAsset(value, name, version)


def unsplittable(text: str) -> str | None:
    """Why ``text`` (an asset name or version) cannot stand in ``azureml:NAME:VERSION``; None if it can."""
    for char, what in ((":", "a colon"), ("@", "an @"), ("/", "a slash")):
        if char in text:
            return f"{what} ({char!r})"
    return None


__all__ = [
    "CODE_FORMS",
    "CodeAsset",
    "RUNS_PROJECT_FILES",
    "code_asset",
    "is_code_asset",
    "is_uri",
    "unsplittable",
]
