"""Catalog variants the evals build from a registered catalog: the same items and history with a
field a shop's feed may lack taken out, registered under their own name in the eval's home
("amazon-office-2018-nocat"), so the agent is measured on real data shaped like that shop.

A variant is imported like any shop's feed (a JSON file of records and one of histories under
`home/variants/<name>/`), so brands are read off titles again and the ranking stage trains on it
with `aisle train models --catalog <name>`. Building it again updates it (a diff: nothing changes
when the source did not).
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.settings import Settings
from retrieval.catalog import CatalogError, RowError
from retrieval.feeds.events import read_events
from retrieval.registry import FeedSpec, Registry


def without_categories(settings: Settings, source: str, *, interactions: Path | None = None) -> str:
    """Register (or update) `<source>-nocat`: `source`'s items without categories, and its history
    (or the histories in `interactions`: JSON {user: [item ids, oldest first]} or an events file).
    Returns the variant's name."""
    registry = Registry(settings)
    name = f"{source}-nocat"
    folder = Path(settings.home) / "variants" / name
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for item in registry.load(source).items.values():
        record = item.to_record()
        record.pop("categories", None)
        record.pop("brand_source", None)
        if item.brand_source:  # the variant's import reads it off the title again
            record.pop("brand", None)
        records.append(record)
    items_file = folder / "items.json"
    items_file.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    if interactions is not None:
        histories: dict[str, list[str]] = {}
        for _label, event in read_events(interactions):
            if isinstance(event, RowError):
                raise CatalogError(f"{interactions}: {event}")
            histories.setdefault(event.user_id, []).append(event.item_id)
    else:
        histories = registry.interactions(source)
    events_file = folder / "interactions.json"
    events_file.write_text(json.dumps(histories), encoding="utf-8")
    if name in registry:
        registry.update(name, items=str(items_file), interactions=str(events_file), progress=False)
    else:
        registry.add(name, FeedSpec(str(items_file), format="json", interactions=str(events_file)), progress=False)
    return name
