"""Which part failed, as a typed 503: failures of the stores under a turn (the vector index, the
catalog registry, the session store) and of the disk beneath them, named by the error's code
(`vector_store_unavailable`, `catalog_store_unavailable`, `session_store_unavailable`, `disk_full`)
instead of an anonymous 500.

A full disk rarely says so: SQLite reports SQLITE_FULL on a write, but opening a WAL database on a
full volume fails as "disk I/O error". So an I/O failure of a store is checked against the free
space of its volume before it is named.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from agent.errors import AisleError, CatalogStoreUnavailable, DiskFull, VectorStoreUnavailable

# Below this much free space a store's volume counts as full: a turn writes a few KB, but SQLite's
# WAL and Chroma's log need room to grow, and a volume this close to full fails them at random.
MIN_FREE_BYTES = 1 << 20


def disk_full(path: Path | str) -> bool:
    """True when the volume holding `path` (or its nearest existing parent) has less than
    MIN_FREE_BYTES free; False when that cannot be told."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free < MIN_FREE_BYTES
    except OSError:
        return False


def full_disk_error(store: str, path: Path | str) -> DiskFull:
    return DiskFull(f"the disk under the {store} ({path}) is full; free space on its volume. What was saved is kept; writes resume once there is room")


def translate(exc: BaseException, home: Path | str) -> AisleError | None:
    """The typed error for a failure of one of the stores under `home` (None: not a store failure,
    a bug to report as 500). AisleErrors are returned as they are."""
    from retrieval.index import VectorStoreError

    if isinstance(exc, AisleError):
        return exc
    home = Path(home)
    if isinstance(exc, VectorStoreError):
        chroma = home / "chroma"
        return full_disk_error("vector index", chroma) if disk_full(chroma) else VectorStoreUnavailable(str(exc))
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        # The session store translates its own failures: a raw SQLite error is the registry's.
        registry = home / "catalogs.sqlite"
        if disk_full(registry):
            return full_disk_error("catalog registry", registry)
        return CatalogStoreUnavailable(f"the catalog registry {registry} cannot be used ({exc}); check the file and its disk")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return full_disk_error("aisle home", home)
    return None
