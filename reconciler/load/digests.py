"""What documents point at on disk: paths resolved and checked, content digests, conda files.

``Digests`` resolves a path written in a document against that document's folder (refusing what
recon does not read: ``inputs.check_path``), takes the sha256 of a file or of a folder's relative
names and contents (model folders, code folders, build contexts; caches excluded) within the
project's limits, and reads and checks conda environment files. Results are cached on the
``LoadRun`` (by path, size and mtime_ns for file digests), so a folder shared by many deployments
is read once. Problems go to the run's diagnostics at the field that named the path.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.load import inputs, sources
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import conda

_SKIP_IN_DIGEST = frozenset({"__pycache__", ".git", ".ipynb_checkpoints"})


class Digests:
    """Paths and content digests for one load (``limits``: recon.yaml's ``limits``, defaults filled)."""

    def __init__(self, run: LoadRun, limits: Mapping[str, Any]) -> None:
        self.run = run
        self.limits = limits

    def local(
        self,
        f: LoadedFile,
        value: str,
        path: tuple[Any, ...],
        what: str,
        want_dir: bool | None,
        base: Path | None = None,
    ) -> Path | None:
        """Resolve ``value`` against the YAML file's folder; an error when it is missing or is not
        something recon reads (``inputs.check_path``: a regular file or a folder, no system folder)."""
        if "\0" in value:  # no file has such a name, and the OS refuses to look one up
            self.run.error(f, path, f"{what} path contains a NUL character", "remove the \\0 from the path")
            return None
        key = (str(base) if base is not None else f.folder, value)
        target = self.run.resolved.get(key)
        if target is None:
            target = self.run.resolved[key] = Path(os.path.normpath(os.path.join(*key)))
        st = self.run.stat(target)
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        if st is not None and (want_dir is True and not is_dir or want_dir is False and is_dir):
            st = None
        elif st is not None and (target not in self.run.checked):
            try:
                inputs.check_path(target, want_dir)
                self.run.checked.add(target)
            except inputs.Refused as exc:
                self.run.error(f, path, f"{what} path {self.run.rel(target)} {exc.message}", exc.hint)
                return None
        if st is None:
            kind = {True: "folder", False: "file", None: "file or folder"}[want_dir]
            if os.path.islink(target):  # a dangling link or a loop: say which
                try:
                    inputs.check_path(target, want_dir)
                except inputs.Refused as exc:
                    self.run.error(f, path, f"{what} path {self.run.rel(target)} {exc.message}", exc.hint)
                    return None
            self.run.error(
                f,
                path,
                f"{what} {kind} not found: {self.run.rel(target)}",
                f"create it, or fix the path (relative to {self.run.rel(base if base is not None else f.folder)})",
            )
            return None
        return target

    def file_digest(self, path: Path, walked: bool = False) -> str:
        st = self.run.stat(path)
        key = (str(path), st.st_size if st else -1, st.st_mtime_ns if st else -1)
        cached = self.run.file_digests.get(key)
        if cached is None:
            h = hashlib.sha256()
            for chunk in inputs.chunks(path, walked):  # a regular file only (``inputs.Refused`` otherwise)
                h.update(chunk)
            cached = self.run.file_digests[key] = h.hexdigest()
        return cached

    def digest(self, f: LoadedFile, where: tuple[Any, ...], what: str, path: Path) -> str | None:
        """``tree_digest`` of a model, code or build path; None (and an error at ``where``) when
        the folder holds something recon does not read or is too big."""
        try:
            return self.tree_digest(path)
        except inputs.TreeRefused as exc:
            shown = self.run.rel(path) + (f"/{exc.member}" if exc.member else "")
            self.run.error(f, where, f"{what} path {shown} {exc.message}", exc.hint)
        except inputs.Refused as exc:
            self.run.error(f, where, f"{what} path {self.run.rel(path)} {exc.message}", exc.hint)
        return None

    def tree_digest(self, path: Path) -> str:
        """sha256 over the relative names and contents of a file or a folder (caches excluded).
        Raises ``inputs.Refused`` for a folder ``inputs.scan_tree`` refuses or a file it cannot read."""
        key = str(path)
        if key in self.run.tree_digests:
            return self.run.tree_digests[key]
        h = hashlib.sha256()
        limits = self.limits
        if path.is_file():
            size, limit = path.stat().st_size, limits["tree_gb"]
            if size > limit * inputs.GB:  # checked before a byte is read (a sparse file reads forever)
                raise inputs.Refused(f"is {size / inputs.GB:.1f} GB, more than {limit} GB", inputs.TREE_BYTES_HINT)
            h.update(f"{path.name}\0{self.file_digest(path)}\n".encode())
        else:
            files = inputs.scan_tree(
                path, limits["tree_files"], limits["tree_gb"] * inputs.GB, _SKIP_IN_DIGEST, ".pyc"
            )
            for rel, full in files:
                try:
                    digest = self.file_digest(full, walked=True)
                except inputs.Refused as exc:
                    raise inputs.TreeRefused(rel, exc.message, exc.hint) from None
                h.update(f"{rel}\0{digest}\n".encode())
        digest = self.run.tree_digests[key] = "sha256:" + h.hexdigest()
        return digest

    def conda_env(self, f: LoadedFile, path: Path, where: tuple[Any, ...]) -> Any:
        """The conda environment at ``path``, checked (``reconciler.model.conda``); None and an error at
        ``where`` when it cannot be read or is not one. Messages never quote the file."""
        key = str(path)
        if key not in self.run.conda_cache:
            self.run.conda_cache[key] = None
            rel, limits = self.run.rel(path), self.limits
            try:
                data = sources.load_data(path, limits["yaml_file_mb"] * inputs.MB, limits["yaml_nodes"])
            except inputs.Refused as exc:
                self.run.error(f, where, f"conda file {rel} {exc.message}", exc.hint)
                return None
            except ValueError as exc:
                self.run.error(f, where, f"conda file {rel} is not valid YAML: {exc}", "fix the conda environment file")
                return None
            problems = conda.check_conda(data)
            if problems:
                source = sources.SourceFile(path, rel, limits["yaml_file_mb"] * inputs.MB)
                first = problems[0]
                line = source.line_of(first.path)
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                self.run.error(
                    f,
                    where,
                    f"conda file {rel} is not a conda environment: line {line}: {first.message}{more}",
                    first.hint,
                )
                return None
            self.run.conda_cache[key] = data
        return self.run.conda_cache[key]
