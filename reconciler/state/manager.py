"""The one place where state documents are serialised, serials bumped and lineage kept.

Backends (``states/``, behind ``reconciler.state.backend``'s protocol, opened by the CLI) store bytes; ``StateManager`` turns them into ``State`` values and back
(Terraform's ``statemgr`` over a ``remote.Client``). Every write is a compare-and-swap against
the serial this manager last read, so a writer that read an old state cannot overwrite a newer
one. Writes are thread-safe: the apply engine records state after every step from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from reconciler import __version__
from reconciler.model.errors import LockInfo, StateConflictError, StateError, StateLockedError
from reconciler.state.backend import (
    HistoryEntry,
    StateBackend,
    StoredState,
    SupportsHistory,
    SupportsJournal,
    SupportsLocking,
)
from reconciler.state.document import State, StateResource

_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_TOP = json.JSONEncoder(sort_keys=True)


# address -> (the resource object, its encoded line): see ``serialise``
LineCache = dict[str, tuple[StateResource, str]]

# A journal is compacted into a full version when it holds this many entries, or more bytes than
# the full version (replaying it would then cost more than reading a new full version).
JOURNAL_MAX_ENTRIES = 2000


def serialise(state: State, cache: LineCache | None = None) -> bytes:
    """The stored form: JSON with top-level keys sorted and indented by two, one resource a line.

    Deterministic (addresses and keys sorted), so equal states have equal bytes, and one line per
    resource keeps diffs readable. Unlike ``State.to_bytes`` (fully indented) it is encoded by the
    C JSON encoder: several times faster for a state of thousands of resources.

    ``cache`` makes the writes of an apply cost what changed, not the whole state: a resource that
    is the very object encoded last time keeps its line. That holds because recorded resources are
    never changed in place (the engine's recorder copies a resource before it changes it; see
    ``apply._Recorder``); ``RECON_VERIFY_STATE_CACHE=1`` checks it on every write (the tests set it).
    """
    doc = state.model_dump(mode="json", exclude={"resources"})
    resources = state.resources
    lines = []
    for key in sorted({*doc, "resources"}):
        if key != "resources":
            lines.append(f"  {_TOP.encode(key)}: {_TOP.encode(doc[key])}")
        elif not resources:
            lines.append('  "resources": {}')
        else:
            body = ",\n".join(f"    {_TOP.encode(a)}: {_line(a, resources[a], cache)}" for a in sorted(resources))
            lines.append('  "resources": {\n' + body + "\n  }")
    if cache is not None:
        for gone in cache.keys() - resources.keys():
            del cache[gone]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def _line(address: str, resource: StateResource, cache: LineCache | None) -> str:
    if cache is not None:
        known = cache.get(address)
        if known is not None and known[0] is resource:
            return known[1]
    line = _COMPACT.encode(resource.model_dump(mode="json"))
    if cache is not None:
        cache[address] = (resource, line)
    return line


def delta_of(state: State, written: dict[str, StateResource], cache: LineCache) -> bytes:
    """What changed from the resources last written (``written``, by identity) to ``state``: the
    resources set (their whole recorded form), the addresses removed, and the top-level fields.
    ``written`` and ``cache`` are brought up to date."""
    top = state.model_dump(mode="json", exclude={"resources"})
    changed = [a for a, r in state.resources.items() if written.get(a) is not r]
    removed = sorted(written.keys() - state.resources.keys())
    for gone in removed:
        del written[gone]
        cache.pop(gone, None)
    sets = ",".join(f"{_TOP.encode(a)}:{_line(a, state.resources[a], cache)}" for a in sorted(changed))
    for a in changed:
        written[a] = state.resources[a]
    return (f'{{"del":{_COMPACT.encode(removed)},"set":{{{sets}}},"top":{_COMPACT.encode(top)}}}').encode()


def replay(stored: StoredState, source: str) -> State:
    """The version ``stored`` holds: its full document, with its journal's deltas applied in order."""
    if not stored.journal:
        return State.from_bytes(stored.data, source=source)
    try:
        raw = json.loads(stored.data)
        resources = raw.setdefault("resources", {})
        for entry in stored.journal:
            delta = json.loads(entry)
            for address in delta["del"]:
                resources.pop(address, None)
            resources.update(delta["set"])
            # the top-level fields are the delta's own, whole: a field it lacks (a note of an
            # earlier version) is not the replayed version's
            raw = {**delta["top"], "resources": resources}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{source}: its journal does not apply to its full version: {exc}") from exc
    return State.from_raw(raw, source=source)


def _who() -> str:
    from reconciler.state.backend import who_am_i

    return who_am_i()


class StateManager:
    """Reads and writes ``State`` through a backend.

    Invariants: ``write`` stores ``serial = last read serial + 1`` only if the backend still holds
    the serial last read (else ``StateConflictError``) and never changes the lineage unless
    forced. ``read`` on an empty backend returns a fresh ``State`` with a new lineage and serial 0
    (nothing is stored until the first write, which gets serial 1).
    """

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self._mutex = threading.RLock()
        self._read_done = False
        self._serial: int | None = None  # what the backend held at the last read/write
        self._lineage: str | None = None
        self._fresh_lineage = str(uuid.uuid4())
        self._lines: LineCache = {}
        self._verify = os.environ.get("RECON_VERIFY_STATE_CACHE") == "1"
        # journaling (see ``journaled``): the resources last read or written, by identity, and the
        # journal's length over the full version of ``_base_size`` bytes
        self._journaling = False
        self._written: dict[str, StateResource] = {}
        self._last: State | None = None
        self._journal_len = 0
        self._journal_bytes = 0
        self._base_size = 0
        self._held: LockInfo | None = None  # the lock this manager holds

    def describe(self) -> str:
        return self.backend.describe()

    # -- read and write -----------------------------------------------------------------------

    def read(self) -> State:
        with self._mutex:
            stored = self.backend.read()
            self._read_done = True
            if stored is None:
                self._serial, self._lineage = None, None
                self._written, self._last = {}, None
                return State(lineage=self._fresh_lineage, serial=0)
            state = replay(stored, self.describe())
            self._serial, self._lineage = stored.serial, stored.lineage
            self._written, self._last = dict(state.resources), state
            self._journal_len = len(stored.journal)
            self._journal_bytes = sum(map(len, stored.journal))
            self._base_size = len(stored.data)
            return state

    @property
    def serial(self) -> int:
        """The serial last read or written (0: no state yet)."""
        return self._serial or 0

    @property
    def lineage(self) -> str:
        return self._lineage or self._fresh_lineage

    def write(self, state: State, force: bool = False, note: str | None = None) -> State:
        """Store ``state`` as the next version; returns it with its new serial and lineage.

        ``note``: why this version is written, kept with it alone (``recon state history``); the
        note ``state`` carries (read from an earlier version) is not written again."""
        with self._mutex:
            if not self._read_done:
                self.read()
            lineage = self._check_lineage(state.lineage, force)
            new = state.model_copy(
                update={
                    "serial": (self._serial or 0) + 1,
                    "lineage": lineage,
                    "recon_version": state.recon_version or __version__,
                    "note": note,
                }
            )
            if self._journal_fits():
                assert self._serial is not None and isinstance(self.backend, SupportsJournal)
                delta = delta_of(new, self._written, self._lines)
                self.backend.append(delta, new.serial, lineage, self._serial)
                self._journal_len += 1
                self._journal_bytes += len(delta)
                if self._verify:
                    self._verify_journal(new)
            else:
                data = serialise(new, self._lines)
                if self._verify and data != serialise(new):
                    raise StateError("internal error: a recorded resource was changed in place (state line cache)")
                self.backend.write(data, new.serial, lineage, self._serial)
                self._written = dict(new.resources)
                self._journal_len = self._journal_bytes = 0
                self._base_size = len(data)
            self._serial, self._lineage, self._last = new.serial, lineage, new
            return new

    def _journal_fits(self) -> bool:
        """Whether the next write may be a journal entry rather than a full version."""
        return (self._journaling and self._serial is not None and self._last is not None
                and isinstance(self.backend, SupportsJournal)
                and self._journal_len < JOURNAL_MAX_ENTRIES and self._journal_bytes < max(self._base_size, 1 << 16))

    def _verify_journal(self, new: State) -> None:
        stored = self.backend.read()
        if stored is None or serialise(replay(stored, self.describe())) != serialise(new):
            raise StateError("internal error: the state journal does not replay to the state written")

    @contextlib.contextmanager
    def journaled(self) -> Iterator[None]:
        """Within: every write stores only what changed (a journal entry), when the backend can;
        at the end the journal is compacted into a full version. A crash within leaves the full
        version and its journal, which ``read`` replays."""
        self._journaling = True
        try:
            yield
        except BaseException:
            self._journaling = False  # left as it is: the next read replays it, the next apply compacts
            raise
        self._journaling = False
        self.compact()

    def compact(self) -> None:
        """Store the current version as a full one, when it is held as journal entries."""
        with self._mutex:
            if not self._journal_len or self._last is None or not isinstance(self.backend, SupportsJournal):
                return
            data = serialise(self._last, self._lines)
            self.backend.compact(data, self._last.serial, self._last.lineage)
            self._journal_len = self._journal_bytes = 0
            self._base_size = len(data)

    def _check_lineage(self, lineage: str, force: bool) -> str:
        if self._lineage is None or lineage == self._lineage or force:
            return lineage
        raise StateError(
            f"refusing to write a state of lineage {lineage} over {self.describe()}, "
            f"which has lineage {self._lineage} (a different state); use --force to replace it"
        )

    def push(self, state: State, force: bool = False) -> State:
        """Replace the stored state with ``state`` (``recon state push``), Terraform's rules:

        refused without ``force`` when the lineage differs, when ``state.serial`` is lower than the
        stored serial (it is older), or equal with different content. The stored serial grows by one.
        """
        with self._mutex:
            current = self.read()
            if not force and self._serial is not None:
                if state.lineage != self._lineage:
                    raise StateError(
                        f"cannot push: the state has lineage {state.lineage}, {self.describe()} has "
                        f"lineage {self._lineage}; use --force to replace a different state"
                    )
                if state.serial < self._serial:
                    raise StateError(
                        f"cannot push: its serial {state.serial} is lower than the stored serial "
                        f"{self._serial} (it is older); use --force to overwrite"
                    )
                if state.serial == self._serial and state.resources != current.resources:
                    raise StateError(
                        f"cannot push: serial {state.serial} is already stored with different content; "
                        "use --force to overwrite"
                    )
            return self.write(state, force=True)

    # -- history ------------------------------------------------------------------------------

    def history(self, limit: int = 20) -> list[HistoryEntry]:
        if not isinstance(self.backend, SupportsHistory):
            raise StateError(f"{self.describe()} keeps no history")
        return self.backend.history(limit)

    def read_serial(self, serial: int) -> State:
        if not isinstance(self.backend, SupportsHistory):
            raise StateError(f"{self.describe()} keeps no history")
        stored = self.backend.read_serial(serial)
        if stored is None:
            raise StateError(f"{self.describe()} has no kept version with serial {serial}")
        return replay(stored, f"{self.describe()} serial {serial}")

    # -- locking ------------------------------------------------------------------------------

    def new_lock_info(self, operation: str) -> LockInfo:
        return LockInfo(
            id=str(uuid.uuid4()),
            operation=operation,
            who=_who(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            version=__version__,
            path=self.describe(),
            pid=os.getpid(),
            host=socket.gethostname(),
        )

    @contextlib.contextmanager
    def lock(self, operation: str) -> Iterator[LockInfo]:
        """Hold the state lock for ``operation``; raises StateLockedError at once if held."""
        info = self.new_lock_info(operation)
        if not isinstance(self.backend, SupportsLocking):
            yield info
            return
        lock_id = self.backend.lock(info)
        self._held = info
        try:
            yield info
        finally:
            self._held = None
            broken = self._broken(lock_id)
            try:
                self.backend.unlock(lock_id)
            except StateError:
                if not broken:  # a lock broken by force-unlock has nothing left to release
                    raise

    def _broken(self, lock_id: str) -> bool:
        still_held = getattr(self.backend, "still_held", None)
        return callable(still_held) and not still_held(lock_id)

    def check_lock_held(self) -> None:
        """Raise ``StateLockedError`` when the lock this manager took was broken since
        (``recon force-unlock`` by someone else): the caller must not go on writing."""
        held = self._held
        if held is None or not self._broken(held.id):
            return
        raise StateLockedError(
            None,
            f"the state lock of this {held.operation} (lock ID {held.id}) was broken by "
            "recon force-unlock while it ran; nothing was changed",
        )

    def lock_info(self) -> LockInfo | None:
        return self.backend.lock_info() if isinstance(self.backend, SupportsLocking) else None

    def force_unlock(self, lock_id: str) -> None:
        if not isinstance(self.backend, SupportsLocking):
            raise StateError(f"{self.describe()} does not support locking")
        self.backend.force_unlock(lock_id)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()


def holder_alive(info: LockInfo) -> bool | None:
    """Whether the lock holder's process still runs: True or False when it ran on this host,
    None when that cannot be known here (another host, or no pid recorded)."""
    if not info.pid or not info.host or info.host != socket.gethostname():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


__all__ = ["StateConflictError", "StateManager", "holder_alive"]
