"""What an item's own record states, as facts that point back at the words stating them.

A `Fact` is (kind, value, field, span): ("capacity", "8 sheets", "title", the span of "8-Sheet"). Rules only (the lexicon's word lists and regexes for numbers with units), no model, so
a fact is always a slice of the record (`Fact.quote`) and never a guess: the ranking of must-haves
and any reason built on facts can show the words that support them. `item_facts` caches by the
`Item` value, so an updated record is read again; on amazon-office-2014 (2,420 items, long
descriptions) extraction takes about 0.65 ms per item, 1.6 s for the catalog.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from agent.lexicon import (
    COLOURS,
    COMPATIBILITY,
    DEVICES,
    FEATURE_PHRASES,
    FILLER,
    MATERIALS,
    NAMED_SIZES,
    NOISE_WORDS,
    NUMBER_WORDS,
    PRICE_WORDS,
    SHOPPING_FEATURES,
    UNIT_WORDS,
)
from agent.text import find_seq, stem, stems
from retrieval.brands import is_non_brand, leading_span
from retrieval.catalog import Item

__all__ = ["Fact", "brand_fact", "field_text", "has_feature", "item_facts", "must_haves", "product_type", "request_facts", "same_type", "serves_other", "shared_facts", "sold_on_its_own", "stated_features"]


@dataclass(frozen=True)
class Fact:
    kind: str  # capacity | pack | cut | size | compatibility | power | noise | colour | material | feature | type | brand
    value: str  # normalised: "8 sheets", "12 pack", "cross-cut", "AC powered"
    field: str  # "title" | "description" | "attribute:<name>" | "category" | "brand"
    span: tuple[int, int]  # characters of that field's text

    def quote(self, item: Item) -> str:
        """The record's own words for this fact."""
        return field_text(item, self.field)[self.span[0] : self.span[1]]


def field_text(item: Item, field: str) -> str:
    if field.startswith("attribute:"):
        return dict(item.attributes).get(field.removeprefix("attribute:"), "")
    if field == "category":
        return item.categories[-1] if item.categories else ""
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


# --- brand -----------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def brand_fact(item: Item) -> Fact | None:
    """Who makes the item, pointing at the words that say so: the brand field, or the title's
    leading words when the import read the brand off the title (`Item.brand_source == "title"`,
    retrieval/brands.py). None when the record names no maker ("", "Generic")."""
    if is_non_brand(item.brand):
        return None
    if item.brand_source == "title":
        span = leading_span(item.title, item.brand)
        if span is not None:
            return Fact("brand", item.brand, "title", span)
    return Fact("brand", item.brand, "brand", (0, len(item.brand)))


# --- product type ----------------------------------------------------------------------------------

# A title's noun phrase ends at these: "Shredder, 8 sheet", "Stapler (Black)", "Pens with grip".
_TITLE_BREAK = re.compile(r"\s*(?:[,;|(\[]|\s[-–—]\s|\b(?:with|for|by|w/|includes?|in|featuring)\b)\s*", re.I)
_LIST_CONTINUES = re.compile(r"^\s*(?:and|or|&)\b", re.I)  # "Paper, CD, and Credit Card Shredder": one phrase
# Nouns that name a bundle of the product, not the product ("Gel Pen Set", "Cordless Phone System").
_BUNDLE_WORDS = frozenset("set sets kit kits system systems bundle combo pack packs value collection assortment replacement".split())
_NOT_TYPE = frozenset(w for w in COLOURS | MATERIALS | SHOPPING_FEATURES | NOISE_WORDS | FILLER | set(NUMBER_WORDS) if " " not in w)


def _is_type_word(word: str) -> bool:
    """A word that can name what an item is: alphabetic, no model code ("XC", "P-57Cs"), no colour or unit."""
    return word.isalpha() and len(word) >= 3 and not (word.isupper() and len(word) <= 4) and word.casefold() not in _NOT_TYPE


@lru_cache(maxsize=65_536)
def product_type(item: Item) -> Fact | None:
    """What the item is, as one noun of its record: the last word of the title's first noun phrase
    ("Fellowes 8-Sheet Cross-Cut Shredder (4601001)" -> "shredder", "Shredder Oil, 12 oz." -> "oil"),
    never the title's first word (the maker, as often as not); else its most specific category.
    The fact's span points at the word, so a reason can say where the type comes from."""
    title = item.title
    parts = [(m.start(), m.end()) for m in _TITLE_BREAK.finditer(title)]
    bounds = [0, *[x for span in parts for x in span], len(title)]
    segments = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds) - 1, 2)]
    merged: list[tuple[int, int]] = []
    for start, end in segments:
        sep = title[merged[-1][1] : start] if merged else ""
        if merged and "," in sep and _LIST_CONTINUES.match(title[start:end]):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    first_word = re.match(r"\s*(\S+)", title)
    first_end = first_word.end(1) if first_word else 0
    for start, end in merged:
        for m in reversed(list(re.finditer(r"[A-Za-z][A-Za-z0-9'-]*", title[start:end]))):
            word = m.group(0)
            a, b = start + m.start(), start + m.end()
            if b <= first_end:
                break
            if word.casefold() in _BUNDLE_WORDS or (word.casefold() in UNIT_WORDS and re.search(r"\d[\s-]*$", title[:a])):
                continue  # "Pen Set": the pen; "40 Sheets": a count ("Lubricant Sheets" are sheets)
            if _is_type_word(word):
                return Fact("type", word.casefold(), "title", (a, b))
            if word.isalpha() and not (word.isupper() and len(word) <= 4):
                break  # a colour or feature word closes the phrase: look in the next one
    if item.categories and item.categories[-1].strip():
        cat = item.categories[-1]
        return Fact("type", cat.casefold(), "category", (0, len(cat)))
    return None


def serves_other(item: Item, noun_stems: Iterable[str]) -> bool:
    """Is the item something for the asked product rather than the product: its title names the
    noun just before another product noun, at most two words apart ("Shredder Oil", "Shredder
    Lubricant Sheets" for "shredder"; "Fellowes Shredder with Oil" is a shredder)? Only when the
    type is read off the title."""
    want = set(noun_stems)
    kind = product_type(item)
    if not want or kind is None or kind.field != "title" or set(stems(kind.value)) & want:
        return False
    words = list(re.finditer(r"\S+", item.title[: kind.span[0]]))
    for back, m in enumerate(reversed(words)):
        if back > 2 or not re.fullmatch(r"[A-Za-z][A-Za-z'-]*", m.group(0)):
            return False  # far from the noun, or across a number or comma: "Binder 3 Inch Capacity"
        if set(stems(m.group(0))) & want:
            return True
    return False


def sold_on_its_own(items: Iterable[Item], noun_stems: Iterable[str]) -> bool:
    """Does the catalog sell the noun as a product of its own at least as often as things made
    for it (shredders vs shredder oil and bags)? Not ink: most of it is sold as "Ink Cartridge",
    which `serves_other` would read as made for ink."""
    want = tuple(noun_stems)
    own = made_for = 0
    for item in items:
        kind = product_type(item)
        if kind is not None and set(stems(kind.value)) & set(want):
            own += 1
        elif serves_other(item, want):
            made_for += 1
    return own >= made_for


def common_kinds(items: Iterable[Item], n: int) -> list[str]:
    """The catalog's `n` most common kinds of product, to name when a shopper asks what it has: the
    most specific category, else the title's product noun (`product_type`); "Pens" and "pen" count
    as one kind, named in its most common form."""
    counts: Counter[tuple[str, ...]] = Counter()
    forms: dict[tuple[str, ...], Counter[str]] = {}
    for item in items:
        kind = product_type(item)
        name = item.categories[-1] if item.categories else kind.value if kind is not None else ""
        key = tuple(stems(name))
        if not key or any(ch.isdigit() for ch in name):
            continue
        counts[key] += 1
        forms.setdefault(key, Counter())[name.casefold()] += 1
    return [forms[key].most_common(1)[0][0] for key, _ in counts.most_common(n)]


def same_type(item: Item, other: Item) -> bool:
    """Are the two items the same kind of product (their `product_type` nouns share a stem)?"""
    a, b = product_type(item), product_type(other)
    if a is None or b is None:
        return a is None and b is None
    return stems(a.value)[-1:] == stems(b.value)[-1:]


_SHARED_KINDS = frozenset({"cut", "capacity", "power", "noise", "material", "pack"})


def shared_facts(item: Item, liked: Item) -> list[str]:
    """What `item` has in common with `liked`, in `liked`'s fact values ("cross-cut", "8 sheets")."""
    values = dict.fromkeys(f.value for f in item_facts(liked) if f.kind in _SHARED_KINDS and f.field != "description")
    return [v for v in values if has_feature(item, v)]
