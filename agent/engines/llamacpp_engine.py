"""The llama.cpp engine: a GGUF model run in-process by llama-cpp-python (optional extra `llamacpp`).

Why it exists: a quantised model stays quantised. The transformers engine de-quantises a GGUF into
float32 weights (Qwen2.5-Coder-1.5B: 6.7 GB on disk, about 15 GB of RAM, a 79 s load); llama.cpp
runs the 1.1 GB Q4_K_M file as it is, with its own CPU kernels, several times faster per token on
two cores (bench/llm_engines.py measures both on the same prompts). It implements every
`LLMEngine` method:

- chat / stream / batch: greedy unless temperature > 0; `batch` runs the conversations one after
  another (llama.cpp's Python binding decodes one sequence at a time), reusing the KV cache of the
  prompt prefix they share (the system prompt), so a batch pays its instructions once.
- chat_json: a JSON-schema grammar applied while decoding (llama.cpp's GBNF), then parsed and
  validated with jsonschema (the model is untrusted; the budget can still cut it short).
- score_choices: one forward pass, probability of each label token as the next token.
- banned words: the rule of agent/engines/bans.py as a logits processor.

Calls are serialised with a lock: the model and its KV cache are shared.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.engines.bans import BanTable, token_sequences
from agent.engines.base import (
    ContextOverflow,
    EngineUnavailable,
    LLMEngine,
    Message,
    banned_rows,
    check_labels,
    label_distribution,
    label_token,
    parse_json_answer,
)
from agent.settings import Settings


def gguf_file(settings: Settings) -> Path:
    """The GGUF file `settings.llm_model` names (an added model's name, a .gguf path, or unset for
    the packaged SmolLM2); EngineUnavailable saying what to set otherwise."""
    from agent.engines.model_registry import added_gguf, known_model
    from agent.engines.model_store import default_gguf_path

    if settings.llm_model is None:
        return default_gguf_path()
    known = known_model(str(settings.llm_model))
    if known is not None:
        return added_gguf(settings.models_dir, known.name)
    path = Path(settings.llm_model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    raise EngineUnavailable(
        f"AISLE_LLM=llamacpp runs GGUF files, and AISLE_LLM_MODEL={settings.llm_model} is not one; set it to a .gguf file "
        "or the name of an added model (`aisle models list`), or use AISLE_LLM=transformers for a Hugging Face folder."
    )


class LlamaCppEngine(LLMEngine):
    """In-process llama.cpp engine (CPU). Build it from a Settings: `LlamaCppEngine(settings)`."""

    name = "llamacpp"

    def __init__(self, settings: Settings | None = None, *, adapter: Path | str | None = None) -> None:
        self.settings = settings or Settings()
        if adapter is not None:
            raise EngineUnavailable(
                "AISLE_LLM=llamacpp does not apply LoRA adapters; use AISLE_LLM=transformers for an adapter, "
                "or merge it and convert the merged model to GGUF."
            )
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise EngineUnavailable(
                f"AISLE_LLM=llamacpp but llama-cpp-python cannot be imported ({exc}); install it with "
                "`bash scripts/setup.sh --llamacpp` (a source build: about 5 minutes on 2 cores)."
            ) from exc
        self.path = gguf_file(self.settings)
        if not self.path.is_file():
            raise EngineUnavailable(f"the GGUF file {self.path} is missing; run `aisle models list` to see what is added.")
        threads = self.settings.llm_threads or os.cpu_count() or 1
        self.n_ctx = self.settings.llm_context
        self.llm = Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            seed=self.settings.seed,
            verbose=False,
        )
        self.model_id = self.path.stem
        self._lock = threading.Lock()
        self._formatter: Any = None

    # --- prompt text and tokens ---------------------------------------------------------------------

    def _prompt_text(self, messages: Sequence[Message]) -> str:
        """The chat template of the GGUF, applied with the assistant's generation prompt."""
        if not messages:
            raise ValueError("messages is empty; pass at least one {'role': 'user', 'content': ...} message")
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            meta = self.llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise EngineUnavailable(f"{self.path.name} carries no chat template; use a chat (instruct) GGUF")
            vocab = self.llm._model
            bos = vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
            eos = vocab.token_get_text(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self._formatter(messages=plain).prompt

    def _prompt_ids(self, messages: Sequence[Message], max_tokens: int) -> list[int]:
        ids = self.llm.tokenize(self._prompt_text(messages).encode("utf-8"), add_bos=False, special=True)
        if len(ids) + max_tokens > self.n_ctx:
            raise ContextOverflow(
                f"prompt is {len(ids)} tokens + max_tokens {max_tokens} > context {self.n_ctx}; "
                "shorten the prompt (fewer candidates / history items) or raise AISLE_LLM_CONTEXT"
            )
        return ids

    # --- generation --------------------------------------------------------------------------------

    def _complete(
        self, ids: list[int], max_tokens: int, temperature: float, *, bans: BanTable | None = None, grammar: Any = None, stream: bool = False, row: int = 0
    ) -> Any:
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_k": 1 if temperature <= 0 else 40,
            "repeat_penalty": 1.0,
            # Row i of a batch samples with seed + i: reproducible, and the same conversation sent
            # n times (best-of-n drafts) gets n different samples, not n copies of one.
            "seed": self.settings.seed + row,
            "stream": stream,
        }
        if grammar is not None:
            kwargs["grammar"] = grammar
        if bans is not None:
            from llama_cpp import LogitsProcessorList

            width = len(ids)

            def mask(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
                banned = bans.after(input_ids[width:].tolist())
                if banned:
                    scores[banned] = -np.inf
                return scores

            kwargs["logits_processor"] = LogitsProcessorList([mask])
        return self.llm.create_completion(ids, **kwargs)

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        ids = self._prompt_ids(messages, max_tokens)
        with self._lock:
            out = self._complete(ids, max_tokens, temperature)
        return out["choices"][0]["text"].strip()

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        ids = self._prompt_ids(messages, max_tokens)
        with self._lock:
            for chunk in self._complete(ids, max_tokens, temperature, stream=True):
                piece = chunk["choices"][0]["text"]
                if piece:
                    yield piece

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        """Replies one after another; the shared prompt prefix is decoded once (llama.cpp's prefix reuse)."""
        if not conversations:
            return []
        banned = banned_rows(banned, conversations)
        rows = [self._prompt_ids(c, max_tokens) for c in conversations]  # all validated before any compute
        if max_tokens == 0:
            return ["" for _ in rows]
        replies: list[str] = []
        for i, ids in enumerate(rows):
            table = None
            if banned is not None and banned[i]:
                table = BanTable(token_sequences(lambda t: self.llm.tokenize(t.encode("utf-8"), add_bos=False, special=False), banned[i]))
            with self._lock:
                out = self._complete(ids, max_tokens, temperature, bans=table, row=i)
            replies.append(out["choices"][0]["text"].strip())
        return replies

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        import json

        from llama_cpp import LlamaGrammar

        ids = self._prompt_ids(messages, max_tokens)
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        with self._lock:
            out = self._complete(ids, max_tokens, 0.0, grammar=grammar)
        choice = out["choices"][0]
        return parse_json_answer(choice["text"], schema, source=f"{self.model_id} JSON", cut_off=choice.get("finish_reason") == "length")

    # --- one-pass scoring --------------------------------------------------------------------------

    def _label_tokens(self, prompt_text: str, choices: Sequence[str]) -> list[int]:
        tokens = [label_token(lambda t: self.llm.tokenize(t.encode("utf-8"), add_bos=False, special=True), prompt_text, c) for c in choices]
        check_labels(choices, tokens)
        return tokens

    def _last_logits(self, ids: list[int]) -> np.ndarray:
        """Logits after `ids`, decoding only what differs from the cached prefix."""
        llm = self.llm
        common = 0
        cached = llm.input_ids[: llm.n_tokens]
        limit = min(len(cached), len(ids) - 1)  # always decode at least the last token
        while common < limit and cached[common] == ids[common]:
            common += 1
        llm.n_tokens = common
        llm.eval(ids[common:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        return logits.astype(np.float64, copy=True)

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        """P(label is the assistant's first token), renormalised over `choices`; one forward pass."""
        return self.score_choices_batch([messages], choices)[0]

    def score_choices_batch(self, conversations: Sequence[Sequence[Message]], choices: Sequence[str]) -> list[dict[str, float]]:
        texts = [self._prompt_text(c) for c in conversations]
        rows = [self._prompt_ids(c, 0) for c in conversations]
        labels = [self._label_tokens(t, choices) for t in texts]
        results: list[dict[str, float]] = []
        for ids, tokens in zip(rows, labels):
            with self._lock:
                logits = self._last_logits(ids)
            logits -= logits.max()
            results.append(label_distribution(choices, np.exp(logits)[tokens].tolist()))
        return results

    def forget(self) -> None:
        """Drop the cached prompt prefix (benchmarks time a cold prompt with it)."""
        with self._lock:
            self.llm.reset()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
