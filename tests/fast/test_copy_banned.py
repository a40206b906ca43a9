"""Banned words for copy decoding (agent/copy/check.py `banned_terms`, agent/copy/writer.py
`Copywriter.banned`, agent/engines/bad_words.py `RowBans`): the ban is what the checker would flag
for the item, no more; each item of a batch gets its own list; the mask follows vLLM's bad_words.
No model is loaded."""

from __future__ import annotations

import pytest
import torch

from agent.copy.check import banned_terms, check_copy
from agent.copy.writer import Copywriter, copy_evidence
from agent.engines.bad_words import RowBans, token_sequences
from tests.fast.conftest import ScriptedEngine, make_catalog

pytestmark = pytest.mark.fast

PENS = ["Paper Mate Flair Felt Tip Pens, Assorted Colors, Medium, 16-Count", "Paper Mate", "Office Products > Writing > Pens"]
STAPLER = ["Swingline Desk Stapler, Black, 20 Sheet Capacity", "Swingline", "Office Products > Staplers"]


@pytest.mark.parametrize("evidence", [PENS, STAPLER])
def test_every_banned_term_is_one_the_checker_flags(evidence):
    banned = banned_terms(evidence)
    words = [t for t in banned if not t.isdigit()]
    assert len(words) > 100  # colours, materials, claims, product types ... of the lexicon
    for term in words:
        assert not check_copy(f"This item is {term}.", evidence).ok, term


def test_stated_and_entailed_terms_are_not_banned():
    banned = set(banned_terms(PENS))
    assert {"pens", "pen", "medium", "assorted colors", "different colors"}.isdisjoint(banned)  # stated, or entailed by "Assorted Colors"
    assert {"pencil", "the best", "most popular", "reusable", "pad"} <= banned  # "pad": a synonym of the lexicon's "notepad"
    assert "black" in banned and "black" not in banned_terms(STAPLER)


def test_digits_the_evidence_lacks_are_banned():
    assert [t for t in banned_terms(PENS) if t.isdigit()] == ["0", "2", "3", "4", "5", "7", "8", "9"]  # "16" has 1 and 6


CAT = make_catalog([
    {"id": "a", "title": "Acme Desk Stapler Zed", "brand": "Acme", "categories": "Office > Staplers"},
    {"id": "b", "title": "Acme Blue Gel Pens, 12 Pack", "brand": "Acme", "categories": "Office > Pens"},
])  # fmt: skip
GOOD = "Selling point: A desk stapler for everyday use.\nDescription: This desk stapler is easy to use every day. It keeps the desk tidy and neat."
INVENTED = "Selling point: A desk stapler for everyday use.\nDescription: This desk stapler is made of steel. It keeps the desk tidy and neat."


def test_each_item_gets_its_own_ban_and_the_retry_adds_the_flagged_terms():
    engine = ScriptedEngine(text=INVENTED)
    writer = Copywriter(engine)
    items = [CAT.items["a"], CAT.items["b"]]
    writer.write(items)
    first, retry = engine.banned
    assert len(first) == 2 and "blue" in first[0] and "blue" not in first[1] and "Blue" in first[0]
    assert "steel" in first[0] and "steels" in first[0]  # the checker's word, capitalised and plural forms too
    assert first[0] == writer.banned(items[0])
    assert len(retry) == 2 and set(first[0]) <= set(retry[0])


def test_the_ban_can_be_switched_off():
    engine = ScriptedEngine(text=GOOD)
    Copywriter(engine, ban_unsupported=False).write([CAT.items["a"]])
    assert engine.banned == [None]


def test_banned_words_follow_the_items_evidence():
    writer = Copywriter(ScriptedEngine(text=GOOD))
    item = CAT.items["b"]
    assert set(banned_terms(copy_evidence(item))) <= set(writer.banned(item))


class _Tokenizer:
    """Words to ids; a leading space is its own token, "pencil" is "pen" + "cil" (like BPE splits)."""

    vocab = {" ": 1, "pen": 2, "cil": 3, "the": 4, "best": 5, "blue": 6, "red": 7}

    def encode(self, text, add_special_tokens=False):
        ids = []
        for i, word in enumerate(text.split(" ")):
            if i:
                ids.append(1)
            if word == "pencil":
                ids += [2, 3]
            elif word:
                ids.append(self.vocab[word])
        return ids


def test_row_bans_mask_a_sequence_only_after_its_prefix_and_only_in_its_row():
    tok = _Tokenizer()
    rows = [token_sequences(tok, ["pencil", "blue"]), token_sequences(tok, ["the best"])]
    bans = RowBans(rows, prompt_width=2)
    prompt = [[4, 4], [4, 4]]  # "the" in the prompt does not start a ban: only generated tokens count

    def masked(generated: list[list[int]]) -> list[set[int]]:
        ids = torch.tensor([p + g for p, g in zip(prompt, generated)])
        scores = bans(ids, torch.zeros(2, 8))
        return [set(torch.nonzero(torch.isinf(row)).flatten().tolist()) for row in scores]

    assert masked([[7, 7], [7, 7]]) == [{6}, set()]  # row 0: "blue" always; row 1: nothing yet
    assert masked([[7, 2], [4, 1]]) == [{3, 6}, {5}]  # "pen" -> no "cil"; "the" + " " -> no "best"
    assert masked([[4, 1], [7, 2]]) == [{6}, set()]  # another row's ban does not apply
    assert masked([[2, 7], [4, 7]]) == [{6}, set()]  # a prefix counts only right before the token
