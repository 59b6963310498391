"""What the file backend asks of the disk: files replaced atomically and durably, and no special
file (a device, a FIFO, a folder) where recon keeps a regular one."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from reconciler.model.errors import StateError


def refuse_special(path: Path) -> None:
    """The state, its backup and its lock are regular files recon makes: anything else at their
    path (``/dev/null``, a FIFO, a folder) is refused before it is opened or written beside."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"cannot use {path} for the state: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StateError(
            f"{path} is not a regular file; the file state backend keeps the state in one "
            "(set state.path in recon.yaml to a file such as .recon/state.json)"
        )


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
