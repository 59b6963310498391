"""An inference config's scoring script -> a v2 deployment's ``code_configuration``.

Paths resolve as the v1 CLI resolved them (azureml-core's ``InferenceConfig``): ``sourceDirectory``
against the folder ``az ml model deploy`` ran in (``base``: the working folder, or ``--path``, as
the v1 CLI's own ``--path`` project folder), and ``entryScript``, ``condaFile`` and
``extraDockerfileSteps`` against ``sourceDirectory`` when it is given, else against that folder too.
So a v1 project keeps its ``.azureml/inferenceconfig.json`` and its ``score.py`` where they were.

Contract: ``code_configuration(doc, f, base, out, name)`` checks the script as azureml-core did (a
``.py`` file whose name is a Python module name, that parses as Python) and returns the v2 fields,
any file to write beside the YAML and the rows. With ``sourceDirectory`` the code is that folder;
without it v1 packaged the script alone, so it is copied alone into ``NAME-code/``. Problems raise
``ConfigError`` naming the inference config, line and key (and the script's own line for a syntax
error). Every file is read through ``load.inputs`` (regular files, size limits).
"""

from __future__ import annotations

import ast
import keyword
import os
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.load import inputs, sources
from reconciler.migrate.files import V1File
from reconciler.migrate.models import InferenceConfigDoc
from reconciler.migrate.rows import Row, plain
from reconciler.model.errors import ConfigError


@dataclass
class Code:
    """``code_configuration`` of one deployment, with the files it needs and the rows."""

    fields: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def rel(target: Path, out: Path) -> str:
    """``target`` relative to the output folder, as v2 YAML writes paths (relative to the file)."""
    return Path(os.path.relpath(target.resolve(), out.resolve())).as_posix()


def resolve(f: V1File, key: tuple[str, ...], value: str, folder: Path, base: Path, want_dir: bool) -> Path:
    """``folder / value``, which must be an existing regular file (or folder): else a ``ConfigError``
    at ``key`` saying where relative paths resolve and, when the path exists next to the inference
    config instead, the ``--path`` that would find it."""
    target = folder / value
    try:
        inputs.check_path(target, want_dir=want_dir)
        return target
    except inputs.Refused as exc:
        hint = (f"relative paths resolve against {base} (the folder `az ml model deploy` ran in; "
                "--path DIR gives another)")
        here = f.path.parent
        if here.resolve() != base.resolve():
            alt = here / os.path.relpath(target, base)
            if alt.exists():
                hint = f"it exists relative to the inference config's folder: give --path {here}"
        raise ConfigError(f.diagnostic(key, f"{target} {exc.message}", hint)) from None


def read_text(f: V1File, key: tuple[str, ...], path: Path) -> str:
    """The text of a file the inference config names (bounded, UTF-8), or a ``ConfigError`` at ``key``."""
    try:
        return inputs.read_file(path, sources.MAX_BYTES).decode("utf-8")
    except inputs.Refused as exc:
        raise ConfigError(f.diagnostic(key, f"{path} {exc.message}", exc.hint)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f.diagnostic(key, f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                       "save it as UTF-8")) from None


def code_configuration(doc: InferenceConfigDoc, f: V1File, base: Path, out: Path, name: str) -> Code:
    """See the module docstring."""
    scope = f"deployment {name}"
    if doc.entry_script is None:
        raise ConfigError(f.diagnostic((), "entryScript is missing", "name the scoring script: "
                                       '"entryScript": "score.py"'))
    key = (_key(f, "entryScript", "entry_script"),)
    src = None
    if doc.source_directory is not None:
        src = resolve(f, (_key(f, "sourceDirectory", "source_directory"),), doc.source_directory, base, base, True)
    script = resolve(f, key, doc.entry_script, src or base, base, False)
    _check_script(f, key, script)
    if src is not None:
        inside = Path(os.path.relpath(script.resolve(), src.resolve()))
        if inside.parts[:1] == ("..",):
            raise ConfigError(f.diagnostic(key, f"{script} is outside sourceDirectory {src}",
                                           "a v2 scoring script lies inside its code folder"))
        code = Code({"code": rel(src, out), "scoring_script": inside.as_posix()})
        code.rows.append(plain(scope, "sourceDirectory", doc.source_directory,
                               f"`code_configuration.code: {code.fields['code']}`"))
        code.rows.append(plain(scope, "entryScript", doc.entry_script,
                               f"`code_configuration.scoring_script: {inside.as_posix()}`"))
        return code
    folder = f"{name}-code"
    code = Code({"code": folder, "scoring_script": script.name},
                {f"{folder}/{script.name}": read_text(f, key, script)})
    code.rows.append(plain(scope, "sourceDirectory", None, f"not set: v1 packaged {doc.entry_script} alone"))
    code.rows.append(plain(scope, "entryScript", doc.entry_script,
                           f"copied to {folder}/{script.name}: `code_configuration: {{code: {folder}, "
                           f"scoring_script: {script.name}}}`"))
    return code


def _key(f: V1File, *spellings: str) -> str:
    data = f.data if isinstance(f.data, dict) else {}
    return next((s for s in spellings if s in data), spellings[0])


def _check_script(f: V1File, key: tuple[str, ...], script: Path) -> None:
    """What azureml-core checked of a scoring script: a Python module name, and Python that parses."""
    stem, suffix = os.path.splitext(script.name)
    if suffix != ".py":
        raise ConfigError(f.diagnostic(key, f"{script.name} is not a .py file", "v1 and v2 run Python scoring "
                                       "scripts: name a .py file"))
    if not stem.isidentifier() or keyword.iskeyword(stem):
        raise ConfigError(f.diagnostic(key, f"{stem!r} is not a Python module name (v1 refused it too)",
                                       "rename the script: letters, digits and _, not starting with a digit"))
    text = read_text(f, key, script)
    try:
        ast.parse(text, filename=str(script))
    except SyntaxError as exc:
        raise ConfigError(f.diagnostic(key, f"{script} is not valid Python: {exc.msg} at line {exc.lineno} of "
                                       "the script", "fix the script (v1 refused it too)")) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise ConfigError(f.diagnostic(key, f"{script} is not valid Python: {type(exc).__name__}",
                                       "fix the script")) from None
