"""Sessions in PostgreSQL, so several `aisle serve` replicas behind one address share them.

The same tables and the same SQL as the SQLite store (`BaseSessionStore`); what differs is how a
write is serialised. SQLite's `BEGIN IMMEDIATE` takes the whole file's write lock; here a write
transaction locks the session's row (`SELECT ... FOR UPDATE`) before it compares versions, so two
replicas writing one session queue on that row: the second sees the first's new version and
raises `ConcurrentUpdate` instead of overwriting it. Creations of one key's sessions take an
advisory lock on the key, so the per-key cap holds across replicas too.

Connections come from a `psycopg_pool` pool (checked before use, so a restarted server is used
again without restarting aisle). Timestamps are the replicas' clocks, like SQLite's; keep them in
sync (NTP) when the TTL matters to the second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from agent.chat.store import INDEXES, TABLES, BaseSessionStore, StoreUnavailable

# The SQLite tables, with PostgreSQL's name for a float: one schema, written once.
_SCHEMA = (*(table.replace(" REAL ", " DOUBLE PRECISION ") for table in TABLES), *INDEXES)
# First key of aisle's advisory locks (two-int form): replicas starting at once create the tables
# one at a time; creations of one key's sessions count and insert one at a time.
_LOCK_CLASS = 0x4153_4C45  # "ASLE"

# The failures that mean "the store cannot serve now" (not a bug in a query), with what to do.
_ADVICE: tuple[tuple[type[Exception], str], ...] = (
    (psycopg.errors.DiskFull, "free disk space on the database server"),
    (psycopg.errors.ReadOnlySqlTransaction, "the database is read-only (a standby?); point AISLE_SESSIONS_URL at the primary"),
    (psycopg.errors.InsufficientPrivilege, "grant the user in AISLE_SESSIONS_URL the right to create and write tables in its schema"),
    (PoolTimeout, "no connection to the PostgreSQL server; start it, or fix AISLE_SESSIONS_URL"),
    (psycopg.OperationalError, "check that the PostgreSQL server is up and AISLE_SESSIONS_URL is right, then retry"),
    (psycopg.InterfaceError, "check that the PostgreSQL server is up and AISLE_SESSIONS_URL is right, then retry"),
)


def public_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"AISLE_SESSIONS_URL is not a PostgreSQL URL ({exc}); use postgresql://user:password@host:port/dbname") from exc
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class _Connection:
    """A psycopg connection that takes the shared SQL's `?` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.replace("?", "%s"), params)


class PostgresSessionStore(BaseSessionStore):
    """Sessions in a PostgreSQL database named by a URL (postgresql://user:password@host:port/db).

    `pool_size`: connections this process may hold. `connect_timeout_s`: how long a call waits for
    a connection before it answers StoreUnavailable (503)."""

    lock_suffix = " FOR UPDATE"

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 0.0,
        max_sessions_per_owner: int = 0,
        clock: Callable[[], float] = time.time,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(ttl_s=ttl_s, max_sessions_per_owner=max_sessions_per_owner, clock=clock)
        self.where = public_url(url)
        connect_args = {"row_factory": dict_row, "connect_timeout": max(1, round(connect_timeout_s)), "application_name": "aisle"}
        # One plain connection first: its error says why (refused, bad password, no such database),
        # where a pool would only time out. It creates the tables.
        with self._failures("cannot be opened"), psycopg.connect(url, **connect_args) as conn:
            conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, 0)")
            for statement in _SCHEMA:
                conn.execute(statement)
        self._pool = ConnectionPool(
            url,
            kwargs=connect_args,
            min_size=1,
            max_size=pool_size,
            timeout=connect_timeout_s,
            check=ConnectionPool.check_connection,
            name="aisle-sessions",
            open=False,
        )
        try:
            with self._failures("cannot be opened"):
                self._pool.open(wait=True, timeout=connect_timeout_s)
        except StoreUnavailable:
            self._pool.close()
            raise

    @contextmanager
    def _failures(self, doing: str = "is unavailable") -> Iterator[None]:
        try:
            yield
        except tuple(cls for cls, _ in _ADVICE) as exc:
            advice = next(a for cls, a in _ADVICE if isinstance(exc, cls))
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreUnavailable(f"session store {self.where} {doing} ({reason}): {advice}") from exc

    @contextmanager
    def _tx(self) -> Iterator[_Connection]:
        """Committed when the block ends, rolled back when it raises (the pool's connection context)."""
        with self._failures(), self._pool.connection() as conn:
            yield _Connection(conn)

    _read = _tx  # a read is a short transaction too: the same connection handling

    def _lock_owner(self, db: _Connection, owner: str) -> None:
        db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, hashtext(?))", (owner,))

    def close(self) -> None:
        self._pool.close()
