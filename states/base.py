"""The contract between recon and a state storage backend.

Backends are dumb on purpose (Terraform's ``remote.Client``): they store and return bytes and
keep the current serial so that a write can be a compare-and-swap. Serialisation, serial bumps
and lineage live in ``reconciler.state``, in one place, not in each backend.

Locking is a separate, optional capability (Terraform's ``ClientLocker``). A lock is held for a
whole operation (plan, apply, destroy, refresh, state push/rm) and records who holds it.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from reconciler.model.errors import LockInfo


def who_am_i() -> str:
    """``user@host``: who wrote a state version or holds a lock."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class StoredState:
    """What a backend returns: the bytes of one state version and its serial."""

    data: bytes
    serial: int
    lineage: str


@dataclass(frozen=True)
class HistoryEntry:
    """One stored version of the state (``recon state history``)."""

    serial: int
    lineage: str
    written_at: str  # ISO 8601 UTC
    size: int
    who: str = ""


@runtime_checkable
class StateBackend(Protocol):
    """Stores state documents.

    Contract:
    - ``read()`` returns the current version, or None when no state was ever written.
    - ``write(data, serial, lineage, expected_serial)`` stores ``data`` as the new current version
      only if the current serial is still ``expected_serial`` (None: no state exists yet);
      otherwise it raises ``StateConflictError`` and stores nothing. A write is atomic: a reader
      or a crash never sees half a document, and the previous version is kept.
    - ``describe()`` names the backend for messages ("file .recon/state.json").
    """

    def read(self) -> StoredState | None: ...

    def write(self, data: bytes, serial: int, lineage: str, expected_serial: int | None) -> None: ...

    def describe(self) -> str: ...


@runtime_checkable
class SupportsLocking(Protocol):
    """A backend that can hold an exclusive lock for a whole operation.

    ``lock(info)`` takes the lock at once or raises ``StateLockedError`` naming the holder
    (it never waits). ``unlock(lock_id)`` releases it; ``force_unlock(lock_id)`` releases a lock
    held by someone else (the id must match the holder's). A lock must not outlive a holder
    that died, where the storage allows it (PostgreSQL: session advisory lock; file: the lock
    file records the holder's pid and host, and a dead pid on this host frees it).
    """

    def lock(self, info: LockInfo) -> str: ...

    def unlock(self, lock_id: str) -> None: ...

    def force_unlock(self, lock_id: str) -> None: ...

    def lock_info(self) -> LockInfo | None: ...


@runtime_checkable
class SupportsHistory(Protocol):
    """A backend that keeps earlier versions of the state."""

    def history(self, limit: int = 20) -> list[HistoryEntry]: ...

    def read_serial(self, serial: int) -> StoredState | None: ...
