"""A request for a product shows the product first, then what is made for it: "Shredder Oil" and
"Shredder Bags" are not shredders (agent.facts.serves_other, demoted by the chat's search)."""

from __future__ import annotations

from agent.facts import serves_other, sold_on_its_own
from agent.text import stems
from tests.fast.conftest import ScriptedEngine, make_catalog

ROWS = [
    {"id": "d1", "title": "Fellowes 8-Sheet Cross-Cut Shredder", "brand": "Fellowes", "description": "A cross-cut shredder."},
    {"id": "d2", "title": "Aurora 6-Sheet Strip-Cut Paper Shredder with Basket", "brand": "Aurora", "description": "A strip-cut shredder."},
    {"id": "d3", "title": "AmazonBasics 12-Sheet Credit Card Shredder", "brand": "AmazonBasics", "description": "A shredder for cards."},
    {"id": "o1", "title": "Fellowes Shredder Oil, 12 oz", "brand": "Fellowes", "description": "Oil for every cross-cut shredder."},
    {"id": "o2", "title": "Shredder Bags, 50 pack", "brand": "Royal", "description": "Bags for an 8-sheet shredder."},
    {"id": "o3", "title": "Shredder Lubricant Sheets, 12 pack", "brand": "Aurora", "description": "Sheets that oil a shredder."},
    {"id": "s1", "title": "Swingline Stapler", "brand": "Swingline", "description": "A stapler."},
]
CATALOG = make_catalog(ROWS, name="shredders")


def test_what_is_made_for_the_product_is_told_from_the_product():
    shredder = stems("shredder")
    assert [i for i, it in CATALOG.items.items() if serves_other(it, shredder)] == ["o1", "o2", "o3"]
    assert not serves_other(CATALOG.items["o1"], stems("oil"))  # asked for oil: oil it is
    assert not serves_other(CATALOG.items["s1"], shredder)  # does not name shredders at all (the mention gate's job)


def test_a_noun_mostly_sold_in_compounds_is_no_accessory_marker():
    """Shredders are sold as shredders; ink is sold as "Ink Cartridge" and "Ink Tank", so those are ink."""
    assert sold_on_its_own(CATALOG.items.values(), stems("shredder"))
    inks = make_catalog([
        {"id": "i1", "title": "HP 61 Black Ink Cartridge"}, {"id": "i2", "title": "Canon CLI-226 Gray Ink Tank"},
        {"id": "i3", "title": "Epson 200 Ink Cartridge, Cyan"}, {"id": "i4", "title": "Printer Ink, Black"},
    ])
    assert not sold_on_its_own(inks.items.values(), stems("ink"))


def test_a_request_for_shredders_shows_shredders_first_and_asking_for_the_oil_finds_it(fast_settings, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.search import open_searcher

    searcher = open_searcher(fast_settings, catalog=CATALOG, progress=False)
    agent = Agent(fast_settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), searchers={"shredders": searcher}, default_catalog="shredders", rank_mode="none")
    shown = [i.id for i in agent.turn(agent.new_session("shredders"), "I'm looking for an 8 sheet cross-cut shredder").items]
    assert set(shown[:3]) == {"d1", "d2", "d3"}, shown  # the oil "for every cross-cut shredder" states more, yet comes after
    assert set(shown[3:]) <= {"o1", "o2", "o3"}
    oil = [i.id for i in agent.turn(agent.new_session("shredders"), "I need shredder oil").items]
    assert oil[0] == "o1"
