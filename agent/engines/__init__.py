"""LLM backends behind one interface (`LLMEngine`), chosen by `settings.llm`.

Importing this package is cheap: torch / transformers / vllm / openai are imported only when
`make_engine` builds the engine that needs them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from agent.engines.base import (
    ContextOverflow,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidOutput,
    LLMEngine,
    Message,
)
from agent.engines.breaker import BreakerEngine, CircuitBreaker, CircuitOpen
from agent.settings import Settings

__all__ = [
    "BreakerEngine",
    "CircuitBreaker",
    "CircuitOpen",
    "ContextOverflow",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "InvalidOutput",
    "LLMEngine",
    "LazyEngine",
    "Message",
    "engine_kind",
    "make_engine",
]

log = logging.getLogger(__name__)


def engine_kind(settings: Settings) -> str:
    """The backend `settings.llm` names; "auto" is llamacpp for a quantised model (an added model or
    a .gguf file) when llama-cpp-python is installed, else transformers. Why: llama.cpp runs the
    1.5B Q4_K_M model as it is, at 12x transformers' decode speed on 2 cores with a tenth of the
    memory (bench/engines.py; the table is in docs/configuration.md), while the packaged 135M model
    keeps the measured transformers path (batched generation, LoRA adapters)."""
    if settings.llm != "auto":
        return settings.llm
    if settings.llm_model is None:
        return "transformers"
    from agent.engines.model_registry import known_model

    quantised = known_model(str(settings.llm_model)) is not None or str(settings.llm_model).lower().endswith(".gguf")
    if quantised:
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is not None:
            return "llamacpp"
    return "transformers"


def make_engine(settings: Settings, adapter: Path | str | None = None) -> LLMEngine:
    """Build the backend named by `settings.llm`: "transformers" (default, CPU in-process),
    "llamacpp" (in-process GGUF, CPU), "vllm" (in-process vLLM) or "openai" (any OpenAI-compatible server, e.g. `vllm serve`).

    `adapter` applies a LoRA adapter (e.g. `agent.train.ranker.ranker_adapter_path(settings, catalog)`):
    - transformers: its folder, merged into the weights at load time;
    - vllm: its folder, sent with every request as a LoRARequest (LLM(enable_lora=True));
    - openai: the adapter's *served name* (str), e.g. "ranker" for a server started with
      `--enable-lora --lora-modules ranker=PATH`; it replaces the model name in the requests.
      A folder (Path) raises ValueError: the client cannot load weights into a remote server."""
    kind = engine_kind(settings)
    if kind == "transformers":
        from agent.engines.transformers_engine import TransformersEngine

        return TransformersEngine(settings, adapter=adapter)
    if kind == "llamacpp":
        from agent.engines.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(settings, adapter=adapter)
    if kind == "vllm":
        try:
            from agent.engines.vllm_engine import VLLMEngine
        except ImportError as exc:
            raise EngineUnavailable(
                f"AISLE_LLM=vllm but vLLM cannot be imported ({exc}); install the extra with "
                "`bash scripts/install_vllm.sh --here` (a bare `pip install -e .[vllm]` pulls CUDA torchvision builds that break torch+cpu), or use AISLE_LLM=transformers / AISLE_LLM=openai with AISLE_LLM_URL."
            ) from exc
        return VLLMEngine(settings, adapter=adapter)
    if kind == "openai":
        try:
            from agent.engines.openai_engine import OpenAIEngine
        except ImportError as exc:
            raise EngineUnavailable(f"AISLE_LLM=openai but the OpenAI client cannot be imported ({exc}).") from exc
        if isinstance(adapter, Path):
            raise ValueError(
                f"AISLE_LLM=openai cannot load the adapter folder {adapter}: start the server with "
                f"`--enable-lora --lora-modules ranker={adapter}` and pass the served name (adapter=\"ranker\")"
            )
        return OpenAIEngine(settings, served_model=adapter)
    raise ValueError(f"unknown LLM backend {kind!r}; set AISLE_LLM to 'auto', 'transformers', 'llamacpp', 'vllm' or 'openai'")


class LazyEngine:
    """The engine of `settings` behind a circuit breaker, built on first use (thread-safe).

    `get` returns one `BreakerEngine` (breaker.py) for the life of this object: a failed build or
    a failing server makes its calls raise EngineUnavailable at once (callers degrade to retrieval
    order and template reasons) for a back-off of `llm_breaker_min_s` doubling to
    `llm_breaker_max_s`, after which one call tries again; the engine is rebuilt if it never
    loaded. So a server that is down at start-up, or restarts later, is used again without
    restarting aisle, and a hanging server costs one `llm_timeout_s` rather than one per call.
    `status()` is what health checks report.

    An engine passed in is used as given, unguarded: it is either already guarded (the agent's
    shared engine, handed to its recommenders) or a test's or an eval's own engine, where every
    call should reach the model (`status()` then always says "closed")."""

    def __init__(self, settings: Settings, engine: LLMEngine | None = None) -> None:
        self.settings = settings
        self._given = engine
        breaker = CircuitBreaker(min_s=settings.llm_breaker_min_s, max_s=settings.llm_breaker_max_s, name=f"LLM engine ({engine_kind(settings)})")
        self._guarded = BreakerEngine(lambda: make_engine(settings), breaker, kind=engine_kind(settings), probe_timeout_s=settings.llm_probe_timeout_s)
        self._tried = engine is not None
        self._lock = threading.Lock()

    def get(self) -> LLMEngine:
        """The engine. The first call builds it (so warm-up loads the model); if that fails, the
        engine is still returned: its calls fail fast, and retry the build after the back-off."""
        if self._given is not None:
            return self._given
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._guarded.load()
                except EngineError as exc:
                    log.error("LLM engine unavailable; continuing with retrieval order and template reasons, retrying with back-off: %s: %s", type(exc).__name__, exc)
            return self._guarded

    @property
    def error(self) -> str | None:
        """Why the engine is not usable now (its last failure), None when it is."""
        return self._guarded.breaker.error

    def status(self) -> dict[str, Any]:
        """{"state", "error", "retry_in_s", "failures"} for health checks.

        state: "closed" (calls go through; also before the first build), "open" (failing fast for
        retry_in_s more seconds), "half-open" (the next call, or the one in flight, is the trial),
        or "unavailable" (the engine has never been built and its last build failed; retry_in_s
        says when the next call tries again). retry_in_s is None when closed."""
        status = self._guarded.breaker.status()
        if status["state"] != "closed" and not self._guarded.built:
            status["state"] = "unavailable"
        return status
