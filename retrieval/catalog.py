"""The typed `Item` every part of aisle uses, a `Catalog` of them, and cleaning of source text.

Source text is messy (HTML entities, JSON-encoded lists of strings, inline CSS in descriptions).
Cleaning happens once, at import (retrieval/feeds), so that embeddings, prompts and the UI all see
the same text. Catalogs are imported and loaded through the registry (retrieval/registry.py).
A malformed row is never dropped silently: it is reported in `LoadReport` with file, row and field.
"""

from __future__ import annotations

import ast
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from retrieval.sanitize import sanitize


class CatalogError(ValueError):
    """A catalog file cannot be used at all (missing, not JSON, wrong top-level shape)."""


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    description: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    price: float | None = None
    currency: str = ""  # ISO 4217; "" when the feed gave none
    available: bool = True  # False: out of stock, never recommended
    availability: str = ""  # as the feed states it: in stock | out of stock | preorder | backorder; "": not stated
    url: str = ""  # product page: data, never rendered as a link
    image_url: str = ""
    attributes: tuple[tuple[str, str], ...] = ()  # (name, value), sorted by name: colour, size ...
    brand_source: str = ""  # "" = the feed's brand field; "title" = read off the title at import (retrieval/brands.py)
    # Runtime-only: text that search reads but the shopper never sees and no reason may cite
    # (generated copy not yet approved for display; see retrieval/overlay.py).
    search_text: str = ""
    # Runtime-only notes about the record (e.g. the generated-copy marker of retrieval/overlay.py).
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def category(self) -> str:
        """Most specific category (last element of the path)."""
        return self.categories[-1] if self.categories else ""

    def text(self, max_description_chars: int = 600) -> str:
        """The text that gets embedded and BM25-indexed."""
        parts = [self.title]
        if self.brand:
            parts.append(f"Brand: {self.brand}")
        if self.categories:
            parts.append("Category: " + " > ".join(self.categories))
        if self.attributes:
            parts.append("; ".join(f"{name.capitalize()}: {value}" for name, value in self.attributes))
        body = self.searchable_description
        if body:
            parts.append(body[:max_description_chars])
        return "\n".join(parts)

    @property
    def searchable_description(self) -> str:
        """The description search indexes: the catalog's, else generated copy kept for search only."""
        return self.description or self.search_text

    def attribute(self, name: str) -> str:
        return dict(self.attributes).get(name.casefold(), "")

    def to_record(self) -> dict[str, Any]:
        """The stored form (registry): only the schema's fields, empty ones left out."""
        record: dict[str, Any] = {"id": self.id, "title": self.title}
        for name in ("description", "brand", "brand_source", "currency", "availability", "url", "image_url"):
            if getattr(self, name):
                record[name] = getattr(self, name)
        if self.categories:
            record["categories"] = list(self.categories)
        if self.price is not None:
            record["price"] = self.price
        if not self.available:
            record["available"] = False
        if self.attributes:
            record["attributes"] = dict(self.attributes)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Item:
        return cls(
            id=record["id"],
            title=record["title"],
            description=record.get("description", ""),
            brand=record.get("brand", ""),
            brand_source=record.get("brand_source", ""),
            categories=tuple(record.get("categories", ())),
            price=record.get("price"),
            currency=record.get("currency", ""),
            available=record.get("available", True),
            availability=record.get("availability", ""),
            url=record.get("url", ""),
            image_url=record.get("image_url", ""),
            attributes=tuple(sorted((record.get("attributes") or {}).items())),
        )


@dataclass
class RowError:
    file: str
    row: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: field '{self.field}': {self.problem}"


@dataclass
class LoadReport:
    catalog: str
    loaded: int = 0
    rejected: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # loaded, but with a gap worth knowing

    def summary(self, show: int = 20) -> str:
        text = f"{self.catalog}: loaded {self.loaded} items ({len(self.warnings)} warnings), rejected {len(self.rejected)} rows"
        if self.warnings:
            text += "\n warnings (imported, with what the warning says dropped):"
            text += "".join(f"\n  warning: {w}" for w in self.warnings[: min(5, show)])
            if len(self.warnings) > min(5, show):
                text += f"\n  ... and {len(self.warnings) - min(5, show)} more warnings"
        if self.rejected:
            text += "\n rejected (not imported):"
            text += "".join(f"\n  rejected: {e}" for e in self.rejected[:show])
            if len(self.rejected) > show:
                text += f"\n  ... and {len(self.rejected) - show} more rejected rows"
        return text


@dataclass
class Catalog:
    name: str
    items: dict[str, Item]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def recommendable(self, item_id: str) -> bool:
        """In the catalog and in stock: the only items aisle may recommend."""
        item = self.items.get(item_id)
        return item is not None and item.available


# --- text cleaning ----------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]+>")
_CSS_BLOCK = re.compile(r"<!--.*?-->|\{[^{}]*\}", re.S)
_SPACE = re.compile(r"\s+")
_LIST_OPEN = re.compile(r"^\[\s*['\"]")
_LIST_CLOSE = re.compile(r"['\"]\s*\]$")
_LIST_SEP = re.compile(r"['\"]\s*,\s*['\"]")


def clean_text(value: Any) -> str:
    """Unescape HTML entities (twice: the data has `&amp;amp;`), decode JSON/Python-encoded lists
    of strings, strip tags and inline CSS, then `sanitize` (no links, markup or hidden characters)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return clean_text(" ".join(clean_text(v) for v in value))
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        decoded = _decode_list(text)
        if decoded is not None:
            return clean_text(decoded)
        if _LIST_OPEN.match(text):
            # A list literal with broken quoting (seen in the 2018 data): take the strings out by hand.
            return clean_text(_LIST_SEP.split(_LIST_CLOSE.sub("", _LIST_OPEN.sub("", text))))
    for _ in range(2):
        text = html.unescape(text)
    text = _CSS_BLOCK.sub(" ", text)
    text = _TAG.sub(" ", text)
    return sanitize(text)


def _decode_list(text: str) -> list[str] | None:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None
