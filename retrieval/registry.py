"""The catalog registry: every catalog aisle serves, built-in or a shop's own, in one SQLite file.

`$AISLE_HOME/catalogs.sqlite` holds, per catalog, where its feed came from (file, format, preset,
column map), the imported items (one normalised JSON record each) and its events (the history the
collaborative models learn from). The built-in research data sets are entries like any other,
seeded on first use with paths under the data folder (`{data}/...`), and imported on first load.

An import streams the feed into a staging table, reports every rejected row (never imported) and
every warning (imported, with a field dropped), and refuses the whole feed when too many rows are
bad; only then does one transaction swap the new version in. A failed or refused import therefore
changes nothing: the items and the index stay as they were. Every import, applied, refused or
checked, leaves its own report file (`reports/NAME/`), never overwriting an earlier one.
An update is a diff (added, changed, removed); the index follows it in `CatalogIndex.sync`, which
re-embeds only items whose text changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.brands import fill_staged_brands
from retrieval.catalog import Catalog, CatalogError, Item, LoadReport, RowError
from retrieval.config import StoreConfig
from retrieval.feeds.events import Event, read_events
from retrieval.feeds.presets import get_preset
from retrieval.feeds.readers import read_rows
from retrieval.feeds.schema import FieldMap, normalize

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
DEFAULT_MAX_BAD_SHARE = 0.05
DATA = "{data}"  # stands for the configured data folder in a built-in entry's paths
# Bump when what an import produces changes (schema, cleaning, presets): built-in entries re-import.
IMPORT_VERSION = "3"  # 2: broken markup costs the markup, not the row; 3: brands read off titles (retrieval/brands.py)


@dataclass
class FeedSpec:
    """Where a catalog's feed comes from and how to read it (stored with the entry)."""

    items: str
    format: str | None = None
    preset: str | None = None
    map: list[str] = field(default_factory=list)
    interactions: str | None = None
    interactions_format: str | None = None
    currency: str = ""
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE
    valid_rows: str | None = None  # published next-item splits (retrieval.rows): `aisle eval ranking --rows`
    test_rows: str | None = None

    def path(self, value: str, data_dir: Path) -> Path:
        return Path(value.replace(DATA, str(data_dir)))


BUILTINS: dict[str, FeedSpec] = {
    "amazon-office-2014": FeedSpec(f"{DATA}/amazon-office-2014/items.json", preset="amazon-reviews", interactions=f"{DATA}/amazon-office-2014/interactions.json"),
    "amazon-office-2018": FeedSpec(
        f"{DATA}/amazon-office-2018/items.json", preset="amazon-reviews", valid_rows=f"{DATA}/amazon-office-2018/valid.csv", test_rows=f"{DATA}/amazon-office-2018/test.csv"
    ),
    "mg-shopdial": FeedSpec(f"{DATA}/mg-shopdial/items/*.json", preset="mg-shopdial"),
}


@dataclass
class Entry:
    name: str
    spec: FeedSpec
    builtin: bool
    version: int  # 0 = registered, never imported
    n_items: int
    n_available: int
    n_cold: int
    n_users: int
    n_events: int
    updated_at: str


@dataclass
class ImportReport:
    catalog: str
    load: LoadReport
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    out_of_stock: int = 0
    cold: list[str] = field(default_factory=list)  # new items without a description (or that lost theirs)
    title_brands: int = 0  # items without a brand that got the one their title starts with
    events: int = 0
    events_rejected: list[RowError] = field(default_factory=list)
    events_warnings: list[RowError] = field(default_factory=list)  # users whose held-out (last) item changed
    rejected_items: dict[str, RowError] = field(default_factory=dict)  # item id -> why its row was rejected
    applied: bool = False
    report_file: Path | None = None
    seconds: float = 0.0

    def summary(self, show: int = 20) -> str:
        lines = [self.load.summary(show)]
        lines.append(f"{self.catalog}: {self.added} added, {self.changed} changed, {self.removed} removed, {self.unchanged} unchanged; {self.out_of_stock} out of stock")
        if self.title_brands:
            lines.append(f"{self.title_brands} items without a brand got the brand their title starts with")
        if self.cold:
            lines.append(f"{len(self.cold)} new items have no description (cold): aisle describe --catalog {self.catalog} --only-missing")
        if self.events or self.events_rejected:
            lines.append(f"events: {self.events} imported, {len(self.events_rejected)} rejected, {len(self.events_warnings)} warnings")
            for label, errors in (("warning", self.events_warnings), ("rejected", self.events_rejected)):
                lines += [f"  {label}: {e}" for e in errors[:show]]
                if len(errors) > show:
                    lines.append(f"  ... and {len(errors) - show} more")
        if self.report_file:
            lines.append(f"report (every rejected row and warning): {self.report_file}")
        lines.append("applied" if self.applied else "not applied: nothing changed")
        return "\n".join(lines)


class ImportRefused(CatalogError):
    """The feed has too many bad rows (or none good): nothing was imported."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS catalogs (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, builtin INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0, added_at TEXT, updated_at TEXT, report TEXT, source TEXT, history INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS items (
    catalog TEXT NOT NULL, id TEXT NOT NULL, pos INTEGER NOT NULL, data TEXT NOT NULL, digest TEXT NOT NULL,
    available INTEGER NOT NULL, cold INTEGER NOT NULL, PRIMARY KEY (catalog, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, catalog TEXT NOT NULL, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    ts REAL, event TEXT NOT NULL, value REAL, origin TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_catalog ON events (catalog, user_id, seq);
"""


class Registry:
    """Catalogs under one aisle home. Cheap to create: open one wherever you need it."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.path = Path(config.home) / "catalogs.sqlite"
        self.reports_dir = Path(config.home) / "catalogs" / "reports"
        self._ready = False

    # --- storage ---------------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as con:
            if not self._ready:
                self._setup(con)
                self._ready = True
            yield con

    @staticmethod
    def _setup(con: sqlite3.Connection) -> None:
        """Tables, and the built-in entries the first time this home is used."""
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(_SCHEMA)
        columns = {row[1] for row in con.execute("PRAGMA table_info(catalogs)")}
        if "source" not in columns:  # a registry made before built-ins followed their files
            con.execute("ALTER TABLE catalogs ADD COLUMN source TEXT")
        if "history" not in columns:  # a registry made before events had their own version
            con.execute("ALTER TABLE catalogs ADD COLUMN history INTEGER NOT NULL DEFAULT 0")
        if con.execute("SELECT value FROM meta WHERE key='seeded'").fetchone() is None:
            con.execute("BEGIN IMMEDIATE")
            if con.execute("SELECT value FROM meta WHERE key='seeded'").fetchone() is None:
                for name, spec in BUILTINS.items():
                    con.execute("INSERT OR IGNORE INTO catalogs (name, spec, builtin, added_at) VALUES (?, ?, 1, ?)", (name, json.dumps(asdict(spec)), _now()))
                con.execute("INSERT INTO meta VALUES ('seeded', ?)", (_now(),))
            con.execute("COMMIT")

    # --- what is registered ------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._db() as con:
            return [r[0] for r in con.execute("SELECT name FROM catalogs ORDER BY builtin DESC, name")]

    def __contains__(self, name: object) -> bool:
        with self._db() as con:
            return con.execute("SELECT 1 FROM catalogs WHERE name=?", (name,)).fetchone() is not None

    def entry(self, name: str) -> Entry:
        with self._db() as con:
            row = con.execute("SELECT spec, builtin, version, updated_at FROM catalogs WHERE name=?", (name,)).fetchone()
            if row is None:
                raise CatalogError(f"unknown catalog {name!r}; registered: {', '.join(self.names())}. Add one with: aisle catalog add NAME --items FILE")
            n_items, n_available, n_cold = con.execute("SELECT COUNT(*), COALESCE(SUM(available), 0), COALESCE(SUM(cold), 0) FROM items WHERE catalog=?", (name,)).fetchone()
            n_users, n_events = con.execute("SELECT COUNT(DISTINCT user_id), COUNT(*) FROM events WHERE catalog=?", (name,)).fetchone()
        return Entry(name, FeedSpec(**json.loads(row[0])), bool(row[1]), row[2], n_items, n_available, n_cold, n_users, n_events, row[3] or "")

    def entries(self) -> list[Entry]:
        return [self.entry(name) for name in self.names()]

    def version(self, name: str) -> int:
        """Bumped by every applied import (items, or a history file): a server reopens a catalog when it moves."""
        return self.versions(name)[0]

    def versions(self, name: str) -> tuple[int, int]:
        """(version, history version) in one read; the history version moves with every appended
        event batch, which a server folds into its ranking without reopening the catalog."""
        with self._db() as con:
            row = con.execute("SELECT version, history FROM catalogs WHERE name=?", (name,)).fetchone()
        if row is None:
            raise CatalogError(f"unknown catalog {name!r}")
        return int(row[0]), int(row[1])

    # --- reading -----------------------------------------------------------------------------------

    def load(self, name: str) -> Catalog:
        """The catalog's current items (imported from its feed first if it never was: iter_items)."""
        items: dict[str, Item] = {}
        for chunk in self.iter_items(name):
            for item in chunk:
                items[item.id] = item
        return Catalog(name=name, items=items, report=self.last_report(name))

    def last_report(self, name: str) -> LoadReport:
        """What the last applied import loaded, warned about and rejected (the first 200 of each)."""
        with self._db() as con:
            row = con.execute("SELECT report FROM catalogs WHERE name=?", (name,)).fetchone()
        if row is None:
            raise CatalogError(f"unknown catalog {name!r}")
        return _report_from_json(name, row[0])

    def iter_items(self, name: str, batch: int = 2000) -> Iterator[list[Item]]:
        """Items in feed order, `batch` at a time (indexing a big catalog never holds it all)."""
        self.ensure_imported(name)
        last = -1
        while True:
            with self._db() as con:
                rows = con.execute("SELECT pos, data FROM items WHERE catalog=? AND pos>? ORDER BY pos LIMIT ?", (name, last, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Item.from_record(json.loads(data)) for _, data in rows]

    def interactions(self, name: str) -> dict[str, list[str]]:
        """User -> item ids, oldest first: by timestamp when every event of the user has one,
        in arrival (file) order otherwise. The last item is the leave-one-out target of evals."""
        self.ensure_imported(name)
        out: dict[str, list[tuple[float | None, int, str]]] = {}
        with self._db() as con:
            for user, item, ts, seq in con.execute("SELECT user_id, item_id, ts, seq FROM events WHERE catalog=? ORDER BY seq", (name,)):
                out.setdefault(user, []).append((ts, seq, item))
        if not out and self.split_files(name):
            # no event log, only published splits: the history is everything before the test period
            from retrieval.rows import read_rows, training_histories

            files = self.split_files(name)
            return training_histories(read_rows(files["valid"]), read_rows(files["test"]), "test")
        if not out:
            raise CatalogError(f"catalog {name!r} has no interactions; add them with `aisle catalog update {name} --interactions FILE` or POST /v1/events")
        return {user: _in_order(events) for user, events in out.items()}

    def split_files(self, name: str) -> dict[str, Path]:
        """The catalog's published valid/test row files ({} when it declares none). A built-in entry
        follows the code's spec: the stored one may predate these fields."""
        entry = self.entry(name)
        spec = BUILTINS.get(name, entry.spec) if entry.builtin else entry.spec
        files = {"valid": spec.valid_rows, "test": spec.test_rows}
        if not all(files.values()):
            return {}
        return {k: spec.path(v, Path(self.config.data_dir)) for k, v in files.items()}

    def users(self, name: str) -> list[tuple[str, int]]:
        """(user id, events in the user's history), longest history first: the ids that
        `interactions` is keyed by, counted in SQL without reading the histories."""
        self.ensure_imported(name)  # raises CatalogError for an unknown catalog
        with self._db() as con:
            rows = con.execute("SELECT user_id, COUNT(*) FROM events WHERE catalog=? GROUP BY user_id", (name,)).fetchall()
        if not rows and self.split_files(name):  # a history made of published row splits, not an event log
            rows = [(user, len(items)) for user, items in self.interactions(name).items()]
        return sorted(((str(user), int(n)) for user, n in rows), key=lambda r: (-r[1], r[0]))

    # --- changing ------------------------------------------------------------------------------------

    def add(self, name: str, spec: FeedSpec, *, progress: bool = True) -> ImportReport:
        """Register a new catalog and import its feed (nothing is registered if the import fails)."""
        if not NAME.match(name):
            raise CatalogError(f"catalog name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit)")
        if name in self:
            raise CatalogError(f"catalog {name!r} exists; use `aisle catalog update {name} --items FILE`, or remove it first")
        get_preset(spec.preset)  # an unknown preset fails before anything is read
        spec.items = _absolute(spec.items)
        spec.interactions = _absolute(spec.interactions)
        spec.valid_rows, spec.test_rows = _absolute(spec.valid_rows), _absolute(spec.test_rows)
        return self._import(name, spec, new=True, progress=progress)

    def update(self, name: str, *, items: str | None = None, interactions: str | None = None, progress: bool = True, **changes: Any) -> ImportReport:
        """Apply a new feed version as a diff (the stored spec is updated with what is given)."""
        entry = self.entry(name)
        spec = FeedSpec(**{**asdict(entry.spec), **{k: v for k, v in changes.items() if v is not None}})
        if items:
            spec.items = _absolute(items)
        if interactions:
            spec.interactions = _absolute(interactions)
        spec.valid_rows, spec.test_rows = _absolute(spec.valid_rows), _absolute(spec.test_rows)
        return self._import(name, spec, new=False, progress=progress, with_events=bool(interactions) or entry.version == 0)

    def check(self, name: str, *, items: str | None = None, interactions: str | None = None, progress: bool = False) -> ImportReport:
        """What an update with this feed (default: the registered one) would do; changes nothing."""
        entry = self.entry(name)
        spec = FeedSpec(**asdict(entry.spec))
        spec.items = items or spec.items
        spec.interactions = interactions or spec.interactions
        return self._import(name, spec, new=False, progress=progress, dry_run=True)

    def remove(self, name: str) -> None:
        self.entry(name)
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            for table, column in (("items", "catalog"), ("events", "catalog"), ("catalogs", "name")):
                con.execute(f"DELETE FROM {table} WHERE {column}=?", (name,))  # noqa: S608 - fixed names
            con.execute("COMMIT")

    def append_events(self, name: str, events: Iterable[Event], *, origin: str = "api") -> int:
        """Append events (the API's POST /v1/events; origin "session" for chat likes); unknown items
        raise CatalogError, nothing appended. They move the history version, not the catalog's:
        running servers refit their history sources instead of reopening the catalog."""
        events = list(events)
        with self._db() as con:
            if con.execute("SELECT 1 FROM catalogs WHERE name=?", (name,)).fetchone() is None:
                raise CatalogError(f"unknown catalog {name!r}")
            ids = {e.item_id for e in events}
            known = set()
            for chunk in _chunks(sorted(ids), 500):
                marks = ",".join("?" * len(chunk))
                known |= {r[0] for r in con.execute(f"SELECT id FROM items WHERE catalog=? AND id IN ({marks})", (name, *chunk))}  # noqa: S608
            unknown = sorted(ids - known)
            if unknown:
                raise CatalogError(f"unknown item id(s) in catalog {name!r}: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}; nothing was recorded")
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT INTO events (catalog, user_id, item_id, ts, event, value, origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(name, e.user_id, e.item_id, e.timestamp, e.event, e.value, origin) for e in events],
            )
            con.execute("UPDATE catalogs SET history=history+1, updated_at=? WHERE name=?", (_now(), name))
            con.execute("COMMIT")
        return len(events)

    # --- import ------------------------------------------------------------------------------------

    def ensure_imported(self, name: str) -> None:
        """Import a registered-but-never-imported catalog (a built-in data set on first use). A
        built-in entry also re-imports when its files or aisle's import code changed: those files
        are read-only research data, so following them is always right. A shop's catalog changes
        only through `update`, never behind its owner's back."""
        entry = self.entry(name)
        if entry.version == 0:
            self._import(name, entry.spec, new=False, progress=False, with_events=True)
        elif entry.builtin:
            with self._db() as con:
                stored = con.execute("SELECT source FROM catalogs WHERE name=?", (name,)).fetchone()[0]
            if stored != self._fingerprint(entry.spec):
                log.info("built-in catalog %s: its files or aisle's import changed; re-importing", name)
                self._import(name, entry.spec, new=False, progress=False, with_events=True)

    def _fingerprint(self, spec: FeedSpec) -> str:
        """Import code version + size and mtime of every source file."""
        parts = [IMPORT_VERSION]
        for value in (spec.items, spec.interactions):
            if not value:
                continue
            path = spec.path(value, Path(self.config.data_dir))
            files = sorted(path.parent.glob(path.name)) if any(ch in path.name for ch in "*?[") else [path]
            for file in files:
                stat = file.stat() if file.is_file() else None
                parts.append(f"{file}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}")
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()

    def _import(self, name: str, spec: FeedSpec, *, new: bool, progress: bool, dry_run: bool = False, with_events: bool = True) -> ImportReport:
        t0 = time.perf_counter()
        data_dir = Path(self.config.data_dir)
        preset = get_preset(spec.preset)
        fmap = FieldMap.parse(spec.map, default_currency=spec.currency.upper())
        if preset is not None:
            fmap.hints = dict(preset.columns)
            fmap.attributes = {**preset.attributes, **fmap.attributes}
            fmap.category_separator = preset.category_separator
        source = spec.path(spec.items, data_dir)
        if DATA in spec.items and not data_dir.is_dir():
            raise CatalogError(f"data folder {data_dir} does not exist. Pass --data-dir or set AISLE_DATA_DIR to the shared data folder (../shared/data).")
        report = ImportReport(name, LoadReport(catalog=name))
        rows = read_rows(source, spec.format or (preset.format if preset else None))
        if preset is not None and preset.rows is not None:
            rows = preset.rows(rows)
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("CREATE TEMP TABLE staged (id TEXT PRIMARY KEY, pos INTEGER, data TEXT, digest TEXT, available INTEGER, cold INTEGER) WITHOUT ROWID")
                self._stage_items(con, rows, fmap, source, report, progress)
                report.title_brands = fill_staged_brands(con)
                self._refuse_if_bad(name, spec, report.load.loaded, report.load.rejected, "rows", report)
                staged_ids = None
                if with_events and spec.interactions:
                    staged_ids = {r[0] for r in con.execute("SELECT id FROM staged")}
                self._diff(con, name, report)
                if dry_run:
                    if staged_ids is not None:
                        self._read_events(spec, data_dir, staged_ids, report, progress)
                    con.execute("ROLLBACK")
                    report.report_file = self._write_report(name, report, "check")
                    return self._finish(report, t0)
                if new:
                    con.execute("INSERT INTO catalogs (name, spec, builtin, added_at) VALUES (?, ?, 0, ?)", (name, json.dumps(asdict(spec)), _now()))
                con.execute("DELETE FROM items WHERE catalog=? AND id NOT IN (SELECT id FROM staged)", (name,))
                con.execute(
                    "INSERT INTO items (catalog, id, pos, data, digest, available, cold) SELECT ?, id, pos, data, digest, available, cold FROM staged WHERE true "
                    "ON CONFLICT (catalog, id) DO UPDATE SET pos=excluded.pos, data=excluded.data, digest=excluded.digest, available=excluded.available, cold=excluded.cold",
                    (name,),
                )
                if staged_ids is not None:
                    events = self._read_events(spec, data_dir, staged_ids, report, progress)
                    con.execute("DELETE FROM events WHERE catalog=? AND origin='file'", (name,))
                    con.executemany(
                        "INSERT INTO events (catalog, user_id, item_id, ts, event, value, origin) VALUES (?, ?, ?, ?, ?, ?, 'file')",
                        ((name, e.user_id, e.item_id, e.timestamp, e.event, e.value) for e in events),
                    )
                con.execute(
                    "UPDATE catalogs SET spec=?, version=version+1, updated_at=?, report=?, source=? WHERE name=?",
                    (json.dumps(asdict(spec)), _now(), _report_to_json(report.load), self._fingerprint(spec), name),
                )
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            finally:
                con.execute("DROP TABLE IF EXISTS temp.staged")
        report.applied = True
        report.report_file = self._write_report(name, report, "applied")
        return self._finish(report, t0)

    def _stage_items(self, con: sqlite3.Connection, rows, fmap: FieldMap, source: Path, report: ImportReport, progress: bool) -> None:
        first: dict[str, Any] | None = None
        by_header: dict[tuple[str, ...], dict[str, Any]] = {}  # rows of JSON feeds differ in keys
        first_seen: dict[str, str] = {}
        batch: list[tuple] = []
        bar = tqdm(desc=f"reading {source.name}", unit=" rows", disable=not progress, mininterval=0.5)
        pos = 0
        for label, row in rows:
            bar.update(1)
            if isinstance(row, RowError):
                row.file = row.file or source.name
                report.load.rejected.append(row)
                continue
            header = tuple(str(k) for k in row)
            columns = by_header.get(header)
            if columns is None:
                columns = fmap.resolve(list(header), str(source), strict=first is None)
                if first is None:
                    first = columns
                else:  # a key this row leaves out reads as empty: "missing id", not "no id column"
                    columns = {**first, **columns, "_attributes": {**first["_attributes"], **columns["_attributes"]}}
                if len(by_header) < 1000:
                    by_header[header] = columns
            file, row_label = _split_label(label)
            result = normalize(row, columns, fmap, file or source.name, row_label)
            if result.item is None:
                report.load.rejected.extend(result.rejected)
                if result.item_id and result.rejected:
                    report.rejected_items.setdefault(result.item_id, result.rejected[0])
                continue
            item = result.item
            if item.id in first_seen:
                report.load.rejected.append(RowError(file or source.name, row_label, "id", f"duplicate id {item.id!r} (first at row {first_seen[item.id]}); the first row is kept"))
                continue
            report.load.warnings.extend(result.warnings)
            first_seen[item.id] = row_label
            record = json.dumps(item.to_record(), ensure_ascii=False, sort_keys=True)
            batch.append((item.id, pos, record, hashlib.sha1(record.encode()).hexdigest(), int(item.available), int(not item.description)))
            pos += 1
            if len(batch) >= 2000:
                con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
        if batch:
            con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?, ?, ?)", batch)
        bar.close()
        report.load.loaded = pos

    def _refuse_if_bad(self, name: str, spec: FeedSpec, good: int, bad: list[RowError], what: str, report: ImportReport) -> None:
        total = good + len(bad)
        if total == 0:
            if what == "events":  # an empty history is a history: nothing bought yet
                return
            report.report_file = self._write_report(name, report, "refused")
            raise ImportRefused(f"{name}: the feed has no {what}; nothing was imported. Check the file and --format.\nreport: {report.report_file}", report)
        if good == 0 or len(bad) / total > spec.max_bad_share:
            report.report_file = self._write_report(name, report, "refused")
            raise ImportRefused(
                f"{name}: {len(bad)} of {total} {what} are bad ({len(bad) / total:.1%}, more than the {spec.max_bad_share:.0%} allowed by --max-bad-share); "
                f"nothing was imported.\n{report.summary(show=10)}",
                report,
            )

    def _diff(self, con: sqlite3.Connection, name: str, report: ImportReport) -> None:
        report.added = con.execute("SELECT COUNT(*) FROM staged s WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.catalog=? AND i.id=s.id)", (name,)).fetchone()[0]
        report.changed = con.execute("SELECT COUNT(*) FROM staged s JOIN items i ON i.catalog=? AND i.id=s.id WHERE i.digest != s.digest", (name,)).fetchone()[0]
        report.removed = con.execute("SELECT COUNT(*) FROM items i WHERE i.catalog=? AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.id=i.id)", (name,)).fetchone()[0]
        report.unchanged = report.load.loaded - report.added - report.changed
        report.out_of_stock = con.execute("SELECT COUNT(*) FROM staged WHERE available=0").fetchone()[0]
        report.cold = [
            r[0]
            for r in con.execute(
                "SELECT s.id FROM staged s LEFT JOIN items i ON i.catalog=? AND i.id=s.id WHERE s.cold=1 AND (i.id IS NULL OR i.cold=0) ORDER BY s.pos", (name,)
            )
        ]

    def _read_events(self, spec: FeedSpec, data_dir: Path, item_ids: set[str], report: ImportReport, progress: bool) -> list[Event]:
        path = spec.path(spec.interactions or "", data_dir)
        events: list[Event] = []
        arrival: list[int] = []  # each kept event's position among the file's events
        dropped: dict[str, list[tuple[int, Event, str]]] = {}  # user -> (position, event, row) of their rejected events
        n_dropped = 0
        bar = tqdm(desc=f"reading {path.name}", unit=" events", disable=not progress, mininterval=0.5)
        for label, event in read_events(path, spec.interactions_format):
            bar.update(1)
            if isinstance(event, RowError):
                event.file = event.file or path.name
                report.events_rejected.append(event)
            elif event.item_id not in item_ids:
                why = report.rejected_items.get(event.item_id)
                if why is not None:
                    problem = f"item {event.item_id!r} was rejected (row {why.row}, field '{why.field}': {why.problem}); fix that row to keep this event"
                else:
                    problem = f"unknown item id {event.item_id!r} (not in the items feed)"
                report.events_rejected.append(RowError(path.name, label, "item_id", problem))
                dropped.setdefault(event.user_id, []).append((len(arrival) + n_dropped, event, label))
                n_dropped += 1
            else:
                arrival.append(len(arrival) + n_dropped)
                events.append(event)
        bar.close()
        report.events = len(events)
        report.events_warnings = _held_out_changes(path.name, zip(arrival, events), dropped)
        self._refuse_if_bad(report.catalog, spec, len(events), report.events_rejected, "events", report)
        return events

    def _write_report(self, name: str, report: ImportReport, outcome: str) -> Path:
        """This import's report as CSV, one row per rejected row or event and per warning, in a new
        file (`reports/NAME/0003-20240501T120000Z-applied.csv`): a later import never overwrites it."""
        folder = self.reports_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.name.split("-", 1)[0]) for p in folder.glob("[0-9]*-*.csv") if p.name.split("-", 1)[0].isdigit()), default=0)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        while True:
            path = folder / f"{number:04d}-{stamp}-{outcome}.csv"
            try:
                fh = path.open("x", encoding="utf-8", newline="")
                break
            except FileExistsError:  # another import of this catalog took the number
                number += 1
        with fh:
            writer = csv.writer(fh)
            writer.writerow(["kind", "record", "file", "row", "field", "problem"])
            for kind, record, errors in (
                ("rejected", "item", report.load.rejected),
                ("warning", "item", report.load.warnings),
                ("rejected", "event", report.events_rejected),
                ("warning", "event", report.events_warnings),
            ):
                for err in errors:
                    writer.writerow([kind, record, err.file, err.row, err.field, err.problem])
        return path

    @staticmethod
    def _finish(report: ImportReport, t0: float) -> ImportReport:
        report.seconds = time.perf_counter() - t0
        return report


# --- functions the rest of aisle calls -----------------------------------------------------------------


def load_catalog(config: StoreConfig, name: str) -> Catalog:
    return Registry(config).load(name)


def load_interactions(config: StoreConfig, name: str) -> dict[str, list[str]]:
    return Registry(config).interactions(name)


_FILE_LABEL = re.compile(r"^(.+\.(?:jsonl|ndjson|csv|tsv|txt|parquet|json|xml)):(.+)$", re.I)


def _split_label(label: str) -> tuple[str, str]:
    """"Books_items.json:3" (a row of one of several files) -> ("Books_items.json", "3")."""
    match = _FILE_LABEL.match(label)
    return (match.group(1), match.group(2)) if match else ("", label)


def _absolute(path: str | None) -> str | None:
    """A feed path as stored: absolute, so `update` re-reads it from any folder ({data} kept)."""
    if not path or DATA in path:
        return path
    return str(Path(path).expanduser().resolve())


def _in_order(events: list[tuple[float | None, int, str]]) -> list[str]:
    """(timestamp, arrival, item) of one user -> item ids, oldest first: by timestamp when every
    event has one, in arrival order otherwise."""
    if all(ts is not None for ts, _, _ in events):
        events = sorted(events, key=lambda e: (e[0], e[1]))
    return [item for _, _, item in events]


def _held_out_changes(file: str, kept: Iterable[tuple[int, Event]], dropped: dict[str, list[tuple[int, Event, str]]]) -> list[RowError]:
    """A warning per user whose last item (the one evals hold out) differs from the file's because
    some of their events were rejected, or who has no event left. `kept`: (arrival, event)."""
    if not dropped:
        return []
    full: dict[str, list[tuple[float | None, int, str]]] = {user: [(e.timestamp, pos, e.item_id) for pos, e, _ in rows] for user, rows in dropped.items()}
    left: dict[str, list[tuple[float | None, int, str]]] = {}
    for pos, event in kept:
        if event.user_id in full:
            row = (event.timestamp, pos, event.item_id)
            full[event.user_id].append(row)
            left.setdefault(event.user_id, []).append(row)
    out = []
    for user, rows in dropped.items():
        was = _in_order(sorted(full[user], key=lambda e: e[1]))[-1]
        now = _in_order(left[user])[-1] if user in left else None
        label = rows[-1][2]
        if now is None:
            out.append(RowError(file, label, "user_id", f"user {user!r}: every event was rejected; the user has no history"))
        elif now != was:
            out.append(RowError(file, label, "user_id", f"user {user!r}: their last item {was!r} was rejected; their held-out (last) item is now {now!r}"))
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_KEEP_ERRORS = 200


def _report_to_json(load: LoadReport) -> str:
    return json.dumps(
        {
            "loaded": load.loaded,
            "rejected": [asdict(e) for e in load.rejected[:_KEEP_ERRORS]],
            "n_rejected": len(load.rejected),
            "warnings": [asdict(e) for e in load.warnings[:_KEEP_ERRORS]],
            "n_warnings": len(load.warnings),
        }
    )


def _report_from_json(name: str, text: str | None) -> LoadReport:
    if not text:
        return LoadReport(catalog=name)
    raw = json.loads(text)
    return LoadReport(catalog=name, loaded=raw["loaded"], rejected=[RowError(**e) for e in raw["rejected"]], warnings=[RowError(**e) for e in raw["warnings"]])
