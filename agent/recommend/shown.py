"""The one view of a recommended item that leaves aisle (chat reply, API, CLI, UI, LangChain).

Every field comes from the catalog record looked up by id, except the reason and the scores;
`to_dict` is the only place the item is serialised, so every entry point shows the same fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from retrieval.catalog import Item


@dataclass
class ShownItem:
    id: str
    title: str
    brand: str
    brand_source: str  # "" = the catalog's brand field; "title" = read off the title at import (retrieval/brands.py)
    category: str
    price: float | None
    currency: str  # ISO 4217, "" when the catalog names none
    attributes: dict[str, str]  # colour, size ... as the feed gives them
    url: str  # the shop's product page: data for the caller, never rendered as a link by aisle
    image_url: str
    reason: str
    grounded: bool
    reason_source: str  # "llm" | "llm-retry" | "template" ("" when no reason was asked for)
    score: float

    @classmethod
    def of(cls, item: Item, *, reason: str, grounded: bool, reason_source: str, score: float) -> ShownItem:
        return cls(item.id, item.title, item.brand, item.brand_source, item.category, item.price, item.currency, dict(item.attributes), item.url, item.image_url, reason, grounded, reason_source, score)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
