"""Interactions (a shop's order and browsing history) as events: user, item, time, kind.

Files: JSONL / CSV / TSV / Parquet rows of `user_id, item_id[, timestamp][, event][, value]`, or
the research format, a JSON object of user id -> item ids in order. The same schema is what
`POST /v1/events` takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.catalog import CatalogError, RowError
from retrieval.feeds.readers import guess_format, read_rows
from retrieval.feeds.schema import key

EVENT_TYPES = ("view", "click", "cart", "purchase", "rating")
DEFAULT_EVENT = "purchase"
EVENT_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "user", "customer_id", "visitor_id", "visitorid", "session_id"),
    "item_id": ("item_id", "item", "product_id", "sku", "itemid", "asin"),
    "timestamp": ("timestamp", "ts", "time", "event_time", "date", "datetime"),
    "event": ("event", "event_type", "type", "action"),
    "value": ("value", "rating", "quantity"),
}


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    timestamp: float | None = None  # seconds since the epoch (UTC)
    event: str = DEFAULT_EVENT
    value: float | None = None


def parse_event(row: Mapping[str, Any], file: str, label: str) -> Event | RowError:
    """One row -> an Event, or the reason it is not one (unknown item ids are checked by the caller)."""
    by_key = {key(k): k for k in row}
    fields: dict[str, Any] = {}
    for name, aliases in EVENT_ALIASES.items():
        column = next((by_key[a] for a in aliases if a in by_key), None)
        fields[name] = row.get(column) if column is not None else None
    user, item = str(fields["user_id"] or "").strip(), str(fields["item_id"] or "").strip()
    if not user:
        return RowError(file, label, "user_id", "missing user id")
    if not item:
        return RowError(file, label, "item_id", "missing item id")
    event = str(fields["event"] or DEFAULT_EVENT).strip().casefold()
    if event not in EVENT_TYPES:
        return RowError(file, label, "event", f"unknown event type {event!r}; use one of: {', '.join(EVENT_TYPES)}")
    try:
        ts = parse_timestamp(fields["timestamp"])
    except ValueError as exc:
        return RowError(file, label, "timestamp", str(exc))
    value = fields["value"]
    if value in (None, ""):
        value = None
    else:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return RowError(file, label, "value", f"not a number: {str(value)[:30]!r}")
    return Event(user, item, ts, event, value)


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds (or milliseconds), or ISO 8601 text -> epoch seconds; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"unparseable timestamp {text[:40]!r}; use ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds") from None
        else:
            return number / 1000.0 if number > 1e11 else number
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_events(path: Path, fmt: str | None = None) -> Iterator[tuple[str, Event | RowError]]:
    """Events of a file in file order; a JSON object of user -> [item ids] gives purchases in list order."""
    path = Path(path)
    kind = fmt or (guess_format(path) if path.is_file() else None)
    if kind == "json" and path.is_file():
        with path.open(encoding="utf-8-sig") as fh:
            try:
                doc = json.load(fh)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        if isinstance(doc, dict):
            for user, seq in doc.items():
                if not isinstance(seq, list):
                    yield str(user), RowError(path.name, str(user), "*", f"expected a list of item ids, got {type(seq).__name__}")
                    continue
                for n, item in enumerate(seq, start=1):
                    yield f"{user}[{n}]", Event(str(user), str(item))
            return
    for label, row in read_rows(path, kind):
        yield label, row if isinstance(row, RowError) else parse_event(row, path.name, label)
