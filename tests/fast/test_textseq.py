"""TextSeq (retrieval/textseq.py) on synthetic data whose right answer is known: items come in two
text clusters, every history alternates cluster A -> cluster B, and one cluster-B item never occurs
in training. Text vectors are injected (no embedding model); each fit takes well under a second."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from retrieval.catalog import Item
from retrieval.config import RetrievalConfig
from retrieval.textseq import TextSeqConfig, TextSeqRecommender, embed_model_id, item_text, load_or_train_textseq, textseq_path

N_PER_CLUSTER = 20
ITEM_IDS = [f"i{i}" for i in range(2 * N_PER_CLUSTER)]
CLUSTER_A = ITEM_IDS[:N_PER_CLUSTER]
CLUSTER_B = ITEM_IDS[N_PER_CLUSTER:]
COLD = CLUSTER_B[-1]  # a cluster-B item that no history contains
SMALL = TextSeqConfig(dim=16, n_blocks=1, max_len=10, seed=0, use_id=True)  # the id path too (the default is text alone)


def _vectors(seed: int = 0, dim: int = 16, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre_a, centre_b = rng.normal(size=dim), rng.normal(size=dim)
    rows = [(centre_a if i < N_PER_CLUSTER else centre_b) + noise * rng.normal(size=dim) for i in range(len(ITEM_IDS))]
    vectors = np.stack(rows).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _histories(n_users: int = 300, seed: int = 0) -> dict[str, list[str]]:
    """Alternating A, B, A, ... (or B, A, ...) of length 3-7; COLD never appears."""
    rng = random.Random(seed)
    warm_b = [i for i in CLUSTER_B if i != COLD]
    out = {}
    for u in range(n_users):
        start, length = rng.randrange(2), rng.randrange(3, 8)
        out[f"u{u}"] = [rng.choice(CLUSTER_A if (start + k) % 2 == 0 else warm_b) for k in range(length)]
    return out


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _vectors()


@pytest.fixture(scope="module")
def fitted(vectors: np.ndarray) -> TextSeqRecommender:
    model = TextSeqRecommender(ITEM_IDS, vectors, SMALL)
    model.fit(_histories(), epochs=30, progress=False)
    return model


@pytest.mark.parametrize("use_id", [True, False])
def test_unseen_item_of_the_right_cluster_outranks_the_wrong_cluster(vectors: np.ndarray, use_id: bool) -> None:
    model = TextSeqRecommender(ITEM_IDS, vectors, replace(SMALL, use_id=use_id))
    model.fit(_histories(), epochs=30, progress=False)
    scores = dict(zip(model.item_ids, model.score([CLUSTER_B[0], CLUSTER_A[3]]), strict=True))  # ends in A: B is next
    assert all(scores[COLD] > scores[a] for a in CLUSTER_A), (scores[COLD], max(scores[a] for a in CLUSTER_A))
    top = [i for i, _ in model.recommend([CLUSTER_B[0], CLUSTER_A[3]], k=len(CLUSTER_B) - 1)]  # all of B but the history's
    assert COLD in top and not set(top) & set(CLUSTER_A)


def test_unseen_items_get_no_id_vector(fitted: TextSeqRecommender) -> None:
    items = fitted.net.items  # type: ignore[union-attr]
    cold = fitted.item_ids.index(COLD)
    assert items.id_mask[cold].item() == 0.0 and items.id_mask.sum().item() == len(ITEM_IDS) - 1
    assert np.isfinite(fitted.score([]).astype(np.float64)).all()  # an empty history still gets a row


def test_popularity_correction_is_log_count_of_the_fitted_histories(fitted: TextSeqRecommender) -> None:
    """Scores = logits - beta * log(1 + count), counts from what the model trained on: with early
    stopping, that excludes each history's last (validation) item."""
    from collections import Counter

    from retrieval.collab import leave_one_out

    train, _ = leave_one_out(_histories())
    counts = Counter(i for h in train.values() for i in h)
    assert fitted.config.popularity_correction == 1.0  # the default (pointwise mutual information)
    expected = np.log1p([counts[i] for i in fitted.item_ids])
    assert np.allclose(fitted.log_counts, expected) and fitted.log_counts[fitted.item_ids.index(COLD)] == 0.0
    histories = list(_histories(10, seed=3).values())
    corrected = fitted.score_batch(histories)
    fitted.config = replace(fitted.config, popularity_correction=0.0)
    try:
        raw = fitted.score_batch(histories)
    finally:
        fitted.config = replace(fitted.config, popularity_correction=1.0)
    assert np.allclose(corrected, raw - expected, atol=1e-5)
    assert not np.allclose(corrected, raw)


def test_fit_is_deterministic(vectors: np.ndarray, fitted: TextSeqRecommender) -> None:
    again = TextSeqRecommender(ITEM_IDS, vectors, SMALL)
    again.fit(_histories(), epochs=30, progress=False)
    histories = list(_histories(20, seed=5).values())
    assert np.array_equal(again.score_batch(histories), fitted.score_batch(histories))


def test_save_load_round_trip_gives_identical_scores(tmp_path: Path, fitted: TextSeqRecommender) -> None:
    fitted.save(tmp_path / "t.pt")
    again = TextSeqRecommender.load(tmp_path / "t.pt")
    assert again.item_ids == fitted.item_ids and again.config == fitted.config
    assert np.array_equal(again.text_vectors, fitted.text_vectors)
    histories = list(_histories(20, seed=7).values()) + [[], ["unknown"]]
    assert np.array_equal(again.score_batch(histories), fitted.score_batch(histories))
    assert again.report == fitted.report


def test_constructor_rejects_misaligned_vectors(vectors: np.ndarray) -> None:
    with pytest.raises(ValueError):
        TextSeqRecommender(ITEM_IDS[:-1], vectors)


# --- cache -----------------------------------------------------------------------------------


class _FakeEmbedder:
    """Stands in for Embedder: the cluster vectors, looked up by item text."""

    def __init__(self, model_id: str, by_text: dict[str, np.ndarray]) -> None:
        self.model_id, self.by_text, self.calls = model_id, by_text, 0

    def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        return np.stack([self.by_text[t] for t in texts])


def test_cache_fingerprint_and_train_false(tmp_path: Path, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import retrieval.registry as registry

    settings = RetrievalConfig(data_dir=tmp_path / "data", home=tmp_path / "home")
    items = {i: Item(id=i, title=f"item {i} of cluster {'A' if i in CLUSTER_A else 'B'}", brand="Acme", categories=("Office", "Things")) for i in ITEM_IDS}
    state = {"items": items, "interactions": _histories(60)}
    monkeypatch.setattr(registry, "load_catalog", lambda config, name: SimpleNamespace(items=state["items"]))
    monkeypatch.setattr(registry, "load_interactions", lambda config, name: state["interactions"])
    embedder = _FakeEmbedder(embed_model_id(settings), {item_text(items[i]): vectors[k] for k, i in enumerate(ITEM_IDS)})
    config = replace(SMALL, seed=settings.seed)

    assert load_or_train_textseq(settings, "tiny", config=config, epochs=2, train=False) is None  # nothing cached
    model = load_or_train_textseq(settings, "tiny", config=config, epochs=2, progress=False, embedder=embedder)  # type: ignore[arg-type]
    assert model is not None and textseq_path(settings, "tiny").is_file() and embedder.calls == 1
    cached = load_or_train_textseq(settings, "tiny", config=config, epochs=2, train=False)
    assert cached is not None
    assert np.array_equal(cached.score_batch([["i1", "i25"]]), model.score_batch([["i1", "i25"]]))

    state["interactions"] = {**state["interactions"], "u0": [*state["interactions"]["u0"], "i2", "i22"]}  # new history
    assert load_or_train_textseq(settings, "tiny", config=config, epochs=2, train=False) is None
    state["interactions"] = _histories(60)
    assert load_or_train_textseq(settings, "tiny", config=config, epochs=2, train=False) is not None  # back to fresh
    state["items"] = {**items, "i3": replace(items["i3"], title="a renamed item")}  # new item text
    assert load_or_train_textseq(settings, "tiny", config=config, epochs=2, train=False) is None
    state["items"] = items
    assert load_or_train_textseq(settings, "tiny", config=replace(config, use_id=not config.use_id), epochs=2, train=False) is None  # other config
    assert embedder.calls == 1  # checking the cache never embeds
