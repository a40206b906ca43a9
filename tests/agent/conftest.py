"""Fixtures for the agent tests: one real LLM engine per test session."""

from __future__ import annotations

import pytest

from agent.settings import Settings


@pytest.fixture(scope="session")
def llm_settings() -> Settings:
    """Default home, so the converted model is cached in the real `.aisle/models` and reused
    across runs (converting the packaged GGUF takes ~20 s; its own test covers that)."""
    return Settings(llm="transformers", llm_model=None)


@pytest.fixture(scope="session")
def transformers_engine(llm_settings):
    """The packaged SmolLM2-135M-Instruct in the transformers engine, loaded once."""
    from agent.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(llm_settings)
    yield engine
    engine.close()


# --- re-ranking / reasons (issue #4) ------------------------------------------------------------


class ScriptedEngine:
    """Wraps the REAL engine and replaces chosen answers with hand-written ones.

    A 135M model will not reliably produce the failure cases the re-ranker and the reason writer
    must survive (out-of-catalog ids, malformed JSON, a false claim), so tests script those
    answers here; every method that is not scripted runs the real model. Built as a subclass of
    `LLMEngine` at fixture time (see `scripted_engine`), so `isinstance` checks still hold.
    """

    def __init__(self, real, *, json_answer=None, score_answer=None, batch_answers=None, raise_error=None):
        self.real = real
        self.name = "scripted+" + getattr(real, "name", "engine")
        self.model_id = getattr(real, "model_id", "")
        self.json_answer = json_answer  # value, or callable(messages, schema) -> value
        self.score_answer = score_answer  # value, or callable(messages, choices) -> value
        self.batch_answers = list(batch_answers or [])  # one list of replies per batch() call
        self.raise_error = raise_error  # exception raised by every model call
        self.calls: list[tuple[str, object]] = []

    def _maybe_raise(self):
        if self.raise_error is not None:
            raise self.raise_error

    def chat(self, messages, *, max_tokens=256, temperature=0.0):
        self._maybe_raise()
        return self.real.chat(messages, max_tokens=max_tokens, temperature=temperature)

    def stream(self, messages, *, max_tokens=256, temperature=0.0):
        self._maybe_raise()
        return self.real.stream(messages, max_tokens=max_tokens, temperature=temperature)

    def chat_json(self, messages, schema, *, max_tokens=256):
        self.calls.append(("chat_json", messages))
        self._maybe_raise()
        if self.json_answer is None:
            return self.real.chat_json(messages, schema, max_tokens=max_tokens)
        return self.json_answer(messages, schema) if callable(self.json_answer) else self.json_answer

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, banned=None):
        self.calls.append(("batch", conversations))
        self._maybe_raise()
        if not self.batch_answers:
            return self.real.batch(conversations, max_tokens=max_tokens, temperature=temperature, banned=banned)
        answers = self.batch_answers.pop(0)
        return [answers[i % len(answers)] for i in range(len(conversations))]

    def score_choices(self, messages, choices):
        self.calls.append(("score_choices", messages))
        self._maybe_raise()
        if self.score_answer is None:
            return self.real.score_choices(messages, choices)
        return self.score_answer(messages, choices) if callable(self.score_answer) else self.score_answer

    def close(self):
        pass


@pytest.fixture(scope="session")
def scripted_engine(transformers_engine):
    """Factory: scripted_engine(json_answer=..., score_answer=..., batch_answers=..., raise_error=...)."""
    from agent.engines.base import LLMEngine

    cls = type("ScriptedLLMEngine", (ScriptedEngine, LLMEngine), {})

    def make(**kwargs):
        return cls(transformers_engine, **kwargs)

    return make
