"""Environments as images.

- ``image`` alone: used as it is, after ``image_overrides``; pulled when absent. The instance host
  (providers/shared/runtime/host.py and host_scoring.py) is mounted read-only into its containers.
- ``image`` + ``conda_file``: a derived image ``recon-env:<digest12>`` built FROM the (overridden)
  image, with a virtualenv at ``/opt/recon/venv`` holding the conda file's pip-installable
  dependencies (the local provider's translation, ``venvs.pip_plan``) and the host copied to
  ``/opt/recon/`` (host.py and host_scoring.py).
- ``build: {path, dockerfile_path}``: built from the user's context as ``recon-env:<digest12>``.

Built images carry the labels ``recon.managed=true``, ``recon.workspace``, ``recon.environment`` and
are reused when their tag (a digest of everything that goes into them) exists. A process lock plus
a file lock per tag make one build per tag however many deployments (or applies) ask at once.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.docker.engine import Engine, mapped
from providers.shared import procs
from providers.shared.requirements import pip_plan
from providers.shared.runtime import host_files
from reconciler.model.errors import PermanentError
from reconciler.model.resources import EnvironmentAttrs

DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
#: what a deployment without an environment runs on: the base image, nothing built
NO_ENVIRONMENT: EnvironmentAttrs = {
    "name": "", "version": "", "anonymous": True, "image": None, "conda_file": None, "conda": None, "build": None,
    "inference_config": None, "os_type": "linux", "description": None, "tags": {}, "content_digest": "default",
}
BUILD_REVISION = "1"  # bump when the Dockerfile below changes meaning
EventSink = Callable[[str], None]

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class EnvImage:
    """The image an environment's instances run, and how."""

    tag: str
    built: bool  # made by recon (removed with the environment unless keep_images)
    host_inside: bool  # /opt/recon/host.py and `python` are in the image


def registry_of(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io (Docker Hub)"


def _tag_lock(tag: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(tag, threading.Lock())


class ImageBuilder:
    """Finds, pulls or builds the image of an environment."""

    def __init__(self, engine: Engine, overrides: dict[str, str], project_root: Path, lock_dir: Path,
                 workspace: str = "") -> None:
        self.engine = engine
        self.overrides = {str(k): str(v) for k, v in (overrides or {}).items()}
        self.project_root = project_root
        self.lock_dir = lock_dir
        self.workspace = workspace

    def base_of(self, attrs: EnvironmentAttrs) -> str:
        image = str(attrs.get("image") or DEFAULT_BASE_IMAGE)
        return self.overrides.get(image, image)

    def plan(self, attrs: EnvironmentAttrs) -> EnvImage:
        """Which image an environment maps to (nothing is pulled or built)."""
        if attrs.get("build"):
            return EnvImage(f"recon-env:{self._digest(attrs, 'build')}", True, False)
        if attrs.get("conda"):
            return EnvImage(f"recon-env:{self._digest(attrs, 'conda')}", True, True)
        return EnvImage(self.base_of(attrs), False, False)

    def _digest(self, attrs: EnvironmentAttrs, how: str) -> str:
        # A conda image is what goes into it (base, pip requirements, host), not the file's bytes:
        # two conda files that ask for the same packages share one image.
        content = (" ".join(pip_plan(attrs.get("conda"), add_runtime=False).requirements) if how == "conda"
                   else str(attrs.get("content_digest") or ""))
        h = hashlib.sha256()
        for part in (BUILD_REVISION, how, content, self.base_of(attrs)):
            h.update(part.encode() + b"\0")
        if how == "conda":
            for data in host_files().values():
                h.update(data)
        return h.hexdigest()[:12]

    def present(self, attrs: EnvironmentAttrs) -> bool:
        return self.engine.image_exists(self.plan(attrs).tag)

    def ensure(self, attrs: EnvironmentAttrs, address: str, emit: EventSink) -> EnvImage:
        """Pull or build the environment's image unless it is there; return it."""
        target = self.plan(attrs)
        if self.engine.image_exists(target.tag):
            return target
        with _tag_lock(target.tag), procs.file_lock(self.lock_dir / f"{target.tag.replace(':', '_')}.lock"):
            if self.engine.image_exists(target.tag):
                return target
            if not target.built:
                self._pull(target.tag, address, emit)
            elif attrs.get("build"):
                self._build_context(attrs, target.tag, address, emit)
            else:
                base = self.base_of(attrs)
                if not self.engine.image_exists(base):
                    self._pull(base, address, emit)
                self._build_conda(attrs, base, target.tag, address, emit)
        return target

    def remove(self, attrs: EnvironmentAttrs) -> None:
        """Remove the image recon built for an environment (in use elsewhere: kept)."""
        target = self.plan(attrs)
        if not target.built:
            return
        with mapped(f"remove image {target.tag}"):
            try:
                self.engine.client.images.remove(target.tag, noprune=False)
            except Exception as exc:
                text = str(exc)
                if "No such image" not in text and "conflict" not in text.lower() and "being used" not in text:
                    raise

    # -- pulling ---------------------------------------------------------------------------------
    def _pull(self, image: str, address: str, emit: EventSink) -> None:
        emit(f"pulling image {image}")
        repo, tag = _split(image)
        try:
            with mapped(f"pull {image}"):
                self.engine.api.pull(repo, tag=tag)
        except Exception as exc:
            raise PermanentError(
                f"{address}: image {image} is not on this engine and cannot be pulled from registry "
                f"{registry_of(image)} ({exc}). Pull or load it by hand, or map it to an image you have "
                f"with `provider: {{kind: docker, image_overrides: {{\"{image}\": \"<local image>\"}}}}` "
                "in recon.yaml"
            ) from exc
        emit(f"pulled {image}")

    # -- building --------------------------------------------------------------------------------
    def _labels(self, attrs: EnvironmentAttrs) -> dict[str, str]:
        return {"recon.managed": "true", "recon.workspace": self.workspace,
                "recon.environment": f"{attrs.get('name')}:{attrs.get('version')}",
                "recon.content_digest": str(attrs.get("content_digest") or "")}

    def _build_conda(self, attrs: EnvironmentAttrs, base: str, tag: str, address: str, emit: EventSink) -> None:
        plan = pip_plan(attrs.get("conda"), add_runtime=False)
        skipped = [f"{k}={v}" if v else k for k, v in sorted(plan.conda_only.items())]
        if skipped:
            emit("warning: conda-only entries not installed by pip (the image's own python runs): "
                 + ", ".join(skipped))
        dockerfile = "\n".join([
            f"FROM {base}",
            "COPY requirements.txt host.py host_scoring.py /opt/recon/",
            "RUN PY=\"$(command -v python3 || command -v python)\" && test -n \"$PY\" "
            "&& \"$PY\" -m venv /opt/recon/venv "
            "&& /opt/recon/venv/bin/python -m pip install --no-input --no-cache-dir "
            "--disable-pip-version-check -r /opt/recon/requirements.txt",
            "ENV PATH=/opt/recon/venv/bin:$PATH PYTHONUNBUFFERED=1",
            "",
        ])
        files = {"Dockerfile": dockerfile.encode(), "requirements.txt": "\n".join(plan.requirements).encode() + b"\n",
                 **host_files()}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        emit(f"building image {tag} FROM {base}: pip install " + " ".join(plan.requirements))
        self._run_build(address, tag, emit, fileobj=buf, custom_context=True, labels=self._labels(attrs))

    def _build_context(self, attrs: EnvironmentAttrs, tag: str, address: str, emit: EventSink) -> None:
        build: Mapping[str, Any] = attrs["build"] or {}  # called only for an environment with a build
        context = (self.project_root / str(build.get("path") or ".")).resolve()
        if not context.is_dir():
            raise PermanentError(f"{address}: build context {build.get('path')!r} is not a folder ({context})")
        dockerfile = str(build.get("dockerfile_path") or "Dockerfile")
        if not (context / dockerfile).is_file():
            raise PermanentError(f"{address}: {dockerfile} is not in the build context {context}")
        emit(f"building image {tag} from {context} ({dockerfile})")
        self._run_build(address, tag, emit, path=str(context), dockerfile=dockerfile, labels=self._labels(attrs))

    def _run_build(self, address: str, tag: str, emit: EventSink, **kwargs: Any) -> None:
        last: deque[str] = deque(maxlen=25)
        error: str | None = None
        with mapped(f"{address}: build {tag}"):
            for chunk in self.engine.api.build(tag=tag, rm=True, forcerm=True, decode=True, **kwargs):
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in str(text).splitlines():
                    if line.strip():
                        last.append(line)
                        emit(line)
                if chunk.get("error"):
                    error = str(chunk["error"]).strip()
                    last.append(error)
        if error is not None:
            raise PermanentError(f"{address}: building image {tag} failed: {error}", detail=list(last))
        emit(f"image {tag} built")


def _split(image: str) -> tuple[str, str]:
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"
