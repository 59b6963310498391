"""Scoring scripts: refused at plan time when they are not valid Python.

The Azure ML CLI v2 parses a deployment's scoring script before it sends the deployment
(``validate_scoring_script``: ``ast.parse``; an instance whose script does not compile would fail
at ``init()``, minutes into a rollout). recon does the same at plan time, for every provider, and
names the script, its line and what the parser says. Only the syntax is checked: nothing is
imported or run.

A script shared by many deployments is parsed once per load (``syntax_error`` caches by path,
size and mtime_ns).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from reconciler.load import inputs

MAX_SCRIPT_BYTES = 16 * inputs.MB  # a scoring script larger than this is not source written by hand

_cache: dict[tuple[str, int, int], tuple[int | None, str] | None] = {}


def syntax_error(path: Path) -> tuple[int | None, str] | None:
    """(line, what is wrong) when the file at ``path`` is not valid Python; None when it is.

    A file that cannot be read is not reported here: the check that the script exists says why."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        if len(_cache) > 4096:
            _cache.clear()
        _cache[key] = _parse(path)
    return _cache[key]


def _parse(path: Path) -> tuple[int | None, str] | None:
    try:
        source = inputs.read_file(path, MAX_SCRIPT_BYTES)
    except inputs.Refused:
        return None
    try:
        compile(source, str(path), "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        text = (exc.text or "").strip()
        detail = f"{exc.msg}" + (f" ({text[:80]})" if text else "")
        return exc.lineno, detail
    except ValueError as exc:  # NUL bytes in the source
        return None, str(exc)
    return None

