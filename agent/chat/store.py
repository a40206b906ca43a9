"""Conversation sessions in SQLite: dialogue state, a turn log and per-item feedback.

Why SQLite: one file under `settings.sessions_db` survives restarts, needs no server, and WAL mode
lets the API's worker threads read while one writes. Each thread gets its own connection (sqlite3
connections must not be shared across threads without care); writes are short transactions.

Isolation: a session is addressed only by its random id (128 bits from `secrets`); every query is
keyed by that id, so one session's state is never returned for another. An id that does not exist
raises `UnknownSession`; a string that cannot be an id raises it too (without touching the db).
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import Conflict, NotFound

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,
    catalog     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    version     INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_no     INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    message     TEXT NOT NULL,
    reply       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    PRIMARY KEY (session_id, turn_no)
);
CREATE TABLE IF NOT EXISTS feedback (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    item_id     TEXT NOT NULL,
    value       INTEGER NOT NULL CHECK (value IN (-1, 1)),
    created_at  REAL NOT NULL,
    PRIMARY KEY (session_id, item_id)
);
"""


class UnknownSession(NotFound):
    """No session with this id (never created, deleted, or a mistyped id)."""

    code = "unknown_session"

    def __init__(self, session_id: str) -> None:
        shown = session_id if len(session_id) <= 64 else session_id[:64] + "…"
        super().__init__(f"unknown session id {shown!r}; create one with POST /v1/sessions (or omit session_id to start a new one)")
        self.session_id = session_id


class ConcurrentUpdate(Conflict):
    """The session changed between reading and writing its state (another turn ran at the same time)."""

    code = "concurrent_update"


@dataclass
class SessionRecord:
    id: str
    catalog: str
    created_at: float
    updated_at: float
    version: int
    state: dict[str, Any]


@dataclass
class TurnRecord:
    turn_no: int
    created_at: float
    message: str
    reply: str
    payload: dict[str, Any]


class SessionStore:
    """Thread-safe SQLite store. Open one per process; it is cheap to open another on the same file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._connection().executescript(_SCHEMA)  # executescript manages its own transaction

    # --- connections -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            with self._conn_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks)."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._conn_lock:
            for db in self._connections:
                try:
                    db.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._connections.clear()
        self._local = threading.local()

    # --- sessions ----------------------------------------------------------------------------------

    @staticmethod
    def check_id(session_id: str) -> str:
        if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
            raise UnknownSession(str(session_id))
        return session_id

    def create(self, catalog: str, state: dict[str, Any]) -> str:
        session_id = secrets.token_urlsafe(16)  # 128 random bits: not guessable, not enumerable
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, catalog, created_at, updated_at, version, state) VALUES (?, ?, ?, ?, 0, ?)",
                (session_id, catalog, now, now, json.dumps(state)),
            )
        return session_id

    def get(self, session_id: str) -> SessionRecord:
        self.check_id(session_id)
        row = self._connection().execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise UnknownSession(session_id)
        return SessionRecord(row["id"], row["catalog"], row["created_at"], row["updated_at"], row["version"], json.loads(row["state"]))

    def exists(self, session_id: str) -> bool:
        try:
            self.get(session_id)
        except UnknownSession:
            return False
        return True

    @staticmethod
    def _current_version(db: sqlite3.Connection, session_id: str, expected_version: int | None) -> int:
        """The session's version inside a transaction; with `expected_version`, it must match
        (optimistic concurrency: nobody saved since the caller read the state)."""
        row = db.execute("SELECT version FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise UnknownSession(session_id)
        if expected_version is not None and row["version"] != expected_version:
            raise ConcurrentUpdate(f"session {session_id} was updated by another request; retry the turn")
        return int(row["version"])

    def save_state(self, session_id: str, state: dict[str, Any], *, expected_version: int | None = None, catalog: str | None = None) -> int:
        """Replace the state; with `expected_version`, only if nobody saved in between. Returns the new version."""
        self.check_id(session_id)
        with self._tx() as db:
            version = self._current_version(db, session_id, expected_version) + 1
            if catalog is None:
                db.execute("UPDATE sessions SET state = ?, version = ?, updated_at = ? WHERE id = ?", (json.dumps(state), version, time.time(), session_id))
            else:
                db.execute(
                    "UPDATE sessions SET state = ?, version = ?, updated_at = ?, catalog = ? WHERE id = ?",
                    (json.dumps(state), version, time.time(), catalog, session_id),
                )
        return version

    def delete(self, session_id: str) -> None:
        self.check_id(session_id)
        with self._tx() as db:
            if db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount == 0:
                raise UnknownSession(session_id)

    def purge(self, older_than_s: float) -> int:
        """Delete sessions idle for longer than `older_than_s` seconds (with their turns and feedback)."""
        with self._tx() as db:
            return db.execute("DELETE FROM sessions WHERE updated_at < ?", (time.time() - older_than_s,)).rowcount

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
        now = time.time()
        with self._tx() as db:
            self._current_version(db, session_id, expected_version)
            turn_no = db.execute("SELECT COALESCE(MAX(turn_no), 0) + 1 FROM turns WHERE session_id = ?", (session_id,)).fetchone()[0]
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
        return turn_no

    def turns(self, session_id: str, limit: int | None = None) -> list[TurnRecord]:
        """The turn log, oldest first (the last `limit` turns when given)."""
        self.get(session_id)
        sql = "SELECT * FROM turns WHERE session_id = ? ORDER BY turn_no DESC"
        args: tuple[Any, ...] = (session_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (int(limit),)
        rows = self._connection().execute(sql, args).fetchall()
        return [TurnRecord(r["turn_no"], r["created_at"], r["message"], r["reply"], json.loads(r["payload"])) for r in reversed(rows)]

    # --- feedback -------------------------------------------------------------------------------------

    def set_feedback(self, session_id: str, item_id: str, value: int) -> None:
        """Thumbs up (+1) / down (-1) for an item; a second vote on the same item replaces the first."""
        if value not in (-1, 1):
            raise ValueError(f"feedback value must be 1 (thumbs up) or -1 (thumbs down), got {value!r}")
        self.check_id(session_id)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise UnknownSession(session_id)
            db.execute(
                "INSERT INTO feedback (session_id, item_id, value, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id, item_id) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                (session_id, item_id, value, time.time()),
            )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time(), session_id))

    def feedback(self, session_id: str) -> dict[str, int]:
        """item id -> +1 / -1 for this session."""
        self.get(session_id)
        rows = self._connection().execute("SELECT item_id, value FROM feedback WHERE session_id = ? ORDER BY created_at", (session_id,)).fetchall()
        return {r["item_id"]: r["value"] for r in rows}
