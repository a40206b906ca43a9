""""More like that" stays in the picked item's kind of product and says what it shares with it,
on a catalog with no categories (the kind comes from the titles), through the real Agent."""

from __future__ import annotations

import pytest

from agent.facts import product_type, same_type, shared_facts
from tests.fast.conftest import ScriptedEngine, make_catalog

ROWS = [
    {"id": "a1", "title": "Acme 8-Sheet Cross-Cut Paper Shredder", "brand": "Acme", "price": 49.0, "description": "Shreds 8 sheets of paper into cross-cut particles."},
    {"id": "a2", "title": "Borg 10-Sheet Cross-Cut Shredder with Basket", "brand": "Borg", "price": 69.0, "description": "Cross-cut paper shredder, 10 sheets per pass."},
    {"id": "a3", "title": "Acme 6-Sheet Strip-Cut Paper Shredder", "brand": "Acme", "price": 29.0, "description": "Strip-cut shredder for paper."},
    {"id": "a4", "title": "Borg 8 Sheet Cross-Cut Shredder (B-880X)", "brand": "Borg", "price": 59.0, "description": "An 8 sheet cross-cut shredder for the home."},
    {"id": "c1", "title": "Disco CD/DVD Shredder XC 240145 (Black)", "brand": "Disco", "price": 39.0, "description": "Destroys CDs and DVDs."},
    {"id": "o1", "title": "Acme Shredder Oil, 12 oz. Bottle", "brand": "Acme", "price": 9.0, "description": "Oil for cross-cut and strip-cut paper shredders, keeps 8 sheet shredders running."},
    {"id": "o2", "title": "Borg Shredder Lubricant Sheets, 12 Pack", "brand": "Borg", "price": 7.0, "description": "Lubricant sheets for any paper shredder."},
    {"id": "s1", "title": "Acme Heavy Duty Stapler, 40 Sheets", "brand": "Acme", "price": 19.0, "description": "Staples 40 sheets of paper."},
]
CATALOG = make_catalog(ROWS, name="flat-shop")


def test_the_kind_of_product_comes_from_the_title_head_noun():
    kinds = {i: product_type(item) for i, item in CATALOG.items.items()}
    assert {i: f.value for i, f in kinds.items()} == {
        "a1": "shredder", "a2": "shredder", "a3": "shredder", "a4": "shredder", "c1": "shredder",
        "o1": "oil", "o2": "sheets", "s1": "stapler",
    }
    a1 = CATALOG.items["a1"]
    assert kinds["a1"].field == "title" and kinds["a1"].quote(a1) == "Shredder"
    assert same_type(a1, CATALOG.items["a2"]) and not same_type(a1, CATALOG.items["o1"])
    cats = make_catalog([{"id": "x", "title": "Acme 4000", "categories": "Kitchen > Toasters"}])
    assert (product_type(cats.items["x"]).value, product_type(cats.items["x"]).field) == ("toasters", "category")


@pytest.fixture(scope="module")
def flat_searcher(fast_settings):
    from retrieval.search import open_searcher

    return open_searcher(fast_settings, catalog=CATALOG, progress=False)


def test_more_like_that_keeps_the_kind_and_says_what_it_shares(fast_settings, flat_searcher, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    agent = Agent(fast_settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), searchers={"flat-shop": flat_searcher}, default_catalog="flat-shop", k=2)  # two shredders first: others are left to share facts with
    first = agent.turn(None, "an 8 sheet cross-cut paper shredder")
    picked = first.items[0]
    assert picked.id in {"a1", "a4"}
    liked = agent.turn(first.session_id, "I like the first one")
    assert liked.action == "feedback"
    more = agent.turn(first.session_id, "show me more like that")
    shown = [i.id for i in more.items]
    assert shown and picked.id not in shown
    assert all(product_type(CATALOG.items[i]).value == "shredder" for i in shown), shown  # no oil, no lubricant sheets, no stapler
    shares = [len(shared_facts(CATALOG.items[i], CATALOG.items[picked.id])) for i in shown]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0, (shown, shares)  # most in common first
    assert "c1" not in shown[: sum(1 for n in shares if n)]  # the CD/DVD shredder shares nothing
    for item, n in zip(more.items, shares):
        assert "Also a shredder, like the one you picked" in item.reason
        assert ("; also " in item.reason) == (n > 0)
