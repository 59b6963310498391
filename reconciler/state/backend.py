"""The contract between recon and a state storage backend (the backends are ``states/``).

Backends are dumb on purpose (Terraform's ``remote.Client``): they store and return bytes and
keep the current serial so that a write can be a compare-and-swap. Serialisation, serial bumps
and lineage live in ``reconciler.state``, in one place, not in each backend.

Locking is a separate, optional capability (Terraform's ``ClientLocker``). A lock is held for a
whole operation (plan, apply, destroy, refresh, state push/rm) and records who holds it.

Journaling is another (``SupportsJournal``): during an apply the manager stores each new version as
a delta (the resources a step changed) appended after the last full document, and compacts at the
end, so that an apply of N changes over a state of S resources writes O(N) bytes, not O(N x S).
"""

from __future__ import annotations

import getpass
import json
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
    """What a backend returns: the bytes of one state version and its serial.

    With a journal, ``data`` is the last full document (``base_serial``) and ``journal`` the deltas
    stored after it, in order; the version is ``serial`` = ``base_serial + len(journal)``. Without
    one, ``journal`` is empty and ``data`` is the version itself."""

    data: bytes
    serial: int
    lineage: str
    journal: tuple[bytes, ...] = ()

    @property
    def base_serial(self) -> int:
        return self.serial - len(self.journal)


@dataclass(frozen=True)
class HistoryEntry:
    """One stored version of the state (``recon state history``)."""

    serial: int
    lineage: str
    written_at: str  # ISO 8601 UTC
    size: int
    who: str = ""
    note: str = ""  # why that version was written, when the writer said (``State.note``)


_NOTE_KEY = b'\n  "note": '


def note_of_document(head: bytes) -> str:
    """The ``note`` of a full state document from its first bytes (top-level keys are sorted and
    indented by two, so ``note`` comes before ``recon_version`` and ``resources``); "" if none."""
    at = head.find(_NOTE_KEY)
    if at < 0:
        return ""
    try:
        value, _ = json.JSONDecoder().raw_decode(head[at + len(_NOTE_KEY):].decode("utf-8", "replace"))
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def note_of_delta(delta: bytes) -> str:
    """The ``note`` of a version stored as a journal delta (``{"del", "set", "top"}``); "" if none."""
    try:
        value = json.loads(delta).get("top", {}).get("note")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


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
class SupportsJournal(Protocol):
    """A backend that can store a version as a delta over the current one.

    Contract:
    - ``append(delta, serial, lineage, expected_serial)`` stores version ``serial`` as ``delta``
      appended to the journal of the current full document, only if the current version is still
      ``expected_serial`` (else ``StateConflictError``, nothing stored). It is atomic: after a crash
      the entry is there whole or not at all. It needs a current version (never the first write).
    - ``read()`` returns the last full document and, in ``journal``, every delta appended after it.
    - ``write`` of a full document starts a new base: earlier deltas no longer apply to it.
    - ``compact(data, serial, lineage)`` stores ``data``, the full document of the current version
      ``serial``, as the new base (``StateConflictError`` when the current version is another). A
      crash at any point leaves either the old base and its journal or the new base.
    """

    def append(self, delta: bytes, serial: int, lineage: str, expected_serial: int) -> None: ...

    def compact(self, data: bytes, serial: int, lineage: str) -> None: ...


@runtime_checkable
class SupportsHistory(Protocol):
    """A backend that keeps earlier versions of the state."""

    def history(self, limit: int = 20) -> list[HistoryEntry]: ...

    def read_serial(self, serial: int) -> StoredState | None: ...


__all__ = [
    "HistoryEntry",
    "StateBackend",
    "StoredState",
    "SupportsHistory",
    "SupportsJournal",
    "SupportsLocking",
    "note_of_delta",
    "note_of_document",
    "who_am_i",
]
