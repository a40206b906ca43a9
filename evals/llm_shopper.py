"""The LLM shopper for `aisle eval simulate --shopper llm`: the scripted shopper's decisions, said
in a real shopper's words.

What to ask for next stays the `ScriptedShopper`'s decision, so `said` is exact gold and the
violation checks stay valid; an LLM only phrases that message ("One that is quiet, please." ->
"Got anything quiet? It's for a shared office."). The model gets only what the script decided
(its message, a style, and the title of the shown item a rejection refers to), never the
target's record.

The phrasing is untrusted output, checked before it is sent (`Phraser.check`): it must keep the
scripted content (the need and feature words, the brand, the price figure, the ordinal and the
"not" of a rejection) and add nothing the script did not say (no word of the target's title
beyond what the shopper knows, no catalog brand, number, ordinal, feature word or price talk).
A failed check or an engine error sends the scripted text instead, counted by reason: the report
gives the phrasing's kept share and the LLM's latency per turn.

The openings of all shoppers are phrased in one `engine.batch` call; follow-ups, which depend on
what each system showed, one call per turn. Decoding is greedy, so one prompt gets one phrasing,
cached: every system hears the same words for the same decision.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.engines.base import EngineError, LLMEngine, Message
from agent.lexicon import is_non_brand
from agent.prompts import prompt_fingerprint, render_chat
from agent.text import content_stems, find_seq, stem, stems, tokens
from evals.metrics import latency_summary, rate
from evals.simulate import _VAGUE, ORDINAL_WORDS, FeatureWords, Said, ScriptedShopper, Shopper, Target, TitleGuard
from retrieval.catalog import Item

PROMPT = "shopper.v1"
MAX_TOKENS = 40  # one short sentence; a longer answer is cut and then fails the checks
MAX_WORDS = 30
MAX_SENTENCES = 2  # a request and perhaps a short reason; a small model runs on, repeating itself
EXAMPLES = 12  # phrasings kept in the results, for a reader to judge
# A shopper's voice, one per shopper (by its target's id): the wording varies across shoppers, not
# within one conversation.
# ("chatty" made SmolLM2-135M talk about being a chatbot.)
STYLES = ("short and casual", "polite", "friendly, with a short reason", "direct", "casual, with a short reason")

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATIONS = frozenset({"not", "no", "never", "nothing", "dislike", "hate", "don", "doesn", "isn", "aren", "won", "didn", "nope", "neither", "nor"})
_PRICE_WORDS = frozenset({"cheap", "cheaper", "cheapest", "price", "priced", "pricey", "cost", "costs", "budget", "affordable", "expensive", "dollars", "bucks", "inexpensive"})
_PRICE_CUES = frozenset({"cheap", "cheaper", "under", "below", "less", "budget", "max", "maximum", "most", "within", "affordable", "inexpensive"})
_OTHER_CUES = frozenset({"else", "other", "others", "another", "different", "more", "alternatives", "new"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PREFIX = re.compile(r"^\s*(?:shopper|rewritten message|message|customer|me)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    """One scripted decision to phrase: the scripted text and what any phrasing of it must keep.

    `known`: everything the shopper may say at this point (the script's text, its need, the
    features and brand it stated); a phrasing may use no title word, brand or feature beyond it."""

    kind: str  # "first", "feature", "reject_item", "ask_brand", "avoid_brand", "cheaper", "else"
    script: str
    keep: tuple[str, ...] = ()  # phrases whose content words must all appear
    ordinal: str = ""  # the shown item a rejection refers to ("second")
    item: str = ""  # that item's title, the only record text the model sees
    known: str = ""

    @property
    def negated(self) -> bool | None:
        """Must the phrasing say "not" (True), must it not (False), or either (None)."""
        return {"reject_item": True, "avoid_brand": True, "else": None}.get(self.kind, False)


def _known(script: str, target: Target, said: Said) -> str:
    return " ".join((script, target.need, target.kind, *said.features, said.brand))


def opening_step(script: str, target: Target, said: Said) -> Step:
    return Step("first", script, keep=tuple(p for p in (target.need, *said.features) if p), known=_known(script, target, said))


def react_step(kind: str, script: str, target: Target, before: Said, after: Said, shown: Sequence[Item]) -> Step:
    """The step the script just took, read off what it added to `said`."""
    known = _known(script, target, after)
    if kind == "feature":
        return Step(kind, script, keep=(after.features[-1],), known=known)
    if kind == "reject_item":
        pos = next(p for p, i in enumerate(shown) if i.id in after.rejected_ids - before.rejected_ids)
        return Step(kind, script, ordinal=ORDINAL_WORDS[pos], item=shown[pos].title, known=known)
    if kind == "ask_brand":
        return Step(kind, script, keep=(after.brand,), known=known)
    if kind == "avoid_brand":
        (brand,) = after.avoid_brands - before.avoid_brands
        return Step(kind, script, keep=(brand,), known=f"{known} {brand}")
    return Step(kind, script, known=known)


def style_of(target: Target) -> str:
    return STYLES[zlib.crc32(target.id.encode()) % len(STYLES)]


def clean(raw: str) -> str:
    """The first MAX_SENTENCES sentences of the answer's first non-empty line, without quotes or a
    "Shopper:" label."""
    line = next((s for s in raw.strip().splitlines() if s.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'“”‘’` ").strip()
    return " ".join(_SENTENCE_END.split(line)[:MAX_SENTENCES])


def repeats(words: Sequence[str], n: int = 3) -> bool:
    """Does a run of n words occur twice ("I'm looking for it. I'm looking for it.")?"""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


def _numbers(text: str) -> set[float]:
    return {float(n.replace(",", ".")) for n in _NUMBER.findall(text)}


def _has(words: list[str], phrase: tuple[str, ...]) -> bool:
    return bool(find_seq(words, list(phrase)))


class Phraser:
    """Phrases scripted steps with an LLM, checks each phrasing, and counts what it kept."""

    def __init__(self, engine: LLMEngine, items: Mapping[str, Item], features: FeatureWords, *, max_tokens: int = MAX_TOKENS, own_engine: bool = False) -> None:
        self.engine, self.max_tokens, self.own_engine = engine, max_tokens, own_engine
        self.brands = {tuple(stems(i.brand)) for i in items.values() if tokens(i.brand) and not is_non_brand(i.brand)}
        self.feature_words = {tuple(stems(v)) for v in features.df if tokens(v)} | {(stem(v),) for v in _VAGUE}
        # The worked example's own words ("waterproof"): a small model copies them into its answer.
        example = [m["content"] for m in self.prompt(Step("first", "-"), STYLES[0]) if m["role"] == "assistant"]
        self.example_words = frozenset(content_stems(" ".join(example)))
        self.cache: dict[tuple[tuple[str, str], ...], str | None] = {}  # prompt -> raw answer (None: the engine failed)
        self.sent = 0
        self.kept = 0
        self.fallbacks: Counter[str] = Counter()
        self.llm_ms: list[float] = []
        self.batch_prompts = 0
        self.batch_seconds = 0.0
        self.examples: list[dict[str, str]] = []

    def prompt(self, step: Step, style: str) -> list[Message]:
        return render_chat(PROMPT, message=step.script, style=style, item=step.item, ordinal=step.ordinal)

    @staticmethod
    def _key(messages: Sequence[Message]) -> tuple[tuple[str, str], ...]:
        return tuple((m["role"], m["content"]) for m in messages)

    def prefetch(self, steps: Sequence[tuple[Step, str]]) -> None:
        """Phrase many steps in one batch call (the openings of every shopper)."""
        prompts = {self._key(p): p for p in (self.prompt(s, style) for s, style in steps)}
        todo = [k for k in prompts if k not in self.cache]
        if not todo:
            return
        t0 = time.perf_counter()
        try:
            answers: list[str | None] = list(self.engine.batch([prompts[k] for k in todo], max_tokens=self.max_tokens))
        except EngineError:
            answers = [None] * len(todo)
        self.batch_seconds += time.perf_counter() - t0
        self.batch_prompts += len(todo)
        self.cache.update(zip(todo, answers))

    def _raw(self, messages: list[Message]) -> str | None:
        key = self._key(messages)
        if key not in self.cache:
            t0 = time.perf_counter()
            try:
                self.cache[key] = self.engine.chat(messages, max_tokens=self.max_tokens)
            except EngineError:
                self.cache[key] = None
            self.llm_ms.append((time.perf_counter() - t0) * 1e3)
        return self.cache[key]

    def phrase(self, step: Step, style: str, guard: TitleGuard) -> str:
        """The LLM's phrasing of the step if it passes `check`, else the scripted text."""
        raw = self._raw(self.prompt(step, style))
        text = clean(raw) if raw is not None else ""
        problem = "engine error" if raw is None else self.check(text, step, guard)
        self.sent += 1
        if problem is None:
            self.kept += 1
        else:
            self.fallbacks[problem] += 1
        if len(self.examples) < EXAMPLES and not any(e["script"] == step.script and e["llm"] == text for e in self.examples):
            self.examples.append({"step": step.kind, "script": step.script, "llm": text, "sent": text if problem is None else step.script, "problem": problem or ""})
        return text if problem is None else step.script

    def check(self, text: str, step: Step, guard: TitleGuard) -> str | None:
        """Why the phrasing may not be sent (None: it may)."""
        said = tokens(text)
        if not said or len(said) > MAX_WORDS or "<<" in text or ">>" in text:
            return "empty or too long"
        if repeats(said):
            return "repetition"
        words, known = stems(text), stems(step.known)
        if guard.leaks(text) or guard.words_beyond(text, step.known):
            return "title words"
        for phrase in step.keep:
            if not set(content_stems(phrase) or stems(phrase)) <= set(words):
                return "dropped content"
        if _numbers(text) != _numbers(step.script):
            return "number"
        if [w for w in said if w in ORDINAL_WORDS] != ([step.ordinal] if step.ordinal else []):
            return "ordinal"
        cues = set(said)
        if step.kind == "cheaper":
            if not cues & _PRICE_CUES:
                return "dropped content"
        elif cues & _PRICE_WORDS or "$" in text:
            return "price talk"
        if any(_has(words, b) and not _has(known, b) for b in self.brands):
            return "brand"
        if any(_has(words, f) and not _has(known, f) for f in self.feature_words):
            return "new feature"
        if (set(words) & self.example_words) - set(known):
            return "copied the example"
        if step.kind == "else" and not cues & _OTHER_CUES:
            return "dropped content"
        negated = bool(cues & _NEGATIONS)
        if step.negated is not None and negated != step.negated:
            return "negation"
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "model": self.engine.model_id,
            "prompt": PROMPT,
            "prompt_sha": prompt_fingerprint(PROMPT),
            "max_tokens": self.max_tokens,
            "messages": self.sent,
            "llm_kept": self.kept,
            "kept_share": rate(self.kept, self.sent),
            "fallbacks_by_reason": dict(sorted(self.fallbacks.items())),
            "opening_batch": {"prompts": self.batch_prompts, "seconds": round(self.batch_seconds, 2), "ms_per_prompt": self.batch_seconds * 1e3 / self.batch_prompts if self.batch_prompts else None},
            "llm_latency_per_turn": latency_summary(self.llm_ms),
            "examples": self.examples,
        }

    def close(self) -> None:
        if self.own_engine:
            self.engine.close()


class LLMShopper(Shopper):
    """The `ScriptedShopper`'s decisions (its `said` is this shopper's), phrased by `Phraser`."""

    name = "llm"

    def __init__(self, phraser: Phraser, opening: str = "random") -> None:
        super().__init__()
        self.script = ScriptedShopper(opening)
        self.said = self.script.said
        self.phraser = phraser

    def _guard(self) -> TitleGuard:
        if self.guard is None:
            raise RuntimeError("LLMShopper needs the simulator's title guard (evals.simulate.simulate sets it) to check its phrasings")
        return self.guard

    def first_message(self, target: Target) -> str:
        script = self.script.first_message(target)
        return self.phraser.phrase(opening_step(script, target, self.said), style_of(target), self._guard())

    def react(self, shown: Sequence[Item], target: Target, turn: int) -> str | None:
        before = Said(self.said.brand, set(self.said.avoid_brands), set(self.said.rejected_ids), self.said.price_max, list(self.said.features))
        script = self.script.react(shown, target, turn)
        if script is None:
            return None
        step = react_step(self.script.last, script, target, before, self.said, shown)
        return self.phraser.phrase(step, style_of(target), self._guard())


def prefetch_openings(phraser: Phraser, targets: Sequence[Target], opening: str = "random") -> None:
    """Phrase the first message of every shopper in one batch (each system's shopper then finds
    its opening in the cache)."""
    steps = []
    for target in targets:
        script = ScriptedShopper(opening)
        steps.append((opening_step(script.first_message(target), target, script.said), style_of(target)))
    phraser.prefetch(steps)


__all__ = ["LLMShopper", "Phraser", "Step", "prefetch_openings"]
