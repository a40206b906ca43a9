"""Ranking metrics for every eval, computed by ranx (never by hand-written formulas).

Why a wrapper at all: the evals hold rankings as ordered id lists, ranx wants score dicts; ranx
also needs the same query set in the qrels and the run, and it rejects empty runs. This module
does those conversions once, so all evals (ranking, conversation) count hits the same way:

- a ranking becomes scores `n - position` (strictly decreasing), so ranx ranks exactly in the
  list order and no tie-breaking inside ranx can reorder items;
- a query the system answered with nothing (or never answered) scores 0 on every metric;
- besides the mean, the per-query standard error is returned, so a report can say whether a
  difference between two systems is larger than the sampling noise.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

RANKING_METRICS: tuple[str, ...] = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@20")
CONVERSATION_METRICS: tuple[str, ...] = ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "ndcg@10", "mrr@50")


def ranked_to_scores(ranked: Sequence[str]) -> dict[str, float]:
    """Ordered ids (best first, duplicates ignored) -> ranx scores that preserve the order."""
    unique = list(dict.fromkeys(str(i) for i in ranked))
    n = len(unique)
    return {item: float(n - pos) for pos, item in enumerate(unique)}


def evaluate_rankings(
    targets: Mapping[str, Sequence[str] | str],
    rankings: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = RANKING_METRICS,
) -> dict[str, dict[str, float]]:
    """Mean and standard error of each metric over the queries in `targets`, by ranx.

    targets: query id -> relevant item id(s) (binary relevance). rankings: query id -> item ids,
    best first. Queries in `targets` with no (or an empty) ranking count as complete misses.
    Returns {metric: {"mean": float, "se": float, "n": int}}.
    """
    from ranx import Qrels, Run, evaluate  # ranx imports numba: slow, so only when measuring

    if not targets:
        raise ValueError("no queries to evaluate: targets is empty")
    qrels_dict: dict[str, dict[str, int]] = {}
    for qid, rel in targets.items():
        rel_ids = [rel] if isinstance(rel, str) else list(rel)
        if not rel_ids:
            raise ValueError(f"query {qid!r} has no relevant item")
        qrels_dict[str(qid)] = {str(r): 1 for r in rel_ids}
    run_dict = {str(q): ranked_to_scores(rankings.get(q, ())) for q in targets}
    # ranx refuses empty result lists; `make_comparable` below fills them back in as misses.
    run_dict = {q: s for q, s in run_dict.items() if s}
    metric_list = list(metrics)
    if not run_dict:
        return {m: {"mean": 0.0, "se": 0.0, "n": len(qrels_dict)} for m in metric_list}
    qrels = Qrels(qrels_dict)
    run = Run(run_dict)
    per_query = evaluate(qrels, run, metric_list, return_mean=False, make_comparable=True)
    if not isinstance(per_query, dict):  # ranx returns a bare array for a single metric
        per_query = {metric_list[0]: per_query}
    out: dict[str, dict[str, float]] = {}
    for m in metric_list:
        values = np.asarray(per_query[m], dtype=np.float64)
        n = len(values)
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        out[m] = {"mean": float(values.mean()), "se": se, "n": n}
    return out


def means(result: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{metric: {"mean", "se", "n"}} -> {metric: mean}."""
    return {m: float(v["mean"]) for m, v in result.items()}


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile (0-100, linear interpolation) or None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_summary(ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p95 / mean / max of per-request latencies in milliseconds."""
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": float(np.mean(ms)) if ms else None,
        "max_ms": float(np.max(ms)) if ms else None,
    }


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when nothing was counted (not 0: 'no data' is not 'all failed')."""
    return numerator / denominator if denominator else None


def unchanged_order_rate(rankings: Mapping[str, Sequence[str]], reference: Mapping[str, Sequence[str]]) -> float | None:
    """Share of queries ranked exactly as in `reference` (the retriever's order). A "valid" LLM
    answer that leaves the order untouched (e.g. a model echoing A, B, C, ...) shows up here, not
    in the validity rate."""
    return rate(sum(1 for q, r in rankings.items() if r == reference.get(q)), len(rankings))


class Tally:
    """Everything measured about one system over one eval: rankings, latencies, LLM validity,
    grounding of reasons, ids outside the catalog, errors. One object per system, filled query by
    query, summarised once at the end (`summary`)."""

    def __init__(self, name: str, catalog_ids: Collection[str]) -> None:
        self.name = name
        self._catalog = catalog_ids
        self.rankings: dict[str, list[str]] = {}
        self.latency_ms: list[float] = []
        self.llm_asked = 0  # queries where an LLM answer was expected (rank mode not "none")
        self.llm_valid = 0
        self.fallbacks: dict[str, int] = {}
        self.reasons = 0  # reasons produced
        self.reasons_grounded = 0
        self.reason_sources: dict[str, int] = {}
        self.out_of_catalog: list[str] = []
        self.empty = 0
        self.errors: list[str] = []
        self.candidate_counts: list[int] = []

    def add(self, qid: str, ranked: Sequence[str], latency_ms: float | None) -> None:
        """One answered query: its ranked ids (best first) and its wall time (None: not timed here)."""
        ranked = [str(i) for i in ranked]
        self.rankings[qid] = ranked
        if latency_ms is not None:
            self.latency_ms.append(float(latency_ms))
        if not ranked:
            self.empty += 1
        self.out_of_catalog.extend(i for i in ranked if i not in self._catalog)

    def add_llm(self, valid: bool, fallback: str | None) -> None:
        self.llm_asked += 1
        self.llm_valid += int(bool(valid))
        if fallback:
            key = fallback.split(" (", 1)[0][:60]
            self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def add_reason(self, grounded: bool, source: str | None) -> None:
        self.reasons += 1
        self.reasons_grounded += int(bool(grounded))
        key = source or "unknown"
        self.reason_sources[key] = self.reason_sources.get(key, 0) + 1

    def add_error(self, qid: str, exc: BaseException) -> None:
        """A query that raised: counted as a miss in the metrics, listed in the report."""
        self.errors.append(f"{qid}: {type(exc).__name__}: {exc}"[:300])

    def summary(self) -> dict[str, Any]:
        return {
            "queries": len(self.rankings) + len(self.errors),
            "answered": len(self.rankings),
            "empty_answers": self.empty,
            "errors": len(self.errors),
            "error_examples": self.errors[:5],
            "latency": latency_summary(self.latency_ms),
            "llm_asked": self.llm_asked,
            "llm_valid_rate": rate(self.llm_valid, self.llm_asked),
            "fallbacks": dict(sorted(self.fallbacks.items())),
            "reasons": self.reasons,
            "grounded_rate": rate(self.reasons_grounded, self.reasons),
            "reason_sources": dict(sorted(self.reason_sources.items())),
            "out_of_catalog": len(self.out_of_catalog),
            "out_of_catalog_examples": sorted(set(self.out_of_catalog))[:5],
            "mean_candidates": float(np.mean(self.candidate_counts)) if self.candidate_counts else None,
        }
