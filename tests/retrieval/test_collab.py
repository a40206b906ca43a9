"""Collaborative candidate source on the real amazon-office-2014 interactions (no mocks).

Default tests stay under ~30 s once numba has cached ranx's metrics (the very first ranx call
in a fresh venv compiles for ~50 s). The slow test trains (or loads the cached) full SASRec.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import Settings
from retrieval.collab import (
    CooccurrenceRecommender,
    PopularityRecommender,
    evaluate_leave_one_out,
    fuse_candidates,
    leave_one_out,
    sample_users,
)
from retrieval.registry import load_catalog, load_interactions
from retrieval.sasrec import SASRecConfig, SASRecRecommender, load_or_train_sasrec

CATALOG = "amazon-office-2014"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def interactions(settings: Settings) -> dict[str, list[str]]:
    return load_interactions(settings, CATALOG)


@pytest.fixture(scope="module")
def item_ids(settings: Settings) -> list[str]:
    return sorted(load_catalog(settings, CATALOG).items, key=int)


@pytest.fixture(scope="module")
def split(interactions: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, str]]:
    return leave_one_out(interactions)


def test_leave_one_out_holds_out_the_last_item(interactions: dict[str, list[str]]) -> None:
    train, held_out = leave_one_out(interactions)
    assert set(train) == set(held_out) == set(interactions)
    for user, seq in interactions.items():
        assert train[user] == seq[:-1] and held_out[user] == seq[-1]
    # validation split for early stopping: the second-to-last item, the test item nowhere
    fit, val = leave_one_out(train)
    user = next(iter(interactions))
    assert val[user] == interactions[user][-2]
    assert interactions[user][-1] not in fit[user]
    assert leave_one_out({"solo": ["1"]}) == ({}, {})


def test_sample_users_is_fixed(interactions: dict[str, list[str]]) -> None:
    a = sample_users(interactions, 1000, seed=0)
    assert a == sample_users(reversed(list(interactions)), 1000, seed=0)  # independent of input order
    assert len(set(a)) == 1000 and a != sample_users(interactions, 1000, seed=1)


def test_cooccurrence_beats_popularity(item_ids: list[str], split: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    train, held_out = split
    users = sample_users(held_out, 500, seed=0)
    pop = evaluate_leave_one_out(PopularityRecommender(item_ids).fit(train), train, held_out, users)
    cooc_model = CooccurrenceRecommender(item_ids).fit(train)
    cooc = evaluate_leave_one_out(cooc_model, train, held_out, users)
    assert cooc["ndcg@10"] > 2 * pop["ndcg@10"] + 0.01, (pop, cooc)
    # ranking contract: k results, no history items, ids from the catalog, best first
    history = train[users[0]]
    recs = cooc_model.recommend(history, k=10, exclude=[item_ids[0]])
    assert len(recs) == 10
    assert not {i for i, _ in recs} & (set(history) | {item_ids[0]})
    assert all(i in set(item_ids) for i, _ in recs)
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
    assert cooc_model.recommend(["no-such-item"], k=3)  # unknown history: popularity back-off


def test_sasrec_tiny_run_is_valid_and_deterministic(item_ids: list[str], split: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    train, _ = split
    users = sample_users(train, 300, seed=0)
    tiny = {u: train[u] for u in users}
    config = SASRecConfig(seed=0)
    tops = []
    for _ in range(2):
        model = SASRecRecommender(item_ids, config)
        report = model.fit(tiny, epochs=1, progress=False)
        assert report.epochs_run == 1 and report.best_val_ndcg10 is not None
        tops.append([model.recommend(train[u], k=10) for u in users[:20]])
    assert tops[0] == tops[1], "same seed, same data -> same top-10"
    catalog = set(item_ids)
    for user, recs in zip(users[:20], tops[0], strict=True):
        ids = [i for i, _ in recs]
        assert len(ids) == 10 == len(set(ids))
        assert not set(ids) & set(train[user]) and set(ids) <= catalog
    assert model.score(train[users[0]]).shape == (len(item_ids),)


def test_sasrec_save_load_round_trip(tmp_path: Path, item_ids: list[str], split: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    train, _ = split
    tiny = {u: train[u] for u in sample_users(train, 100, seed=1)}
    model = SASRecRecommender(item_ids, SASRecConfig(dim=16, n_blocks=1, max_len=10))
    model.fit(tiny, epochs=1, validate=False, progress=False)
    model.save(tmp_path / "m.pt")
    again = SASRecRecommender.load(tmp_path / "m.pt")
    history = next(iter(tiny.values()))
    assert again.item_ids == model.item_ids and again.config == model.config
    assert again.recommend(history, k=10) == model.recommend(history, k=10)


def test_fuse_candidates_weighted_rrf() -> None:
    semantic = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    collab = [("c", 12.0), ("d", 11.0), ("a", 3.0)]
    fused = fuse_candidates({"semantic": semantic, "collab": collab}, k=4)
    assert [i for i, _ in fused[:2]] == ["a", "c"]  # on both lists beats top of one
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    only_collab = fuse_candidates({"semantic": semantic, "collab": collab}, {"semantic": 0.0}, k=10)
    assert [i for i, _ in only_collab] == ["c", "d", "a"]
    heavy = fuse_candidates({"semantic": semantic, "collab": collab}, {"collab": 3.0}, k=1)
    assert heavy[0][0] == "c"
    assert fuse_candidates({}, k=5) == []


@pytest.mark.slow
def test_trained_sasrec_beats_popularity(settings: Settings, item_ids: list[str], split: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    """Full-catalog leave-one-out on 1,000 users (seed 0): the cached SASRec (trained first if
    missing, a few minutes on CPU) must clearly beat popularity; numbers go to the log."""
    train, held_out = split
    users = sample_users(held_out, 1000, seed=0)
    sasrec = load_or_train_sasrec(settings, CATALOG, progress=False)
    results = {
        "popularity": evaluate_leave_one_out(PopularityRecommender(item_ids).fit(train), train, held_out, users),
        "cooccurrence": evaluate_leave_one_out(CooccurrenceRecommender(item_ids).fit(train), train, held_out, users),
        "sasrec": evaluate_leave_one_out(sasrec, train, held_out, users),
    }
    print(results)
    assert results["sasrec"]["ndcg@10"] > 3 * results["popularity"]["ndcg@10"] + 0.02, results
    assert results["sasrec"]["recall@10"] > results["popularity"]["recall@10"] + 0.04, results
