"""`aisle eval copy` end to end on a few real items: real catalog, real Chroma index in a temporary
home, real SmolLM2 generation, real MiniLM similarity and ROUGE-L.

Kept quick with 5 items, an index of those items plus 40 others (`pool`), and a small token
budget; the real 200-item run is `aisle eval copy --items 200` (see the README).
"""

from __future__ import annotations

import json

import pytest

from evals.copy_eval import RESULT_KEYS, description_query, format_report, run_copy_eval, select_eval_items


@pytest.fixture(scope="module")
def office_2018(settings):
    from retrieval.registry import load_catalog

    return load_catalog(settings, "amazon-office-2018")


def test_sample_is_seeded_and_queries_leave_out_title_words(office_2018):
    a = [it.id for it in select_eval_items(office_2018, 20, seed=0)]
    assert a == [it.id for it in select_eval_items(office_2018, 20, seed=0)]
    assert a != [it.id for it in select_eval_items(office_2018, 20, seed=1)]
    for item in select_eval_items(office_2018, 20, seed=0):
        query = description_query(item)
        title_words = {w.lower() for w in item.title.split()}
        assert 6 <= len(query.split()) <= 12
        assert not any(w.lower() in title_words and w.isalpha() and len(w) > 3 for w in query.split()), (query, item.title)


def test_copy_eval_end_to_end(settings, tmp_path):
    from agent.engines.transformers_engine import TransformersEngine
    from agent.settings import Settings

    engine = TransformersEngine(Settings(llm="transformers", llm_model=None))  # default home: the converted model is cached there
    try:
        result = run_copy_eval(settings, n_items=5, seed=0, batch_size=10, max_tokens=64, pool=40, engine=engine, progress=False, drafts=2)
    finally:
        engine.close()
    assert tuple(result) == RESULT_KEYS
    json.loads(json.dumps(result, default=str))  # serialisable as written by --out
    assert result["items"] == 5 and len(result["per_item"]) == 5
    g = result["generation"]
    assert g["ok"] + g["regenerated_ok"] + g["dropped"] + g["errors"] == 5
    for key in ("unsupported_share_before", "unsupported_share_after", "regenerated", "problem_kinds_first_try"):
        assert key in result["grounding"]
    for key in ("embedding_cosine_mean", "rougeL_f_mean", "copy_cosine_mean", "copy_rougeL_f_mean", "title_only_cosine_mean", "title_only_rougeL_f_mean", "title_plus_copy_cosine_mean"):
        assert key in result["similarity"]
    assert result["config"]["drafts"] == 2 and "cosine" in result["config"]["selection"]
    assert g["drafts_sampled"] >= 10
    r = result["retrieval"]
    assert r["index_size"] == 45
    assert r["reembedded"] == g["ok"] + g["regenerated_ok"], "only items that got copy are re-embedded"
    for side in ("cold", "generated"):
        assert set(r[side]) >= {"recall@10", "mrr", "median_rank"} and 0 <= r[side]["recall@10"] <= 1
    for row in result["per_item"]:
        assert row["rank_cold"] is None or row["rank_cold"] >= 1
        assert row["drafts"] in (2, 4)  # 2 sampled, 2 more when none passed
        if row["status"] in ("ok", "regenerated"):
            assert row["description"] and row["cosine_to_human"] is not None and row["drafts_passed"] >= 1
    assert "Recall@10" in format_report(result)
