"""Banned words for transformers generation, one list per row of a batch (vLLM's `bad_words`).

vLLM's SamplingParams(bad_words=...) is per request; transformers' own `bad_words_ids` applies one
list to the whole batch. This processor gives each row its own list with vLLM's semantics: a word is
tokenized with and without a leading space, and its last token is masked whenever the tokens before
it are the last ones the row generated (a one-token word is masked always). So "the best" stops
" best" right after " the", and "pencil" stops " pencil" but not " pen" or " pens".

What a ban cannot do: stop a word spelled with other tokens than its usual ones, or a one-token
word that is also the start of a longer word (masking " pen" would stop " pen" + "cil" too). The
caller's checker stays the gate; the ban only takes the likeliest spellings out of the sampler's way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor


def token_sequences(tokenizer: Any, words: Iterable[str]) -> list[tuple[int, ...]]:
    """Distinct token sequences of each word, as written and after a space."""
    seqs: dict[tuple[int, ...], None] = {}
    for word in words:
        word = word.strip()
        if not word:
            continue
        for text in (word, " " + word):
            ids = tuple(tokenizer.encode(text, add_special_tokens=False))
            if ids:
                seqs[ids] = None
    return list(seqs)


class RowBans(LogitsProcessor):
    """A transformers LogitsProcessor masking each row's banned sequences (see the module doc).

    `rows[i]`: the token sequences banned for row i of the batch; `prompt_width`: the padded prompt
    length, so only generated tokens can complete a sequence's prefix."""

    def __init__(self, rows: Sequence[Sequence[tuple[int, ...]]], prompt_width: int) -> None:
        self.prompt_width = prompt_width
        self.single: list[list[int]] = []
        self.by_prefix: list[dict[tuple[int, ...], list[int]]] = []
        self.prefix_lengths: list[list[int]] = []
        for seqs in rows:
            single = sorted({s[0] for s in seqs if len(s) == 1})
            prefixed: dict[tuple[int, ...], list[int]] = {}
            for s in seqs:
                if len(s) > 1:
                    prefixed.setdefault(s[:-1], []).append(s[-1])
            self.single.append(single)
            self.by_prefix.append(prefixed)
            self.prefix_lengths.append(sorted({len(p) for p in prefixed}))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_width :].tolist()
        for row, tokens in enumerate(generated):
            if row >= len(self.single):
                break
            banned = list(self.single[row])
            prefixed = self.by_prefix[row]
            for n in self.prefix_lengths[row]:
                if n <= len(tokens):
                    banned.extend(prefixed.get(tuple(tokens[-n:]), ()))
            if banned:
                scores[row, banned] = -float("inf")
        return scores
