"""The embedded CPU engine: a Hugging Face causal LM run in-process with transformers.

This is the default backend (no server, no GPU). It runs the packaged SmolLM2-135M-Instruct
unless `settings.llm_model` names another model, and implements every `LLMEngine` method:

- chat / stream / batch: greedy `generate` (sampling only when temperature > 0, seeded).
- chat_json: JSON constrained *during* decoding by lm-format-enforcer's JsonSchemaParser, then
  parsed and validated with jsonschema (the model is untrusted; the enforcer can still be cut
  short by max_tokens).
- score_choices: one forward pass, probability of each label token as the next token
  (LlamaRec-style re-ranking), renormalised over the labels.

Calls are serialised with a lock: the model is shared, and on a few CPU cores running two
generations at once only makes both slower.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import torch

from agent.engines.base import (
    ContextOverflow,
    EngineTimeout,
    EngineUnavailable,
    LLMEngine,
    Message,
    banned_rows,
    check_labels,
    label_distribution,
    label_token,
    parse_json_answer,
)
from agent.engines.model_store import ensure_llm_model
from agent.settings import Settings

if TYPE_CHECKING:
    from lmformatenforcer import TokenEnforcerTokenizerData


# Weights dtype at run time (the cached folder is float32: the exact de-quantized GGUF values).
# Measured on our 2-core Xeon with AMX: bfloat16 gives ~2.5x prefill (one-pass scoring of a
# 20-candidate prompt: 0.41 s vs 1.04 s, quiet) and ~1.7x batched decode; single-stream decode is
# about equal (listwise JSON 7.2 s vs 7.6 s). But in bf16 the result depends on the batch it was
# computed in: padded `batch` replies differed from one-by-one `chat` on 5 of 12 prompts. Hence two
# settings: generation (`llm_dtype`) defaults to float32, so batched copy/reasons equal one-by-one
# output; one-pass scoring (`llm_score_dtype`) defaults to "auto", i.e. bf16 where the CPU has it:
# scoring runs one unpadded prompt per forward pass, so it is batch-invariant in any dtype.
# "auto" = bfloat16 on CPUs with native bf16 (AMX-BF16 / AVX512-BF16; elsewhere it is emulated
# and slower), else float32.
RUN_DTYPE = "float32"


def pick_dtype(requested: torch.dtype | str | None = None) -> torch.dtype:
    """The torch dtype to run in: `requested`, else RUN_DTYPE; "auto" = bfloat16 on CPUs with native bf16."""
    if isinstance(requested, torch.dtype):
        return requested
    name = requested or RUN_DTYPE
    if name != "auto":
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {name!r}; use 'auto', 'float32' or 'bfloat16'")
        return dtype
    try:
        caps = torch.cpu.get_capabilities()
    except Exception:  # older torch / unusual platform: the safe choice
        return torch.float32
    return torch.bfloat16 if caps.get("amx_bf16") or caps.get("avx512_bf16") else torch.float32


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text the model sees: the tokenizer's chat template plus the assistant's
    generation prompt. Shared with LoRA training (agent/train/lora.py) so a fine-tuned adapter
    is trained on exactly the text it is used on."""
    if not messages:
        raise ValueError("messages is empty; pass at least one {'role': 'user', 'content': ...} message")
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)


# Conversations generated together per `generate` call in `batch` (bounds memory of the KV cache).
MAX_BATCH = 32


class TransformersEngine(LLMEngine):
    """In-process transformers engine (CPU). Build it from a Settings: `TransformersEngine(settings)`."""

    name = "transformers"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        dtype: torch.dtype | str | None = None,
        score_dtype: torch.dtype | str | None = None,
        adapter: Path | str | None = None,
    ) -> None:
        """Load tokenizer + model (converting the packaged GGUF on first use).

        `dtype` / `score_dtype` override settings.llm_dtype / llm_score_dtype (see RUN_DTYPE):
        "float32" / "bfloat16" / "auto". When they differ, scoring uses a cast copy of the model
        (+2 bytes per parameter: 270 MB for SmolLM2-135M).

        `adapter`: a PEFT LoRA folder (e.g. from `aisle train ranker`), loaded onto the base model
        in float32 and merged into its weights (`merge_and_unload`), so inference costs exactly
        what the base model costs. `model_id` becomes "<base>+<adapter folder name>".
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings or Settings()
        self.dtype: torch.dtype = pick_dtype(dtype or self.settings.llm_dtype)
        self.score_dtype: torch.dtype = pick_dtype(score_dtype or self.settings.llm_score_dtype)
        if self.settings.llm_threads:
            torch.set_num_threads(self.settings.llm_threads)  # process-wide: torch has one pool
        self.model_dir: Path = ensure_llm_model(self.settings)
        self.model_id = self.model_dir.name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            load_dtype = torch.float32 if adapter is not None else self.dtype  # merge in full precision
            self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=load_dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise EngineUnavailable(
                f"could not load the model folder {self.model_dir}: {exc}. Point AISLE_LLM_MODEL at a "
                "complete Hugging Face causal-LM folder, or delete the folder to reconvert the packaged model."
            ) from exc
        self.adapter: Path | None = None
        if adapter is not None:
            self._merge_adapter(Path(adapter))
        self.model.eval()
        self.score_model = self.model if self.score_dtype == self.dtype else copy.deepcopy(self.model).to(self.score_dtype).eval()
        if not self.tokenizer.chat_template:
            raise EngineUnavailable(f"{self.model_dir} has no chat template; use an instruct/chat model.")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.context_window: int = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.eos_ids: list[int] = self._eos_ids()
        self._lock = threading.RLock()
        self._json_tokenizer_data: TokenEnforcerTokenizerData | None = None
        self._label_token_cache: dict[tuple[str, str], int] = {}

    def _merge_adapter(self, folder: Path) -> None:
        from peft import PeftModel

        if not (folder / "adapter_config.json").is_file():
            raise EngineUnavailable(f"{folder} is not a LoRA adapter folder (no adapter_config.json); train one with `aisle train ranker`.")
        try:
            merged = PeftModel.from_pretrained(self.model, folder).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EngineUnavailable(f"could not apply the adapter {folder} to {self.model_dir}: {exc}") from exc
        self.model = merged.to(self.dtype)
        self.adapter = folder
        self.model_id = f"{self.model_dir.name}+{folder.name}"

    # --- prompt helpers --------------------------------------------------------------------------

    def _eos_ids(self) -> list[int]:
        """Every token that ends an assistant turn (the generation config may list several)."""
        ids: set[int] = set()
        gen_eos = self.model.generation_config.eos_token_id
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def _prompt_text(self, messages: Sequence[Message]) -> str:
        return render_prompt(self.tokenizer, messages)

    def _prompt_ids(self, messages: Sequence[Message], max_tokens: int) -> list[int]:
        """Chat-templated prompt token ids; raises ContextOverflow before any compute is spent."""
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        # The template already contains the special tokens (<|im_start|> ...): add none.
        ids = self.tokenizer(self._prompt_text(messages), add_special_tokens=False)["input_ids"]
        if len(ids) + max_tokens > self.context_window:
            raise ContextOverflow(
                f"prompt is {len(ids)} tokens + {max_tokens} new tokens > the {self.context_window}-token "
                f"context of {self.model_id}; shorten the prompt (fewer candidates / shorter history) or lower max_tokens."
            )
        return ids

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad token rows so every row's last real token is at position -1."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        return input_ids, mask

    def _gen_kwargs(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if temperature and temperature > 0:
            torch.manual_seed(self.settings.seed)  # sampling, but reproducible
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # --- generation --------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        """One assistant reply (greedy by default, so the same input gives the same text)."""
        ids = self._prompt_ids(messages, max_tokens)
        if max_tokens == 0:
            return ""
        input_ids = torch.tensor([ids], dtype=torch.long)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                **self._gen_kwargs(max_tokens, temperature),
            )
        return self._decode(out[0, len(ids):].tolist())

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        """The same text as `chat`, yielded piece by piece while `generate` runs in a thread.

        Leading/trailing whitespace is trimmed like `chat` does, so "".join(stream(...)) == chat(...).
        Stopping the iteration early (closing the generator) also stops the generation.
        """
        ids = self._prompt_ids(messages, max_tokens)  # errors now, not at the first next()
        if max_tokens == 0:
            return iter(())
        return self._stream_ids(ids, max_tokens, temperature)

    def _stream_ids(self, ids: list[int], max_tokens: int, temperature: float) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.settings.llm_timeout_s
        )
        input_ids = torch.tensor([ids], dtype=torch.long)
        failure: list[BaseException] = []
        gen_kwargs = self._gen_kwargs(max_tokens, temperature)

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancel()]),
                        **gen_kwargs,
                    )
            except BaseException as exc:  # surfaced to the consumer below
                failure.append(exc)
                streamer.end()  # unblock the consumer

        worker = threading.Thread(target=run, name="aisle-stream", daemon=True)
        worker.start()
        started = False
        pending_ws = ""  # whitespace held back: only emitted if more text follows (mirrors .strip())
        try:
            for piece in streamer:
                if not started:
                    piece = piece.lstrip()
                    if not piece:
                        continue
                    started = True
                body = piece.rstrip()
                trailing = piece[len(body):]
                if body:
                    yield pending_ws + body
                    pending_ws = trailing
                else:
                    pending_ws += trailing
        except queue.Empty as exc:
            cancelled.set()
            raise EngineTimeout(f"no token for {self.settings.llm_timeout_s}s while streaming; raise AISLE_LLM_TIMEOUT_S") from exc
        finally:
            cancelled.set()
            worker.join()
        if failure:
            raise EngineUnavailable(f"generation failed while streaming: {failure[0]}") from failure[0]

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        """Replies for many conversations: left-padded, generated together (MAX_BATCH per call).

        With greedy decoding the replies equal `chat` one by one up to float rounding: padding
        changes matrix shapes, which can flip an argmax between two near-tied tokens.
        `banned`: per conversation, words its reply must not contain (`agent.engines.bad_words`).
        """
        if not conversations:
            return []
        banned = banned_rows(banned, conversations)
        rows = [self._prompt_ids(c, max_tokens) for c in conversations]
        if max_tokens == 0:
            return ["" for _ in rows]
        replies: list[str] = []
        for start in range(0, len(rows), MAX_BATCH):
            chunk = rows[start : start + MAX_BATCH]
            input_ids, mask = self._left_pad(chunk)
            extra: dict[str, Any] = {}
            if banned is not None and any(banned[start : start + MAX_BATCH]):
                from transformers import LogitsProcessorList

                from agent.engines.bad_words import RowBans, token_sequences

                bans = [token_sequences(self.tokenizer, words) for words in banned[start : start + MAX_BATCH]]
                extra["logits_processor"] = LogitsProcessorList([RowBans(bans, input_ids.shape[1])])
            with self._lock, torch.inference_mode():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, **self._gen_kwargs(max_tokens, temperature), **extra)
            width = input_ids.shape[1]
            replies.extend(self._decode(row[width:].tolist()) for row in out)
        return replies

    # --- constrained JSON --------------------------------------------------------------------------

    def _json_tokenizer(self) -> TokenEnforcerTokenizerData:
        """lm-format-enforcer's view of the vocabulary; slow to build (seconds), so built once."""
        if self._json_tokenizer_data is None:
            self._json_tokenizer_data = _build_enforcer_tokenizer_data(
                self.tokenizer, min(len(self.tokenizer), int(self.model.config.vocab_size)), self.eos_ids
            )
        return self._json_tokenizer_data

    def _json_processor(self, schema: dict[str, Any]) -> Any:
        """A transformers LogitsProcessor that masks every token that would break `schema`."""
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"invalid JSON schema: {exc.message}") from exc
        # lm-format-enforcer's defaults already cap runs of whitespace (12) and array lengths (20)
        # so a looping model cannot stall forever. A tighter whitespace cap (2) was tried: it forbids
        # the model's preferred "[\n    " and made SmolLM2 close every array empty.
        return _EnforcerLogitsProcessor(TokenEnforcer(self._json_tokenizer(), JsonSchemaParser(schema)))

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        """A JSON value valid against `schema`, decoded under lm-format-enforcer's constraint.

        The prompt should still ask for JSON (and describe the fields): the constraint only
        removes invalid tokens, it cannot make a model understand the task. Greedy.
        """
        from transformers import LogitsProcessorList

        ids = self._prompt_ids(messages, max_tokens)
        processor = self._json_processor(schema)
        input_ids = torch.tensor([ids], dtype=torch.long)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                logits_processor=LogitsProcessorList([processor]),
                **self._gen_kwargs(max_tokens, 0.0),
            )
        raw = self._decode(out[0, len(ids):].tolist())
        return parse_json_answer(raw, schema, source=f"model output (max_tokens={max_tokens})", cut_off=True)

    def _label_token(self, prompt_text: str, label: str) -> int:
        """`base.label_token` with this tokenizer, cached per (prompt tail, label): after ChatML's
        "<|im_start|>assistant\\n" SmolLM2 writes "A" with no space."""
        key = (prompt_text[-64:], label)
        cached = self._label_token_cache.get(key)
        if cached is None:
            cached = self._label_token_cache[key] = label_token(lambda t: self.tokenizer(t, add_special_tokens=False)["input_ids"], prompt_text, label)
        return cached

    def _label_tokens(self, prompt_text: str, choices: Sequence[str]) -> list[int]:
        tokens = [self._label_token(prompt_text, c) for c in choices]
        check_labels(choices, tokens)
        return tokens

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        """P(label is the assistant's first token), renormalised over `choices`; one forward pass.

        Labels must be distinct single tokens (e.g. "A".."T"); a multi-token label is scored by
        its first token only, and labels sharing a first token raise ValueError.
        """
        return self.score_choices_batch([messages], choices)[0]

    def score_choices_batch(self, conversations: Sequence[Sequence[Message]], choices: Sequence[str]) -> list[dict[str, float]]:
        """`score_choices` for several prompts (the re-ranker's candidate orders), one at a time.

        Not one padded batch: on this CPU prefill is compute-bound, so padding bought nothing
        (3 orders: 3.36 s padded vs 3.13 s one by one, float32), and unpadded rows give the same
        numbers whatever else is scored with them, in bfloat16 too.
        """
        texts = [self._prompt_text(c) for c in conversations]
        rows = [self._prompt_ids(c, 0) for c in conversations]  # all validated before any compute
        label_tokens = [self._label_tokens(t, choices) for t in texts]
        results: list[dict[str, float]] = []
        for row, tokens in zip(rows, label_tokens):
            with self._lock, torch.inference_mode():
                out = self.score_model(input_ids=torch.tensor([row], dtype=torch.long), logits_to_keep=1, use_cache=False)
            probs = torch.softmax(out.logits[0, -1, :].float(), dim=-1)
            results.append(label_distribution(choices, probs[torch.tensor(tokens)].double().tolist()))
        return results

    def close(self) -> None:
        """Drop the model and tokenizer so their memory can be freed."""
        with self._lock:
            self.model = None  # type: ignore[assignment]
            self.score_model = None  # type: ignore[assignment]
            self.tokenizer = None  # type: ignore[assignment]
            self._json_tokenizer_data = None


# --- lm-format-enforcer glue -----------------------------------------------------------------------
#
# lm-format-enforcer 0.11.3's `integrations.transformers` module cannot be imported with
# transformers 5 (it imports `transformers.tokenization_utils`, which v5 removed), so we use its
# core API directly: the same token list it builds, and a LogitsProcessor around TokenEnforcer.


def _build_enforcer_tokenizer_data(tokenizer: Any, vocab_size: int, eos_ids: list[int]) -> TokenEnforcerTokenizerData:
    """Port of lmformatenforcer.integrations.transformers.build_token_enforcer_tokenizer_data."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    token_0 = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular: list[tuple[int, str, bool]] = []
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        # Decode after "0" and drop it, to see whether the token starts a new word (leading space).
        after_0 = tokenizer.decode([token_0, token_id])[1:]
        alone = tokenizer.decode([token_id])
        regular.append((token_id, after_0, len(after_0) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")

    eos: int | list[int] = eos_ids[0] if len(eos_ids) == 1 else list(eos_ids)
    return TokenEnforcerTokenizerData(regular, decode, eos, False, vocab_size)


class _EnforcerLogitsProcessor:
    """Sets the score of every token the JSON parser would reject to -inf (transformers LogitsProcessor)."""

    def __init__(self, enforcer: Any) -> None:
        self.enforcer = enforcer

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, seq in enumerate(input_ids.tolist()):
            allowed = self.enforcer.get_allowed_tokens(seq).allowed_tokens
            mask[row, allowed] = 0.0
        return scores + mask
