"""From a project folder of Azure ML CLI v2 YAML files to the canonical ``DesiredState``.

Pipeline: ``load_settings`` (recon.yaml) -> discover and parse the files (``sources``: PyYAML's
semantics, duplicate keys noticed while constructing) -> classify each document's kind -> validate it (schema.py) ->
build canonical resources (assets first, then endpoints, then deployments with their references)
-> cross-document rules (traffic, mirror, duplicates, service limits). Every problem of the run is
collected; ``ConfigError`` carries them all. Lines are only looked up for files that have a
problem: those files are re-composed into a node tree and the field path walked to its line.

Digests of model folders, code folders, conda files and build contexts are cached within a run
by (path, size, mtime_ns) so a folder shared by many deployments is read once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reconciler import catalog, schema, sources
from reconciler.errors import ConfigError, Diagnostic
from reconciler.resources import (
    DesiredState,
    InstanceType,
    ProviderSettings,
    Resource,
    SourceRef,
    asset_address,
    canonical_json,
    deployment_address,
    endpoint_address,
    fast_model,
)
from reconciler.schema import Problem
from reconciler.state import State

SETTINGS_FILE = "recon.yaml"
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
_CONDA_KEYS = {"name", "channels", "dependencies", "prefix", "variables"}
_SKIP_IN_DIGEST = {"__pycache__", ".git", ".ipynb_checkpoints"}
class ProjectSettings(BaseModel):
    """recon.yaml, defaults filled. ``instance_types`` is the merged catalog (built-ins + additions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: str = ""
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    quota: dict[str, int] | None = None
    instance_types: dict[str, InstanceType] = Field(default_factory=catalog.builtin_instance_types)
    custom_instance_types: dict[str, InstanceType] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=lambda: {"backend": "file", "path": ".recon/state.json"})
    exclude: tuple[str, ...] = ()
    limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    source: str | None = None  # "recon.yaml" when the file exists


DEFAULT_LIMITS: dict[str, int] = {"endpoints": schema.MAX_ENDPOINTS, "deployments": schema.MAX_DEPLOYMENTS}


# --- files, parsing and line lookup -----------------------------------------------------------


class _File(sources.SourceFile):
    """A project file as the loader sees it: parsed data, kind, validated document, problems."""

    __slots__ = ("data", "kind", "doc", "ok", "placeholder", "name_line", "inline")

    def __init__(self, path: Path, rel: str) -> None:
        super().__init__(path, rel)
        self.data: Any = None
        self.kind: str | None = None
        self.doc: Any = None
        self.ok = True
        self.placeholder = False
        self.name_line = 1
        self.inline: dict[str, Any] = {}


@dataclass
class _Run:
    """Everything one load collects: files, diagnostics, caches."""

    root: Path
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: dict[str, _File] = field(default_factory=dict)
    stat_cache: dict[str, os.stat_result | None] = field(default_factory=dict)
    file_digests: dict[tuple[str, int, int], str] = field(default_factory=dict)
    tree_digests: dict[str, str] = field(default_factory=dict)
    conda_cache: dict[str, Any] = field(default_factory=dict)
    rel_cache: dict[str, str] = field(default_factory=dict)
    resolved: dict[tuple[str, str], Path] = field(default_factory=dict)

    def report(self, f: _File | None, problem: Problem) -> None:
        if f is not None and problem.severity == "error":
            f.ok = False
        self.diagnostics.append(
            Diagnostic(
                problem.message,
                file=f.rel if f else None,
                line=f.line_of(problem.path) if f else None,
                path=problem.dotted or None,
                hint=problem.hint,
                severity=problem.severity,
            )
        )

    def error(self, f: _File | None, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        self.report(f, Problem(path, message, hint))

    def warn(self, f: _File | None, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        self.report(f, Problem(path, message, hint, severity="warning"))

    def rel(self, path: Path | str) -> str:
        """POSIX path relative to the root (with ``../`` when outside it); cached."""
        key = str(path)
        found = self.rel_cache.get(key)
        if found is None:
            prefix = str(self.root) + os.sep
            tail = key[len(prefix) :] if key.startswith(prefix) else os.path.relpath(key, self.root)
            found = self.rel_cache[key] = tail.replace(os.sep, "/")
        return found

    def stat(self, path: Path | str) -> os.stat_result | None:
        key = str(path)
        if key not in self.stat_cache:
            try:
                self.stat_cache[key] = os.stat(key)
            except OSError:
                self.stat_cache[key] = None
        return self.stat_cache[key]


def _parse(run: _Run, f: _File, parsed: sources.Parsed | None = None) -> None:
    """Record ``parsed`` (read and parsed here when not given) on ``f``, with its problems."""
    if parsed is None:
        parsed = sources.read_and_parse(f.path)
    f.data, f.name_line, f.placeholder = parsed.data, parsed.name_line, parsed.placeholder
    if parsed.problem is not None:
        f.ok = False
        problem = parsed.problem
        run.diagnostics.append(
            Diagnostic(
                problem.message + (f" (column {problem.column})" if problem.column else ""),
                file=f.rel,
                line=problem.line,
                hint=problem.hint,
            )
        )
        return
    if parsed.duplicate_keys:
        for path, line in f.duplicate_key_paths():
            f.ok = False
            run.diagnostics.append(
                Diagnostic(
                    f"duplicate key {path[-1]!r}",
                    file=f.rel,
                    line=line,
                    path=".".join(map(str, path)),
                    hint="each key may appear once in a mapping; remove or merge the repeats",
                )
            )


def _discover(run: _Run, exclude: tuple[str, ...]) -> list[_File]:
    return [_File(path, rel) for path, rel in sources.discover(run.root, frozenset({SETTINGS_FILE}), exclude)]


# --- recon.yaml ------------------------------------------------------------------------------


def load_settings(root: Path) -> ProjectSettings:
    """Read ``root/recon.yaml`` (optional). Raises ConfigError naming file, line and field."""
    run = _Run(Path(root).absolute())
    settings = _load_settings(run)
    _raise_if_errors(run)
    return settings


def _load_settings(run: _Run) -> ProjectSettings:
    path = run.root / SETTINGS_FILE
    if not path.is_file():
        return ProjectSettings()
    f = _File(path, SETTINGS_FILE)
    _parse(run, f)
    if not f.ok or f.data is None:
        return ProjectSettings(source=SETTINGS_FILE)
    raw = f.data
    if not isinstance(raw, dict):
        run.error(f, (), "recon.yaml must be a mapping", "see the README for its keys")
        return ProjectSettings(source=SETTINGS_FILE)
    limits_raw = raw.pop("limits", None) if isinstance(raw, dict) else None
    doc, problems = schema.parse_model(schema.ReconFileDoc, raw)
    for p in problems:
        run.report(f, p)
    if doc is None:
        return ProjectSettings(source=SETTINGS_FILE)
    return _settings_from(run, f, doc, limits_raw)


def _settings_from(run: _Run, f: _File, doc: schema.ReconFileDoc, limits_raw: Any) -> ProjectSettings:
    if doc.workspace is not None and not schema.WORKSPACE_RE.match(doc.workspace):
        run.error(
            f,
            ("workspace",),
            f"{doc.workspace!r} is not a valid workspace name",
            "3 to 33 characters: letters, digits, '_' and '-', starting with a letter or digit",
        )
    provider = ProviderSettings()
    if doc.provider is not None:
        kind = doc.provider.get("kind", "local")
        if not isinstance(kind, str):
            run.error(f, ("provider", "kind"), f"wrong type: got {kind!r}", "expected a string such as local")
            kind = "local"
        provider = ProviderSettings(
            kind=kind, settings={k: v for k, v in doc.provider.items() if k != "kind"}
        )
    custom = {name: InstanceType(**t.model_dump()) for name, t in (doc.instance_types or {}).items()}
    state: dict[str, Any] = {"backend": "file", "path": ".recon/state.json"}
    if doc.state is not None:
        problems: list[schema.Problem] = []
        backend = schema.check_enum(doc.state.backend, schema.STATE_BACKENDS, ("state", "backend"), problems)
        for p in problems:
            run.report(f, p)
        state = {k: v for k, v in doc.state.model_dump().items() if v is not None}
        state["backend"] = backend or doc.state.backend
        if state["backend"] == "file":
            state.setdefault("path", ".recon/state.json")
    limits = dict(DEFAULT_LIMITS)
    if limits_raw is not None:
        if not isinstance(limits_raw, dict) or any(
            k not in DEFAULT_LIMITS or not isinstance(v, int) or isinstance(v, bool) or v < 1
            for k, v in limits_raw.items()
        ):
            run.error(
                f,
                ("limits",),
                "limits must map endpoints/deployments to positive integers",
                "e.g. `limits: {endpoints: 200, deployments: 1000}` after Azure raised your quota",
            )
        else:
            limits.update(limits_raw)
    return ProjectSettings(
        workspace=doc.workspace or "",
        provider=provider,
        quota=dict(doc.quota) if doc.quota is not None else None,
        instance_types=catalog.merged_catalog(custom),
        custom_instance_types=custom,
        state=state,
        exclude=tuple(doc.exclude or ()),
        limits=limits,
        source=SETTINGS_FILE,
    )


def _raise_if_errors(run: _Run) -> None:
    errors = [d for d in run.diagnostics if d.severity == "error"]
    if errors:
        raise ConfigError(errors)


# --- the project -----------------------------------------------------------------------------


def load_project(root: Path, recorded: State | None = None) -> DesiredState:
    """The whole desired state of ``root`` in canonical form.

    ``recorded`` resolves references to assets that are not declared in the files
    (``azureml:NAME:VERSION``, ``@latest``) and picks versions for unversioned assets.
    Raises ConfigError with every diagnostic of the run; warnings go in ``.warnings``.
    """
    run = _Run(Path(root).absolute())
    settings = _load_settings(run)
    files = _discover(run, settings.exclude)
    for f, parsed in zip(files, sources.parse_files([f.path for f in files]), strict=True):
        _parse(run, f, parsed)
    conda_refs = _conda_references(files)
    documents: list[_File] = []
    for f in files:
        if not f.ok or str(f.path) in conda_refs or _looks_like_conda(f.data):
            continue
        f.kind = _classify(run, f)
        if f.kind is not None and _validate(run, f):
            documents.append(f)
    desired = _Builder(run, settings, recorded).build(documents)
    _raise_if_errors(run)
    return desired


def _conda_references(files: list[_File]) -> set[str]:
    """Absolute paths of every file a document names as a conda_file (those are data)."""
    refs: set[str] = set()
    for f in files:
        data = f.data
        if not isinstance(data, dict):
            continue
        for holder in (data, data.get("environment")):
            if isinstance(holder, dict) and isinstance(holder.get("conda_file"), str):
                refs.add(os.path.normpath(f.folder / holder["conda_file"]))
    return refs


def _looks_like_conda(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "$schema" not in data
        and bool(data)
        and set(data) <= _CONDA_KEYS
        and ("dependencies" in data or "channels" in data)
    )


def _classify(run: _Run, f: _File) -> str | None:
    """The document's kind from ``$schema``, else from its fields; None (and an error) if unknown."""
    data = f.data
    if data is None:
        run.warn(f, (), "empty YAML file ignored", "delete it or exclude it in recon.yaml")
        return None
    if not isinstance(data, dict):
        run.error(f, (), f"a resource document must be a mapping, not a {type(data).__name__}", SCHEMA_HINT)
        return None
    declared = data.get("$schema")
    if declared is not None:
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
        return kind
    return _guess_kind(run, f, data)


def _guess_kind(run: _Run, f: _File, data: dict[str, Any]) -> str | None:
    keys = set(data)
    if "endpoint_name" in keys:
        k8s = str(data.get("type", "")).lower() == "kubernetes" or "resources" in keys
        return "kubernetes_deployment" if k8s else "managed_deployment"
    if "compute" in keys:
        return "kubernetes_endpoint"
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


def _validate(run: _Run, f: _File) -> bool:
    """Schema and per-document rules; the parsed document goes to ``f.doc``.

    True when the document is usable for the cross-document rules (it may still have errors:
    they are reported, and the run fails at the end, but the other rules run too)."""
    assert f.kind is not None
    model = schema.KIND_MODELS[f.kind]
    doc, problems = schema.parse_model(model, f.data)
    if doc is None and problems and isinstance(f.data, dict):
        # drop the offending top-level fields and try again, so the other rules still run
        bad = {p.path[0] for p in problems if p.path}
        doc, _ = schema.parse_model(model, {k: v for k, v in f.data.items() if k not in bad})
    placeholders = _placeholders(f.data, ()) if f.placeholder else []
    problems += placeholders
    if doc is not None and not placeholders:
        problems += _check(f, doc)
    for p in problems:
        run.report(f, p)
    f.doc = doc
    return doc is not None and not placeholders


def _check(f: _File, doc: Any) -> list[Problem]:
    kind = f.kind or ""
    if kind.endswith("endpoint"):
        return schema.check_endpoint(doc)
    if kind == "model":
        return schema.check_model(doc)
    if kind == "environment":
        return schema.check_environment(doc)
    problems = schema.check_deployment(doc, kind.split("_")[0])
    for key, model, check in (
        ("model", schema.InlineModelDoc, schema.check_model),
        ("environment", schema.InlineEnvironmentDoc, schema.check_environment),
    ):
        value = getattr(doc, key)
        if isinstance(value, dict):
            inline, more = schema.parse_model(model, value, (key,))
            problems += more
            if inline is not None:
                problems += check(inline, (key,))
                f.inline[key] = inline
        elif value is not None and not isinstance(value, str):
            problems.append(
                Problem(
                    (key,),
                    f"wrong type: got {value!r}",
                    f"expected `azureml:NAME:VERSION`, `azureml:NAME@latest` or an inline {key} mapping",
                )
            )
    return problems


def _placeholders(value: Any, path: tuple[Any, ...]) -> list[Problem]:
    if isinstance(value, str):
        if schema.PLACEHOLDER_RE.search(value):
            return [
                Problem(
                    path,
                    f"{value!r} contains a template placeholder",
                    "render the template before running recon, or exclude this file in recon.yaml",
                )
            ]
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _placeholders(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _placeholders(v, (*path, i))]
    return []


# --- building canonical resources -------------------------------------------------------------


def _s(value: Any) -> str:
    """Tag and environment-variable values are strings in Azure; YAML booleans read as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _is_remote(value: str) -> bool:
    return "://" in value or value.startswith("azureml:")


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class _Builder:
    """Turns validated documents into canonical ``Resource`` values and applies cross-document rules."""

    def __init__(self, run: _Run, settings: ProjectSettings, recorded: State | None) -> None:
        self.run = run
        self.settings = settings
        self.resources: dict[str, Resource] = {}
        self.origin: dict[str, tuple[_File, int]] = {}
        self.declared: dict[str, dict[str, set[str]]] = {"model": {}, "environment": {}}
        self.recorded: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"model": {}, "environment": {}}
        self.endpoints: dict[str, _File] = {}
        self.deployments: dict[str, list[_File]] = {}
        for res in recorded.resources.values() if recorded else ():
            if res.type in self.recorded:
                name, version = res.attributes.get("name"), res.attributes.get("version")
                if name is not None and version is not None and not res.attributes.get("anonymous"):
                    self.recorded[res.type].setdefault(str(name), {})[str(version)] = res.attributes

    # -- orchestration

    def build(self, documents: list[_File]) -> DesiredState:
        by_kind: dict[str, list[_File]] = {}
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
        f: _File,
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
        f: _File,
        value: str,
        path: tuple[Any, ...],
        what: str,
        want_dir: bool | None,
        base: Path | None = None,
    ) -> Path | None:
        """Resolve ``value`` against the YAML file's folder; an error when it is missing."""
        key = (str(base or f.folder), value)
        target = self.run.resolved.get(key)
        if target is None:
            target = self.run.resolved[key] = Path(os.path.normpath(os.path.join(*key)))
        st = self.run.stat(target)
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        if st is None or (want_dir is True and not is_dir) or (want_dir is False and is_dir):
            kind = {True: "folder", False: "file", None: "file or folder"}[want_dir]
            self.run.error(
                f,
                path,
                f"{what} {kind} not found: {self.run.rel(target)}",
                f"create it, or fix the path (relative to {self.run.rel(base or f.folder)})",
            )
            return None
        return target

    def _file_digest(self, path: Path) -> str:
        st = self.run.stat(path)
        key = (str(path), st.st_size if st else -1, st.st_mtime_ns if st else -1)
        cached = self.run.file_digests.get(key)
        if cached is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            cached = self.run.file_digests[key] = h.hexdigest()
        return cached

    def _tree_digest(self, path: Path) -> str:
        """sha256 over the relative names and contents of a file or a folder (caches excluded)."""
        key = str(path)
        if key in self.run.tree_digests:
            return self.run.tree_digests[key]
        h = hashlib.sha256()
        if path.is_file():
            h.update(f"{path.name}\0{self._file_digest(path)}\n".encode())
        else:
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_IN_DIGEST)
                for name in sorted(names):
                    if name.endswith(".pyc"):
                        continue
                    full = Path(folder) / name
                    rel = full.relative_to(path).as_posix()
                    h.update(f"{rel}\0{self._file_digest(full)}\n".encode())
        digest = self.run.tree_digests[key] = "sha256:" + h.hexdigest()
        return digest

    def _conda(self, f: _File, path: Path, where: tuple[Any, ...]) -> Any:
        key = str(path)
        if key not in self.run.conda_cache:
            try:
                self.run.conda_cache[key] = sources.load_data(path)
            except (ValueError, OSError) as exc:
                self.run.error(
                    f,
                    where,
                    f"conda file {self.run.rel(path)} is not valid YAML: {exc}",
                    "fix the conda environment file",
                )
                self.run.conda_cache[key] = None
        return self.run.conda_cache[key]

    # -- assets

    def _asset(
        self,
        f: _File,
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
        self, f: _File, doc: schema.InlineModelDoc, prefix: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        where = (*prefix, "path")
        if _is_remote(doc.path):
            rel, digest = doc.path, "sha256:" + hashlib.sha256(doc.path.encode()).hexdigest()
        else:
            target = self._local(f, doc.path, where, "model", None)
            if target is None:
                return None
            rel, digest = self.run.rel(target), self._tree_digest(target)
        return {
            "path": rel,
            "type": (doc.type or "custom_model").lower(),
            "description": doc.description,
            "tags": {str(k): _s(v) for k, v in (doc.tags or {}).items()},
            "content_digest": digest,
        }

    def _env_attrs(
        self, f: _File, doc: schema.InlineEnvironmentDoc, prefix: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        ok = True
        conda_rel = conda = conda_digest = build = build_digest = None
        if doc.conda_file is not None:
            target = self._local(f, doc.conda_file, (*prefix, "conda_file"), "conda", False)
            if target is None:
                ok = False
            else:
                conda_rel, conda_digest = self.run.rel(target), self._file_digest(target)
                conda = self._conda(f, target, (*prefix, "conda_file"))
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
                    build_digest = self._tree_digest(target)
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

    def _reference(self, f: _File, kind: str, ref: str, path: tuple[Any, ...]) -> str | None:
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

    def _unresolved(self, f: _File, kind: str, ref: str, name: str, path: tuple[Any, ...]) -> str | None:
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

    def _endpoint(self, f: _File, doc: Any) -> None:
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

    def _deployment(self, f: _File, doc: Any) -> None:
        k8s = f.kind == "kubernetes_deployment"
        ep, name = doc.endpoint_name.lower(), doc.name.lower()
        owner = f"{ep}-{name}"
        model = self._asset_field(f, doc.model, "model", owner)
        env = self._asset_field(f, doc.environment, "environment", owner)
        code = script = None
        cc = doc.code_configuration
        if cc is not None:
            code_dir = self._local(f, cc.code or ".", ("code_configuration", "code"), "code", True)
            if code_dir is not None:
                code = {"path": self.run.rel(code_dir), "digest": self._tree_digest(code_dir)}
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

    def _asset_field(self, f: _File, value: Any, kind: str, owner: str) -> str | None:
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

    def _instance_type(self, f: _File, value: str | None, k8s: bool) -> str | None:
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

    def _check_parent(self, f: _File, ep_file: _File | None) -> None:
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

    def _check_traffic(self, f: _File, deployments: set[str]) -> None:
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
