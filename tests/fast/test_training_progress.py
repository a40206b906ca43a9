"""Training shows one progress bar per model, with the epoch loss (and the validation score) in
its postfix: SASRec (and the text model, which trains with SASRec's loop) and the learned ranker.
Written to a log, a bar redraws on a timer only (retrieval/progress.py), never once per epoch or
boosting round: with the timer out of reach, a bar is its first draw and its final one."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

import retrieval.progress
from retrieval.learned_ranker import LearnedRanker, RankerConfig
from retrieval.sasrec import SASRecConfig, SASRecRecommender

ITEMS = [f"i{k}" for k in range(30)]


def _histories(n_users: int = 120) -> dict[str, list[str]]:
    rng = random.Random(0)
    out = {}
    for u in range(n_users):
        k = rng.randrange(len(ITEMS) - 6)
        out[f"u{u}"] = ITEMS[k : k + rng.randrange(3, 6)]
    return out


def _draws(stderr: str) -> list[str]:
    """Every redraw of every bar (tqdm ends a redraw with a carriage return or a newline)."""
    return [piece.strip() for piece in re.split(r"[\r\n]", stderr) if piece.strip()]


@pytest.fixture(autouse=True)
def no_timed_redraws(monkeypatch):
    monkeypatch.setattr(retrieval.progress, "LOG_INTERVAL_S", 1e6)


def test_sasrec_training_is_one_bar_with_loss_and_validation_in_the_postfix(capsys):
    model = SASRecRecommender(ITEMS, SASRecConfig(dim=16, n_blocks=1, batch_size=32), threads=1)
    report = model.fit(_histories(), epochs=12, patience=100, progress=True)
    draws = _draws(capsys.readouterr().err)
    assert report.epochs_run == 12
    assert all(d.startswith("SASRec:") for d in draws), draws
    assert len(draws) == 2, draws  # the first draw and the final one, not one per epoch
    assert "12/12" in draws[-1] and re.search(r"loss=\d+\.\d{3}", draws[-1]) and "val_ndcg@10=" in draws[-1] and "best_epoch=" in draws[-1]


def test_a_refit_without_validation_is_its_own_labelled_bar(capsys):
    model = SASRecRecommender(ITEMS, SASRecConfig(dim=16, n_blocks=1, batch_size=32), threads=1)
    model.fit(_histories(), epochs=5, validate=False, progress=True)
    draws = _draws(capsys.readouterr().err)
    assert len(draws) == 2 and all(d.startswith("SASRec refit:") for d in draws), draws
    assert "5/5" in draws[-1] and "loss=" in draws[-1] and "val_ndcg" not in draws[-1]


def test_ranker_training_is_one_bar_of_boosting_rounds_with_the_validation_ndcg(capsys):
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(200):
        x = rng.normal(size=(20, 3)).astype(np.float32)
        y = np.zeros(20, dtype=np.float32)
        y[int(rng.integers(0, 20))] = 1.0
        x[y == 1, 0] += 2.5
        groups.append((x, y))
    ranker = LearnedRanker(["signal", "noise_a", "noise_b"], RankerConfig(num_leaves=7, min_child_samples=10, n_estimators=60, threads=1))
    report = ranker.fit(groups, progress=True)
    draws = _draws(capsys.readouterr().err)
    assert len(draws) == 2 and all(d.startswith("ranker:") for d in draws), draws
    rounds = re.search(r"(\d+)/60 ", draws[-1])
    assert rounds and int(rounds.group(1)) >= report.best_iteration and re.search(r"ndcg@10=\d\.\d{4}", draws[-1])


def test_no_bar_without_progress(capsys):
    SASRecRecommender(ITEMS, SASRecConfig(dim=16, n_blocks=1, batch_size=32), threads=1).fit(_histories(), epochs=3, progress=False)
    assert capsys.readouterr().err == ""
