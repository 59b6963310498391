"""The optional parts of recon a project may ask for, and the pip extra that installs each.

``pip install recon`` brings what the local provider and the file state need. A project that names
another provider kind or state backend needs that one's SDK, installed by an extra
(``pip install 'recon[azure]'``). ``require_extra`` checks, before anything is imported or done,
that the extra's modules can be found, and otherwise raises ``MissingExtraError`` naming the part,
what is missing and the pip command: a clean ``Error:`` line and exit 1, never a traceback.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from reconciler.model.errors import MissingExtraError

__all__ = ["EXTRAS", "Extra", "require_extra"]


@dataclass(frozen=True)
class Extra:
    """One pip extra: who needs it, the modules it brings (as imported) and their packages."""

    needed_by: str
    modules: tuple[str, ...]
    packages: str


EXTRAS: dict[str, Extra] = {
    "docker": Extra("the docker provider", ("docker",), "the Docker SDK for Python (docker)"),
    "kubernetes": Extra("the kubernetes provider", ("kubernetes",), "the Kubernetes Python client (kubernetes)"),
    "azure": Extra(
        "the azure provider",
        ("azure.core", "azure.mgmt.core", "azure.identity", "azure.storage.blob"),
        "the Azure SDKs (azure-core, azure-mgmt-core, azure-identity, azure-storage-blob)",
    ),
    "postgres": Extra("the postgres state backend", ("psycopg",), "psycopg 3 (psycopg[binary])"),
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def require_extra(name: str) -> None:
    """Raise ``MissingExtraError`` when a module of extra ``name`` cannot be imported."""
    extra = EXTRAS[name]
    missing = [m for m in extra.modules if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"{extra.needed_by} needs {extra.packages}, which is not installed (no module named "
            f"{missing[0]!r}): pip install 'recon[{name}]'",
            extra=name,
        )
