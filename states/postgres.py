"""The PostgreSQL backend: one database shared by many CI runners (like Terraform's ``pg`` backend).

Tables (created on first use; ``recon_schema_version`` records which ``MIGRATIONS`` ran)::

    recon_state_heads (name PK, serial, lineage, version_id)   the current version of each state
    recon_states (id, name, serial, lineage, data, written_at, who)   every kept version (history)
    recon_locks (name PK, id, operation, who, created, pid, info)     who holds each state's lock
    recon_journal (id, name, base, serial, lineage, delta, written_at, who)  versions stored as deltas

The head names the current serial and the full version it is based on (``version_id``); the
versions after that one are journal rows whose ``base`` is its serial (``SupportsJournal``). An
append is the same compare-and-swap as a write, inserting a journal row instead of a version;
compaction inserts the current serial's full version and points the head at it.

A write is a compare-and-swap in one statement: a data-modifying CTE updates the head row only
``WHERE serial = expected`` (or inserts it only when absent) and inserts the version only when the
head moved. PostgreSQL re-checks the ``WHERE`` after waiting for a concurrent updater, so exactly
one of two racing writers wins.

The lock is a session advisory lock, taken with ``pg_try_advisory_lock`` on a connection of its
own that stays open for the whole operation; the lock row only says who holds it. A holder killed
with SIGKILL drops its connection and PostgreSQL frees its advisory lock; its row is then stale
(its advisory lock is free) and is ignored, then overwritten by the next locker.

psycopg is imported lazily and its errors never leave this module; messages never show the DSN's
password.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

from reconciler.model.errors import LockInfo, StateConflictError, StateError, StateLockedError
from reconciler.state.backend import HistoryEntry, StoredState, note_of_delta, note_of_document, who_am_i

HISTORY_KEEP = 50
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 30_000
# Advisory locks use the two-int4 form: (recon's namespace, crc32 of the state name).
LOCK_NAMESPACE = 0x7265636F & 0x7FFFFFFF  # "reco"
HOLDER_ROW_WAIT_S = 1.0  # a lock held with no holder row yet: how long to look again

# Each entry migrates the schema from version i to i+1; append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE recon_state_heads (
        name text PRIMARY KEY,
        serial bigint NOT NULL,
        lineage text NOT NULL,
        version_id bigint NOT NULL
    );
    CREATE TABLE recon_states (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        serial bigint NOT NULL,
        lineage text NOT NULL,
        data bytea NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        who text NOT NULL DEFAULT ''
    );
    CREATE INDEX recon_states_name_serial ON recon_states (name, serial DESC);
    CREATE TABLE recon_locks (
        name text PRIMARY KEY,
        id text NOT NULL,
        operation text NOT NULL,
        who text NOT NULL,
        created text NOT NULL,
        pid integer NOT NULL,
        info jsonb NOT NULL
    );
    """,
    """
    CREATE TABLE recon_journal (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        base bigint NOT NULL,
        serial bigint NOT NULL,
        lineage text NOT NULL,
        delta bytea NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        who text NOT NULL DEFAULT ''
    );
    CREATE INDEX recon_journal_name_serial ON recon_journal (name, serial DESC);
    """,
]

_APPEND = """
WITH head AS (
    UPDATE recon_state_heads h
       SET serial = %(serial)s
      FROM recon_states s
     WHERE h.name = %(name)s AND h.serial = %(expected)s AND h.lineage = %(lineage)s AND s.id = h.version_id
    RETURNING s.serial AS base
)
INSERT INTO recon_journal (name, base, serial, lineage, delta, who)
SELECT %(name)s, base, %(serial)s, %(lineage)s, %(delta)s, %(who)s FROM head
"""

_COMPACT = """
WITH head AS (
    UPDATE recon_state_heads
       SET version_id = nextval('recon_states_id_seq')
     WHERE name = %(name)s AND serial = %(serial)s AND lineage = %(lineage)s
    RETURNING version_id
)
INSERT INTO recon_states (id, name, serial, lineage, data, who)
SELECT version_id, %(name)s, %(serial)s, %(lineage)s, %(data)s, %(who)s FROM head
"""

_PRUNE_JOURNAL = """
DELETE FROM recon_journal
 WHERE name = %(name)s
   AND base < coalesce((SELECT min(serial) FROM recon_states WHERE name = %(name)s), 0)
"""

_WRITE_UPDATE = """
WITH head AS (
    UPDATE recon_state_heads
       SET serial = %(serial)s, lineage = %(lineage)s, version_id = nextval('recon_states_id_seq')
     WHERE name = %(name)s AND serial = %(expected)s
    RETURNING version_id
)
INSERT INTO recon_states (id, name, serial, lineage, data, who)
SELECT version_id, %(name)s, %(serial)s, %(lineage)s, %(data)s, %(who)s FROM head
"""

_WRITE_CREATE = """
WITH head AS (
    INSERT INTO recon_state_heads (name, serial, lineage, version_id)
    VALUES (%(name)s, %(serial)s, %(lineage)s, nextval('recon_states_id_seq'))
    ON CONFLICT (name) DO NOTHING
    RETURNING version_id
)
INSERT INTO recon_states (id, name, serial, lineage, data, who)
SELECT version_id, %(name)s, %(serial)s, %(lineage)s, %(data)s, %(who)s FROM head
"""

_PRUNE = """
DELETE FROM recon_states
 WHERE name = %(name)s
   AND id < (SELECT min(id) FROM (SELECT id FROM recon_states WHERE name = %(name)s
                                   ORDER BY id DESC LIMIT %(keep)s) AS kept)
"""

_HOLDER_ALIVE = """
SELECT EXISTS (SELECT 1 FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND pid = %(pid)s
                  AND classid = %(ns)s::oid AND objid = %(key)s::oid AND objsubid = 2)
"""


# a full version's note is near its start (sorted top-level keys); a delta's in its "top"
_HISTORY = (
    "SELECT DISTINCT ON (serial) serial, lineage, written_at, size, who, kind, head FROM ("
    " SELECT serial, lineage, written_at, length(data) AS size, who, 0 AS kind, id,"
    "  substring(data from 1 for 4096) AS head FROM recon_states"
    "  WHERE name = %(name)s"
    " UNION ALL"
    " SELECT serial, lineage, written_at, length(delta), who, 1, id, delta FROM recon_journal"
    "  WHERE name = %(name)s) AS v ORDER BY serial DESC, kind, id DESC LIMIT %(limit)s"
)
_READ_FULL = "SELECT data, serial, lineage FROM recon_states WHERE name = %s AND serial = %s ORDER BY id DESC LIMIT 1"
_READ_DELTA = "SELECT base, lineage FROM recon_journal WHERE name = %s AND serial = %s ORDER BY id DESC LIMIT 1"
_READ_BASE = (
    "SELECT data FROM recon_states WHERE name = %s AND serial = %s AND lineage = %s ORDER BY id DESC LIMIT 1"
)


def redact_dsn(dsn: str) -> tuple[str, str]:
    """(a description of ``dsn`` without its password, the password or "")."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN: say nothing about its content
        return "postgres (unparsable DSN)", ""
    password = str(params.get("password") or "")
    user = str(params.get("user") or "")
    host = params.get("host") or "localhost"
    port = params.get("port") or 5432
    db = params.get("dbname") or user
    return f"postgres {user + '@' if user else ''}{host}:{port}/{db}", password


class PostgresBackend:
    """State rows in PostgreSQL. Implements StateBackend, SupportsJournal, SupportsLocking and
    SupportsHistory."""

    def __init__(
        self,
        dsn: str,
        name: str = "default",
        history_keep: int = HISTORY_KEEP,
        connect_timeout: int = CONNECT_TIMEOUT_S,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.history_keep = history_keep
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self._where, self._password = redact_dsn(dsn)
        self._conn: Any = None  # psycopg.Connection for reads and writes
        self._lock_conn: Any = None  # the advisory lock's own connection
        self._lock_info: LockInfo | None = None
        self._schema_ready = False
        self.lock_key = zlib.crc32(name.encode()) & 0x7FFFFFFF

    def describe(self) -> str:
        return f"{self._where} (state {self.name!r})"

    # -- connections and errors ---------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self.dsn, self._where) if self.dsn else text

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn psycopg's errors into StateError; no psycopg type leaves the module."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise StateError(f"{doing} ({self.describe()}): {self._redact(msg)}") from None

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise StateError(
                "the postgres state backend needs psycopg 3: pip install 'recon[postgres]'"
            ) from exc
        with self._errors("cannot connect to the state database"):
            return psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                options=f"-c statement_timeout={self.statement_timeout_ms} -c lock_timeout={self.statement_timeout_ms}",
                application_name="recon",
            )

    def _db(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        if not self._schema_ready:
            self._migrate(self._conn)
            self._schema_ready = True
        return self._conn

    def _migrate(self, conn: Any) -> None:
        """Create or upgrade the schema; a transaction-scoped advisory lock serialises migrators."""
        with self._errors("cannot create the state schema"), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_NAMESPACE,))
            conn.execute("CREATE TABLE IF NOT EXISTS recon_schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM recon_schema_version").fetchone()
            current = row[0] or 0
            for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                conn.execute(sql)
                conn.execute("INSERT INTO recon_schema_version (version) VALUES (%s)", (version,))
        if current > len(MIGRATIONS):
            raise StateError(
                f"the state database {self._where} has schema version {current}; "
                f"this recon knows up to {len(MIGRATIONS)}: upgrade recon"
            )

    def close(self) -> None:
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._conn = self._lock_conn = None
        self._lock_info = None

    # -- reading and writing ------------------------------------------------------------------

    def read(self) -> StoredState | None:
        conn = self._db()
        with self._errors("cannot read the state"):
            row = conn.execute(
                "SELECT s.data, s.serial, s.lineage, h.serial FROM recon_state_heads h "
                "JOIN recon_states s ON s.id = h.version_id WHERE h.name = %s",
                (self.name,),
            ).fetchone()
            if row is None:
                return None
            journal: list[bytes] = []
            if row[3] != row[1]:
                journal = self._chain(conn, row[1], row[2], row[3])
        return StoredState(data=bytes(row[0]), serial=row[1] + len(journal), lineage=row[2], journal=tuple(journal))

    def _chain(self, conn: Any, base: int, lineage: str, serial: int) -> list[bytes]:
        """The deltas over full version ``base`` up to ``serial``, in order (every one of them)."""
        rows = conn.execute(
            "SELECT DISTINCT ON (serial) serial, delta FROM recon_journal WHERE name = %s AND base = %s "
            "AND lineage = %s AND serial > %s AND serial <= %s ORDER BY serial, id DESC",
            (self.name, base, lineage, base, serial),
        ).fetchall()
        if [r[0] for r in rows] != list(range(base + 1, serial + 1)):
            raise StateError(f"{self.describe()}: the journal over serial {base} is incomplete")
        return [bytes(r[1]) for r in rows]

    def append(self, delta: bytes, serial: int, lineage: str, expected_serial: int) -> None:
        conn = self._db()
        params = {"name": self.name, "serial": serial, "lineage": lineage, "expected": expected_serial,
                  "delta": delta, "who": who_am_i()}
        with self._errors("cannot write the state journal"):
            if conn.execute(_APPEND, params).rowcount != 1:
                self._conflict(conn, expected_serial)

    def compact(self, data: bytes, serial: int, lineage: str) -> None:
        conn = self._db()
        params = {"name": self.name, "serial": serial, "lineage": lineage, "data": data, "who": who_am_i(),
                  "keep": self.history_keep}
        with self._errors("cannot write the state"):
            if conn.execute(_COMPACT, params).rowcount != 1:
                self._conflict(conn, serial)
            conn.execute(_PRUNE, params)
            conn.execute(_PRUNE_JOURNAL, params)

    def _conflict(self, conn: Any, expected: int | None) -> None:
        row = conn.execute("SELECT serial FROM recon_state_heads WHERE name = %s", (self.name,)).fetchone()
        found = row[0] if row else None
        raise StateConflictError(f"another apply changed the state (serial {found}, expected {expected}); re-run plan")

    def write(self, data: bytes, serial: int, lineage: str, expected_serial: int | None) -> None:
        conn = self._db()
        params = {
            "name": self.name,
            "serial": serial,
            "lineage": lineage,
            "expected": expected_serial,
            "data": data,
            "who": who_am_i(),
            "keep": self.history_keep,
        }
        with self._errors("cannot write the state"):
            cur = conn.execute(_WRITE_CREATE if expected_serial is None else _WRITE_UPDATE, params)
            if cur.rowcount != 1:
                self._conflict(conn, expected_serial)
            conn.execute(_PRUNE, params)
            conn.execute(_PRUNE_JOURNAL, params)

    # -- history ------------------------------------------------------------------------------

    def history(self, limit: int = 20) -> list[HistoryEntry]:
        """Every kept version, full or stored as a delta (a serial that is both: the full one)."""
        conn = self._db()
        with self._errors("cannot read the state history"):
            rows = conn.execute(_HISTORY, {"name": self.name, "limit": limit}).fetchall()
        return [
            HistoryEntry(serial=r[0], lineage=r[1], written_at=r[2].isoformat(timespec="seconds"), size=r[3], who=r[4],
                         note=note_of_delta(bytes(r[6])) if r[5] else note_of_document(bytes(r[6])))
            for r in rows
        ]

    def read_serial(self, serial: int) -> StoredState | None:
        conn = self._db()
        with self._errors("cannot read the state history"):
            row = conn.execute(_READ_FULL, (self.name, serial)).fetchone()
            if row is not None:
                return StoredState(data=bytes(row[0]), serial=row[1], lineage=row[2])
            entry = conn.execute(_READ_DELTA, (self.name, serial)).fetchone()
            if entry is None:
                return None
            base = conn.execute(_READ_BASE, (self.name, entry[0], entry[1])).fetchone()
            if base is None:
                return None
            chain = self._chain(conn, entry[0], entry[1], serial)
        return StoredState(data=bytes(base[0]), serial=serial, lineage=entry[1], journal=tuple(chain))

    # -- locking ------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> str:
        if self._lock_conn is not None:
            raise StateLockedError(self._lock_info, "the state is already locked by this process")
        self._db()  # the schema must exist before the lock row is written
        conn = self._connect()
        try:
            with self._errors("cannot lock the state"):
                # The holder takes the advisory lock and then writes its row (and deletes the row
                # before it lets go): a lock held with no row is a holder in between, so look
                # again for a moment, to name it or to get the lock it is releasing.
                deadline = time.monotonic() + HOLDER_ROW_WAIT_S
                while not conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, self.lock_key)
                ).fetchone()[0]:
                    holder = self._row(conn)
                    if holder is not None or time.monotonic() >= deadline:
                        raise StateLockedError(holder[0] if holder else None)
                    time.sleep(0.02)
                # Any row left here is stale (its holder's advisory lock was free): overwrite it.
                conn.execute(
                    "INSERT INTO recon_locks (name, id, operation, who, created, pid, info) "
                    "VALUES (%s, %s, %s, %s, %s, pg_backend_pid(), %s) ON CONFLICT (name) DO UPDATE SET "
                    "id = EXCLUDED.id, operation = EXCLUDED.operation, who = EXCLUDED.who, "
                    "created = EXCLUDED.created, pid = EXCLUDED.pid, info = EXCLUDED.info",
                    (self.name, info.id, info.operation, info.who, info.created, json.dumps(info.to_dict())),
                )
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._lock_conn, self._lock_info = conn, info
        return info.id

    def _row(self, conn: Any) -> tuple[LockInfo, int] | None:
        row = conn.execute("SELECT info, pid FROM recon_locks WHERE name = %s", (self.name,)).fetchone()
        if row is None:
            return None
        return LockInfo.from_dict(row[0]), int(row[1])

    def _holder_alive(self, conn: Any, pid: int) -> bool:
        params = {"pid": pid, "ns": LOCK_NAMESPACE, "key": self.lock_key}
        return bool(conn.execute(_HOLDER_ALIVE, params).fetchone()[0])

    def unlock(self, lock_id: str) -> None:
        if self._lock_conn is None or self._lock_info is None:
            raise StateError(f"cannot unlock {self.describe()}: this process holds no lock")
        if self._lock_info.id != lock_id:
            raise StateError(f"cannot unlock: lock ID {lock_id} does not match the held lock {self._lock_info.id}")
        conn, self._lock_conn, self._lock_info = self._lock_conn, None, None
        try:
            with self._errors("cannot unlock the state"):
                conn.execute("DELETE FROM recon_locks WHERE name = %s AND id = %s", (self.name, lock_id))
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, self.lock_key))
        finally:
            with contextlib.suppress(Exception):
                conn.close()  # closing the session frees the advisory lock in any case

    def still_held(self, lock_id: str) -> bool:
        """Whether this backend still holds lock ``lock_id``: ``force_unlock`` by another process
        terminates the lock's session, and the advisory lock went with it."""
        if self._lock_conn is None or self._lock_info is None or self._lock_info.id != lock_id:
            return False
        try:
            return bool(self._lock_conn.execute("SELECT 1").fetchone())
        except Exception:  # the session is gone: whatever psycopg raises, the lock is lost
            return False

    def lock_info(self) -> LockInfo | None:
        """The holder's LockInfo, or None when the lock is free (a stale row is ignored)."""
        if self._lock_info is not None:
            return self._lock_info
        conn = self._db()
        with self._errors("cannot read the state lock"):
            row = self._row(conn)
            if row is None or not self._holder_alive(conn, row[1]):
                return None
        return row[0]

    def force_unlock(self, lock_id: str, wait_s: float = 5.0) -> None:
        """Free a lock held by a dead or stuck holder: terminate its session, clear its row."""
        if self._lock_info is not None and self._lock_info.id == lock_id:
            self.unlock(lock_id)
            return
        conn = self._db()
        with self._errors("cannot force-unlock the state"):
            row = self._row(conn)
            if row is None:
                raise StateError(f"cannot force-unlock {lock_id}: the state {self.describe()} is not locked")
            holder, pid = row
            if holder.id != lock_id:
                raise StateError(f"cannot force-unlock: lock ID {lock_id} does not match the holder's ({holder.id})")
            if self._holder_alive(conn, pid):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                deadline = time.monotonic() + wait_s
                while self._holder_alive(conn, pid):
                    if time.monotonic() > deadline:
                        raise StateError(f"cannot force-unlock {lock_id}: the holder's session did not end")
                    time.sleep(0.05)
            conn.execute("DELETE FROM recon_locks WHERE name = %s AND id = %s", (self.name, lock_id))
