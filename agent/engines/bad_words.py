"""Banned words for transformers generation, one list per row of a batch (vLLM's `bad_words`; the rule is agent/engines/bans.py).

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

from agent.engines import bans


def token_sequences(tokenizer: Any, words: Iterable[str]) -> list[tuple[int, ...]]:
    """Distinct token sequences of each word, as written and after a space."""
    return bans.token_sequences(lambda text: tokenizer.encode(text, add_special_tokens=False), words)


class RowBans(LogitsProcessor):
    """A transformers LogitsProcessor masking each row's banned sequences (see the module doc).

    `rows[i]`: the token sequences banned for row i of the batch; `prompt_width`: the padded prompt
    length, so only generated tokens can complete a sequence's prefix."""

    def __init__(self, rows: Sequence[Sequence[tuple[int, ...]]], prompt_width: int) -> None:
        self.prompt_width = prompt_width
        self.tables = [bans.BanTable(seqs) for seqs in rows]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_width :].tolist()
        for row, tokens in enumerate(generated):
            if row >= len(self.tables):
                break
            banned = self.tables[row].after(tokens)
            if banned:
                scores[row, banned] = -float("inf")
        return scores
