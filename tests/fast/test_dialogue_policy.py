"""The dialogue policy: what each reading does to the state (rules + `apply`, no index, no model)."""

from __future__ import annotations

import pytest

from agent.dialogue import CatalogVocab, DialogueState, Plan, Understander, apply
from tests.fast.conftest import SHOP_ROWS, make_catalog

SHOP = make_catalog(SHOP_ROWS, name="tiny-shop")
VOCAB = CatalogVocab.from_catalog(SHOP)
STAPLERS = ["s1", "s2", "s3", "s4"]  # Swingline $39.99, Bostitch $19.99, Swingline $6.49, Rapid $54


def say(state: DialogueState, message: str, catalog=SHOP, vocab: CatalogVocab = VOCAB) -> Plan:
    return apply(Understander(vocab).understand(message, state, catalog.items), state, catalog.items)


def shown(state: DialogueState, ids: list[str]) -> DialogueState:
    """What the chat layer does after showing items."""
    state.last_shown = list(ids)
    state.shown = list(dict.fromkeys(state.shown + ids))
    return state


@pytest.fixture
def staplers() -> DialogueState:
    state = DialogueState(catalog=SHOP.name)
    say(state, "a stapler under $60")
    return shown(state, STAPLERS)


# --- new topic or refinement --------------------------------------------------------------------------------


def test_a_first_request_sets_the_constraints():
    state = DialogueState(catalog=SHOP.name)
    plan = say(state, "a quiet stapler under $30, not Swingline")
    assert plan.action == "recommend" and not plan.no_repeats
    assert (state.need, state.head, state.categories) == (["quiet stapler"], "stapler", ["Staplers"])
    assert (state.price_max, state.avoid_brands, state.features) == (30.0, ["Swingline"], ["quiet"])
    assert state.filters().exclude_brands == ("Swingline",) and state.query() == "quiet stapler"


@pytest.mark.parametrize("detail", ["with a metal body", "a smaller one", "quiet", "something electric", "one for thick stacks"])
def test_a_detail_refines_the_current_product(staplers, detail):
    say(staplers, detail)
    assert staplers.price_max == 60 and staplers.categories == ["Staplers"] and staplers.head == "stapler"
    assert staplers.need[0] == "stapler" and len(staplers.need) == 2


def test_a_new_product_starts_a_new_topic(staplers):
    staplers.rejected = ["s3"]
    say(staplers, "the Swingline ones")  # two Swingline items shown: the brand, not a reference
    assert staplers.brands == ["Swingline"] and staplers.need == ["stapler"]
    say(staplers, "a label maker")
    assert (staplers.categories, staplers.head, staplers.need) == (["Label Makers"], "maker", ["label maker"])
    assert staplers.price_max is None and staplers.brands == [] and staplers.rejected == ["s3"]
    # product words outside the catalog's categories are a new topic too, unless they refine it
    state = DialogueState(catalog=SHOP.name)
    say(state, "a fountain pen")
    say(state, "now a desk lamp")
    assert state.need == ["desk lamp"]


def test_need_keeps_the_last_phrases_only(staplers):
    for detail in ("with a metal body", "in black", "with a long reach", "one for thick stacks", "with a soft press"):
        say(staplers, detail)
    assert len(staplers.need) == 4 and staplers.need[-1] == "soft press"


def test_asking_for_an_avoided_brand_lifts_the_ban():
    state = DialogueState(catalog=SHOP.name)
    say(state, "a stapler, not Swingline")
    say(state, "actually Swingline is fine")
    assert state.brands == ["Swingline"] and state.avoid_brands == []


def test_a_new_price_bound_replaces_a_conflicting_one(staplers):
    say(staplers, "over $20")
    assert (staplers.price_min, staplers.price_max) == (20.0, 60.0)
    say(staplers, "under $10")
    assert (staplers.price_min, staplers.price_max) == (None, 10.0)


# --- follow-ups relative to what was shown -----------------------------------------------------------------------


def test_cheaper_is_below_the_cheapest_shown(staplers):
    plan = say(staplers, "cheaper please")
    assert staplers.price_max == pytest.approx(6.48) and plan.cheaper_than == 6.49
    assert plan.fallback_price_max == pytest.approx((39.99 + 19.99 + 6.49 + 54) / 4 - 0.01, abs=0.01)
    assert plan.prev_price_max == 60 and plan.no_repeats


def test_cheaper_ignores_rejected_items(staplers):
    staplers.rejected = ["s3"]
    say(staplers, "too expensive")
    assert staplers.price_max == pytest.approx(19.98)


def test_cheaper_without_prices_asks_for_a_budget():
    state = DialogueState(catalog=SHOP.name)
    plan = say(state, "something cheaper")
    assert any("budget" in n for n in plan.notes)
    unpriced = make_catalog([{k: v for k, v in row.items() if k != "price"} for row in SHOP_ROWS], name="unpriced")
    state = shown(DialogueState(catalog="unpriced", need=["stapler"]), STAPLERS)
    plan = say(state, "cheaper", catalog=unpriced, vocab=CatalogVocab.from_catalog(unpriced))
    assert state.price_max is None and any("no prices" in n for n in plan.notes)


def test_pricier_is_above_the_dearest_shown(staplers):
    plan = say(staplers, "something more premium")
    assert staplers.price_min == pytest.approx(54.01) and staplers.price_max == 60 and plan.no_repeats


def test_not_that_brand_avoids_the_brand_most_shown_items_have(staplers):
    plan = say(staplers, "not that brand")
    assert staplers.avoid_brands == ["Swingline"] and plan.no_repeats
    staplers.focus = "s4"  # after "why the fourth one?" the conversation is about that item
    say(staplers, "different brand please")
    assert staplers.avoid_brands == ["Swingline", "Rapid"]
    say(staplers, "not the brand of the second one")
    assert staplers.avoid_brands == ["Swingline", "Rapid", "Bostitch"]


def test_other_brands_avoids_every_brand_shown(staplers):
    say(staplers, "other brands please")
    assert staplers.avoid_brands == ["Swingline", "Bostitch", "Rapid"] and staplers.brands == []


def test_not_that_brand_without_brands_asks_which():
    rows = [{"id": f"n{i}", "title": f"Plain stapler {i}", "categories": "Office > Staplers", "price": 5.0 + i} for i in range(3)]
    cat = make_catalog(rows, name="unbranded")
    state = shown(DialogueState(catalog=cat.name, need=["stapler"]), ["n0", "n1"])
    plan = say(state, "not that brand", catalog=cat, vocab=CatalogVocab.from_catalog(cat))
    assert plan.action == "clarify" and "no brand" in plan.notes[0]


def test_more_like_an_item_searches_around_it(staplers):
    plan = say(staplers, "more like the second one")
    assert plan.action == "recommend" and staplers.similar_to == ["s2"] and staplers.focus == "s2"


def test_more_and_again(staplers):
    assert say(staplers, "show me more").more
    plan = say(staplers, "show them again")
    assert plan.include_shown and not plan.no_repeats


# --- reactions to items ----------------------------------------------------------------------------------------------


def test_rejecting_an_item(staplers):
    staplers.liked = ["s2"]
    plan = say(staplers, "I don't like the second one")
    assert plan.action == "recommend" and plan.item_ids == []
    assert staplers.rejected == ["s2"] and staplers.liked == [] and staplers.price_max == 60


def test_none_of_these_rejects_the_whole_list(staplers):
    say(staplers, "none of these")
    assert staplers.rejected == STAPLERS


def test_liking_an_item_takes_back_a_rejection(staplers):
    staplers.rejected = ["s3"]
    plan = say(staplers, "I like the third one")
    assert (plan.action, plan.item_ids) == ("feedback", ["s3"])
    assert staplers.liked == ["s3"] and staplers.rejected == [] and staplers.focus == "s3"


def test_why_and_questions_move_the_focus_and_change_no_constraint(staplers):
    before = staplers.model_dump()
    plan = say(staplers, "why the third one?")
    assert (plan.action, plan.item_ids, staplers.focus) == ("explain", ["s3"], "s3")
    plan = say(staplers, "how much is it?")
    assert (plan.action, plan.item_ids) == ("answer", ["s3"])
    assert {k: v for k, v in staplers.model_dump().items() if k != "focus"} == {k: v for k, v in before.items() if k != "focus"}


def test_a_reference_past_the_list_asks_which(staplers):
    plan = say(staplers, "I don't like the sixth one")
    assert plan.action == "clarify" and staplers.rejected == [] and "showed 4 items" in plan.notes[0]


# --- start over ----------------------------------------------------------------------------------------------------------


def test_start_over_clears_constraints_but_keeps_rejected_items_hidden(staplers):
    say(staplers, "I don't like the second one")
    say(staplers, "not that brand")
    plan = say(staplers, "start over")
    assert plan.action == "reset"
    assert staplers == DialogueState(catalog=SHOP.name, rejected=["s2"], turns=staplers.turns)


def test_start_over_with_a_new_request_applies_it(staplers):
    staplers.rejected = ["s1"]
    plan = say(staplers, "start over: a label maker under $30")
    assert plan.action == "recommend" and staplers.categories == ["Label Makers"]
    assert (staplers.price_max, staplers.last_shown, staplers.rejected) == (30.0, [], ["s1"])


def test_the_state_round_trips_through_json(staplers):
    say(staplers, "not that brand")
    again = DialogueState.model_validate_json(staplers.model_dump_json())
    assert again == staplers and again.filters().exclude_brands == ("Swingline",)


# --- topics ------------------------------------------------------------------------------------------------------------


def test_a_topic_change_drops_the_old_topics_constraints_and_says_so():
    state = DialogueState(catalog=SHOP.name)
    say(state, "a quiet paper shredder for my home office under $100, not Fellowes")
    assert state.avoid_brands == ["Fellowes"] and state.features == ["quiet"] and state.price_max == 100
    plan = say(shown(state, ["d2", "d3"]), "something for a student, under $20")
    assert (state.avoid_brands, state.features, state.head, state.price_max) == ([], [], None, 20.0)
    assert state.need == ["student"] and "shredder" not in (state.query() or "")
    assert "not Fellowes" in plan.notes[0] and "quiet" in plan.notes[0] and "$20" not in plan.notes[0]


@pytest.mark.parametrize("catalog", [SHOP, make_catalog([{k: v for k, v in r.items() if k != "categories"} for r in SHOP_ROWS], name="flat")])
def test_another_product_noun_is_a_new_topic_with_or_without_categories(catalog):
    """"A red pen" after "a red stapler" shares "red" but not the product."""
    vocab = CatalogVocab.from_catalog(catalog)
    state = DialogueState(catalog=catalog.name)
    say(state, "a red stapler, not Swingline", catalog, vocab)
    plan = say(state, "a red pen", catalog, vocab)
    assert (state.need, state.head, state.avoid_brands) == (["red pen"], "pen", [])
    assert any("not Swingline" in n for n in plan.notes)


@pytest.mark.parametrize("detail", ["a cross-cut one", "the black ones", "A pack of 4, please.", "8 sheets please", "heavy duty please"])
def test_a_detail_keeps_the_topic_and_its_constraints(detail):
    state = DialogueState(catalog=SHOP.name)
    say(state, "a shredder under $100, not Aurora")
    plan = say(state, detail)
    assert (state.head, state.price_max, state.avoid_brands) == ("shredder", 100.0, ["Aurora"])
    assert state.need[0] == "shredder" and not plan.notes


def test_a_pack_of_n_is_a_feature_not_a_product(staplers):
    say(staplers, "A pack of 4, please.")
    assert staplers.head == "stapler" and staplers.features == ["4 pack"] and staplers.need == ["stapler"]


def test_cheapest_keeps_the_topic(staplers):
    say(staplers, "heavy duty")
    plan = say(staplers, "show me the cheapest one")
    assert plan.action == "recommend" and plan.cheapest and plan.include_shown
    assert (staplers.head, staplers.features, staplers.price_max) == ("stapler", ["heavy duty"], 60.0)
    assert "cheapest" not in " ".join(staplers.need)
    plan = say(staplers, "which one is cheapest?")
    assert (plan.action, plan.item_ids) == ("answer", STAPLERS) and staplers.features == ["heavy duty"]


def test_cheapest_without_prices_says_so():
    unpriced = make_catalog([{k: v for k, v in row.items() if k != "price"} for row in SHOP_ROWS], name="unpriced")
    state = shown(DialogueState(catalog="unpriced", need=["stapler"], head="stapler"), STAPLERS)
    plan = say(state, "the cheapest one please", catalog=unpriced, vocab=CatalogVocab.from_catalog(unpriced))
    assert not plan.cheapest and any("no prices" in n for n in plan.notes) and state.head == "stapler"


# --- how an LLM shopper words the same steps (aisle eval simulate --shopper llm found these) ----------------------


@pytest.mark.parametrize(
    "message",
    [
        "Sure, a pack of 4.",  # "Sure" is no product
        "Could I get a pack of 4? I need it for my trip.",  # a request put as a question, with a reason
        "Can you find one in a pack of 4? It's handy for my car.",
        "Okay, a pack of 4 please.",
    ],
)
def test_a_detail_worded_as_a_question_or_with_a_reason_keeps_the_topic(staplers, message):
    plan = say(staplers, message)
    assert plan.action == "recommend", message
    assert (staplers.head, staplers.price_max, staplers.features) == ("stapler", 60.0, ["4 pack"]), message
    assert staplers.need == ["stapler"] and not plan.notes, message


def test_a_brand_asked_for_with_a_reason_keeps_the_product(staplers):
    plan = say(staplers, "Could you get something from Bostitch? I need it for work.")
    assert plan.action == "recommend"
    assert (staplers.head, staplers.brands, staplers.categories) == ("stapler", ["Bostitch"], ["Staplers"])


@pytest.mark.parametrize(("message", "question"), [("does it take 20 sheets?", "has:20 sheets"), ("how much is the second one?", "price"), ("can you tell me more about it?", "details")])
def test_questions_about_a_shown_item_are_still_questions(staplers, message, question):
    plan = say(staplers, message)
    assert plan.action == "answer", message
