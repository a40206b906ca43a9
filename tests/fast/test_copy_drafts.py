"""Best of n drafts (agent/copy/writer.py `Copywriter(drafts=..., scorer=...)`, agent/copy/select.py):
each item gets n sampled drafts in one batch, only drafts that pass the gate can be kept, the scorer
picks among them, and the retry runs only when none passed. No model is loaded."""

from __future__ import annotations

import json

import pytest

from agent.copy.select import DEFAULT_DRAFTS
from agent.copy.writer import STATUS_DROPPED, STATUS_OK, STATUS_REGENERATED, Copywriter, copy_evidence, describe_catalog
from tests.fast.conftest import ScriptedEngine, make_catalog

pytestmark = pytest.mark.fast

CAT = make_catalog([
    {"id": "a", "title": "Acme Desk Stapler Zed", "brand": "Acme", "categories": "Office > Staplers"},
    {"id": "b", "title": "Acme Gel Pens, 12 Pack", "brand": "Acme", "categories": "Office > Pens"},
])  # fmt: skip
GENERIC = "Selling point: A handy pick for the office.\nDescription: It is a great choice for any office or home. It is simple to use every day."
SPECIFIC = "Selling point: An Acme desk stapler for everyday use.\nDescription: This Acme desk stapler sits on the desk. The stapler is simple to use every day."
BROKEN = "Selling point: Acme Desk Stapler Zed\nDescription: Acme Desk Stapler Zed."
INVENTED = "Selling point: A desk stapler for everyday use.\nDescription: This desk stapler is made of steel. It keeps the desk tidy and neat."


class RowEngine(ScriptedEngine):
    """Answers batch rows from a list per call, and records each call's conversations."""

    def __init__(self, *rounds: list[str]):
        super().__init__()
        self.rounds = list(rounds)
        self.rows: list[int] = []
        self.prompts: list[list[str]] = []

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, banned=None):
        self.banned.append(banned)
        self.rows.append(len(conversations))
        self.prompts.append([conv[-1]["content"] for conv in conversations])
        answers = self.rounds.pop(0)
        assert len(answers) == len(conversations)
        return answers


class WordOverlap:
    """A scorer for the logic tier: shared words with the item's fields."""

    name = "word overlap"

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, item, drafts):
        fields = set(" ".join(copy_evidence(item)).lower().split())
        self.calls.append(len(drafts))
        return [float(len(fields & set(d.description.lower().replace(".", "").split()))) for d in drafts]


def test_the_scorer_picks_among_the_drafts_that_pass():
    engine = RowEngine([BROKEN, GENERIC, SPECIFIC, INVENTED])
    scorer = WordOverlap()
    [result] = Copywriter(engine, drafts=4, scorer=scorer).write([CAT.items["a"]])
    assert engine.rows == [4]  # one call, n rows for the item
    assert scorer.calls == [2]  # only the two drafts that passed the gate are scored
    assert result.status == STATUS_OK and result.copy is not None and "Acme desk stapler" in result.copy.description
    assert result.passed == 2 and result.drafts == 4 and result.score is not None and result.score > 0
    assert result.first_format_error is not None  # the first draft's outcome is still reported as such
    assert result.raw == SPECIFIC


def test_a_tie_keeps_the_earlier_draft_and_one_passing_draft_needs_no_scorer():
    scorer = WordOverlap()
    [tie] = Copywriter(RowEngine([GENERIC, GENERIC.replace("It is a great", "It is a fine")]), drafts=2, scorer=scorer).write([CAT.items["a"]])
    assert tie.raw == GENERIC
    [one] = Copywriter(RowEngine([INVENTED, SPECIFIC]), drafts=2, scorer=scorer).write([CAT.items["a"]])
    assert one.raw == SPECIFIC and one.passed == 1 and one.score is None and scorer.calls == [2]


def test_without_a_scorer_the_first_passing_draft_is_kept():
    [result] = Copywriter(RowEngine([BROKEN, GENERIC, SPECIFIC]), drafts=3).write([CAT.items["a"]])
    assert result.raw == GENERIC and result.passed == 2


def test_rows_follow_their_items_and_each_row_gets_its_items_ban():
    engine = RowEngine([SPECIFIC, SPECIFIC, GENERIC, GENERIC])
    writer = Copywriter(engine, drafts=2, scorer=WordOverlap())
    a, b = writer.write([CAT.items["a"], CAT.items["b"]])
    assert "Zed" in engine.prompts[0][0] and "Zed" in engine.prompts[0][1] and "Gel Pens" in engine.prompts[0][2]
    [bans] = engine.banned
    assert bans[0] == bans[1] == writer.banned(CAT.items["a"]) and bans[2] == bans[3] == writer.banned(CAT.items["b"])
    assert a.raw == SPECIFIC and b.raw == GENERIC


def test_the_retry_samples_n_drafts_only_for_items_where_none_passed():
    engine = RowEngine([INVENTED, BROKEN, SPECIFIC, GENERIC], [BROKEN, GENERIC])
    a, b = Copywriter(engine, drafts=2, scorer=WordOverlap()).write([CAT.items["a"], CAT.items["b"]])
    assert engine.rows == [4, 2]
    assert all("steel" in p for p in engine.prompts[1])  # the flagged term is listed in the retry prompt
    assert a.status == STATUS_REGENERATED and a.raw == GENERIC and a.drafts == 4 and a.passed == 1
    assert a.first_unsupported and "steel" in a.first_unsupported[0]
    assert b.status == STATUS_OK and b.drafts == 2


def test_an_item_is_dropped_when_no_draft_of_either_round_passes():
    [result] = Copywriter(RowEngine([INVENTED, BROKEN], [INVENTED, INVENTED]), drafts=2).write([CAT.items["a"]])
    assert result.status == STATUS_DROPPED and not result.usable and result.passed == 0
    assert any("steel" in p for p in result.unsupported)


def test_drafts_must_be_positive():
    with pytest.raises(ValueError, match="drafts must be >= 1"):
        Copywriter(ScriptedEngine(), drafts=0)
    assert DEFAULT_DRAFTS >= 1


def test_describe_sends_batch_size_sequences_per_call_and_records_the_drafts(tmp_path):
    cat = make_catalog([{"id": str(i), "title": f"Acme Desk Stapler {i}", "brand": "Acme", "categories": "Office > Staplers"} for i in range(5)])
    engine = ScriptedEngine(text=SPECIFIC)
    calls: list[int] = []
    inner = engine.batch

    def batch(conversations, **kwargs):
        calls.append(len(conversations))
        return inner(conversations, **kwargs)

    engine.batch = batch  # type: ignore[method-assign]
    writer = Copywriter(engine, drafts=3, scorer=WordOverlap())
    overlay = tmp_path / "o.jsonl"
    report = describe_catalog(cat, writer, overlay, batch_size=7, progress=False)
    assert calls == [6, 6, 3]  # 7 // 3 = 2 items (6 sequences) a call
    assert report.ok == 5
    records = [json.loads(line) for line in overlay.read_text().splitlines()]
    assert {r["decoding"]["drafts"] for r in records} == {3}
    assert {r["decoding"]["selection"] for r in records} == {"word overlap"}
    assert {r["grounding"]["drafts_passed"] for r in records} == {3}


def test_an_item_whose_drafts_all_fail_in_the_engine_is_an_error_and_the_others_go_on():
    from agent.copy.writer import STATUS_ERROR

    class FailingOn(ScriptedEngine):
        def batch(self, conversations, *, max_tokens=256, temperature=0.0, banned=None):
            if any("Gel Pens" in conv[-1]["content"] for conv in conversations):
                raise RuntimeError("backend failed on this item")
            return [SPECIFIC for _ in conversations]

    a, b = Copywriter(FailingOn(), drafts=2, scorer=WordOverlap()).write([CAT.items["a"], CAT.items["b"]])
    assert a.status == STATUS_OK and a.passed == 2
    assert b.status == STATUS_ERROR and b.error == "RuntimeError: backend failed on this item"
