"""Specific words (agent/copy/terms.py): rare in the catalog's descriptions and not in the item's
fields. Used to filter training targets, to choose among passing drafts, and in the copy eval."""

from __future__ import annotations

import pytest

from agent.copy.terms import MIN_DESCRIPTIONS, TermRarity
from agent.copy.writer import Copywriter, copy_evidence
from tests.fast.test_copy_drafts import CAT, RowEngine, WordOverlap

pytestmark = pytest.mark.fast

# 600 descriptions (rare: in fewer than 3): "stapler", "desk" and "sturdy" are common; "mahogany" is in one, "roller" in two.
COMMON = "A sturdy desk stapler for the office. It is a handy choice for any desk, simple to use every day at home or work."
CORPUS = [COMMON] * 597 + ["A notebook bound in mahogany boards.", "A roller stamp.", "A roller tool."]
RARITY = TermRarity.of_descriptions(CORPUS)
EVIDENCE = ["Acme Desk Stapler Zed", "Acme", "Office > Staplers"]


def test_rare_words_missing_from_the_fields_are_specific():
    assert RARITY.available and RARITY.n == 600
    text = "This sturdy Acme stapler has a mahogany base and a roller for the office, simple to use every day."
    assert RARITY.specific_terms(text, EVIDENCE) == ["mahogany", "base", "roller"]


def test_a_rare_word_the_fields_contain_is_not_specific_and_numbers_are_left_to_the_checker():
    assert RARITY.specific_terms("A roller stapler with 25 sheets capacity and a 300R head.", ["Acme Roller Stapler 300R", "sheets capacity"]) == ["head"]


def test_too_few_descriptions_flag_nothing():
    small = TermRarity.of_descriptions(CORPUS[: MIN_DESCRIPTIONS - 1])
    assert not small.available and small.specific_terms("a mahogany roller", EVIDENCE) == []


def test_among_passing_drafts_the_one_with_fewer_specific_words_wins_over_the_scorer():
    # Both drafts pass the claim checker; the first names details the fields do not (a swivel
    # head, a curved handle), and the scorer would prefer it for its overlap with the title.
    invented = ("Selling point: The Acme desk stapler Zed for everyday use.\nDescription: This Acme desk stapler Zed has a swivel head. "
                "Its curved handle sits well in the palm.")
    plain = "Selling point: A handy desk stapler for the office.\nDescription: It is a sturdy choice for any office desk. It is simple to use every day."
    scorer = WordOverlap()
    rarity = TermRarity.of_descriptions(CORPUS)
    [picked] = Copywriter(RowEngine([invented, plain]), drafts=2, scorer=scorer, rarity=rarity).write([CAT.items["a"]])
    assert picked.raw == plain and picked.specific == [] and picked.passed == 2
    [unaware] = Copywriter(RowEngine([invented, plain]), drafts=2, scorer=scorer).write([CAT.items["a"]])
    assert unaware.raw == invented  # without word counts the scorer decides
    item = CAT.items["a"]
    assert set(rarity.specific_terms(invented, copy_evidence(item))) >= {"swivel", "curved", "handle", "palm"}
