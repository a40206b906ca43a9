"""A request for a product shows the product, not what is made for it: "Shredder Oil" and
"Shredder Bags" are not shredders (agent.facts.serves_other, the chat's relevance gate)."""

from __future__ import annotations

from agent.facts import serves_other
from agent.text import stems
from tests.fast.conftest import ScriptedEngine, make_catalog

ROWS = [
    {"id": "d1", "title": "Fellowes 8-Sheet Cross-Cut Shredder", "brand": "Fellowes", "description": "A cross-cut shredder."},
    {"id": "d2", "title": "Aurora 6-Sheet Strip-Cut Paper Shredder with Basket", "brand": "Aurora", "description": "A strip-cut shredder."},
    {"id": "d3", "title": "AmazonBasics 12-Sheet Paper, CD, and Credit Card Shredder", "brand": "AmazonBasics", "description": "A shredder for cards."},
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


def test_a_request_for_shredders_shows_shredders_and_asking_for_the_oil_finds_it(fast_settings, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.search import open_searcher

    searcher = open_searcher(fast_settings, catalog=CATALOG, progress=False)
    agent = Agent(fast_settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), searchers={"shredders": searcher}, default_catalog="shredders", rank_mode="none")
    shown = [i.id for i in agent.turn(agent.new_session("shredders"), "I'm looking for an 8 sheet cross-cut shredder").items]
    assert shown and set(shown) <= {"d1", "d2", "d3"}
    oil = [i.id for i in agent.turn(agent.new_session("shredders"), "I need shredder oil").items]
    assert oil[0] == "o1"
