"""A model's and an environment's canonical attributes: paths, content digests, conda files.

A model's path is a file or folder of the project (digested) or a URI Azure fetches itself; an
environment is an image, a conda file (a file of the project or written inline, checked as a conda
environment) and a build context (a folder of the project, digested, or a URL). The content digest
is what versions an asset declared without one and what registered versions must never change.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from reconciler.load.canonical import content_digest, extra, is_remote, text
from reconciler.load.digests import Digests
from reconciler.load.remote import RemoteRules
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import conda, schema
from reconciler.model.resources import BuildContext, EnvironmentAttrs, ModelAttrs


class AssetAttributes:
    """Builds the attributes of models and environments for one load (problems go to ``run``)."""

    def __init__(self, run: LoadRun, files: Digests, remote: RemoteRules) -> None:
        self.run = run
        self.files = files
        self.remote = remote

    def model(
        self, f: LoadedFile, doc: schema.InlineModelDoc, prefix: tuple[Any, ...]
    ) -> ModelAttrs | None:
        """A model's attributes; the builder sets name, version and anonymous."""
        where = (*prefix, "path")
        remote = self.remote.model_path(f, where, doc.path, anonymous=bool(prefix) and doc.name is None)
        if remote is None:
            return None
        if remote:
            rel, digest = doc.path, "sha256:" + hashlib.sha256(doc.path.encode()).hexdigest()
        else:
            target = self.files.local(f, doc.path, where, "model", None)
            found = self.files.digest(f, where, "model", target) if target is not None else None
            if target is None or found is None:
                return None
            rel, digest = self.run.rel(target), found
        attrs = {
            "path": rel,
            "type": (doc.type or "custom_model").lower(),
            "description": doc.description,
            "tags": {str(k): text(v) for k, v in (doc.tags or {}).items()},
            "content_digest": digest,
            **extra(doc, "system_metadata", "default_deployment_template", "allowed_deployment_templates"),
            "name": "",
            "version": "",
            "anonymous": False,
        }
        return cast(ModelAttrs, attrs)

    def environment(
        self, f: LoadedFile, doc: schema.InlineEnvironmentDoc, prefix: tuple[Any, ...]
    ) -> EnvironmentAttrs | None:
        """An environment's attributes; the builder sets name, version and anonymous."""
        ok = True
        conda_rel = conda = conda_digest = build_digest = None
        build: BuildContext | None = None
        if isinstance(doc.conda_file, dict):  # the conda environment written inline
            conda, conda_digest = self._inline_conda(f, doc.conda_file, (*prefix, "conda_file"))
            ok = conda is not None
        elif isinstance(doc.conda_file, str):
            target = self.files.local(f, doc.conda_file, (*prefix, "conda_file"), "conda", False)
            if target is None:
                ok = False
            else:
                conda = self.files.conda_env(f, target, (*prefix, "conda_file"))
                if conda is None:
                    ok = False
                else:
                    conda_rel, conda_digest = self.run.rel(target), self.files.file_digest(target)
        if doc.build is not None:
            dockerfile = doc.build.dockerfile_path or "Dockerfile"
            if is_remote(doc.build.path):
                build = {"path": doc.build.path, "dockerfile_path": dockerfile}
                build_digest = doc.build.path
            else:
                target = self.files.local(f, doc.build.path, (*prefix, "build", "path"), "build context", True)
                if target is None:
                    ok = False
                else:
                    build = {"path": self.run.rel(target), "dockerfile_path": dockerfile}
                    build_digest = self.files.digest(f, (*prefix, "build", "path"), "build context", target)
                    ok = ok and build_digest is not None
        if not ok:
            return None
        content = {
            "image": doc.image,
            "conda": conda_digest,
            "build": build_digest,
            "dockerfile_path": build["dockerfile_path"] if build else None,
        }
        attrs = {
            "image": doc.image,
            "conda_file": conda_rel,
            "conda": conda,
            "build": build,
            "inference_config": doc.inference_config.model_dump(exclude_none=True)
            if doc.inference_config
            else None,
            "os_type": (doc.os_type or "linux").lower(),
            "description": doc.description,
            "tags": {str(k): text(v) for k, v in (doc.tags or {}).items()},
            "content_digest": content_digest(content),
            **extra(doc, "auto_delete_setting"),
            "name": "",
            "version": "",
            "anonymous": False,
        }
        return cast(EnvironmentAttrs, attrs)

    def _inline_conda(self, f: LoadedFile, value: dict[str, Any], where: tuple[Any, ...]) -> tuple[Any, Any]:
        """An inline ``conda_file``: checked as a conda file is; its digest is its content's."""
        problems = conda.check_conda(value)
        if problems:
            first = problems[0]
            self.run.error(f, (*where, *first.path), f"not a conda environment: {first.message}", first.hint)
            return None, None
        return value, content_digest(value)
