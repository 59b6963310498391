"""Model folders and code snapshots: private copies, so that editing the project never changes
what running instances see.

Models are laid out as Azure lays them out: ``<state_dir>/models/<name>/<version>/<basename of the
model path>/...`` with ``AZUREML_MODEL_DIR=<state_dir>/models/<name>/<version>``; the azureml-examples
scripts then find ``$AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl`` for a model whose path is
``../../model-1/model/``. Code is copied to ``<state_dir>/snapshots/<code digest>``. Both are written
into a temporary folder and renamed into place, so a crash never leaves half a copy behind.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from providers.shared import procs
from reconciler.model.errors import PermanentError
from reconciler.model.resources import CodeRef, ModelAttrs

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def safe(part: str) -> str:
    """A string usable as one path component (``sha256:ab..`` → ``sha256-ab..``)."""
    return _UNSAFE.sub("-", part) or "_"


def model_dir(state_dir: Path, attrs: ModelAttrs) -> Path:
    """What ``AZUREML_MODEL_DIR`` points to for a model."""
    return state_dir / "models" / safe(str(attrs["name"])) / safe(str(attrs["version"]))


def place_model(state_dir: Path, project_root: Path, attrs: ModelAttrs, address: str = "") -> Path:
    """Copy (hardlink when possible) the model files under ``model_dir``; returns that folder."""
    target = model_dir(state_dir, attrs)
    if _marker(target).exists():
        return target
    source = (project_root / str(attrs.get("path") or "")).resolve()
    if not attrs.get("path") or not source.exists():
        raise PermanentError(f"{address or 'model'}: model path {attrs.get('path')!r} does not exist ({source})")
    with procs.file_lock(target.parent / f".{target.name}.lock"):
        if _marker(target).exists():
            return target
        tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
        _remove_leftovers(target)
        shutil.rmtree(target, ignore_errors=True)
        tmp.mkdir(parents=True)
        dest = tmp / source.name
        if source.is_dir():
            shutil.copytree(source, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(source), str(dest))
        os.replace(tmp, target)
        _marker(target).write_text(str(attrs.get("content_digest") or "") + "\n")
    return target


def model_present(state_dir: Path, attrs: ModelAttrs) -> bool:
    return _marker(model_dir(state_dir, attrs)).exists()


def remove_model(state_dir: Path, attrs: ModelAttrs) -> None:
    target = model_dir(state_dir, attrs)
    _marker(target).unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)


def _remove_leftovers(target: Path) -> None:
    """Temporary copies left by a process killed half-way (the caller holds the lock)."""
    for leftover in target.parent.glob(f".tmp-{target.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _marker(target: Path) -> Path:
    # Beside the folder, not in it: AZUREML_MODEL_DIR and the code snapshot hold only the user's files.
    return target.with_name(f".{target.name}.complete")


def _link_or_copy(src: str, dst: str) -> str:
    # A hardlink shares the inode: an editor that rewrites the file in place would change the
    # running model. Editors and git replace files (new inode), but to be safe only read-only
    # sources are hardlinked; everything else is copied.
    if not os.access(src, os.W_OK):
        try:
            os.link(src, dst)
            return dst
        except OSError:
            pass
    return str(shutil.copy2(src, dst))


def snapshot_code(state_dir: Path, project_root: Path, code: CodeRef | None, address: str = "") -> Path:
    """Copy a deployment's code folder to ``snapshots/<digest>`` (once per digest)."""
    if not code or not code.get("path"):
        target = state_dir / "snapshots" / "empty"
        target.mkdir(parents=True, exist_ok=True)
        return target
    digest = safe(str(code.get("digest") or code["path"]))
    target = state_dir / "snapshots" / digest
    if _marker(target).exists():
        return target
    source = (project_root / str(code["path"])).resolve()
    if not source.is_dir():
        raise PermanentError(f"{address or 'deployment'}: code folder {code['path']!r} does not exist ({source})")
    with procs.file_lock(target.parent / f".{digest}.lock"):
        if _marker(target).exists():
            return target
        tmp = target.with_name(f".tmp-{digest}-{os.getpid()}")
        _remove_leftovers(target)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        os.replace(tmp, target)
        _marker(target).write_text(str(code.get("digest") or "") + "\n")
    return target
