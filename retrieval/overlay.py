"""Generated product copy stored beside a catalog, never inside it.

The shared data folder is read-only and is the source of truth, so generated descriptions live in
an append-only JSONL overlay, `settings.overlays_dir / "<catalog>.describe.jsonl"`. Every record
says it is generated (`generated: true`) and by what (model, prompt name/version/hash, time,
grounding result). `apply_overlay` returns a new Catalog in which items whose source description
is empty get the generated text, with a `generated_description` marker in `Item.source`. Items
that have a real description are never changed.

Search-only unless the shop says otherwise. By default the copy goes into `Item.search_text`: the
index embeds and BM25-matches it (that is what makes a cold item findable), but the item's
description stays empty, so the shopper never reads it and no reason, snippet or ranking prompt
cites it. The claim checker catches what a word list can catch; a read of kept copy finds invented
details it cannot ("made of mahogany" on a notebook), so publishing is a human decision:
`show_generated_copy` (settings / `AISLE_SHOW_GENERATED_COPY=1`) makes it the description, after
review. Both modes index the same text, so switching re-embeds nothing.

Append-only: a re-run appends; when an item has several records the last one wins. A crash
mid-write can leave one partial last line, which `read_overlay` skips (the item is then redone).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from retrieval.catalog import Catalog, Item
from retrieval.config import StoreConfig
from retrieval.registry import load_catalog

log = logging.getLogger(__name__)

OVERLAY_KIND = "describe"
USABLE_STATUSES = frozenset({"ok", "regenerated"})
MARKER = "generated_description"


def overlay_path(settings: StoreConfig, catalog: str) -> Path:
    return settings.overlays_dir / f"{catalog}.{OVERLAY_KIND}.jsonl"


def append_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records as JSON lines and fsync, so a finished batch survives a crash."""
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = False
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            needs_newline = fh.read(1) != b"\n"  # a partial line from a crash: do not glue onto it
    with path.open("a", encoding="utf-8") as fh:
        if needs_newline:
            fh.write("\n")
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_overlay(path: Path) -> list[dict[str, Any]]:
    """All well-formed records, in file order. Broken lines are skipped with a warning."""
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    bad = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                log.warning("%s:%d: not a JSON record (partial write?); skipped, the item will be redone", path, lineno)
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str) and record.get("generated") is True:
                records.append(record)
            else:
                bad += 1
                log.warning("%s:%d: not a generated-copy record; skipped", path, lineno)
    return records


def latest_records(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Item id -> its last record (the file is append-only; later runs win)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        out[record["id"]] = record
    return out


def done_ids(path: Path) -> set[str]:
    """Items that already have a record (kept or dropped) and need no new generation."""
    return {r["id"] for r in read_overlay(path) if r.get("status") in USABLE_STATUSES | {"dropped"}}


def is_generated(item: Item) -> bool:
    """True when the item carries generated copy (as search text, or as its description when shown)."""
    return bool((item.source or {}).get(MARKER))


def overlaid(item: Item, record: dict[str, Any] | None, catalog_name: str, *, show: bool = False) -> Item | None:
    """`item` with its generated copy, or None when the record does not apply (another catalog,
    dropped copy, or the item has a real description: that is never replaced).

    The copy is the selling point followed by the generated description: both passed the same
    gate. `show`: it becomes the item's description (what the shopper reads and reasons cite);
    otherwise it is search text only (see the module docstring)."""
    if record is None:
        return None
    text = str(record.get("description") or "").strip()
    if record.get("catalog", catalog_name) != catalog_name or record.get("status") not in USABLE_STATUSES or not text or item.description.strip():
        return None
    point = str(record.get("selling_point") or "").strip()
    if point and not text.startswith(point):
        text = f"{point} {text}"
    marker = {
        "model": record.get("model", ""),
        "adapter": record.get("adapter"),
        "prompt": record.get("prompt", {}),
        "created_at": record.get("created_at", ""),
        "selling_point": record.get("selling_point", ""),
        "grounding_ok": bool((record.get("grounding") or {}).get("ok")),
        "shown": show,
    }
    source = {**item.source, MARKER: marker}
    if show:
        return dataclasses.replace(item, description=text, source=source)
    return dataclasses.replace(item, search_text=text, source=source)


def apply_overlay(catalog: Catalog, records: Iterable[dict[str, Any]], *, show: bool = False) -> Catalog:
    """A new Catalog where items with an EMPTY description get their generated copy: as search
    text, or as the description when `show` (see `overlaid`).

    The input catalog is not modified. Records for other catalogs, unknown ids, dropped copy, or
    items that have a real description are ignored (counted in the log).
    """
    items = dict(catalog.items)
    applied = ignored = 0
    for item_id, record in latest_records(records).items():
        item = items.get(item_id)
        new = overlaid(item, record, catalog.name, show=show) if item is not None else None
        if new is None:
            ignored += 1
            continue
        items[item_id] = new
        applied += 1
    log.info("overlay on %s: %d generated copies applied (%s), %d records ignored", catalog.name, applied, "shown" if show else "search only", ignored)
    return Catalog(name=catalog.name, items=items, report=catalog.report)


def load_catalog_with_overlay(settings: StoreConfig, name: str) -> Catalog:
    """`load_catalog` plus the generated copy of `aisle describe`, if any (what search should index)."""
    catalog = load_catalog(settings, name)
    path = overlay_path(settings, name)
    if not path.is_file():
        return catalog
    return apply_overlay(catalog, read_overlay(path), show=settings.show_generated_copy)


def iter_with_overlay(settings: StoreConfig, name: str) -> Iterator[Item]:
    """The catalog's items with generated copy applied, streamed from the registry (what
    indexing a big catalog reads: never the whole catalog in memory)."""
    from retrieval.registry import Registry

    records = latest_records(read_overlay(overlay_path(settings, name)))
    for chunk in Registry(settings).iter_items(name):
        for item in chunk:
            yield overlaid(item, records.get(item.id), name, show=settings.show_generated_copy) or item
