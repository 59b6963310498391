"""The file backend's lock (``SupportsLocking``): a kernel ``flock`` held for a whole operation,
and the holder's ``LockInfo`` in a file beside it (states/file.py's docstring says why ``flock``).

The holder takes the flock and then writes its info (and removes the info before it lets go);
``force_unlock`` replaces the lock file, so lockers check, after taking the flock, that their
descriptor still names the file at the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from pathlib import Path

from reconciler.model.errors import LockInfo, StateError, StateLockedError
from states.disk import atomic_write, refuse_special

HOLDER_INFO_WAIT_S = 1.0  # a lock held with no holder info yet: how long to look again


class FileLock:
    """The lock of the state at ``path``: ``<path>.lock`` (the flock) and ``<path>.lock.info``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.info_path = path.with_name(path.name + ".lock.info")
        self._lock_fd: int | None = None
        self._lock_info: LockInfo | None = None

    def lock(self, info: LockInfo) -> str:
        if self._lock_fd is not None:
            raise StateLockedError(self._lock_info, self._held_here_message())
        # The holder takes the flock and then writes its info (and removes the info before it lets
        # go): a lock held with no info is a holder in between, so look again for a moment, to
        # name it or to get the lock it is releasing.
        deadline = time.monotonic() + HOLDER_INFO_WAIT_S
        while (fd := self._try_flock()) is None:
            holder = self._read_info()
            if holder is not None or time.monotonic() >= deadline:
                raise StateLockedError(holder)
            time.sleep(0.02)
        self._lock_fd, self._lock_info = fd, info
        try:
            atomic_write(self.info_path, json.dumps(info.to_dict()).encode())
        except OSError as exc:
            self._release()
            raise StateError(f"cannot write lock info {self.info_path}: {exc.strerror}") from exc
        return info.id

    def _held_here_message(self) -> str:
        held = self._lock_info.describe() if self._lock_info else "?"
        return f"the state is already locked by this process ({held})"

    def _try_flock(self) -> int | None:
        """An fd holding the flock on the current lock file, or None when someone else holds it."""
        refuse_special(self.path)
        refuse_special(self.lock_path)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise StateError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # force_unlock replaced the file under us: take the new one
        raise StateError(f"cannot lock {self.lock_path}: the lock file keeps being replaced")

    def _read_info(self) -> LockInfo | None:
        try:
            raw = json.loads(self.info_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return LockInfo.from_dict(raw) if isinstance(raw, dict) else None

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
        self._lock_fd, self._lock_info = None, None

    def unlock(self, lock_id: str) -> None:
        if self._lock_fd is None or self._lock_info is None:
            raise StateError(f"cannot unlock {self.path}: this process holds no lock")
        if self._lock_info.id != lock_id:
            raise StateError(f"cannot unlock: lock ID {lock_id} does not match the held lock {self._lock_info.id}")
        current = self._read_info()
        if current is not None and current.id == lock_id:
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()
        self._release()

    def still_held(self, lock_id: str) -> bool:
        """Whether this backend still holds lock ``lock_id``: ``force_unlock`` by another process
        replaces the lock file, and the descriptor held here then names an orphan."""
        if self._lock_fd is None or self._lock_info is None or self._lock_info.id != lock_id:
            return False
        try:
            return os.fstat(self._lock_fd).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            return False

    def lock_info(self) -> LockInfo | None:
        """The holder's LockInfo, or None when nobody holds the lock (a stale info file is ignored)."""
        if self._lock_fd is not None:
            return self._lock_info
        fd = self._try_flock()
        if fd is None:
            return self._read_info()
        os.close(fd)
        return None

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock held by someone else, when ``lock_id`` names it."""
        if self._lock_fd is not None and self._lock_info is not None and self._lock_info.id == lock_id:
            self.unlock(lock_id)
            return
        holder = self._read_info()
        fd = self._try_flock()
        if fd is not None:  # nobody holds it: at most a stale info file is left
            os.close(fd)
            if holder is not None and holder.id == lock_id:
                self.info_path.unlink(missing_ok=True)
                return
            raise StateError(f"cannot force-unlock {lock_id}: the state {self.path} is not locked")
        if holder is None or holder.id != lock_id:
            held = holder.id if holder else "unknown"
            raise StateError(f"cannot force-unlock: lock ID {lock_id} does not match the holder's ({held})")
        # The holder is alive but stuck: replace the lock file so new lockers take a fresh inode.
        atomic_write(self.lock_path, b"")
        self.info_path.unlink(missing_ok=True)
