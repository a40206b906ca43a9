"""Brands read off titles at import (retrieval/brands.py): a feed built in the test, imported
through the real registry, searched through a real index, and talked to through the real Agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.facts import brand_fact
from retrieval.brands import TitleBrands
from retrieval.config import RetrievalConfig
from retrieval.registry import FeedSpec, Registry
from retrieval.search import SearchFilters

ROWS = [
    {"id": "f1", "title": "Fellowes Powershred 8-Sheet Cross-Cut Shredder", "brand": "Fellowes", "description": "A shredder."},
    {"id": "f2", "title": "Fellowes Laminator, 12.5 inch", "brand": "Fellowes", "description": "A laminator."},
    {"id": "f3", "title": "FELLOWES Powershred 10-Sheet Micro-Cut Shredder", "description": "A quiet micro-cut shredder."},  # no brand field
    {"id": "a1", "title": "Aurora 6-Sheet Strip-Cut Shredder", "brand": "Aurora Corp", "description": "A strip-cut shredder."},
    {"id": "s1", "title": "Swingline Stapler, 20 sheets", "brand": "Swingline", "description": "A stapler."},
    {"id": "s2", "title": "Swingline Optima 12-Sheet Shredder", "brand": "Generic", "description": "A shredder from the stapler people."},  # a non-brand
    {"id": "s3", "title": "swingline stapler refill", "description": "Staples."},  # lower case: a word, not a name
    {"id": "u1", "title": "Universal Paper Clips, 100 pack", "brand": "Universal", "description": "Clips in a clear box."},
    {"id": "u2", "title": "Universal Shredder Oil", "description": "Oil for any shredder."},  # an everyday word, never read as a brand
    {"id": "c1", "title": "Clear Sheet Protectors", "brand": "Clear", "description": "Strong clear pockets."},
    {"id": "c2", "title": "Clear Shredder Bags, 50 pack", "description": "Bags for a shredder, clear plastic."},  # the catalog writes "clear" in lower case
    {"id": "n1", "title": "Noname 12-Sheet Shredder", "description": "A shredder by a maker no other item names."},
]


@pytest.fixture
def imported(tmp_path: Path):
    registry = Registry(RetrievalConfig(data_dir=tmp_path / "data", home=tmp_path / "home"))
    feed = tmp_path / "shop.json"
    feed.write_text(json.dumps(ROWS), encoding="utf-8")
    report = registry.add("shop", FeedSpec(str(feed)), progress=False)
    return report, registry.load("shop")


def test_import_reads_the_brand_off_the_title_only_for_a_known_brand_written_as_a_name(imported):
    report, catalog = imported
    items = catalog.items
    assert (items["f3"].brand, items["f3"].brand_source) == ("Fellowes", "title")  # the catalog's spelling, not "FELLOWES"
    assert (items["s2"].brand, items["s2"].brand_source) == ("Swingline", "title")  # "Generic" names nobody
    assert (items["f1"].brand, items["f1"].brand_source) == ("Fellowes", "")  # the feed's own brand is kept as it was
    assert items["s3"].brand == "" and items["n1"].brand == ""  # lower case; a maker no brand field names
    assert items["u2"].brand == "" and items["c2"].brand == ""  # "Universal" and "Clear" are everyday words here
    assert report.title_brands == 2 and "2 items without a brand got the brand their title starts with" in report.summary()


def test_brand_fact_points_at_the_words_that_name_the_maker(imported):
    _report, catalog = imported
    derived, listed = brand_fact(catalog.items["f3"]), brand_fact(catalog.items["f1"])
    assert (derived.value, derived.field, derived.quote(catalog.items["f3"])) == ("Fellowes", "title", "FELLOWES")
    assert (listed.field, listed.quote(catalog.items["f1"])) == ("brand", "Fellowes")
    assert brand_fact(catalog.items["n1"]) is None


def test_the_longest_known_brand_wins_and_a_title_that_is_only_the_brand_gets_none():
    known = TitleBrands(["Post-it", "Post-it Super Sticky", "3M", "3M"])
    assert known.of("Post-it Super Sticky Notes, 4 pack") == "Post-it Super Sticky"
    assert known.of("3M Scotch Tape") == "3M"
    assert known.of("Post-it") is None and known.of("(Post-it) Notes") is None


def test_brand_filters_and_the_dialogue_apply_to_a_brand_read_off_the_title(imported, fast_settings, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.search import open_searcher
    from tests.fast.conftest import ScriptedEngine

    _report, catalog = imported
    searcher = open_searcher(fast_settings, catalog=catalog, progress=False)
    shredders = {"f1", "f3", "a1", "s2", "n1"}
    excluded = {h.item.id for h in searcher.search("shredder", 12, filters=SearchFilters(exclude_brands=("fellowes",)))}
    assert "f3" not in excluded and "f1" not in excluded and shredders - {"f1", "f3"} <= excluded
    assert {h.item.id for h in searcher.search("shredder", 12, filters=SearchFilters(brands=("Fellowes",)))} == {"f1", "f2", "f3"}

    agent = Agent(fast_settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), searchers={"shop": searcher}, default_catalog="shop", rank_mode="none")
    session = agent.new_session("shop")
    shown = [i.id for i in agent.turn(session, "I need a paper shredder, not Fellowes").items]
    assert shown and not {"f1", "f3"} & set(shown)
    only = agent.turn(agent.new_session("shop"), "a shredder by Fellowes")
    assert "f3" in [i.id for i in only.items] and {i.brand for i in only.items} == {"Fellowes"}
    card = next(i for i in only.items if i.id == "f3")
    assert card.brand_source == "title"
    answer = agent.turn(only.session_id, f"who makes #{[i.id for i in only.items].index('f3') + 1}?").reply
    assert "Fellowes" in answer and "title" in answer
