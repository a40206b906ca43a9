"""Reason writer: the retry / template fallbacks with scripted answers (a 135M model will not
produce a planted false claim on demand), the template's grounding over the real catalog, and
(slow) real generated reasons."""

from __future__ import annotations

import random

import pytest

from agent.engines.base import EngineTimeout
from agent.recommend.reasons import ReasonContext, ReasonWriter, clean_reason, format_problems, template_reason


@pytest.fixture(scope="module")
def brands(office_catalog):
    return frozenset(it.brand for it in office_catalog.items.values())


@pytest.fixture(scope="module")
def bic_pen(office_catalog):
    return office_catalog.items["3"]  # BIC Round Stic Ball Pen, Fine Point, 0.8mm, Black, 12 Pens (GSF11-Blk)


CONTEXT = ReasonContext(query="black pens for school")
FALSE_REASON = "These Pilot pens come in a pack of 24, so you will not run out."
TRUE_REASON = "You asked for black pens for school, and these BIC ballpoint pens write in black with a fine point."


def test_planted_false_claim_is_retried_with_the_failures_listed(scripted_engine, bic_pen, brands):
    engine = scripted_engine(batch_answers=[[FALSE_REASON], [TRUE_REASON]])
    [reason] = ReasonWriter(engine, catalog_brands=brands).write([bic_pen], CONTEXT)
    assert (reason.source, reason.grounded, reason.first_try_ok) == ("llm-retry", True, False)
    assert reason.text == TRUE_REASON
    retry_prompt = engine.calls[1][1][0][-1]["content"]
    assert "REJECTED CLAIMS" in retry_prompt and "Pilot" in retry_prompt and "24" in retry_prompt


def test_claim_that_fails_twice_is_replaced_by_the_template(scripted_engine, bic_pen, brands):
    engine = scripted_engine(batch_answers=[[FALSE_REASON], ["Made of red metal for 30 years of use."]])
    [reason] = ReasonWriter(engine, catalog_brands=brands).write([bic_pen], CONTEXT)
    assert reason.source == "template" and reason.grounded
    assert reason.text == template_reason(bic_pen, CONTEXT)
    assert any("red" in p for p in reason.problems)  # what the second attempt got wrong
    assert reason.raw == [FALSE_REASON, "Made of red metal for 30 years of use."]


def test_true_reason_passes_first_time(scripted_engine, bic_pen, brands):
    engine = scripted_engine(batch_answers=[[TRUE_REASON + " It is a black pen. And a fourth."]])
    [reason] = ReasonWriter(engine, catalog_brands=brands).write([bic_pen], CONTEXT)
    assert (reason.source, reason.grounded, reason.first_try_ok) == ("llm", True, True)
    assert reason.text == TRUE_REASON + " It is a black pen."  # two sentences at most
    assert len(engine.calls) == 1  # no retry


def test_copied_data_section_is_not_a_reason(scripted_engine, bic_pen, brands):
    echo = "<<<SHOPPER BOUGHT\n- BIC Round Stic Ball Pen, Fine Point, 0.8mm, Black"
    engine = scripted_engine(batch_answers=[[echo], [echo]])
    [reason] = ReasonWriter(engine, catalog_brands=brands).write([bic_pen], CONTEXT)
    assert reason.source == "template" and "<<<" not in reason.text
    assert format_problems(clean_reason(echo))
    loop = "The item is perfect for everyday use, perfect for everyday use, and perfect for everyday use."
    assert format_problems(loop) == ["the answer repeats itself"]
    # seen from SmolLM2 on a real user: prose, grounded, and useless to the person reading it
    meta = "You asked for gel pens, and this is the same as the other items in the list. The shopper bought before."
    assert format_problems(meta) and "prompt" in format_problems(meta)[0]


def test_engine_error_gives_template_reasons(scripted_engine, office_catalog, brands):
    items = [office_catalog.items[i] for i in ("3", "277", "146")]
    reasons = ReasonWriter(scripted_engine(raise_error=EngineTimeout("slow")), catalog_brands=brands).write(items, CONTEXT)
    assert [r.item_id for r in reasons] == ["3", "277", "146"]
    assert all(r.source == "template" and r.grounded for r in reasons)


def test_clean_reason_drops_a_cut_off_sentence():
    assert clean_reason("Reason: **Great pens.** They write well and") == "Great pens."
    assert clean_reason("They write well and") == "They write well and"


def test_template_reason_is_always_grounded(office_catalog, office_interactions, brands):
    """Real users' histories (similar titles included: a user who bought the same binder in two
    sizes once made a template look 'repetitive'), random catalog items, assorted queries."""
    writer = ReasonWriter(None, catalog_brands=brands)
    items = list(office_catalog.items.values())
    users = sorted(office_interactions)
    rng = random.Random(0)
    for _ in range(300):
        seq = office_interactions[rng.choice(users)]
        item = office_catalog.items[seq[-1]] if rng.random() < 0.5 else rng.choice(items)
        history = [office_catalog.items[i].title for i in seq[:-1]][-3:]
        query = rng.choice([None, "cheap black pens, 12 pack", "a stapler for 20 sheets", "ink for my HP printer"])
        context = ReasonContext(query=query, history_titles=history)
        text = template_reason(item, context)
        assert writer.check(text, item, context, prose=False).ok, (item.id, text)


@pytest.mark.slow
def test_real_model_reasons_are_grounded_or_replaced(transformers_engine, office_catalog, brands):
    items = [office_catalog.items[i] for i in ("3", "277")]
    context = ReasonContext(query="pens and a stapler for the office", history_titles=[office_catalog.items["4"].title])
    reasons = ReasonWriter(transformers_engine, catalog_brands=brands).write(items, context)
    assert len(reasons) == 2
    for reason in reasons:
        assert reason.source in ("llm", "llm-retry", "template")
        assert reason.grounded and reason.text
        assert reason.raw  # the model was asked at least once
