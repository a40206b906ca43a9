"""A catalog's vocabulary: the brands and categories a message may name.

The rules match a message only against what the catalog holds, so a brand the shop does not
carry ("Acme") or a category it does not have is never a filter. Brands that are also ordinary
words ("Universal", "Cross", "Command") come from `agent.lexicon.ordinary_word_brands`, the one
list of brand-like words, so the dialogue and the checkers agree on them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent.lexicon import is_non_brand, ordinary_word_brands
from agent.text import find_seq, stem, stems, tokens
from retrieval.catalog import Catalog, Item

# Category-name parts too vague to mean a product type on their own ("Office & School Supplies").
VAGUE_CATEGORY_STEMS = frozenset(
    stem(w)
    for w in """accessory supply product equipment system material other item and office school general misc
    miscellaneous organizer holder dispenser s""".split()
)
GENERIC_CATEGORY_SHARE = 0.25  # in a big catalog, a category holding more than this share is no filter
MIN_CATEGORY_ITEMS = 3  # ... and one with fewer items is too narrow to be what a shopper means
BIG_CATALOG = 100  # items; the two limits above apply only above this size
_CATEGORY_PARTS = re.compile(r"\s*(?:&|,|/|\band\b)\s*")


@dataclass
class CatalogVocab:
    """What the rules may match a message against: the catalog's own brands and categories."""

    name: str
    brands: dict[tuple[str, ...], str]  # token sequence -> canonical brand
    brand_joined: dict[str, str]  # "postit" -> "Post-It" (people drop the hyphen)
    ambiguous_brands: set[str]  # canonical brands that are also ordinary words ("Universal")
    categories: dict[tuple[str, ...], str]  # stemmed alias -> the biggest category having it
    category_forms: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]]  # stemmed alias -> (category, its words as written), biggest first
    parents: dict[str, str]  # category -> its most common parent in the item paths (for widening)
    word_stems: frozenset[str]  # every word stem in the catalog's text ("is 'couch' a word here at all?")
    has_prices: bool
    n_items: int

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> CatalogVocab:
        items = list(catalog.items.values())
        brand_count = Counter(it.brand for it in items if not is_non_brand(it.brand))
        brands: dict[tuple[str, ...], str] = {}
        joined: dict[str, str] = {}
        for brand, _ in brand_count.most_common():  # most common first: it wins a key collision
            toks = tuple(tokens(brand))
            if not toks:
                continue
            brands.setdefault(toks, brand)
            flat = "".join(toks)
            if len(toks) > 1 and len(flat) >= 4:
                joined.setdefault(flat, brand)
        ambiguous = ordinary_word_brands(set(brands.values()), (it.description for it in items))
        sizes = Counter(c for it in items for c in set(it.categories))
        limit = GENERIC_CATEGORY_SHARE * max(len(items), 1)
        big = len(items) > BIG_CATALOG
        forms = _category_aliases(sizes, limit if big else None)
        return cls(
            name=catalog.name,
            brands=brands,
            brand_joined=joined,
            ambiguous_brands=ambiguous,
            categories={alias: found[0][0] for alias, found in forms.items()},
            category_forms=forms,
            parents=_parents(items, sizes, limit if big else None),
            word_stems=frozenset(w for it in items for w in stems(it.title + " " + " ".join(it.categories) + " " + it.description[:3000])),
            has_prices=any(it.price is not None for it in items),
            n_items=len(items),
        )

    def brand_family(self, brand: str) -> list[str]:
        """The catalog brands that contain `brand` as words: "Swingline" -> Swingline, Swingline GBC."""
        key = tuple(tokens(brand))
        if not key:
            return []
        family = [b for toks, b in self.brands.items() if find_seq(toks, key)]
        return family or [brand]

    def canonical_brand(self, text: str) -> str | None:
        toks = tuple(tokens(text))
        return self.brands.get(toks) or self.brand_joined.get("".join(toks))

    def category_of(self, words: Sequence[str]) -> str | None:
        """The category these words name (as typed, case-folded), if any: the biggest category
        whose name has the same stems written as the same nouns (see `same_noun`)."""
        for cat, forms in self.category_forms.get(tuple(stem(w) for w in words), ()):
            if all(same_noun(w, f) for w, f in zip(words, forms)):
                return cat
        return None

    def canonical_category(self, text: str) -> str | None:
        return self.category_of(tokens(text))


def same_noun(word: str, form: str) -> bool:
    """Are two words of the same stem the same noun, singular or plural ("staplers" ~ "Stapler",
    "batteries" ~ "Battery", "phone" ~ "Telephones" by synonym)?

    Snowball also joins a noun to its verb and adjective forms ("cutting" ~ "cut", "lighting" ~
    "light", "erasable" ~ "eraser"); a "cross-cut shredder" is no cutting device and "a light
    stapler" is no lighting, so a category word must differ from the message word by a plural
    ending at most. Words that share no prefix are equal by synonym only and always match."""
    if word == form:
        return True
    n = len(os.path.commonprefix([word, form]))
    return n == 0 or (word[n:] in _NUMBER_ENDINGS and form[n:] in _NUMBER_ENDINGS)


_NUMBER_ENDINGS = frozenset({"", "s", "es", "y", "ies"})


def _category_aliases(sizes: Counter[str], limit: float | None) -> dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]]:
    """Stemmed alias -> [(category, the alias's words as written there)], biggest category first.

    An alias is a category's name or a part of it ("Staplers" in "Staplers & Punches"); the
    biggest category having it wins: "phone" means telephones in general, not a 1-item
    "VoIP > Phones". With a `limit`, categories above it (no filter at all) or under
    MIN_CATEGORY_ITEMS (too narrow) are left out."""
    found: dict[tuple[str, ...], list[tuple[int, str, tuple[str, ...]]]] = {}
    for cat, size in sizes.items():
        if limit is not None and (size > limit or size < MIN_CATEGORY_ITEMS):
            continue
        written = {tuple(tokens(cat))} | {tuple(tokens(part)) for part in _CATEGORY_PARTS.split(cat)}
        for words in written:
            alias = tuple(stem(w) for w in words)
            if not alias or (len(alias) == 1 and alias[0] in VAGUE_CATEGORY_STEMS):
                continue
            found.setdefault(alias, []).append((size, cat, words))
    return {alias: [(cat, words) for _, cat, words in sorted(entries, key=lambda e: -e[0])] for alias, entries in found.items()}


def _parents(items: list[Item], sizes: Counter[str], limit: float | None) -> dict[str, str]:
    """Category -> its most common parent in the item paths, unless that parent is too generic to filter on."""
    parent_count: Counter[tuple[str, str]] = Counter()
    for it in items:
        for parent, child in zip(it.categories, it.categories[1:]):
            parent_count[(child, parent)] += 1
    parents: dict[str, str] = {}
    for (child, parent), _ in parent_count.most_common():
        if limit is None or sizes[parent] <= limit:
            parents.setdefault(child, parent)
    return parents
