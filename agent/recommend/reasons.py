"""Why-this-item reasons: one or two sentences per recommended item, checked against the item data.

Flow per batch of items (one `engine.batch` call per round, so k reasons cost one generation):
1. the LLM writes a reason from the `reason` template (item attributes + the user's words/history);
2. `agent.grounding.check_grounding` checks it; a failing reason is regenerated ONCE, the retry
   prompt listing the rejected claims;
3. still failing (or the engine failed): a template reason built only from the item's own
   attributes and the user's words, grounded by construction.

Each `Reason` says whether it passed and where it came from ("llm" | "llm-retry" | "template"),
so the UI can flag it and evals can count pass rates.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from agent.engines.base import EngineError, LLMEngine, Message
from agent.grounding import GroundingReport, check_grounding, item_evidence
from agent.prompts import DEFAULT_PROMPTS, canonical_name, data_text, render_chat
from retrieval.catalog import Item

log = logging.getLogger(__name__)

SOURCES = ("llm", "llm-retry", "template")
MAX_REASON_CHARS = 320


@dataclass
class Reason:
    item_id: str
    text: str
    grounded: bool
    source: str  # "llm" | "llm-retry" | "template"
    first_try_ok: bool = False  # the first LLM answer passed the grounding check
    problems: list[str] = field(default_factory=list)  # claims rejected on the last LLM attempt
    raw: list[str] = field(default_factory=list)  # the LLM's raw answers, in order (for evals)


@dataclass
class ReasonContext:
    """What the user said and bought (untrusted text; goes into data sections and the evidence)."""

    query: str | None = None
    history_titles: Sequence[str] = ()  # oldest first
    conversation: Sequence[Message] = ()

    def request_text(self) -> str | None:
        """What the user asked for: the query, else their last message in the conversation."""
        if self.query and self.query.strip():
            return self.query
        for m in reversed(list(self.conversation)):
            if m.get("role") == "user" and m.get("content", "").strip():
                return m["content"]
        return None

    def user_texts(self) -> list[str]:
        texts = [self.query or ""]
        texts.extend(self.history_titles)
        texts.extend(m.get("content", "") for m in self.conversation if m.get("role") == "user")
        return [t for t in texts if t]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEAD_IN = re.compile(r"^\s*(?:reason|answer|explanation|why)\s*[:\-]\s*", re.I)


def clean_reason(raw: str, max_sentences: int = 2) -> str:
    """First one or two complete sentences of the model's answer (a sentence cut off by the token
    limit is dropped when a complete one precedes it), without a 'Reason:' lead-in, quotes or
    markdown; cut to MAX_REASON_CHARS on a word boundary."""
    text = re.sub(r"[*_`#]+", "", raw or "")
    text = " ".join(text.split())
    text = _LEAD_IN.sub("", text).strip().strip('"').strip()
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) > 1 and not sentences[-1].rstrip().endswith((".", "!", "?")):
        sentences = sentences[:-1]
    text = " ".join(sentences[:max_sentences]).strip()
    if len(text) > MAX_REASON_CHARS:
        cut = text[:MAX_REASON_CHARS]
        text = cut[: cut.rfind(" ")].rstrip(" ,;:-") + "…" if " " in cut else cut
    return text


_DATA_ECHO = re.compile(r"<<<|>>>|‹|›|\b(?:Title|Brand|Category|Description)\s*:|\bSHOPPER (?:ASKED|BOUGHT)\b|\bITEM\b")
# Talk about the prompt instead of to the shopper: "the shopper bought before", "the other items in
# the list" (the reason is shown to the shopper, who sees no list of candidates and is "you").
_PROMPT_TALK = re.compile(r"\bthe (?:shopper|customer)\b|\b(?:in|from|on) (?:the|this) list\b|\bother items\b|\bthe (?:data|item) section", re.I)


def format_problems(text: str) -> list[str]:
    """Reasons that are not prose: empty, a few words, an echo of the prompt's data sections, or a
    loop repeating the same phrase (small models do all three; such text is never shown)."""
    if len(text.split()) < 5:
        return ["the answer is not a sentence (too short)"]
    if _DATA_ECHO.search(text):
        return ["the answer copied the data sections instead of writing sentences to the shopper"]
    if _PROMPT_TALK.search(text):
        return ["the answer talks about the prompt (the shopper, the list) instead of to the shopper"]
    words = re.findall(r"[a-z0-9]+", text.lower())
    grams = Counter(" ".join(words[i : i + 4]) for i in range(len(words) - 3))
    # three times: twice is normal when the item and a bought item have similar titles
    if grams and max(grams.values()) >= 3:
        return ["the answer repeats itself"]
    return []


def _short_title(title: str, limit: int = 80) -> str:
    return data_text(title, limit)


def template_reason(item: Item, context: ReasonContext) -> str:
    """A reason built only from the item's attributes and the user's own words: always grounded
    (every word comes from the evidence), if plain."""
    kind = item.category or (item.categories[0] if item.categories else "")
    what = (f"an {kind} item" if kind[:1].lower() in "aeiou" else f"a {kind} item") if kind else "an item"
    brand = f" from {item.brand}" if item.brand and item.brand.casefold() not in {"unknown", "generic", "various"} else ""
    asked = context.request_text()
    title = _short_title(item.title)
    if asked:
        return f"Matches what you asked for (\"{_short_title(asked, 120)}\"): {title}, {what}{brand}."
    if context.history_titles:
        return f"Suggested because you bought {_short_title(context.history_titles[-1], 70)}: {title}, {what}{brand}."
    return f"{title}: {what}{brand}."


class ReasonWriter:
    """Writes grounded reasons for items with an LLM (batched), with one retry and a template fallback."""

    def __init__(
        self,
        engine: LLMEngine | None,
        *,
        prompt: str | None = None,
        catalog_brands: Collection[str] = (),
        max_tokens: int = 48,
        history_items: int = 3,
    ) -> None:
        self.engine = engine
        self.prompt = canonical_name(prompt) if prompt else DEFAULT_PROMPTS["reason"]
        self.catalog_brands = frozenset(catalog_brands)
        self.max_tokens = max_tokens
        self.history_items = history_items

    def messages(self, item: Item, context: ReasonContext, problems: Sequence[str] = ()) -> list[Message]:
        view = {
            "title": item.title,
            "brand": item.brand,
            "category": item.category,
            "categories": list(item.categories),
            "description": item.description,
        }
        history = list(context.history_titles)[-self.history_items :] if self.history_items else []
        conversation = [m for m in context.conversation if m.get("role") in ("user", "assistant")][-4:]
        return render_chat(self.prompt, item=view, query=context.query or None, history=history, conversation=conversation, problems=list(problems))

    def evidence(self, item: Item, context: ReasonContext) -> list[str]:
        """Item attributes + the user's words + the history titles the prompt showed (only those:
        a number that matches some old purchase the model never saw supports nothing)."""
        shown = list(context.history_titles)[-self.history_items :] if self.history_items else []
        return item_evidence(item, user_texts=ReasonContext(context.query, shown, context.conversation).user_texts())

    def check(self, text: str, item: Item, context: ReasonContext, *, prose: bool = True) -> GroundingReport:
        """Format check (prose, not an echo of the prompt; LLM text only) + grounding check."""
        problems = format_problems(text) if prose else []
        if problems:
            return GroundingReport(ok=False, unsupported=problems, checked=0)
        return check_grounding(text, self.evidence(item, context), catalog_brands=self.catalog_brands)

    def _generate(self, conversations: list[list[Message]]) -> list[str] | None:
        """Raw LLM answers, or None when the engine failed (the caller falls back to templates)."""
        if self.engine is None or not conversations:
            return None
        try:
            answers = self.engine.batch(conversations, max_tokens=self.max_tokens)
        except EngineError as exc:
            log.warning("reason generation failed (%s: %s); using template reasons", type(exc).__name__, exc)
            return None
        if not isinstance(answers, list) or len(answers) != len(conversations):
            log.warning("engine returned %r answers for %d prompts; using template reasons", type(answers).__name__, len(conversations))
            return None
        return [a if isinstance(a, str) else "" for a in answers]

    def write(self, items: Sequence[Item], context: ReasonContext | None = None) -> list[Reason]:
        """One Reason per item, in order, for one user. Never raises for LLM trouble."""
        context = context or ReasonContext()
        return self.write_many([(item, context) for item in items])

    def write_many(self, jobs: Sequence[tuple[Item, ReasonContext]]) -> list[Reason]:
        """Reasons for (item, context) pairs, possibly of different users, generated in one batch
        per round (evals and benchmarks use this to amortise the model over many users)."""
        reasons: list[Reason | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        problems: dict[int, list[str]] = {i: [] for i in pending}
        raws: dict[int, list[str]] = {i: [] for i in pending}
        for attempt, source in enumerate(("llm", "llm-retry")):
            if not pending:
                break
            answers = self._generate([self.messages(jobs[i][0], jobs[i][1], problems[i] if attempt else ()) for i in pending])
            if answers is None:
                break
            still: list[int] = []
            for i, raw in zip(pending, answers):
                item, context = jobs[i]
                raws[i].append(raw)
                text = clean_reason(raw)
                report = self.check(text, item, context)
                if report.ok:
                    reasons[i] = Reason(item.id, text, True, source, first_try_ok=attempt == 0, raw=raws[i])
                else:
                    problems[i] = report.unsupported
                    still.append(i)
            pending = still
        for i in pending:
            item, context = jobs[i]
            text = template_reason(item, context)
            report = self.check(text, item, context, prose=False)
            if not report.ok:  # cannot happen by construction; keep the promise visible if it ever does
                log.error("template reason for item %s failed grounding: %s", item.id, report.unsupported)
            reasons[i] = Reason(item.id, text, report.ok, "template", first_try_ok=False, problems=problems[i], raw=raws[i])
        return [r for r in reasons if r is not None]
