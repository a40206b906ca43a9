"""Candidate sources: every signal that can nominate an item for a shopper, scored over the whole catalog.

A source turns a shopper (history, optional query) into one score per catalog item; its top
`depth` items are its candidates. The ranking stage (`retrieval.learned_ranker`) takes the union
of all sources' candidates and reads every source's score and rank as features, so a source that
is good at the head (co-occurrence) and one that reaches cold items (the text-aware model) both
contribute.

Sources (each is optional; a catalog without interactions has only the text ones):

| name         | what it reads                                   | model                            |
|--------------|-------------------------------------------------|----------------------------------|
| popularity   | interaction counts                              | `PopularityRecommender`          |
| cooc         | "bought X also bought Y" from the history       | `CooccurrenceRecommender`        |
| sasrec       | the order of the history                        | `retrieval.sasrec`               |
| textseq      | the history, items seen through their text      | `retrieval.textseq`              |
| dense_hist   | embedding similarity to the last history items  | the index's item vectors         |
| bm25_hist    | BM25 of the last history titles                 | `retrieval.lexical`              |
| dense_query  | embedding similarity to the shopper's words     | the index's item vectors         |
| bm25_query   | BM25 of the shopper's words                     | `retrieval.lexical`              |

Scores are full-catalog arrays aligned with `SourceSet.item_ids`; history items, excluded and
unavailable items are -inf in every source, so no source can nominate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.collab import ScoringRecommender, distinct_history

HISTORY_SOURCES = ("popularity", "cooc", "sasrec", "textseq", "dense_hist", "bm25_hist")
QUERY_SOURCES = ("dense_query", "bm25_query")
ALL_SOURCES = HISTORY_SOURCES + QUERY_SOURCES

DEFAULT_DEPTHS: dict[str, int] = {
    # Chosen from the recall curves of `aisle eval ranking` on the validation split of
    # amazon-office-2014 (recall keeps rising to 200 for the model sources; past 100 the text
    # sources add little that the models do not already nominate).
    "popularity": 50,
    "cooc": 200,
    "sasrec": 200,
    "textseq": 200,
    "dense_hist": 100,
    "bm25_hist": 50,
    "dense_query": 100,
    "bm25_query": 100,
}
HISTORY_WINDOW = 10  # history items the text sources look at (most recent)
BM25_HISTORY_TITLES = 3  # titles that make the BM25 "query" of a history


@dataclass
class Shopper:
    """What the sources may read about one shopper."""

    history: Sequence[str] = ()  # item ids, oldest first; a repeated item counts once, at its latest position
    query: str | None = None
    exclude: Iterable[str] = ()
    allowed: np.ndarray | None = None  # bool per item of the SourceSet (search filters); None = all
    mask_history: bool = True  # False: history items may be recommended again (published row protocols)

    def __post_init__(self) -> None:
        self.history = distinct_history(self.history)


@dataclass
class Scored:
    """Every source's full-catalog scores for one shopper (-inf = not allowed)."""

    scores: dict[str, np.ndarray]
    allowed: np.ndarray  # bool per item: not in the history, not excluded, available

    def top(self, source: str, depth: int) -> np.ndarray:
        """Positions of the source's best `depth` allowed items, best first (ties: catalog order)."""
        s = self.scores[source]
        finite = np.flatnonzero(np.isfinite(s))
        if finite.size == 0:
            return finite
        depth = min(depth, finite.size)
        part = finite[np.argpartition(-s[finite], depth - 1)[:depth]] if depth < finite.size else finite
        return part[np.argsort(-s[part], kind="stable")]

    def ranks(self, source: str, positions: np.ndarray) -> np.ndarray:
        """1-based rank of each position among the allowed items of `source` (ties share the best rank)."""
        s = self.scores[source]
        finite = np.sort(s[np.isfinite(s)])[::-1]
        if finite.size == 0:
            return np.full(len(positions), np.nan)
        # rank = 1 + number of items with a strictly higher score
        higher = finite.size - np.searchsorted(finite[::-1], s[positions], side="right")
        out = (higher + 1).astype(np.float64)
        out[~np.isfinite(s[positions])] = np.nan
        return out


@dataclass
class SourceSet:
    """The sources of one catalog, over one item vocabulary (`item_ids`, the catalog's order)."""

    item_ids: list[str]
    models: dict[str, ScoringRecommender] = field(default_factory=dict)  # popularity, cooc, sasrec, textseq
    vectors: np.ndarray | None = None  # (n_items, dim) unit item vectors, for the dense sources
    lexical: object | None = None  # retrieval.lexical.LexicalIndex over the same items
    titles: Sequence[str] = ()  # item titles, for the BM25 history query
    available: np.ndarray | None = None  # bool per item
    embed_query: object | None = None  # callable str -> unit vector (the searcher's embedder)

    def __post_init__(self) -> None:
        self.position = {item: i for i, item in enumerate(self.item_ids)}
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, model in self.models.items():
            # model vocabulary -> catalog positions (a model may know fewer items than the catalog)
            cols = [(j, self.position[i]) for j, i in enumerate(model.item_ids) if i in self.position]
            self._maps[name] = (np.array([c[0] for c in cols], dtype=np.int64), np.array([c[1] for c in cols], dtype=np.int64))
        if self.lexical is not None and list(getattr(self.lexical, "ids", self.item_ids)) != list(self.item_ids):
            raise ValueError("the lexical index must cover the same items in the same order as item_ids")

    @property
    def names(self) -> list[str]:
        """The sources this set can score for a shopper with a history and a query."""
        out = [n for n in ("popularity", "cooc", "sasrec", "textseq") if n in self.models]
        if self.vectors is not None:
            out.append("dense_hist")
        if self.lexical is not None:
            out.append("bm25_hist")
        if self.vectors is not None and self.embed_query is not None:
            out.append("dense_query")
        if self.lexical is not None:
            out.append("bm25_query")
        return out

    def _allowed(self, shopper: Shopper) -> np.ndarray:
        allowed = np.ones(len(self.item_ids), dtype=bool) if self.available is None else self.available.copy()
        if shopper.allowed is not None:
            allowed &= shopper.allowed
        history = shopper.history if shopper.mask_history else ()
        banned = [self.position[i] for i in [*history, *shopper.exclude] if i in self.position]
        allowed[banned] = False
        return allowed

    def score(self, shoppers: Sequence[Shopper], sources: Sequence[str] | None = None) -> list[Scored]:
        """Full-catalog scores of every source for each shopper (model sources scored in one batch)."""
        names = [n for n in (sources or self.names) if n in self.names]
        n_items = len(self.item_ids)
        out = [Scored({}, self._allowed(s)) for s in shoppers]
        histories = [list(s.history) for s in shoppers]
        for name in names:
            if name in self.models:
                rows = self.models[name].score_batch(histories)
                src, dst = self._maps[name]
                for r, scored in enumerate(out):
                    full = np.full(n_items, -np.inf)
                    full[dst] = np.asarray(rows[r], dtype=np.float64)[src]
                    scored.scores[name] = full
        for shopper, scored in zip(shoppers, out):
            known = [self.position[i] for i in shopper.history if i in self.position][-HISTORY_WINDOW:]
            if "dense_hist" in names:
                scored.scores["dense_hist"] = self._dense(self.vectors[known].mean(axis=0)) if known else np.full(n_items, -np.inf)
            if "bm25_hist" in names:
                text = " ".join(self.titles[p] for p in known[-BM25_HISTORY_TITLES:])
                scored.scores["bm25_hist"] = self._bm25(text)
            query = (shopper.query or "").strip()
            if "dense_query" in names:
                scored.scores["dense_query"] = self._dense(np.asarray(self.embed_query(query))) if query else np.full(n_items, -np.inf)
            if "bm25_query" in names:
                scored.scores["bm25_query"] = self._bm25(query)
            for name in scored.scores:
                scored.scores[name] = np.where(scored.allowed, scored.scores[name], -np.inf)
        return out

    def _dense(self, centre: np.ndarray) -> np.ndarray:
        assert self.vectors is not None
        norm = float(np.linalg.norm(centre)) or 1.0
        return (self.vectors @ (centre / norm)).astype(np.float64)

    def _bm25(self, text: str) -> np.ndarray:
        if not text.strip():
            return np.full(len(self.item_ids), -np.inf)
        s = np.asarray(self.lexical.scores(text), dtype=np.float64)  # type: ignore[union-attr]
        return np.where(s > 0, s, -np.inf)  # an item sharing no word is not a BM25 candidate


def union(scored: Scored, depths: Mapping[str, int]) -> np.ndarray:
    """Catalog positions nominated by any source (each at its own depth), in first-seen order."""
    seen: dict[int, None] = {}
    for name, depth in depths.items():
        if name in scored.scores and depth > 0:
            for p in scored.top(name, depth):
                seen.setdefault(int(p), None)
    return np.fromiter(seen, dtype=np.int64, count=len(seen))


def recall_at(positions_by_user: Sequence[np.ndarray], targets: Sequence[int]) -> float:
    """Share of users whose target position is among their candidates (the ceiling of any ranker)."""
    if not targets:
        return 0.0
    return float(np.mean([t in set(p.tolist()) for p, t in zip(positions_by_user, targets)]))
