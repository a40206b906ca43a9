"""Grounding rules for generated product copy: every checkable fact must come from the item's data.

Why copy has rules of its own: product copy is published next to the product, so an invented
"made of stainless steel", "fits iPhone 15", "pack of 12" or "waterproof" is a false product
claim, not just a weak explanation. `check_copy` runs the gate every generated text goes through
(`agent.grounding.check_grounding`: links, markup, calls to action, brands, numbers, money, model
numbers and the lexicon's colours, materials, features, devices, sizes, claims and product
types) and adds what copy needs on top:

- model codes must match a whole code of the evidence ("300R" is not "300RT");
- compatibility: the object of "fits / compatible with / works with" must be in the evidence
  when it names something ("fits iPhone 15", not "fits most desks").

The evidence is only what the copy prompt showed (title, brand, categories, attributes; see
`agent.copy.writer.copy_evidence`). Subjective words ("great", "durable", "perfect for") are
deliberately not checked: they assert nothing a shopper could later find false about the item.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from agent.grounding import check_grounding
from agent.lexicon import UNIT_WORDS, is_non_brand, ordinary_word_brands
from agent.text import squash, stems

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
    problems = list(check_grounding(text, evidence, catalog_brands=catalog_brands).unsupported)
    flagged = {squash(m.group(1)) for p in problems for m in [_QUOTED.search(p)] if m}

    def add(problem: str, term: str) -> None:
        if problem not in problems:
            problems.append(problem)
        flagged.add(squash(term))

    ev_text = "\n".join(e for e in evidence if e)
    _code_rule(text, ev_text, add, flagged)
    _compat_rule(text, ev_text, add)
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


def distinctive_brands(brands: Iterable[str], corpus: Iterable[str]) -> set[str]:
    """The catalog's brands that really name a brand when copy mentions them: not a non-brand
    ("generic", "n/a") and not also an ordinary word of the catalog text ("Cross", "Universal")."""
    named = {b.strip() for b in brands if b and not is_non_brand(b)}
    return named - ordinary_word_brands(named, corpus)
