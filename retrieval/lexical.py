"""BM25 over the catalog text (bm25s: sparse-matrix BM25, fast enough for 50k+ items in memory).

Dense retrieval misses exact tokens that matter in shopping (model numbers like "CB335WN", brand
names); BM25 catches them. The index is rebuilt in memory from the catalog at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np


class LexicalIndex:
    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.ids = list(ids)
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
        self._retriever.index(tokens, show_progress=False)
        self._vocab = tokens.vocab

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every item (aligned with `self.ids`); unknown words score nothing."""
        words = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        known = [w for w in words if w in self._vocab]
        if not known:
            return np.zeros(len(self.ids), dtype=np.float32)
        # get_scores takes tokens as strings once the retriever has a vocabulary mapping
        return np.asarray(self._retriever.get_scores([self._vocab[w] for w in known]), dtype=np.float32)

    def top(self, query: str, n: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Best `n` items with a positive score, optionally restricted to `mask` (bool per item)."""
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        n = min(n, int((scores > 0).sum()))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top]
