"""Desired vs recorded (or observed) attributes -> ``FieldChange`` values.

The only module that imports ``deepdiff``. DeepDiff is slow (about 1 s for 5,000 resources where a
plain ``==`` takes 1.5 ms), so :func:`diff_attributes` compares with ``==`` first and calls DeepDiff
only for the resources whose canonical form actually differs. DeepDiff's own report never leaves
this module: it is turned into ``FieldChange(path, before, after)`` with dotted paths
(``request_settings.request_timeout_ms``, ``environment_variables.FOO``, ``traffic.green``).

Lists are compared as a whole: a change inside a list is reported once, at the list's path, with
the whole list before and after (a conda dependency list reads better that way than index by index).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from reconciler.plan.types import FieldChange

_MISSING = object()


def diff_attributes(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    ignore: Collection[str] = (),
    replace_paths: Collection[str] = (),
) -> list[FieldChange]:
    """Every changed leaf between two canonical attribute dicts, sorted by path.

    ``ignore`` names top-level keys left out of the comparison; a change at or under one of
    ``replace_paths`` is marked ``forces_replacement``.
    """
    before = before or {}
    after = after or {}
    if before == after:
        return []
    changes: dict[str, FieldChange] = {}
    for key in sorted(set(before) | set(after)):
        if key in ignore:
            continue
        old = before.get(key, _MISSING)
        new = after.get(key, _MISSING)
        if old == new:
            continue
        for path, b, a in _leaf_changes(key, old, new):
            changes[path] = FieldChange(
                path=path, before=b, after=a, forces_replacement=_under(path, replace_paths)
            )
    return [changes[p] for p in sorted(changes)]


def _under(path: str, prefixes: Collection[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _leaf_changes(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """Changes of one top-level attribute; only nested dict-vs-dict values go through DeepDiff."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [(key, _none(old), _none(new))]
    if _flat(old) and _flat(new):
        return _flat_changes(key, old, new)
    from deepdiff import DeepDiff  # about 0.3 s to import (numpy with it): only for nested values

    report = DeepDiff(old, new, view="tree", verbose_level=2)
    out: dict[str, tuple[str, Any, Any]] = {}
    for levels in report.values():
        for level in levels:
            parts = _dotted(level.path(output_format="list"))
            path = ".".join([key, *parts])
            b, a = _resolve(old, parts), _resolve(new, parts)
            out[path] = (path, _none(b), _none(a))
    return list(out.values())


def _flat(value: dict[Any, Any]) -> bool:
    return not any(isinstance(v, (dict, list, tuple, set)) for v in value.values())


def _flat_changes(key: str, old: dict[Any, Any], new: dict[Any, Any]) -> list[tuple[str, Any, Any]]:
    """What DeepDiff reports for two dicts of scalars (environment variables, tags, traffic):
    added, removed and changed keys, a change of type (``1`` -> ``1.0``, ``1`` -> ``True``) included."""
    out = []
    for k in {**old, **new}:
        b, a = old.get(k, _MISSING), new.get(k, _MISSING)
        if type(b) is not type(a) or b != a:
            out.append((f"{key}.{k}", _none(b), _none(a)))
    return out


def _dotted(parts: list[Any]) -> list[str]:
    """Path elements up to (not into) the first list index: lists compare as a whole."""
    keep: list[str] = []
    for part in parts:
        if isinstance(part, int):
            break
        keep.append(str(part))
    return keep


def _resolve(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _none(value: Any) -> Any:
    return None if value is _MISSING else value
