"""A broad request ("what do you have?", "show me something", "anything good?") gets items: the
catalog's most popular ones for a new shopper, the ranking stage's picks from the history for a
returning one, and one question naming a few kinds of product the catalog sells. Real registry,
Chroma, MiniLM and ranking stage (popularity and co-occurrence fitted on the history); the scripted
engine stands in for the LLM."""

from __future__ import annotations

import json

import pytest

from agent.dialogue import DialogueState
from agent.settings import Settings
from retrieval.registry import FeedSpec, Registry

from .conftest import SHOP_ROWS, ScriptedEngine, make_catalog, own_models

CATALOG = "browse-shop"
BROAD = ["What do you have?", "show me something", "anything good?", "what do you sell?"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Settings:
    """The tiny shop with a history where the Bic pens (p3) are bought most, and stapler buyers
    buy staplers."""
    from retrieval.search import open_searcher

    tmp = tmp_path_factory.mktemp("browse")
    feed = tmp / "feed"
    feed.mkdir()
    (feed / "items.jsonl").write_text("\n".join(json.dumps(r) for r in SHOP_ROWS))
    histories = {f"b{n}": ["p3", ["p1", "d3", "l2"][n % 3]] for n in range(30)}
    histories |= {f"s{n}": ["s1", "s2", "s5"][n % 3 :] + ["s3"] for n in range(9)}
    (feed / "events.json").write_text(json.dumps(histories))
    settings = Settings(home=own_models(tmp / "home"), chroma_url=None, llm="transformers", catalog=CATALOG)
    Registry(settings).add(CATALOG, FeedSpec(str(feed / "items.jsonl"), interactions=str(feed / "events.json")), progress=False)
    open_searcher(settings, CATALOG, progress=False)
    return settings


@pytest.fixture(scope="module")
def agent(shop, tmp_path_factory):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    agent = Agent(shop, store=SessionStore(tmp_path_factory.mktemp("browse-s") / "s.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    agent.wait_for_stage(CATALOG, timeout=60)
    return agent


def test_broad_requests_are_read_as_browsing_and_product_requests_are_not():
    from agent.dialogue import CatalogVocab, Understander

    catalog = make_catalog(SHOP_ROWS)
    rules = Understander(CatalogVocab.from_catalog(catalog))
    for text in BROAD:
        u = rules.rules(text, DialogueState(catalog="tiny"), catalog.items)
        assert (u.action, u.flags, u.need) == ("recommend", {"browse"}, ""), text
    staplers = rules.rules("what do you have in staplers?", DialogueState(catalog="tiny"), catalog.items)
    assert "browse" not in staplers.flags and "stapler" in staplers.need
    assert rules.rules("what?", DialogueState(catalog="tiny"), catalog.items).action == "clarify"


@pytest.mark.parametrize("text", BROAD)
def test_a_new_shopper_asking_what_there_is_gets_the_popular_items_and_a_question(agent, text):
    result = agent.turn(agent.new_session(CATALOG), text)
    shown = [i.id for i in result.items]
    assert shown and shown[0] == "p3", shown  # bought by every shopper of the history
    assert "most popular" in result.reply
    assert "what kind of product are you after? For example: staplers, pens" in result.reply
    more = agent.turn(result.session_id, "Show me something else.")  # browsing goes on, no repeats
    assert more.items and not {i.id for i in more.items} & set(shown), more.reply
    assert "what kind of product" not in more.reply  # asked once


def test_cheaper_after_browsing_keeps_browsing_with_a_lower_budget(agent):
    sid = agent.new_session(CATALOG)
    first = agent.turn(sid, "What do you have?").items
    cheaper = agent.turn(sid, "cheaper please").items
    average = sum(i.price for i in first) / len(first)  # nothing is below the Bic pens: under the average, then
    assert cheaper and max(i.price for i in cheaper) < average and not {i.id for i in cheaper} & {i.id for i in first}, (first, cheaper)


def test_a_returning_shopper_gets_picks_from_their_history(agent):
    result = agent.turn(agent.new_session(CATALOG, history=["s1"]), "What do you have?")
    shown = [i.id for i in result.items]
    assert "s1" not in shown and {"s2", "s5"} & set(shown[:2]), shown  # what stapler buyers bought with it
    assert "what you bought before" in result.reply


def test_without_a_history_to_rank_by_the_answer_is_the_question(tiny_agent):
    agent = tiny_agent()
    result = agent.turn(agent.new_session("tiny-shop"), "What do you have?")
    assert result.items == []
    assert result.reply == "To narrow it down, what kind of product are you after? For example: staplers, pens, shredders or label makers."


def test_a_product_request_after_browsing_starts_the_topic(agent):
    sid = agent.new_session(CATALOG)
    agent.turn(sid, "anything good?")
    shown = [i.id for i in agent.turn(sid, "a label maker by Brother").items]
    assert shown and set(shown) <= {"l1", "l3"}, shown


def test_a_request_that_names_a_product_is_searched_as_before(agent):
    result = agent.turn(agent.new_session(CATALOG), "a quiet shredder")
    assert result.items and result.items[0].id == "d2" and "most popular" not in result.reply
