"""`aisle eval ranking` end to end on real data: the report's structure, and one run with the real
LLM re-ranker (slow)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from evals.compare import compare_text
from evals.metrics import RANKING_METRICS
from evals.ranking import RankingConfig, rank_mode_of, run_ranking_eval

TOP_KEYS = {"kind", "config", "systems", "candidate_recall", "seconds", "total_seconds", "notes", "figures"}
CONFIG_KEYS = {"catalog", "users_evaluated", "sampled_users_sha256", "seed", "prompts", "prompt_fingerprints", "engine", "model_id", "n_candidates", "n_orders", "git", "metrics"}
SYSTEM_KEYS = {"label", "role", "scope", "metrics", "latency", "llm_valid_rate", "grounded_rate", "out_of_catalog", "errors", "empty_answers"}


def check_report(out: Path, result: dict, systems: set[str]) -> None:
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(result, default=str))
    assert TOP_KEYS <= set(result)
    assert CONFIG_KEYS <= set(result["config"])
    assert set(result["systems"]) == systems
    for name, s in result["systems"].items():
        assert SYSTEM_KEYS <= set(s), name
        assert set(s["metrics"]) == set(RANKING_METRICS)
        for m in s["metrics"].values():
            assert 0.0 <= m["mean"] <= 1.0 and m["n"] == result["config"]["users_evaluated"]
        assert s["out_of_catalog"] == 0, f"{name} returned ids outside the catalog: {s['out_of_catalog_examples']}"
        assert s["errors"] == 0, s["error_examples"]
    md = (out / "report.md").read_text()
    assert "## Ranking quality" in md and "| system | scope | RECALL@5" in md
    assert "## Validity, grounding, latency" in md and "latency p95" in md
    assert "Candidate recall ceiling" in md
    for png in ("ndcg10.png", "latency.png"):
        assert (out / png).stat().st_size > 5_000
        assert f"]({png})" in md
        assert result["figures"][png.removesuffix(".png")] == png


def test_ranking_eval_report_structure(settings, tmp_path):
    """5 users, every non-LLM system plus the candidate generator: JSON keys, tables, PNGs."""
    cfg = RankingConfig(users=5, prompts=(), sasrec=False, stage=False, reason_users=0, out=tmp_path, progress=False)
    result = run_ranking_eval(settings, cfg)
    check_report(tmp_path, result, {"popularity", "cooccurrence", "similar", "pipeline:none"})
    ceiling = result["candidate_recall"]
    assert ceiling["users"] == 5 and ceiling["n_candidates"] == 20
    # recall@20 of the candidate generator IS the ceiling: both count targets among its 20 items
    assert result["systems"]["pipeline:none"]["metrics"]["recall@20"]["mean"] == pytest.approx(ceiling["ceiling"])

    # same seed -> same sample; compare says so and shows zero differences
    same = compare_text(result, copy.deepcopy(result))
    assert "WARNING" not in same and "+0.0000" in same
    changed = copy.deepcopy(result)
    changed["systems"]["popularity"]["metrics"]["ndcg@10"]["mean"] += 0.1
    changed["config"]["sampled_users_sha256"] = "other"
    text = compare_text(result, changed)
    assert "WARNING" in text and "+0.1000" in text


def test_rank_mode_of_prompt_names():
    assert rank_mode_of("rerank_onepass.v2") == "onepass"
    assert rank_mode_of("rerank_listwise.v1") == "listwise"
    with pytest.raises(ValueError):
        rank_mode_of("reason.v1")


@pytest.mark.slow
def test_ranking_eval_with_llm_reranker(settings, tmp_path):
    """5 users through the pipeline with the real SmolLM2 one-pass re-ranker and reasons."""
    from agent.engines.transformers_engine import TransformersEngine
    from agent.settings import Settings

    engine = TransformersEngine(Settings(llm="transformers"))  # converted model cached in the default home
    try:
        cfg = RankingConfig(users=5, prompts=("rerank_onepass.v1",), sasrec=False, stage=False, baselines=False, llm_all_users=True, reason_users=1, out=tmp_path, progress=False)
        result = run_ranking_eval(settings, cfg, engine=engine)
    finally:
        engine.close()
    check_report(tmp_path, result, {"pipeline:none", "pipeline:rerank_onepass.v1"})
    llm = result["systems"]["pipeline:rerank_onepass.v1"]
    assert llm["llm_asked"] == 5 and llm["llm_valid_rate"] is not None
    assert llm["candidate_set_mismatches"] == 0  # the re-ranker only permutes the candidates
    assert llm["reasons"] >= 1 and llm["grounded_rate"] is not None
    assert result["config"]["model_id"] and result["config"]["prompt_fingerprints"]["rerank_onepass.v1"]
    # the LLM only permutes the same 20 candidates: recall@20 cannot move
    assert llm["metrics"]["recall@20"]["mean"] == pytest.approx(result["systems"]["pipeline:none"]["metrics"]["recall@20"]["mean"])
