"""The published row protocol (retrieval.rows, evals.ranking_rows): what models may learn from
for each period, masked vs unmasked scoring, and a shop's catalog declaring its splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evals.ranking_rows import row_runs
from retrieval.candidates import Shopper, SourceSet
from retrieval.catalog import CatalogError
from retrieval.collab import PopularityRecommender
from retrieval.registry import FeedSpec, Registry
from retrieval.rows import Row, first_histories, read_rows, sequences, training_histories

from .conftest import share_models

# alice: valid steps a1 -> v1 -> v2, then test steps v3, t1. bob: only in test. carol: only in valid.
VALID = [("alice", ["a1"], "v1"), ("alice", ["a1", "v1"], "v2"), ("carol", ["c1", "c2"], "v4")]
TEST = [("alice", ["a1", "v1", "v2"], "t1"), ("alice", ["a1", "v1", "v2", "t1"], "t2"), ("bob", ["b1"], "t3"), ("bob", ["b1", "t3"], "t4")]


def write_rows(path: Path, rows: list[tuple[str, list[str], str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "history_item_title", "history_item_id", "item_id"])
        for user, history, target in rows:
            writer.writerow([user, "[]", json.dumps(history), target])
    return path


@pytest.fixture
def splits(tmp_path: Path) -> tuple[list[Row], list[Row]]:
    return read_rows(write_rows(tmp_path / "valid.csv", VALID)), read_rows(write_rows(tmp_path / "test.csv", TEST))


def test_sequences_and_first_histories(splits):
    valid, test = splits
    assert sequences(valid) == {"alice": ["a1", "v1", "v2"], "carol": ["c1", "c2", "v4"]}
    assert first_histories(test) == {"alice": ["a1", "v1", "v2"], "bob": ["b1"]}


def test_test_period_training_sees_valid_targets_but_no_test_target(splits):
    valid, test = splits
    hist = training_histories(valid, test, "test")
    assert hist == {"alice": ["a1", "v1", "v2"], "carol": ["c1", "c2", "v4"], "bob": ["b1"]}
    seen = {i for s in hist.values() for i in s}
    assert not seen & {r.target for r in test}
    assert "t3" not in seen  # bob's later test row carries t3 in its history: only the first row counts


def test_valid_period_training_sees_no_valid_target(splits):
    valid, test = splits
    hist = training_histories(valid, test, "valid")
    # alice has valid rows: her test history (which holds v1, v2) must not be used
    assert hist == {"alice": ["a1"], "carol": ["c1", "c2"], "bob": ["b1"]}
    assert not {i for s in hist.values() for i in s} & {r.target for r in valid}
    with pytest.raises(ValueError, match="period"):
        training_histories(valid, test, "train")


def test_masked_and_unmasked_runs():
    rows = [Row("u", ("x", "y"), "x"), Row("v", ("x",), "z")]
    # row 0: the target is a history item ranked first; row 1: a history item outranks the target
    rankings = [["x", "a", "b"], ["x", "z", *[f"i{k}" for k in range(12)]]]
    targets, unmasked = row_runs(rows, rankings, masked=False)
    _, masked = row_runs(rows, rankings, masked=True)
    assert targets == {"0": "x", "1": "z"}
    assert unmasked == {"0": ["x", "a", "b"], "1": ["x", "z", *[f"i{k}" for k in range(8)]]}
    assert masked == {"0": ["a", "b"], "1": ["z", *[f"i{k}" for k in range(9)]]}  # cut at 10 after masking


def test_sources_may_recommend_history_items_only_when_unmasked():
    items = ["a", "b", "c"]
    pop = PopularityRecommender(items).fit({"u1": ["a", "a", "b"], "u2": ["a"]})
    sources = SourceSet(item_ids=items, models={"popularity": pop})
    masked, unmasked = sources.score([Shopper(history=["a"]), Shopper(history=["a"], mask_history=False)])
    assert masked.top("popularity", 1).tolist() == [1]
    assert unmasked.top("popularity", 1).tolist() == [0]


def test_bad_split_files_fail_clearly(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("user_id,item_id\nu,1\n")
    with pytest.raises(CatalogError, match="history_item_id"):
        read_rows(path)
    path.write_text('user_id,history_item_id,item_id\nu,"[1, 2",3\n')
    with pytest.raises(CatalogError, match=r"bad.csv:2: .*JSON list"):
        read_rows(path)
    good = write_rows(tmp_path / "ok.csv", [("u", ["1"], "9")])
    with pytest.raises(CatalogError, match="not in the catalog"):
        read_rows(good, known={"1", "2"})


def test_catalog_with_splits_and_no_events_learns_from_what_precedes_the_test_period(tmp_path: Path):
    from agent.settings import Settings

    feed = tmp_path / "items.csv"
    with feed.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title"])
        for item in ["a1", "v1", "v2", "v4", "c1", "c2", "b1", "t1", "t2", "t3", "t4"]:
            writer.writerow([item, f"Product {item}"])
    valid, test = write_rows(tmp_path / "valid.csv", VALID), write_rows(tmp_path / "test.csv", TEST)
    settings = Settings(home=share_models(tmp_path / "home"), chroma_url=None)
    registry = Registry(settings)
    registry.add("rowshop", FeedSpec(str(feed), valid_rows=str(valid), test_rows=str(test)), progress=False)
    assert registry.split_files("rowshop") == {"valid": valid.resolve(), "test": test.resolve()}
    assert registry.interactions("rowshop") == {"alice": ["a1", "v1", "v2"], "carol": ["c1", "c2", "v4"], "bob": ["b1"]}
