"""Catalog variants built by the evals (evals/variants.py): a registered catalog without its
categories, imported like a shop's feed into the same home."""

from __future__ import annotations

import json
from pathlib import Path

from agent.settings import Settings
from evals.variants import without_categories
from retrieval.registry import FeedSpec, Registry

ROWS = [
    {"id": "1", "title": "Fellowes 8-Sheet Shredder", "brand": "Fellowes", "categories": "Office > Shredders"},
    {"id": "2", "title": "Fellowes Micro-Cut Shredder", "categories": "Office > Shredders"},
    {"id": "3", "title": "Swingline Stapler", "brand": "Swingline", "categories": "Office > Staplers"},
]


def test_a_catalog_without_categories_keeps_items_brands_and_history(tmp_path: Path):
    settings = Settings(home=tmp_path / "home", data_dir=tmp_path / "data")
    feed, events = tmp_path / "items.json", tmp_path / "events.json"
    feed.write_text(json.dumps(ROWS), encoding="utf-8")
    events.write_text(json.dumps({"u1": ["1", "3"], "u2": ["3", "2", "1"]}), encoding="utf-8")
    registry = Registry(settings)
    registry.add("shop", FeedSpec(str(feed), interactions=str(events)), progress=False)

    name = without_categories(settings, "shop")
    variant = registry.load(name)
    assert name == "shop-nocat" and set(variant.items) == {"1", "2", "3"}
    assert all(item.categories == () for item in variant.items.values())
    assert (variant.items["2"].brand, variant.items["2"].brand_source) == ("Fellowes", "title")  # read off the title again
    assert registry.interactions(name) == registry.interactions("shop")

    histories = tmp_path / "histories.json"
    histories.write_text(json.dumps({"u9": ["2", "3"]}), encoding="utf-8")
    assert without_categories(settings, "shop", interactions=histories) == name  # built again: an update
    assert registry.interactions(name) == {"u9": ["2", "3"]}
