"""Load every catalog in the data folder into one typed `Item`.

Source text is messy (HTML entities, JSON-encoded lists of strings, inline CSS in descriptions).
Cleaning happens here once so that embeddings, prompts and the UI all see the same text.
A malformed row is never dropped silently: it is counted in `LoadReport` with file, row and field.
"""

from __future__ import annotations

import ast
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
        if self.description:
            parts.append(self.description[:max_description_chars])
        return "\n".join(parts)


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

    def summary(self) -> str:
        text = f"{self.catalog}: loaded {self.loaded} items ({len(self.warnings)} with warnings), rejected {len(self.rejected)}"
        for warning in self.warnings[:5]:
            text += f"\n  warning: {warning}"
        if self.rejected:
            text += "\n" + "\n".join(f"  - {e}" for e in self.rejected[:20])
            if len(self.rejected) > 20:
                text += f"\n  ... and {len(self.rejected) - 20} more"
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


def parse_price(value: Any) -> float | None:
    """'$15.99' -> 15.99; '' / None -> None; anything else unparseable raises ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = re.search(r"\d[\d,]*(?:\.\d+)?", str(value))
    if not match:
        raise ValueError(f"no number in price {value!r}")
    return float(match.group(0).replace(",", ""))


# --- loaders ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CatalogError(f"{path}: file not found. Check --data-dir / AISLE_DATA_DIR (it must point at the shared data folder).")
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). Restore the file from the source data.") from exc


def _amazon_items(path: Path, report: LoadReport, *, categories_field: bool = True) -> dict[str, Item]:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected an object mapping item id -> item, got {type(raw).__name__}")
    items: dict[str, Item] = {}
    for item_id, row in raw.items():
        if not isinstance(row, dict):
            report.rejected.append(RowError(path.name, item_id, "*", f"expected an object, got {type(row).__name__}"))
            continue
        try:
            title = clean_text(row.get("title"))
        except TypeError as exc:
            report.rejected.append(RowError(path.name, item_id, "title", str(exc)))
            continue
        try:
            description = clean_text(row.get("description"))
            brand = clean_text(row.get("brand"))
            cats_raw = row.get("categories") or ""
            if isinstance(cats_raw, list):
                cats_raw = ", ".join(map(str, cats_raw))
            cats = tuple(c.strip() for c in clean_text(cats_raw).split(",") if c.strip()) if categories_field else ()
        except TypeError as exc:
            report.rejected.append(RowError(path.name, item_id, "description/brand/categories", str(exc)))
            continue
        if not title:
            # Kept (users bought it; it is in the interactions), under a label that invents nothing.
            report.warnings.append(RowError(path.name, item_id, "title", "missing; shown as 'Untitled item'"))
            title = f"Untitled item {item_id}" + (f" ({cats[-1]})" if cats else "")
        items[str(item_id)] = Item(id=str(item_id), title=title, description=description, brand=brand, categories=cats, source=dict(row))
    return items


def load_amazon_office_2014(data_dir: Path, report: LoadReport) -> dict[str, Item]:
    return _amazon_items(data_dir / "amazon-office-2014" / "items.json", report)


def load_amazon_office_2018(data_dir: Path, report: LoadReport) -> dict[str, Item]:
    return _amazon_items(data_dir / "amazon-office-2018" / "items.json", report)


def load_mg_shopdial(data_dir: Path, report: LoadReport) -> dict[str, Item]:
    """57 priced products in 4 domains; ids are '<file stem>:<row>' (the source has none)."""
    folder = data_dir / "mg-shopdial" / "items"
    if not folder.is_dir():
        raise CatalogError(f"{folder}: folder not found. Check --data-dir / AISLE_DATA_DIR.")
    items: dict[str, Item] = {}
    for path in sorted(folder.glob("*.json")):
        rows = _read_json(path)
        if not isinstance(rows, list):
            raise CatalogError(f"{path}: expected a list of products, got {type(rows).__name__}")
        domain = path.stem.removesuffix("_items")
        domain_name = {"Cellphones_Accessories": "Cell Phones & Accessories", "Officeproducts": "Office Products", "SportsandOutdoors": "Sports & Outdoors"}.get(domain, domain)
        for i, row in enumerate(rows):
            row_id = f"{domain}:{i}"
            if not isinstance(row, dict):
                report.rejected.append(RowError(path.name, str(i), "*", "expected an object"))
                continue
            title = clean_text(row.get("name"))
            if not title:
                report.rejected.append(RowError(path.name, str(i), "name", "missing or empty"))
                continue
            try:
                price = parse_price(row.get("price"))
            except ValueError as exc:
                report.rejected.append(RowError(path.name, str(i), "price", str(exc)))
                continue
            description = " ".join(t for t in (clean_text(row.get("short_description")), clean_text(row.get("product_description"))) if t)
            brand_match = re.search(r"Brand:\s*([^:]+?)\s+(?:[A-Z][a-z]+(?: [A-Za-z]+)?:|$)", clean_text(row.get("product_description")))
            items[row_id] = Item(
                id=row_id,
                title=title,
                description=description,
                brand=brand_match.group(1).strip() if brand_match else "",
                categories=(domain_name,),
                price=price,
                source=dict(row),
            )
    return items


LOADERS: dict[str, Callable[[Path, LoadReport], dict[str, Item]]] = {
    "amazon-office-2014": load_amazon_office_2014,
    "amazon-office-2018": load_amazon_office_2018,
    "mg-shopdial": load_mg_shopdial,
}


def load_catalog(name: str, data_dir: Path) -> Catalog:
    if name not in LOADERS:
        raise CatalogError(f"unknown catalog {name!r}; choose one of: {', '.join(LOADERS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CatalogError(f"data folder {data_dir} does not exist. Pass --data-dir or set AISLE_DATA_DIR to the shared data folder (../shared/data).")
    report = LoadReport(catalog=name)
    items = LOADERS[name](data_dir, report)
    report.loaded = len(items)
    return Catalog(name=name, items=items, report=report)


def load_interactions(name: str, data_dir: Path) -> dict[str, list[str]]:
    """User -> item ids in chronological order (the last one is the leave-one-out target)."""
    if name != "amazon-office-2014":
        raise CatalogError(f"catalog {name!r} has no interaction file; use amazon-office-2014")
    path = Path(data_dir) / name / "interactions.json"
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected an object mapping user id -> list of item ids")
    out: dict[str, list[str]] = {}
    for user, seq in raw.items():
        if not isinstance(seq, list):
            raise CatalogError(f"{path}: user {user!r}: expected a list of item ids, got {type(seq).__name__}")
        out[str(user)] = [str(i) for i in seq]
    return out
