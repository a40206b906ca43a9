"""LLMEngine over any OpenAI-compatible chat server (`vllm serve`, llama.cpp server, OpenAI).

Why the `openai` package and not LangChain's `ChatOpenAI`: we need the raw request/response.
`extra_body` carries vLLM's structured-output constraints (a `choice` list for scoring),
`logprobs` / `top_logprobs` come back as plain per-token objects, streaming is a simple iterator,
and failures arrive as typed exceptions (`APIConnectionError`, `APITimeoutError`,
`BadRequestError`) that map one-to-one onto our own typed errors. ChatOpenAI hides or renames
most of these behind its message abstraction and retry wrappers.

Behaviour worth knowing:
- Greedy by default (temperature 0); the server does its own batching of concurrent requests,
  so `batch` just sends them from a small thread pool.
- JSON uses the OpenAI-standard `response_format={"type": "json_schema", ...}`, which vLLM
  (>= 0.12, checked on 0.32) turns into grammar-constrained decoding; the result is still parsed
  and validated here, so a reply cut off by max_tokens raises InvalidOutput.
- Scoring asks for ONE token with `top_logprobs=20`. On vLLM the token is also constrained to the
  labels (`structured_outputs.choice`), so all probability mass is on them; on a server that
  rejects that field we ask again once without it and remember. Labels that are absent from the
  top-20 get probability 0; if no label appears at all the result is uniform. See score_choices.
- LoRA adapters (e.g. the ranker from `aisle train ranker`): vLLM serves them beside the base
  model when started with `--enable-lora --lora-modules ranker=/path/to/adapter` (add
  `--max-lora-rank R` when R > 16); a request then names the adapter as its model
  (`model="ranker"`). `OpenAIEngine(settings, served_model="ranker")` (or
  `make_engine(settings, adapter="ranker")`) does exactly that. Not tested here (no vLLM server).
- No hidden retries: the client's own retry loop is off (max_retries=0). A dead server or a slow
  one shows up at once as EngineUnavailable / EngineTimeout (HTTP 502/503/504 too), costing at
  most one `llm_timeout_s`; retrying with back-off is the circuit breaker's job
  (agent/engines/breaker.py, applied by LazyEngine), not this client's. The breaker's `probe` (a
  one-token completion) and the model listing at start-up wait only `llm_probe_timeout_s`.
- Messages name the server by its URL without credentials (`http://***@host/v1`): they reach
  /ready, logs and API errors.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agent.engines.base import (
    ContextOverflow,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidOutput,
    LLMEngine,
    Message,
    banned_rows,
    parse_json_answer,
)
from agent.redact import redact
from agent.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# OpenAI's (and vLLM's default `--max-logprobs`) upper limit for top_logprobs.
MAX_TOP_LOGPROBS = 20
# Concurrent requests for batch(): enough for vLLM's scheduler to batch them, few enough
# not to swamp a small CPU server.
DEFAULT_BATCH_WORKERS = 8

# Phrases servers use for "prompt too long" (vLLM, OpenAI, llama.cpp server).
_OVERFLOW_RE = re.compile(
    r"maximum context length|context length|context window|too many tokens|exceeds? (the )?(context|available)|prompt is too long",
    re.IGNORECASE,
)


class OpenAIEngine(LLMEngine):
    """Client for a running OpenAI-compatible server at `settings.llm_url`."""

    name = "openai"

    def __init__(self, settings: Settings, *, batch_workers: int = DEFAULT_BATCH_WORKERS, served_model: str | None = None) -> None:
        """`served_model` overrides settings.llm_served_model: pass a LoRA adapter's served name
        (e.g. "ranker" from `--lora-modules ranker=PATH`) to run every request through it."""
        if not settings.llm_url:
            raise EngineUnavailable(
                "AISLE_LLM_URL is not set; point it at an OpenAI-compatible server, e.g. "
                "AISLE_LLM_URL=http://127.0.0.1:8000/v1 after starting `vllm serve <model folder>`."
            )
        import openai

        self._openai = openai
        self.url = redact(settings.llm_url.rstrip("/"))  # for messages; the client keeps the real one
        self.timeout_s = settings.llm_timeout_s
        self.probe_timeout_s = settings.llm_probe_timeout_s
        self.batch_workers = max(1, batch_workers)
        self._client = openai.OpenAI(
            base_url=settings.llm_url.rstrip("/"),
            api_key=settings.llm_api_key or "EMPTY",
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )
        # None = not tried yet; set by the first score_choices call.
        self._choice_constraint_ok: bool | None = None
        self.model_id = served_model or settings.llm_served_model or self._first_served_model()

    # --- LLMEngine -----------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        return self._chat(messages, max_tokens=max_tokens, temperature=temperature)

    def _chat(self, messages: Sequence[Message], *, max_tokens: int, temperature: float, bad_words: Sequence[str] = ()) -> str:
        # bad_words is vLLM's extension of the chat request; sent only when there are some, so
        # servers without it (OpenAI, llama.cpp) see a plain request.
        extra = {"extra_body": {"bad_words": list(bad_words)}} if bad_words else {}
        resp = self._call(
            lambda: self._client.chat.completions.create(
                model=self.model_id, messages=list(messages), max_tokens=max_tokens, temperature=temperature, **extra
            )
        )
        return resp.choices[0].message.content or ""

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        stream = self._call(
            lambda: self._client.chat.completions.create(
                model=self.model_id,
                messages=list(messages),
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
        )
        try:
            it = iter(stream)
            while True:
                chunk = self._call(lambda: next(it, None))
                if chunk is None:
                    return
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            stream.close()

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
        resp = self._call(
            lambda: self._client.chat.completions.create(
                model=self.model_id,
                messages=list(messages),
                max_tokens=max_tokens,
                temperature=0.0,
                response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
            )
        )
        choice = resp.choices[0]
        return parse_json_answer(choice.message.content or "", schema, source="server reply", cut_off=choice.finish_reason == "length")

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        if not conversations:
            return []
        bans = banned_rows(banned, conversations) or [()] * len(conversations)
        workers = min(self.batch_workers, len(conversations))
        failed = threading.Event()

        def one(conv: Sequence[Message], bad_words: Sequence[str]) -> str:
            # After a failure the batch fails anyway: requests not yet sent are skipped, so a
            # hanging server costs one timeout, not one per round of `workers` requests.
            if failed.is_set():
                raise EngineError("skipped: another request of this batch failed")
            try:
                return self._chat(conv, max_tokens=max_tokens, temperature=temperature, bad_words=bad_words)
            except Exception:
                failed.set()
                raise

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aisle-openai") as pool:
            futures = [pool.submit(one, conv, words) for conv, words in zip(conversations, bans)]
            # The first failure in order propagates as its typed error (a skipped request always
            # comes after the one that failed).
            return [f.result() for f in futures]

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        """P(label) for the assistant's first token, renormalised over `choices`.

        One request: max_tokens=1, logprobs, top_logprobs=20. Tokens are matched to labels after
        stripping whitespace ("A" and " A" both count for "A"; their probabilities add up).
        Labels not among the returned top tokens get 0 (their true mass is below the 20th token's,
        and with the vLLM choice constraint all labels are returned when there are <= 20). If no
        label appears at all the result is uniform rather than a division by zero. Labels should
        be single tokens ("A".."T"): the client cannot see the server's tokenizer, so a multi-token
        label only matches if its first token is the whole label.
        """
        labels = list(dict.fromkeys(choices))
        if not labels:
            raise ValueError("choices is empty; pass labels such as ['A', 'B', 'C']")
        top = self._first_token_logprobs(messages, labels)
        mass = {label: 0.0 for label in labels}
        for token, logprob in top:
            key = token.strip()
            if key in mass:
                mass[key] += math.exp(logprob)
        total = sum(mass.values())
        if total <= 0.0:
            log.warning("none of the %d labels is among the top %d tokens; returning uniform scores", len(labels), len(top))
            return {label: 1.0 / len(labels) for label in labels}
        return {label: p / total for label, p in mass.items()}

    def probe(self, timeout_s: float) -> None:
        client = self._client.with_options(timeout=timeout_s)
        self._call(lambda: client.chat.completions.create(model=self.model_id, messages=[{"role": "user", "content": "ping"}], max_tokens=1), timeout_s=timeout_s)

    def close(self) -> None:
        self._client.close()

    # --- helpers -------------------------------------------------------------------------------

    def _first_token_logprobs(self, messages: Sequence[Message], labels: list[str]) -> list[tuple[str, float]]:
        def ask(constrained: bool) -> Any:
            extra = {"structured_outputs": {"choice": labels}} if constrained else None
            return self._client.chat.completions.create(
                model=self.model_id,
                messages=list(messages),
                max_tokens=1,
                temperature=0.0,
                logprobs=True,
                top_logprobs=MAX_TOP_LOGPROBS,
                extra_body=extra,
            )

        constrained = self._choice_constraint_ok is not False
        try:
            resp = self._call(lambda: ask(constrained))
            if constrained:
                self._choice_constraint_ok = True
        except EngineError as exc:
            # A server that does not know vLLM's `structured_outputs` may answer 400: ask once more
            # without it (and never again with it). Overflow/timeouts/outages are not retried.
            if not constrained or self._choice_constraint_ok or not isinstance(exc.__cause__, self._openai.BadRequestError):
                raise
            log.info("server rejected structured_outputs.choice (%s); scoring unconstrained", exc)
            self._choice_constraint_ok = False
            resp = self._call(lambda: ask(False))
        content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
        if not content:
            raise InvalidOutput(f"server at {self.url} returned no logprobs; it must support logprobs/top_logprobs")
        first = content[0]
        pairs = [(t.token, t.logprob) for t in (first.top_logprobs or [])]
        if not pairs:
            pairs = [(first.token, first.logprob)]
        return pairs

    def _first_served_model(self) -> str:
        client = self._client.with_options(timeout=self.probe_timeout_s)
        models = self._call(lambda: client.models.list(), timeout_s=self.probe_timeout_s)
        ids = [m.id for m in models.data]
        if not ids:
            raise EngineUnavailable(f"the server at {self.url} lists no models; set AISLE_LLM_SERVED_MODEL or load a model there.")
        return ids[0]

    def _call(self, fn: Callable[[], T], *, timeout_s: float | None = None) -> T:
        """Run one client call, turning transport/API failures into our typed errors."""
        openai = self._openai
        timeout_s = timeout_s or self.timeout_s
        try:
            return fn()
        except openai.APITimeoutError as exc:
            raise EngineTimeout(
                f"the LLM server at {self.url} did not answer within {timeout_s:g} s; "
                "raise AISLE_LLM_TIMEOUT_S, ask for fewer tokens, or check the server's load."
            ) from exc
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(
                f"cannot reach the LLM server at {self.url} ({_root_cause(exc)}); start it "
                "(e.g. `vllm serve <model folder> --port 8000`) or fix AISLE_LLM_URL."
            ) from exc
        except openai.BadRequestError as exc:
            text = _error_text(exc)
            if _OVERFLOW_RE.search(text):
                raise ContextOverflow(f"prompt does not fit the served model's context: {text}") from exc
            raise EngineError(f"the LLM server at {self.url} rejected the request (400): {text}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise EngineUnavailable(f"the LLM server at {self.url} refused the API key ({exc.status_code}); set AISLE_LLM_API_KEY.") from exc
        except openai.NotFoundError as exc:
            raise EngineUnavailable(
                f"the LLM server at {self.url} answered 404 ({_error_text(exc)}); check that the URL ends in /v1 "
                f"and that AISLE_LLM_SERVED_MODEL={self.__dict__.get('model_id') or '(unset)'} is a model it serves."
            ) from exc
        except openai.APIStatusError as exc:
            # A proxy in front of a server that is restarting, or a server shedding load: the
            # server is not there for now (the circuit breaker backs off), not a bad request.
            if exc.status_code in (502, 503):
                raise EngineUnavailable(f"the LLM server at {self.url} is not available (HTTP {exc.status_code}: {_error_text(exc)}); is it starting or overloaded?") from exc
            if exc.status_code == 504:
                raise EngineTimeout(f"the LLM server at {self.url} timed out behind a gateway (HTTP 504): {_error_text(exc)}") from exc
            raise EngineError(f"the LLM server at {self.url} failed with HTTP {exc.status_code}: {_error_text(exc)}") from exc
        except Exception as exc:
            # Errors raised while iterating a stream come straight from the HTTP library.
            kind = _transport_kind(exc)
            if kind == "timeout":
                raise EngineTimeout(f"the LLM server at {self.url} stopped sending within {timeout_s:g} s.") from exc
            if kind == "transport":
                raise EngineUnavailable(f"lost the connection to the LLM server at {self.url} ({_root_cause(exc)}); is it still running?") from exc
            raise


def _error_text(exc: Exception) -> str:
    """The server's own error message (vLLM: {"error": {"message": ...}}), else str(exc)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return redact(str(inner["message"]))
    return redact(str(exc))


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return redact(f"{type(exc).__name__}: {exc}") if str(exc) else type(exc).__name__


def _transport_kind(exc: BaseException) -> str | None:
    """'timeout' / 'transport' for httpx(2) errors, by class name so either library works."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__.split(".")[0]
    if module not in {"httpx", "httpx2", "httpcore", "httpcore2"}:
        return None
    if "TimeoutException" in names or "TimeoutError" in names or any(n.endswith("Timeout") for n in names):
        return "timeout"
    if names & {"TransportError", "NetworkError", "RemoteProtocolError", "ProtocolError", "ReadError", "ConnectError"}:
        return "transport"
    return None
