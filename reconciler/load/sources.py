"""The project's YAML files: parsing with PyYAML's own semantics, and line lookup.

This is the only module that parses YAML (the CLI only dumps it); ``discovery`` finds the files and
``parallel`` parses many of them at once (through ``read_and_parse`` here). Parsing is on the hot path of every
``plan`` (a 10,000-deployment project is 16,000 files), so it takes two shortcuts that leave every
result exactly what ``yaml.load(text, Loader=yaml.CSafeLoader)`` returns:

- plain scalars resolve through a cache: with no path resolvers (SafeLoader has none), the tag of a
  plain scalar depends on its text alone, and the same keys and values recur in every file;
- a document made only of plain mappings, sequences and the standard scalar tags (str, int, float,
  bool, null, timestamp, binary) is built by one recursive walk over the node tree instead of
  PyYAML's generator-based constructor. Anything else (merge keys ``<<``, ``!!set``, ``!!omap``,
  custom tags, collection keys) goes through PyYAML's own constructor, errors included.

Marks are never kept: a file with a problem is composed again, with the pure-Python loader, only
when a diagnostic needs the line of a field (``SourceFile.line_of``).

Hostile files are bounded before anything is built: files are read through ``inputs`` (regular
files only, ``limits.yaml_file_mb``), and a document with anchors has its size after alias expansion
counted on the node tree (each node once, so the count itself is cheap) before it is constructed: more
than ``limits.yaml_nodes`` nodes (a "billion laughs" alias bomb), or an alias inside the node it
names (recursive data), is a problem instead of data. Within those limits the result is exactly
PyYAML's; ``parse_text(text, max_nodes=None)`` keeps no limit at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from reconciler.load import inputs
from reconciler.model.settings import DEFAULT_LIMITS

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
# scalar tags whose SafeConstructor functions are plain functions of the node (not generators)
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "null", "bool", "int", "float", "timestamp", "binary"))
_RESOLVED_MAX = 200_000  # plain-scalar tags cached per process before the cache starts over
_resolved: dict[str, str] = {}

assert not _BaseLoader.yaml_path_resolvers, "the resolver cache assumes no path resolvers"


MAX_BYTES = DEFAULT_LIMITS["yaml_file_mb"] * inputs.MB
MAX_NODES = DEFAULT_LIMITS["yaml_nodes"]


class _Fallback(Exception):
    """The fast walk met something only PyYAML's constructor handles."""


class _Unbounded(Exception):
    """A document whose aliases expand beyond the node limit, or into themselves."""

    def __init__(self, message: str, hint: str, node: Any, key: Any) -> None:
        super().__init__(message)
        self.message, self.hint, self.node, self.key = message, hint, node, key


def _too_many(limit: int, node: Any, key: Any) -> _Unbounded:
    return _Unbounded(
        f"invalid YAML: its aliases expand to more than {limit:,} nodes",
        "write the values out without nested aliases, or raise `limits: {yaml_nodes: N}` in recon.yaml",
        node,
        key,
    )


def _check_expansion(root: Any, limit: int) -> None:
    """Raise ``_Unbounded`` when ``root`` expands (every alias written out) to more than ``limit``
    nodes, or when an alias sits inside the node it names. Each distinct node is visited once:
    the sizes of aliased nodes are remembered, so a 9-level bomb costs what its 90 nodes cost."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        if type(node) is ScalarNode:
            return 1
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            raise _Unbounded(
                "invalid YAML: an alias refers to a node that contains it (recursive data)",
                "write the value out instead of the recursive alias",
                node,
                None,
            )
        active.add(key)
        total = 1
        children = (c for pair in node.value for c in pair) if type(node) is MappingNode else iter(node.value)
        for child in children:
            total += size(child)
            if total > limit:
                raise _too_many(limit, node, None)
        active.discard(key)
        sizes[key] = total
        return total

    if type(root) is not MappingNode:
        size(root)
        return
    total = 1
    for key_node, value_node in root.value:  # attribute the problem to a top-level field
        try:
            total += size(key_node) + size(value_node)
        except _Unbounded as exc:
            exc.key = key_node
            raise
        if total > limit:
            raise _too_many(limit, root, key_node)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """PyYAML's safe loader with the cached resolver; ``document()`` builds the data."""

    duplicate_keys = False

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None  # only path resolvers use it, and SafeLoader has none

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            tag = _resolved.get(value)
            if tag is None:
                if len(_resolved) >= _RESOLVED_MAX:
                    _resolved.clear()
                tag = _resolved[value] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> Any:
        # PyYAML's own path (the fallback): note repeated keys before merge keys are flattened
        if isinstance(node, MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, ScalarNode)]
            if len(keys) != len(set(keys)):
                self.duplicate_keys = True
        return super().construct_mapping(node, deep=deep)

    def document(self, node: Any, max_nodes: int | None) -> Any:
        if max_nodes is not None:
            _check_expansion(node, max_nodes)
        try:
            return self._build(node, {})
        except _Fallback:
            self.duplicate_keys = False
            return self.construct_document(node)

    def _build(self, node: Any, made: dict[int, Any]) -> Any:
        kind, tag = type(node), node.tag
        if kind is ScalarNode:
            if tag == _STR:
                return node.value
            if tag not in _SCALAR_TAGS:
                raise _Fallback
            return self.yaml_constructors[tag](self, node)
        known = made.get(id(node))  # an alias of a collection already built: the same object
        if known is not None:
            return known
        if kind is MappingNode and tag == _MAP:
            mapping: dict[Any, Any] = {}
            made[id(node)] = mapping
            for key_node, value_node in node.value:
                if type(key_node) is not ScalarNode:
                    raise _Fallback
                key = key_node.value if key_node.tag == _STR else self._build(key_node, made)
                mapping[key] = self._build(value_node, made)
            if len(mapping) != len(node.value):
                self.duplicate_keys = True
            return mapping
        if kind is SequenceNode and tag == _SEQ:
            items: list[Any] = []
            made[id(node)] = items
            for item in node.value:
                items.append(self._build(item, made))
            return items
        raise _Fallback


@dataclass(frozen=True)
class YamlProblem:
    """Why a file could not be read or parsed: a message, the line/column when the parser knows
    them, and what would fix it."""

    message: str
    line: int | None = None
    column: int | None = None
    hint: str = "fix the YAML syntax"
    field: str | None = None  # the top-level key the problem is under, when known


@dataclass
class Parsed:
    """One parsed file: its data, the line of its top-level ``name:``, and what was noticed."""

    data: Any = None
    name_line: int = 1
    duplicate_keys: bool = False
    placeholder: bool = False  # ``{{`` appears in the text (a template)
    problem: YamlProblem | None = None


def parse_text(text: str | bytes, max_nodes: int | None = MAX_NODES) -> Parsed:
    """Parse one YAML document (str, or UTF-8 bytes) exactly as ``yaml.safe_load`` would, within
    ``max_nodes`` nodes after alias expansion (None: no limit; only documents with anchors can
    expand, so only those are counted)."""
    if isinstance(text, str):
        out = Parsed(placeholder="{{" in text)
        anchored = "&" in text
    else:
        out = Parsed(placeholder=b"{{" in text)
        anchored = b"&" in text
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            out.data = loader.document(node, max_nodes if anchored else None)
            if type(node) is MappingNode:
                # the line of `name:` is every resource's source line; the root mapping is at hand
                out.name_line = next((k.start_mark.line + 1 for k, _ in node.value if k.value == "name"), 1)
        out.duplicate_keys = loader.duplicate_keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc.context)
        out.problem = YamlProblem(
            # libyaml >= 0.2.6 (PyYAML 6.0.4's wheels) stops deep nesting itself
            "invalid YAML: nested too deeply to read" if "maximum nesting depth" in what else f"invalid YAML: {what}",
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        )
    except yaml.YAMLError as exc:
        out.problem = YamlProblem(f"invalid YAML: {exc}")
    except (ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:
        # an explicit tag PyYAML's constructor cannot apply (`!!int abc`, `!!bool x`, `!!float ''`,
        # `!!timestamp ''`): PyYAML lets these escape as whatever its conversion raised
        out.data = None
        out.problem = YamlProblem(f"invalid YAML: a value does not fit its tag: {type(exc).__name__}: {exc}")
    except _Unbounded as exc:
        out.data = None
        where = exc.key if exc.key is not None else exc.node
        line = where.start_mark.line + 1 if getattr(where, "start_mark", None) else None
        field = str(exc.key.value) if isinstance(exc.key, ScalarNode) else None
        out.problem = YamlProblem(exc.message, line, None, exc.hint, field)
    except RecursionError:
        out.data = None
        out.problem = YamlProblem("invalid YAML: nested too deeply to read")
    finally:
        loader.dispose()
    return out


READ_HINT = "make it a regular YAML file, or list it under `exclude:` in recon.yaml"


def read_and_parse(
    path: Path | str, max_bytes: int = MAX_BYTES, max_nodes: int | None = MAX_NODES, hint: str = READ_HINT
) -> Parsed:
    """Read ``path`` (a regular file of at most ``max_bytes``) as UTF-8 and parse it; a file that
    cannot be read is a ``problem`` too (with ``hint``, or the limit to raise).

    ``path`` is a project file (found by ``discover``, or recon.yaml): only a link is resolved to
    check where it leads (``inputs.read_file(walked=True)``)."""
    try:
        text = inputs.read_file(path, max_bytes, walked=True).decode("utf-8")
    except inputs.Refused as exc:
        return Parsed(
            problem=YamlProblem(f"cannot read the file: it {exc.message}", hint=exc.hint if "limits:" in exc.hint else hint)
        )
    except UnicodeDecodeError as exc:
        return Parsed(
            problem=YamlProblem(f"cannot read the file: not UTF-8 ({exc.reason} at byte {exc.start})", hint=hint)
        )
    return parse_text(text, max_nodes)


def load_data(path: Path, max_bytes: int = MAX_BYTES, max_nodes: int | None = MAX_NODES) -> Any:
    """A data file (a conda environment): its content, with PyYAML's semantics.

    Raises ``inputs.Refused`` when it may not be read, ``ValueError`` when it is not valid YAML;
    neither message quotes the file's content (the parser's own words have their quoted parts
    removed), since the file may be anything its referrer names."""
    data = inputs.read_file(path, max_bytes)
    parsed = parse_text(data, max_nodes)
    if parsed.problem is not None:
        where = f" (line {parsed.problem.line})" if parsed.problem.line else ""
        raise ValueError(_unquoted(parsed.problem.message) + where)
    return parsed.data


def _unquoted(message: str) -> str:
    """A parser message without what it quotes from the text (``found undefined alias 'x'``)."""
    message = message.split(": a value does not fit its tag", 1)[0]
    return re.sub(r"'[^']*'|\"[^\"]*\"", "...", message)


class SourceFile:
    """One YAML file of the project: where it is, and, composed on demand, where its fields are."""

    __slots__ = ("spath", "rel", "max_bytes", "_tree", "_path", "_folder")

    def __init__(self, path: Path | str, rel: str, max_bytes: int = MAX_BYTES) -> None:
        # Held as a string: 16,000 files of a large project are read, and most never need a Path.
        self.spath = os.fspath(path)
        self.rel = rel
        self.max_bytes = max_bytes
        self._tree: Any = None
        self._path: Path | None = None
        self._folder: str | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(self.spath)
        return self._path

    @property
    def folder(self) -> str:
        """The folder relative paths in the file resolve against."""
        if self._folder is None:
            self._folder = os.path.dirname(self.spath)
        return self._folder

    def node(self) -> Any:
        """The composed node tree with marks (pure-Python loader; only for files with a problem)."""
        if self._tree is None:
            try:
                text = inputs.read_file(self.spath, self.max_bytes, walked=True).decode("utf-8")
                if self.spath.endswith(".json"):  # JSON's tabs are whitespace YAML refuses; lines stay
                    text = text.replace("\t", " ")  # (JSON has no literal tab inside a string)
                self._tree = yaml.compose(text, Loader=yaml.SafeLoader)
            except (yaml.YAMLError, inputs.Refused, UnicodeDecodeError, RecursionError):
                self._tree = False
        return self._tree

    def line_of(self, path: tuple[Any, ...]) -> int | None:
        """The 1-based line of the field at ``path`` (or of its deepest existing parent)."""
        node = self.node()
        if not node:
            return None
        line: int = int(node.start_mark.line) + 1
        for part in path:
            if isinstance(node, MappingNode):
                match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
                if match is None:
                    return line
                line, node = int(match[0].start_mark.line) + 1, match[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = int(node.start_mark.line) + 1
            else:
                return line
        return line

    def duplicate_key_paths(self) -> list[tuple[tuple[Any, ...], int]]:
        """Every key repeated within one mapping: (field path, line of the repeat)."""
        found: list[tuple[tuple[Any, ...], int]] = []
        seen_nodes: set[int] = set()

        def walk(node: Any, prefix: tuple[Any, ...]) -> None:
            if id(node) in seen_nodes:  # an alias: its node was walked where its anchor is
                return
            seen_nodes.add(id(node))
            if isinstance(node, MappingNode):
                seen: set[Any] = set()
                for k, v in node.value:
                    if k.value in seen:
                        found.append(((*prefix, k.value), k.start_mark.line + 1))
                    seen.add(k.value)
                    walk(v, (*prefix, k.value))
            elif isinstance(node, SequenceNode):
                for i, item in enumerate(node.value):
                    walk(item, (*prefix, i))

        walk(self.node() or None, ())
        return found
