"""Is a piece of generated text supported by the item data? A small, explainable checker.

Used on recommendation reasons (agent/reasons.py) and on generated product copy (issue #6), so
it works on plain strings: the text, and the evidence it may rely on (item title, brand,
categories, description, plus the user's own words and the titles they bought).

What counts as a claim, and when it is supported:
- brand: a known catalog brand named in the text must appear in the evidence (the item's own
  brand is in the evidence, so naming another brand is flagged);
- numbers, sizes, quantities ("12", "0.8mm", "a dozen", "two"): every number must appear in the
  evidence; model numbers ("GSF11", "CS6114") must appear there verbatim (case/punctuation aside);
- colours, materials and compatibility/feature words from a small lexicon ("red", "steel",
  "wireless", "bluetooth", "refillable") must appear in the evidence;
- product-type words ("stapler", "printer", "envelope") must appear in the evidence, so a reason
  cannot call a pen a pencil;
- price/value words ("affordable", "great value", "competitive price") must appear in the evidence
  (the catalogs mostly have no prices).

It is deliberately conservative (a word-level check, not entailment): a false "unsupported" only
costs a retry or a template reason, while a false "supported" would show the user an invented
fact. Negations ("not wireless") are flagged too when the word is not in the evidence.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# --- lexicons ------------------------------------------------------------------------------------

COLOURS = frozenset(
    """black white red blue green yellow orange purple violet pink brown grey gray silver gold golden
    beige ivory navy teal turquoise maroon burgundy tan cream bronze copper clear transparent
    translucent neon pastel multicolor multicolored color colored""".split()
)
MATERIALS = frozenset(
    """plastic metal metallic steel stainless aluminum aluminium wood wooden bamboo leather
    faux vinyl rubber silicone glass acrylic cardboard fabric nylon polyester cotton canvas
    cork foam mesh chrome brass zinc titanium magnetic ceramic""".split()
)
COMPATIBILITY = frozenset(
    """wireless bluetooth usb wifi wi-fi cordless corded rechargeable battery batteries solar
    waterproof water-resistant refillable recycled recyclable acid-free archival ergonomic adjustable
    portable foldable laser inkjet thermal digital electric electronic manual automatic
    compatible mac windows android iphone ipad dect hdmi ethernet""".split()
)
PRODUCT_TYPES = frozenset(
    """pen pencil marker highlighter crayon stapler staple printer scanner copier shredder laminator
    calculator phone telephone handset headset envelope label sticker binder folder notebook notepad
    planner calendar tape glue scissors chair lamp ink toner cartridge eraser sharpener clipboard
    whiteboard keyboard mouse cable charger paperclip organizer mailer backpack notecard postcard
    ruler cutter puncher speaker camera projector""".split()
)
# Price / value claims: the catalogs rarely state a price, so "affordable" or "great value" is a
# claim only the user's own words (or the item's text) can support.
PRICE_WORDS = frozenset(
    """price priced pricing cheap cheaper inexpensive affordable value bargain budget competitive
    discount discounted expensive luxury sale""".split()
)
# Number words a reason may use instead of digits ("one" is left out: "this one", "one of").
NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "dozen": "12", "twenty": "20",
    "hundred": "100", "thousand": "1000", "single": "1", "double": "2", "triple": "3",
}
# Letters after a number that are units/quantities, not a model number ("0.8mm", "12pk", "3rd").
UNIT_WORDS = frozenset(
    """mm cm m in inch inches ft feet yd oz lb lbs g kg ml l pk pack packs ct count pc pcs pieces
    sheet sheets gb mb tb kb ppm dpi ipm x mah v w hz khz ghz mil pt gsm st nd rd th s d k p""".split()
)
# Catalog "brands" that are not brands at all.
NON_BRANDS = frozenset({"", "generic", "unknown", "various", "compatible", "non-oem", "generic labels", "compatible/remanufactured ink", "number 1 in service"})
# Brands that are also ordinary English words: only counted when written exactly as the brand
# (capitalised) and not at the start of a sentence, where any word is capitalised.
COMMON_WORD_BRANDS = frozenset(
    {
        "academie", "adams", "altra", "apache", "array", "arrow", "aurora", "beacon", "cambridge",
        "cardinal", "clarity", "clover", "command", "cross", "double a", "duck", "eldon", "estes",
        "fisher", "integra", "max", "national", "oxford", "platinum", "premier", "royal",
        "sharp", "spectrum", "stanley", "tartan", "the classics", "tops", "trimmer", "uni",
        "universal", "welcom", "wellspring", "winsome", "wolverine",
    }
)

_SYNONYMS = {"gray": "grey", "aluminium": "aluminum", "multicolored": "multicolor", "wifi": "wi-fi", "colour": "color", "colours": "colors", "coloured": "color", "colored": "color"}

_WORD = re.compile(r"[A-Za-z][A-Za-z\-']*[A-Za-z]|[A-Za-z]")
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_ALNUM_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/.]*[A-Za-z0-9]|[A-Za-z0-9]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"'(]\s*)$")


@dataclass
class GroundingReport:
    """Result of `check_grounding`: `ok` when no claim is unsupported."""

    ok: bool
    unsupported: list[str] = field(default_factory=list)  # human-readable, one per failed claim
    checked: int = 0  # how many claims were looked at (0 = the text made no checkable claim)

    def __bool__(self) -> bool:
        return self.ok


# --- normalisation -------------------------------------------------------------------------------


def _stem(word: str) -> str:
    """Lower-case singular form, enough for 'pens' ~ 'pen', 'batteries' ~ 'battery', 'boxes' ~ 'box'."""
    w = word.lower().strip("'-")
    w = _SYNONYMS.get(w, w)
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[:-2].endswith(("s", "x", "ch", "sh", "z")):
        return w[:-2]
    if len(w) > 2 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _squash(text: str) -> str:
    """Lower-case letters and digits only: 'GSF11-Blk' -> 'gsf11blk' for model-number lookups."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _numbers(text: str) -> set[str]:
    """Every number in `text`, canonical ('1,000' -> '1000', '2.50' -> '2.5'), plus number words."""
    found: set[str] = set()
    for m in _NUMBER.finditer(text):
        found.add(_canonical_number(m.group(0)))
    for w in _WORD.findall(text):
        digit = NUMBER_WORDS.get(w.lower())
        if digit:
            found.add(digit)
    return found


def _canonical_number(raw: str) -> str:
    value = raw.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".") or "0"
    value = value.lstrip("0") or "0"
    return "0" + value if value.startswith(".") else value


def _text_numbers(text: str) -> list[str]:
    """Numbers the text claims, in order; number words only when used as a quantity."""
    out = [_canonical_number(m.group(0)) for m in _NUMBER.finditer(text)]
    for m in _WORD.finditer(text):
        w = m.group(0).lower()
        if w in NUMBER_WORDS and w not in {"single", "double", "triple"}:
            out.append(NUMBER_WORDS[w])
    return out


def _model_numbers(text: str) -> list[str]:
    """Tokens mixing letters and digits that are not just a number with a unit ('CS6114', 'GSF11-Blk')."""
    out = []
    for m in _ALNUM_TOKEN.finditer(text):
        token = m.group(0).strip(".-/")
        if not (re.search(r"\d", token) and re.search(r"[A-Za-z]", token)):
            continue
        parts = [p for p in re.split(r"[\-/.]", token) if p]
        letters = [re.sub(r"\d+", " ", p).split() for p in parts]
        # "12-pack", "0.8mm", "3rd", "8.5x11": every letter run is a unit/quantity word
        if all(all(run.lower() in UNIT_WORDS or run.lower() in NUMBER_WORDS or run.lower() in {"pack", "set"} for run in runs) for runs in letters):
            continue
        # "AT&T"-like brands and words that merely contain a hyphen and a digit-free part are fine
        out.append(token)
    return out


def _brand_key(brand: str) -> str:
    b = brand.replace("®", "").replace("™", "").strip()
    b = re.sub(r",?\s+(?:inc\.?|llc\.?|co\.?|corporation|limited)$", "", b, flags=re.I)
    return b.strip()


@lru_cache(maxsize=16)
def _brand_patterns(brands: tuple[str, ...]) -> list[tuple[str, re.Pattern[str], bool]]:
    """(display name, pattern, is_common_word) for each usable brand, longest first (so 'Uni-ball'
    wins over 'Uni')."""
    seen: dict[str, str] = {}
    for raw in brands:
        b = _brand_key(raw)
        if b.casefold() in NON_BRANDS or len(b) < 2:
            continue
        seen.setdefault(b.casefold(), b)
    out = []
    for key, b in sorted(seen.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        common = key in COMMON_WORD_BRANDS
        flags = 0 if common else re.IGNORECASE
        out.append((b, re.compile(r"(?<![\w&\-])" + re.escape(b) + r"(?![\w&])", flags), common))
    return out


def _brand_mentions(text: str, brands: Collection[str]) -> list[str]:
    taken: list[tuple[int, int]] = []
    found: list[str] = []
    for name, pattern, common in _brand_patterns(tuple(sorted(set(brands)))):
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if common and _SENTENCE_START.search(text[: m.start()]):
                continue
            taken.append((m.start(), m.end()))
            if name not in found:
                found.append(name)
    return found


def _in_text(phrase: str, text: str) -> bool:
    """Word-boundary, case-insensitive containment (also after dropping ® and punctuation)."""
    if re.search(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])", text, re.IGNORECASE):
        return True
    squashed = _squash(phrase)
    return bool(squashed) and squashed in _squash(text) and len(squashed) >= 4


# --- the check -----------------------------------------------------------------------------------


def check_grounding(text: str, evidence: Sequence[str], *, catalog_brands: Collection[str] = ()) -> GroundingReport:
    """Check every brand, number, model number, colour/material/compatibility word and product-type
    word in `text` against `evidence`. Returns `GroundingReport(ok, unsupported, checked)`.

    `catalog_brands`: every brand the catalog knows (so a different real brand can be recognised
    as a brand claim). An empty text is not grounded (there is nothing to show)."""
    if not text or not text.strip():
        return GroundingReport(ok=False, unsupported=["the text is empty"], checked=0)
    joined = "\n".join(e for e in evidence if e)
    evidence_words = {_stem(w) for w in _WORD.findall(joined)}
    evidence_numbers = _numbers(joined)
    evidence_squashed = _squash(joined)
    unsupported: list[str] = []
    checked = 0

    def flag(message: str) -> None:
        if message not in unsupported:
            unsupported.append(message)

    brand_spans: list[str] = []
    for brand in _brand_mentions(text, catalog_brands):
        checked += 1
        brand_spans.append(brand.lower())
        if not _in_text(brand, joined):
            flag(f"brand '{brand}' is not this item's brand and is not in the item data")

    for number in _text_numbers(text):
        checked += 1
        if number not in evidence_numbers:
            flag(f"number '{number}' does not appear in the item data")

    for token in _model_numbers(text):
        checked += 1
        squashed = _squash(token)
        if squashed not in evidence_squashed and not any(squashed == _squash(b) for b in brand_spans):
            flag(f"model/part number '{token}' does not appear in the item data")

    for raw in _WORD.findall(text):
        word = raw.lower()
        stem = _stem(word)
        for lexicon, what in ((COLOURS, "colour"), (MATERIALS, "material"), (COMPATIBILITY, "feature/compatibility"), (PRODUCT_TYPES, "product type"), (PRICE_WORDS, "price/value claim")):
            if word in lexicon or stem in lexicon:
                checked += 1
                if stem not in evidence_words and word not in evidence_words and _stem(_SYNONYMS.get(word, word)) not in evidence_words:
                    flag(f"{what} '{raw}' is not stated in the item data")
                break
    return GroundingReport(ok=not unsupported, unsupported=unsupported, checked=checked)


def item_evidence(item: object, *, user_texts: Iterable[str] = ()) -> list[str]:
    """Evidence strings for an item-like object (title, brand, categories, description) plus the
    user's own words / bought titles. Works with `retrieval.catalog.Item` or any object with
    those attributes."""
    parts = [getattr(item, "title", "") or "", getattr(item, "brand", "") or ""]
    parts.extend(getattr(item, "categories", ()) or ())
    parts.append(getattr(item, "description", "") or "")
    parts.extend(t for t in user_texts if t)
    return [p for p in parts if p]
