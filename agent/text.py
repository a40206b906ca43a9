"""Text primitives shared by every stage: tokens, stems, money, and trimming for display.

One stemmer for the whole program (Snowball English through PyStemmer, the C build bm25s also
uses), so "staplers" in a message, "Stapler" in a title and "stapling" in a description meet in
the same stem wherever they are compared: dialogue rules, grounding checks, copy checks.
A few shopping synonyms are folded in after stemming ("telephone" ~ "phone", "grey" ~ "gray").
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

from agent.lexicon import FILLER, SYNONYMS
from retrieval.sanitize import visible

__all__ = ["FILLER_STEMS", "content_stems", "find_seq", "money", "short", "squash", "stem", "stems", "tokens", "visible", "whole_sentences"]

_TOKEN = re.compile(r"[a-z0-9]+")
_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The stem of one word (case-folded), with the lexicon's synonyms folded in."""
    w = word.casefold()
    s = _STEMMER.stemWord(w)
    return _SYNONYM_STEMS.get(s, s)


def tokens(text: str) -> list[str]:
    """Case-folded runs of letters and digits."""
    return _TOKEN.findall(text.casefold())


def stems(text: str) -> list[str]:
    return [stem(t) for t in tokens(text)]


def content_stems(text: str) -> list[str]:
    """Stems of the words that carry meaning (filler such as "the", "need", "please" removed)."""
    return [w for w in stems(text) if w not in FILLER_STEMS]


def squash(text: str) -> str:
    """Lower-case letters and digits only: 'GSF11-Blk' -> 'gsf11blk', for model-number lookups."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_seq(haystack: list[str] | tuple[str, ...], needle: list[str] | tuple[str, ...]) -> list[int]:
    """Start positions of `needle` as a contiguous run inside `haystack`."""
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(needle)] if n else []


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def money(value: float, currency: str = "") -> str:
    """$15.99 (dollars, or a catalog that names no currency), €15.99, or "15.99 SEK"."""
    amount = f"{value:,.2f}".replace(".00", "")
    code = (currency or "USD").upper()
    return f"{_SYMBOLS[code]}{amount}" if code in _SYMBOLS else f"{amount} {code}"


def short(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters on a word boundary with an ellipsis."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return (cut[: cut.rfind(" ")] if " " in cut[limit // 2 :] else cut).rstrip(" ,;:-") + "…"


def whole_sentences(text: str) -> str:
    """Drop a trailing half sentence (an LLM answer cut by its token limit)."""
    text = text.strip()
    if not text or text[-1] in ".!?…”\"":
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]] if ends else text + "…"


_SYNONYM_STEMS = {_STEMMER.stemWord(k): _STEMMER.stemWord(v) for k, v in SYNONYMS.items()}
FILLER_STEMS = frozenset(s for w in FILLER for s in stems(w))
