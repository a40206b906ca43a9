"""The optional LLM reading of a message, and the check that decides what of it to believe.

Off by default: the packaged SmolLM2-135M needs ~8 s per extraction on one CPU thread and invents
brands and prices. When it is on, its answer only adds to the rules' reading, and every value must
be supported twice over: by the catalog (a brand it carries, a category it has) and by the
shopper's own words (the brand typed, the price written, the feature's words present). The
message is read without its quoted and instruction-like spans, so an injected "recommend
Swingline" cannot support a brand either.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from agent.dialogue.patterns import shopper_text
from agent.dialogue.state import DialogueState
from agent.dialogue.vocab import CatalogVocab
from agent.engines.base import EngineError, LLMEngine
from agent.prompts import PromptError, render_messages
from agent.text import content_stems, stems
from retrieval.screen import findings

if TYPE_CHECKING:
    from agent.dialogue.rules import Understanding

log = logging.getLogger(__name__)

LLM_EXTRACT_MAX_TOKENS = 160  # the schema's worst case fits; a model that rambles is cut and ignored

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": ["string", "null"], "maxLength": 32},
        "brands": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 2},
        "avoid_brands": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 2},
        "price_min": {"type": ["number", "null"]},
        "price_max": {"type": ["number", "null"]},
        "features": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 3},
        "use_case": {"type": ["string", "null"], "maxLength": 32},
    },
    "required": ["category", "brands", "avoid_brands", "price_min", "price_max", "features", "use_case"],
    "additionalProperties": False,
}


class LLMExtractor:
    """Asks an engine for a message's constraints (prompt `extract_state.v1`) and merges what survives validation."""

    def __init__(self, engine: LLMEngine, vocab: CatalogVocab, *, prompt: str = "extract_state.v1") -> None:
        self.engine = engine
        self.vocab = vocab
        self.prompt = prompt

    def extract(self, message: str, state: DialogueState, u: Understanding) -> None:
        """Add the model's validated constraints to `u`; a failed call is noted in `u.llm_dropped`."""
        try:
            messages = render_messages(
                self.prompt,
                message=message,
                catalog=self.vocab.name,
                has_prices=self.vocab.has_prices,
                current=state.describe(),
            )
            raw = self.engine.chat_json(messages, SCHEMA, max_tokens=LLM_EXTRACT_MAX_TOKENS)
        except (EngineError, PromptError, ValueError) as exc:
            log.info("LLM extraction skipped: %s", exc)
            u.llm_dropped.append(f"extraction failed: {exc}")
            return
        u.llm_used = True
        merge_llm_extraction(raw, message, self.vocab, u)


def merge_llm_extraction(raw: Any, message: str, vocab: CatalogVocab, u: Understanding) -> None:
    """Add the LLM's constraints to the rules' reading, keeping only what the message supports.

    The rules win on conflicts (they matched the message literally); a value the LLM could not have
    read in the message (a brand not typed, a price not written, words only inside a quote or an
    instruction-like span) is dropped and listed in `u.llm_dropped`.
    """
    if not isinstance(raw, dict):
        u.llm_dropped.append(f"not an object: {raw!r}"[:120])
        return
    for key in ("brands", "avoid_brands", "category", "features", "use_case"):
        values = _strings(raw.get(key))
        hostile = [v for v in values if findings(v)]
        if hostile:  # an instruction or an address read out of the message is never a constraint
            u.llm_dropped.extend(f"{key}: {v!r}" for v in hostile)
            raw = {**raw, key: [v for v in values if v not in hostile]}
    text = shopper_text(message)
    msg_stems = set(stems(text))
    msg_numbers = {_number(n) for n in re.findall(r"\d+(?:[.,]\d+)?", text)}

    def in_message(value: str) -> bool:
        words = content_stems(value)
        return bool(words) and all(w in msg_stems for w in words)

    for key, target, other in (("brands", u.brands, u.avoid_brands), ("avoid_brands", u.avoid_brands, u.brands)):
        for value in _strings(raw.get(key)):
            brand = vocab.canonical_brand(value)
            if brand is None or not in_message(value):
                u.llm_dropped.append(f"{key}: {value!r}")
            elif brand not in target and brand not in other:
                target.append(brand)
    for value in _strings(raw.get("category"))[:1]:
        cat = vocab.canonical_category(value)
        if cat is None or not in_message(value):
            u.llm_dropped.append(f"category: {value!r}")
        elif not u.categories:
            u.categories.append(cat)
    for key in ("price_min", "price_max"):
        value = raw.get(key)
        if value is None:
            continue
        number = _number(value)
        if not vocab.has_prices or number is None or number not in msg_numbers:
            u.llm_dropped.append(f"{key}: {value!r}")
        elif getattr(u, key) is None:
            setattr(u, key, number)
    if u.price_min is not None and u.price_max is not None and u.price_min > u.price_max:
        u.llm_dropped.append(f"price_min: {u.price_min!r} (above price_max)")
        u.price_min = None
    for value in _strings(raw.get("features")):
        if not in_message(value):
            u.llm_dropped.append(f"features: {value!r}")
        elif value.casefold() not in (f.casefold() for f in u.features):
            u.features.append(value)
    for value in _strings(raw.get("use_case"))[:1]:
        if in_message(value):
            u.use_case = u.use_case or value
        else:
            u.llm_dropped.append(f"use_case: {value!r}")


def _strings(value: Any) -> list[str]:
    """A field the schema declares as a string or a list of strings, as non-empty stripped strings
    (a model may still answer "Swingline" where a list was asked for)."""
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip()]


def _number(value: Any) -> float | None:
    """A price the model (or the message) wrote: 20, 19.99, "1,200"; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None
