"""Presets: what aisle knows about feeds shops (and our built-in data sets) already have.

A preset is a default format, a column mapping and, where a feed needs it, a pass over the rows
before the schema sees them (Shopify's variant rows fold into their product). `--map` on the
command line still overrides a preset's mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from retrieval.catalog import CatalogError, RowError, clean_text
from retrieval.feeds.readers import Row
from retrieval.feeds.schema import ATTRIBUTE_PREFIX, WARNINGS


@dataclass(frozen=True)
class Preset:
    name: str
    help: str
    format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    category_separator: str = ">"
    rows: Callable[[Iterator[Row]], Iterator[Row]] | None = None  # reshapes the row stream


# --- Google Merchant Center -----------------------------------------------------------------------


def _merchant_rows(rows: Iterator[Row]) -> Iterator[Row]:
    """product_type is the shop's own path; google_product_category may be a numeric taxonomy id,
    which says nothing to a shopper: used only when it is text and product_type is empty."""
    for label, row in rows:
        if isinstance(row, dict):
            row = dict(row)
            gpc = str(row.pop("google_product_category", "") or "").strip()
            if not str(row.get("product_type") or "").strip() and gpc and not gpc.isdigit():
                row["product_type"] = gpc
        yield label, row


GOOGLE_MERCHANT = Preset(
    "google-merchant",
    "Google Merchant Center product data (TSV or RSS/XML): id, title, description, link, image_link, price '15.99 USD', brand, product_type / google_product_category, availability, color, size, material ...",
    format=None,
    columns={"id": "id", "title": "title", "description": "description", "url": "link", "image_url": "image_link", "price": "price", "brand": "brand", "categories": "product_type", "availability": "availability"},
    rows=_merchant_rows,
)


# --- Shopify product CSV export ------------------------------------------------------------------

_SHOPIFY_KEEP = ("Title", "Body (HTML)", "Vendor", "Type", "Product Category", "Tags", "Status")


def _shopify_rows(rows: Iterator[Row]) -> Iterator[Row]:
    """Fold each product's rows (first row: the product; further rows with the same Handle: its
    variants and extra images) into one row: lowest variant price, options as attributes, out of
    stock when every tracked variant has no stock and does not allow overselling. A variant price
    that cannot be read rejects the whole product (its lowest price would be a guess)."""
    current: dict[str, Any] | None = None
    label0 = ""
    seen: dict[str, str] = {}

    def finish(product: dict[str, Any], label: str) -> Row:
        if product.get("_bad") is not None:
            return label, product["_bad"]
        prices = product.pop("_prices")
        options: dict[str, list[str]] = product.pop("_options")
        stocks: list[bool] = product.pop("_stock")
        if prices:
            product["price"] = min(prices, key=lambda p: float(p))
        for name, values in options.items():
            product[ATTRIBUTE_PREFIX + name] = ", ".join(dict.fromkeys(values))
        status = str(product.get("Status") or "active").strip().casefold()
        product["availability"] = "in stock" if status == "active" and (not stocks or any(stocks)) else "out of stock"
        category = str(product.get("Product Category") or "").strip() or str(product.get("Type") or "").strip()
        product["category"] = category
        return label, product

    for label, row in rows:
        if isinstance(row, RowError):
            yield label, row
            continue
        handle = str(row.get("Handle") or "").strip()
        if not handle:
            yield label, RowError("", label, "Handle", "missing Handle (Shopify's product id)")
            continue
        if current is None or handle != current["Handle"]:
            if current is not None:
                yield finish(current, label0)
            if handle in seen:
                yield label, RowError("", label, "Handle", f"duplicate id: product {handle!r} already ended at row {seen[handle]}; keep a product's rows together")
                current = None
                continue
            current = {"Handle": handle, **{k: row.get(k) for k in _SHOPIFY_KEEP}, "Image Src": row.get("Image Src"), "_prices": [], "_options": {}, "_stock": []}
            label0 = label
            seen[handle] = label
        price = str(row.get("Variant Price") or "").strip()
        if price:
            try:
                float(price)
            except ValueError:
                if current.get("_bad") is None:
                    current["_bad"] = RowError("", label0, "Variant Price", f"unparseable price {price!r} (row {label}); the product is not imported")
                continue
            current["_prices"].append(price)
            qty = str(row.get("Variant Inventory Qty") or "").strip()
            tracked = str(row.get("Variant Inventory Tracker") or "").strip() or qty
            policy = str(row.get("Variant Inventory Policy") or "deny").strip().casefold()
            if tracked and qty:
                try:
                    current["_stock"].append(float(qty) > 0 or policy == "continue")
                except ValueError:
                    current["_stock"].append(True)
            for n in (1, 2, 3):
                name = str(row.get(f"Option{n} Name") or "").strip() or (current.get(f"_option{n}") or "")
                value = str(row.get(f"Option{n} Value") or "").strip()
                if name:
                    current[f"_option{n}"] = name
                if name and value and not (name == "Title" and value == "Default Title"):
                    current["_options"].setdefault(name.casefold(), []).append(value)
        if not current.get("Image Src") and row.get("Image Src"):
            current["Image Src"] = row.get("Image Src")
    if current is not None:
        yield finish(current, label0)


SHOPIFY = Preset(
    "shopify",
    "Shopify product CSV export: Handle, Title, Body (HTML), Vendor, Type / Product Category, Tags, Variant Price, Image Src; variant rows fold into their product.",
    format="csv",
    columns={"id": "Handle", "title": "Title", "description": "Body (HTML)", "brand": "Vendor", "categories": "category", "price": "price", "image_url": "Image Src", "availability": "availability"},
    attributes={"tags": "Tags"},
    rows=_shopify_rows,
)


# --- the built-in research data sets (../shared/data) --------------------------------------------


def _amazon_rows(rows: Iterator[Row]) -> Iterator[Row]:
    """Amazon review data: categories are one comma-separated path; an item without a title is
    kept (shoppers bought it) under a label that invents nothing."""
    for label, row in rows:
        if isinstance(row, dict) and not clean_text(row.get("title") if isinstance(row.get("title"), (str, list)) else None):
            cats = row.get("categories") or ""
            cats = ", ".join(map(str, cats)) if isinstance(cats, list) else str(cats)
            last = [c.strip() for c in clean_text(cats).split(",") if c.strip()]
            title = f"Untitled item {label}" + (f" ({last[-1]})" if last else "")
            row = {**row, "title": title, WARNINGS: [("title", f"missing; shown as {title!r}")]}
        yield label, row


AMAZON = Preset(
    "amazon-reviews",
    "Amazon review data items.json (object of item id -> {title, description, brand, categories}).",
    format="json",
    category_separator=",",
    rows=_amazon_rows,
)

_SHOPDIAL_DOMAINS = {"Cellphones_Accessories": "Cell Phones & Accessories", "Officeproducts": "Office Products", "SportsandOutdoors": "Sports & Outdoors"}
_SHOPDIAL_BRAND = re.compile(r"Brand:\s*([^:]+?)\s+(?:[A-Z][a-z]+(?: [A-Za-z]+)?:|$)")


def _shopdial_rows(rows: Iterator[Row]) -> Iterator[Row]:
    """MG-ShopDial's per-domain lists have no ids: '<domain>:<position>', the domain is the category."""
    for label, row in rows:
        file, _, n = label.rpartition(":")
        domain = file.removesuffix(".json").removesuffix("_items")
        if isinstance(row, dict):
            brand = _SHOPDIAL_BRAND.search(clean_text(row.get("product_description")))
            row = {
                "id": f"{domain}:{int(n) - 1}",
                "title": row.get("name"),
                "description": " ".join(t for t in (clean_text(row.get("short_description")), clean_text(row.get("product_description"))) if t),
                "brand": brand.group(1).strip() if brand else "",
                "categories": [_SHOPDIAL_DOMAINS.get(domain, domain)],
                "price": row.get("price"),
            }
        yield label, row


MG_SHOPDIAL = Preset("mg-shopdial", "MG-ShopDial items/*.json (lists of {name, price, short_description, product_description}).", format="json", rows=_shopdial_rows)

PRESETS: dict[str, Preset] = {p.name: p for p in (GOOGLE_MERCHANT, SHOPIFY, AMAZON, MG_SHOPDIAL)}


def get_preset(name: str | None) -> Preset | None:
    if name is None or name == "":
        return None
    if name not in PRESETS:
        raise CatalogError(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}")
    return PRESETS[name]
