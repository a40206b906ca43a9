"""Why-this-item reasons: one or two sentences per recommended item, checked against the item data.

Flow per batch of items (one `engine.batch` call per round, so k reasons cost one generation):
1. the LLM writes a reason from the `reason` template (item attributes + the user's words/history);
2. the grounding gate (`agent.grounding.check_grounding`) checks it: no link, markup, call to
   action or instruction, and every claim about the item backed by the item's own record (the
   shopper's words back only a restatement of what they asked for). A failing reason is
   regenerated ONCE, the retry prompt listing the rejected claims;
3. still failing (or the engine failed): a template reason built only from the item's own
   attributes and the user's words (quoted only when they pass the gate's screen), grounded by
   construction.

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
from agent.grounding import GroundingReport, check_grounding, item_evidence, screen_text
from agent.lexicon import is_non_brand
from agent.prompts import DEFAULT_PROMPTS, canonical_name, data_text, render_chat
from agent.text import content_stems, money, stem, stems
from retrieval.catalog import Item

log = logging.getLogger(__name__)

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
    """What the user said and bought (untrusted text: goes into data sections, and is evidence
    only for restating the request)."""

    query: str | None = None
    history_titles: Sequence[str] = ()  # oldest first
    conversation: Sequence[Message] = ()
    # What a conversation has established beyond the query (the chat fills these from its state).
    need: Sequence[str] = ()  # the shopper's own product phrases
    features: Sequence[str] = ()
    price_min: float | None = None
    price_max: float | None = None
    similar_to: Sequence[str] = ()  # item ids the shopper asked for more like

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


def _quotable(text: str, limit: int, *, record: bool = False) -> str | None:
    """`text` cut for a template reason, or None when the gate's screen rejects it: a link or a
    call to action is never repeated, not even the shopper's own words or a catalog field
    ("Visit Amazon's ... Page" in a brand). `record`: the text is the item's own data, so a name
    like "Stamps.com" in it may be repeated."""
    words = _short_title(text, limit)
    if not record:  # quoted as a restatement: a quote mark inside would end the quote early
        words = re.sub(r"[\"“”«»]", "'", words)
    return None if screen_text(words, record=words if record else "", request=words) else words


def _record_words(text: str) -> dict[str, str]:
    """stem -> the first word of `text` with that stem, as written (the grounding check's tokens,
    words of letters only, so "4Black" or "7mm" are never quoted in part)."""
    words: dict[str, str] = {}
    for word in re.findall(r"[A-Za-z0-9]+", text):
        if word.isalpha():
            words.setdefault(stem(word), word)
    return words


def template_reason(item: Item, context: ReasonContext) -> str:
    """Why this item fits, built only from the item's own fields and what the shopper asked for:
    the shopper's words are quoted only where the item's title or description has them, so the
    reason is grounded by construction and repeats nothing else the shopper (or an attacker) typed.
    The one template for every path: the recommender's fallback and the chat's default reasons."""
    title_words = _record_words(item.title + " " + " ".join(item.categories))
    desc_words = _record_words(item.description)
    asked: dict[str, str] = {}  # stem -> the shopper's word
    asked_text = " ".join(context.need) if context.need else (context.request_text() or "")
    for word in re.findall(r"[A-Za-z0-9]+", asked_text):
        st = content_stems(word) if word.isalpha() else []
        if st and len(st[0]) > 2 and _quotable(word, 40):  # never repeat "visit", "click", ...
            asked.setdefault(st[0], word)

    def quote(words: dict[str, str], s: str) -> str:
        """The shopper's word when the record writes it the same way, else the record's spelling,
        so each quote is a word of the item's own text."""
        return asked[s] if asked[s].casefold() == words[s].casefold() else words[s]

    in_title = [quote(title_words, s) for s in asked if s in title_words]
    in_desc = [quote(desc_words, s) for s in asked if s not in title_words and s in desc_words]
    where = _quotable(item.category, 80, record=True) if item.category else None
    maker = _quotable(item.brand, 80, record=True) if item.brand and not is_non_brand(item.brand) else None
    parts = [f"{'By ' + maker + ', l' if maker else 'L'}isted under {where or 'the catalog'}"]
    if in_title:
        parts.append("its title matches " + ", ".join(f"“{w}”" for w in in_title[:4]))
    if in_desc:
        parts.append("its description mentions " + ", ".join(f"“{w}”" for w in in_desc[:3]))
    feats = [f for f in context.features if all(w in title_words or w in desc_words for w in stems(f)) and not all(s in asked and s in title_words for s in stems(f))]
    if feats:
        parts.append("the catalog text says " + ", ".join(f"“{f}”" for f in feats[:3]))
    if item.price is not None:
        lo, hi = context.price_min, context.price_max
        if lo is not None and hi is not None:
            parts.append(f"{money(item.price, item.currency)}, within your {money(lo)}–{money(hi)} range")
        elif hi is not None:
            parts.append(f"{money(item.price, item.currency)}, within your {money(hi)} limit")
        elif lo is not None:
            parts.append(f"{money(item.price, item.currency)}, above {money(lo)}")
        else:
            parts.append(money(item.price, item.currency))
    if context.similar_to and item.id not in context.similar_to:
        parts.append("close to the item you picked")
    reason = "; ".join(parts) + "."
    if not asked and context.history_titles:
        bought = _quotable(context.history_titles[-1], 70)
        if bought:
            return f"Suggested because you bought “{bought}”. {reason}"
    return reason


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

    def evidence(self, item: Item, context: ReasonContext) -> tuple[list[str], list[str]]:
        """(item evidence, request evidence): the item's own record, and the user's words + the
        history titles the prompt showed (only those: a number that matches some old purchase the
        model never saw supports nothing). The second backs only a restatement of the request."""
        shown = list(context.history_titles)[-self.history_items :] if self.history_items else []
        return item_evidence(item), ReasonContext(context.query, shown, context.conversation).user_texts()

    def check(self, text: str, item: Item, context: ReasonContext, *, prose: bool = True) -> GroundingReport:
        """Format check (prose, not an echo of the prompt; LLM text only) + the grounding gate."""
        problems = format_problems(text) if prose else []
        if problems:
            return GroundingReport(ok=False, unsupported=problems, checked=0)
        record, request = self.evidence(item, context)
        return check_grounding(text, record, request_evidence=request, catalog_brands=self.catalog_brands)

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
