"""Brand names: which catalog brands name nobody, which are also everyday words, and the brand a
title starts with when the record's brand field is empty.

Feeds leave the brand field empty on items whose title names the maker ("Fellowes Powershred
8-Sheet Shredder" with no brand). Without a brand such an item escapes "not Fellowes" and "by
Fellowes" and its card says no brand is listed. `TitleBrands` reads the brand off the title, by a
conservative rule: the title's leading words are a brand the catalog's brand fields name on other
items, written as a name, and neither a non-brand ("Generic") nor an everyday word ("Universal",
"Office", or any brand the catalog's descriptions write mostly in lower case). On
amazon-office-2014 this gives 358 of the 525 items without a brand (485 empty fields, 40 such as
"Generic") a brand, 20 of 20 read by hand right; on amazon-office-2018, whose feed lists a brand on
all but 9 items, 2. The import marks each with `brand_source = "title"` so every reader can say
where the brand came from.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable

__all__ = ["COMMON_WORD_BRANDS", "NON_BRANDS", "TitleBrands", "fill_staged_brands", "is_non_brand", "leading_span", "ordinary_word_brands"]

# Catalog "brands" that name nobody.
NON_BRANDS = frozenset(
    {
        "", "generic", "unknown", "various", "compatible", "non-oem", "generic labels", "n a", "n/a", "na",
        "none", "other", "unbranded", "no brand", "compatible/remanufactured ink", "number 1 in service",
    }
)

# Brands that are also everyday words: a brand only when written as a name ("Universal folders",
# not "a universal adapter"). Catalog text adds more (`ordinary_word_brands`).
COMMON_WORD_BRANDS = frozenset(
    {
        "academie", "adams", "altra", "apache", "array", "arrow", "aurora", "beacon", "cambridge",
        "cardinal", "clarity", "clover", "command", "cross", "double a", "duck", "eldon", "estes",
        "fisher", "integra", "max", "national", "oxford", "platinum", "premier", "royal",
        "sharp", "spectrum", "stanley", "tartan", "the classics", "tops", "trimmer", "uni",
        "universal", "welcom", "wellspring", "winsome", "wolverine", "compatible", "various", "smart",
        "simple", "basic", "classic", "elite", "ideal", "genuine", "original", "deluxe", "advantage",
        "staples", "office", "school",
    }
)


def is_non_brand(brand: str) -> bool:
    return brand.strip().casefold() in NON_BRANDS


def ordinary_word_brands(brands: Iterable[str], texts: Iterable[str]) -> set[str]:
    """The brands that are also ordinary words of this catalog: one-word brands written mostly in
    lower case inside its texts ("a universal adapter", "cross-cut"), plus COMMON_WORD_BRANDS.
    Names (Canon, Epson) are written capitalised and stay brands."""
    lower: Counter[str] = Counter()
    cap: Counter[str] = Counter()
    for text in texts:
        for w in set(re.findall(r"(?<![A-Za-z'])[A-Za-z]+(?![A-Za-z])", text)):
            (lower if w.islower() else cap)[w.casefold()] += 1
    out: set[str] = set()
    for brand in brands:
        key = brand.strip().casefold()
        if key in COMMON_WORD_BRANDS:
            out.add(brand)
        elif key.isalpha() and lower[key] >= 3 and lower[key] > cap[key]:
            out.add(brand)
    return out


_WORD = re.compile(r"[A-Za-z0-9]+")
MAX_BRAND_WORDS = 4  # a longer "brand" is a feed that put a title or a slogan in the field


def leading_span(title: str, brand: str) -> tuple[int, int] | None:
    """The characters of `title` that name `brand` when the title starts with it ("FELLOWES
    Powershred ..." and "Fellowes": (0, 8)), else None."""
    words = [w.casefold() for w in _WORD.findall(brand)]
    matches = list(_WORD.finditer(title[:200]))[: len(words)]
    if not words or [m.group(0).casefold() for m in matches] != words or title[: matches[0].start()].strip():
        return None
    return matches[0].start(), matches[-1].end()


class TitleBrands:
    """The brands a catalog's brand fields name, to read off titles: `of(title)` is the brand the
    title starts with (the longest match, the spelling most items use), or None."""

    def __init__(self, brands: Iterable[str], descriptions: Iterable[str] = ()) -> None:
        counts = Counter(b.strip() for b in brands if b and b.strip() and not is_non_brand(b))
        everyday = {b.casefold() for b in ordinary_word_brands(counts, descriptions)}
        self.by_words: dict[tuple[str, ...], str] = {}
        for brand, _n in counts.most_common():  # the most used spelling wins a key
            words = tuple(w.casefold() for w in _WORD.findall(brand))
            if not words or len(words) > MAX_BRAND_WORDS or brand.casefold() in everyday or brand.casefold() in COMMON_WORD_BRANDS:
                continue
            if len(words) == 1 and (len(words[0]) < 2 or words[0].isdigit()):
                continue
            self.by_words.setdefault(words, brand)
        self.longest = max((len(w) for w in self.by_words), default=0)

    def span(self, title: str) -> tuple[str, tuple[int, int]] | None:
        """(brand, the title's characters naming it) when the title starts with a known brand
        written as a name (a capital or digit in it) and goes on after it."""
        matches = list(_WORD.finditer(title[:200]))
        if not matches or title[: matches[0].start()].strip():
            return None  # the title opens with punctuation: no name to read
        for n in range(min(self.longest, len(matches) - 1), 0, -1):
            brand = self.by_words.get(tuple(m.group(0).casefold() for m in matches[:n]))
            if brand is None:
                continue
            start, end = matches[0].start(), matches[n - 1].end()
            if title[start:end].islower():
                return None  # "universal folder": a word, not a name
            return brand, (start, end)
        return None

    def of(self, title: str) -> str | None:
        found = self.span(title)
        return found[0] if found else None


def fill_staged_brands(con: sqlite3.Connection, table: str = "staged") -> int:
    """Give every staged record without a brand (or with a non-brand) the brand its title starts
    with (`TitleBrands`), marked `brand_source: "title"`; returns how many records got one. Reads the
    registry's staging table (id, data = the record as JSON, digest = sha1 of data)."""
    rows = [(item_id, json.loads(data)) for item_id, data in con.execute(f"SELECT id, data FROM {table}")]  # noqa: S608 - the registry's table
    known = TitleBrands((r.get("brand", "") for _, r in rows), (r.get("description", "") for _, r in rows))
    updates = []
    for item_id, record in rows:
        if not is_non_brand(record.get("brand", "")):
            continue
        brand = known.of(record.get("title", ""))
        if brand is None:
            continue
        record["brand"], record["brand_source"] = brand, "title"
        data = json.dumps(record, ensure_ascii=False, sort_keys=True)
        updates.append((data, hashlib.sha1(data.encode()).hexdigest(), item_id))
    con.executemany(f"UPDATE {table} SET data=?, digest=? WHERE id=?", updates)  # noqa: S608
    return len(updates)
