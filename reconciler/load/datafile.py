"""A data file a user names on the command line (``recon import-v1``'s v1 configs): JSON or YAML.

It is read as every project file is: through ``inputs`` (a regular file outside the system folders,
at most ``limits.yaml_file_mb``), and its YAML through ``sources`` (the only YAML parser, with its
limit on nodes after alias expansion). A file whose name ends in ``.json`` is parsed as JSON (the v1
CLI's ``deploymentconfig.json`` is often indented with tabs, which YAML refuses); anything else as
YAML, which reads JSON too. A UTF-8 byte order mark, as Windows editors write, is allowed.

Contract: ``read(path, label)`` returns a ``DataFile`` or raises ``ConfigError`` naming the file (as
``label``), the line when it is known, what is wrong and what would be right. A key given twice in one
mapping is an error in both formats (JSON would keep the last, YAML readers disagree). Messages never
quote the file's content beyond a key's name. ``DataFile.line_of`` finds the line of a key path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.load import inputs, sources
from reconciler.model.errors import ConfigError, Diagnostic


@dataclass(frozen=True)
class DataFile:
    """One data file as read: where it is, how messages name it, its data."""

    path: Path
    label: str
    data: Any
    source: sources.SourceFile

    def line_of(self, keys: tuple[str | int, ...]) -> int | None:
        """The 1-based line of the deepest key of ``keys`` that exists (the document's for ``()``)."""
        return self.source.line_of(keys)


class _Repeated(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Repeated(key)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read(path: Path, label: str | None = None, max_bytes: int = sources.MAX_BYTES,
         max_nodes: int = sources.MAX_NODES) -> DataFile:
    """Read and parse ``path`` (see the module docstring)."""
    label = label or str(path)
    try:
        raw = inputs.read_file(path, max_bytes)
        text = raw.decode("utf-8-sig")
    except inputs.Refused as exc:
        raise ConfigError(Diagnostic(f"cannot read the file: it {exc.message}", file=label, hint=exc.hint)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(Diagnostic(f"cannot read the file: not UTF-8 ({exc.reason} at byte {exc.start})",
                                     file=label, hint="save it as UTF-8")) from None
    source = sources.SourceFile(path, label, max_bytes)
    if path.suffix.lower() == ".json":
        return DataFile(path, label, _json(text, label, source), source)
    parsed = sources.parse_text(text, max_nodes)
    if parsed.problem is not None:
        p = parsed.problem
        raise ConfigError(Diagnostic(p.message.replace("invalid YAML", "not valid YAML or JSON", 1), file=label,
                                     line=p.line, path=p.field, hint=p.hint))
    if parsed.duplicate_keys:
        raise ConfigError([_twice(label, keys, line) for keys, line in source.duplicate_key_paths()]
                          or Diagnostic("a key is given twice", file=label, hint="give each key once"))
    return DataFile(path, label, parsed.data, source)


def _json(text: str, label: str, source: sources.SourceFile) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(Diagnostic(f"not valid JSON: {exc.msg}", file=label, line=exc.lineno,
                                     hint="fix the JSON syntax")) from None
    except _Repeated as exc:
        found = [(keys, line) for keys, line in source.duplicate_key_paths() if keys[-1] == exc.key]
        keys, line = found[0] if found else ((exc.key,), None)
        raise ConfigError(_twice(label, keys, line)) from None
    except ValueError as exc:  # NaN, Infinity: Python reads them, JSON has no such numbers
        raise ConfigError(Diagnostic(f"not valid JSON: {exc}", file=label, hint="write a number")) from None
    except RecursionError:
        raise ConfigError(Diagnostic("not valid JSON: nested too deeply to read", file=label)) from None


def _twice(label: str, keys: tuple[Any, ...], line: int | None) -> Diagnostic:
    return Diagnostic(f"{keys[-1]!r} is given twice in the same mapping", file=label, line=line,
                      path=".".join(str(k) for k in keys), hint="give each key once")


__all__ = ["DataFile", "read"]
