"""Grounding rules for generated product copy: every checkable fact must come from the item's data.

Why a copy-specific checker: product copy is published next to the product, so an invented "made
of stainless steel", "fits iPhone 15", "pack of 12" or "waterproof" is a false product claim, not
just a weak explanation. The generic `agent.grounding.check_grounding` (numbers, brands, category
words) is used as well when it is importable; the rules here add what copy needs on top:

- numbers (digits, fractions, number words, "12oz", "2x") and model codes ("CB335WN", "A4");
- materials ("stainless steel", "leather"), colors, named sizes ("letter size", "A4");
- compatibility: device/platform names and the object of "fits / compatible with / works with";
- claims and features (waterproof, eco-friendly, best-selling, rechargeable, warranty, ...);
- other catalog brands named in the copy.

A term is supported when it occurs in the evidence (title, brand, categories, attributes), compared
case-insensitively on word tokens with plural "s" ignored and hyphens treated as spaces.
Subjective words ("great", "durable", "perfect for") are deliberately not checked: they assert
nothing a shopper could later find false about the item.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

log = logging.getLogger(__name__)

# --- vocabularies -------------------------------------------------------------------------------

MATERIALS: tuple[str, ...] = (
    "stainless steel", "steel", "aluminum", "aluminium", "metal", "metallic", "iron", "brass", "copper",
    "bronze", "titanium", "chrome", "zinc", "tin", "plastic", "acrylic", "polypropylene", "polycarbonate",
    "polyethylene", "pvc", "abs", "vinyl", "nylon", "polyester", "cotton", "linen", "canvas", "wool", "felt",
    "leather", "faux leather", "pu leather", "suede", "rubber", "silicone", "foam", "wood", "wooden",
    "bamboo", "oak", "walnut", "maple", "pine", "mdf", "cork", "glass", "tempered glass", "ceramic",
    "porcelain", "marble", "granite", "stone", "cardboard", "cardstock", "card stock", "kraft", "velvet",
    "microfiber", "mesh", "fabric", "carbon fiber", "fiberglass", "gold", "silver", "platinum",
)

COLORS: tuple[str, ...] = (
    "black", "white", "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "gray", "grey",
    "beige", "ivory", "navy", "teal", "turquoise", "magenta", "cyan", "violet", "maroon", "burgundy",
    "lavender", "tan", "khaki", "charcoal", "gold", "silver", "rose gold", "clear", "transparent",
    "translucent", "neon", "pastel", "multicolor", "multi-color", "multicolored", "assorted colors",
)

NAMED_SIZES: tuple[str, ...] = (
    "letter size", "legal size", "letter-size", "legal-size", "tabloid", "ledger size", "a3", "a4", "a5", "a6",
    "b5", "executive size", "jumbo", "king size", "queen size", "twin size", "oversized", "extra large",
    "extra-large", "xl", "xxl", "mini", "pocket size", "pocket-size", "full size", "full-size", "half size",
)

# Devices / platforms a copy might claim compatibility with.
DEVICES: tuple[str, ...] = (
    "iphone", "ipad", "ipod", "macbook", "imac", "mac", "apple", "airpods", "apple watch", "samsung", "galaxy",
    "android", "windows", "linux", "chromebook", "chrome os", "kindle", "pixel", "surface", "playstation",
    "xbox", "nintendo", "switch", "alexa", "google home", "bluetooth", "usb", "usb-c", "lightning", "hdmi",
    "wifi", "wi-fi", "nfc", "mac os", "macos", "ios",
)

CLAIMS: tuple[str, ...] = (
    # environment / safety / certification
    "waterproof", "water resistant", "water-resistant", "weatherproof", "weather resistant", "fireproof",
    "fire resistant", "fire-resistant", "flame retardant", "shatterproof", "scratch resistant",
    "tear resistant", "rust proof", "rustproof", "eco friendly", "eco-friendly", "environmentally friendly",
    "green", "sustainable", "recycled", "recyclable", "biodegradable", "compostable", "organic", "non toxic",
    "non-toxic", "nontoxic", "bpa free", "bpa-free", "acid free", "acid-free", "lignin free", "archival",
    "hypoallergenic", "antibacterial", "antimicrobial", "food safe", "dishwasher safe", "dishwasher", "microwave safe",
    "certified", "fda", "ul listed", "energy star", "fsc", "ce certified", "approved", "patented", "patent",
    # popularity / ranking / origin / warranty
    "best selling", "best-selling", "bestseller", "best seller", "bestselling", "#1", "number one",
    "top rated", "top-rated", "award winning", "award-winning", "most popular", "customer favorite",
    "guaranteed", "guarantee", "warranty", "lifetime", "money back", "made in usa", "made in the usa",
    "made in america", "made in china", "made in germany", "made in japan", "handmade", "hand made",
    # features
    "rechargeable", "battery", "batteries", "battery powered", "cordless", "wireless", "electric",
    "automatic", "solar", "magnetic", "refillable", "reusable", "washable", "erasable", "adjustable",
    "foldable", "collapsible", "lockable", "heavy duty", "heavy-duty", "industrial", "commercial grade",
    "professional grade", "ergonomic", "non slip", "non-slip", "anti slip", "smudge proof", "smear proof",
    "fade resistant", "quick drying", "quick-drying", "permanent", "odorless", "low odor", "unscented",
    "scented", "self adhesive", "self-adhesive", "glow in the dark", "led",
    # variants and proof claims
    "variety of sizes", "variety of colors", "variety of colours", "different sizes", "different colors",
    "different colours", "all sizes", "many colors", "many colours", "clinically proven", "proven",
    "scientifically", "doctor recommended", "dermatologist", "tested", "lab tested", "safe for kids",
    "child safe", "kid safe", "leading manufacturer", "leading brand", "market leader", "industry leading",
    "industry-leading", "world class", "world-class", "renowned", "world famous", "trusted by",
)

# "fits X" / "compatible with X": words after the cue that need no support.
_COMPAT_CUES = re.compile(
    r"\b(?:compatible with|works with|work with|fits|for use with|designed for use with|pairs with)[ \t]+((?:[\w+\-/]+(?:\.\d+)?[ \t]*){1,4})",
    re.IGNORECASE,
)
_COMPAT_FILLER = frozenset(
    """a an the your you any all most many standard other every its their our this these those and or with
    in on of to for most common popular various different modern small large everyday home office school
    desk desks hand hands pocket pockets bag bags purse wallet needs need life style space spaces table
    tables wall walls kids children adults people users user everyone anyone work use just easily perfectly
    neatly snugly well nicely right comfortably securely into inside""".split()
)

NUMBER_WORDS: dict[str, int] = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "hundred": 100, "thousand": 1000, "dozen": 12, "double": 2, "triple": 3, "twin": 2,
}
# Only in evidence: words that imply a count without being one the copy would state as a number.
_EVIDENCE_ONLY_NUMBERS: dict[str, int] = {"one": 1, "single": 1, "pair": 2, "pairs": 2, "dual": 2, "half": 2}

# Unit suffixes glued to a number ("12oz", "0.7mm", "2x"): the number is checked, not the unit.
_UNIT_SUFFIX = re.compile(
    r"^(\d+(?:\.\d+)?)(x|mm|cm|m|in|inch|inches|ft|oz|lb|lbs|g|kg|ml|l|pk|pc|pcs|ct|gb|tb|mb|w|v|mah|pt|gsm|lb\.?|st|nd|rd|th|s|k)$",
    re.IGNORECASE,
)
_NUM_TOKEN = re.compile(
    r"(?<![\w.])(\d+)\s*[- ]\s*(\d+)/(\d+)(?![\w/])"  # 8-1/2, 8 1/2
    r"|(?<![\w./])(\d+)/(\d+)(?![\w/])"  # 1/2
    r"|(?<![\w])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?=[a-zA-Z]*\b)",  # 1,000 / 8.5 / 12 (also in 12oz)
)
_WORD = re.compile(r"[a-z0-9#]+(?:[.+][a-z0-9]+)*", re.IGNORECASE)
_CODE = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Za-z])(?=[A-Za-z0-9-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")


@dataclass
class CopyCheckReport:
    """Same shape as `agent.grounding.GroundingReport` (ok, unsupported) plus which rule flagged what."""

    ok: bool
    unsupported: list[str] = field(default_factory=list)
    checkers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "unsupported": list(self.unsupported), "checkers": list(self.checkers)}


# --- normalisation ------------------------------------------------------------------------------


def _stem(word: str) -> str:
    """Crude singular: 'pens' -> 'pen', 'boxes' -> 'box', 'glasses' -> 'glass'; 'glass' stays."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _tokens(text: str) -> list[str]:
    return [_stem(w.lower()) for w in _WORD.findall(text.replace("-", " ").replace("/", " "))]


def _contains_phrase(haystack: list[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    if n == 0:
        return True
    first = phrase[0]
    return any(haystack[i] == first and haystack[i : i + n] == list(phrase) for i in range(len(haystack) - n + 1))


def _numbers(text: str, *, evidence: bool) -> list[tuple[Fraction, str]]:
    """(value, surface) for every number in the text, digits and number words."""
    text = re.sub(r"(\d)[xX](?=\d)", r"\1 x ", text)  # "9x12" -> "9 x 12"
    found: list[tuple[Fraction, str]] = []
    for m in _NUM_TOKEN.finditer(text):
        if m.group(1):
            value = int(m.group(1)) + Fraction(int(m.group(2)), max(1, int(m.group(3))))
        elif m.group(4):
            value = Fraction(int(m.group(4)), max(1, int(m.group(5))))
            if evidence:  # "9/12" in a title may be a size or a ratio: keep both parts too
                found.append((Fraction(int(m.group(4))), m.group(4)))
                found.append((Fraction(int(m.group(5))), m.group(5)))
        else:
            value = Fraction(m.group(6).replace(",", ""))
        found.append((value, m.group(0)))
    words = dict(NUMBER_WORDS)
    if evidence:
        words.update(_EVIDENCE_ONLY_NUMBERS)
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in words:
            found.append((Fraction(words[w]), w))
    return found


def _context(text: str, surface: str, before: int = 2) -> str:
    """'pack of 12' for surface '12': a few words before the term, for a readable problem list."""
    m = re.search(rf"(?<![\w.]){re.escape(surface)}(?![\d])", text, re.IGNORECASE)
    if m is None:
        return surface
    idx = m.start()
    head = text[:idx].split()[-before:]
    tail = text[idx + len(surface) :].split()[:1]
    unit = tail[0].strip(".,;:!?") if tail and re.fullmatch(r"[A-Za-z\"']{1,8}[.,;:!?]?", tail[0]) else ""
    return " ".join([*head, surface, unit]).strip(" ,.;:")


# --- the checker --------------------------------------------------------------------------------


def check_copy(
    text: str,
    evidence: Sequence[str],
    *,
    catalog_brands: Collection[str] = (),
    use_grounding: bool = True,
) -> CopyCheckReport:
    """Flag every checkable fact in `text` that `evidence` does not state.

    Builds on `agent.grounding.check_grounding` when it is importable (numbers, model numbers,
    brands, colours, materials, feature and product-type words) and adds the copy rules (claims,
    named sizes, devices, "fits X", multi-word materials). Without it, this module's own number,
    code, material and colour rules stand in. `catalog_brands`: brand names of the whole catalog
    (pass distinctive ones, see `distinctive_brands`: "Cross" or "Plus" are also ordinary words).
    """
    ev_text = "\n".join(e for e in evidence if e)
    ev_tokens = _tokens(ev_text)
    ev_token_set = set(ev_tokens)
    ev_numbers = {v for v, _ in _numbers(ev_text, evidence=True)}
    problems: list[str] = []
    flagged: set[str] = set()  # stemmed words already reported (no second message for "steel")
    checkers = ["copy_check"]

    def add(problem: str, term: str) -> None:
        if problem not in problems:
            problems.append(problem)
        flagged.update(_tokens(term))

    if not text or not text.strip():
        return CopyCheckReport(ok=False, unsupported=["the copy is empty"], checkers=checkers)

    generic = _generic_grounding(text, evidence, catalog_brands) if use_grounding else None
    if generic is not None:
        checkers.append("grounding")
        for problem in generic:
            m = re.search(r"'([^']+)'", problem)
            term = m.group(1) if m else ""
            if problem.startswith("number ") and term and _supported_number(term, ev_numbers):
                continue  # e.g. "8.5" against "8-1/2": the generic checker reads fractions as 3 numbers
            add(problem, term)
    else:
        _base_rules(text, ev_text, ev_tokens, ev_numbers, add, catalog_brands, flagged)
    _code_rule(text, ev_text, add, flagged)

    text_tokens = _tokens(text)

    def vocab_rule(kind: str, vocab: Iterable[str]) -> None:
        # Longest phrases first, so "stainless steel" is reported once, not also as "steel".
        covered: set[int] = set()
        for term in sorted(set(vocab), key=lambda t: -len(_tokens(t))):
            phrase = _tokens(term)
            n = len(phrase)
            for i in range(len(text_tokens) - n + 1):
                if text_tokens[i : i + n] != phrase or covered & set(range(i, i + n)):
                    continue
                covered.update(range(i, i + n))
                if not _contains_phrase(ev_tokens, phrase) and not set(phrase) <= flagged:
                    add(f'{kind} "{term}" is not stated in the item data', term)

    vocab_rule("material", MATERIALS)
    vocab_rule("size", NAMED_SIZES)
    vocab_rule("compatibility", DEVICES)
    vocab_rule("claim", CLAIMS)

    # "fits X" / "compatible with X": the named thing X must be in the evidence.
    for m in _COMPAT_CUES.finditer(text):
        obj_words = [w for w in _tokens(m.group(1)) if w not in _COMPAT_FILLER and not w.isdigit()]
        missing = [w for w in obj_words[:3] if w not in ev_token_set]
        named = re.search(r"\b[A-Z][\w-]*|\d", m.group(1))  # a proper name or model, not "fits most desks"
        if missing and named:
            phrase = m.group(0).strip(" .,;:")
            add(f'compatibility "{phrase}" is not stated in the item data', " ".join(missing))

    return CopyCheckReport(ok=not problems, unsupported=problems, checkers=checkers)


def _supported_number(raw: str, ev_numbers: set[Fraction]) -> bool:
    try:
        return Fraction(raw.replace(",", "")) in ev_numbers
    except (ValueError, ZeroDivisionError):
        return False


def _code_rule(text: str, ev_text: str, add: Callable[[str, str], None], flagged: set[str]) -> None:
    """Model codes ("CB335WN", "300RT") must match a whole code of the evidence: "300R" is a
    different product than "300RT" even though it is a substring of it."""
    ev_codes = {c.lower().replace("-", "") for c in _CODE.findall(ev_text)}
    ev_words = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", ev_text)}
    for m in _CODE.finditer(text):
        code = m.group(0)
        key = code.lower().replace("-", "")
        if _UNIT_SUFFIX.match(code) or key in ev_codes or key in ev_words or key in flagged:
            continue
        if all(_UNIT_SUFFIX.match(part) or part.isalpha() or part.isdigit() for part in re.split(r"[-xX]", code) if part):
            continue  # "100-sheet", "2-pack", "9x12": the numbers themselves are checked
        add(f'model code "{code}" does not appear in the item data', code)


def _base_rules(
    text: str,
    ev_text: str,
    ev_tokens: list[str],
    ev_numbers: set[Fraction],
    add: Callable[[str, str], None],
    catalog_brands: Collection[str],
    flagged: set[str],
) -> None:
    """Numbers, model codes, colours, materials and brands: used when agent.grounding is absent."""
    for value, surface in _numbers(text, evidence=False):
        if value not in ev_numbers:
            add(f'number "{_context(text, surface)}" does not appear in the item data', surface)
    text_tokens = _tokens(text)
    for kind, vocab in (("colour", COLORS), ("material", MATERIALS)):
        for term in sorted(vocab, key=lambda t: -len(t)):
            phrase = _tokens(term)
            if _contains_phrase(text_tokens, phrase) and not _contains_phrase(ev_tokens, phrase) and not set(phrase) <= flagged:
                add(f'{kind} "{term}" is not stated in the item data', term)
    for brand in catalog_brands:
        b = brand.strip()
        if len(b) >= 3 and re.search(rf"(?<!\w){re.escape(b)}(?!\w)", text) and not _contains_phrase(ev_tokens, _tokens(b)):
            add(f'brand "{b}" is not this item\'s brand', b)


def _generic_grounding(text: str, evidence: Sequence[str], catalog_brands: Collection[str]) -> list[str] | None:
    """Problems from `agent.grounding.check_grounding` (another module); None when it is absent.

    Imported lazily: it is developed in parallel, and copy checking must keep working without it.
    """
    try:
        from agent.grounding import check_grounding
    except ImportError:
        return None
    report = check_grounding(text, evidence, catalog_brands=catalog_brands)
    return [str(p) for p in getattr(report, "unsupported", [])]


def distinctive_brands(brands: Iterable[str], corpus: Iterable[str]) -> set[str]:
    """Brands that are not also ordinary lowercase words of the catalog text ("Cross", "Plus",
    "Command", "Universal" are dropped), so naming them in copy really names the brand."""
    lower_words: set[str] = set()
    for text in corpus:
        lower_words.update(re.findall(r"\b[a-z][a-z]+\b", text))
    keep: set[str] = set()
    for brand in brands:
        b = brand.strip()
        if len(b) < 3 or b.casefold() in {"generic", "unknown", "various", "compatible", "na", "n/a", "none"}:
            continue
        if b.lower() in lower_words or (" " not in b and b.islower()):
            continue
        keep.add(b)
    return keep
