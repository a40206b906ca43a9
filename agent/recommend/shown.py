"""The one view of a recommended item that leaves aisle (chat reply, API, CLI, UI, LangChain).

Every field comes from the catalog record looked up by id, except the reason and the scores;
`to_dict` is the only place the item is serialised, so every entry point shows the same fields.
Each text field passes the text screen (retrieval/screen.py) on the way out, and a url that is
not a plain http(s) URL is left empty: a catalog imported before the screen, or a reason, never
carries an instruction, a call to action or an address to a shopper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from retrieval.catalog import Item
from retrieval.screen import display, web_url

NO_TITLE = "(untitled item)"  # every word of the title was screened out


@dataclass
class ShownItem:
    id: str
    title: str
    brand: str
    brand_source: str  # "" = the catalog's brand field; "title" = read off the title at import (retrieval/brands.py)
    category: str
    price: float | None
    currency: str  # ISO 4217, "" when the catalog names none
    availability: str  # in stock | out of stock | preorder | backorder, as the feed states it; "" when it says nothing
    attributes: dict[str, str]  # colour, size ... as the feed gives them
    url: str  # the shop's product page: data for the caller, never rendered as a link by aisle
    image_url: str
    reason: str
    grounded: bool
    reason_source: str  # "llm" | "llm-retry" | "template" ("" when no reason was asked for)
    score: float

    @classmethod
    def of(cls, item: Item, *, reason: str, grounded: bool, reason_source: str, score: float) -> ShownItem:
        attributes = {name: value for name, value in ((display(n, name=True), display(v, name=True)) for n, v in item.attributes) if name and value}
        return cls(
            item.id,
            display(item.title, name=True) or NO_TITLE,
            display(item.brand, name=True),
            item.brand_source,
            display(item.category, name=True),
            item.price,
            item.currency,
            item.availability,
            attributes,
            item.url if web_url(item.url) else "",
            item.image_url if web_url(item.image_url) else "",
            display(reason),
            grounded,
            reason_source,
            score,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
