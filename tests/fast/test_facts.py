"""Facts per item (what the record states, with where it states it) and must-haves that rank."""

from __future__ import annotations

import re

import pytest

from agent.facts import Fact, field_text, has_feature, item_facts, must_haves
from agent.lexicon import NUMBER_WORDS
from agent.recommend.must_have import lift, unmet
from agent.recommend.pipeline import Recommender, RecommendRequest
from tests.fast.conftest import SHOP_ROWS, make_catalog

PLANTED = make_catalog(
    [
        {
            "id": "x1",
            "title": "Fellowes Quiet 8-Sheet Cross-Cut Shredder, Black, 12 Pack",
            "description": "Electric shredder with a 5 gallon bin, letter size, AC powered, metal blades. Replacement for HP 61 cartridges.",
        },
        {"id": "x2", "title": "Plain Stapler", "description": "A stapler for the desk."},
        {"id": "x3", "title": "Pilot Gel Pens, pack of twelve", "description": "Silent clicks, 8.5 x 11 in pad included, battery free."},
    ]
)


def facts(item_id: str) -> dict[tuple[str, str], Fact]:
    return {(f.kind, f.value): f for f in item_facts(PLANTED.items[item_id])}


@pytest.mark.parametrize(
    ("item_id", "kind", "value", "field", "quote"),
    [
        ("x1", "noise", "quiet", "title", "Quiet"),
        ("x1", "capacity", "8 sheets", "title", "8-Sheet"),
        ("x1", "cut", "cross-cut", "title", "Cross-Cut"),
        ("x1", "colour", "black", "title", "Black"),
        ("x1", "pack", "12 pack", "title", "12 Pack"),
        ("x1", "power", "electric", "description", "Electric"),
        ("x1", "power", "AC powered", "description", "AC powered"),
        ("x1", "capacity", "5 gallons", "description", "5 gallon"),
        ("x1", "size", "letter size", "description", "letter size"),
        ("x1", "material", "metal", "description", "metal"),
        ("x1", "compatibility", "HP 61", "description", "HP 61"),
        ("x3", "pack", "12 pack", "title", "pack of twelve"),
        ("x3", "noise", "silent", "description", "Silent"),
        ("x3", "size", "8.5 x 11", "description", "8.5 x 11"),
    ],
)
def test_each_kind_is_read_with_the_span_that_states_it(item_id, kind, value, field, quote):
    fact = facts(item_id).get((kind, value))
    assert fact is not None, sorted(facts(item_id))
    item = PLANTED.items[item_id]
    assert fact.field == field
    assert fact.quote(item) == quote == field_text(item, field)[fact.span[0] : fact.span[1]]


def test_no_fact_that_the_record_does_not_state():
    assert item_facts(PLANTED.items["x2"]) == ()
    assert not [f for f in item_facts(PLANTED.items["x3"]) if f.kind == "power"]  # "battery free"
    for item in [*PLANTED.items.values(), *make_catalog(SHOP_ROWS).items.values()]:
        for fact in item_facts(item):
            quote = fact.quote(item).casefold()
            assert quote, fact
            # every number of the value is written in the quote, as digits or as a word
            for n in re.findall(r"\d+(?:\.\d+)?", fact.value):
                assert n in quote or any(NUMBER_WORDS[w] == n for w in re.findall(r"[a-z]+", quote) if w in NUMBER_WORDS), (fact, quote)


def test_a_feature_is_met_by_the_text_a_fact_or_a_noise_word():
    quiet, plain, pens = (PLANTED.items[i] for i in ("x1", "x2", "x3"))
    assert has_feature(quiet, "quiet") and has_feature(quiet, "cross cut") and has_feature(quiet, "heavy") is False
    assert has_feature(pens, "quiet")  # "Silent clicks"
    assert has_feature(pens, "12 pack")  # "pack of twelve"
    assert not has_feature(plain, "quiet")
    assert must_haves(["quiet", "cheap", "color", "cross-cut"]) == ("quiet", "cross-cut")


def test_lift_is_a_stable_partition_by_the_number_of_must_haves_met():
    items = list(make_catalog(SHOP_ROWS).items.values())
    order, missing = lift(items, ("quiet", "cross-cut"), lambda it: it)
    assert [it.id for it in order[:3]] == ["d2", "s2", "d1"]  # d2 has both; then s2, d1 in their order
    assert [it.id for it in order[3:]] == [it.id for it in items if it.id not in ("d2", "s2", "d1")]
    assert missing == []
    assert lift(items, ("waterproof",), lambda it: it) == (items, ["waterproof"])
    assert unmet(items[:2], ("quiet", "waterproof")) == ["waterproof"]


def test_the_recommender_puts_the_items_with_the_must_have_first(fast_settings, shop_searcher):
    rec = Recommender(fast_settings, searcher=shop_searcher, collab="none", n_candidates=10)
    before = rec.recommend(RecommendRequest(query="paper shredder", k=10, rank_mode="none", with_reasons=False))
    after = rec.recommend(RecommendRequest(query="paper shredder", k=10, rank_mode="none", with_reasons=False, must_have=("quiet",)))
    ids = [r.item.id for r in before.items]
    quiet = [i for i in ids if i in ("d2", "s2")]
    assert after.items[0].item.id == "d2" and after.unmet == []
    assert [r.item.id for r in after.items] == quiet + [i for i in ids if i not in quiet]


@pytest.mark.parametrize("favoured", ["Swingline Heavy Duty", "PaperPro Spring"])
def test_a_quiet_stapler_comes_first_whatever_the_llm_scores(tiny_agent, scripted, favoured):
    def scores(messages, choices):  # all the probability on the favoured item's label
        text = "\n".join(m["content"] for m in messages)
        label = next((m[1] for m in re.finditer(r"ITEM (\w+)\W+(.*)", text) if m[2].startswith(favoured)), None)
        return {c: 1.0 if c == label else (0.0 if label else 1.0 / len(choices)) for c in choices}

    result = tiny_agent(scripted(score_answer=scores)).turn(None, "a quiet stapler")
    assert result.items and result.items[0].id == "s2", result.reply
    assert "Nothing I found says" not in result.reply


def test_the_reply_says_which_must_have_no_item_meets(tiny_agent):
    result = tiny_agent().turn(None, "a waterproof stapler")
    assert result.items and all("stapler" in i.title.lower() for i in result.items)
    assert "Nothing I found says “waterproof”; these are the closest matches." in result.reply


def test_the_facts_a_shopper_states_become_must_haves():
    """"an 8-sheet cross-cut shredder, in a pack of 3" asks for 8 sheets, cross-cut and a 3 pack;
    price talk and a bare size are no must-haves."""
    from agent.facts import stated_features

    assert stated_features(["an 8-sheet cross-cut shredder", "in a pack of 3"]) == ["8 sheets", "cross-cut", "3 pack"]
    assert stated_features(["cheap paper, 8.5 x 11"]) == []
    from agent.facts import item_facts
    from retrieval.catalog import Item

    staples = Item("st", "Premium Staples, 5,000 per Box", description="Box of 5,000 staples.")
    assert [f.value for f in item_facts(staples) if f.kind == "pack"] == ["5,000 pack"]  # never the "000" of "5,000"
