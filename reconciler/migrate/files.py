"""Reading the v1 input files, and the diagnostics that point into them.

Contract: ``read_data`` reads a file through ``reconciler.load.datafile`` (so with the limits every
project file has: a regular file outside the system folders, at most ``limits.yaml_file_mb``, YAML
parsed only by ``load.sources``) and returns a ``V1File``, or raises ``ConfigError`` naming the file
and line. ``V1File.diagnostic`` places a problem at a key path (``autoScaler.minReplicas``,
``2.traffic_percentile``): file, line, key, what is wrong, what would be right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.load import datafile
from reconciler.model.errors import Diagnostic


@dataclass(frozen=True)
class V1File:
    """One v1 input file as read: where it is, how messages name it, and its data."""

    path: Path
    label: str  # how messages name the file (as the user gave it)
    data: Any
    read: datafile.DataFile

    def line_of(self, keys: tuple[str | int, ...]) -> int | None:
        """The line of the deepest key of ``keys`` that exists (the document's first line for ``()``)."""
        return self.read.line_of(keys)

    def diagnostic(self, keys: tuple[str | int, ...], message: str, hint: str | None = None,
                   severity: str = "error") -> Diagnostic:
        """A diagnostic at ``keys`` (a dotted path) in this file; ``severity="warning"`` for a warning."""
        path = ".".join(str(k) for k in keys) or None
        return Diagnostic(message, file=self.label, line=self.line_of(keys), path=path, hint=hint,
                          severity=severity)


def read_data(path: Path, label: str | None = None) -> V1File:
    """Read ``path`` (JSON when its name ends in .json, else YAML)."""
    f = datafile.read(path, label or str(path))
    return V1File(path, f.label, f.data, f)
