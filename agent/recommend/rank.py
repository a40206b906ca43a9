"""LLM re-ranking of retrieval candidates, in two modes.

- "onepass" (LlamaRec, Yue et al. 2023): candidates are listed under letters A, B, C, ...; the
  model's next-token probabilities over those letters (`engine.score_choices`) rank every
  candidate in ONE forward pass, with no generation. LLMs favour some positions in a list
  (SmolLM2-135M puts ~40 % of its mass on "A" whatever the items are), so each label's
  probability is divided by the model's probability of that label for a content-free prompt
  (same template, every candidate "N/A", no query or history; Zhao et al. 2021, "Calibrate before
  use"). That prior costs one forward pass per (template, number of candidates) and is cached.
  The probabilities can also be averaged over a few candidate orders (original, reversed, seeded
  shuffles; `n_orders`), at one forward pass per order. `bench/position_bias.py` measures both.
- "listwise": the model writes the candidates best-first as JSON, constrained by a schema whose
  items are an enum of the candidates' labels and item ids (`engine.chat_json`); the template
  says which to write (rerank_listwise.v1: labels, v2: item ids). Slower (one decoding step per
  token), kept for comparison and for engines without logprobs.

The LLM is untrusted: labels/ids it returns that are not candidates are dropped, duplicates are
ignored, missing candidates keep retriever order after the ones it named; an engine error or a
malformed answer yields the retriever order with `llm_valid=False` and a `fallback` reason, never
an exception. Final score = w * LLM score + (1 - w) * retrieval score, both min-max normalised
over the candidates, ties broken by retriever rank (deterministic).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.engines.base import EngineError, LLMEngine, Message
from agent.prompts import DEFAULT_PROMPTS, canonical_name, prompt_source, render_chat
from retrieval.catalog import Item

log = logging.getLogger(__name__)

MODES = ("onepass", "listwise", "none")
MAX_LABELS = 26  # A..Z: single-token labels; candidates past this keep retriever order at the end


@dataclass(frozen=True)
class Candidate:
    """A retrieved item and its retrieval score (higher is better; any scale)."""

    item: Item
    retrieval_score: float


@dataclass
class RankedItem:
    item: Item
    score: float  # final blended score, in [0, 1]
    retrieval_score: float  # the candidate's raw retrieval score
    llm_score: float | None  # normalised LLM score in [0, 1]; None when the LLM was not used
    retrieval_rank: int  # 0-based position in the retriever's order


@dataclass
class RankResult:
    items: list[RankedItem]
    mode: str
    llm_valid: bool  # the LLM answer was used (True for mode "none": nothing was asked)
    fallback: str | None = None  # "<code> (<detail>)" when the retriever order was used instead; code =
    # the EngineError class name (InvalidOutput, ContextOverflow, EngineTimeout, ...) or "malformed_answer"
    prompt: str | None = None  # template name used
    dropped: list[str] = field(default_factory=list)  # labels/ids from the LLM that are not candidates
    raw: Any = None  # the engine's answer (probabilities or JSON), for debugging and evals
    elapsed_ms: float = 0.0


@dataclass
class RankContext:
    """What the prompt may show about the user (all untrusted text)."""

    query: str | None = None
    history_titles: Sequence[str] = ()  # oldest first; the prompt shows the last few
    conversation: Sequence[Message] = ()


PRIOR_FLOOR = 1e-4  # smallest label prior used for calibration (caps the boost of a rare label at 10^4)


def _probability(probs: Any, label: str) -> float:
    """An engine's probability for `label`, checked (engines are backends we do not control)."""
    if not isinstance(probs, dict):
        raise TypeError(f"expected a label -> probability map, got {type(probs).__name__}")
    p = probs.get(label)
    if not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
        raise ValueError(f"probability for label {label!r} is {p!r}")
    return float(p)


def _label(i: int) -> str:
    return chr(ord("A") + i)


def min_max(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; all-equal (or a single value) -> all 1.0, non-finite -> 0."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [0.0 for _ in values]
    lo, hi = min(finite), max(finite)
    if hi - lo <= 1e-12:
        return [1.0 if math.isfinite(v) else 0.0 for v in values]
    return [(v - lo) / (hi - lo) if math.isfinite(v) else 0.0 for v in values]


class Reranker:
    """Re-rank up to 26 candidates with an LLM. Stateless apart from its settings; thread-safe as
    far as the engine is."""

    def __init__(
        self,
        engine: LLMEngine | None,
        *,
        mode: str = "onepass",
        prompt: str | None = None,
        llm_weight: float = 0.5,
        n_orders: int = 1,
        calibrate: bool = True,
        seed: int = 0,
        history_items: int = 5,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown rank mode {mode!r}; use one of {', '.join(MODES)}")
        if not 0.0 <= llm_weight <= 1.0:
            raise ValueError(f"llm_weight must be in [0, 1], got {llm_weight}")
        if n_orders < 1:
            raise ValueError(f"n_orders must be >= 1, got {n_orders}")
        if mode != "none" and engine is None:
            raise ValueError(f"rank mode {mode!r} needs an engine")
        self.engine = engine
        self.mode = mode
        kind = "rerank_onepass" if mode == "onepass" else "rerank_listwise"
        self.prompt = canonical_name(prompt) if prompt else (DEFAULT_PROMPTS[kind] if mode != "none" else None)
        # Whether the listwise template asks for item ids rather than letters (sizes the token budget).
        self.answers_with_ids = mode == "listwise" and "{{ c.id" in prompt_source(self.prompt)
        self.llm_weight = llm_weight
        self.n_orders = n_orders
        self.calibrate = calibrate
        self.seed = seed
        self.history_items = history_items
        self._priors: dict[int, list[float]] = {}  # number of candidates -> content-free label prior

    # --- prompt ------------------------------------------------------------------------------------

    def messages(self, candidates: Sequence[Candidate], context: RankContext) -> list[Message]:
        """The prompt for `candidates` in the given order (labels A, B, ... by position)."""
        assert self.prompt is not None
        rows = [
            {
                "label": _label(i),
                "id": c.item.id,
                "title": c.item.title,
                "brand": c.item.brand,
                "category": c.item.category,
                "description": c.item.description,
            }
            for i, c in enumerate(candidates)
        ]
        history = list(context.history_titles)[-self.history_items :] if self.history_items else []
        conversation = [m for m in context.conversation if m.get("role") in ("user", "assistant")][-6:]
        return render_chat(self.prompt, query=context.query or None, history=history, conversation=conversation, candidates=rows)

    def orders(self, n: int) -> list[list[int]]:
        """Candidate orders to average over: original, reversed, then seeded shuffles."""
        base = list(range(n))
        out = [base]
        if n > 1 and self.n_orders > 1:
            out.append(base[::-1])
        rng = random.Random(self.seed)
        tries = 0
        while len(out) < self.n_orders and tries < 20 and n > 2:
            perm = base[:]
            rng.shuffle(perm)
            tries += 1
            if perm not in out:
                out.append(perm)
        return out

    # --- ranking -----------------------------------------------------------------------------------

    def rank(self, candidates: Sequence[Candidate], context: RankContext | None = None) -> RankResult:
        """Rank `candidates` (given in retriever order, best first). Never raises for LLM trouble."""
        start = time.perf_counter()
        context = context or RankContext()
        cands = list(candidates)
        if not cands:
            return RankResult([], self.mode, llm_valid=True, prompt=self.prompt)
        if self.mode == "none" or len(cands) == 1:
            result = self._blend(cands, None, llm_valid=True, fallback=None)
        else:
            head = cands[:MAX_LABELS]
            try:
                if self.mode == "onepass":
                    llm, raw, dropped = self._onepass(head, context)
                else:
                    llm, raw, dropped = self._listwise(head, context)
            except EngineError as exc:
                log.warning("re-ranking fell back to retriever order: %s: %s", type(exc).__name__, exc)
                result = self._blend(cands, None, llm_valid=False, fallback=f"{type(exc).__name__} ({exc})")
                result.raw = getattr(exc, "raw", None)
            except (ValueError, TypeError, KeyError) as exc:  # a malformed answer from the engine
                log.warning("re-ranking fell back to retriever order: malformed LLM answer: %s", exc)
                result = self._blend(cands, None, llm_valid=False, fallback=f"malformed_answer ({exc})")
            else:
                result = self._blend(cands, llm, llm_valid=True, fallback=None)
                result.raw, result.dropped = raw, dropped
        result.mode = self.mode
        result.prompt = self.prompt
        result.elapsed_ms = (time.perf_counter() - start) * 1e3
        return result

    def label_prior(self, n: int) -> list[float]:
        """P(label) for a content-free prompt with `n` "N/A" candidates (cached): the position bias
        that calibration divides out."""
        prior = self._priors.get(n)
        if prior is None:
            assert self.engine is not None
            blank = [Candidate(Item(id=f"n/a-{i}", title="N/A"), 0.0) for i in range(n)]
            labels = [_label(i) for i in range(n)]
            probs = self.engine.score_choices(self.messages(blank, RankContext()), labels)
            # Floor: an engine that reports only its top tokens may give a label 0.
            prior = [max(_probability(probs, label), PRIOR_FLOOR) for label in labels]
            self._priors[n] = prior
        return prior

    def _onepass(self, cands: list[Candidate], context: RankContext) -> tuple[list[float], Any, list[str]]:
        n = len(cands)
        labels = [_label(i) for i in range(n)]
        orders = self.orders(n)
        prompts = [self.messages([cands[i] for i in order], context) for order in orders]
        assert self.engine is not None
        answers = self.engine.score_choices_batch(prompts, labels)
        if not isinstance(answers, list) or len(answers) != len(orders):
            raise ValueError(f"expected {len(orders)} probability maps, got {type(answers).__name__}")
        raw_probs = [[_probability(probs, label) for label in labels] for probs in answers]  # checked first
        prior = self.label_prior(n) if self.calibrate else [1.0] * n
        totals = [0.0] * n
        for order, row in zip(orders, raw_probs):
            weighted = [row[pos] / prior[pos] for pos in range(n)]
            norm = sum(weighted) or 1.0
            for pos, cand_index in enumerate(order):
                totals[cand_index] += weighted[pos] / norm
        mean = [t / len(orders) for t in totals]
        raw = {"orders": answers, "prior": prior} if self.calibrate else answers
        return mean, raw, []

    def listwise_schema(self, n: int, ids: Sequence[str] = ()) -> dict[str, Any]:
        """Entries may be a label or a candidate's item id: whichever the template asks for."""
        labels = [_label(i) for i in range(n)]
        allowed = labels + [i for i in dict.fromkeys(ids) if i not in labels]
        return {
            "type": "object",
            "properties": {"ranking": {"type": "array", "items": {"type": "string", "enum": allowed}, "minItems": 1, "maxItems": n}},
            "required": ["ranking"],
            "additionalProperties": False,
        }

    def _listwise(self, cands: list[Candidate], context: RankContext) -> tuple[list[float], Any, list[str]]:
        n = len(cands)
        assert self.engine is not None
        ids = [c.item.id for c in cands]
        # ~6 tokens per label entry, ~4 more per item id (an ASIN is 10 characters)
        per_entry = 6 + (max(len(i) for i in ids) // 2 if self.answers_with_ids else 0)
        answer = self.engine.chat_json(self.messages(cands, context), self.listwise_schema(n, ids), max_tokens=per_entry * n + 16)
        order, dropped = parse_listwise(answer, ids)
        # Named candidates first (in the LLM's order), the rest in retriever order after them.
        named = set(order)
        rest = [i for i in range(n) if i not in named]
        full = order + rest
        llm = [0.0] * n
        for pos, idx in enumerate(full):
            llm[idx] = 1.0 - pos / max(n - 1, 1)
        return llm, answer, dropped

    def _blend(self, cands: list[Candidate], llm: list[float] | None, *, llm_valid: bool, fallback: str | None) -> RankResult:
        retrieval = min_max([c.retrieval_score for c in cands])
        n_llm = len(llm) if llm is not None else 0
        llm_norm = min_max(llm) if llm is not None else []
        w = self.llm_weight if llm is not None else 0.0
        items: list[RankedItem] = []
        for i, c in enumerate(cands):
            if i < n_llm:
                score = w * llm_norm[i] + (1.0 - w) * retrieval[i]
                llm_score: float | None = llm_norm[i]
            elif llm is None:  # no LLM answer: retrieval only
                score, llm_score = retrieval[i], None
            else:  # beyond the 26 labelled candidates: after every LLM-ranked one, in retriever order
                score, llm_score = 0.0, None
            items.append(RankedItem(c.item, score, c.retrieval_score, llm_score, i))
        items.sort(key=lambda r: (-r.score, r.retrieval_rank))
        if llm is None:  # pure retriever order, whatever the min-max ties say
            items.sort(key=lambda r: r.retrieval_rank)
        return RankResult(items, self.mode, llm_valid=llm_valid, fallback=fallback)


def parse_listwise(answer: Any, candidate_ids: Sequence[str]) -> tuple[list[int], list[str]]:
    """Candidate indices in the LLM's order, and the entries that were dropped.

    Accepts {"ranking": [...]} or a bare list; each entry may be a label ("C") or a candidate's
    item id. Unknown entries (including real catalog ids that are not candidates) are dropped,
    duplicates ignored. Raises ValueError when the answer has no list at all (malformed)."""
    entries = answer.get("ranking") if isinstance(answer, dict) else answer
    if not isinstance(entries, list):
        raise ValueError(f"expected a JSON list of labels under 'ranking', got {type(entries).__name__}")
    by_label = {_label(i): i for i in range(len(candidate_ids))}
    by_id = {cid: i for i, cid in enumerate(candidate_ids)}
    order: list[int] = []
    dropped: list[str] = []
    for entry in entries:
        key = str(entry).strip() if isinstance(entry, (str, int)) else None
        idx = None
        if key is not None:
            idx = by_label.get(key.upper()) if len(key) == 1 else None
            if idx is None:
                idx = by_id.get(key)
        if idx is None:
            dropped.append(str(entry)[:40])
        elif idx not in order:
            order.append(idx)
    return order, dropped
