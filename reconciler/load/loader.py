"""From a project folder of Azure ML CLI v2 YAML files to the canonical ``DesiredState``.

Pipeline: ``load_settings`` (recon.yaml) -> discover and parse the files (``sources``: PyYAML's
semantics, duplicate keys noticed while constructing) -> classify each document's kind ->
validate it (``schema``, ``checks``) -> build canonical resources and apply the cross-document rules
(``builder``: assets first, then endpoints, then deployments with their references
(``references``); ``crossdoc``: parents, traffic, mirror, service limits). Every problem of the run is collected; ``ConfigError``
carries them all. Lines are only looked up for files that have a problem: those files are
re-composed into a node tree and the field path walked to its line.

The run (``LoadRun``) caches what several documents share: stat results, relative paths, and the
digests of model folders, code folders, conda files and build contexts by (path, size,
mtime_ns), so a folder shared by many deployments is read once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from reconciler.load import cost_settings, discovery, inputs, kinds, parallel, sources
from reconciler.load.builder import Builder
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import catalog, checks, rollout_checks, schema
from reconciler.model.checks import Problem
from reconciler.model.errors import ConfigError, Diagnostic
from reconciler.model.resources import DesiredState, InstanceType, ProviderSettings
from reconciler.model.settings import (
    DEFAULT_LIMITS,
    SETTINGS_FILE,
    STATE_KEYS,
    ProjectSettings,
    StateSettings,
)
from reconciler.state.document import State

_CONDA_KEYS = {"name", "channels", "dependencies", "prefix", "variables"}
# --- files and parsing --------------------------------------------------------------------


def _parse(run: LoadRun, f: LoadedFile, parsed: sources.Parsed) -> None:
    """Record ``parsed`` on ``f``, with its problems."""
    f.data, f.name_line, f.placeholder = parsed.data, parsed.name_line, parsed.placeholder
    if parsed.problem is not None:
        f.ok = False
        problem = parsed.problem
        run.diagnostics.append(
            Diagnostic(
                problem.message + (f" (column {problem.column})" if problem.column else ""),
                file=f.rel,
                line=problem.line,
                path=problem.field,
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


def _discover(run: LoadRun, exclude: tuple[str, ...], max_bytes: int) -> list[LoadedFile]:
    found = discovery.discover(run.root, frozenset({SETTINGS_FILE}), exclude)
    return [LoadedFile(path, rel, max_bytes) for path, rel in found]


# --- recon.yaml ------------------------------------------------------------------------------


def load_settings(root: Path, provider_kinds: Collection[str] | None = None) -> ProjectSettings:
    """Read ``root/recon.yaml`` (optional). Raises ConfigError naming file, line and field.

    ``provider_kinds`` (the registry's kinds, from a caller allowed to know it) makes an unknown
    ``provider.kind`` an error here, with its line, rather than when the provider is first made."""
    run = LoadRun(Path(root).absolute())
    settings = _load_settings(run, provider_kinds)
    _raise_if_errors(run)
    return settings


def _load_settings(run: LoadRun, provider_kinds: Collection[str] | None = None) -> ProjectSettings:
    path = run.root / SETTINGS_FILE
    try:
        os.lstat(path)
    except FileNotFoundError:
        return ProjectSettings()  # no recon.yaml: every default
    except OSError:
        pass  # reading it below says why it cannot be read
    # anything else at that name (a folder, a dangling link, a FIFO) is an error, never ignored
    f = LoadedFile(path, SETTINGS_FILE)
    _parse(run, f, sources.read_and_parse(path, hint="make recon.yaml a regular YAML file, or remove it"))
    if not f.ok or f.data is None:
        return ProjectSettings(source=SETTINGS_FILE)
    raw = f.data
    if not isinstance(raw, dict):
        run.error(f, (), "recon.yaml must be a mapping", "see the README for its keys")
        return ProjectSettings(source=SETTINGS_FILE)
    doc, problems = checks.parse_model(schema.ReconFileDoc, raw)
    for p in problems:
        run.report(f, p)
    if doc is None:
        return ProjectSettings(source=SETTINGS_FILE)
    return _settings_from(run, f, doc, doc.limits, provider_kinds)


def _settings_from(
    run: LoadRun,
    f: LoadedFile,
    doc: schema.ReconFileDoc,
    limits_raw: Any,
    provider_kinds: Collection[str] | None,
) -> ProjectSettings:
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
        elif provider_kinds is not None and kind not in provider_kinds:
            choices = sorted(k for k in provider_kinds if k != "fake")
            hint = checks.suggest(kind, choices) if kind else None
            run.error(
                f,
                ("provider", "kind"),
                f"unknown provider kind {kind!r}" if kind else "the provider kind is empty",
                (hint + "; " if hint else "") + "use one of: " + ", ".join(choices),
            )
        provider = ProviderSettings(
            kind=kind, settings={k: v for k, v in doc.provider.items() if k != "kind"}
        )
    custom = {name: InstanceType(**t.model_dump()) for name, t in (doc.instance_types or {}).items()}
    state = _state(run, f, doc.state) if doc.state is not None else StateSettings()
    rollout, rollout_problems = rollout_checks.parse_rollout(doc.rollout)
    for p in rollout_problems:
        run.report(f, p)
    return ProjectSettings(
        workspace=doc.workspace or "",
        provider=provider,
        quota=dict(doc.quota) if doc.quota is not None else None,
        instance_types=catalog.merged_catalog(custom),
        custom_instance_types=custom,
        state=state,
        exclude=tuple(doc.exclude or ()),
        limits=_limits(run, f, limits_raw),
        pricing=cost_settings.pricing_settings(run, f, doc),
        prices=cost_settings.price_table(run, f, doc.prices),
        budget=cost_settings.budget(run, f, doc),
        rollout=rollout,
        source=SETTINGS_FILE,
    )


def _limits(run: LoadRun, f: LoadedFile, raw: Any) -> dict[str, int]:
    """``limits:`` over the defaults; each key known and a whole number >= 1."""
    limits = dict(DEFAULT_LIMITS)
    if raw is None:
        return limits
    example = "e.g. `limits: {endpoints: 200, deployments: 1000}` after Azure raised your quota"
    if not isinstance(raw, dict):
        run.error(f, ("limits",), f"limits must be a mapping, not a {type(raw).__name__}", example)
        return limits
    for key, value in raw.items():
        if key not in DEFAULT_LIMITS:
            run.error(f, ("limits", key), f"unknown limit {key!r}", "known limits: " + ", ".join(DEFAULT_LIMITS))
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            run.error(f, ("limits", key), f"{value!r} is not a whole number >= 1", example)
        else:
            limits[key] = value
    return limits


def _state(run: LoadRun, f: LoadedFile, doc: schema.StateDoc) -> StateSettings:
    """``state:`` checked against ``StateSettings``: a known backend, only that backend's keys, whole
    numbers >= 1, a file path recon may write. What is wrong is reported; the rest is kept."""
    problems: list[checks.Problem] = []
    backend = checks.check_enum(doc.backend, schema.STATE_BACKENDS, ("state", "backend"), problems)
    for p in problems:
        run.report(f, p)
    given = {k: v for k, v in doc.model_dump().items() if v is not None}
    allowed = STATE_KEYS.get(backend or "", STATE_KEYS["file"] | STATE_KEYS["postgres"])
    for key in sorted(set(given) - allowed):
        run.error(
            f,
            ("state", key),
            f"{key!r} is not a setting of the {backend} state backend",
            "the " + str(backend) + " backend takes: " + ", ".join(sorted(allowed)),
        )
        del given[key]
    for key in ("history", "connect_timeout"):
        if key in given and given[key] < 1:
            run.error(f, ("state", key), f"{given[key]} is too small", "use a whole number >= 1")
            del given[key]
    given["backend"] = backend or "file"
    settings = StateSettings(**given)
    if settings.backend == "file":
        _check_state_path(run, f, settings.path)
    return settings


def _check_state_path(run: LoadRun, f: LoadedFile, value: Any) -> None:
    """The file backend's ``state.path`` must be a regular file or not exist yet, in a folder (or a
    folder to be made) outside the system folders: recon writes it and ``<path>.lock`` beside it."""
    target = Path(str(value))
    target = target if target.is_absolute() else run.root / target
    where = ("state", "path")
    hint = "a path such as .recon/state.json, created on the first apply"
    if not str(value):  # the backend's default (states.DEFAULT_PATH)
        return
    if "\0" in str(value):
        run.error(f, where, "the state path contains a NUL character", hint)
        return
    folder = inputs.system_folder(target)
    if folder is not None:
        run.error(f, where, f"{value!r} {inputs.in_system_folder(target, folder)}; recon never writes its state there", hint)
        return
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # the folder check below says which
        st = None
    except OSError as exc:
        run.error(f, where, f"{value!r} cannot be used: {exc.strerror}", hint)
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        run.error(f, where, f"{value!r} is {inputs.file_kind(st.st_mode)}, not a regular file", hint)
        return
    parent = target.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        run.error(f, where, f"{value!r} cannot be made: {run.rel(parent)} is not a folder", hint)


def _raise_if_errors(run: LoadRun) -> None:
    errors = [d for d in run.diagnostics if d.severity == "error"]
    if errors:
        raise ConfigError(errors)


# --- the project -----------------------------------------------------------------------------


def load_project(root: Path, recorded: State | Callable[[], State | None] | None = None) -> DesiredState:
    """The whole desired state of ``root`` in canonical form.

    ``recorded`` resolves references to assets that are not declared in the files
    (``azureml:NAME:VERSION``, ``@latest``) and picks versions for unversioned assets. It may be
    a function that reads it: it is then called once, in this process, while a worker process
    parses files when the project is large (the state read of a large project costs what parsing
    a fifth of its files does), and what it raises goes up.
    Raises ConfigError with every diagnostic of the run; warnings go in ``.warnings``.
    """
    run = LoadRun(Path(root).absolute())
    settings = _load_settings(run)
    max_bytes = settings.limits["yaml_file_mb"] * inputs.MB
    files = _discover(run, settings.exclude, max_bytes)
    got: list[State | None] = []
    given = recorded
    read_state: Callable[[], State | None] = given if callable(given) else lambda: given
    parsed_files = parallel.parse_files(
        [f.spath for f in files], max_bytes, settings.limits["yaml_nodes"], meanwhile=lambda: got.append(read_state())
    )
    recorded = got[0]
    for f, parsed in zip(files, parsed_files, strict=True):
        _parse(run, f, parsed)
    conda_refs = _conda_references(files)
    documents: list[LoadedFile] = []
    for f in files:
        if not f.ok or f.spath in conda_refs or _looks_like_conda(f.data):
            continue
        f.kind = kinds.classify(run, f)
        if f.kind is not None and _validate(run, f):
            documents.append(f)
    desired = Builder(run, settings, recorded).build(documents)
    _raise_if_errors(run)
    return desired


def _conda_references(files: list[LoadedFile]) -> set[str]:
    """Absolute paths of every file a document names as a conda_file (those are data)."""
    refs: set[str] = set()
    for f in files:
        data = f.data
        if not isinstance(data, dict):
            continue
        for holder in (data, data.get("environment")):
            if isinstance(holder, dict) and isinstance(holder.get("conda_file"), str):
                refs.add(os.path.normpath(os.path.join(f.folder, holder["conda_file"])))
    return refs


def _looks_like_conda(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "$schema" not in data
        and bool(data)
        and set(data) <= _CONDA_KEYS
        and ("dependencies" in data or "channels" in data)
    )


def _validate(run: LoadRun, f: LoadedFile) -> bool:
    """Schema and per-document rules; the parsed document goes to ``f.doc``.

    True when the document is usable for the cross-document rules (it may still have errors:
    they are reported, and the run fails at the end, but the other rules run too)."""
    assert f.kind is not None
    model = schema.KIND_MODELS[f.kind]
    doc, problems = checks.parse_model(model, f.data)
    if doc is None and problems and isinstance(f.data, dict):
        # drop the offending top-level fields and try again, so the other rules still run
        bad = {p.path[0] for p in problems if p.path}
        doc, _ = checks.parse_model(model, {k: v for k, v in f.data.items() if k not in bad})
    placeholders = _placeholders(f.data, ()) if f.placeholder else []
    problems += placeholders
    if doc is not None and not placeholders:
        problems += _check(f, doc)
    for p in problems:
        run.report(f, kinds.explain(f.kind, p))
    f.doc = doc
    return doc is not None and not placeholders


def _check(f: LoadedFile, doc: Any) -> list[Problem]:
    kind = f.kind or ""
    if kind.endswith("endpoint"):
        return checks.check_endpoint(doc)
    if kind == "model":
        return checks.check_model(doc)
    if kind == "environment":
        return checks.check_environment(doc)
    problems = checks.check_deployment(doc, kind.split("_")[0])
    for key, model, check in (
        ("model", schema.InlineModelDoc, checks.check_model),
        ("environment", schema.InlineEnvironmentDoc, checks.check_environment),
    ):
        value = getattr(doc, key)
        if isinstance(value, dict):
            inline, more = checks.parse_model(model, value, (key,))
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
