"""Reading the v1 input files: JSON or YAML text into plain data, and the line a key is on.

Contract: ``read_data`` returns the parsed document or raises ``ConfigError`` naming the file (and
the line, when the parser knows it). ``V1File.line_of`` finds the 1-based line of a dotted key
path (``autoScaler.minReplicas``, ``2.traffic_percentile``) or returns None; it never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from reconciler.model.errors import ConfigError, Diagnostic


@dataclass(frozen=True)
class V1File:
    """One v1 input file as read: where it is, its text and its data."""

    path: Path
    label: str  # how messages name the file (as the user gave it)
    text: str
    data: Any

    def line_of(self, keys: tuple[str | int, ...]) -> int | None:
        """The line of the deepest key of ``keys`` that exists (the file's first line for ``()``)."""
        try:
            node: Node | None = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return None
        line = 1 if node is not None else None
        for key in keys:
            found = _child(node, key)
            if found is None:
                break
            line, node = found
        return line

    def diagnostic(self, keys: tuple[str | int, ...], message: str, hint: str | None = None) -> Diagnostic:
        """A diagnostic at ``keys`` (a dotted path) in this file."""
        path = ".".join(str(k) for k in keys) or None
        return Diagnostic(message, file=self.label, line=self.line_of(keys), path=path, hint=hint)


def _child(node: Node | None, key: str | int) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == str(key):
                return k.start_mark.line + 1, v
    if isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item = node.value[key]
        return item.start_mark.line + 1, item
    return None


def read_data(path: Path, label: str | None = None) -> V1File:
    """Parse ``path`` (JSON when it ends in .json, else YAML, which also reads JSON)."""
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Diagnostic(f"cannot read the file: {getattr(exc, 'strerror', None) or exc}",
                                     file=label)) from exc
    if path.suffix.lower() == ".json":
        try:
            return V1File(path, label, text, json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(Diagnostic(f"not valid JSON: {exc.msg}", file=label, line=exc.lineno,
                                         hint="fix the JSON syntax")) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(Diagnostic(f"not valid YAML or JSON: {problem}", file=label, line=line)) from exc
    return V1File(path, label, text, data)
