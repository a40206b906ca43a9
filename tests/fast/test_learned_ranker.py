"""The ranking stage on small synthetic data where the right answer is known: candidate union and
recall, features, the LightGBM ranker learning the informative feature, and the LLM stage's gate
dropping a signal-less LLM score (and keeping an informative one)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.recommend.ltr import LLM_STAGE_NAMES, LLMStage, RankingStage, fit_llm_stage
from retrieval.candidates import Scored, Shopper, SourceSet, union
from retrieval.collab import CooccurrenceRecommender, PopularityRecommender
from retrieval.learned_ranker import ItemTable, LearnedRanker, RankerConfig, feature_names
from tests.fast.conftest import make_catalog

N_ITEMS = 40


def _items():
    rows = [
        {"id": f"i{k}", "title": f"item {k} {'pen' if k % 2 else 'paper'}", "brand": "A" if k < 20 else "B", "categories": ["Office", "Pens" if k % 2 else "Paper"], "price": 1.0 + k}
        for k in range(N_ITEMS)
    ]
    return make_catalog(rows)


def _histories(rng: np.random.Generator, n_users: int = 300) -> dict[str, list[str]]:
    """Users buy i(k) then i(k+1) (a strong sequential pattern), plus a random item."""
    out = {}
    for u in range(n_users):
        k = int(rng.integers(0, N_ITEMS - 2))
        noise = f"i{int(rng.integers(0, N_ITEMS))}"
        out[f"u{u}"] = [noise, f"i{k}", f"i{k + 1}"]
    return out


def _source_set(catalog, histories) -> SourceSet:
    ids = list(catalog.items)
    models = {"popularity": PopularityRecommender(ids).fit(histories), "cooc": CooccurrenceRecommender(ids, window=1).fit(histories)}
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return SourceSet(item_ids=ids, models=models, vectors=vectors, titles=[catalog.items[i].title for i in ids], available=np.ones(len(ids), dtype=bool))


def test_union_takes_each_source_at_its_depth_and_never_the_history():
    catalog = _items()
    rng = np.random.default_rng(1)
    histories = _histories(rng)
    sources = _source_set(catalog, histories)
    shopper = Shopper(history=["i3", "i4"], exclude=["i7"])
    scored = sources.score([shopper])[0]
    assert set(scored.scores) == {"popularity", "cooc", "dense_hist"}
    for name in scored.scores:
        top = scored.top(name, 5)
        assert len(top) == 5
        assert not {sources.item_ids[p] for p in top} & {"i3", "i4", "i7"}
    cands = union(scored, {"popularity": 3, "cooc": 5, "dense_hist": 0})
    expected = list(dict.fromkeys([*scored.top("popularity", 3).tolist(), *scored.top("cooc", 5).tolist()]))
    assert cands.tolist() == expected
    # the item after the last one bought is co-occurrence's first pick
    assert sources.item_ids[scored.top("cooc", 1)[0]] == "i5"
    # ranks: 1-based among allowed items, NaN where the source cannot score
    assert scored.ranks("cooc", scored.top("cooc", 3)).tolist() == [1.0, 2.0, 3.0]


def test_ranks_share_the_best_rank_on_ties_and_nan_for_banned_items():
    s = Scored({"x": np.array([3.0, 1.0, 3.0, -np.inf])}, np.array([True, True, True, False]))
    assert s.ranks("x", np.array([0, 1, 2, 3])).tolist()[:3] == [1.0, 3.0, 1.0]
    assert np.isnan(s.ranks("x", np.array([3]))[0])


def _groups(n_groups: int, informative: int, rng: np.random.Generator, n_features: int = 4, size: int = 20):
    """Groups where only feature `informative` says which row is the positive one."""
    out = []
    for _ in range(n_groups):
        x = rng.normal(size=(size, n_features)).astype(np.float32)
        y = np.zeros(size, dtype=np.float32)
        pos = int(rng.integers(0, size))
        y[pos] = 1.0
        x[pos, informative] += 2.5
        out.append((x, y))
    return out


def test_learned_ranker_finds_the_informative_feature_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    names = ["noise_a", "signal", "noise_b", "noise_c"]
    ranker = LearnedRanker(names, RankerConfig(num_leaves=7, min_child_samples=10, n_estimators=100, threads=1))
    report = ranker.fit(_groups(300, informative=1, rng=rng))
    assert max(report.importances, key=report.importances.get) == "signal"
    assert report.importances["signal"] > 0.5
    test = _groups(100, informative=1, rng=rng)
    hits = [int(np.argmax(ranker.predict(x)) == int(np.argmax(y))) for x, y in test]
    assert np.mean(hits) > 0.6  # chance is 1/20
    path = tmp_path / "r.lgb"
    ranker.save(path)
    loaded = LearnedRanker.load(path)
    assert loaded.names == names and loaded.report.importances == report.importances
    np.testing.assert_allclose(loaded.predict(test[0][0]), ranker.predict(test[0][0]))
    with pytest.raises(ValueError, match="expected 4 features"):
        ranker.predict(np.zeros((3, 2), dtype=np.float32))


def test_groups_without_a_positive_are_dropped_and_too_few_refused():
    rng = np.random.default_rng(0)
    groups = _groups(5, informative=0, rng=rng) + [(np.zeros((5, 4), dtype=np.float32), np.zeros(5, dtype=np.float32))] * 20
    with pytest.raises(ValueError, match="only 5 training groups"):
        LearnedRanker(["a", "b", "c", "d"]).fit(groups)


def _llm_groups(rng: np.random.Generator, n: int, llm_signal: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stage-1 top-20 groups: the positive is in the top 20 at a random rank; the LLM score is
    informative with strength `llm_signal` (0 = pure noise)."""
    out = []
    for _ in range(n):
        pos = min(int(rng.geometric(0.25)) - 1, 19)  # stage 1 is informative: the positive tends to be near the top
        s1 = np.sort(rng.normal(size=20))[::-1]
        llm = rng.random(20)
        llm[pos] += llm_signal
        y = np.zeros(20, dtype=np.float32)
        y[pos] = 1.0
        out.append((LLMStage.features(s1, llm), y))
    return out


def test_llm_stage_gate_drops_a_signal_less_llm_and_keeps_an_informative_one():
    rng = np.random.default_rng(0)
    noise, report = fit_llm_stage(_llm_groups(rng, 300, llm_signal=0.0))
    assert noise is None and report["kept"] is False and "did not beat" in report["why"]
    useful, report = fit_llm_stage(_llm_groups(rng, 300, llm_signal=1.5))
    assert useful is not None and report["kept"] is True
    assert report["importances"]["llm_score"] + report["importances"]["llm_rank"] > 0.5
    assert report["gate_ndcg10_with_llm"] > report["gate_ndcg10_stage1"]
    assert list(useful.names) == list(LLM_STAGE_NAMES)


def test_llm_stage_features_handle_a_fallback_answer():
    x = LLMStage.features(np.array([3.0, 2.0, 1.0]), np.array([np.nan, np.nan, np.nan]))
    assert x.shape == (3, 4) and x[:, 1].tolist() == [1.0, 2.0, 3.0] and np.isnan(x[:, 2:]).all()


def test_ranking_stage_orders_by_the_ranker_and_respects_filters():
    catalog = _items()
    rng = np.random.default_rng(2)
    histories = _histories(rng, 400)
    sources = _source_set(catalog, histories)
    table = ItemTable.build([catalog.items[i] for i in sources.item_ids], histories)
    stage = RankingStage(sources, table, None, {"popularity": 10, "cooc": 10, "dense_hist": 10})
    # train on "next item" groups from the same pattern, then the next item comes first
    groups = []
    for u, seq in list(histories.items())[:300]:
        shopper = Shopper(history=seq[:-1])
        scored = stage.score([shopper])[0]
        cands = stage.candidates(scored)
        y = (cands == sources.position[seq[-1]]).astype(np.float32)
        if y.sum():
            groups.append((stage.feature_matrix(scored, shopper, cands), y))
    ranker = LearnedRanker(feature_names(stage.feature_sources), RankerConfig(num_leaves=7, min_child_samples=10, n_estimators=100, threads=1))
    ranker.fit(groups)
    stage.ranker = ranker
    top = stage.recommend(Shopper(history=["i9", "i10"]), 3)
    assert top[0][0] == "i11"
    kept = stage.recommend(Shopper(history=["i9", "i10"]), 3, keep=lambda i: catalog.items[i].brand == "B")
    assert kept and all(catalog.items[i].brand == "B" for i, _ in kept)
    ordered = stage.order(Shopper(history=["i9", "i10"]), ["i30", "i11", "not-an-item"])
    assert [i for i, _ in ordered] == ["i11", "i30"]


def test_a_kept_llm_stage_reorders_the_top_and_a_failing_llm_leaves_it():
    """The serving path of the LLM stage: the scripted LLM puts its mass on the first stage's 10th
    item; a second stage trained where the LLM is informative moves it up. When the engine fails,
    the first stage's order stands."""
    from agent.engines.base import EngineUnavailable
    from agent.recommend.rank import Reranker
    from tests.fast.conftest import ScriptedEngine

    catalog = _items()
    rng = np.random.default_rng(3)
    histories = _histories(rng, 400)
    sources = _source_set(catalog, histories)
    table = ItemTable.build([catalog.items[i] for i in sources.item_ids], histories)
    stage = RankingStage(sources, table, None, {"popularity": 30, "cooc": 30, "dense_hist": 30})
    shopper = Shopper(history=["i9", "i10"])
    first = stage.recommend(shopper, 20)
    target = first[9][0]
    title = catalog.items[target].title

    def point_at_target(messages, choices):
        text = messages[-1]["content"]
        label = next((c for c in choices if f"ITEM {c}: {title} " in text), choices[0])
        return {c: (0.9 if c == label else 0.1 / (len(choices) - 1)) for c in choices}

    second, report = fit_llm_stage(_llm_groups(np.random.default_rng(4), 300, llm_signal=1.5))
    assert second is not None
    stage.llm = LLMStage(Reranker(ScriptedEngine(score_answer=point_at_target), mode="onepass", llm_weight=1.0, calibrate=False), second)
    stage.llm_catalog = catalog
    assert stage.recommend(shopper, 5)[0][0] == target
    stage.llm = LLMStage(Reranker(ScriptedEngine(raise_error=EngineUnavailable("down")), mode="onepass", llm_weight=1.0, calibrate=False), second)
    assert [i for i, _ in stage.recommend(shopper, 5)] == [i for i, _ in first[:5]]
