"""LLM backends behind one interface (`LLMEngine`), chosen by `settings.llm`.

Importing this package is cheap: torch / transformers / vllm / openai are imported only when
`make_engine` builds the engine that needs them.
"""

from __future__ import annotations

import logging
import threading

from agent.engines.base import (
    ContextOverflow,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidOutput,
    LLMEngine,
    Message,
)
from agent.settings import Settings

__all__ = [
    "ContextOverflow",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "InvalidOutput",
    "LLMEngine",
    "LazyEngine",
    "Message",
    "make_engine",
]

log = logging.getLogger(__name__)


def make_engine(settings: Settings) -> LLMEngine:
    """Build the backend named by `settings.llm`: "transformers" (default, CPU in-process),
    "vllm" (in-process vLLM) or "openai" (any OpenAI-compatible server, e.g. `vllm serve`)."""
    kind = settings.llm
    if kind == "transformers":
        from agent.engines.transformers_engine import TransformersEngine

        return TransformersEngine(settings)
    if kind == "vllm":
        try:
            from agent.engines.vllm_engine import VLLMEngine
        except ImportError as exc:
            raise EngineUnavailable(
                f"AISLE_LLM=vllm but vLLM cannot be imported ({exc}); install the extra with "
                "`bash scripts/install_vllm.sh --here` (a bare `pip install -e .[vllm]` pulls CUDA torchvision builds that break torch+cpu), or use AISLE_LLM=transformers / AISLE_LLM=openai with AISLE_LLM_URL."
            ) from exc
        return VLLMEngine(settings)
    if kind == "openai":
        try:
            from agent.engines.openai_engine import OpenAIEngine
        except ImportError as exc:
            raise EngineUnavailable(f"AISLE_LLM=openai but the OpenAI client cannot be imported ({exc}).") from exc
        return OpenAIEngine(settings)
    raise ValueError(f"unknown LLM backend {kind!r}; set AISLE_LLM to 'transformers', 'vllm' or 'openai'")


class LazyEngine:
    """The engine of `settings`, built on first use (thread-safe). When it cannot load, `get`
    returns None and `error` says why, so callers degrade to retrieval order and template
    reasons instead of failing a request; the attempt is not repeated."""

    def __init__(self, settings: Settings, engine: LLMEngine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self.error: str | None = None
        self._lock = threading.Lock()

    def get(self) -> LLMEngine | None:
        with self._lock:
            if self._engine is None and self.error is None:
                try:
                    self._engine = make_engine(self.settings)
                except EngineError as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.error("LLM engine unavailable; continuing with retrieval order and template reasons: %s", self.error)
            return self._engine
