"""One load of a project: the files it read (``LoadedFile``) and what the run collects (``LoadRun``:
diagnostics with file and line, and the caches several documents share: stat results, relative paths,
content digests by (path, size, mtime_ns)). The loader and the builder both work on these."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.load import sources
from reconciler.model.checks import Problem
from reconciler.model.errors import Diagnostic


class LoadedFile(sources.SourceFile):
    """A project file as the loader sees it: parsed data, kind, validated document, problems."""

    __slots__ = ("data", "kind", "doc", "ok", "placeholder", "name_line", "inline")

    def __init__(self, path: Path | str, rel: str, max_bytes: int = sources.MAX_BYTES) -> None:
        super().__init__(path, rel, max_bytes)
        self.data: Any = None
        self.kind: str | None = None
        self.doc: Any = None
        self.ok = True
        self.placeholder = False
        self.name_line = 1
        self.inline: dict[str, Any] = {}


@dataclass
class LoadRun:
    """Everything one load collects: files, diagnostics, caches."""

    root: Path
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: dict[str, LoadedFile] = field(default_factory=dict)
    stat_cache: dict[str, os.stat_result | None] = field(default_factory=dict)
    file_digests: dict[tuple[str, int, int], str] = field(default_factory=dict)
    tree_digests: dict[str, str] = field(default_factory=dict)
    conda_cache: dict[str, Any] = field(default_factory=dict)
    rel_cache: dict[str, str] = field(default_factory=dict)
    resolved: dict[tuple[str, str], Path] = field(default_factory=dict)
    checked: set[Path] = field(default_factory=set)  # paths ``inputs.check_path`` accepted

    def report(self, f: LoadedFile | None, problem: Problem) -> None:
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

    def error(self, f: LoadedFile | None, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        self.report(f, Problem(path, message, hint))

    def warn(self, f: LoadedFile | None, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
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
