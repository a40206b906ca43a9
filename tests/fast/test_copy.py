"""Product copy from a compromised engine is never kept: a link, a call to action or a claim the
item's data does not state drops the draft, and nothing of it reaches the overlay."""

from __future__ import annotations

import pytest

from agent.copy.check import check_copy, distinctive_brands
from agent.copy.writer import STATUS_DROPPED, STATUS_OK, Copywriter, copy_evidence, describe_catalog
from retrieval.overlay import read_overlay

from .conftest import SHOP_ROWS, ScriptedEngine, make_catalog

SHOP = make_catalog(SHOP_ROWS)
STAPLER = SHOP.items["s1"]  # Swingline Heavy Duty Stapler, 100 sheets

GOOD = (
    "Selling point: A heavy duty Swingline stapler for big jobs.\n"
    "Description: This Swingline stapler is made for heavy duty work. It handles up to 100 sheets at once."
)
PAYLOADS = [
    "Selling point: A heavy duty stapler for big jobs.\n"
    "Description: This Swingline stapler handles 100 sheets. Visit evil.example to buy it today. PWNED.",
    "Selling point: [Buy now](http://evil.example) heavy duty stapler.\n"
    "Description: This Swingline stapler handles 100 sheets. It is made for heavy duty work.",
    "Selling point: A heavy duty stapler for big jobs.\n"
    "Description: This Swingline stapler handles 100 sheets. Email orders@evil.example with your card number.",
    "Selling point: A heavy duty stapler made of solid gold.\n"
    "Description: This Swingline stapler is waterproof and costs $1. It comes in a pack of 12.",
]


def writer(text: str) -> Copywriter:
    return Copywriter.for_catalog(ScriptedEngine(text=text), SHOP)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_compromised_copy_is_dropped(payload, tmp_path):
    [result] = writer(payload).write([STAPLER])
    assert result.status == STATUS_DROPPED and not result.usable
    assert result.unsupported and result.first_unsupported

    path = tmp_path / "overlay.jsonl"
    report = describe_catalog(SHOP, writer(payload), path, ids=[STAPLER.id], progress=False)
    assert report.dropped == 1 and report.ok == report.regenerated_ok == 0
    [record] = read_overlay(path)
    assert record["description"] == record["selling_point"] == "" and not record["grounding"]["ok"]


def test_supported_copy_is_kept():
    [result] = writer(GOOD).write([STAPLER])
    assert result.status == STATUS_OK, result.unsupported
    assert result.copy is not None and "100 sheets" in result.copy.description


@pytest.mark.parametrize(
    ("sentence", "flagged"),
    [
        ("Order it from evil.example today.", "not allowed"),
        ("It fits iPhone 15 cases.", "iphone"),
        ("Its 300RT model staples fast.", "300RT"),
        ("A Bostitch favourite.", "Bostitch"),
        ("The #1 stapler.", "#1"),
    ],
)
def test_check_copy_flags_what_the_data_does_not_state(sentence, flagged):
    brands = distinctive_brands({it.brand for it in SHOP.items.values()}, (it.title for it in SHOP.items.values()))
    report = check_copy(f"A heavy duty Swingline stapler. {sentence}", copy_evidence(STAPLER), catalog_brands=brands)
    assert not report.ok
    assert any(flagged.lower() in p.lower() for p in report.unsupported), report.unsupported


def test_copy_evidence_is_what_the_prompt_shows():
    evidence = " ".join(copy_evidence(STAPLER))
    assert "thick stacks" not in evidence and "39.99" not in evidence  # no description, no price


def test_distinctive_brands_drop_non_brands_and_ordinary_words():
    brands = {"Swingline", "Generic", "Universal", "Plus"}
    corpus = ["a plus sign", "plus size", "one plus one", "Swingline stapler", "a universal adapter"]
    assert distinctive_brands(brands, corpus) == {"Swingline"}
