"""Helpers for tests against the real Docker engine: skip rules and cleanup by label."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

BASE_IMAGE = "local/py-base:bookworm"
AZURE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
OVERRIDES = {AZURE_IMAGE: BASE_IMAGE}


def client() -> Any:
    import docker

    return docker.from_env(timeout=60)


def require_engine() -> None:
    """Skip when no engine answers, outside CI only; in CI (CI=true) a missing engine fails."""
    try:
        c = client()
        c.ping()
        present = bool(c.images.list(name=BASE_IMAGE))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but no Docker engine answers ({exc}); run .ci/setup-docker.sh")
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}); start dockerd to run the Docker tests")
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"the base image {BASE_IMAGE} is missing; run .ci/build-base-image.sh")
        pytest.skip(f"the base image {BASE_IMAGE} is missing (build it with .ci/build-base-image.sh)")


def labelled_containers(state_dir: Path) -> list[Any]:
    return client().containers.list(all=True, filters={"label": f"recon.state_dir={state_dir}"})


def labelled_networks(state_dir: Path) -> list[Any]:
    return client().networks.list(filters={"label": f"recon.state_dir={state_dir}"})


def remove_labelled(state_dir: Path) -> None:
    """Every container and network a test project left behind (by its recon.state_dir label)."""
    for c in labelled_containers(state_dir):
        c.remove(force=True)
    for n in labelled_networks(state_dir):
        n.remove()
