"""Grounding checker on real catalog items: planted false claims are caught, true ones pass.
No model needed."""

from __future__ import annotations

import random

import pytest

from agent.grounding import GroundingReport, check_grounding, item_evidence


@pytest.fixture(scope="module")
def brands(office_catalog):
    return {it.brand for it in office_catalog.items.values()}


@pytest.fixture(scope="module")
def bic_pen(office_catalog):
    item = office_catalog.items["3"]  # BIC Round Stic Ball Pen, Fine Point, 0.8mm, Black, 12 Pens (GSF11-Blk)
    assert item.brand == "BIC"
    return item


def test_true_reason_passes(bic_pen, brands):
    text = "These BIC ballpoint pens write in black with a fine 0.8mm point, and you get 12 pens (GSF11-Blk) for school."
    report = check_grounding(text, item_evidence(bic_pen), request_evidence=["black pens for school"], catalog_brands=brands)
    assert isinstance(report, GroundingReport)
    assert report.ok, report.unsupported
    assert report.unsupported == []
    assert report.checked >= 5  # brand, numbers, model number, colour, product type were all looked at


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("These Pilot pens are smooth.", "Pilot"),  # another real catalog brand
        ("A pack of 24 pens in black.", "24"),  # a quantity the item does not have
        ("Fine 0.7mm point for neat notes.", "0.7"),  # a size the item does not have
        ("Model GSF22 is the classic stick pen.", "GSF22"),  # invented model number
        ("They write in red and blue.", "red"),  # colours not in the item data
        ("The metal barrel feels solid.", "metal"),  # material not in the item data
        ("Works great as a wireless pen.", "wireless"),  # feature not in the item data
        ("This stapler is reliable.", "stapler"),  # wrong product type
        ("Great value at a competitive price.", "price"),  # price claim with no price anywhere
        ("Three black pens come in the pack.", "3"),  # number words count too
    ],
)
def test_planted_false_claim_is_caught(bic_pen, brands, text, flagged):
    report = check_grounding(text, item_evidence(bic_pen), catalog_brands=brands)
    assert not report.ok
    assert any(flagged.lower() in problem.lower() for problem in report.unsupported), report.unsupported


def test_user_words_and_history_support_only_restating_the_request(office_catalog, brands):
    stapler = office_catalog.items["277"]  # Swingline fashion stapler, 20 sheets
    request, bought = ["a cheap stapler"], [office_catalog.items["4"].title]  # what they asked for, and bought
    text = "You asked for something cheap; this Swingline stapler handles 20 sheets and suits the Paper Mate pens you bought."
    assert check_grounding(text, item_evidence(stapler), request_evidence=request, history_evidence=bought, catalog_brands=brands).ok
    # without the user's history the purchase claim is unsupported; their words are no history
    bare = check_grounding(text, item_evidence(stapler), request_evidence=request + bought, catalog_brands=brands)
    assert not bare.ok and any("Paper Mate" in p for p in bare.unsupported)
    # the same words stated as facts about the item need the item's record, not the user's words
    claim = check_grounding("This cheap stapler suits Paper Mate pens.", item_evidence(stapler), request_evidence=request, history_evidence=bought, catalog_brands=brands)
    assert not claim.ok and any("Paper Mate" in p for p in claim.unsupported) and any("cheap" in p for p in claim.unsupported)


def test_common_word_brands_are_not_false_alarms(bic_pen, brands):
    # "Universal", "Sharp", "Cross" are catalog brands, but also words; used as words they are fine.
    text = "Sharp, clean lines for universal everyday writing with black ink pens."
    report = check_grounding(text, item_evidence(bic_pen), catalog_brands=brands)
    assert report.ok, report.unsupported
    # the longest brand wins: "Uni-ball" is reported, not "Uni"
    report = check_grounding("Feels like a Uni-ball pen.", item_evidence(bic_pen), catalog_brands=brands)
    assert report.unsupported and "Uni-ball" in report.unsupported[0]


def test_empty_text_is_not_grounded(bic_pen):
    report = check_grounding("  ", item_evidence(bic_pen))
    assert not report.ok and report.unsupported


def test_own_attributes_always_pass_over_the_catalog(office_catalog, brands):
    """A sentence made only of an item's own title/brand/category must pass for every item (no
    false alarms from the number, model-number or lexicon rules on real titles)."""
    items = list(office_catalog.items.values())
    for item in random.Random(0).sample(items, 400):
        text = f"{item.title} from {item.brand or 'the catalog'} is a {item.category} item."
        report = check_grounding(text, item_evidence(item), catalog_brands=brands)
        assert report.ok, (item.id, text, report.unsupported)
