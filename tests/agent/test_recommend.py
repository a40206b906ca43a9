"""Recommender end to end on the real catalog, index and interactions. Default tests use rank
mode "none" or scripted LLM answers (wrapping the real engine) so they stay fast; the full
real-model pipeline and the CLI happy path are marked slow."""

from __future__ import annotations

import json

import pytest

from agent.engines.base import InvalidOutput
from agent.errors import UnknownItem
from agent.recommend.pipeline import Recommender, RecommendRequest, RecommendResult
from retrieval.search import SearchFilters

PENS = "Pens & Refills"


@pytest.fixture(scope="module")
def user_history(office_interactions):
    """A real user with a long history (leave-one-out: the last item is not given)."""
    user = next(u for u, seq in sorted(office_interactions.items(), key=lambda kv: int(kv[0])) if len(seq) >= 10)
    return office_interactions[user][:-1]


@pytest.fixture(scope="module")
def make_recommender(settings, office_searcher):
    def make(engine, **kwargs):
        return Recommender(settings, engine=engine, searcher=office_searcher, n_candidates=8, collab="rrf", **kwargs)

    return make


def assert_catalog_items(result: RecommendResult, catalog) -> None:
    for rec in result.items:
        assert rec.item is catalog.items[rec.item.id]  # shown items are the catalog's own objects


def test_candidates_respect_filters_history_and_exclusions(make_recommender, transformers_engine, office_catalog, user_history):
    rec = make_recommender(transformers_engine)
    excluded = [c.item.id for c in rec.candidates(RecommendRequest(history=user_history))[0][:3]]
    for query in ("gel pens", None):
        req = RecommendRequest(query=query, history=user_history, exclude_ids=excluded, filters=SearchFilters(categories=(PENS,)), k=5, rank_mode="none", with_reasons=False)
        result = rec.recommend(req)
        assert result.items and result.n_candidates <= 8
        # words: search hits fused with the ranking stage's order of them; history only: the stage's own top n
        assert result.sources.get("ranker", 0) > 0 and (result.sources.get("semantic", 0) > 0) == (query is not None)
        assert result.llm_valid and result.fallback is None
        assert_catalog_items(result, office_catalog)
        for r in result.items:
            assert r.item.id not in user_history and r.item.id not in excluded
            assert PENS in r.item.categories
            assert r.llm_score is None and r.reason == "" and r.reason_source == ""
        assert set(result.timings_ms) == {"retrieval", "rank", "reasons", "total"}


def test_out_of_catalog_ids_from_the_llm_are_never_shown(scripted_engine, make_recommender, office_catalog, user_history):
    """Fake LLM answers (hand-written): the listwise ranking names invented ids and a real catalog
    item that is not a candidate; the reason is a scripted true sentence. Only candidates appear."""
    rec = make_recommender(None)
    cands = [c.item.id for c in rec.candidates(RecommendRequest(query="gel pens", history=user_history))[0]]
    outsider = next(i for i in office_catalog.items if i not in cands and i not in user_history)
    engine = scripted_engine(json_answer={"ranking": ["999999", outsider, "B", "NOT-AN-ID", "A"]}, batch_answers=[["You asked for gel pens, and this one is a pen you can write with every day."]])
    rec = make_recommender(engine, llm_weight=1.0)
    result = rec.recommend(RecommendRequest(query="gel pens", history=user_history, k=3, rank_mode="listwise"))
    shown = [r.item.id for r in result.items]
    assert result.llm_valid and result.fallback is None
    assert set(result.dropped) == {"999999", outsider, "NOT-AN-ID"}
    assert outsider not in shown and "999999" not in shown
    assert shown[:2] == [cands[1], cands[0]] and set(shown) <= set(cands)
    assert_catalog_items(result, office_catalog)
    assert all(r.grounded and r.reason_source in ("llm", "template") for r in result.items)


def test_malformed_llm_answer_falls_back_without_an_exception(scripted_engine, make_recommender, user_history):
    engine = scripted_engine(raise_error=InvalidOutput("not JSON", raw="{\"rank"))
    rec = make_recommender(engine)
    plain = rec.recommend(RecommendRequest(query="stapler", history=user_history, k=4, rank_mode="none", with_reasons=False))
    result = rec.recommend(RecommendRequest(query="stapler", history=user_history, k=4, rank_mode="listwise", with_reasons=True, llm_reasons=True))
    assert result.llm_valid is False and result.fallback.startswith("InvalidOutput")
    assert [r.item.id for r in result.items] == [r.item.id for r in plain.items]  # retriever order
    assert all(r.reason_source == "template" and r.grounded for r in result.items)


def test_explain(scripted_engine, make_recommender, office_catalog):
    engine = scripted_engine(batch_answers=[["These Swingline staplers come in 99 colours."], ["This Swingline stapler handles 20 sheets, as you asked."]])
    rec = make_recommender(engine)
    text, grounded = rec.explain("277", RecommendRequest(query="a stapler"))
    assert grounded and text == "This Swingline stapler handles 20 sheets, as you asked."
    with pytest.raises(UnknownItem):
        rec.explain("no-such-item", RecommendRequest(query="a stapler"))


def test_bad_requests_are_rejected_clearly(make_recommender):
    rec = make_recommender(None)
    with pytest.raises(ValueError, match="rank_mode"):
        rec.recommend(RecommendRequest(query="pens", rank_mode="best"))
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend(RecommendRequest(query="pens", k=50))


def test_cli_unknown_user_exits_2(settings):
    from typer.testing import CliRunner

    from agent.entrypoints.cli import app

    result = CliRunner().invoke(app, ["--home", str(settings.home), "recommend", "--user", "no-such-user", "--catalog", "amazon-office-2014"])
    assert result.exit_code == 2
    assert "unknown user" in (result.output + (result.stderr if hasattr(result, "stderr") else ""))


def test_calibration_prior_is_computed_once_per_recommender(scripted_engine, make_recommender, user_history):
    """The content-free prior costs a forward pass: the Recommender keeps its Reranker so that
    only the first request pays it (the second request makes one scoring call, not two)."""
    engine = scripted_engine()
    rec = make_recommender(engine)
    req = RecommendRequest(query="gel pens", history=user_history, k=2, rank_mode="onepass", with_reasons=False)
    rec.recommend(req)
    first = sum(kind == "score_choices" for kind, _ in engine.calls)
    rec.recommend(req)
    second = sum(kind == "score_choices" for kind, _ in engine.calls) - first
    assert (first, second) == (2, 1)
    assert rec.reranker(engine, "onepass") is rec.reranker(engine, "onepass")


@pytest.mark.slow
def test_full_pipeline_real_model(make_recommender, transformers_engine, office_catalog, user_history):
    rec = make_recommender(transformers_engine)
    result = rec.recommend(RecommendRequest(query="gel pens", history=user_history, k=2, rank_mode="onepass"))
    assert result.llm_valid, result.fallback
    assert len(result.items) == 2
    assert_catalog_items(result, office_catalog)
    for r in result.items:
        assert r.llm_score is not None and r.reason and r.grounded
        assert r.reason_source in ("llm", "llm-retry", "template")


@pytest.mark.slow
def test_cli_json(settings, office_interactions, office_searcher):
    from typer.testing import CliRunner

    from agent.entrypoints.cli import app

    user = sorted(office_interactions)[0]
    result = CliRunner().invoke(app, ["--home", str(settings.home), "recommend", "--user", user, "--k", "2", "--json", "--query", "pens"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout if hasattr(result, "stdout") else result.output)
    assert len(payload["items"]) == 2 and all("grounded" in i for i in payload["items"])


def test_a_quiet_shredder_comes_first_on_the_real_catalog(settings, office_searcher):
    """"I need a quiet paper shredder": every candidate whose record says quiet (or silent,
    whisper...) is shown before those that do not, whatever order the ranker gave."""
    from agent.dialogue.rules import feature_words
    from agent.facts import has_feature, must_haves

    query = "I need a quiet paper shredder for my home office"
    must_have = must_haves(feature_words(query))
    assert must_have == ("quiet",)
    rec = Recommender(settings, searcher=office_searcher, n_candidates=20, collab="none")
    result = rec.recommend(RecommendRequest(query=query, k=5, rank_mode="none", with_reasons=False, must_have=must_have))
    quiet = [has_feature(r.item, "quiet") for r in result.items]
    assert quiet[0] and quiet == sorted(quiet, reverse=True), [(r.item.id, r.item.title) for r in result.items]
    assert result.unmet == []
