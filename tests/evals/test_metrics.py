"""evals.metrics against hand-computed values: if ranx's conventions ever change (or our
conversion from ordered lists to scores is wrong), these numbers move."""

from __future__ import annotations

import math

import pytest

from evals.metrics import Tally, evaluate_rankings, latency_summary, means, ranked_to_scores, rate

# Three users: target at rank 1, at rank 3, and not retrieved at all.
TARGETS = {"u1": "a", "u2": "b", "u3": "c"}
RANKINGS = {"u1": ["a", "x", "y"], "u2": ["x", "y", "b"], "u3": ["x", "y", "z"]}


def test_hand_computed_values() -> None:
    got = means(evaluate_rankings(TARGETS, RANKINGS, ["recall@1", "recall@3", "mrr", "ndcg@5", "ndcg@1"]))
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(2 / 3)
    assert got["mrr"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert got["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4) + 0) / 3)
    assert got["ndcg@1"] == pytest.approx(1 / 3)


def test_missing_and_empty_rankings_are_misses() -> None:
    """A user the system could not answer must lower the mean, not vanish from it."""
    got = means(evaluate_rankings(TARGETS, {"u1": ["a"], "u2": []}, ["recall@1", "mrr"]))
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["mrr"] == pytest.approx(1 / 3)
    nothing = evaluate_rankings(TARGETS, {}, ["recall@5"])
    assert nothing["recall@5"] == {"mean": 0.0, "se": 0.0, "n": 3}


def test_standard_error_and_count() -> None:
    got = evaluate_rankings(TARGETS, RANKINGS, ["recall@1"])["recall@1"]
    assert got["n"] == 3
    # per-user values 1, 0, 0: sample std = sqrt(1/3), se = std / sqrt(3) = 1/3
    assert got["se"] == pytest.approx(1 / 3)


def test_order_is_kept_and_duplicates_ignored() -> None:
    assert ranked_to_scores(["b", "a", "b", "c"]) == {"b": 3.0, "a": 2.0, "c": 1.0}
    got = means(evaluate_rankings({"q": "c"}, {"q": ["b", "a", "b", "c"]}, ["mrr"]))
    assert got["mrr"] == pytest.approx(1 / 3)


def test_multiple_relevant_items() -> None:
    """ReDial turns can have several targets: recall counts the share found."""
    got = means(evaluate_rankings({"q": ["a", "b"]}, {"q": ["a", "x", "y"]}, ["recall@3"]))
    assert got["recall@3"] == pytest.approx(0.5)


def test_tally_counts_out_of_catalog_and_rates() -> None:
    tally = Tally("sys", {"a", "b"})
    tally.add("u1", ["a", "zzz"], 12.0)
    tally.add("u2", [], 3.0)
    tally.add_llm(True, None)
    tally.add_llm(False, "retriever_order (InvalidOutput: bad)")
    tally.add_reason(True, "llm")
    tally.add_error("u3", RuntimeError("boom"))
    s = tally.summary()
    assert s["out_of_catalog"] == 1 and s["out_of_catalog_examples"] == ["zzz"]
    assert s["empty_answers"] == 1 and s["errors"] == 1 and s["queries"] == 3
    assert s["llm_valid_rate"] == 0.5 and s["fallbacks"] == {"retriever_order": 1}
    assert s["grounded_rate"] == 1.0
    assert s["latency"]["p50_ms"] == pytest.approx(7.5)
    assert rate(0, 0) is None
    assert latency_summary([])["p95_ms"] is None


def test_row_protocol_hit_rate_and_ndcg_masked_and_unmasked() -> None:
    """The published row protocol's two figures, by hand: HR@10 = share of rows with the target
    in the top 10; masking drops history items before cutting at 10."""
    from evals.ranking_rows import row_metrics
    from retrieval.rows import Row

    rows = [Row("u", ("x", "y"), "x"), Row("v", ("x",), "z")]
    rankings = [["x", "a", "b"], ["x", "z", "a"]]
    unmasked = row_metrics(rows, rankings, masked=False)
    masked = row_metrics(rows, rankings, masked=True)
    assert unmasked["hit_rate@10"]["mean"] == 1.0
    assert unmasked["ndcg@10"]["mean"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert masked["hit_rate@10"]["mean"] == 0.5
    assert masked["ndcg@10"]["mean"] == pytest.approx(0.5)
