"""aisle's one item schema, and turning a feed row into an `Item` or a reason it cannot be one.

A feed's columns reach the schema through a `FieldMap`: common column names are recognised on
their own (`name` -> title, `link` -> url, ...), `--map FIELD=COLUMN` names the rest, and a preset
(retrieval/feeds/presets.py) carries the mapping of a known export. Every problem is a `RowError`
with file, row and field, of one of two kinds (the FIELDS table says which, per field):
- rejected: the row is not imported at all, never half of it. A missing id or title, bytes that
  are not UTF-8, and a value that would mislead a shopper if it were dropped: an unparseable price,
  an unknown currency or availability (a price filter or a stock check would then be wrong).
- warning: the row is imported and the report says what was lost: a URL that is not http(s) or an
  unreadable attribute is left empty, and broken markup (a stray `<li`, a tag never closed) costs
  the markup only: the tag is dropped, the text around it and the item, with its history, are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retrieval.catalog import CatalogError, Item, RowError, clean_text
from retrieval.screen import screen, web_url

# field -> what it holds (the README's schema table is this dict)
FIELDS: dict[str, str] = {
    "id": "Unique item id (text). Required.",
    "title": "Product name. Required.",
    "description": "Free text; HTML is stripped (a broken tag is dropped with a warning, the text is kept).",
    "brand": "Brand or vendor.",
    "categories": 'A list, or one path "A > B > C" (most general first).',
    "price": 'A number, or "15.99 USD" / "$15.99" (currency inside the value). Unparseable: the row is rejected.',
    "currency": "ISO 4217 code (USD, EUR ...); overrides none given in the price. Unknown: the row is rejected.",
    "url": "Product page (http/https), kept as data: never rendered as a link. Another scheme: left empty, with a warning.",
    "image_url": "Image (http/https), kept as data. Another scheme: left empty, with a warning.",
    "availability": "in stock | out of stock | preorder | backorder (also true/false, 1/0). Out of stock is never recommended. Unknown: the row is rejected.",
    "attributes": "Free name -> value pairs (colour, size, material ...): shown, embedded, and usable as filters. Unreadable: left out, with a warning.",
}

# Column names recognised without --map (compared case-insensitively, spaces and dashes as "_").
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "item_id", "product_id", "sku", "asin"),
    "title": ("title", "name", "product_name", "item_name"),
    "description": ("description", "body", "body_html", "long_description", "product_description"),
    "brand": ("brand", "vendor", "manufacturer"),
    "categories": ("categories", "category", "category_path", "product_type", "product_category", "google_product_category"),
    "price": ("price", "list_price", "regular_price"),
    "currency": ("currency", "currency_code"),
    "url": ("url", "link", "product_url"),
    "image_url": ("image_url", "image_link", "image", "image_src"),
    "availability": ("availability", "stock_status", "in_stock", "stock"),
    "attributes": ("attributes",),
}
# Columns that become attributes without --map.
ATTRIBUTE_COLUMNS: dict[str, str] = {
    "color": "colour", "colour": "colour", "size": "size", "material": "material", "pattern": "pattern",
    "gender": "gender", "age_group": "age group", "style": "style", "condition": "condition",
}

AVAILABILITY: dict[str, bool] = {
    "in stock": True, "in_stock": True, "instock": True, "available": True, "yes": True, "true": True, "1": True,
    "preorder": True, "pre-order": True, "backorder": True, "back order": True, "limited availability": True,
    "out of stock": False, "out_of_stock": False, "outofstock": False, "sold out": False, "discontinued": False,
    "no": False, "false": False, "0": False,
}
STOCK_STATES = {"preorder": "preorder", "pre order": "preorder", "backorder": "backorder", "back order": "backorder"}  # the rest: in stock
CURRENCY_SYMBOLS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "C$": "CAD", "A$": "AUD", "CHF": "CHF"}

MAX_ATTRIBUTE_CHARS = 80
# Keys a preset's row pass may add: "attr:NAME" columns are attributes; WARNINGS lists
# (field, problem) pairs the preset fixed on its own (the row is kept, the fix is reported).
ATTRIBUTE_PREFIX = "attr:"
WARNINGS = "_warnings"
_PRICE = re.compile(r"^\s*(?P<pre>[A-Za-z]{3}|[A-Z]{0,2}[$€£¥₹])?\s*(?P<num>-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?))\s*(?P<post>[A-Za-z]{3}|[$€£¥₹])?\s*$")
# A tag that opens and never closes: "<b class=x" then another tag or the end of the text.
_BROKEN_TAG = re.compile(r"<[a-zA-Z/!][^<>]*(?=<|$)")
# The markup part of such a tag: its name (or "<![endif]", "<!--") and name=value pairs; the words
# after it are text ("<li Smooth writing" keeps "Smooth writing").
_TAG_OPENER = re.compile(r"""<(?:!(?:--|\[[^\]\s<>]*\]?|[a-zA-Z]*)|/?[a-zA-Z][\w:.-]*)(?:\s+[\w:.-]+\s*=\s*(?:"[^"<>]*"?|'[^'<>]*'?|[^\s<>"']*))*\s*/?""")


def key(column: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(column).strip()).casefold()


def known_currency(code: str) -> bool:
    import pycountry

    return pycountry.currencies.get(alpha_3=code.upper()) is not None


@dataclass
class FieldMap:
    """Schema field -> source column; `attributes`: attribute name -> source column."""

    columns: dict[str, str] = field(default_factory=dict)  # from --map: must exist in the feed
    attributes: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)  # from a preset: used when present
    category_separator: str = ">"
    default_currency: str = ""

    @classmethod
    def parse(cls, pairs: list[str] | tuple[str, ...], **kwargs: Any) -> FieldMap:
        """`["title=Product Name", "attributes.colour=Colour"]` -> FieldMap (bad pairs raise CatalogError)."""
        fmap = cls(**kwargs)
        for pair in pairs:
            name, sep, column = pair.partition("=")
            name, column = name.strip(), column.strip()
            if not sep or not name or not column:
                raise CatalogError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. --map title='Product Name'")
            if name.startswith(("attributes.", "attribute.", "attr.")):
                fmap.attributes[name.split(".", 1)[1].casefold()] = column
            elif name in FIELDS:
                fmap.columns[name] = column
            else:
                raise CatalogError(f"--map {pair!r}: unknown field {name!r}; fields are {', '.join(FIELDS)}, or attributes.NAME")
        return fmap

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "attributes": self.attributes, "category_separator": self.category_separator, "default_currency": self.default_currency}

    def resolve(self, header: list[str], source: str, *, strict: bool = True) -> dict[str, Any]:
        """Field -> the header's own column name. `strict` (the first row): a --map column that is
        not there is an error for the whole feed. Rows of JSON feeds may leave keys out, so later
        rows resolve with strict=False; a row with no id or title column is rejected by `normalize`."""
        by_key = {key(c): c for c in header}
        out: dict[str, Any] = {}
        for name in FIELDS:
            wanted = self.columns.get(name)
            if wanted is not None:
                if wanted not in header and key(wanted) not in by_key:
                    if strict:
                        raise CatalogError(f"{source}: --map {name}={wanted}: no column {wanted!r}; the columns are: {', '.join(header)}")
                    continue
                out[name] = wanted if wanted in header else by_key[key(wanted)]
                continue
            hint = self.hints.get(name)
            if hint is not None and (hint in header or key(hint) in by_key):
                out[name] = hint if hint in header else by_key[key(hint)]
                continue
            for alias in ALIASES[name]:
                if alias in by_key:
                    out[name] = by_key[alias]
                    break
        attrs: dict[str, str] = {}
        used = set(out.values())
        for column in header:
            name = ATTRIBUTE_COLUMNS.get(key(column))
            if name and column not in used:
                attrs.setdefault(name, column)
        for name, wanted in self.attributes.items():
            if wanted not in header and key(wanted) not in by_key:
                if strict:
                    raise CatalogError(f"{source}: --map attributes.{name}={wanted}: no column {wanted!r}; the columns are: {', '.join(header)}")
                continue
            attrs[name] = wanted if wanted in header else by_key[key(wanted)]
        out["_attributes"] = attrs
        return out


@dataclass
class RowResult:
    item: Item | None
    rejected: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    item_id: str = ""  # known even when the row is rejected: the report names its events


def normalize(row: Mapping[str, Any], columns: dict[str, Any], fmap: FieldMap, file: str, label: str) -> RowResult:
    """One feed row -> an Item, or the reasons it was rejected (`columns` from `FieldMap.resolve`)."""
    out = RowResult(None)

    def reject(name: str, problem: str) -> RowResult:
        out.rejected.append(RowError(file, label, name, problem))
        return out

    def warn(name: str, problem: str) -> None:
        out.warnings.append(RowError(file, label, name, problem))

    def raw(name: str) -> Any:
        column = columns.get(name)
        return row.get(column) if column is not None else None

    for name, problem in row.get(WARNINGS) or ():
        warn(name, problem)
    for column, value in row.items():
        bad = _bad_bytes(value)
        if bad:
            return reject(str(column), f"not UTF-8 text (byte {bad}); save the file as UTF-8 and import again")

    for name in ("id", "title"):
        if name not in columns:
            return reject(name, f"no {name} column (looked for {', '.join(ALIASES[name])}); name it with --map {name}=COLUMN. This row has: {', '.join(map(str, row))[:200]}")
    item_id = raw("id")
    item_id = "" if item_id is None else str(item_id).strip()
    if not item_id:
        return reject("id", "missing id")
    if len(item_id) > 256:
        return reject("id", f"id longer than 256 characters ({len(item_id)})")
    out.item_id = item_id
    texts: dict[str, str] = {}
    for name in ("title", "description", "brand"):
        value, broken = drop_broken_tags(raw(name))
        if broken:
            warn(name, f"broken HTML: the tag {broken[:30]!r} is never closed; the tag is dropped, the text kept")
        try:
            texts[name] = _screened(name, clean_text(value if value is None or isinstance(value, (str, list)) else str(value)), warn)
        except TypeError as exc:
            return reject(name, str(exc))
    if not texts["title"]:
        left_out = [w.problem for w in out.warnings if w.field == "title"]
        return reject("title", "missing title" if not left_out else f"nothing of the title may be shown ({left_out[0]}); write the product's name")

    categories = tuple(c for c in (_screened("categories", c, warn) for c in _categories(raw("categories"), fmap.category_separator)) if c)

    currency = str(raw("currency") or "").strip().upper()
    if currency and not known_currency(currency):
        return reject("currency", f"unknown currency {currency!r}; use an ISO 4217 code such as USD or EUR")
    price = None
    value = raw("price")
    if value not in (None, ""):
        try:
            price, in_value = parse_money(value)
        except ValueError as exc:
            return reject("price", str(exc))
        if in_value and currency and in_value != currency:
            return reject("price", f"price says {in_value} but the currency column says {currency}")
        currency = currency or in_value
    if price is not None and not currency:
        currency = fmap.default_currency

    available, availability = True, ""
    value = raw("availability")
    if value not in (None, ""):
        key = str(value).strip().casefold().replace("-", " ") if not isinstance(value, bool) else str(value).casefold()
        flag = AVAILABILITY.get(key)
        if flag is None:
            key = str(value).strip().casefold()
            flag = AVAILABILITY.get(key)
        if flag is None:
            return reject("availability", f"unknown availability {value!r}; use in stock, out of stock, preorder or backorder")
        available = flag
        availability = "out of stock" if not flag else STOCK_STATES.get(key.replace("-", " "), "in stock")

    links: dict[str, str] = {}
    for name in ("url", "image_url"):
        value = str(raw(name) or "").strip()
        if value and not web_url(value):
            warn(name, f"not a plain http(s) URL ({value[:40]!r}); left empty")
            value = ""
        links[name] = value

    attributes: dict[str, str] = {}
    extra = raw("attributes")
    if isinstance(extra, str) and extra.strip().startswith("{"):
        import json

        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            warn("attributes", "not a JSON object; ignored")
            extra = None
    if isinstance(extra, Mapping):
        pairs = list(extra.items())
    elif extra not in (None, ""):
        warn("attributes", f"expected an object of name -> value, got {type(extra).__name__}; ignored")
        pairs = []
    else:
        pairs = []
    pairs += [(name, row.get(column)) for name, column in columns.get("_attributes", {}).items()]
    pairs += [(str(column)[len(ATTRIBUTE_PREFIX) :], value) for column, value in row.items() if str(column).startswith(ATTRIBUTE_PREFIX)]
    for name, value in pairs:
        if value in (None, "") or isinstance(value, (dict, list)):
            continue
        text = _screened(f"attributes.{name}", clean_text(str(value)), warn)
        name = _screened("attributes", clean_text(str(name)), warn).casefold()
        if not text or not name:
            continue
        if len(text) > MAX_ATTRIBUTE_CHARS:
            warn(f"attributes.{name}", f"longer than {MAX_ATTRIBUTE_CHARS} characters; left out")
            continue
        attributes[name] = text

    out.item = Item(
        id=item_id,
        title=texts["title"],
        description=texts["description"],
        brand=texts["brand"],
        categories=categories,
        price=price,
        currency=currency,
        available=available,
        availability=availability,
        url=links["url"],
        image_url=links["image_url"],
        attributes=tuple(sorted(attributes.items())),
    )
    return out


def drop_broken_tags(value: Any) -> tuple[Any, str]:
    """`value` (text, or a list of texts) without the markup of tags that never close, and the
    first such tag ("" when none). Stripping tags later would otherwise take every word up to the
    next ">" or the end of the text with them."""
    found: list[str] = []

    def cut(match: re.Match[str]) -> str:
        opener = _TAG_OPENER.match(match.group(0))
        end = opener.end() if opener else 1
        found.append(match.group(0)[:end].strip())
        return " " + match.group(0)[end:]

    if isinstance(value, str):
        value = _BROKEN_TAG.sub(cut, value)
    elif isinstance(value, list):
        value = [_BROKEN_TAG.sub(cut, v) if isinstance(v, str) else v for v in value]
    return value, found[0] if found else ""


def parse_money(value: Any) -> tuple[float, str]:
    """15.99 / "15.99" / "15.99 USD" / "$15.99" / "USD 1,299.00" -> (price, currency or "")."""
    if isinstance(value, bool):
        raise ValueError(f"unparseable price {value!r}")
    if isinstance(value, (int, float)):
        number, currency = float(value), ""
    else:
        match = _PRICE.match(str(value))
        if not match:
            raise ValueError(f"unparseable price {str(value)[:40]!r}; expected a number such as 15.99, '15.99 USD' or '$15.99'")
        digits = match.group("num")
        # "1,299.50" and "1,299": thousands; "12,50" (one or two digits after the comma): a decimal comma.
        decimal_comma = "." not in digits and "," in digits and len(digits.rsplit(",", 1)[1]) <= 2
        number = float(digits.replace(",", ".") if decimal_comma else digits.replace(",", ""))
        tags = [t for t in (match.group("pre"), match.group("post")) if t]
        if len(tags) > 1:
            raise ValueError(f"unparseable price {value!r}: two currencies")
        currency = ""
        if tags:
            tag = tags[0]
            currency = CURRENCY_SYMBOLS.get(tag) or tag.upper()
            if not known_currency(currency):
                raise ValueError(f"unknown currency {tag!r} in price {value!r}; use an ISO 4217 code such as USD or EUR")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"unparseable price {value!r}")
    if number < 0:
        raise ValueError(f"negative price {value!r}")
    return number, currency


def _categories(value: Any, separator: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, (list, tuple)):
        parts = [clean_text(str(v)) for v in value]
    else:
        text = clean_text(str(value))
        sep = ">" if ">" in text else separator
        parts = text.split(sep) if sep else [text]
    return tuple(p.strip() for p in parts if p.strip())


def _screened(name: str, text: str, warn: Any) -> str:
    """`text` without the segments the text screen (retrieval/screen.py) drops, each one reported."""
    result = screen(text, name=name != "description")
    for segment, problems in result.dropped:
        warn(name, f"left out {segment[:60]!r}: {'; '.join(problems)}")
    return result.text


def _bad_bytes(value: Any) -> str:
    """The first undecodable byte of a text read with surrogateescape, as "0xE9"; "" when clean."""
    if not isinstance(value, str):
        return ""
    for ch in value:
        if "\udc80" <= ch <= "\udcff":
            return f"0x{ord(ch) - 0xDC00:02X}"
    return ""
