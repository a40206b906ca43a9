"""Sentence-level corroboration of product copy by the shop's own descriptions of similar items.

Why: the claim checker (`agent.copy.check`) knows numbers, colours, materials, claims and product
types, but a fluent model invents in plain words: a planner "with reminders and to-do lists", a
mouse pad "easy to clean", rubber cement "for making slime". A blind read found such a detail in
40 % of the copy the checker kept. Asking the model itself separated them worse than this check
(`aisle eval copy-audit verifiers`: ROC AUC 0.675 asked yes/no per sentence, 0.574 by agreement
between its own drafts, 0.810 here), and no entailment model ships on PyPI. What the shop does have is its own catalog: the
human descriptions of products like this one.

Each sentence of a draft is sorted into one of two kinds:
- a feature sentence ("has", "includes", "comes with", "made of" ...) says what this item is or
  contains: every content word must be in the item's own fields (title, brand, categories,
  attributes), whatever similar items say;
- any other sentence (what it is for, who uses it) may add words, but each added word must be
  common in the catalog's descriptions (`generic_share`: "use", "office", "easy") or used by the
  human descriptions of at least `min_support` of the item's `neighbours` nearest items by title.
  Knowledge about a kind of product is then the shop's, not the model's.

The writer (`agent.copy.writer.Copywriter`, `corroborate=True`) removes flagged sentences; the rest
of the draft stands when its selling point and one description sentence survive. In a catalog with few descriptions little is corroborated and
the copy shrinks to the item's fields: the safe failure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent.lexicon import COLOURS, NUMBER_WORDS
from agent.text import FILLER_STEMS, content_stems, stem, stems, tokens
from retrieval.catalog import Catalog, Item
from retrieval.lexical import LexicalIndex

# Off until it is measured to pay for what it removes (docs/configuration.md has the figures).
DEFAULT_CORROBORATE = False
# A description shorter than this says too little to vouch for a word.
MIN_DESCRIPTION_WORDS = 10
# Below this many described items a word's catalog share means little: nothing counts as generic.
MIN_POOL_FOR_GENERIC = 50

# Verbs and phrases that attribute something to the item itself.
FEATURE_CUE = re.compile(
    r"\b(?:has|have|having|features?|featuring|includes?|including|contains?|comes? (?:with|in)|made (?:of|from|with)"
    r"|equipped|built[- ]in|consists? of|offers?)\b",
    re.IGNORECASE,
)
# Words a feature sentence needs to restate the fields ("This pack of 30 clips from IKEA ...").
_GLUE = frozenset(content_stems("it its they them this these item items product products pack packs set sets also each one both use used using "
                                 "come comes made feature features include includes contain contains equipped built consist consists offer offers "
                                 # judgements that assert nothing a shopper could find false (the claim checker handles "best", "premium")
                                 "choice pick way ideal perfect handy convenient easy simple"))
# "made of silver" on a silver organiser: a colour of the title read as the material.
_COLOUR_AS_MATERIAL = re.compile(r"\bmade (?:of|from|with|in) (?:a |an )?(" + "|".join(sorted((c for c in COLOURS if " " not in c), key=len, reverse=True)) + r")\b", re.IGNORECASE)
# "(extra lids not included)", "stand sold separately": what the title names but the item lacks.
_NOT_INCLUDED = re.compile(r"([\w ,&/-]{1,60}?)\s+(?:(?:are|is)\s+)?(?:not included|sold separately|not supplied|excluded)", re.IGNORECASE)
_EXCLUSION_WORDS = re.compile(r"\b(?:not included|sold separately|not supplied|excluded|without|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SentenceVerdict:
    sentence: str
    feature: bool
    unsupported: tuple[str, ...]  # words (as written) no field, generic word or neighbour vouches for
    similar: int | None = None  # described similar items, when too few of them could vouch for any word
    empty: bool = False  # no word beyond glue ("This is not a product.", "I made it."): says nothing about the item

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.empty

    def problem(self) -> str:
        """The words first and quoted: the retry prompt lists the first quoted part (`avoid_terms`)."""
        if self.empty:
            return f"says nothing about the item: {self.sentence}"
        words = ", ".join(self.unsupported[:4])
        if self.feature:
            return f"'{words}' in a feature sentence, not stated in the item data: {self.sentence}"
        few = f", and the catalog has only {self.similar} described item(s) like this one" if self.similar is not None else ""
        return f"'{words}' used by neither the item data nor similar items' descriptions{few}: {self.sentence}"


class Corroboration:
    """The catalog's described items, indexed by title, and their descriptions' words."""

    def __init__(self, catalog: Catalog, *, neighbours: int = 10, min_support: int = 2, generic_share: float = 0.05) -> None:
        if neighbours < 1 or min_support < 1 or min_support > neighbours:
            raise ValueError(f"need 1 <= min_support <= neighbours, got min_support={min_support}, neighbours={neighbours}")
        self.neighbours = neighbours
        self.min_support = min_support
        described = [it for it in catalog.items.values() if len((it.description or "").split()) >= MIN_DESCRIPTION_WORDS]
        self._ids = [it.id for it in described]
        self._words = {it.id: frozenset(content_stems(it.description)) for it in described}
        self._index = LexicalIndex(self._ids, [it.title for it in described]) if described else None
        df = Counter(w for words in self._words.values() for w in words)
        floor = generic_share * len(described)
        self.generic = frozenset(w for w, c in df.items() if c >= floor) if len(described) >= MIN_POOL_FOR_GENERIC else frozenset()

    @property
    def pool(self) -> int:
        """How many items' descriptions can vouch for a word."""
        return len(self._ids)

    def similar(self, item: Item) -> list[str]:
        """Ids of the described items nearest to `item` by title (never the item itself)."""
        if self._index is None:
            return []
        hits = self._index.top(item.title, self.neighbours + 1)
        return [i for i, _ in hits if i != item.id][: self.neighbours]

    def judge(self, sentences: Sequence[str], evidence: Sequence[str], item: Item) -> list[SentenceVerdict]:
        """One verdict per sentence; `evidence` is what the copy prompt showed (its fields)."""
        ev_text = " ".join(e for e in evidence if e)
        fields = set(content_stems(ev_text))
        fields |= {stem(word) for word, digits in NUMBER_WORDS.items() if re.search(rf"(?<![\d.]){digits}(?![\d.])", ev_text)}
        # The last words before "not included": the thing the item lacks ("extra lids").
        lacking = {s for m in _NOT_INCLUDED.finditer(ev_text) for s in stems(m.group(1).split(",")[-1])[-2:]} - FILLER_STEMS
        near = [self._words[i] for i in self.similar(item)]
        verdicts = []
        for sentence in sentences:
            words = [(stem(w), w) for w in tokens(sentence)]
            added: dict[str, str] = {}  # stem -> the word as first written
            for s, w in words:
                if s not in FILLER_STEMS and s not in fields and not s.isdigit():
                    added.setdefault(s, w)
            feature = bool(FEATURE_CUE.search(sentence))
            if any(s in lacking for s, _ in words) and not _EXCLUSION_WORDS.search(sentence):
                added.update({s: w for s, w in words if s in lacking})  # it names what the data says is not included
                feature = True
            colour = _COLOUR_AS_MATERIAL.search(sentence)
            if colour:
                added.setdefault("made of " + colour.group(1).lower(), "made of " + colour.group(1))
                feature = True
            if feature:
                unsupported = [w for s, w in added.items() if s not in _GLUE]
            else:
                unsupported = [w for s, w in added.items()
                               if s not in _GLUE and s not in self.generic and sum(s in words for words in near) < self.min_support]
            few = len(near) if len(near) < self.min_support and unsupported and not feature else None
            empty = all(s in FILLER_STEMS or s in _GLUE for s, _ in words)
            verdicts.append(SentenceVerdict(sentence, feature, tuple(unsupported), few, empty))
        return verdicts
