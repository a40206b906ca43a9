"""Every follow-up kind, through the real Agent on the tiny shop (scripted engine, real tiny index).

Assertions are on what was shown and what the state holds, never on the reply's wording; the
only reply text checked is a catalog fact (a title, a price).
"""

from __future__ import annotations

from collections import Counter

import pytest

from agent.text import money
from tests.fast.conftest import SHOP_ROWS

PRICES = {row["id"]: row["price"] for row in SHOP_ROWS}
CATEGORY = {row["id"]: row["categories"].split(" > ")[-1] for row in SHOP_ROWS}


@pytest.fixture
def chat(tiny_agent):
    """A fresh session: chat("message") -> TurnResult; chat.history holds every result."""
    agent = tiny_agent(k=3)

    class Chat:
        def __init__(self) -> None:
            self.session: str | None = None
            self.history: list = []

        def __call__(self, message: str):
            result = agent.turn(self.session, message)
            self.session = result.session_id
            self.history.append(result)
            return result

    return Chat()


def ids(result) -> list[str]:
    return [i.id for i in result.items]


def test_cheaper_shows_only_items_below_the_cheapest_shown(chat):
    first = chat("gel pens")
    cheapest = min(i.price for i in first.items)
    assert any(PRICES[i] < cheapest for i in PRICES if CATEGORY[i] == "Pens"), "the first list must leave a cheaper pen"
    cheaper = chat("cheaper")
    assert cheaper.action == "recommend" and cheaper.items
    assert all(i.price < cheaper.constraints["price_max"] < cheapest for i in cheaper.items)
    assert cheaper.constraints["price_max"] == pytest.approx(cheapest - 0.01)
    assert not set(ids(first)) & set(ids(cheaper))


def test_cheaper_falls_back_to_below_the_average_and_never_repeats(chat):
    first = chat("a stapler")
    prices = [i.price for i in first.items]
    assert min(prices) == min(PRICES[i] for i in PRICES if CATEGORY[i] == "Staplers"), "the first list must hold the cheapest stapler"
    cheaper = chat("cheaper please")
    assert cheaper.items and cheaper.constraints["price_max"] == pytest.approx(sum(prices) / len(prices) - 0.01, abs=0.01)
    assert all(i.price <= cheaper.constraints["price_max"] for i in cheaper.items)
    assert not set(ids(first)) & set(ids(cheaper))


def test_nothing_cheaper_keeps_the_budget_and_shows_nothing(chat):
    first = chat("a label maker")
    assert len(first.items) == 3  # every label maker in the shop
    cheaper = chat("cheaper please")
    assert cheaper.action == "recommend" and cheaper.items == [] and cheaper.constraints["price_max"] is None


def test_not_that_brand_avoids_the_brand_most_items_had(chat):
    first = chat("a shredder")
    brand, count = Counter(i.brand for i in first.items).most_common(1)[0]
    assert count > 1, "the first list must have a majority brand"
    other = chat("not that brand")
    assert other.constraints["avoid_brands"] == [brand]
    assert other.items and all(i.brand != brand for i in other.items)
    assert not set(ids(first)) & set(ids(other))


def test_other_brands_avoids_every_brand_shown(chat):
    first = chat("a shredder")
    shown_brands = {i.brand for i in first.items}
    other = chat("other brands please")
    assert set(other.constraints["avoid_brands"]) == shown_brands
    assert other.items and not {i.brand for i in other.items} & shown_brands


def test_more_like_the_second_one(chat):
    first = chat("a stapler")
    second = first.items[1].id
    similar = chat("more like the second one")
    assert similar.action == "recommend" and similar.constraints["similar_to"] == [second]
    assert similar.items and second not in ids(similar)


def test_why_the_first_explains_without_a_new_list(chat):
    first = chat("a stapler under $50")
    why = chat("why the first?")
    assert why.action == "explain" and why.items == []
    assert first.items[0].title in why.reply
    assert why.constraints == first.constraints


def test_how_much_is_the_third_one(chat):
    first = chat("a shredder")
    third = first.items[2]
    answer = chat("how much is the third one?")
    assert answer.action == "answer" and answer.items == []
    assert money(third.price) in answer.reply


@pytest.mark.parametrize("question", ["is the first one $1?", "is it 1 dollar?", "is the first one $10.50?"])
def test_a_price_asked_as_an_amount_is_answered_from_the_price_field(chat, question):
    first = chat("a shredder")
    answer = chat(question)
    assert answer.action == "answer" and answer.items == []
    assert money(first.items[0].price) in answer.reply  # the record's price, not a number found in its text
    assert "mentions" not in answer.reply


def test_a_number_is_confirmed_only_as_a_number_the_record_states():
    from agent.chat.turn import Turn

    class Probe:  # only what Turn._answer reads
        def __init__(self, items):
            self.state = type("S", (), {"last_shown": ["x"]})()
            self.parts = type("P", (), {"items": items})()

    from retrieval.catalog import Item

    item = Item(id="x", title="Socket Set, 1/4-, 3/8- and 1/2-Inch Drive, 40 Pieces", description="Chrome sockets.")
    probe = Probe({"x": item})
    assert "doesn't mention" in Turn._answer(probe, "x", "has:1 inch drive")  # "1/4" holds no 1
    assert "mentions" in Turn._answer(probe, "x", "has:40 pieces")


def test_a_rejected_item_is_never_shown_again(chat):
    first = chat("a stapler")
    second = first.items[1].id
    reject = chat("I don't like the second one")
    assert reject.action == "recommend" and reject.constraints["rejected"] == [second]
    for message in ("show them again", "show me more", "more like the first one", "cheaper", "start over", "a stapler", "show me more"):
        chat(message)
    assert all(second not in ids(r) for r in chat.history[1:])
    assert chat.history[-1].constraints["rejected"] == [second]


def test_none_of_these_rejects_the_whole_list(chat):
    first = chat("a shredder")
    none = chat("none of these")
    assert set(none.constraints["rejected"]) == set(ids(first))
    assert none.items and not set(ids(none)) & set(ids(first))


def test_show_me_more_never_repeats(chat):
    first = chat("a stapler")
    seen = set(ids(first))
    more = chat("show me more")
    assert more.items and not set(ids(more)) & seen
    seen |= set(ids(more))
    assert len(seen) == 5  # every stapler in the shop
    done = chat("show me more")
    assert done.action == "recommend" and done.items == []


def test_start_over_clears_constraints_and_keeps_rejected_items_hidden(chat):
    first = chat("a stapler under $60, not Bostitch")
    rejected = first.items[1].id
    chat("I don't like the second one")
    reset = chat("start over")
    assert reset.action == "reset" and reset.items == []
    assert reset.constraints["rejected"] == [rejected]
    assert reset.constraints["need"] == "" and reset.constraints["categories"] == [] and reset.constraints["avoid_brands"] == []
    assert reset.constraints["price_max"] is None
    again = chat("a stapler")
    more = chat("show me more")
    shown = ids(again) + ids(more)
    assert len(shown) == 4 and rejected not in shown  # every other stapler, the rejected one never
    assert "Bostitch" in {i.brand for i in again.items + more.items}  # the old brand filter is gone


@pytest.mark.parametrize("generated", [False, True])
def test_details_label_generated_copy_when_the_shop_shows_it(fast_settings, shop_searcher, tmp_path, generated):
    """With `show_generated_copy`, a described item's text may be aisle's own copy: "tell me more"
    must say so instead of passing it off as the catalog's description."""
    import dataclasses

    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.catalog import Catalog
    from retrieval.overlay import MARKER
    from retrieval.search import HybridSearcher
    from tests.fast.conftest import ScriptedEngine

    cat = shop_searcher.catalog
    marked = {i: dataclasses.replace(it, source={MARKER: {"model": "test", "shown": True}}) if generated else it for i, it in cat.items.items()}
    searcher = HybridSearcher(Catalog(cat.name, marked, cat.report), shop_searcher.index, shop_searcher.embedder)
    agent = Agent(fast_settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(),
                  searchers={"tiny-shop": searcher}, default_catalog="tiny-shop")
    first = agent.turn(None, "a stapler")
    more = agent.turn(first.session_id, "tell me more about the first")
    assert more.action == "answer" and first.items[0].title in more.reply
    assert ("not the catalog" in more.reply) == generated


def test_which_one_is_cheapest_names_the_cheapest_shown(chat):
    first = chat("a heavy duty stapler")
    answer = chat("which one is cheapest?")
    cheapest = min(first.items, key=lambda i: i.price)
    assert answer.action == "answer" and answer.items == []
    assert cheapest.title in answer.reply and money(cheapest.price) in answer.reply
    assert answer.constraints == first.constraints


def test_the_cheapest_one_orders_the_current_topic_by_price(chat):
    chat("a stapler")
    cheapest = chat("show me the cheapest one")
    staplers = sorted((p, i) for i, p in PRICES.items() if CATEGORY[i] == "Staplers")
    assert ids(cheapest)[0] == staplers[0][1]
    assert [i.price for i in cheapest.items] == sorted(i.price for i in cheapest.items)
    assert all(CATEGORY[i] == "Staplers" for i in ids(cheapest))


def test_a_new_topic_drops_the_old_brand_exclusion(chat):
    chat("a shredder, not Fellowes")
    pens = chat("now gel pens")
    assert pens.constraints["avoid_brands"] == [] and all(CATEGORY[i] == "Pens" for i in ids(pens))
    assert "not Fellowes" in pens.reply
