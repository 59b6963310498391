"""The file backend: one JSON document on local disk, written atomically, with a kernel lock.

Layout for ``path = .recon/state.json``::

    .recon/state.json              the last full version (the state document itself)
    .recon/state.json.journal      versions stored since as deltas, one JSON line each (during an apply)
    .recon/state.json.backup       the full version before it
    .recon/history/<serial>.json   the last ``HISTORY_KEEP`` full versions (``recon state history``)
    .recon/history/<base>.journal  the deltas that were stored over full version <base>
    .recon/history/<serial>.who    who wrote that full version (``user@host``)
    .recon/state.json.lock         the lock file: ``fcntl.flock`` held for a whole operation
    .recon/state.json.lock.info    LockInfo JSON of the current holder (so a blocked user sees who)

Why ``flock``: the kernel drops it when its holder dies, so an apply killed with SIGKILL never
leaves a stale lock; the info file may then linger, but it is ignored while the flock is free.
A second writer fails at once (``LOCK_NB``), it never waits. ``force_unlock`` breaks a lock held
by a stuck live process by replacing the lock file: lockers check, after taking the flock, that
their descriptor still names the file at the path, so the stuck holder keeps only an orphan.

The document is the state itself, so the serial and lineage a read reports are the document's
own (``write`` refuses bytes whose header disagrees with the serial and lineage it is given).

Compare-and-swap: a write takes a short exclusive ``flock`` on the state's folder (separate from
the operation lock, so that a writer that holds the operation lock can still write), reads the
current serial and replaces the file only if it is still the expected one.

The journal (``SupportsJournal``): each line is ``{"at", "base", "lineage", "serial", "delta"}`` and
is written with one ``write`` and an ``fsync``. A line counts only when it is whole (ends with a
newline, parses), names the current full version as its ``base`` and the next serial: a line torn
by a crash, or left from before a newer full version, is ignored and cut off by the next append.
Compaction links the journal into the history, renames the new full version into place, then
removes the journal, so a crash at any point leaves the old base with its journal or the new base.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from reconciler.model.errors import LockInfo, StateConflictError, StateError
from reconciler.state.backend import HistoryEntry, StoredState, note_of_delta, note_of_document, who_am_i
from states.disk import atomic_write, fsync_dir, refuse_special
from states.file_lock import FileLock

HISTORY_KEEP = 20

# ``State.to_bytes`` indents by two spaces, so top-level keys are the only ones at that depth:
# finding them with bytes.find avoids parsing a multi-megabyte document twice. Sorted keys put
# "lineage" near the start and "serial" near the end.
_SERIAL, _LINEAGE = b'\n  "serial": ', b'\n  "lineage": "'


def _header(data: bytes, source: str) -> tuple[int, str]:
    """(serial, lineage) of a state document."""
    s, lin = data.rfind(_SERIAL), data.find(_LINEAGE)
    if s >= 0 and lin >= 0:
        digits = data[s + len(_SERIAL) : s + len(_SERIAL) + 20].split(b",")[0].split(b"\n")[0].strip()
        start = lin + len(_LINEAGE)
        if digits.isdigit():
            return int(digits), data[start : data.index(b'"', start)].decode()
    try:
        raw = json.loads(data)
        return int(raw["serial"]), str(raw["lineage"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{source} is not a recon state document (no serial/lineage): {exc}") from exc


_DELTA = b'"delta":'


def journal_line(delta: bytes, serial: int, lineage: str, base: int) -> bytes:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    head = json.dumps({"at": at, "base": base, "lineage": lineage, "serial": serial}, separators=(",", ":"))
    return head[:-1].encode() + b"," + _DELTA + delta + b"}\n"


def parse_journal(data: bytes, base: int | None = None, lineage: str | None = None,
                  ) -> tuple[list[tuple[int, str, int, str, bytes]], int]:
    """The whole, consecutive lines of a journal: [(base, lineage, serial, at, delta)], and the byte
    length they take. With ``base``/``lineage``, only lines over that full version count."""
    entries: list[tuple[int, str, int, str, bytes]] = []
    offset = 0
    while True:
        end = data.find(b"\n", offset)
        if end < 0:
            break
        line = data[offset:end]
        try:
            raw = json.loads(line)
            b, lin, serial, at = int(raw["base"]), str(raw["lineage"]), int(raw["serial"]), str(raw["at"])
        except (ValueError, KeyError, TypeError):
            break
        if (base is not None and b != base) or (lineage is not None and lin != lineage):
            break
        expected = (entries[-1][2] if entries else b) + 1
        if serial != expected:
            break
        delta = line[line.index(_DELTA) + len(_DELTA) : -1]
        entries.append((b, lin, serial, at, delta))
        offset = end + 1
    return entries, offset


class FileBackend:
    """State in a local JSON file. Implements StateBackend, SupportsJournal, SupportsLocking and
    SupportsHistory."""

    def __init__(self, path: Path, history_keep: int = HISTORY_KEEP) -> None:
        self.path = Path(path)
        self.history_keep = history_keep
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self._locking = FileLock(self.path)
        self.lock_path, self.info_path = self._locking.lock_path, self._locking.info_path
        # .recon/state.json keeps .recon/history/; any other name gets its own <stem>.history/
        hist = "history" if self.path.name == "state.json" else f"{self.path.stem}.history"
        self.history_dir = self.path.parent / hist
        # What this backend knows of the journal since its own last append: (base, lineage,
        # serial, end offset, (inode, size, mtime_ns) of the file then). While the file is as it
        # left it, the next append need not read and parse every line again (an apply of N
        # steps would read O(N^2) bytes); anything else (a compaction, another writer) and the
        # journal is read whole, as before.
        self._journal_end: tuple[int, str, int, int, tuple[int, int, int]] | None = None

    def describe(self) -> str:
        return f"file {self.path}"

    # -- reading and writing ------------------------------------------------------------------

    def read(self) -> StoredState | None:
        refuse_special(self.path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read state {self.path}: {exc.strerror}") from exc
        serial, lineage = _header(data, str(self.path))
        entries, _ = parse_journal(self._journal_bytes(), serial, lineage)
        return StoredState(data=data, serial=serial + len(entries), lineage=lineage,
                           journal=tuple(e[4] for e in entries))

    def _journal_bytes(self) -> bytes:
        refuse_special(self.journal_path)
        try:
            return self.journal_path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StateError(f"cannot read the state journal {self.journal_path}: {exc.strerror}") from exc

    def _base(self) -> tuple[int, str] | None:
        """(serial, lineage) of the full version on disk, read from its header only."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(4096)
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
                tail = fh.read()
        except FileNotFoundError:
            return None
        try:
            return _header(head[: head.rfind(b"\n")] + b"\n" + tail, str(self.path))
        except StateError:
            return _header(self.path.read_bytes(), str(self.path))

    def append(self, delta: bytes, serial: int, lineage: str, expected_serial: int) -> None:
        try:
            with self._cas_mutex():
                base = self._base()
                if base is None:
                    raise StateError(f"cannot append to the journal of {self.path}: there is no full state yet")
                found, good = self._journal_tail(base)
                if found != expected_serial or base[1] != lineage or serial != found + 1:
                    raise StateConflictError(
                        f"another apply changed the state (serial {found}, expected {expected_serial}); "
                        "re-run plan"
                    )
                line = journal_line(delta, serial, lineage, base[0])
                new_file = not self.journal_path.exists()
                fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.ftruncate(fd, good)  # a torn line, or lines over an older base, go
                    os.lseek(fd, good, os.SEEK_SET)
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                    st = os.fstat(fd)
                    self._journal_end = (base[0], base[1], serial, good + len(line),
                                         (st.st_ino, st.st_size, st.st_mtime_ns))
                finally:
                    os.close(fd)
                if new_file:
                    fsync_dir(self.path.parent)
        except OSError as exc:
            raise StateError(f"cannot write the state journal {self.journal_path}: {exc.strerror or exc}") from exc

    def _journal_tail(self, base: tuple[int, str]) -> tuple[int, int]:
        """(serial, byte length) of the whole lines of the journal over ``base``."""
        known = self._journal_end
        if known is not None and known[:2] == base:
            try:
                st = os.stat(self.journal_path)
                if (st.st_ino, st.st_size, st.st_mtime_ns) == known[4]:
                    return known[2], known[3]
            except OSError:
                pass
        self._journal_end = None
        entries, good = parse_journal(self._journal_bytes(), base[0], base[1])
        return base[0] + len(entries), good

    def compact(self, data: bytes, serial: int, lineage: str) -> None:
        if _header(data, "the new state") != (serial, lineage):
            raise StateError(f"refusing to write a state document whose serial/lineage differ from {serial}/{lineage}")
        try:
            with self._cas_mutex():
                base = self._base()
                entries, _ = parse_journal(self._journal_bytes(), *base) if base else ([], 0)
                found = base[0] + len(entries) if base else None
                if found != serial or (base and base[1] != lineage):
                    raise StateConflictError(
                        f"another apply changed the state (serial {found}, expected {serial}); re-run plan"
                    )
                if not entries:
                    return
                self._replace(data, serial)
        except OSError as exc:
            raise StateError(f"cannot write state {self.path}: {exc.strerror or exc}") from exc

    def _replace(self, data: bytes, serial: int) -> None:
        """The full version ``data`` becomes the base (under the CAS mutex): the journal over the
        old base goes to the history first, the journal itself last."""
        base = self._base()
        if base is not None and self.journal_path.exists():
            self.history_dir.mkdir(parents=True, exist_ok=True)
            self._link_over(self.journal_path, self.history_dir / f"{base[0]}.journal")
        if base is not None:
            self._link_over(self.path, self.backup_path)
        atomic_write(self.path, data)
        self.journal_path.unlink(missing_ok=True)
        self._record_history(serial)

    def write(self, data: bytes, serial: int, lineage: str, expected_serial: int | None) -> None:
        if _header(data, "the new state") != (serial, lineage):
            # The document is the file: its own serial/lineage are what later reads report.
            raise StateError(f"refusing to write a state document whose serial/lineage differ from {serial}/{lineage}")
        try:
            with self._cas_mutex():
                current = self.read()
                found = current.serial if current else None
                if found != expected_serial:
                    raise StateConflictError(
                        f"another apply changed the state (serial {found}, expected {expected_serial}); "
                        "re-run plan"
                    )
                self._replace(data, serial)
        except OSError as exc:
            raise StateError(f"cannot write state {self.path}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _cas_mutex(self) -> Iterator[None]:
        """A short, blocking exclusive lock on the state's folder for one read-compare-replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # -- history ------------------------------------------------------------------------------

    @staticmethod
    def _link_over(src: Path, dest: Path) -> None:
        """Make ``dest`` a hard link to ``src``'s file, atomically. Files here are never changed
        in place (every write renames a new file over the old), so links are copies for free."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dest)

    def _record_history(self, serial: int) -> None:
        self.history_dir.mkdir(parents=True, exist_ok=True)
        self._link_over(self.path, self.history_dir / f"{serial}.json")
        (self.history_dir / f"{serial}.who").write_text(who_am_i() + "\n")
        fsync_dir(self.history_dir)
        kept = self._history_files()
        for old in kept[self.history_keep :]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
            old.with_suffix(".who").unlink(missing_ok=True)
        oldest = int(kept[: self.history_keep][-1].stem) if kept else 0
        for journal in self.history_dir.glob("*.journal"):
            if not journal.stem.isdigit() or int(journal.stem) < oldest:
                journal.unlink(missing_ok=True)

    def _journals(self) -> list[tuple[int, str, int, str, bytes]]:
        """Every kept journal entry (archived and current): (base, lineage, serial, at, delta)."""
        found = []
        sources = sorted(self.history_dir.glob("*.journal")) if self.history_dir.is_dir() else []
        for path in [*sources, self.journal_path]:
            try:
                found += parse_journal(path.read_bytes())[0]
            except FileNotFoundError:
                continue
        return found

    def _history_files(self) -> list[Path]:
        """Newest first."""
        if not self.history_dir.is_dir():
            return []
        files = [p for p in self.history_dir.glob("*.json") if p.stem.isdigit()]
        return sorted(files, key=lambda p: int(p.stem), reverse=True)

    def history(self, limit: int = 20) -> list[HistoryEntry]:
        entries: dict[int, HistoryEntry] = {}
        base = self._base()
        for b, lineage, serial, at, delta in self._journals():
            if (b, lineage) == base or (self.history_dir / f"{b}.json").exists():
                entries[serial] = HistoryEntry(serial=serial, lineage=lineage, written_at=at, size=len(delta),
                                               note=note_of_delta(delta))
        for entry in self._full_history(limit):
            entries[entry.serial] = entry
        return [entries[s] for s in sorted(entries, reverse=True)[:limit]]

    def _full_history(self, limit: int) -> list[HistoryEntry]:
        entries = []
        for p in self._history_files()[:limit]:
            try:
                data = p.read_bytes()
                st = p.stat()
            except FileNotFoundError:  # pruned by a concurrent writer
                continue
            serial, lineage = _header(data, str(p))
            written = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
            try:
                who = p.with_suffix(".who").read_text().strip()
            except OSError:  # a version written before the writer was recorded
                who = ""
            entries.append(
                HistoryEntry(serial=serial, lineage=lineage, written_at=written, size=len(data), who=who,
                             note=note_of_document(data[:4096]))
            )
        return entries

    def read_serial(self, serial: int) -> StoredState | None:
        p = self.history_dir / f"{serial}.json"
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return self._replayable(serial)
        found, lineage = _header(data, str(p))
        return StoredState(data=data, serial=found, lineage=lineage)

    def _replayable(self, serial: int) -> StoredState | None:
        """A version stored as a delta: its base and the deltas up to it."""
        entry = next((e for e in self._journals() if e[2] == serial), None)
        if entry is None:
            return None
        base, lineage = entry[0], entry[1]
        chain = [e[4] for e in self._journals() if e[0] == base and e[1] == lineage and e[2] <= serial]
        for path in (self.history_dir / f"{base}.json", self.path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if _header(data, str(path)) == (base, lineage) and len(chain) == serial - base:
                return StoredState(data=data, serial=serial, lineage=lineage, journal=tuple(chain))
        return None

    # -- locking (states/file_lock.py) ---------------------------------------------------------

    def lock(self, info: LockInfo) -> str:
        return self._locking.lock(info)

    def unlock(self, lock_id: str) -> None:
        self._locking.unlock(lock_id)

    def still_held(self, lock_id: str) -> bool:
        """Whether this backend still holds lock ``lock_id`` (``force_unlock`` elsewhere ends it)."""
        return self._locking.still_held(lock_id)

    def lock_info(self) -> LockInfo | None:
        """The holder's LockInfo, or None when nobody holds the lock (a stale info file is ignored)."""
        return self._locking.lock_info()

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock held by someone else, when ``lock_id`` names it."""
        self._locking.force_unlock(lock_id)
