"""Offline product copy for cold-start items: a 2-4 sentence description and a one-line selling
point, written only from the item's own data, checked, and stored as an overlay.

Design choices (and why):
- Batched free text, not constrained JSON. `engine.batch` is the one batched call every backend
  has (left-padded `generate` on transformers, continuous batching on vLLM); JSON-constrained
  decoding is one conversation at a time in the shared interface and, on CPU, lm-format-enforcer
  adds per-token Python work. The format is two labelled lines ("Selling point:", "Description:")
  that `parse_copy` reads leniently and validates strictly (sentence count, length, no echo of
  the title, no prompt markers). The model is untrusted: anything else is a format failure.
- Grounding: `agent.copy.check.check_copy` runs the gate every generated text goes through
  (`agent.grounding.check_grounding`: no links, markup or calls to action; numbers, sizes,
  materials, compatibility and claims only when the item's data states them) plus the copy
  rules, against `copy_evidence` (only what the prompt showed). Flagged (or unparseable) copy is
  regenerated once with the problems listed, then kept or dropped; nothing unchecked is ever
  stored as usable copy.
- Banned words (`ban_unsupported`, on by default): every draft is decoded with the words the
  checker would flag for this item masked (`agent.copy.check.banned_terms`: unstated colours,
  materials, claims, product types, judgements, digits; on the retry also the first draft's flagged
  terms), through the engines' `batch(banned=...)` (vLLM's bad_words). The gate still checks every
  draft: a ban takes the likeliest spellings of an invented claim out of the sampler's way.
- Best of n drafts (`drafts`, 3 in `aisle describe`): each item gets several sampled drafts in
  the same batch; of those that pass the gate the writer keeps the one a `DraftScorer` ranks first
  (`agent.copy.select.FieldSimilarity`: closest to the item's own fields, so generic copy loses).
  More chances per item, and copy that is about the item; the cost is drafts x the generation.
- Specific words (`agent.copy.terms`): among the passing drafts the one with the fewest words that
  are rare in the catalog's descriptions and absent from the item's fields comes first ("made of
  mahogany" on a notebook: invented details the claim checker's lexicon cannot know). The kept
  copy's specific words go into the overlay record for a reviewer.
- Resumable: results are appended to the overlay JSONL after every batch; a re-run skips items
  that already have a record. Engine failures are retried item by item, and an item that still
  fails is reported and skipped (no record, so the next run tries it again).
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from agent.copy.check import CopyCheckReport, banned_terms, check_copy, distinctive_brands
from agent.copy.corroborate import Corroboration
from agent.copy.select import DraftScorer
from agent.copy.terms import TermRarity
from agent.engines.base import LLMEngine, Message
from retrieval.catalog import Catalog, Item

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "describe.v1"
# A selling point (~15 tokens) plus four sentences (~80 tokens) with some slack; small models
# ramble to the limit, so this also bounds the cost of every row in a padded batch.
DEFAULT_MAX_TOKENS = 120
DEFAULT_BATCH_SIZE = 16
# First drafts are sampled (seeded by the engine, so a run is reproducible), not greedy: greedy
# decoding makes SmolLM2-135M, base or fine-tuned, repeat itself -- the description restates the
# selling point, a sentence or a word loops until max_tokens -- and the parser rightly finds fewer
# than two distinct sentences. On 12 held-out items of amazon-office-2018 first drafts parsed
# 2/12 greedy vs 9/12 at 0.5, for both the base model and the copywriter adapter (adapter at 0.3:
# 7/12, at 0.7: 9/12 but 8 of the 9 with invented claims).
DEFAULT_TEMPERATURE = 0.5
# The retry must not use the first draft's temperature: the engine re-seeds every call, so the same
# prompt at the same temperature (format failures add no "Do not mention") could come back unchanged.
# Hotter, not cooler, now that decoding bans the words the checker flags (`ban_unsupported`): on the
# first 48 held-out items of amazon-office-2018 with the copywriter adapter and bans, first drafts
# passed parse + check 27/48 at 0.3, 39/48 at 0.5, 35/48 at 0.7, and of the 9 that failed at 0.5,
# 4 passed at 0.7 against 2 at 0.3 (at 0.3 the description repeats itself or the selling point).
RETRY_TEMPERATURE = 0.7

MIN_SENTENCES = 2
MAX_SENTENCES = 4
MAX_SELLING_POINT_WORDS = 30
MAX_DESCRIPTION_CHARS = 900

# Source fields that are not attributes: text we already pass, text we must not use (the
# description is what we write), or values that go stale / invite claims (price, rating, URLs).

STATUS_OK = "ok"
STATUS_REGENERATED = "regenerated"
STATUS_DROPPED = "dropped"
STATUS_ERROR = "error"


class CopyFormatError(ValueError):
    """The model's answer does not have the expected two labelled parts, or they are unusable."""


@dataclass(frozen=True)
class Copy:
    description: str
    selling_point: str

    def text(self) -> str:
        return f"{self.selling_point}\n{self.description}"


class Checked(NamedTuple):
    """One raw draft after the parser and the gate."""

    copy: Copy | None
    unsupported: list[str]
    format_error: str | None
    checkers: list[str]
    raw: str
    pruned: tuple[str, ...] = ()  # sentences removed by `agent.copy.corroborate` (the copy holds the rest)

    @property
    def passed(self) -> bool:
        return self.copy is not None and not self.unsupported and self.format_error is None


@dataclass
class CopyResult:
    """What happened to one item. `copy` is set for ok / regenerated (and holds the last rejected
    draft for dropped, for review); `error` for engine failures."""

    item_id: str
    status: str
    copy: Copy | None = None
    unsupported: list[str] = field(default_factory=list)  # problems of the final draft
    first_unsupported: list[str] = field(default_factory=list)  # problems of the first draft
    first_format_error: str | None = None
    checkers: list[str] = field(default_factory=list)
    error: str | None = None
    raw: str = ""
    drafts: int = 1  # drafts sampled for this item (first round + retry)
    passed: int = 0  # drafts of the last round that passed the gate
    score: float | None = None  # the kept draft's score, when several passed (`agent.copy.select`)
    specific: list[str] = field(default_factory=list)  # the kept copy's specific words (`agent.copy.terms`), for review
    pruned: list[str] = field(default_factory=list)  # sentences of the kept draft that corroboration removed, for review

    @property
    def regenerated(self) -> bool:
        return self.status == STATUS_REGENERATED or (self.status == STATUS_DROPPED and (bool(self.first_unsupported) or self.first_format_error is not None))

    @property
    def usable(self) -> bool:
        return self.status in (STATUS_OK, STATUS_REGENERATED)


# --- item data -----------------------------------------------------------------------------------


def item_attributes(item: Item) -> dict[str, str]:
    """The feed's attributes (colour, size, material ...): facts the copy may state."""
    return dict(item.attributes)


def item_facts(item: Item) -> dict[str, Any]:
    """The only data the copy may use (what the template shows and the checker trusts)."""
    return {"title": item.title, "brand": item.brand, "categories": list(item.categories), "attributes": item_attributes(item)}


def copy_evidence(item: Item) -> list[str]:
    """Evidence for checking copy: exactly the facts the copy prompt showed. Not the description
    (the copy replaces it) and not the price (it goes stale): unlike `agent.grounding.item_evidence`,
    which is the whole record a reason may rely on."""
    facts = item_facts(item)
    parts = [facts["title"], facts["brand"], " > ".join(facts["categories"])]
    parts.extend(f"{k}: {v}" for k, v in facts["attributes"].items())
    return [p for p in parts if p]


def item_problem(item: Item) -> str | None:
    """Why an item cannot get copy, or None. A missing title leaves nothing true to write about
    (the loader shows such items as 'Untitled item <id>', a label, not data)."""
    title = (item.title or "").strip()
    if not title or title.startswith(f"Untitled item {item.id}"):
        return "no title: nothing to write copy from (fix the catalog row)"
    if len(re.findall(r"\w+", title)) < 2:
        return f"title {title!r} is too short to describe"
    return None


# --- parsing the model's answer ------------------------------------------------------------------

_LABEL = re.compile(r"(?im)^[\s>*_#\-]*(selling[ _-]*point|description)[\s*_]*[:\-–]\s*")
_INLINE_LABEL = re.compile(r"(?i)\b(selling[ _-]*point|description)\s*:\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(])")
_MARKUP = re.compile(r"\*\*|__|`|<<<|>>>|‹|›")
_META = re.compile(r"(?i)selling points?|\bdescriptions?\b|\bthe data\b|\bitem section\b|as an ai|\bi am\b|\bI'm\b")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _norm(sentence: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", sentence.lower()).strip()


# Words said twice in a row ("measuring and measuring", "durable, durable, and durable", "high
# yield, high yield"): the small model's stutter, never intended copy. `_unstutter` keeps one.
_STUTTER = re.compile(r"\b((?:[a-z]+[ -]){0,2}[a-z]{3,})\b(?:(?:\s*,\s*|\s+)(?:(?:and|or)\s+)?\1\b)+", re.I)


def _unstutter(text: str) -> str:
    return _STUTTER.sub(r"\1", text)


# A sentence whose word trigrams were mostly said already restates an earlier sentence (or the
# selling point) in other words: "It is also a great tool for anyone who needs to do calculations."
REPEAT_TRIGRAM_SHARE = 0.5


def _trigrams(key: str) -> set[tuple[str, ...]]:
    words = key.split()
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _clean_sentences(text: str, title: str, after: str = "") -> list[str]:
    """Whole, distinct sentences: drops a cut-off tail, bare echoes of the title and repeats (of an
    earlier sentence or of `after`, text already written such as the selling point: verbatim, or
    with half or more of its word trigrams already said); a stuttered word keeps one copy."""
    sents = [_unstutter(s) for s in _sentences(text)]
    if sents and not re.search(r"[.!?][\"')\]]*$", sents[-1]):
        sents = sents[:-1]  # cut by max_tokens mid-sentence
    out: list[str] = []
    seen: set[str] = set()
    said = _trigrams(_norm(after))
    title_norm = _norm(title)
    for s in sents:
        key = _norm(s)
        if not key or key in seen or _is_echo(key, title_norm) or len(key.split()) < 3:
            continue
        if _META.search(s):
            continue  # talk about the task ("Here are the selling points ..."), not about the item
        if any(key in other or other in key for other in seen if len(other) > 20):
            continue  # near-repeat ("... Case Holder" vs "... Holder")
        grams = _trigrams(key)
        if len(grams) >= 4 and len(grams & said) >= REPEAT_TRIGRAM_SHARE * len(grams):
            continue  # the same sentence in other words
        seen.add(key)
        said |= grams
        out.append(s)
    return out


def _similar(a: str, b: str, threshold: float = 0.8) -> bool:
    return bool(a and b) and difflib.SequenceMatcher(None, a, b).ratio() >= threshold


def _is_echo(text: str, title: str) -> bool:
    """Near-verbatim copy of the title (the model's favourite way to say nothing)."""
    a, b = _norm(text), _norm(title)
    return a == b or _similar(a, b, 0.85)


def parse_copy(raw: str, *, title: str = "") -> Copy:
    """Read "Selling point: ..." and "Description: ..." from a model answer, in either order.

    Lenient about markup (bold labels, bullets, extra blank lines, repeated blocks: the first of
    each label wins) and strict about content: the description must have 2-4 whole distinct
    sentences that are not the title and do not restate the selling point or each other (a
    stuttered word is cut to one copy), the selling point one short line (a selling point that only
    repeats the title is replaced by the description's first sentence when 2 more remain). Raises
    CopyFormatError.
    """
    text = _MARKUP.sub("", raw or "").replace("\r", "")
    if not text.strip():
        raise CopyFormatError("the answer is empty")
    parts: dict[str, str] = {}
    labels = list(_LABEL.finditer(text)) or list(_INLINE_LABEL.finditer(text))
    for i, m in enumerate(labels):
        key = "selling_point" if m.group(1).lower().startswith("selling") else "description"
        end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        if key not in parts:
            parts[key] = text[m.end() : end].strip()
    if not labels:
        raise CopyFormatError("the answer has neither a 'Selling point:' nor a 'Description:' line")
    if "description" not in parts and labels[0].group(1).lower().startswith("selling"):
        # "Selling point: <line>\n<description without its label>"
        first_line, _, rest = parts["selling_point"].partition("\n")
        parts["selling_point"], parts["description"] = first_line, rest
    if "selling_point" not in parts:
        raise CopyFormatError("the answer has no 'Selling point:' line")

    point_lines = [_BULLET.sub("", ln).strip() for ln in parts["selling_point"].splitlines() if ln.strip()]
    point = point_lines[0] if point_lines else ""
    point_sents = _sentences(point)
    point = _unstutter(point_sents[0] if point_sents else point).strip().strip("\"'")
    if len(point.split()) < 3:
        raise CopyFormatError("the selling point is missing or shorter than three words")
    if len(point.split()) > MAX_SELLING_POINT_WORDS:
        raise CopyFormatError(f"the selling point is longer than {MAX_SELLING_POINT_WORDS} words")

    body = " ".join(_BULLET.sub("", ln).strip() for ln in parts.get("description", "").splitlines() if ln.strip())
    echo = _is_echo(point, title)
    # The description must not restate the selling point (unless that is only the title, replaced below).
    sents = [s for s in _clean_sentences(body, title, after="" if echo else point) if _norm(s) != _norm(point)]
    if echo:
        # "Selling point: <the title>" over a full description: its first sentence is the selling point.
        if len(sents) <= MIN_SENTENCES or len(sents[0].split()) > MAX_SELLING_POINT_WORDS:
            raise CopyFormatError("the selling point only repeats the title")
        point = sents.pop(0)
    if len(sents) < MIN_SENTENCES:
        raise CopyFormatError(f"the description has {len(sents)} usable sentence(s); it needs {MIN_SENTENCES} to {MAX_SENTENCES} whole, distinct sentences")
    description = " ".join(sents[:MAX_SENTENCES])
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise CopyFormatError(f"the description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return Copy(description=description, selling_point=point)


# --- prompts ---------------------------------------------------------------------------------------


EXAMPLE_BLOCKS = ("example_user", "example_assistant")


def render_describe(prompt: str, item: Item, avoid: Sequence[str] = ()) -> list[Message]:
    """Messages for one item: [system, example user, example assistant, user].

    System and user come from `agent.prompts.render_messages` (the project's loader, with the
    `data` filter and data-section delimiters); the optional `example_user`/`example_assistant`
    blocks become one real chat turn, because a small model imitates a shown answer far better
    than a described format.
    """
    from agent.prompts import render_messages

    messages = render_messages(prompt, item=item_facts(item), avoid=list(avoid))
    example = _example_turn(prompt)
    if example and messages and messages[0]["role"] == "system":
        return [messages[0], *example, *messages[1:]]
    return [*example, *messages]


@lru_cache(maxsize=8)
def _example_turn(prompt: str) -> tuple[Message, ...]:
    """The template's worked example as (user, assistant) messages; () when it has none."""
    import jinja2

    from agent.prompts import DATA_CLOSE, DATA_OPEN, data_text, prompt_source

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["data"] = data_text
    template = env.from_string(prompt_source(prompt))
    if not all(b in template.blocks for b in EXAMPLE_BLOCKS):
        return ()
    context = template.new_context({"DATA_OPEN": DATA_OPEN, "DATA_CLOSE": DATA_CLOSE})
    user, assistant = ("".join(template.blocks[b](context)).strip() for b in EXAMPLE_BLOCKS)
    return (Message(role="user", content=user), Message(role="assistant", content=assistant))


_QUOTED = re.compile(r"[\"']([^\"']{1,60})[\"']")


def avoid_terms(problems: Iterable[str], limit: int = 8) -> list[str]:
    """The quoted terms of checker problems ('colour \'Black\' is not stated' -> 'black'), for the
    retry prompt: a short word list, because a small model parrots long explanations."""
    terms: list[str] = []
    for problem in problems:
        m = _QUOTED.search(problem)
        if not m:
            continue
        term = re.sub(r"\s+", " ", m.group(1)).strip(" .,;:").lower()
        if term and term not in terms:
            terms.append(term)
    return terms[:limit]


def prompt_meta(prompt: str) -> dict[str, str]:
    """{"name": "describe", "version": "v1", "fingerprint": <content hash>} for overlay records."""
    from agent.prompts import canonical_name, prompt_fingerprint

    name = canonical_name(prompt)
    kind, _, version = name.partition(".")
    return {"name": kind, "version": version or "v0", "template": name, "fingerprint": prompt_fingerprint(name)}


def _word_forms(terms: Iterable[str]) -> list[str]:
    """Each term as written, capitalised, plural (one-word terms) and hyphenated (phrases)."""
    words: dict[str, None] = {}
    for term in terms:
        forms = [term, term[:1].upper() + term[1:]]
        if term.isalpha() and len(term) > 2:
            forms += [f + "s" for f in forms]
        elif " " in term:  # "weather resistant" is also written "weather-resistant"
            forms += [f.replace(" ", "-") for f in forms]
        words.update(dict.fromkeys(forms))
    return list(words)


# --- the writer ------------------------------------------------------------------------------------


Checker = Callable[..., CopyCheckReport]


class Copywriter:
    """Writes, checks and (once) regenerates copy for a batch of items with one engine."""

    def __init__(
        self,
        engine: LLMEngine,
        *,
        prompt: str = DEFAULT_PROMPT,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        catalog_brands: Collection[str] = (),
        checker: Checker = check_copy,
        regenerate: bool = True,
        temperature: float = DEFAULT_TEMPERATURE,
        retry_temperature: float = RETRY_TEMPERATURE,
        ban_unsupported: bool = True,
        drafts: int = 1,
        scorer: DraftScorer | None = None,
        rarity: TermRarity | None = None,
        corroboration: Corroboration | None = None,
    ) -> None:
        if drafts < 1:
            raise ValueError(f"drafts must be >= 1, got {drafts}")
        self.engine = engine
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.catalog_brands = frozenset(catalog_brands)
        self.checker = checker
        self.regenerate = regenerate
        self.temperature = temperature
        self.retry_temperature = retry_temperature
        self.ban_unsupported = ban_unsupported
        self.drafts = drafts
        self.scorer = scorer  # picks among passing drafts; None keeps the first that passed
        self.rarity = rarity  # fewest specific words first, among passing drafts (`agent.copy.terms`)
        self.corroboration = corroboration  # sentence by sentence, after the checker (`agent.copy.corroborate`)
        from agent.prompts import prompt_source

        prompt_source(prompt)  # fail now, with the list of names, if the template is missing
        example = _example_turn(prompt)
        self._example_sentences = [_norm(x) for x in _sentences(re.sub(r"(?im)^\s*(selling point|description)\s*:", " ", example[1]["content"]))] if example else []

    @classmethod
    def for_catalog(cls, engine: LLMEngine, catalog: Catalog, **kwargs: Any) -> Copywriter:
        """A writer that also flags other brands of `catalog` named in the copy and knows which of
        its words are rare (`agent.copy.terms`), both read off the catalog's own text; with
        `corroborate=True` it also checks each sentence against similar items' descriptions
        (`agent.copy.corroborate`)."""
        brands = {it.brand for it in catalog.items.values() if it.brand}
        corpus = (f"{it.title} {it.description[:300]}" for it in catalog.items.values())
        if "rarity" not in kwargs:  # not setdefault: counting every description is the costly part
            kwargs["rarity"] = TermRarity.of_descriptions(it.description for it in catalog.items.values())
        if kwargs.pop("corroborate", False) and kwargs.get("corroboration") is None:
            kwargs["corroboration"] = Corroboration(catalog)
        return cls(engine, catalog_brands=distinctive_brands(brands, corpus), **kwargs)

    @property
    def selection(self) -> str:
        """How the kept draft is chosen among those that pass (for records and reports)."""
        by = self.scorer.name if self.scorer is not None else "the first that passes"
        if self.rarity is not None and self.rarity.available:
            return f"fewest specific words (agent.copy.terms, rare share {self.rarity.share}), then {by}"
        return by

    def specific_terms(self, item: Item, copy: Copy) -> list[str]:
        """Words of `copy` that are rare in the catalog's descriptions and not in the item's fields."""
        return self.rarity.specific_terms(copy.text(), copy_evidence(item)) if self.rarity is not None else []

    def messages(self, item: Item, avoid: Sequence[str] = ()) -> list[Message]:
        return render_describe(self.prompt, item, avoid)

    def banned(self, item: Item, avoid: Sequence[str] = ()) -> list[str]:
        """The words decoding masks for `item` (as written, capitalised, plural for one-word terms,
        hyphenated for phrases): what the checker would flag here, plus `avoid` (the first draft's
        flagged terms)."""
        return _word_forms([*banned_terms(copy_evidence(item), catalog_brands=self.catalog_brands), *avoid])

    def _generate(self, conversations: Sequence[Sequence[Message]], temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None) -> list[str | Exception]:
        """One batched call; if it fails, each conversation alone, so one bad row costs one item."""
        if not conversations:
            return []
        ban = {"banned": banned} if banned is not None else {}
        try:
            out = self.engine.batch(conversations, max_tokens=self.max_tokens, temperature=temperature, **ban)
            if len(out) != len(conversations):
                raise RuntimeError(f"engine returned {len(out)} replies for {len(conversations)} conversations")
            return list(out)
        except Exception as exc:  # engine errors of any kind; KeyboardInterrupt still stops the run
            if len(conversations) == 1:
                return [exc]
            log.warning("batch of %d failed (%s: %s); retrying one by one", len(conversations), type(exc).__name__, exc)
        results: list[str | Exception] = []
        for i, conv in enumerate(conversations):
            one = {"banned": [banned[i]]} if banned is not None else {}
            try:
                results.append(self.engine.batch([conv], max_tokens=self.max_tokens, temperature=temperature, **one)[0])
            except Exception as exc:
                results.append(exc)
        return results

    def _check(self, item: Item, raw: str) -> Checked:
        """(copy, unsupported claims, format error, checkers, raw) for one raw answer."""
        try:
            copy = parse_copy(raw, title=item.title)
        except CopyFormatError as exc:
            return Checked(None, [], str(exc), [], raw)
        # Long sentences only: "They are simple to use." is generic, "Easy, everyday cutting for
        # school projects and crafts." on a stapler is the example's facts pasted onto another item.
        copied = [x for x in [copy.selling_point, *_sentences(copy.description)]
                  if len(x.split()) >= 6 and any(_similar(_norm(x), e) for e in self._example_sentences)]
        if copied:
            return Checked(None, [], f"it copies the worked example of the prompt ({copied[0]!r})", [], raw)
        evidence = copy_evidence(item)
        report = self.checker(copy.text(), evidence, catalog_brands=self.catalog_brands)
        if report.unsupported or self.corroboration is None:
            return Checked(copy, list(report.unsupported), None, list(report.checkers), raw)
        return self._corroborate(item, copy, evidence, list(report.checkers), raw)

    def _corroborate(self, item: Item, copy: Copy, evidence: list[str], checkers: list[str], raw: str) -> Checked:
        """Remove the sentences the catalog does not corroborate; the draft fails when its selling
        point or every description sentence goes."""
        assert self.corroboration is not None
        point, *body = self.corroboration.judge([copy.selling_point, *_sentences(copy.description)], evidence, item)
        checkers = [*checkers, "corroboration"]
        kept = [v.sentence for v in body if v.ok]
        if not point.ok or not kept:
            failed = [v for v in (point, *body) if not v.ok]
            return Checked(copy, [v.problem() for v in failed], None, checkers, raw)
        pruned = tuple(v.sentence for v in body if not v.ok)
        return Checked(Copy(description=" ".join(kept), selling_point=copy.selling_point), [], None, checkers, raw, pruned)

    def write(self, items: Sequence[Item]) -> list[CopyResult]:
        """Copy for `items` (one batch): sample `drafts` drafts per item, keep the best that passes
        the gate, and sample once more (with the flagged terms listed) for items where none did."""
        n = self.drafts
        bans = [self.banned(it) for it in items] if self.ban_unsupported else None
        rows = [i for i in range(len(items)) for _ in range(n)]
        first = self._generate([self.messages(items[i]) for i in rows], temperature=self.temperature,
                               banned=[bans[i] for i in rows] if bans is not None else None)
        results: list[CopyResult] = []
        retry: list[tuple[int, list[str]]] = []
        for i, item in enumerate(items):
            drafts = self._check_round(item, first[i * n : (i + 1) * n])
            if isinstance(drafts, Exception):
                results.append(CopyResult(item.id, STATUS_ERROR, error=f"{type(drafts).__name__}: {drafts}", drafts=n))
                continue
            copy, unsupported, fmt, checkers, raw, _ = drafts[0]
            result = CopyResult(item.id, STATUS_OK, copy=copy, unsupported=unsupported, first_unsupported=list(unsupported),
                                first_format_error=fmt, checkers=checkers, raw=raw, drafts=n)
            results.append(result)
            if self._keep_best(item, result, drafts):
                continue
            result.status = STATUS_DROPPED
            result.unsupported = unsupported or [f"format: {fmt}"]
            if self.regenerate:
                retry.append((i, avoid_terms(p for d in drafts for p in d.unsupported)))
        if retry:
            # The retry lists the rejected terms and samples at another temperature (seeded, so
            # reproducible): an unchanged prompt (format failures) must not give the same answer again.
            retry_rows = [(i, avoid) for i, avoid in retry for _ in range(n)]
            retry_bans = [list(dict.fromkeys([*bans[i], *_word_forms(avoid)])) for i, avoid in retry_rows] if bans is not None else None
            second = self._generate([self.messages(items[i], avoid) for i, avoid in retry_rows], temperature=self.retry_temperature, banned=retry_bans)
            for k, (i, _) in enumerate(retry):
                result = results[i]
                drafts = self._check_round(items[i], second[k * n : (k + 1) * n])
                result.drafts += n
                if isinstance(drafts, Exception):
                    result.error = f"regeneration failed: {type(drafts).__name__}: {drafts}"
                    continue
                if self._keep_best(items[i], result, drafts):
                    result.status = STATUS_REGENERATED
                    continue
                copy, unsupported, fmt, checkers, raw, _ = drafts[0]
                result.raw = raw
                result.copy = copy or result.copy
                result.unsupported = unsupported or [f"format: {fmt}"]
        return results

    def _check_round(self, item: Item, raws: Sequence[str | Exception]) -> list[Checked] | Exception:
        """One item's drafts of a round, checked; the first engine error when every draft failed."""
        drafts = [self._check(item, raw) for raw in raws if not isinstance(raw, Exception)]
        return drafts or next(raw for raw in raws if isinstance(raw, Exception))

    def _keep_best(self, item: Item, result: CopyResult, drafts: Sequence[Checked]) -> bool:
        """Put the best passing draft of `drafts` into `result` (True), or leave it (False)."""
        passed = [d for d in drafts if d.passed]
        result.passed = len(passed)
        if not passed:
            return False
        specific = [self.specific_terms(item, d.copy) for d in passed]  # type: ignore[arg-type]
        scores = self.scorer(item, [d.copy for d in passed]) if len(passed) > 1 and self.scorer is not None else None  # type: ignore[misc]
        best = max(range(len(passed)), key=lambda j: (-len(specific[j]), -len(passed[j].pruned), scores[j] if scores else 0.0, -j))
        if scores:
            result.score = round(scores[best], 4)
        chosen = passed[best]
        result.copy, result.unsupported, result.checkers, result.raw = chosen.copy, [], chosen.checkers, chosen.raw
        result.specific = specific[best]
        result.pruned = list(chosen.pruned)
        return True


# --- whole-catalog runs ----------------------------------------------------------------------------


def make_record(
    catalog: str, result: CopyResult, *, model: str, engine: str, prompt: dict[str, str], adapter: dict[str, Any] | None = None, decoding: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One overlay line for a copywriter result (ok, regenerated or dropped). `model` is the
    engine's model id ("<base>+<adapter folder>" with an adapter); `adapter` describes the LoRA
    adapter that produced it (`agent.train.copywriter.adapter_record`), None for the base model."""
    usable = result.usable and result.copy is not None
    record: dict[str, Any] = {
        "id": result.item_id,
        "catalog": catalog,
        "generated": True,
        "status": result.status,
        "description": result.copy.description if usable and result.copy else "",
        "selling_point": result.copy.selling_point if usable and result.copy else "",
        "model": model,
        "engine": engine,
        "prompt": dict(prompt),
        "adapter": dict(adapter) if adapter else None,
        "decoding": dict(decoding) if decoding else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "grounding": {
            "ok": usable,
            "unsupported": list(result.unsupported),
            "first_draft_unsupported": list(result.first_unsupported),
            "first_draft_format_error": result.first_format_error,
            "regenerated": result.regenerated,
            "drafts": result.drafts,
            "drafts_passed": result.passed,
            "score": result.score,
            "checkers": list(result.checkers),
            # Rare words the item's fields do not contain: where a reviewer should look first.
            "specific_terms": list(result.specific) if usable else [],
            # Sentences of the kept draft that no field or similar item's description supports.
            "pruned_sentences": list(result.pruned) if usable else [],
        },
    }
    if not usable and result.copy is not None:
        # Kept for review only; never applied to the catalog.
        record["rejected_draft"] = {"description": result.copy.description, "selling_point": result.copy.selling_point}
    return record



@dataclass
class DescribeReport:
    """Counts for one `describe` run; `skipped` lists (item id, reason) for bad items and errors."""

    ok: int = 0
    regenerated_ok: int = 0
    dropped: int = 0
    errors: int = 0
    bad_items: int = 0
    already_done: int = 0
    generated: int = 0
    elapsed_s: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problem_counts: Counter[str] = field(default_factory=Counter)
    results: list[CopyResult] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.generated / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"generated {self.generated} items in {self.elapsed_s:.1f}s ({self.items_per_s:.2f} items/s): "
            f"ok {self.ok}, regenerated-ok {self.regenerated_ok}, dropped {self.dropped}, errors {self.errors}; "
            f"skipped {self.bad_items} bad items, {self.already_done} already done"
        ]
        for item_id, reason in self.skipped[:20]:
            lines.append(f"  skipped {item_id}: {reason}")
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        if self.problem_counts:
            top = ", ".join(f"{p} x{n}" for p, n in self.problem_counts.most_common(8))
            lines.append(f"  most frequent rejected claims: {top}")
        return "\n".join(lines)


def select_items(
    catalog: Catalog,
    *,
    only_missing: bool = False,
    ids: Iterable[str] | None = None,
    done: Collection[str] = (),
) -> tuple[list[Item], list[tuple[str, str]], int]:
    """(items to write, bad items with reasons, how many were already done), in catalog order."""
    wanted = list(ids) if ids is not None else list(catalog.items)
    todo: list[Item] = []
    bad: list[tuple[str, str]] = []
    already = 0
    for item_id in wanted:
        item = catalog.items.get(item_id)
        if item is None:
            bad.append((item_id, f"not in catalog {catalog.name}"))
            continue
        if only_missing and item.description.strip():
            continue
        if item_id in done:
            already += 1
            continue
        problem = item_problem(item)
        if problem:
            bad.append((item_id, problem))
            continue
        todo.append(item)
    return todo, bad, already


def describe_catalog(
    catalog: Catalog,
    writer: Copywriter,
    overlay_file: Path,
    *,
    only_missing: bool = False,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    keep_results: bool = False,
    adapter: dict[str, Any] | None = None,
) -> DescribeReport:
    """Write copy for the catalog's items into `overlay_file`, batch by batch (resumable).

    Items with a record in the file are skipped; each finished batch is appended (and fsynced)
    before the next starts, so an interrupted run loses at most the batch in flight.
    `batch_size`: sequences per engine.batch call, so a batch holds batch_size // writer.drafts items
    (on the 2-core CPU 16 sequences a call ran at 1.5 s each, 64 at 2.6 s: padded rows wait for the
    longest). `adapter`: what every record says about the LoRA adapter behind the engine (None: base model).
    """
    from tqdm import tqdm

    from retrieval.overlay import append_records, done_ids

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    report = DescribeReport()
    todo, bad, report.already_done = select_items(catalog, only_missing=only_missing, ids=ids, done=done_ids(overlay_file))
    report.bad_items = len(bad)
    report.skipped.extend(bad)
    for item_id, reason in bad:
        log.warning("skipping item %s: %s", item_id, reason)
    if limit is not None:
        todo = todo[: max(0, limit)]
    prompt = prompt_meta(writer.prompt)
    decoding = {"temperature": writer.temperature, "retry_temperature": writer.retry_temperature, "banned_words": writer.ban_unsupported,
                "drafts": writer.drafts, "selection": writer.selection}
    items_per_call = max(1, batch_size // writer.drafts)  # one engine.batch call: items x drafts sequences
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"describe {catalog.name}", unit="item", disable=not progress or not todo)
    try:
        for offset in range(0, len(todo), items_per_call):
            chunk = todo[offset : offset + items_per_call]
            results = writer.write(chunk)
            records = [make_record(catalog.name, r, model=writer.engine.model_id, engine=writer.engine.name, prompt=prompt, adapter=adapter, decoding=decoding)
                       for r in results if r.status != STATUS_ERROR]
            append_records(overlay_file, records)
            for r in results:
                if r.status == STATUS_ERROR:
                    report.errors += 1
                    report.skipped.append((r.item_id, f"engine error: {r.error}"))
                    log.warning("item %s failed: %s", r.item_id, r.error)
                    continue
                report.generated += 1
                report.ok += r.status == STATUS_OK
                report.regenerated_ok += r.status == STATUS_REGENERATED
                report.dropped += r.status == STATUS_DROPPED
                report.problem_counts.update(p.split(" (")[0] for p in r.first_unsupported)
            if keep_results:
                report.results.extend(results)
            bar.update(len(chunk))
            bar.set_postfix(ok=report.ok + report.regenerated_ok, dropped=report.dropped, errors=report.errors)
    finally:
        bar.close()
        report.elapsed_s = time.perf_counter() - start
    return report
