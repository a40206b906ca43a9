"""The one small interface every LLM backend implements.

Callers (re-ranker, reasons, dialogue understanding, copywriter) depend only on this module, so
the backend (transformers on CPU, in-process vLLM, a `vllm serve` / OpenAI-compatible server)
is a configuration choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypedDict

from agent.errors import Unavailable


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


# --- typed failures: callers catch these and fall back -------------------------------------


class EngineError(Unavailable):
    """Base class for every failure an engine reports."""

    code = "llm_error"


class EngineUnavailable(EngineError):
    """The backend cannot be reached or loaded (server down, model folder missing)."""

    code = "llm_unavailable"


class EngineTimeout(EngineError):
    """The backend did not answer in the configured time."""

    code = "llm_timeout"


class InvalidOutput(EngineError):
    """Output that does not parse / validate even after constrained decoding."""

    code = "llm_invalid_output"

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


def parse_json_answer(raw: str, schema: dict[str, Any], *, source: str, cut_off: bool) -> Any:
    """Parse and validate an engine's JSON answer; InvalidOutput (with the raw text) otherwise.

    Constrained decoding is not trusted alone: a budget can cut the JSON short, and a server may
    ignore the constraint. `cut_off`: the engine stopped at max_tokens (said in the error)."""
    import json

    import jsonschema

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        hint = " (cut off by max_tokens; raise max_tokens or simplify the schema)" if cut_off else ""
        raise InvalidOutput(f"{source} is not valid JSON{hint}: {exc.msg} at char {exc.pos}", raw) from exc
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise InvalidOutput(f"{source} does not match the schema: {exc.message}", raw) from exc
    return value


def label_token(encode: Callable[[str], Sequence[int]], prompt_text: str, label: str) -> int:
    """The token a model emits first when writing `label` right after the prompt.

    Tokenised in context (prompt tail + label), because BPE tokenizers encode "A" and " A"
    differently; a label that merges with the prompt's last token falls back to its own encoding.
    Multi-token labels are represented by their first token. `encode`: text -> ids, no specials."""
    tail = prompt_text[-64:]
    base, full = list(encode(tail)), list(encode(tail + label))
    i = 0
    while i < len(base) and i < len(full) and base[i] == full[i]:
        i += 1
    if i >= len(full):
        raise ValueError(f"label {label!r} adds no token after the prompt")
    return full[i] if i == len(base) else list(encode(label))[0]


def check_labels(choices: Sequence[str], tokens: Sequence[int]) -> None:
    """ValueError unless `choices` is a non-empty list of labels with distinct first tokens."""
    if not choices:
        raise ValueError("choices is empty; pass labels such as ['A', 'B', 'C']")
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices contain duplicates: {list(choices)}")
    if len(set(tokens)) != len(tokens):
        clash = [c for c, t in zip(choices, tokens) if list(tokens).count(t) > 1]
        raise ValueError(
            f"labels {clash} start with the same token, so one forward pass cannot tell them apart; "
            "use distinct single-token labels such as 'A'..'T'"
        )


def label_distribution(choices: Sequence[str], picked: Sequence[float]) -> dict[str, float]:
    """The labels' probabilities renormalised to sum to 1; uniform when all underflowed (no information)."""
    total = float(sum(picked))
    if not total > 0.0:
        return {c: 1.0 / len(choices) for c in choices}
    return {c: float(p) / total for c, p in zip(choices, picked)}


class ContextOverflow(EngineError):
    """The prompt (plus the tokens asked for) does not fit the model's context window."""

    code = "llm_context_overflow"


# --- the interface ------------------------------------------------------------------------------


def banned_rows(banned: Sequence[Sequence[str]] | None, conversations: Sequence[object]) -> list[Sequence[str]] | None:
    """`batch`'s `banned` checked against its conversations: one list per conversation, or None
    when no conversation bans anything (the plain, unconstrained call)."""
    if banned is None:
        return None
    if len(banned) != len(conversations):
        raise ValueError(f"banned has {len(banned)} lists for {len(conversations)} conversations")
    return list(banned) if any(banned) else None


class LLMEngine(ABC):
    """generate / stream / JSON / batch / score. Greedy (temperature 0) unless told otherwise."""

    name: str = "engine"
    model_id: str = ""

    @abstractmethod
    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        """One assistant reply."""

    @abstractmethod
    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        """The same reply, yielded as text pieces while it is generated."""

    @abstractmethod
    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        """A JSON value valid against `schema`, produced by constrained decoding.

        Raises InvalidOutput when the result still fails to parse or validate (e.g. cut off by
        max_tokens)."""

    @abstractmethod
    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        """Replies for many conversations, generated together where the backend can.

        `banned`: one list per conversation of words and phrases its reply must not contain,
        enforced while decoding with vLLM's `bad_words` semantics (the phrase's last token is
        masked after the tokens before it; each phrase also with a leading space)."""

    @abstractmethod
    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        """Probabilities of each choice label (e.g. "A".."T") as the assistant's next token.

        Renormalised over `choices` so they sum to 1; one forward pass (LlamaRec-style ranking)."""

    def score_choices_batch(self, conversations: Sequence[Sequence[Message]], choices: Sequence[str]) -> list[dict[str, float]]:
        """`score_choices` for several prompts; backends that can score them together override it."""
        return [self.score_choices(messages, choices) for messages in conversations]

    def probe(self, timeout_s: float) -> None:
        """Raise EngineUnavailable / EngineTimeout unless the model answers a tiny request within
        `timeout_s`. The circuit breaker asks this before trusting a server again, so a server that
        hangs costs the probe's few seconds, not a full call's timeout. An in-process model is
        there once built: the default checks nothing."""

    def close(self) -> None:
        """Release model memory / connections."""
