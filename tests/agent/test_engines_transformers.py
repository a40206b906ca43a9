"""The embedded transformers engine with the REAL packaged SmolLM2-135M-Instruct (no mocks).

The engine is loaded once per session (tests/agent/conftest.py) from the converted model cached
in `.aisle/models`; the GGUF conversion itself is exercised once, into a temp home.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from agent.engines import ContextOverflow, EngineUnavailable, InvalidOutput, make_engine
from agent.engines.model_store import default_gguf_path, ensure_llm_model, is_converted
from agent.engines.transformers_engine import pick_dtype
from agent.settings import Settings

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
OFFICE = [{"role": "user", "content": "Name three things you can buy in an office supply store."}]
HELLO = [{"role": "user", "content": "Hi!"}]

LABELS = [chr(ord("A") + i) for i in range(20)]
TITLES = [
    "Swingline Stapler, Commercial Desk Stapler, 20 Sheet Capacity, Black",
    "BIC Round Stic Xtra Life Ballpoint Pen, Medium Point, Black, 60-Count",
    "Post-it Super Sticky Notes, 3x3 in, 12 Pads, Assorted Colors",
    "Scotch Heavy Duty Shipping Packaging Tape, 1.88 in x 54.6 yd, 6 Rolls",
    "Sharpie Permanent Markers, Fine Point, Black, 12 Count",
    "AmazonBasics Multipurpose Copy Printer Paper, 8.5 x 11 Inch, 1 Ream",
    "Fellowes Powershred 8Cd 8-Sheet Cross-Cut Paper and Credit Card Shredder",
    "Texas Instruments TI-84 Plus Graphing Calculator, Black",
    "Avery Durable View 3 Ring Binder, 1 Inch Slant Rings, White",
    "Paper Mate Mechanical Pencils, 0.7mm HB #2, 24 Count",
    "Elmer's Disappearing Purple School Glue Sticks, 0.21 oz, 30 Count",
    "Brother P-touch PTD210 Label Maker, One-Touch Keys",
    "Westcott 8-Inch Straight Titanium Bonded Scissors, Pack of 3",
    "Expo Low-Odor Dry Erase Markers, Chisel Tip, Assorted, 12 Count",
    "Smead Manila File Folders, 1/3-Cut Tab, Letter Size, 100 per Box",
    "Zebra F-301 Retractable Ballpoint Stainless Steel Pen, Fine Point",
    "Staples Hyper Tough Standard Staples, 5000 per Box",
    "Quartet Cork Board Bulletin Board, 17 x 23 Inches, Oak Frame",
    "Pilot G2 Premium Retractable Gel Pens, Fine Point, Black, 12 Pack",
    "Mead Spiral Notebook, 1 Subject, College Ruled Paper, 70 Sheets",
]


def rerank_prompt(titles: list[str]) -> list[dict[str, str]]:
    listing = "\n".join(f"{label}. {title}" for label, title in zip(LABELS, titles))
    return [
        {"role": "system", "content": "You pick the product that best fits the shopper's request."},
        {
            "role": "user",
            "content": f"Request: I need something to staple documents together.\n\nCandidates:\n{listing}\n\n"
            "Answer with the letter of the best candidate only.",
        },
    ]


def test_conversion_of_packaged_gguf_is_atomic_and_keeps_chat_template(tmp_path, transformers_engine):
    """A .gguf named in settings is converted once into models_dir, as a complete HF folder."""
    from transformers import AutoTokenizer

    settings = Settings(home=tmp_path, llm_model=default_gguf_path())
    folder = ensure_llm_model(settings)
    assert folder == settings.models_dir / "SmolLM2-135M-Instruct.Q4_1"
    assert is_converted(folder)
    assert [p.name for p in settings.models_dir.iterdir()] == [folder.name], "temp folder left behind"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert ensure_llm_model(settings) == folder  # cached: no second conversion

    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template(CAPITAL, add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>user\nWhat is the capital" in text and text.endswith("<|im_start|>assistant\n")

    # Same weights as the cached default conversion the session engine runs on.
    from safetensors.torch import load_file

    ours = load_file(folder / "model.safetensors")
    cached = load_file(transformers_engine.model_dir / "model.safetensors")
    assert ours.keys() == cached.keys()
    assert all(ours[k].equal(cached[k]) for k in ours)


def test_chat_answers_sensibly_and_deterministically(transformers_engine):
    first = transformers_engine.chat(CAPITAL, max_tokens=24)
    assert "Paris" in first
    assert transformers_engine.chat(CAPITAL, max_tokens=24) == first


def test_stream_pieces_join_to_chat_text(transformers_engine):
    whole = transformers_engine.chat(OFFICE, max_tokens=32)
    pieces = list(transformers_engine.stream(OFFICE, max_tokens=32))
    assert len(pieces) > 1
    assert "".join(pieces) == whole
    assert whole


def test_chat_json_is_valid_against_schema(transformers_engine):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["paper", "pen", "desk", "ink"]}},
        },
        "required": ["name", "count", "tags"],
        "additionalProperties": False,
    }
    messages = [
        {
            "role": "user",
            "content": 'Describe "a pack of 12 blue pens" as JSON with keys name (string), count (integer) '
            'and tags (list of: "paper", "pen", "desk", "ink").',
        }
    ]
    value = transformers_engine.chat_json(messages, schema, max_tokens=64)
    assert set(value) == {"name", "count", "tags"}
    assert isinstance(value["count"], int) and isinstance(value["name"], str)
    assert set(value["tags"]) <= {"paper", "pen", "desk", "ink"}

    # Cut short by max_tokens: the JSON cannot be complete, and we get the raw text back.
    with pytest.raises(InvalidOutput) as info:
        transformers_engine.chat_json(messages, schema, max_tokens=3)
    assert info.value.raw.startswith("{")


def test_score_choices_is_a_distribution_over_labels(transformers_engine):
    messages = rerank_prompt(TITLES)
    scores = transformers_engine.score_choices(messages, LABELS)
    assert list(scores) == LABELS
    assert all(p >= 0.0 for p in scores.values())
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-6)

    # Scoring several prompts gives each the numbers it gets alone (no padding: batch-invariant,
    # in bfloat16 too).
    shorter = rerank_prompt([t.split(",")[0] for t in TITLES])
    batched = transformers_engine.score_choices_batch([shorter, messages], LABELS)
    alone = transformers_engine.score_choices(shorter, LABELS)
    assert batched == [alone, scores]

    # SmolLM2 splits numbers into digits: "10" and "11" both start with the token "1".
    with pytest.raises(ValueError, match="same token"):
        transformers_engine.score_choices(messages, ["10", "11"])


def test_scoring_dtype_follows_the_settings(transformers_engine):
    """Generation keeps float32 weights; scoring runs in llm_score_dtype ("auto": bf16 where the CPU
    has native bf16) and ranks like float32: same top label, probabilities within 0.05."""
    engine = transformers_engine
    assert engine.model.dtype == torch.float32
    assert engine.score_model.dtype == pick_dtype(engine.settings.llm_score_dtype)
    messages = rerank_prompt(TITLES)
    fast = engine.score_choices(messages, LABELS)
    saved, engine.score_model = engine.score_model, engine.model
    try:
        exact = engine.score_choices(messages, LABELS)
    finally:
        engine.score_model = saved
    assert max(fast, key=fast.get) == max(exact, key=exact.get)
    assert max(abs(fast[k] - exact[k]) for k in LABELS) < 0.05


def test_batch_equals_one_by_one_greedy(transformers_engine):
    """Left padding + attention mask + position ids from the mask: greedy batch output is the same
    text as one-by-one (fp32; a near-tie could in principle flip under different matmul shapes,
    which would show up here as a clear, reviewable diff)."""
    conversations = [CAPITAL, OFFICE, HELLO]
    batched = transformers_engine.batch(conversations, max_tokens=20)
    single = [transformers_engine.chat(c, max_tokens=20) for c in conversations]
    assert batched == single


def test_context_overflow_is_raised_before_generating(transformers_engine):
    huge = [{"role": "user", "content": "stapler " * 10_000}]
    with pytest.raises(ContextOverflow, match="context"):
        transformers_engine.chat(huge, max_tokens=8)
    with pytest.raises(ContextOverflow):
        transformers_engine.chat(HELLO, max_tokens=transformers_engine.context_window)
    with pytest.raises(ContextOverflow):
        transformers_engine.score_choices(huge, LABELS)


def test_missing_model_path_is_engine_unavailable(tmp_path):
    settings = Settings(home=tmp_path, llm="transformers", llm_model=tmp_path / "no-such-model")
    with pytest.raises(EngineUnavailable, match="AISLE_LLM_MODEL"):
        make_engine(settings)


def test_batch_bans_words_per_row(transformers_engine):
    """`banned` masks a row's words while decoding and leaves the other rows alone: the same
    prompt says "blue" without a ban (so the test can fail) and never with one."""
    ask = [{"role": "user", "content": "Repeat this sentence exactly: The stapler is blue."}]
    free, banned = transformers_engine.batch([ask, ask], max_tokens=30, banned=[[], ["blue", "Blue", "BLUE"]])
    assert re.search(r"\bblue\b", free, re.I), free
    assert not re.search(r"\bblue\b", banned, re.I), banned
    with pytest.raises(ValueError, match="1 lists for 2 conversations"):
        transformers_engine.batch([ask, ask], max_tokens=4, banned=[[]])
