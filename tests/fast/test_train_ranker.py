"""LLM ranker training data (agent/train/ranker.py) and the LoRA loss mask (agent/train/lora.py)."""

from __future__ import annotations

import string

import pytest
import torch

from agent.train.lora import IGNORE, Example, collate, data_fingerprint, encode_example, target_loss
from agent.train.ranker import build_examples, shuffled, to_lora_examples, validation_split
from tests.fast.conftest import make_catalog

# Users with distinct items, so an id tells where in the sequence it came from.
INTERACTIONS = {f"u{u}": [f"u{u}-i{k}" for k in range(2 + u % 6)] for u in range(40)}
INTERACTIONS["short"] = ["s-only"]
INTERACTIONS["pair"] = ["p-0", "p-1"]  # test item only: no training example


def _all_items() -> list[str]:
    return sorted({i for seq in INTERACTIONS.values() for i in seq})


class Recording:
    """candidates_for that puts the target first (so shuffling is what spreads the letters) and
    records every history it was asked about."""

    def __init__(self, n: int = 20) -> None:
        self.seen: list[list[str]] = []
        self.n = n

    def __call__(self, history: list[str]) -> list[str]:
        self.seen.append(list(history))
        user = history[0].split("-")[0]
        seq = INTERACTIONS[user]
        target = seq[len(history)]  # the next item: the val target (the function has no other way to know)
        others = [i for i in _all_items() if i != target and i not in history]
        return [target, *others][: self.n]


def test_split_never_uses_the_last_item():
    histories, targets = validation_split(INTERACTIONS)
    assert "short" not in histories and "pair" not in histories
    for user, seq in INTERACTIONS.items():
        if len(seq) < 3:
            continue
        assert histories[user] == seq[:-2]
        assert targets[user] == seq[-2]

    fn = Recording()
    examples = build_examples(INTERACTIONS, fn, seed=3)
    assert examples, "every user with >= 3 items should give an example"
    for ex in examples:
        seq = INTERACTIONS[ex.user]
        last = seq[-1]
        assert ex.history == seq[:-2]
        assert ex.target == seq[-2]
        assert last not in ex.history and last != ex.target
        assert last not in ex.candidates, "the test item must not even appear as a distractor"
    for history in fn.seen:  # the first stage was never shown the second-to-last or last item
        seq = INTERACTIONS[history[0].split("-")[0]]
        assert history == seq[: len(history)] and len(history) <= len(seq) - 2


def test_only_examples_with_the_target_among_candidates():
    def misses(history: list[str]) -> list[str]:
        return [i for i in _all_items() if i not in history and not i.endswith(("-i1",))][:20]

    examples = build_examples(INTERACTIONS, misses, seed=0)
    assert all(ex.target in ex.candidates for ex in examples)
    users_with_i1_target = {u for u, seq in INTERACTIONS.items() if len(seq) >= 3 and seq[-2].endswith("-i1")}
    assert users_with_i1_target and not users_with_i1_target & {ex.user for ex in examples}


def test_shuffle_is_seeded_and_label_matches_position():
    a = build_examples(INTERACTIONS, Recording(), seed=7)
    b = build_examples(INTERACTIONS, Recording(), seed=7)
    c = build_examples(INTERACTIONS, Recording(), seed=8)
    assert [(e.user, e.candidates, e.label) for e in a] == [(e.user, e.candidates, e.label) for e in b]
    assert [e.candidates for e in a] != [e.candidates for e in sorted(c, key=lambda e: [x.user for x in a].index(e.user))]
    for ex in a:
        assert ex.candidates[string.ascii_uppercase.index(ex.label)] == ex.target
        assert ex.candidates == shuffled(Recording()(ex.history), 7, ex.user) or ex.candidates == shuffled([x for x in Recording()(ex.history) if x != INTERACTIONS[ex.user][-1]], 7, ex.user)
    # The first stage always ranks the target first; after shuffling it is no longer always "A".
    assert len({ex.label for ex in a}) > 5
    # The order of users does not change an example's shuffle: it depends on (seed, user) only.
    assert shuffled(list("abcdefgh"), 7, "u1") == shuffled(list("abcdefgh"), 7, "u1") != shuffled(list("abcdefgh"), 7, "u2")


def test_prompt_is_the_rerankers_and_the_target_is_the_letter():
    from agent.recommend.rank import Candidate, RankContext, Reranker

    rows = [{"id": i, "title": f"Title {i}", "categories": ["Pens"]} for i in _all_items()]
    catalog = make_catalog(rows)
    examples = build_examples(INTERACTIONS, Recording(n=6), seed=1, n=5)
    assert len(examples) == 5
    lora_examples, prompt = to_lora_examples(examples, catalog)
    assert prompt == "rerank_onepass.v1"
    ranker = Reranker(object(), mode="onepass")  # type: ignore[arg-type]  # the pipeline's configuration
    for ex, lex in zip(examples, lora_examples):
        expected = ranker.messages([Candidate(catalog.items[i], 0.0) for i in ex.candidates], RankContext(query=None, history_titles=[f"Title {i}" for i in ex.history]))
        assert lex.messages == expected
        assert lex.target == ex.label
        assert f"ITEM {ex.label}: Title {ex.target}" in lex.messages[-1]["content"]


class CharTokenizer:
    """A char-level stand-in with a ChatML-like template."""

    pad_token_id = 0
    eos_token_id = 1

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        text = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [2 + ord(ch) % 60 for ch in text]}

    def get_vocab(self):
        return {}


def test_loss_mask_covers_only_target_tokens():
    tok = CharTokenizer()
    messages = [{"role": "system", "content": "pick"}, {"role": "user", "content": "A or B?"}]
    ids, labels = encode_example(tok, messages, "B")
    prompt_len = len(tok(tok.apply_chat_template(messages))["input_ids"])
    assert len(ids) == len(labels) == prompt_len + 1
    assert labels[:prompt_len] == [IGNORE] * prompt_len and labels[-1] == ids[-1] == 2 + ord("B") % 60

    ids2, labels2 = encode_example(tok, messages, "Nice pen.", eos=True)
    assert [t for t in labels2 if t != IGNORE] == tok("Nice pen.")["input_ids"] + [tok.eos_token_id]

    batch = collate([(ids, labels), (ids2, labels2)], tok.pad_token_id)
    assert int((batch["labels"] != IGNORE).sum()) == 1 + len("Nice pen.") + 1
    assert batch["attention_mask"][0].sum() == len(ids) and batch["labels"][0, len(ids) :].eq(IGNORE).all()

    # The loss over the selected positions equals the library's full-logits loss with the same mask.
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2))
    ours = target_loss(model, batch)
    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert torch.allclose(ours, ref, atol=1e-5)
    # Changing a prompt token's label to something else would not matter; changing the target does.
    batch2 = {k: v.clone() for k, v in batch.items()}
    batch2["labels"][0, -1 - (batch["input_ids"].shape[1] - len(ids))] = 3
    assert not torch.allclose(target_loss(model, batch2), ours)


def test_data_fingerprint_changes_with_target():
    msgs = [{"role": "user", "content": "x"}]
    assert data_fingerprint([Example(msgs, "A")]) == data_fingerprint([Example(list(msgs), "A")])
    assert data_fingerprint([Example(msgs, "A")]) != data_fingerprint([Example(msgs, "B")])


@pytest.mark.parametrize("bad", ["", None])
def test_empty_interactions_give_no_examples(bad):
    assert build_examples({"u": [bad] if bad is not None else []}, Recording()) == []
