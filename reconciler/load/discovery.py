"""Finding a project's YAML files: every ``*.yml``/``*.yaml`` under the root, hidden ones, recon.yaml
and recon.yaml's ``exclude`` globs left out, links to folders not followed (as ``os.walk``), in a
fixed order (by folder, then name). Nothing is read here: ``sources`` parses what is found.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path


def excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``rel`` (or a folder above it) matches one of recon.yaml's ``exclude`` globs."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.rstrip("/")) for pat in patterns for p in prefixes
    )


def discover(root: Path, skip: frozenset[str], exclude: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every ``*.yml``/``*.yaml`` file under ``root``: (path, POSIX path relative to root), sorted
    by folder then name. Hidden files and folders are skipped, as are the relative paths in
    ``skip`` and those ``exclude`` matches."""
    return list(_walk_yaml(str(root), "", skip, exclude))


def any_yaml(root: Path, skip: frozenset[str], exclude: tuple[str, ...]) -> bool:
    """Whether ``discover`` would find at least one file; stops at the first."""
    return next(_walk_yaml(str(root), "", skip, exclude), None) is not None


def _walk_yaml(folder: str, prefix: str, skip: frozenset[str], exclude: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """``discover``'s walk, lazily: (path, relative path) in its order."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    subfolders: list[os.DirEntry[str]] = []
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:  # a link loop: reported as a file below when it has a YAML name
            is_dir = False
        if is_dir:
            if not entry.is_symlink():  # as os.walk: a link to a folder is not followed
                subfolders.append(entry)
        elif name.endswith((".yml", ".yaml")):
            rel = prefix + name
            if rel not in skip and not (exclude and excluded(rel, exclude)):
                yield entry.path, rel
    for entry in subfolders:
        yield from _walk_yaml(entry.path, f"{prefix}{entry.name}/", skip, exclude)
