"""The per-catalog settings search of the ranking stage (retrieval/ranker_search.py): a shallower
depth profile is an exact restriction of deeper features; `train_ranking_stage` saves what it
chose in the ranker's meta, serving reuses it, and the choice never depends on the test items."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.recommend.ltr import RankingStage
from retrieval.candidates import Shopper
from retrieval.learned_ranker import ItemTable, RankerConfig, feature_names
from retrieval.ranker_search import deepest, depth_profiles, ndcg10, restrict, select
from retrieval.registry import Registry
from tests.fast.test_learned_ranker import _histories, _items, _source_set

from .conftest import SHOP_GROUPS, SHOP_ROWS, own_models, write_shop


def _stage(depths):
    catalog = _items()
    histories = _histories(np.random.default_rng(4), 200)
    sources = _source_set(catalog, histories)
    table = ItemTable.build([catalog.items[i] for i in sources.item_ids], histories)
    return RankingStage(sources, table, None, depths), histories


def test_a_shallower_profile_is_the_restriction_of_deeper_features():
    shallow = {"popularity": 3, "cooc": 4, "dense_hist": 2, "bm25_hist": 0}
    deep = {"popularity": 12, "cooc": 15, "dense_hist": 9, "bm25_hist": 0}
    deep_stage, histories = _stage(deep)
    shallow_stage, _ = _stage(shallow)
    names = feature_names(deep_stage.feature_sources)
    for seq in list(histories.values())[:30]:
        shopper = Shopper(history=seq[:-1])
        scored = deep_stage.score([shopper])[0]
        cands = deep_stage.candidates(scored)
        # the candidate positions ride along as the "labels": restrict filters them with the rows
        x, kept = restrict((deep_stage.feature_matrix(scored, shopper, cands), cands.astype(np.float64)), names, deep_stage.feature_sources, shallow)
        want_cands = shallow_stage.candidates(scored)
        want = shallow_stage.feature_matrix(scored, shopper, want_cands)
        kept = kept.astype(int)
        assert set(want_cands.tolist()) <= set(kept.tolist()) and len(want_cands) < len(cands)
        for p in set(kept.tolist()) - set(want_cands.tolist()):  # only items tied with a source's last nominee
            assert any(scored.scores[s][p] == scored.scores[s][scored.top(s, d)[-1]] for s, d in shallow.items() if d and s in scored.scores)
        rows = {int(p): r for p, r in zip(kept, x)}
        for p, r in zip(want_cands, want):
            np.testing.assert_allclose(rows[int(p)], r, rtol=1e-6)


def test_profiles_halve_only_the_named_sources_and_deepest_covers_them():
    profiles = depth_profiles({"cooc": 200, "bm25_hist": 51, "dense_query": 100}, ("cooc", "bm25_hist"))
    assert profiles["default"] == {"cooc": 200, "bm25_hist": 51, "dense_query": 100}
    assert profiles["half"] == {"cooc": 100, "bm25_hist": 25, "dense_query": 100}
    assert deepest(profiles) == profiles["default"]


def test_ndcg10_counts_a_missed_item_as_zero():
    assert ndcg10(np.array([0.3, 0.9]), np.array([1.0, 0.0])) == pytest.approx(1 / np.log2(3))
    assert ndcg10(np.zeros(0), np.zeros(0)) == 0.0


def test_select_keeps_the_defaults_on_too_few_users():
    stage, histories = _stage({"popularity": 10, "cooc": 10})
    names = feature_names(stage.feature_sources)
    groups = []
    for seq in list(histories.values())[:40]:
        shopper = Shopper(history=seq[:-1])
        scored = stage.score([shopper])[0]
        cands = stage.candidates(scored)
        groups.append((stage.feature_matrix(scored, shopper, cands), (cands == stage.sources.position[seq[-1]]).astype(np.float32)))
    chosen = select(groups, names, stage.feature_sources, {"default": {"popularity": 10, "cooc": 10}}, RankerConfig(num_leaves=9))
    assert chosen.profile == "default" and chosen.config.num_leaves == 9 and "why" in chosen.tried[0]


def _register(settings, name, folder, last_item_elsewhere: bool):
    """The tiny shop with 150 shoppers; `last_item_elsewhere` changes only each shopper's last
    (test) item, to an item of another product group."""
    spec = write_shop(folder, users=150)
    if last_item_elsewhere:
        histories = json.loads((folder / "events.json").read_text())
        for n, user in enumerate(sorted(histories, key=lambda u: int(u[1:]))):
            histories[user][-1] = SHOP_GROUPS[(n + 1) % 4][0]
        (folder / "events.json").write_text(json.dumps(histories))
    Registry(settings).add(name, spec, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Rankers trained (with the search) on two catalogs that differ only in the test items."""
    from agent.recommend.ltr import SourceModels, train_ranking_stage
    from agent.settings import Settings
    from retrieval.search import open_searcher

    tmp = tmp_path_factory.mktemp("ranker-search")
    settings = Settings(home=own_models(tmp / "home"), chroma_url=None, llm="transformers")
    out = {}
    for name, changed in (("search-a", False), ("search-b", True)):
        _register(settings, name, tmp / name, changed)
        searcher = open_searcher(settings, name, progress=False)
        out[name] = train_ranking_stage(settings, name, searcher=searcher, models=SourceModels(), progress=False)
    return settings, out


def test_chosen_settings_are_saved_and_reused_at_serving(trained):
    from agent.recommend.ltr import load_ranking_stage, ranker_path
    from retrieval.learned_ranker import LearnedRanker
    from retrieval.search import open_searcher

    settings, out = trained
    ranker, info = out["search-a"]
    search = ranker.meta["search"]
    assert search["holdout_users"] >= 20 and len(search["tried"]) == 5  # 4 tree settings, then the other depth profile
    assert all("ndcg10" in t for t in search["tried"])
    assert ranker.meta["depths"] == search["depths"]
    assert {k: getattr(ranker.config, k) for k in search["ranker"]} == search["ranker"]
    saved = LearnedRanker.load(ranker_path(settings, "search-a"))
    assert saved.meta["search"] == search and saved.config == ranker.config
    stage = load_ranking_stage(settings, "search-a", open_searcher(settings, "search-a", progress=False))
    assert stage is not None and stage.depths == search["depths"] and stage.ranker.config == ranker.config
    assert info["search_seconds"] >= 0 and len(SHOP_ROWS) == len(stage.sources.item_ids)


def test_the_search_never_reads_the_test_items(trained):
    _settings, out = trained
    a, b = (out[n][0] for n in ("search-a", "search-b"))
    assert a.meta["search"]["tried"] == b.meta["search"]["tried"]
    assert a.meta["depths"] == b.meta["depths"] and a.config == b.config


def _write_splits(folder, *, test_elsewhere: bool):
    """The tiny shop with published splits for 150 shoppers: valid row = second-to-last item,
    test row = last item (moved to another product group with `test_elsewhere`)."""
    import csv

    from retrieval.registry import FeedSpec

    spec = write_shop(folder, users=150)
    histories = json.loads((folder / "events.json").read_text())
    files = {}
    for period in ("valid", "test"):
        files[period] = folder / f"{period}.csv"
        with files[period].open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "history_item_id", "item_id"])
            for n, (user, seq) in enumerate(histories.items()):
                if period == "valid":
                    writer.writerow([user, json.dumps(seq[:-2]), seq[-2]])
                else:
                    writer.writerow([user, json.dumps(seq[:-1]), SHOP_GROUPS[(n + 1) % 4][0] if test_elsewhere else seq[-1]])
    return FeedSpec(spec.items, valid_rows=str(files["valid"]), test_rows=str(files["test"]))


def test_the_row_protocol_chooses_its_settings_on_valid_rows_only(tmp_path):
    from agent.settings import Settings
    from evals.ranking_rows import RowsConfig, run_rows_eval

    settings = Settings(home=own_models(tmp_path / "home"), chroma_url=None, llm="transformers")
    searches = []
    for name, changed in (("rows-a", False), ("rows-b", True)):
        Registry(settings).add(name, _write_splits(tmp_path / name, test_elsewhere=changed), progress=False)
        cfg = RowsConfig(catalog=name, rows="test", sources=("popularity", "cooc", "dense_hist", "bm25_hist"), out=tmp_path / f"out-{name}", progress=False)
        result = run_rows_eval(settings, cfg)
        searches.append(result["ranker"]["search"])
        assert "union:ltr" in result["systems"]
    assert searches[0]["holdout_users"] == 30 and len(searches[0]["tried"]) == 5
    assert searches[0] == {**searches[1], "seconds": searches[0]["seconds"]}
