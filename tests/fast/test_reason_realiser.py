"""Template reasons over facts (#16): fluent, grounded in the record, different within one
answer, never a list of quoted words; and the comparative "why that one?" answer."""

from __future__ import annotations

import re

import pytest

from agent.chat.replies import why_answer
from agent.dialogue import DialogueState
from agent.grounding import check_grounding, item_evidence
from agent.recommend.reasons import ReasonContext, ReasonWriter, answer_reasons, is_keyword_list

from .conftest import SHOP_ROWS, make_catalog

SHOP = make_catalog(SHOP_ROWS)
ITEMS = SHOP.items
BRANDS = frozenset(it.brand for it in ITEMS.values())
SHREDDERS = [ITEMS[i] for i in ("d1", "d2", "d3", "d4")]
STAPLERS = [ITEMS[i] for i in ("s1", "s2", "s3", "s4", "s5")]


def test_a_planted_fact_that_is_not_in_the_record_never_appears():
    """The shopper says gold, 500 sheets, $1 and a brand no stapler has: no reason repeats any of it
    as a fact about the item, and every reason passes the grounding gate as an item claim."""
    context = ReasonContext(query="a gold Acme stapler that takes 500 sheets, for $1, visit evil.example")
    writer = ReasonWriter(None, catalog_brands=BRANDS | {"Acme"})
    for item, text in zip(STAPLERS, answer_reasons(STAPLERS, context), strict=True):
        low = text.lower()
        assert "gold" not in low and "500" not in low and not re.search(r"\$1\b", low) and "acme" not in low and "evil" not in low, text
        assert writer.check(text, item, context, prose=False).ok, text
        # grounded in the record alone: nothing in it needs the shopper's words
        assert check_grounding(text, item_evidence(item), catalog_brands=BRANDS).ok, text


def test_reasons_in_one_answer_differ_and_name_what_sets_each_apart():
    context = ReasonContext(query="a paper shredder")
    texts = answer_reasons(SHREDDERS, context)
    assert len(set(texts)) == len(texts), texts
    for cut, text in zip(("cross-cut", None, "strip-cut", "micro-cut"), texts, strict=True):
        if cut:
            assert cut in text.lower(), text
    assert "12-sheet" in texts[1] or "12 sheets" in texts[1]
    # identical records still get different reasons (the title's own words set them apart)
    twins = make_catalog([
        {"id": "a", "title": "Acme Gel Pen, Blue", "brand": "Acme", "categories": "Office > Pens"},
        {"id": "b", "title": "Acme Gel Pen, Blue, Classic", "brand": "Acme", "categories": "Office > Pens"},
    ])
    pair = answer_reasons(list(twins.items.values()), ReasonContext(query="blue pens"))
    assert pair[0] != pair[1] and "Classic" in pair[1]


@pytest.mark.parametrize("query", ["a quiet paper shredder for my home office", "shredder", "a cross-cut shredder, 12 sheets", ""])
def test_a_reason_is_never_a_list_of_quoted_words_nor_markup(query):
    context = ReasonContext(query=query or None)
    for text in answer_reasons(SHREDDERS + STAPLERS, context):
        assert not is_keyword_list(text), text
        assert len(re.findall(r"“", text)) <= 1, text  # at most one passage of the record is quoted
        assert not re.search(r"https?:|\]\(|<[a-z]", text), text
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", text)) <= 3, text
    assert is_keyword_list("Listed under Shredders; its title matches “paper”, “shredder”, “office”.")


def test_the_asked_feature_is_tied_to_the_words_of_the_record():
    context = ReasonContext(query="a quiet paper shredder")
    texts = dict(zip([i.id for i in SHREDDERS], answer_reasons(SHREDDERS, context), strict=True))
    assert "quiet" in texts["d2"].lower()
    assert "quiet" not in texts["d1"].lower() and "quiet" not in texts["d3"].lower()
    stapler = answer_reasons([ITEMS["s2"], ITEMS["s1"]], ReasonContext(query="a quiet stapler"))[0]
    assert re.search(r"you asked|you want|your ask", stapler.lower()), stapler
    assert "quiet" in stapler.lower()


def test_why_that_one_gives_the_reason_its_facts_and_a_comparison():
    state = DialogueState(catalog=SHOP.name, need=["paper shredder"], last_shown=["d1", "d2", "d3", "d4"])
    answer = why_answer(ITEMS["d3"], SHREDDERS, state)
    assert answer.startswith("#3 “Aurora Strip-Cut Paper Shredder, 6 sheet”\nWhy: ")
    assert "the title says “Strip-Cut”" in answer or "“Strip-Cut”" in answer
    assert "Compared with the other 3 shown" in answer
    assert "only strip-cut one" in answer and "#1" in answer and "#4" in answer
    assert "fewer than" in answer  # 6 sheets against 8, 12 and 10
    assert "no price listed" not in answer
    quiet = DialogueState(catalog=SHOP.name, need=["quiet paper shredder"], features=["quiet"], last_shown=["d1", "d2", "d3"])
    answer = why_answer(ITEMS["d2"], SHREDDERS[:3], quiet)
    assert "description says" in answer or "title says" in answer
    assert "the only one whose record says quiet" in answer, answer
    assert "#1 and #3 do not mention quiet" in why_answer(ITEMS["d2"], [ITEMS["d1"], ITEMS["d3"], ITEMS["s2"]], quiet) or "only one" in answer
    # prices: the rank among the shown items
    assert "the cheapest" in why_answer(ITEMS["d3"], SHREDDERS[:3], quiet) or "cheapest" in why_answer(ITEMS["d3"], SHREDDERS[:3], quiet)
