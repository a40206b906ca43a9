"""Grounding rules for generated product copy: every checkable fact must come from the item's data.

Why copy has rules of its own: product copy is published next to the product, so an invented
"made of stainless steel", "fits iPhone 15", "pack of 12" or "waterproof" is a false product
claim, not just a weak explanation. `check_copy` runs the gate every generated text goes through
(`agent.grounding.check_grounding`: links, markup, calls to action, brands, numbers, money, model
numbers and the lexicon's colours, materials, features, devices, sizes, claims and product
types) and adds what copy needs on top:

- model codes must match a whole code of the evidence ("300R" is not "300RT");
- compatibility: the object of "fits / compatible with / works with" must be in the evidence
  when it names something ("fits iPhone 15", not "fits most desks");
- measures: a number with a unit ("100MB", "16 oz") must be stated with that kind of unit: the
  evidence's "100 Sheets" does not support "100MB";
- price and value judgements the lexicon misses ("a bit pricey", "worth the money", "high-end"),
  superlatives / scarcity ("the best way to", "highest quality", "limited edition") and comparisons
  with other products ("more durable than most") need the evidence's words.

It also withdraws the gate's lexicon flags that are word-level false positives, because Snowball
stems conflate words that do not make the claim (`_not_a_claim`):
- a product type is a noun: "organized", "organization", "sharpening" share the stem of the
  agent nouns "organizer" / "sharpener" but name the action, not a product ("keeps your desk
  organized" says nothing about being an organizer). The noun and its plural stay checked;
- platform names that are also ordinary words ("Surface", "Windows", "Switch", "Pixel") count
  only when written as the name: "any flat surface" or "a window" is not a device claim;
- nouns that share a claim adjective's stem: "the test of time" is not "tested", "many
  industries" is not "industrial";
- a weaker claim entailed by a stronger one the evidence states (`_ENTAILED`): "Waterproof"
  supports "water resistant", "Assorted Colors" supports "different colors";
- "54-card" read as a model number when 54 and "cards" are both in the evidence.

The evidence is only what the copy prompt showed (title, brand, categories, attributes; see
`agent.copy.writer.copy_evidence`). Subjective words ("great", "durable", "perfect for") are
deliberately not checked: they assert nothing a shopper could later find false about the item.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from agent.grounding import check_grounding, unstated_lexicon_terms
from agent.lexicon import PRODUCT_TYPES, SYNONYMS, UNIT_WORDS, is_non_brand, ordinary_word_brands
from agent.text import squash, stem, stems, tokens

# "fits X" / "compatible with X": words after the cue that need no support.
_COMPAT_CUES = re.compile(
    r"\b(?:compatible with|works with|work with|fits|for use with|designed for use with|pairs with)[ \t]+((?:[\w+\-/]+(?:\.\d+)?[ \t]*){1,4})",
    re.IGNORECASE,
)
_COMPAT_FILLER = frozenset(
    stems(
        """a an the your you any all most many standard other every its their our this these those and or with
        in on of to for most common popular various different modern small large everyday home office school
        desk desks hand hands pocket pockets bag bags purse wallet needs need life style space spaces table
        tables wall walls kids children adults people users user everyone anyone work use just easily perfectly
        neatly snugly well nicely right comfortably securely into inside"""
    )
)
_CODE = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Za-z])(?=[A-Za-z0-9-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")
_NUMBER_WITH_UNIT = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)\.?", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']+)'")

CHECKERS = ["copy_check", "grounding"]


@dataclass
class CopyCheckReport:
    """Same shape as `agent.grounding.GroundingReport` (ok, unsupported) plus which rules ran."""

    ok: bool
    unsupported: list[str] = field(default_factory=list)
    checkers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "unsupported": list(self.unsupported), "checkers": list(self.checkers)}


def check_copy(text: str, evidence: Sequence[str], *, catalog_brands: Collection[str] = ()) -> CopyCheckReport:
    """Flag every checkable fact in `text` that `evidence` does not state, and everything the gate
    never lets through. `catalog_brands`: brand names of the whole catalog (pass distinctive ones,
    see `distinctive_brands`: "Cross" or "Plus" are also ordinary words)."""
    if not text or not text.strip():
        return CopyCheckReport(ok=False, unsupported=["the copy is empty"], checkers=list(CHECKERS))
    ev_text = "\n".join(e for e in evidence if e)
    gate = check_grounding(text, evidence, catalog_brands=catalog_brands).unsupported
    ev_stems = set(stems(ev_text))
    problems = [p for p in gate if not _not_a_claim(p, text, ev_stems)]
    flagged = {squash(m.group(1)) for p in problems for m in [_QUOTED.search(p)] if m}

    def add(problem: str, term: str) -> None:
        if problem not in problems:
            problems.append(problem)
        flagged.add(squash(term))

    _code_rule(text, ev_text, add, flagged)
    _compat_rule(text, ev_text, add)
    _measure_rule(text, ev_text, add)
    _judgement_rule(text, ev_stems, add)
    return CopyCheckReport(ok=not problems, unsupported=problems, checkers=list(CHECKERS))


def _is_measure(code: str) -> bool:
    """'12oz', '0.7mm', '2x', '3rd': a number with a unit (the number itself is checked)."""
    m = _NUMBER_WITH_UNIT.fullmatch(code)
    return bool(m) and m.group(2).lower() in UNIT_WORDS


def _code_rule(text: str, ev_text: str, add: Callable[[str, str], None], flagged: set[str]) -> None:
    """Model codes ("CB335WN", "300RT") must match a whole code of the evidence: "300R" is a
    different product than "300RT" even though it is a substring of it."""
    ev_codes = {c.lower().replace("-", "") for c in _CODE.findall(ev_text)}
    ev_words = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", ev_text)}
    for m in _CODE.finditer(text):
        code = m.group(0)
        key = code.lower().replace("-", "")
        if _is_measure(code) or key in ev_codes or key in ev_words or squash(code) in flagged:
            continue
        if all(_is_measure(part) or part.isalpha() or part.isdigit() for part in re.split(r"[-xX]", code) if part):
            continue  # "100-sheet", "2-pack", "9x12": the numbers themselves are checked
        add(f"model code '{code}' does not appear in the item data", code)


def _compat_rule(text: str, ev_text: str, add: Callable[[str, str], None]) -> None:
    """'fits X' / 'compatible with X': the named thing X must be in the evidence."""
    ev_stems = set(stems(ev_text))
    for m in _COMPAT_CUES.finditer(text):
        obj_stems = [s for s in stems(m.group(1)) if s not in _COMPAT_FILLER and not s.isdigit()]
        missing = [s for s in obj_stems[:3] if s not in ev_stems]
        named = re.search(r"\b[A-Z][\w-]*|\d", m.group(1))  # a proper name or model, not "fits most desks"
        if missing and named:
            phrase = m.group(0).strip(" .,;:")
            add(f"compatibility '{phrase}' is not stated in the item data", " ".join(missing))


# --- lexicon flags that are not claims -----------------------------------------------------------

_LEXICON_FLAG = re.compile(r"^(product type|feature/compatibility|claim) '([^']+)' is not stated in the item data$")
_MODEL_FLAG = re.compile(r"^model/part number '(\d+(?:\.\d+)?)-([A-Za-z]+)' does not appear in the item data$")


def _noun_forms(word: str) -> set[str]:
    """A noun and its regular plurals: 'pen' -> pen, pens; 'party' -> parties."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    return forms


# Agent nouns ("organizer": the thing that organizes) whose Snowball stem is also the stem of the
# action ("organized", "organization"). "laminator" is left out: "laminated" is a finish claim the
# gate should keep asking about.
_AGENT_NOUNS = {stem(w): w for w in PRODUCT_TYPES if w.endswith(("er", "or")) and w != "laminator"}
_AGENT_NOUN_FORMS = {
    s: set().union(*(_noun_forms(w) for w in [noun, *(k for k, v in SYNONYMS.items() if v == noun)]))
    for s, noun in _AGENT_NOUNS.items()
}
# Platform names that are ordinary words: a claim only when written as the name.
_ORDINARY_WORD_PLATFORMS = {
    stem(name): name for name in ("Surface", "Windows", "Switch", "Pixel", "Galaxy", "Lightning", "Apple")
}
# Nouns sharing the stem of a claim adjective ("tested", "industrial") without making the claim.
_CLAIM_STEM_NOUNS = frozenset({"test", "industry", "industries"})


# A stronger claim the evidence states supports a weaker one: (evidence stems, weaker claims as
# the gate writes them). "Waterproof" is water resistant, "Assorted Colors" come in different
# colours; not the other way round, and "waterproof" is not "weatherproof".
_ENTAILED = (
    (("waterproof",), {"water resistant", "water-resistant"}),
    (("assort", "color"), {"different colors", "different colours", "variety of colors", "variety of colours",
                           "variety of color", "many colors", "many colours"}),
    (("multicolor",), {"different colors", "different colours", "variety of colors", "variety of colours",
                       "variety of color", "many colors", "many colours"}),
)


def _not_a_claim(problem: str, text: str, ev_stems: set[str]) -> bool:
    """True for a flag of the gate that only shares a stem with the claim (see module doc), or a
    "54-card" / "16-ounce" read as a model number: its number is checked by the number rule, its
    unit by `_measure_rule`, and its word must be in the evidence."""
    code = _MODEL_FLAG.match(problem)
    if code:
        word = code.group(2).lower()
        return word in _UNIT_FAMILY or stem(word) in ev_stems
    m = _LEXICON_FLAG.match(problem)
    if not m:
        return False
    kind, words = m.group(1), m.group(2)
    if any(words in weaker and all(s in ev_stems for s in stronger) for stronger, weaker in _ENTAILED):
        return True
    if " " in words:
        return False  # phrases ("rose gold", "eco friendly") are matched whole: always a claim
    s = stem(words)
    if kind == "product type":
        return s in _AGENT_NOUN_FORMS and words not in _AGENT_NOUN_FORMS[s]
    if kind == "feature/compatibility" and s in _ORDINARY_WORD_PLATFORMS:
        return not re.search(r"\b" + _ORDINARY_WORD_PLATFORMS[s] + r"\b", text)  # case-sensitive: the name
    if kind == "claim":
        return words in _CLAIM_STEM_NOUNS
    return False


# --- measures and judgements ---------------------------------------------------------------------

_UNIT_FAMILY = {
    "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gb": "gb", "gigabyte": "gb", "gigabytes": "gb",
    "tb": "tb", "kb": "kb", "mah": "mah", "mm": "mm", "millimeter": "mm", "millimeters": "mm",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "ml": "ml", "oz": "oz", "ounce": "oz", "ounces": "oz",
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "kg": "kg", "ft": "ft", "feet": "ft", "foot": "ft",
    "inch": "in", "inches": "in", '"': "in", "in": "in", "gsm": "gsm", "ppm": "ppm", "dpi": "dpi",
    "watt": "w", "watts": "w", "volt": "v", "volts": "v", "hz": "hz", "gallon": "gal", "gallons": "gal",
    "yard": "yd", "yards": "yd", "yd": "yd", "mil": "mil",
}
_UNITS = "|".join(sorted((re.escape(u) for u in _UNIT_FAMILY if u not in {'"', "in"}), key=len, reverse=True))
# In the copy: a number glued to a unit ("100MB", "16 oz", "12-inch"); "in" is left out ("1 in 3").
_TEXT_MEASURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*-?\s*(" + _UNITS + r")\b", re.I)
# In the evidence: also '12"' and '1 in', and a dimension chain "5 x 8 inch" gives each number the unit.
_EV_MEASURE = re.compile(
    r"(?<![\w.])((?:\d+(?:\.\d+)?\s*(?:\"|in\b|inch(?:es)?\b)?\s*[xX×]\s*){0,2})(\d+(?:\.\d+)?)\s*-?\s*(" + _UNITS + r'|in\b|")',
    re.I,
)


def _num(raw: str) -> str:
    return raw.rstrip("0").rstrip(".") if "." in raw else raw.lstrip("0") or "0"


def _measure_rule(text: str, ev_text: str, add: Callable[[str, str], None]) -> None:
    """'100MB', '16 oz': the evidence must state that number with that kind of unit. A number the
    evidence does not state at all is already flagged by the gate; this catches a stated number
    given an invented unit ("100 Sheets" -> "100MB capacity")."""
    ev_numbers = {_num(n) for n in re.findall(r"\d+(?:\.\d+)?", ev_text)}
    stated: set[tuple[str, str]] = set()
    for m in _EV_MEASURE.finditer(ev_text):
        family = _UNIT_FAMILY[m.group(3).lower()]
        for n in [*re.findall(r"\d+(?:\.\d+)?", m.group(1)), m.group(2)]:
            stated.add((_num(n), family))
    for m in _TEXT_MEASURE.finditer(text):
        number, family = _num(m.group(1)), _UNIT_FAMILY[m.group(2).lower()]
        if number in ev_numbers and (number, family) not in stated:
            add(f"measure '{m.group(0).strip()}' is not stated with that unit in the item data", m.group(0))


# Value judgements and superlatives beyond the lexicon: (pattern, the evidence stems that support it).
_JUDGEMENTS = (
    ("price/value claim", re.compile(r"\b(?:pricey|pricy|overpriced|costly|economical|cost[- ]effective|low[- ]cost"
                                     r"|worth (?:the|every) (?:money|price|penny|cent)|money[- ]saving|great deal|good deal"
                                     r"|premium|high[- ]end|top[- ]of[- ]the[- ]line)\b", re.I)),
    ("claim", re.compile(r"\b(?:(?:the|our) (?:very )?best\b(?! of (?:both|luck))|limited edition|exclusive(?:ly)?\b|one of a kind|unbeatable|unmatched|unrivaled|second to none"
                         r"|(?:highest|top|finest|superior)[- ]quality|finest|ultimate|high[- ]tech|state[- ]of[- ]the[- ]art|world[- ]class|industry[- ]leading)\b", re.I)),
    # A comparison with other products ("more durable than most envelopes", "better than"): the item's data never makes one.
    ("comparison", re.compile(r"\b(?:(?:more|less) [a-z]+ than|better than|(?!rather|other)[a-z]+er than (?:most|other|any|ordinary|regular|standard|traditional|conventional|typical|competing))\b", re.I)),
)


def _judgement_rule(text: str, ev_stems: set[str], add: Callable[[str, str], None]) -> None:
    """'a bit pricey', 'high-end', 'the best way to protect', 'limited edition', 'more durable than
    most': a price judgement, a superlative, a scarcity claim or a comparison is a claim about the
    item; the evidence must use its words."""
    for kind, pattern in _JUDGEMENTS:
        for m in pattern.finditer(text):
            words = [stem(t) for t in tokens(m.group(0)) if t not in {"the", "our", "very", "a", "of"}]
            if not all(w in ev_stems for w in words):
                add(f"{kind} '{m.group(0)}' is not stated in the item data", m.group(0))


# Literal forms of the judgement rule's phrases, for `banned_terms` (the rule stays the judge: a
# phrase it would not flag is not banned).
_JUDGEMENT_TERMS = ("the best", "our best", "limited edition", "exclusive", "exclusively", "one of a kind", "unbeatable", "unmatched",
                    "second to none", "pricey", "overpriced", "costly", "economical", "cost-effective", "low-cost", "great deal", "good deal",
                    "premium", "high-end", "top-of-the-line", "highest quality", "top quality", "finest", "superior quality", "ultimate",
                    "high-tech", "state-of-the-art", "world-class", "industry-leading", "better than")


def banned_terms(evidence: Sequence[str], *, catalog_brands: Collection[str] = ()) -> list[str]:
    """Words the copy for this evidence must not contain, for decoding to ban up front: every
    lexicon phrase and judgement the checker would flag here (each candidate is run through
    `check_copy` itself, so the ban never goes beyond the gate), and every digit the evidence
    lacks (a number with that digit cannot be in the data). The gate still checks the result:
    a ban only stops the token sequences the model would most likely use."""
    ev_text = "\n".join(e for e in evidence if e)
    candidates = [*unstated_lexicon_terms(evidence), *_JUDGEMENT_TERMS]
    # One probe text, one sentence per candidate; "Item" keeps neighbours from forming a phrase.
    report = check_copy(" ".join(f"Item {c}." for c in candidates), evidence, catalog_brands=catalog_brands)
    flagged = {squash(m.group(1)) for p in report.unsupported for m in [_QUOTED.search(p)] if m}
    banned = [c for c in candidates if squash(c) in flagged]
    banned.extend(d for d in "0123456789" if d not in ev_text)
    return banned


def distinctive_brands(brands: Iterable[str], corpus: Iterable[str]) -> set[str]:
    """The catalog's brands that really name a brand when copy mentions them: not a non-brand
    ("generic", "n/a") and not also an ordinary word of the catalog text ("Cross", "Universal")."""
    named = {b.strip() for b in brands if b and not is_non_brand(b)}
    return named - ordinary_word_brands(named, corpus)
