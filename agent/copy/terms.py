"""Specific words: words the shop's own descriptions rarely use that the item's fields lack.

Why: the claim checker (`agent.copy.check`) reads a lexicon of colours, materials, product types
and claims, so it misses the small model's other inventions: "made of high quality mahogany" on a
notebook, "a magnetic roller" on a calendar, "resistant to scratches, stains and spills" on tabs.
What they share: a word that few of the catalog's descriptions use (it names a detail of some
products) and that the item's fields (title, brand, categories, attributes) do not contain. Words
in many descriptions ("great", "office", "students", "design") name no checkable detail.

So a word of the copy is *specific* when its stem is in fewer than `RARE_SHARE` of the catalog's
descriptions and not among the item's field stems (nor filler). It is a signal, not a gate: against
a blind hand read (`aisle eval copy-audit`, 40 held-out amazon-office-2018 items, two runs) a
copy with a specific word had an invented detail in 67-100 % of cases, but most invented details
use common words (recall 0.28 to 0.5), and the small model invents in 60-72 % of its kept copy. So it is
used where a false alarm costs little:
- among the drafts that pass the gate the writer keeps one with the fewest (`Copywriter._keep_best`);
- the overlay record lists the kept copy's specific words for a reviewer, and `aisle eval copy`
  reports the share of kept copy that has any.
(Leaving sentences with specific words out of the training targets was tried and not adopted: see
`agent.train.copywriter`.) With fewer than `MIN_DESCRIPTIONS` descriptions there is no reliable
notion of rare: nothing is flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from agent.text import FILLER_STEMS, stem, stems, tokens

RARE_SHARE = 0.005  # a stem in < 0.5 % of the descriptions (< 15 of amazon-office-2018's ~3,000) is rare
MIN_DESCRIPTIONS = 200
DESCRIPTION_CHARS = 2000  # enough text per description to count its words; bounds the work on long ones


class TermRarity:
    """Document frequencies of stems over a catalog's human descriptions."""

    def __init__(self, document_frequency: Counter[str], n_descriptions: int, share: float = RARE_SHARE) -> None:
        self.df = document_frequency
        self.n = n_descriptions
        self.share = share

    @classmethod
    def of_descriptions(cls, descriptions: Iterable[str], share: float = RARE_SHARE) -> TermRarity:
        df: Counter[str] = Counter()
        n = 0
        for text in descriptions:
            if text and text.strip():
                df.update(set(stems(text[:DESCRIPTION_CHARS])))
                n += 1
        return cls(df, n, share)

    @property
    def available(self) -> bool:
        return self.n >= MIN_DESCRIPTIONS

    def describe(self) -> dict[str, object]:
        """For records and reports: what "rare" meant."""
        return {"rare_share": self.share, "descriptions": self.n, "available": self.available}

    def specific_terms(self, text: str, evidence: Sequence[str]) -> list[str]:
        """The words of `text` (lower-cased, in order, once each) that are rare in the catalog's
        descriptions and absent from `evidence`. Empty when the catalog has too few descriptions."""
        if not self.available:
            return []
        known = set(stems(" ".join(evidence)))
        limit = self.share * self.n
        out: dict[str, None] = {}
        for word in tokens(text):
            if len(word) < 3 or not word.isalpha():
                continue  # numbers, codes and sizes are the checker's (it reads them exactly)
            s = stem(word)
            if s in known or s in FILLER_STEMS or self.df[s] >= limit:
                continue
            out.setdefault(word, None)
        return list(out)
