"""Which tokens a banned word list masks next, given what a reply generated so far (vLLM's `bad_words`).

Backend-free, so the transformers processor (bad_words.py) and the llama.cpp engine share one rule:
a word is tokenized with and without a leading space, and its last token is masked whenever the
tokens before it are the last ones the reply generated (a one-token word is masked always). So "the
best" stops " best" right after " the", and "pencil" stops " pencil" but not " pen" or " pens".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


def token_sequences(encode: Callable[[str], Sequence[int]], words: Iterable[str]) -> list[tuple[int, ...]]:
    """Distinct token sequences of each word, as written and after a space (`encode`: text -> ids, no specials)."""
    seqs: dict[tuple[int, ...], None] = {}
    for word in words:
        word = word.strip()
        if not word:
            continue
        for text in (word, " " + word):
            ids = tuple(encode(text))
            if ids:
                seqs[ids] = None
    return list(seqs)


class BanTable:
    """The banned sequences of one reply, indexed for `after`."""

    def __init__(self, seqs: Sequence[tuple[int, ...]]) -> None:
        self.single = sorted({s[0] for s in seqs if len(s) == 1})
        self.by_prefix: dict[tuple[int, ...], list[int]] = {}
        for s in seqs:
            if len(s) > 1:
                self.by_prefix.setdefault(s[:-1], []).append(s[-1])
        self.prefix_lengths = sorted({len(p) for p in self.by_prefix})

    def after(self, generated: Sequence[int]) -> list[int]:
        """Tokens to mask after `generated` (the reply's own tokens, prompt excluded)."""
        banned = list(self.single)
        for n in self.prefix_lengths:
            if n <= len(generated):
                banned.extend(self.by_prefix.get(tuple(generated[-n:]), ()))
        return banned
