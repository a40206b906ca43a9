"""The llama.cpp engine with the REAL packaged SmolLM2-135M GGUF (no mocks).

`.ci/run` installs llama-cpp-python (scripts/install_llamacpp.sh); on a machine without it these
tests are skipped with the command that installs it. The larger model is measured, not tested:
these check behaviour that holds for any GGUF chat model.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: bash scripts/install_llamacpp.sh")

from agent.engines import ContextOverflow, EngineUnavailable, InvalidOutput, make_engine  # noqa: E402
from agent.engines.llamacpp_engine import LlamaCppEngine, gguf_file  # noqa: E402
from agent.engines.model_store import default_gguf_path  # noqa: E402
from agent.settings import Settings  # noqa: E402

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
PICK = [
    {"role": "system", "content": "You pick the product that best fits the shopper's request."},
    {"role": "user", "content": "Request: a stapler.\nA. Ballpoint pens\nB. Desk stapler\nC. Printer paper\nD. Packing tape\nAnswer with the letter only."},
]
LABELS = ["A", "B", "C", "D"]
SCHEMA = {
    "type": "object",
    "properties": {"brand": {"type": ["string", "null"]}, "price_max": {"type": ["number", "null"]}},
    "required": ["brand", "price_max"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine():
    eng = make_engine(Settings(llm="llamacpp", llm_model=None, llm_context=1024, llm_threads=1))
    yield eng
    eng.close()


def test_builds_from_settings_on_the_packaged_gguf(engine):
    assert isinstance(engine, LlamaCppEngine)
    assert engine.path == default_gguf_path()
    assert engine.name == "llamacpp"


def test_greedy_chat_is_deterministic(engine):
    first = engine.chat(CAPITAL, max_tokens=24)
    assert first.strip()
    assert engine.chat(CAPITAL, max_tokens=24) == first


def test_stream_pieces_make_the_chat_reply(engine):
    assert "".join(engine.stream(CAPITAL, max_tokens=16)).strip() == engine.chat(CAPITAL, max_tokens=16)


def test_batch_answers_every_conversation_and_honours_bans(engine):
    free, banned = engine.batch([CAPITAL, CAPITAL], max_tokens=24, banned=[[], ["Paris"]])
    assert "Paris" in free  # the model's greedy answer names it...
    assert "paris" not in banned.lower()  # ...and the ban keeps it out of the other reply


def test_sampled_batch_rows_differ_and_repeat_across_calls(engine):
    """Best-of-n drafts send one conversation n times: each row must be its own sample (a per-row
    seed), and the whole batch must come back the same on a re-run."""
    poem = [{"role": "user", "content": "Write one sentence about a pencil."}]
    engine.forget()
    first = engine.batch([poem] * 3, max_tokens=24, temperature=1.0)
    assert len(set(first)) > 1
    engine.forget()  # from the same (empty) prompt cache: a cached prefix changes the float path
    assert engine.batch([poem] * 3, max_tokens=24, temperature=1.0) == first


def test_chat_json_is_valid_against_the_schema(engine):
    value = engine.chat_json([{"role": "user", "content": "Give the brand and the highest price as JSON: 'a Fellowes shredder under $80'"}], SCHEMA, max_tokens=40)
    assert set(value) == {"brand", "price_max"}


def test_chat_json_cut_short_is_invalid_output(engine):
    with pytest.raises(InvalidOutput, match="max_tokens"):
        engine.chat_json([{"role": "user", "content": "Describe a shredder as JSON."}], SCHEMA, max_tokens=3)


def test_score_choices_is_a_distribution_and_independent_of_the_cache(engine):
    warm = engine.score_choices(PICK, LABELS)
    assert set(warm) == set(LABELS)
    assert math.isclose(sum(warm.values()), 1.0, rel_tol=1e-6)
    engine.forget()
    cold = engine.score_choices(PICK, LABELS)
    for label in LABELS:  # the reused prefix changes only float rounding
        assert abs(warm[label] - cold[label]) < 0.02


def test_score_choices_rejects_labels_sharing_a_token(engine):
    with pytest.raises(ValueError, match="duplicates"):
        engine.score_choices(PICK, ["A", "A"])


def test_a_prompt_longer_than_the_context_is_refused(engine):
    long = [{"role": "user", "content": "stapler " * 2000}]
    with pytest.raises(ContextOverflow, match="AISLE_LLM_CONTEXT"):
        engine.chat(long, max_tokens=8)


def test_a_folder_or_an_adapter_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(EngineUnavailable, match="GGUF"):
        gguf_file(Settings(llm="llamacpp", llm_model=tmp_path))
    with pytest.raises(EngineUnavailable, match="adapter"):
        LlamaCppEngine(Settings(llm="llamacpp"), adapter=tmp_path)
