"""Validated documents -> canonical ``Resource`` values, and the rules across documents.

The loader (``reconciler.load.loader``) reads, parses, classifies and validates each file on its own;
``Builder`` turns what passed into the canonical attributes ``reconciler.model.resources`` documents
(defaults filled, values normalised, paths relative to the project, content digests of model
folders, code folders, conda files and build contexts), resolves asset references
(``azureml:NAME:VERSION``, ``@latest``, inline assets versioned by their content) against the
declared and the recorded assets, and applies the rules that need several documents: one
declaration per address, deployments of declared endpoints of the same kind, traffic and mirror
rules, and the service's counts. Problems go to the run's diagnostics with file and line.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from reconciler.load import inputs, sources
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import catalog, conda, schema
from reconciler.model.resources import (
    DesiredState,
    Resource,
    SourceRef,
    asset_address,
    canonical_json,
    deployment_address,
    endpoint_address,
    fast_model,
)
from reconciler.model.settings import ProjectSettings
from reconciler.state.document import State

_SKIP_IN_DIGEST = frozenset({"__pycache__", ".git", ".ipynb_checkpoints"})


def _s(value: Any) -> str:
    """Tag and environment-variable values are strings in Azure; YAML booleans read as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _is_remote(value: str) -> bool:
    return "://" in value or value.startswith("azureml:")


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class Builder:
    """Turns validated documents into canonical ``Resource`` values and applies cross-document rules."""

    def __init__(self, run: LoadRun, settings: ProjectSettings, recorded: State | None) -> None:
        self.run = run
        self.settings = settings
        self.resources: dict[str, Resource] = {}
        self.origin: dict[str, tuple[LoadedFile, int]] = {}
        self.declared: dict[str, dict[str, set[str]]] = {"model": {}, "environment": {}}
        self.recorded: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"model": {}, "environment": {}}
        self.endpoints: dict[str, LoadedFile] = {}
        self.deployments: dict[str, list[LoadedFile]] = {}
        for res in recorded.resources.values() if recorded else ():
            if res.type in self.recorded:
                name, version = res.attributes.get("name"), res.attributes.get("version")
                if name is not None and version is not None and not res.attributes.get("anonymous"):
                    self.recorded[res.type].setdefault(str(name), {})[str(version)] = res.attributes

    # -- orchestration

    def build(self, documents: list[LoadedFile]) -> DesiredState:
        by_kind: dict[str, list[LoadedFile]] = {}
        for f in documents:
            by_kind.setdefault(f.kind.split("_")[-1] if f.kind else "", []).append(f)
        assets = by_kind.get("model", []) + by_kind.get("environment", [])
        for f in assets:  # explicit versions first: they are what unversioned ones count from
            if f.doc.version is not None:
                self.declared[f.kind or ""].setdefault(f.doc.name, set()).add(str(f.doc.version))
        for f in assets:
            self._asset(f, f.doc, (), f.kind or "", f.doc.name, anonymous=False)
        for f in by_kind.get("endpoint", []):
            self._endpoint(f, f.doc)
        for f in by_kind.get("deployment", []):
            self._deployment(f, f.doc)
        self._cross_checks()
        return DesiredState(
            root=str(self.run.root),
            workspace=self.settings.workspace,
            provider=self.settings.provider,
            quota=self.settings.quota,
            instance_types=self.settings.instance_types,
            state_settings=self.settings.state,
            resources=dict(sorted(self.resources.items())),
            warnings=[d.to_dict() for d in self.run.diagnostics if d.severity == "warning"],
        )

    def _add(
        self,
        f: LoadedFile,
        address: str,
        rtype: Any,
        name: str,
        attrs: dict[str, Any],
        depends_on: tuple[str, ...] = (),
        path: tuple[Any, ...] = ("name",),
    ) -> None:
        if address in self.origin:
            other, other_line = self.origin[address]
            if other is not f:
                self.run.error(
                    f,
                    path,
                    f"{address} is already declared in {other.rel}:{other_line}",
                    "each resource is declared once; rename or remove one of the two",
                )
            return
        line = f.name_line if path == ("name",) else f.line_of(path)
        self.origin[address] = (f, line or 1)
        self.resources[address] = fast_model(
            Resource,
            address=address,
            type=rtype,
            name=name,
            attributes=attrs,
            depends_on=depends_on,
            source=fast_model(SourceRef, file=f.rel, line=line),
        )

    # -- paths and digests

    def _local(
        self,
        f: LoadedFile,
        value: str,
        path: tuple[Any, ...],
        what: str,
        want_dir: bool | None,
        base: Path | None = None,
    ) -> Path | None:
        """Resolve ``value`` against the YAML file's folder; an error when it is missing or is not
        something recon reads (``inputs.check_path``: a regular file or a folder, no system folder)."""
        if "\0" in value:  # no file has such a name, and the OS refuses to look one up
            self.run.error(f, path, f"{what} path contains a NUL character", "remove the \\0 from the path")
            return None
        key = (str(base) if base is not None else f.folder, value)
        target = self.run.resolved.get(key)
        if target is None:
            target = self.run.resolved[key] = Path(os.path.normpath(os.path.join(*key)))
        st = self.run.stat(target)
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        if st is not None and (want_dir is True and not is_dir or want_dir is False and is_dir):
            st = None
        elif st is not None and (target not in self.run.checked):
            try:
                inputs.check_path(target, want_dir)
                self.run.checked.add(target)
            except inputs.Refused as exc:
                self.run.error(f, path, f"{what} path {self.run.rel(target)} {exc.message}", exc.hint)
                return None
        if st is None:
            kind = {True: "folder", False: "file", None: "file or folder"}[want_dir]
            if os.path.islink(target):  # a dangling link or a loop: say which
                try:
                    inputs.check_path(target, want_dir)
                except inputs.Refused as exc:
                    self.run.error(f, path, f"{what} path {self.run.rel(target)} {exc.message}", exc.hint)
                    return None
            self.run.error(
                f,
                path,
                f"{what} {kind} not found: {self.run.rel(target)}",
                f"create it, or fix the path (relative to {self.run.rel(base if base is not None else f.folder)})",
            )
            return None
        return target

    def _file_digest(self, path: Path, walked: bool = False) -> str:
        st = self.run.stat(path)
        key = (str(path), st.st_size if st else -1, st.st_mtime_ns if st else -1)
        cached = self.run.file_digests.get(key)
        if cached is None:
            h = hashlib.sha256()
            for chunk in inputs.chunks(path, walked):  # a regular file only (``inputs.Refused`` otherwise)
                h.update(chunk)
            cached = self.run.file_digests[key] = h.hexdigest()
        return cached

    def _digest(self, f: LoadedFile, where: tuple[Any, ...], what: str, path: Path) -> str | None:
        """``_tree_digest`` of a model, code or build path; None (and an error at ``where``) when
        the folder holds something recon does not read or is too big."""
        try:
            return self._tree_digest(path)
        except inputs.TreeRefused as exc:
            shown = self.run.rel(path) + (f"/{exc.member}" if exc.member else "")
            self.run.error(f, where, f"{what} path {shown} {exc.message}", exc.hint)
        except inputs.Refused as exc:
            self.run.error(f, where, f"{what} path {self.run.rel(path)} {exc.message}", exc.hint)
        return None

    def _tree_digest(self, path: Path) -> str:
        """sha256 over the relative names and contents of a file or a folder (caches excluded).
        Raises ``inputs.Refused`` for a folder ``inputs.scan_tree`` refuses or a file it cannot read."""
        key = str(path)
        if key in self.run.tree_digests:
            return self.run.tree_digests[key]
        h = hashlib.sha256()
        limits = self.settings.limits
        if path.is_file():
            size, limit = path.stat().st_size, limits["tree_gb"]
            if size > limit * inputs.GB:  # checked before a byte is read (a sparse file reads forever)
                raise inputs.Refused(f"is {size / inputs.GB:.1f} GB, more than {limit} GB", inputs.TREE_BYTES_HINT)
            h.update(f"{path.name}\0{self._file_digest(path)}\n".encode())
        else:
            files = inputs.scan_tree(
                path, limits["tree_files"], limits["tree_gb"] * inputs.GB, _SKIP_IN_DIGEST, ".pyc"
            )
            for rel, full in files:
                try:
                    digest = self._file_digest(full, walked=True)
                except inputs.Refused as exc:
                    raise inputs.TreeRefused(rel, exc.message, exc.hint) from None
                h.update(f"{rel}\0{digest}\n".encode())
        digest = self.run.tree_digests[key] = "sha256:" + h.hexdigest()
        return digest

    def _conda(self, f: LoadedFile, path: Path, where: tuple[Any, ...]) -> Any:
        """The conda environment at ``path``, checked (``reconciler.model.conda``); None and an error at
        ``where`` when it cannot be read or is not one. Messages never quote the file."""
        key = str(path)
        if key not in self.run.conda_cache:
            self.run.conda_cache[key] = None
            rel, limits = self.run.rel(path), self.settings.limits
            try:
                data = sources.load_data(path, limits["yaml_file_mb"] * inputs.MB, limits["yaml_nodes"])
            except inputs.Refused as exc:
                self.run.error(f, where, f"conda file {rel} {exc.message}", exc.hint)
                return None
            except ValueError as exc:
                self.run.error(f, where, f"conda file {rel} is not valid YAML: {exc}", "fix the conda environment file")
                return None
            problems = conda.check_conda(data)
            if problems:
                source = sources.SourceFile(path, rel, limits["yaml_file_mb"] * inputs.MB)
                first = problems[0]
                line = source.line_of(first.path)
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                self.run.error(
                    f,
                    where,
                    f"conda file {rel} is not a conda environment: line {line}: {first.message}{more}",
                    first.hint,
                )
                return None
            self.run.conda_cache[key] = data
        return self.run.conda_cache[key]

    # -- assets

    def _asset(
        self,
        f: LoadedFile,
        doc: Any,
        prefix: tuple[Any, ...],
        kind: str,
        name: str | None,
        anonymous: bool,
        owner: str = "",
    ) -> str | None:
        """Add a model or environment; returns its address (None when it is invalid)."""
        attrs = self._model_attrs(f, doc, prefix) if kind == "model" else self._env_attrs(f, doc, prefix)
        if attrs is None:
            return None
        digest = attrs["content_digest"]
        if anonymous or name is None:
            name, version = owner, digest.split(":", 1)[1][:12]
            anonymous = True
        elif doc.version is not None:
            version = str(doc.version)
        else:
            version = self._pick_version(kind, name, digest)
            self.declared[kind].setdefault(name, set()).add(version)
        attrs.update(name=name, version=version, anonymous=anonymous)
        address = asset_address(kind, name, version)
        if anonymous and address in self.origin:  # its deployment is declared twice: reported there
            return address
        self._add(f, address, kind, name, attrs, path=(*prefix, "name") if prefix else ("name",))
        return address

    def _pick_version(self, kind: str, name: str, digest: str) -> str:
        """The recorded version with this content, else the next integer after every known one."""
        recorded = self.recorded[kind].get(name, {})
        for version, attrs in recorded.items():
            if attrs.get("content_digest") == digest:
                return version
        known = [int(v) for v in (*recorded, *self.declared[kind].get(name, ())) if v.isdigit()]
        return str(max(known, default=0) + 1)

    def _model_attrs(
        self, f: LoadedFile, doc: schema.InlineModelDoc, prefix: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        where = (*prefix, "path")
        if _is_remote(doc.path):
            rel, digest = doc.path, "sha256:" + hashlib.sha256(doc.path.encode()).hexdigest()
        else:
            target = self._local(f, doc.path, where, "model", None)
            found = self._digest(f, where, "model", target) if target is not None else None
            if target is None or found is None:
                return None
            rel, digest = self.run.rel(target), found
        return {
            "path": rel,
            "type": (doc.type or "custom_model").lower(),
            "description": doc.description,
            "tags": {str(k): _s(v) for k, v in (doc.tags or {}).items()},
            "content_digest": digest,
        }

    def _env_attrs(
        self, f: LoadedFile, doc: schema.InlineEnvironmentDoc, prefix: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        ok = True
        conda_rel = conda = conda_digest = build = build_digest = None
        if doc.conda_file is not None:
            target = self._local(f, doc.conda_file, (*prefix, "conda_file"), "conda", False)
            if target is None:
                ok = False
            else:
                conda = self._conda(f, target, (*prefix, "conda_file"))
                if conda is None:
                    ok = False
                else:
                    conda_rel, conda_digest = self.run.rel(target), self._file_digest(target)
        if doc.build is not None:
            dockerfile = doc.build.dockerfile_path or "Dockerfile"
            if _is_remote(doc.build.path):
                build = {"path": doc.build.path, "dockerfile_path": dockerfile}
                build_digest = doc.build.path
            else:
                target = self._local(f, doc.build.path, (*prefix, "build", "path"), "build context", True)
                if target is None:
                    ok = False
                else:
                    build = {"path": self.run.rel(target), "dockerfile_path": dockerfile}
                    build_digest = self._digest(f, (*prefix, "build", "path"), "build context", target)
                    ok = ok and build_digest is not None
        if not ok:
            return None
        content = {
            "image": doc.image,
            "conda": conda_digest,
            "build": build_digest,
            "dockerfile_path": build["dockerfile_path"] if build else None,
        }
        return {
            "image": doc.image,
            "conda_file": conda_rel,
            "conda": conda,
            "build": build,
            "inference_config": doc.inference_config.model_dump(exclude_none=True)
            if doc.inference_config
            else None,
            "os_type": (doc.os_type or "linux").lower(),
            "description": doc.description,
            "tags": {str(k): _s(v) for k, v in (doc.tags or {}).items()},
            "content_digest": "sha256:" + hashlib.sha256(canonical_json(content).encode()).hexdigest(),
        }

    def _reference(self, f: LoadedFile, kind: str, ref: str, path: tuple[Any, ...]) -> str | None:
        """``azureml:NAME:VERSION`` / ``azureml:NAME@latest`` -> an address; registry/ARM ids stay verbatim."""
        if ref.startswith("azureml://") or ref.startswith("azureml:/"):
            self.run.warn(
                f,
                path,
                f"{ref} is an external {kind} reference",
                f"local providers cannot materialise it; declare the {kind} in the project to run it locally",
            )
            return ref
        if not ref.startswith("azureml:"):
            self.run.error(
                f,
                path,
                f"{ref!r} is not a {kind} reference",
                f"write azureml:NAME:VERSION or azureml:NAME@latest, or define the {kind} inline",
            )
            return None
        body = ref[len("azureml:") :]
        if "@" in body:
            name, label = body.split("@", 1)
            if label != "latest":
                self.run.error(
                    f,
                    path,
                    f"label @{label} is not supported",
                    "use azureml:NAME@latest or azureml:NAME:VERSION",
                )
                return None
            versions = self.declared[kind].get(name, set()) | set(self.recorded[kind].get(name, {}))
            if not versions:
                return self._unresolved(f, kind, ref, name, path)
            version = max(versions, key=_version_key)
        elif ":" in body:
            name, version = body.split(":", 1)
            if kind == "model" and not (version.isdigit() and int(version) >= 1):
                self.run.error(
                    f,
                    path,
                    f"model version {version!r} is not a positive integer",
                    "use azureml:NAME:1, :2 ...",
                )
                return None
        else:
            self.run.error(
                f, path, f"{ref!r} names no version", f"write azureml:{body}:VERSION or azureml:{body}@latest"
            )
            return None
        if version in self.declared[kind].get(name, ()) or version in self.recorded[kind].get(name, {}):
            return asset_address(kind, name, version)
        return self._unresolved(f, kind, ref, name, path)

    def _unresolved(self, f: LoadedFile, kind: str, ref: str, name: str, path: tuple[Any, ...]) -> str | None:
        if kind == "environment" and name.lower().startswith("azureml-"):
            self.run.warn(
                f,
                path,
                f"{ref} is an Azure curated environment",
                "local providers cannot materialise it; declare an environment in the project to run it locally",
            )
            return ref
        known = sorted(
            self.declared[kind].get(name, set()) | set(self.recorded[kind].get(name, {})), key=_version_key
        )
        hint = (
            f"declared versions of {name}: {', '.join(known)}"
            if known
            else suggest_hint(name, list(self.declared[kind]) + list(self.recorded[kind]))
            or f"add a {kind} file (with `$schema: https://azuremlschemas.azureedge.net/latest/{kind}.schema.json`) that defines it"
        )
        self.run.error(f, path, f"{ref} is neither declared in the project nor recorded in the state", hint)
        return None

    # -- endpoints and deployments

    def _endpoint(self, f: LoadedFile, doc: Any) -> None:
        k8s = f.kind == "kubernetes_endpoint"
        name = doc.name.lower()
        identity = None
        if doc.identity is not None:
            identity = {
                "type": doc.identity.type.replace(" ", "").lower(),
                "user_assigned_identities": doc.identity.user_assigned_identities,
            }
        attrs = {
            "name": name,
            "kind": "kubernetes" if k8s else "managed",
            "auth_mode": (doc.auth_mode or "key").lower(),
            "compute": doc.compute if k8s else None,
            "identity": identity,
            "public_network_access": None
            if k8s or doc.public_network_access is None
            else doc.public_network_access.lower(),
            "description": doc.description,
            "tags": {str(k): _s(v) for k, v in (doc.tags or {}).items()},
            "traffic": {k.lower(): v for k, v in (doc.traffic or {}).items() if v},
            "mirror_traffic": {k.lower(): v for k, v in (doc.mirror_traffic or {}).items() if v},
            "traffic_declared": "traffic" in f.data,
        }
        address = endpoint_address(name)
        if address not in self.origin:
            self.endpoints[address] = f
        self._add(f, address, "endpoint", name, attrs)

    def _deployment(self, f: LoadedFile, doc: Any) -> None:
        k8s = f.kind == "kubernetes_deployment"
        ep, name = doc.endpoint_name.lower(), doc.name.lower()
        owner = f"{ep}-{name}"
        model = self._asset_field(f, doc.model, "model", owner)
        env = self._asset_field(f, doc.environment, "environment", owner)
        code = script = None
        cc = doc.code_configuration
        if cc is not None:
            where = ("code_configuration", "code")
            code_dir = self._local(f, cc.code or ".", where, "code", True)
            code_digest = self._digest(f, where, "code", code_dir) if code_dir is not None else None
            if code_dir is not None and code_digest is not None:
                code = {"path": self.run.rel(code_dir), "digest": code_digest}
                script = _posix_path(cc.scoring_script)
                self._local(
                    f,
                    cc.scoring_script,
                    ("code_configuration", "scoring_script"),
                    "scoring script",
                    False,
                    base=code_dir,
                )
        scale = self._scale(doc)
        count = doc.instance_count
        if count is None:
            count = scale.get("min_instances", 1)
        attrs: dict[str, Any] = {
            "name": name,
            "endpoint_name": ep,
            "kind": "kubernetes" if k8s else "managed",
            "model": model,
            "environment": env,
            "code": code,
            "scoring_script": script,
            "instance_type": self._instance_type(f, doc.instance_type, k8s),
            "instance_count": count,
            "scale_settings": scale,
            "request_settings": self._request_settings(doc.request_settings),
            "liveness_probe": _probe(doc.liveness_probe),
            "readiness_probe": _probe(doc.readiness_probe),
            "environment_variables": {str(k): _s(v) for k, v in (doc.environment_variables or {}).items()},
            "resources": _resources(doc.resources) if k8s else None,
            "properties": dict(doc.properties or {}),
            "tags": {str(k): _s(v) for k, v in (doc.tags or {}).items()},
            "description": doc.description,
            "app_insights_enabled": bool(doc.app_insights_enabled),
            "egress_public_network_access": None
            if k8s or doc.egress_public_network_access is None
            else doc.egress_public_network_access.lower(),
            "data_collector": doc.data_collector,
            "extra": {
                k: v
                for k, v in (
                    ("model_mount_path", doc.model_mount_path),
                    ("private_network_connection", getattr(doc, "private_network_connection", None)),
                )
                if v is not None
            },
        }
        depends = (endpoint_address(ep), *(a for a in (model, env) if a and _is_address(a)))
        address = deployment_address(ep, name)
        if address not in self.origin:
            self.deployments.setdefault(endpoint_address(ep), []).append(f)
        self._add(f, address, "deployment", name, attrs, depends)

    def _asset_field(self, f: LoadedFile, value: Any, kind: str, owner: str) -> str | None:
        if isinstance(value, str):
            return self._reference(f, kind, value, (kind,))
        inline = f.inline.get(kind)
        if inline is None:
            return None
        named = inline.name is not None
        if named and inline.version is None:
            self.declared[kind].setdefault(inline.name, set())
        elif named:
            self.declared[kind].setdefault(inline.name, set()).add(str(inline.version))
        return self._asset(f, inline, (kind,), kind, inline.name, anonymous=not named, owner=owner)

    def _instance_type(self, f: LoadedFile, value: str | None, k8s: bool) -> str | None:
        if value is None or k8s:
            return value
        known = catalog.lookup(self.settings.instance_types, value)
        if known is None:
            hint = suggest_hint(value, list(self.settings.instance_types))
            self.run.error(
                f,
                ("instance_type",),
                f"unknown instance type {value!r}",
                (hint + "; " if hint else "") + "or add it under `instance_types:` in recon.yaml",
            )
            return value
        if known in catalog.SMALL_SKUS:
            self.run.warn(
                f,
                ("instance_type",),
                f"{known} is too small for most models",
                "Standard_DS3_v2 is the smallest size Azure recommends",
            )
        return known

    @staticmethod
    def _scale(doc: Any) -> dict[str, Any]:
        s = doc.scale_settings
        stype = (s.type or "default").lower() if s is not None else "default"
        if stype != "target_utilization":
            return {"type": "default"}
        return {
            "type": stype,
            "min_instances": s.min_instances if s.min_instances is not None else 1,
            "max_instances": s.max_instances if s.max_instances is not None else 1,
            "polling_interval": s.polling_interval if s.polling_interval is not None else 1,
            "target_utilization_percentage": s.target_utilization_percentage
            if s.target_utilization_percentage is not None
            else 70,
        }

    @staticmethod
    def _request_settings(rs: schema.RequestSettingsDoc | None) -> dict[str, int]:
        out = {
            "request_timeout_ms": 5000,
            "max_concurrent_requests_per_instance": 1,
            "max_queue_wait_ms": 500,
        }
        if rs is not None:
            out.update({k: v for k, v in rs if v is not None})
        return out

    # -- rules across documents

    def _cross_checks(self) -> None:
        for address, files in self.deployments.items():
            ep_file = self.endpoints.get(address)
            for f in files:
                self._check_parent(f, ep_file)
            if ep_file is not None and len(files) > schema.MAX_DEPLOYMENTS_PER_ENDPOINT:
                self.run.error(
                    ep_file,
                    ("name",),
                    f"{len(files)} deployments declared for this endpoint",
                    f"an endpoint has at most {schema.MAX_DEPLOYMENTS_PER_ENDPOINT} deployments",
                )
        for address, f in self.endpoints.items():
            self._check_traffic(f, {d.doc.name.lower() for d in self.deployments.get(address, [])})
        n_ep = len(self.endpoints)
        n_dep = sum(len(v) for v in self.deployments.values())
        for what, count in (("endpoints", n_ep), ("deployments", n_dep)):
            limit = self.settings.limits[what]
            if count > limit:
                self.run.error(
                    None,
                    (),
                    f"{count} {what} declared; the Azure limit is {limit} per subscription and region",
                    f"split the project, or after Azure raised your quota set `limits: {{{what}: N}}` in recon.yaml",
                )

    def _check_parent(self, f: LoadedFile, ep_file: LoadedFile | None) -> None:
        if ep_file is None:
            hint = suggest_hint(
                f.doc.endpoint_name.lower(), [e.doc.name.lower() for e in self.endpoints.values()]
            )
            self.run.error(
                f,
                ("endpoint_name",),
                f"endpoint {f.doc.endpoint_name!r} is not declared in the project",
                hint or "add an endpoint file with this name",
            )
            return
        dep_kind, ep_kind = (f.kind or "").split("_")[0], (ep_file.kind or "").split("_")[0]
        if dep_kind != ep_kind:
            self.run.error(
                f,
                ("endpoint_name",),
                f"a {dep_kind} deployment cannot belong to the {ep_kind} endpoint "
                f"{f.doc.endpoint_name!r} ({ep_file.rel})",
                f"use the {ep_kind}OnlineDeployment schema",
            )

    def _check_traffic(self, f: LoadedFile, deployments: set[str]) -> None:
        doc = f.doc
        listed = ", ".join(sorted(deployments)) or "none"
        live: set[str] = set()
        for key in ("traffic", "mirror_traffic"):
            seen: set[str] = set()
            for dep, pct in (getattr(doc, key) or {}).items():
                low = dep.lower()
                if low in seen:
                    self.run.error(
                        f,
                        (key, dep),
                        f"{dep!r} appears twice (names compare case-insensitively)",
                        "keep one entry",
                    )
                seen.add(low)
                if low not in deployments:
                    hint = suggest_hint(low, deployments)
                    self.run.error(
                        f,
                        (key, dep),
                        f"{dep!r} is not a deployment of endpoint {doc.name!r}",
                        (hint + "; " if hint else "") + f"declared deployments: {listed}",
                    )
                if key == "traffic" and pct:
                    live.add(low)
        total = sum((doc.traffic or {}).values())
        if doc.traffic and total not in (0, 100):
            self.run.error(
                f,
                ("traffic",),
                f"traffic sums to {total}%",
                "whole percentages summing to 100 (or 0 while nothing is routed)",
            )
        mirror = {k: v for k, v in (doc.mirror_traffic or {}).items() if v}
        if mirror and f.kind == "kubernetes_endpoint":
            self.run.error(
                f,
                ("mirror_traffic",),
                "Kubernetes endpoints do not support mirrored traffic",
                "remove mirror_traffic",
            )
            return
        if len(mirror) > 1:
            self.run.error(
                f,
                ("mirror_traffic",),
                f"mirror_traffic names {len(mirror)} deployments",
                "mirror to a single deployment",
            )
        for dep, pct in mirror.items():
            if pct > 50:
                self.run.error(
                    f, ("mirror_traffic", dep), f"{pct}% mirrored is above the limit", "mirror at most 50%"
                )
            if dep.lower() in live:
                self.run.error(
                    f,
                    ("mirror_traffic", dep),
                    f"{dep!r} already receives live traffic",
                    "a deployment gets live or mirrored traffic, never both",
                )


def suggest_hint(word: str, choices: Any) -> str | None:
    return schema.suggest(word, choices)


@functools.lru_cache(maxsize=1024)
def _posix_path(value: str) -> str:
    """A relative path normalised and written with ``/`` (scoring scripts, as Azure records them)."""
    return Path(os.path.normpath(value)).as_posix()


def _is_address(value: str) -> bool:
    return value.startswith(("model.", "environment."))


_PROBE_DEFAULTS = {
    "initial_delay": 10,
    "period": 10,
    "timeout": 2,
    "success_threshold": 1,
    "failure_threshold": 30,
}


def _probe(probe: schema.ProbeDoc | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(_PROBE_DEFAULTS)
    if probe is not None:
        out.update({k: v for k, v in probe if v is not None})
    return out


def _resources(res: schema.ResourcesDoc | None) -> dict[str, Any] | None:
    if res is None:
        return None
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        amounts = getattr(res, part)
        out[part] = (
            {k: str(v) for k, v in amounts.model_dump(by_alias=True).items() if v is not None}
            if amounts
            else {}
        )
    return out
