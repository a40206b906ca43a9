"""Conversation sessions: dialogue state, a turn log and per-item feedback, behind one interface.

`BaseSessionStore` is what the Agent and the API use. Its SQL is written once and run by both
backends, so they cannot drift apart in meaning:

- `SQLiteSessionStore` (the default; `SessionStore` is its old name): one file under
  `settings.sessions_db` that survives restarts and needs no server. WAL mode lets the API's worker
  threads read while one writes; each thread has its own connection; writes are short
  `BEGIN IMMEDIATE` transactions.
- `PostgresSessionStore` (agent/chat/store_postgres.py) when `AISLE_SESSIONS_URL` is set, so
  several `aisle serve` replicas share sessions.

A backend supplies connections, write transactions that serialise writers of one session, and the
translation of its driver's failures into `StoreUnavailable` (503 `session_store_unavailable`:
read-only or damaged file, database server down) or `DiskFull` (503 `disk_full`). A failed write
changes nothing (its transaction rolls back), so what was saved before stays readable.

Concurrency: every state write names the version it read (`expected_version`); when another
request (in this process or another replica) saved in between, the write raises
`ConcurrentUpdate` (409) and changes nothing, so no update is ever lost.

Isolation: a session is addressed only by its random id (128 bits from `secrets`); every query is
keyed by that id, so one session's state is never returned for another. An id that does not exist
raises `UnknownSession`; a string that cannot be an id raises it too (without touching the db).

Lifetime: a session idle for longer than `ttl_s` is gone (`SessionExpired`, 404; deleted when next
asked for, or by `purge`). `max_sessions_per_owner` caps the live sessions of one owner (a
fingerprint of the API key that created them) and answers `TooManySessions` (429) beyond it.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.errors import Conflict, NotFound, TooManySessions, Unavailable
from agent.faults import disk_full, full_disk_error
from agent.settings import Settings

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
NO_TTL_RETRY_S = 60  # Retry-After when sessions never expire: a slot frees only when one is deleted

TABLES = (  # SQLite's DDL; store_postgres derives its own (DOUBLE PRECISION for REAL)
    """CREATE TABLE IF NOT EXISTS sessions (
        id          TEXT PRIMARY KEY,
        catalog     TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        version     INTEGER NOT NULL DEFAULT 0,
        state       TEXT NOT NULL,
        owner       TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS turns (
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        turn_no     INTEGER NOT NULL,
        created_at  REAL NOT NULL,
        message     TEXT NOT NULL,
        reply       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        PRIMARY KEY (session_id, turn_no)
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        item_id     TEXT NOT NULL,
        value       INTEGER NOT NULL CHECK (value IN (-1, 1)),
        created_at  REAL NOT NULL,
        PRIMARY KEY (session_id, item_id)
    )""",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# After the tables, and after a file from before session owners has gained its `owner` column.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (owner, updated_at)",
    "CREATE INDEX IF NOT EXISTS sessions_by_age ON sessions (updated_at)",
)


class UnknownSession(NotFound):
    """No session with this id (never created, deleted, or a mistyped id)."""

    code = "unknown_session"

    def __init__(self, session_id: str, message: str | None = None) -> None:
        shown = session_id if len(session_id) <= 64 else session_id[:64] + "…"
        super().__init__(message or f"unknown session id {shown!r}; create one with POST /v1/sessions (or omit session_id to start a new one)")
        self.session_id = session_id


class SessionExpired(UnknownSession):
    """The session was idle for longer than the store's TTL: it is gone."""

    code = "session_expired"

    def __init__(self, session_id: str, ttl_s: float) -> None:
        super().__init__(session_id, f"session {session_id} expired after {human_duration(ttl_s)} without a turn; start a new one with POST /v1/sessions (or omit session_id)")


class ConcurrentUpdate(Conflict):
    """The session changed between reading and writing its state (another turn ran at the same time)."""

    code = "concurrent_update"


class StoreUnavailable(Unavailable):
    """The session store cannot read or write (full disk, read-only or damaged file, server down)."""

    code = "session_store_unavailable"


@dataclass
class SessionRecord:
    id: str
    catalog: str
    created_at: float
    updated_at: float
    version: int
    state: dict[str, Any]
    owner: str = ""


@dataclass
class TurnRecord:
    turn_no: int
    created_at: float
    message: str
    reply: str
    payload: dict[str, Any]


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared SQL needs of a backend's connection: `?` placeholders, rows by column name."""

    def execute(self, sql: str, params: tuple[Any, ...] = ...) -> Cursor: ...


def human_duration(seconds: float) -> str:
    """30 days, 1 hour, 90 s."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size, 1)
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    return f"{seconds:g} s"


class BaseSessionStore(ABC):
    """The session store the Agent and the API use. Thread-safe; open one per process.

    `ttl_s`: idle seconds after which a session expires (0: never). `max_sessions_per_owner`: live
    sessions one owner may hold (0: no cap). `clock`: the time source (tests move it forward)."""

    #: appended to the read of a session's version inside a write transaction (row lock where the
    #: backend's transactions do not already serialise writers)
    lock_suffix = ""
    #: where the store lives, for messages (a path, or a URL without its password)
    where = ""

    def __init__(self, *, ttl_s: float = 0.0, max_sessions_per_owner: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = float(ttl_s)
        self.max_sessions_per_owner = int(max_sessions_per_owner)
        self.clock = clock

    # --- what a backend supplies ---------------------------------------------------------------------

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Connection]:
        """One write transaction: committed when the block ends, rolled back when it raises; driver
        failures raised as StoreUnavailable."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A connection for reads; driver failures raised as StoreUnavailable."""

    def _check_room(self) -> None:
        """DiskFull when the store's own disk is (nearly) full; a server-backed store has none here."""

    def _lock_owner(self, db: Connection, owner: str) -> None:
        """Serialise session creations of one owner (count, then insert) when the write
        transaction does not already do so."""

    @abstractmethod
    def close(self) -> None: ...

    # --- sessions ----------------------------------------------------------------------------------

    @staticmethod
    def check_id(session_id: str) -> str:
        if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
            raise UnknownSession(str(session_id))
        return session_id

    def _live_since(self, now: float) -> float:
        """Sessions updated before this moment have expired (no TTL: none has)."""
        return now - self.ttl_s if self.ttl_s > 0 else -1.0

    def create(self, catalog: str, state: dict[str, Any], *, owner: str = "") -> str:
        """A new session for `owner` (a key fingerprint, "" for none); TooManySessions when the
        owner already holds `max_sessions_per_owner` live sessions."""
        session_id = secrets.token_urlsafe(16)  # 128 random bits: not guessable, not enumerable
        now = self.clock()
        with self._tx() as db:
            if self.max_sessions_per_owner > 0:
                self._lock_owner(db, owner)
                row = db.execute(
                    "SELECT COUNT(*) AS n, MIN(updated_at) AS oldest FROM sessions WHERE owner = ? AND updated_at >= ?",
                    (owner, self._live_since(now)),
                ).fetchone()
                if row["n"] >= self.max_sessions_per_owner:
                    raise self._too_many(row["oldest"], now)
            db.execute(
                "INSERT INTO sessions (id, catalog, created_at, updated_at, version, state, owner) VALUES (?, ?, ?, ?, 0, ?, ?)",
                (session_id, catalog, now, now, json.dumps(state), owner),
            )
        return session_id

    def _too_many(self, oldest: float | None, now: float) -> TooManySessions:
        limit = f"this API key already holds {self.max_sessions_per_owner} live sessions, the limit (AISLE_MAX_SESSIONS_PER_KEY)"
        if self.ttl_s > 0 and oldest is not None:
            wait = max(1.0, oldest + self.ttl_s - now)
            return TooManySessions(f"{limit}; delete finished ones with DELETE /v1/sessions/{{id}}, or retry in {wait:.0f} s when the oldest expires", retry_after_s=wait)
        return TooManySessions(f"{limit}; sessions never expire on this server, so delete finished ones with DELETE /v1/sessions/{{id}}", retry_after_s=NO_TTL_RETRY_S)

    def get(self, session_id: str) -> SessionRecord:
        """The session; UnknownSession when there is none, SessionExpired when it idled past the TTL
        (it is deleted then)."""
        self.check_id(session_id)
        with self._read() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise UnknownSession(session_id)
        now = self.clock()
        if row["updated_at"] < self._live_since(now):
            with self._tx() as db:  # only if nobody touched it meanwhile
                db.execute("DELETE FROM sessions WHERE id = ? AND updated_at < ?", (session_id, self._live_since(now)))
            raise SessionExpired(session_id, self.ttl_s)
        return SessionRecord(row["id"], row["catalog"], row["created_at"], row["updated_at"], row["version"], json.loads(row["state"]), row["owner"])

    def exists(self, session_id: str) -> bool:
        try:
            self.get(session_id)
        except UnknownSession:
            return False
        return True

    def _current_version(self, db: Connection, session_id: str, expected_version: int | None) -> int:
        """The session's version inside a write transaction; with `expected_version`, it must match
        (optimistic concurrency: nobody saved since the caller read the state)."""
        row = db.execute("SELECT version, updated_at FROM sessions WHERE id = ?" + self.lock_suffix, (session_id,)).fetchone()
        if row is None:
            raise UnknownSession(session_id)
        if row["updated_at"] < self._live_since(self.clock()):
            raise SessionExpired(session_id, self.ttl_s)
        if expected_version is not None and row["version"] != expected_version:
            raise ConcurrentUpdate(f"session {session_id} was updated by another request; retry the turn")
        return int(row["version"])

    def save_state(self, session_id: str, state: dict[str, Any], *, expected_version: int | None = None, catalog: str | None = None) -> int:
        """Replace the state; with `expected_version`, only if nobody saved in between. Returns the new version."""
        self.check_id(session_id)
        with self._tx() as db:
            version = self._current_version(db, session_id, expected_version) + 1
            if catalog is None:
                db.execute("UPDATE sessions SET state = ?, version = ?, updated_at = ? WHERE id = ?", (json.dumps(state), version, self.clock(), session_id))
            else:
                db.execute(
                    "UPDATE sessions SET state = ?, version = ?, updated_at = ?, catalog = ? WHERE id = ?",
                    (json.dumps(state), version, self.clock(), catalog, session_id),
                )
        return version

    def delete(self, session_id: str) -> None:
        """Delete the session with its turns and feedback; UnknownSession when there is none."""
        self.check_id(session_id)
        with self._tx() as db:
            rows = db.execute("DELETE FROM sessions WHERE id = ? RETURNING updated_at", (session_id,)).fetchall()
        if not rows:
            raise UnknownSession(session_id)
        if rows[0]["updated_at"] < self._live_since(self.clock()):
            raise SessionExpired(session_id, self.ttl_s)

    def purge(self, older_than_s: float | None = None) -> int:
        """Delete sessions idle for longer than `older_than_s` seconds (default: the TTL; nothing
        without one), with their turns and feedback. Returns how many."""
        if older_than_s is None:
            if self.ttl_s <= 0:
                return 0
            older_than_s = self.ttl_s
        with self._tx() as db:
            return db.execute("DELETE FROM sessions WHERE updated_at < ?", (self.clock() - older_than_s,)).rowcount

    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        """The live sessions most recently used first, without their state."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, catalog, created_at, updated_at, version, owner FROM sessions WHERE updated_at >= ? ORDER BY updated_at DESC LIMIT ?",
                (self._live_since(self.clock()), int(limit)),
            ).fetchall()
        return [SessionRecord(r["id"], r["catalog"], r["created_at"], r["updated_at"], r["version"], {}, r["owner"]) for r in rows]

    def ping(self) -> None:
        """None when the store can write now; StoreUnavailable (or DiskFull) with the reason otherwise."""
        self._check_room()
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (name, value) VALUES ('ping', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(self.clock()),),
            )

    # --- turns --------------------------------------------------------------------------------------

    def record_turn(
        self,
        session_id: str,
        message: str,
        reply: str,
        payload: dict[str, Any],
        *,
        state: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append a turn (and, atomically with it, save the new state). Returns the turn number."""
        self.check_id(session_id)
        now = self.clock()
        with self._tx() as db:
            self._current_version(db, session_id, expected_version)
            turn_no = db.execute("SELECT COALESCE(MAX(turn_no), 0) + 1 AS n FROM turns WHERE session_id = ?", (session_id,)).fetchone()["n"]
            db.execute(
                "INSERT INTO turns (session_id, turn_no, created_at, message, reply, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, turn_no, now, message, reply, json.dumps(payload)),
            )
            if state is not None:
                db.execute(
                    "UPDATE sessions SET state = ?, version = version + 1, updated_at = ? WHERE id = ?",
                    (json.dumps(state), now, session_id),
                )
            else:
                db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
        return int(turn_no)

    def turns(self, session_id: str, limit: int | None = None) -> list[TurnRecord]:
        """The turn log, oldest first (the last `limit` turns when given)."""
        self.get(session_id)
        sql = "SELECT * FROM turns WHERE session_id = ? ORDER BY turn_no DESC"
        args: tuple[Any, ...] = (session_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (int(limit),)
        with self._read() as db:
            rows = db.execute(sql, args).fetchall()
        return [TurnRecord(r["turn_no"], r["created_at"], r["message"], r["reply"], json.loads(r["payload"])) for r in reversed(rows)]

    # --- feedback -------------------------------------------------------------------------------------

    def set_feedback(self, session_id: str, item_id: str, value: int) -> None:
        """Thumbs up (+1) / down (-1) for an item; a second vote on the same item replaces the first."""
        if value not in (-1, 1):
            raise ValueError(f"feedback value must be 1 (thumbs up) or -1 (thumbs down), got {value!r}")
        self.check_id(session_id)
        now = self.clock()
        with self._tx() as db:
            self._current_version(db, session_id, None)
            db.execute(
                "INSERT INTO feedback (session_id, item_id, value, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (session_id, item_id) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                (session_id, item_id, value, now),
            )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))

    def feedback(self, session_id: str) -> dict[str, int]:
        """item id -> +1 / -1 for this session."""
        self.get(session_id)
        with self._read() as db:
            rows = db.execute("SELECT item_id, value FROM feedback WHERE session_id = ? ORDER BY created_at", (session_id,)).fetchall()
        return {r["item_id"]: r["value"] for r in rows}


# --- SQLite ------------------------------------------------------------------------------------------

# What to do about a failure, by SQLite's primary result code (sqlite3.Error.sqlite_errorname).
_SQLITE_ADVICE = {
    "SQLITE_FULL": "free disk space on its volume",
    "SQLITE_IOERR": "check the disk (free space, errors in the kernel log)",
    "SQLITE_READONLY": "make the file and its folder writable by the aisle process",
    "SQLITE_CANTOPEN": "check that its folder exists and is writable by the aisle process",
    "SQLITE_CORRUPT": "the file is damaged: move it aside (its sessions are lost) or restore a backup, then restart aisle",
    "SQLITE_NOTADB": "the file is not a SQLite database: move it aside (its sessions are lost) or restore a backup, then restart aisle",
    "SQLITE_BUSY": "another process held its write lock for over 30 s; retry",
    "SQLITE_LOCKED": "another process held its write lock for over 30 s; retry",
}


class SQLiteSessionStore(BaseSessionStore):
    """Sessions in one SQLite file. Cheap to open another store on the same file (a process, a test)."""

    def __init__(self, path: Path | str, *, ttl_s: float = 0.0, max_sessions_per_owner: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl_s=ttl_s, max_sessions_per_owner=max_sessions_per_owner, clock=clock)
        self.path = Path(path)
        self.where = str(self.path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        if str(self.path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open the session store {self.path}: {exc.strerror or exc}; point AISLE_HOME at a writable folder") from exc
        with self._tx() as db:
            for statement in TABLES:
                db.execute(statement)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(sessions)").fetchall()}
            if "owner" not in columns:  # a file from before sessions had owners
                db.execute("ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            for statement in INDEXES:
                db.execute(statement)

    def _check_room(self) -> None:
        # A one-row ping may still fit in a page SQLite has free while a turn's write does not.
        if str(self.path) != ":memory:" and disk_full(self.path):
            raise full_disk_error("session store", self.path)

    # --- connections -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            with self._conn_lock:
                self._connections.append(db)
            self._local.db = db
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
        return db

    def _drop_connection(self) -> None:
        """Close this thread's connection, so the next call opens the file afresh (after the disk
        was freed or the file replaced)."""
        db = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            with self._conn_lock:
                if db in self._connections:
                    self._connections.remove(db)
            with suppress(sqlite3.Error):
                db.close()

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.NotSupportedError):
            raise  # a bug in the SQL or its use, not the store's state
        except sqlite3.DatabaseError as exc:  # OperationalError too: full, read-only, damaged, busy
            self._drop_connection()
            name = getattr(exc, "sqlite_errorname", "") or ""
            if name.startswith("SQLITE_FULL") or (name.startswith("SQLITE_IOERR") and disk_full(self.path)):
                raise full_disk_error("session store", self.path) from exc
            advice = next((a for code, a in _SQLITE_ADVICE.items() if name.startswith(code)), "check the file and its disk")
            raise StoreUnavailable(f"session store {self.path} is unavailable ({exc}): {advice}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks)."""
        with self._failures():
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._failures():
            yield self._connection()

    def close(self) -> None:
        with self._conn_lock:
            for db in self._connections:
                try:
                    db.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._connections.clear()
        self._local = threading.local()


SessionStore = SQLiteSessionStore  # the name existing callers and tests use


def make_session_store(settings: Settings) -> BaseSessionStore:
    """PostgreSQL when `settings.sessions_url` is set (replicas share sessions), else SQLite at
    `settings.sessions_db`; with the settings' TTL and per-key cap."""
    limits = {"ttl_s": settings.session_ttl_s, "max_sessions_per_owner": settings.max_sessions_per_key}
    if settings.sessions_url:
        from agent.chat.store_postgres import PostgresSessionStore

        return PostgresSessionStore(settings.sessions_url, **limits)
    return SQLiteSessionStore(settings.sessions_db, **limits)
