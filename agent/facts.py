"""What an item's own record states, as facts that point back at the words stating them.

A `Fact` is (kind, value, field, span): ("capacity", "8 sheets", "title", the span of "8-Sheet"). Rules only (the lexicon's word lists and regexes for numbers with units), no model, so
a fact is always a slice of the record (`Fact.quote`) and never a guess: the ranking of must-haves
and any reason built on facts can show the words that support them. `item_facts` caches by the
`Item` value, so an updated record is read again; on amazon-office-2014 (2,420 items, long
descriptions) extraction takes about 0.65 ms per item, 1.6 s for the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from agent.lexicon import COLOURS, COMPATIBILITY, DEVICES, FEATURE_PHRASES, MATERIALS, NAMED_SIZES, NOISE_WORDS, NUMBER_WORDS, PRICE_WORDS, SHOPPING_FEATURES
from agent.text import find_seq, stem, stems
from retrieval.catalog import Item

__all__ = ["Fact", "field_text", "has_feature", "item_facts", "must_haves", "request_facts", "stated_features"]


@dataclass(frozen=True)
class Fact:
    kind: str  # capacity | pack | cut | size | compatibility | power | noise | colour | material | feature
    value: str  # normalised: "8 sheets", "12 pack", "cross-cut", "AC powered"
    field: str  # "title" | "description" | "attribute:<name>"
    span: tuple[int, int]  # characters of that field's text

    def quote(self, item: Item) -> str:
        """The record's own words for this fact."""
        return field_text(item, self.field)[self.span[0] : self.span[1]]


def field_text(item: Item, field: str) -> str:
    if field.startswith("attribute:"):
        return dict(item.attributes).get(field.removeprefix("attribute:"), "")
    return getattr(item, field)


# --- rules -----------------------------------------------------------------------------------------

_B, _E = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
# A number as written: "12", "1.5", "5,000" (never the "000" of "5,000"), or a number word.
_NUM = r"(?<![\d,.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + ")"


def _words(words: Iterable[str]) -> re.Pattern[str]:
    """Any of the lexicon phrases as whole words, longest first, spaces and hyphens alike."""
    alts = [r"[\s-]+".join(map(re.escape, re.split(r"[\s-]+", w))) for w in sorted(set(words), key=len, reverse=True)]
    return re.compile(_B + "(?:" + "|".join(alts) + ")" + _E, re.I)


def _number(raw: str) -> str:
    return NUMBER_WORDS.get(raw.casefold(), raw)


def _count(raw: str, unit: str) -> str:
    n = _number(raw)
    return f"{n} {unit}" if n == "1" else f"{n} {unit}s"


def _phrase(raw: str) -> str:
    return " ".join(re.split(r"[\s-]+", raw.casefold()))


# (kind, pattern, value from the match). Earlier rules win a span: "gold" is a colour, not a
# material; "rechargeable" is a power source, not a bare feature.
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    ("capacity", re.compile(_B + _NUM + r"[\s-]*(?:sheets?|sht)" + _E, re.I), lambda m: _count(m[1], "sheet")),
    ("capacity", re.compile(_B + _NUM + r"[\s-]*(gal|gallon|liter|litre)s?" + _E, re.I), lambda m: _count(m[1], "gallon" if m[2].casefold().startswith("gal") else "liter")),
    ("pack", re.compile(_B + _NUM + r"[\s/-]*(?:packs?|pk|count|ct|pcs|pieces)" + _E, re.I), lambda m: f"{_number(m[1])} pack"),
    ("pack", re.compile(_B + r"(?:pack|box|set|case|pkg) of\s+" + _NUM + _E, re.I), lambda m: f"{_number(m[1])} pack"),
    ("cut", re.compile(_B + r"(cross|strip|micro|confetti|diamond|particle|spiral)[\s-]?cut" + _E, re.I), lambda m: f"{m[1].casefold()}-cut"),
    (
        "size",
        re.compile(_B + r"(?<![/\d.])\d+(?:\.\d+)?(?:\s*(?:\"|in\.?|inch(?:es)?|cm|mm))?\s*[x×]\s*\d+(?:\.\d+)?(?:\s*[x×]\s*\d+(?:\.\d+)?)?(?:\s*(?:\"|inch(?:es)?|in\.|cm|mm|ft|feet))?", re.I),
        lambda m: " ".join(m[0].split()),
    ),
    ("size", _words(NAMED_SIZES), lambda m: _phrase(m[0])),
    ("compatibility", re.compile(r"(?i:\b(?:compatible with|for use with|replacement for|works with|fits|for))\s+((?:[A-Z][A-Za-z&]*[\s-]+){1,2}[A-Z]{0,4}\d+[A-Za-z0-9-]*)" + _E), lambda m: m[1]),
    ("compatibility", re.compile(r"(?i:\bcompatible with)\s+([A-Z][\w-]*(?:\s+[A-Z0-9][\w-]*)?)"), lambda m: m[1]),
    ("power", re.compile(_B + r"AC[\s-]*(?:powered|power|adapter)" + _E, re.I), lambda m: "AC powered"),
    ("power", re.compile(_B + r"USB[\s-]*powered" + _E, re.I), lambda m: "USB powered"),
    ("power", re.compile(_B + r"(?:battery[\s-]*(?:powered|operated)|batter(?:y|ies))" + _E + r"(?![\s-]*free)", re.I), lambda m: "battery"),
    ("power", re.compile(_B + r"(rechargeable|electric|solar|cordless|corded|spring[\s-]*powered)" + _E, re.I), lambda m: _phrase(m[1])),
    ("noise", _words(NOISE_WORDS), lambda m: _phrase(m[0])),
    ("noise", re.compile(_B + r"\d+\s*dB[A]?" + _E), lambda m: m[0]),
    ("colour", _words(COLOURS - {"color", "colored", "colour", "coloured"}), lambda m: _phrase(m[0])),
    ("material", _words(MATERIALS), lambda m: _phrase(m[0])),
    ("feature", _words((SHOPPING_FEATURES | COMPATIBILITY | DEVICES | set(FEATURE_PHRASES)) - PRICE_WORDS - {"color", "colour"}), lambda m: _phrase(m[0])),
)
# Attributes whose whole value is the fact ("color: Midnight Blue").
_ATTRIBUTE_KINDS = {"color": "colour", "colour": "colour", "material": "material", "size": "size"}


def _extract(text: str, field: str) -> list[Fact]:
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, value_of in _RULES:
        for m in pattern.finditer(text):
            group = 1 if kind == "compatibility" else 0
            start, end = m.span(group)
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            facts.append(Fact(kind, value_of(m), field, (start, end)))
    return sorted(facts, key=lambda f: f.span)


@lru_cache(maxsize=65_536)
def item_facts(item: Item) -> tuple[Fact, ...]:
    """Every fact the item's title, attributes and description state, in that order."""
    facts = _extract(item.title, "title")
    for name, value in item.attributes:
        kind = _ATTRIBUTE_KINDS.get(name.casefold())
        if kind and value.strip():
            facts.append(Fact(kind, value.strip(), f"attribute:{name}", (0, len(value))))
        else:
            facts.extend(_extract(value, f"attribute:{name}"))
    facts.extend(_extract(item.description, "description"))
    return tuple(facts)


# --- must-haves ------------------------------------------------------------------------------------

_NOISE_STEMS = frozenset(stem(w) for w in NOISE_WORDS if " " not in w and "-" not in w)
# Words a shopper says that no record can confirm: price talk is a filter, not a feature.
_NOT_FEATURES = frozenset(s for w in PRICE_WORDS | {"color", "colour"} for s in stems(w))


def must_haves(features: Iterable[str]) -> tuple[str, ...]:
    """The shopper's features an item's record can state (price words and "color" are not)."""
    return tuple(dict.fromkeys(f for f in features if stems(f) and not set(stems(f)) <= _NOT_FEATURES))


@lru_cache(maxsize=65_536)
def _record_stems(item: Item) -> tuple[str, ...]:
    parts = [item.title, *item.categories, *(v for _, v in item.attributes), item.description]
    return tuple(stems(" . ".join(parts)))


# What a shopper states as a wish in their own words: "cross-cut", "8 sheets", "black", "quiet"
# (not a bare size such as "8.5 x 11", which search matches better than a must-have would).
_STATED_KINDS = frozenset({"capacity", "pack", "cut", "noise", "colour", "material", "power", "feature", "compatibility"})


def request_facts(text: str) -> list[Fact]:
    """The facts a shopper's message states, read by the same rules as a record (field "request")."""
    return _extract(text, "request")


def stated_features(texts: Iterable[str]) -> list[str]:
    """The facts the shopper's own phrases state ("an 8-sheet cross-cut one" -> "8 sheets",
    "cross-cut"), as feature values `has_feature` can check against an item's record."""
    found: list[str] = []
    for text in texts:
        found.extend(f.value for f in request_facts(text) if f.kind in _STATED_KINDS)
    return list(must_haves(found))


def has_feature(item: Item, feature: str) -> bool:
    """Does the item's record state `feature`: its words in the record's text, a fact's value
    ("twelve pack" meets "12 pack"), or any noise fact for a noise word ("silent" meets "quiet")?"""
    want = tuple(stems(feature))
    if not want:
        return True
    if find_seq(_record_stems(item), want):
        return True
    facts = item_facts(item)
    if len(want) == 1 and want[0] in _NOISE_STEMS and any(f.kind == "noise" for f in facts):
        return True
    return any(find_seq(stems(f.value), want) for f in facts)
