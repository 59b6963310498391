"""Docker builds a v2 environment can carry: a v1 ``baseDockerfile``, and v1's image with its
``extraDockerfileSteps`` written out as a Dockerfile the user (or Azure) can build.

Contract: each function returns the v2 ``environment`` (``{build: {path, dockerfile_path}}``) and
adds the build folder's files to ``files`` (path under the output folder -> text). Nothing is built.
"""

from __future__ import annotations

from typing import Any


def dockerfile_build(name: str, dockerfile: str, files: dict[str, str]) -> dict[str, Any]:
    """A v1 environment's own Dockerfile (``docker.baseDockerfile``), as the build of ``NAME-docker``."""
    folder = f"{name}-docker"
    files[f"{folder}/Dockerfile"] = dockerfile
    return {"build": {"path": folder, "dockerfile_path": "Dockerfile"}}


def steps_build(name: str, image: str, conda: str | None, steps: str, source: str,
                files: dict[str, str]) -> dict[str, Any]:
    """v1's image for an inference config with ``extraDockerfileSteps``: ``image``, the conda
    environment (``conda``: the conda file's text, or None) installed into it, then the steps, in the
    order v1 built them. ``source`` names where the steps came from, in a comment."""
    folder = f"{name}-docker"
    lines = [f"# Written by recon import-v1: the image v1 built for this service ({source}).",
             f"FROM {image}"]
    if conda is not None:
        files[f"{folder}/conda.yaml"] = conda
        lines += ["COPY conda.yaml /tmp/conda.yaml",
                  "RUN conda env update --name base --file /tmp/conda.yaml && conda clean --all --yes"]
    lines += ["# extraDockerfileSteps", steps.rstrip("\n")]
    files[f"{folder}/Dockerfile"] = "\n".join(lines) + "\n"
    return {"build": {"path": folder, "dockerfile_path": "Dockerfile"}}
