import dataclasses

import pytest

from agent.settings import Settings
from retrieval.catalog import Catalog, LoadReport
from retrieval.embed import Embedder
from retrieval.index import CatalogIndex, make_chroma_client


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def _slice(catalog, n: int, name: str = "slice-test") -> Catalog:
    items = dict(list(catalog.items.items())[:n])
    return Catalog(name=name, items=items, report=LoadReport(name, loaded=n))


def test_sync_is_incremental(tmp_path, office_catalog, embedder):
    settings = Settings(home=tmp_path)
    cat = _slice(office_catalog, 30)
    index = CatalogIndex(make_chroma_client(settings), cat.name, embedder)

    first = index.sync(cat, progress=False)
    assert (first.added, first.updated, first.unchanged, first.deleted) == (30, 0, 0, 0)
    assert index.count() == 30

    again = index.sync(cat, progress=False)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 30)

    # one item edited, one removed, one new -> exactly those are touched
    items = dict(cat.items)
    first_id, second_id = list(items)[:2]
    items[first_id] = dataclasses.replace(items[first_id], description="completely new copy")
    del items[second_id]
    extra = list(office_catalog.items.values())[40]
    items[extra.id] = extra
    changed = index.sync(Catalog(cat.name, items, cat.report), progress=False)
    assert (changed.added, changed.updated, changed.deleted, changed.unchanged) == (1, 1, 1, 28)
    assert index.count() == 30
    assert extra.id in index.embeddings([extra.id])


def test_crash_midway_leaves_an_index_a_rerun_completes(tmp_path, office_catalog, embedder):
    settings = Settings(home=tmp_path)
    cat = _slice(office_catalog, 25, name="crash-test")
    index = CatalogIndex(make_chroma_client(settings), cat.name, embedder)

    calls = {"n": 0}
    real_write = index._write

    def write_then_die(chunk):  # the process is killed while writing the third batch
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        real_write(chunk)

    index._write = write_then_die
    with pytest.raises(KeyboardInterrupt):
        index.sync(cat, progress=False, batch_size=10)
    assert index.count() == 20  # two durable batches

    # a fresh client (as after a restart) sees the partial index and completes it
    index = CatalogIndex(make_chroma_client(settings), cat.name, embedder)
    report = index.sync(cat, progress=False, batch_size=10)
    assert (report.added, report.unchanged) == (5, 20)
    assert index.count() == 25


def test_collection_is_per_embedding_model(tmp_path, embedder):
    from retrieval.index import collection_name

    assert collection_name("amazon-office-2014", embedder.model_id) != collection_name("amazon-office-2014", "other-model")


def test_query_embedding_equals_the_batch_path(embedder):
    """`encode_one` (the fast single-query path) gives the vector `encode` gives."""
    import numpy as np

    texts = ["blue gel pens, 12 pack", "HP 61 black ink cartridge", "a stapler that takes 20 sheets"]
    batch = embedder.encode(texts)
    for text, expected in zip(texts, batch):
        one = embedder.encode_one(text)
        assert one.dtype == np.float32 and one.shape == expected.shape
        assert np.allclose(one, expected, atol=1e-5) and abs(float(np.linalg.norm(one)) - 1.0) < 1e-5
