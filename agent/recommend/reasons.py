"""Why-this-item reasons: one or two sentences per recommended item, checked against the item data.

Flow per batch of items (one `engine.batch` call per round, so k reasons cost one generation):
1. the LLM writes a reason from the `reason` template (item attributes + the user's words/history);
2. the grounding gate (`agent.grounding.check_grounding`) checks it: no link, markup, call to
   action or instruction, and every claim about the item backed by the item's own record (the
   shopper's words back only a restatement of what they asked for). A failing reason is
   regenerated ONCE, the retry prompt listing the rejected claims;
3. still failing (or the engine failed): the template reason (`answer_reasons`, also the CPU
   default): one or two sentences realised from the item's facts (agent.facts: spans of its own
   record), written for the whole answer at once so each says what sets its item apart from the
   others shown, and tying what the shopper asked for ("you asked for quiet") to the record's words
   that state it. Grounded by construction; never a list of quoted words, a link or markup.

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
from agent.facts import Fact, field_text, has_feature, item_facts, must_haves, product_type, same_type
from agent.facts import _extract as extract_facts
from agent.grounding import GroundingReport, check_grounding, item_evidence, screen_text
from agent.lexicon import COMPATIBILITY, EXPLANATION_WORDS, FEATURE_PHRASES, NOISE_WORDS, PRODUCT_TYPES, SHOPPING_FEATURES, is_non_brand
from agent.prompts import DEFAULT_PROMPTS, canonical_name, data_text, render_chat
from agent.text import FILLER_STEMS, content_stems, find_seq, money, stem, stems
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


def template_reason(item: Item, context: ReasonContext) -> str:
    """The template reason for one item on its own (see `answer_reasons` for a whole answer)."""
    return answer_reasons([item], context)[0]


# --- the template realiser over facts ------------------------------------------------------------
# One or two sentences per item, written for the whole answer at once so each names what sets its
# item apart from the others shown. Every item claim is a fact of `agent.facts` (a span of the
# item's own record, quoted as written when quoted at all); the shopper's words appear only after
# "you asked for" (a restatement, which the grounding gate allows). Never a list of quoted words,
# never a link or markup.

_KIND_RANK = {k: i for i, k in enumerate(("noise", "cut", "capacity", "power", "compatibility", "pack", "size", "material", "colour", "feature"))}
# Description facts worth saying unasked: prose also mentions "small", "clear", "steel" in passing.
_SAY_FROM_DESCRIPTION = frozenset({"noise", "cut", "capacity", "compatibility"})
_VAGUE = frozenset({"small", "medium", "large", "wide", "fine", "bold", "fast", "cheap", "durable", "compact", "color", "colour", "clear", "standard", "surface"})
# Adjectives in the order English puts them: "a quiet 8-sheet black cross-cut shredder".
_ADJ_ORDER = {"noise": 0, "feature": 1, "capacity": 2, "size": 3, "power": 4, "colour": 5, "material": 6, "cut": 7}


@dataclass(frozen=True)
class FactUse:
    """A fact a reason names: the fact, whether the shopper asked for it (and in which words), and
    whether none of the other shown items states it."""

    fact: Fact
    asked: str = ""
    distinct: bool = False


def asked_features(context: ReasonContext) -> list[str]:
    """What the shopper asked an item to have: the conversation's features, then the facts their
    own words state ("quiet", "8 sheets", "cross-cut"), without price talk."""
    texts = list(context.need) or [context.request_text() or ""]
    found = list(context.features)
    for text in texts:
        found.extend(f.value for f in extract_facts(text, "request") if f.kind != "size" or not re.search(r"\d", f.value))
    out: dict[tuple[str, ...], str] = {}
    for f in must_haves(found):
        key = tuple(stems(f))
        if key and key not in out and all(not set(key) <= set(k) for k in out):
            out[key] = f
    return list(out.values())


def _word_span(item: Item, feature: str) -> Fact | None:
    """Where the record writes `feature`'s words (title first, then attributes, then description)."""
    want = stems(feature)
    if not want:
        return None
    for fld in ["title", *(f"attribute:{n}" for n, _ in item.attributes), "description"]:
        text = field_text(item, fld)
        words = list(re.finditer(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", text))
        ws = [stem(m[0].split("-")[0]) if "-" not in m[0] else stem(m[0]) for m in words]
        for i in range(len(words) - len(want) + 1):
            if ws[i : i + len(want)] == want or (len(want) == 1 and want[0] in stems(words[i][0])):
                return Fact("feature", feature, fld, (words[i].start(), words[i + len(want) - 1].end()))
    return None


def _support(item: Item, feature: str) -> Fact | None:
    """The fact (or, failing that, the words) of `item`'s record that state an asked feature."""
    if not has_feature(item, feature):
        return None
    want = stems(feature)
    facts = item_facts(item)
    for f in facts:
        if find_seq(stems(f.value), want) or find_seq(want, stems(f.value)) and len(stems(f.value)) == len(want):
            return f
    if len(want) == 1 and want[0] in {stem(w) for w in NOISE_WORDS}:
        noise = next((f for f in facts if f.kind == "noise"), None)
        if noise:
            return noise
    return _word_span(item, feature)


def _sayable(item: Item, f: Fact) -> bool:
    if f.kind == "compatibility" and set(stems(f.value)) <= set(stems(item.brand)):
        return False  # "Brother toner for Brother"
    if f.field == "description" and f.kind not in _SAY_FROM_DESCRIPTION:
        return False
    if f.kind == "feature" and f.value in _VAGUE:
        return False
    if f.kind == "size" and re.search(r"\d", f.value) and not re.search(r"\d\s*(?:\"|in|inch|cm|mm|ft|feet)", f.value + " ", re.I):
        return False  # "32\" x 1": a number pair, not a size
    if f.kind == "capacity" and f.field == "description" and re.match(r"\d{3,}", f.value):
        return False  # "600 sheets" in prose is usually a daily duty, not a capacity per pass
    if f.kind in ("capacity", "pack") and not re.search(r"\d", f.quote(item)):
        return False  # "single sheet" describes a feed, it does not count sheets
    return bool(_quotable(f.quote(item), 80, record=True))


def _same(f: Fact, other: Item) -> bool:
    """Does `other`'s record state the fact too?"""
    if f.kind in ("capacity", "pack", "size", "compatibility"):
        return any(g.kind == f.kind and g.value.casefold() == f.value.casefold() for g in item_facts(other))
    return has_feature(other, f.value)


def _kind_key(f: Fact) -> str:
    return f"{f.kind}:{f.value.split()[-1].rstrip('s')}" if f.kind == "capacity" else f.kind


def choose_facts(item: Item, others: Sequence[Item], asked: Sequence[str], limit: int = 3) -> list[FactUse]:
    """The facts a reason for `item` names: what the shopper asked for (when the record states
    it), then what the other shown items lack, then the item's strongest other facts."""
    uses: list[FactUse] = []
    seen: set[tuple[str, str]] = set()
    for want in asked:
        f = _support(item, want)
        if f is not None and (f.kind, f.value.casefold()) not in seen and _quotable(f.quote(item), 80, record=True):
            seen.add((f.kind, f.value.casefold()))
            uses.append(FactUse(f, asked=want, distinct=not any(_same(f, o) for o in others)))
    rest = [f for f in item_facts(item) if (f.kind, f.value.casefold()) not in seen and _sayable(item, f)]
    unique: dict[tuple[str, str], Fact] = {}
    for f in rest:
        unique.setdefault((f.kind, f.value.casefold()), f)
    ranked = sorted(unique.values(), key=lambda f: (any(_same(f, o) for o in others), f.field != "title", _KIND_RANK.get(f.kind, 99), f.span))
    kinds = {_kind_key(u.fact) for u in uses if u.fact.kind != "feature"}
    for f in ranked:
        if len(uses) >= limit:
            break
        if _kind_key(f) in kinds and f.kind != "feature":
            continue  # one capacity, one cut ...: "8-sheet 12-sheet" reads as a mistake
        kinds.add(_kind_key(f))
        uses.append(FactUse(f, distinct=not any(_same(f, o) for o in others)))
    if not any(u.distinct for u in uses):  # what sets it apart, from wherever the record says it
        for f in item_facts(item):
            if (f.kind, f.value.casefold()) in seen or f.kind == "feature" and f.value in _VAGUE or f.kind in ("size",) and f.field == "description":
                continue
            if not any(_same(f, o) for o in others) and _quotable(f.quote(item), 80, record=True):
                uses.append(FactUse(f, distinct=True))
                break
    return uses


def _adjective(item: Item, f: Fact) -> str | None:
    """The fact as a word before the noun ("quiet", "8-sheet", "cross-cut"), or None."""
    v = f.value
    if f.kind == "capacity" and v.endswith(("sheet", "sheets")):
        return v.split()[0] + "-sheet"
    if f.kind == "capacity":
        n, unit = v.split()[0], v.split()[1].rstrip("s")
        return f"{n}-{unit}"
    if f.kind == "noise":
        return None if re.search(r"\d", v) else v.replace(" ", "-")
    if f.kind in ("cut", "colour", "material"):
        return v.casefold() if f.field != "attribute:color" else v
    if f.kind == "power":
        return None if v == "battery" else {"AC powered": "AC-powered", "USB powered": "USB-powered"}.get(v, v.replace(" ", "-"))
    if f.kind == "size" and not re.search(r"\d", v):
        return v.replace(" ", "-")
    if f.kind == "feature" and len(v.split()) <= 2:
        return v.replace(" ", "-")
    return None


def _singular(word: str) -> str:
    low = word.casefold()
    if low.endswith("ies") and len(low) > 4:
        return word[:-3] + "y"
    if low.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _singular_phrase(phrase: str) -> str:
    words = phrase.split()
    if not words:
        return phrase
    last = words[-1]
    return " ".join(words[:-1] + [last if last.casefold().endswith("ics") else _singular(last)])


_CAT_SPLIT = re.compile(r"\s*(?:&|,|/|\band\b)\s*")


def item_noun(item: Item, context: ReasonContext | None = None) -> str:
    """What the item is, in the record's words: the shopper's product words when the item's title
    has them ("label maker"), else its most specific category in the singular ("Shredders" ->
    "shredder", "Appointment Books & Planners" -> "appointment book")."""
    title_words = re.findall(r"[A-Za-z]+", item.title)
    title_stems = [stem(w) for w in title_words]
    asked = " ".join(context.need) if context and context.need else ((context.request_text() if context else "") or "")
    words = re.findall(r"[A-Za-z]+", asked)
    asked_stems = [stem(w) for w in words]
    types = {stem(t) for t in PRODUCT_TYPES}
    wished = {st for f in extract_facts(asked, "request") for st in stems(f.value)}  # "quiet" is a wish, not the noun
    best: list[str] = []
    for n in (3, 2, 1):
        for i in range(len(words) - n + 1):
            run = asked_stems[i : i + n]
            if not set(run) & types or set(run) & wished or words[i + n - 1].casefold().endswith("ing"):
                continue  # "laminating" names a use, not the thing
            for j in find_seq(title_stems, run):
                found = title_words[j : j + n]
                if all(_singular(a.casefold()) == _singular(b.casefold()) for a, b in zip(found, words[i : i + n])):
                    best = found
        if best:
            return _singular_phrase(" ".join(best).casefold())
    cats = [c for c in item.categories if c.strip()]
    if not cats:
        return "item"
    last = _CAT_SPLIT.split(cats[-1])[0].strip() or cats[-1]
    if len(last.split()) == 1 and not last.casefold().endswith("s") and len(cats) > 1:
        parent = _CAT_SPLIT.split(cats[-2])[0].strip()
        last = f"{last} {parent}"  # "Calculators > Basic": a basic calculator
    phrase = _singular_phrase(last)
    return phrase if phrase.isupper() else phrase.casefold()


def title_marks(item: Item, others: Sequence[Item], limit: int = 3) -> str | None:
    """Words of the item's title that no other shown item's title has ("Monochrome", "Twin
    Turbo"), as written: the first such run of up to `limit` words with only spaces between them,
    letters-only words first."""
    theirs = {stem(w) for o in others for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*|[A-Za-z0-9]+", o.title)}
    theirs |= {stem(w) for o in others for w in re.findall(r"[A-Za-z0-9]+", o.title)}
    skip = set(stems(item.brand)) | set(stems(item.category))
    words = list(re.finditer(r"[A-Za-z0-9][A-Za-z0-9'-]*", item.title))

    def mark(w: str) -> bool:
        parts = [p for p in re.split(r"[-']", w) if p]
        if len(parts) > 1 and all(stem(p) in theirs for p in parts):
            return False  # "Micro-Cut" when another title says "Micro Cut"
        return len(w) >= 3 and stem(w) not in theirs and stem(w) not in skip and stem(w) not in _STOP and bool(re.search(r"[A-Za-z]", w))

    for letters_only in (True,):  # a model number ("35-380342Q") tells a shopper nothing
        for i, m in enumerate(words):
            if mark(m[0]) and (m[0].replace("-", "").replace("'", "").isalpha() or not letters_only):
                j = i
                while j + 1 < len(words) and j + 1 - i < limit and mark(words[j + 1][0]) and item.title[words[j].end() : words[j + 1].start()] == " ":
                    j += 1
                return _quotable(item.title[m.start() : words[j].end()], 40, record=True)
    return None


_STOP = frozenset(stem(w) for w in "the and for with from your this that one pack inch inches each new".split())

_SENTENCE_STOP = re.compile(r"[.!?;](?=\s|$)|\n|\s[-–—]\s")
_LEADING = re.compile(r"^(?:(?:with|and|or|of|to|for|the|a|an|in|on|at|by|is|are)\s+)+", re.I)
_TRAILING = re.compile(r"(?:\s+(?:for|the|a|an|and|or|of|to|with|in|on|is|are|at|by|from|that|this|your|its|it))+\s*$", re.I)


def _quote_around(item: Item, f: Fact, words: int = 4) -> str | None:
    """A short passage of the fact's field around its span, inside one sentence and as written
    (no dangling "for" at its end), or None when the gate's screen would reject it."""
    text = field_text(item, f.field)
    s, e = f.span
    bounds = [m.start() for m in _SENTENCE_STOP.finditer(text)]
    lo = max((b + 1 for b in bounds if b < s), default=0)
    hi = min((b for b in bounds if b >= e), default=len(text))
    sentence = text[lo:hi].strip()
    if len(sentence.split()) <= 14:  # a short sentence is quoted whole, from its start
        return _quotable(re.sub(r"[\"“”«»]", "", " ".join(sentence.split())).strip(" ,:;-("), 110, record=True)
    starts = [m.start() for m in re.finditer(r"\S+", text[lo:s])]
    start = lo + starts[-words] if len(starts) >= words else lo + (starts[0] if starts else s - lo)
    ends = [m.end() for m in re.finditer(r"\S+", text[e:hi])]
    end = e + ends[min(words + 4, len(ends)) - 1] if ends else e
    passage = " ".join(text[min(start, s) : end].split())
    passage = re.sub(r"[\"“”«»]", "", passage).strip(" ,:;-(")
    passage = _LEADING.sub("", _TRAILING.sub("", passage)).strip(" ,:;-(")
    if min(start, s) > lo + len(text[lo:s]) - len(text[lo:s].lstrip()):  # cut inside the sentence
        passage = "…" + passage
    return _quotable(passage, 90, record=True)


def _article(word: str) -> str:
    return "An" if re.match(r"(?i)[aeio]|u(?!s|ni)|8|11|18", word) and not re.match(r"(?i)one|uni|use", word) else "A"


_FIELD_NAMES = {"title": "title", "description": "description"}


def _where(f: Fact) -> str:
    return _FIELD_NAMES.get(f.field, f.field.removeprefix("attribute:") + " field")


def _price_note(item: Item, items: Sequence[Item], context: ReasonContext) -> str | None:
    """The item's price, with what makes it worth saying: the shopper's budget, or the lowest of
    three or more priced items shown."""
    if item.price is None:
        return None
    price = money(item.price, item.currency)
    lo, hi = context.price_min, context.price_max
    if lo is not None and hi is not None:
        return f"{price}, within your {money(lo)}–{money(hi)} range"
    if hi is not None:
        return f"{price}, within your {money(hi)} limit"
    if any(i.price is not None and i.currency != item.currency for i in items):
        return price  # prices in other currencies: "less than the others" would compare unlike amounts
    priced = sorted({i.price for i in items if i.price is not None})
    if len(priced) >= 3 and item.price == priced[0]:
        return f"{price}, less than the others shown"
    return price


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return (text[0].upper() + text[1:]).rstrip(" ,") + ("" if text.endswith((".", "!", "?")) else ".")


# --- facts in plain words ----------------------------------------------------------------------------
# A fact is said as what the item does or has ("takes up to 28 sheets", "comes in black"), never as
# a field of its record ("its title says") or a quoted fragment of it: quotes of catalog text read
# like a form and carry its noise. Each word is the fact's value (the record's words) or an
# explanation word of the gate's closed vocabulary.

# Features named as something the item has, or a device it works with, rather than what it is.
_HAS = frozenset({"usb", "dect", "bluetooth", "wifi", "wi-fi", "hdmi", "ethernet", "duplex", "refill", "refills", "fine point", "fine tip", "long battery", "noise cancel", "nfc", "led", "lightning", "usb-c"})
_WORKS_WITH = frozenset({"mac", "windows", "android", "iphone", "ipad", "ios", "kindle", "chromebook", "macbook", "imac", "laser", "inkjet"})
_IS = (SHOPPING_FEATURES | COMPATIBILITY | frozenset(FEATURE_PHRASES)) - _HAS - _WORKS_WITH - {"battery", "batteries", "compatible", "color", "colour", "cheap"}
# Asked qualities a number of the record backs: "heavy duty" is met by how many sheets it takes.
_BACKED_BY_CAPACITY = frozenset({"heavy duty", "heavy-duty", "high capacity", "industrial", "commercial", "professional"})
_MATERIAL_ADJECTIVES = frozenset({"magnetic", "metallic", "wooden", "stainless", "faux"})  # "is magnetic", not "comes in magnetic"
_CUT_SHORT = re.compile(r"\s*(?:-\s*)?\d+/\d+|-\d")  # "9 x 11" of "9 x 11-1/2": a size cut before its fraction


def _surface(item: Item, f: Fact) -> str:
    """The fact as the record writes it when that is a short run of words ("USB"), else its value."""
    quote = " ".join(f.quote(item).split())
    return quote if quote and len(quote.split()) <= 3 and re.fullmatch(r"[A-Za-z0-9 -]+", quote) else f.value


def _predicate(item: Item, f: Fact) -> str | None:
    """The fact as what the item does or has ("takes up to 8 sheets", "comes in black", "is
    cross-cut"), or None when plain words would say more than the record."""
    v = f.value
    if f.kind == "capacity":
        return f"takes up to {v}" if v.endswith(("sheet", "sheets")) else f"holds {v}"
    if f.kind == "pack":
        return f"comes in a pack of {v.split()[0]}"
    if f.kind == "cut":
        return f"is {v}"
    if f.kind == "material" and v.casefold() in _MATERIAL_ADJECTIVES:
        return f"is {v.casefold()}"
    if f.kind in ("colour", "material"):
        return f"comes in {v if f.field.startswith('attribute:') else v.casefold()}"
    if f.kind == "size":
        if _CUT_SHORT.match(field_text(item, f.field)[f.span[1] :]):
            return None
        return f"measures {v}" if re.search(r"\d", v) else f"is {v}"
    if f.kind == "compatibility":
        return f"works with {v}"
    if f.kind == "power":
        return "runs on batteries" if v == "battery" else f"is {v}"
    if f.kind == "noise":
        return f"is rated at {v}" if re.search(r"\d", v) else None if v in ("whisper", "quieter") else f"is {v}"
    low = v.casefold()
    if low in _HAS:
        return f"has {_surface(item, f)}"
    if low in _WORKS_WITH:
        printers = "printer" in stems(item.title + " " + item.description[:2000])
        if low in ("laser", "inkjet"):
            return f"works with {low} printers" if printers else f"works with {low}"
        return f"works with {_surface(item, f)}"
    if low in _IS:
        return f"is {v}"
    return None


def _amount(item: Item, kind: str) -> float | None:
    """The sheets an item takes ("capacity") or the items in its pack ("pack"), as its title or
    fields state them."""
    for f in item_facts(item):
        if f.kind == kind and f.field != "description" and (kind != "capacity" or f.value.endswith(("sheet", "sheets"))):
            return _count(f.value)
    return None


def _count(value: str) -> float:
    """The number leading a fact's value: "5,000 sheets" -> 5000."""
    return float(value.split()[0].replace(",", ""))


_STANDOUT_KINDS = frozenset({"colour", "material", "cut", "power", "noise", "feature", "compatibility"})


def _standout(item: Item, uses: Sequence[FactUse], others: Sequence[Item], index: int) -> tuple[FactUse, str] | None:
    """A sentence on what sets the item apart from the other items shown, from its facts: more
    sheets or a bigger pack than every other that states one, or a quality none of them states
    ("the only one here that is cross-cut"), in plain words. Nothing for an item shown alone."""
    if not others:
        return None
    for u in uses:
        f = u.fact
        if f.kind not in ("capacity", "pack") or u.asked or f.field == "description" or f.kind == "capacity" and not f.value.endswith(("sheet", "sheets")):
            continue
        mine = _count(f.value)
        theirs = [n for n in (_amount(o, f.kind) for o in others) if n is not None]
        if theirs and mine > max(theirs):
            return u, f"It {_predicate(item, f)}, more than the others shown"
    for u in uses:
        said = _predicate(item, u.fact)
        if u.distinct and said and not u.asked and u.fact.kind in _STANDOUT_KINDS:
            forms = (f"It is the only one here that {said}", f"Unlike the others shown, it {said}")
            return u, forms[index % len(forms)]
    return None


def _asked_sentence(item: Item, lead: FactUse, backing: FactUse | None, index: int) -> str:
    """What the shopper asked for, tied to the fact of the record that meets it."""
    said = _quotable(lead.asked, 40) or lead.fact.value
    pred = _predicate(item, lead.fact) or ""
    if backing is not None:  # "heavy duty": say the number that backs it
        forms = (f"It {pred}, as you asked: it {_predicate(item, backing.fact)}", f"You asked for {said}, and it {_predicate(item, backing.fact)}")
        return forms[index % len(forms)]
    if set(stems(said)) != set(stems(lead.fact.value)):  # "quiet" met by "silent": say both
        return f"You asked for {said}, and it {pred}"
    forms = (f"It {pred}, as you asked", f"As you asked, it {pred}", f"It {pred}, which is what you asked for")
    return forms[index % len(forms)]


def _colour_clash(item: Item, f: Fact) -> bool:
    """A colour only the description names while the title or a field gives another: the
    description is as likely to be about a sibling product."""
    return f.kind == "colour" and f.field == "description" and any(g.kind == "colour" and g.field != "description" and g.value.casefold() != f.value.casefold() for g in item_facts(item))


def realise(
    item: Item,
    uses: Sequence[FactUse],
    context: ReasonContext,
    *,
    index: int = 0,
    items: Sequence[Item] = (),
    others: Sequence[Item] | None = None,
    history_items: int = 3,
) -> str:
    """One to three sentences for `item` from its chosen facts (see `answer_reasons`): what it is
    ("A 28-sheet stapler by Swingline"), then the fact that meets what the shopper asked for, or
    what sets it apart from the others shown, or the purchase of theirs it relates to."""
    noun = item_noun(item, context)
    shown_others = list(others or [])
    lead = next((u for u in uses if u.asked and _predicate(item, u.fact) and not _colour_clash(item, u.fact)), None)
    backing = None
    if lead is not None and lead.fact.value.casefold() in _BACKED_BY_CAPACITY:
        backing = next((u for u in uses if u.fact.kind == "capacity" and not u.asked), None)
        if backing is None:
            backing = next((FactUse(f) for f in item_facts(item) if f.kind == "capacity" and _sayable(item, f)), None)
    standout = None if lead is not None and (lead.distinct or len(uses) < 2) else _standout(item, [u for u in uses if u is not lead and u is not backing], shown_others, index)
    in_s2 = {id(u) for u in (lead, backing, standout[0] if standout else None) if u is not None}
    phrase, after = _described(item, [u for u in uses if id(u) not in in_s2], noun)
    maker = _quotable(item.brand, 60, record=True) if item.brand and not is_non_brand(item.brand) else None
    bought = None
    if not asked_features(context) and context.history_titles and history_items:
        bought = related_purchase(item, list(context.history_titles)[-history_items:])
    first = f"{'Another' if bought and bought.relation == 'type' else _article(phrase)} {phrase}"
    if maker and not (bought and bought.relation == "maker"):
        first += f" by {maker}"
    if after:
        first += " " + after
    price = _price_note(item, items or [item], context)
    if price and bought is None:
        first += f", at {price}"
    if bought is not None:  # the purchase closes the sentence: what follows a "you bought" is about it
        first = _with_purchase(first, bought, maker)
    sentences = [_sentence(first)]
    if price and bought is not None:
        sentences.append(_sentence(f"It costs {price}"))
    if lead is not None:
        sentences.append(_sentence(_asked_sentence(item, lead, backing, index)))
    if standout is not None and len(sentences) < 3:
        sentences.append(_sentence(standout[1]))
    return " ".join(sentences[:3])


def _described(item: Item, uses: Sequence[FactUse], noun: str) -> tuple[str, str]:
    """The item's noun with its facts before it ("quiet 8-sheet cross-cut shredder") and at most
    one after it ("that holds 7 gallons", "in a pack of 12"); facts of the description only when
    they say how much or how it cuts."""
    noun_stems = set(stems(noun))
    adjectives: list[tuple[int, str]] = []
    after: list[str] = []
    # "a 12-sheet shredder that holds 7 gallons": the sheets are the adjective
    ordered = sorted(uses, key=lambda u: u.fact.kind == "capacity" and not u.fact.value.endswith(("sheet", "sheets")))
    for u in ordered:
        if u.asked and u.fact.field == "description":
            continue
        if u.fact.field == "description" and u.fact.kind not in _SAY_FROM_DESCRIPTION:
            continue
        adj = _adjective(item, u.fact)
        if u.fact.kind == "feature" and u.fact.value.casefold() in _HAS | _WORKS_WITH and not u.asked:
            adj = None  # "a wireless ios printer": a device is not an adjective
        if u.fact.kind == "capacity" and any(v.fact.kind == "capacity" for v in ordered[: ordered.index(u)]):
            adj = None  # one capacity before the noun; another reads "that holds 7 gallons"
        if u.fact.kind == "size" and _predicate(item, u.fact) is None:
            continue  # a size cut short of its fraction
        if adj and item.brand and set(stems(adj)) <= set(stems(item.brand)):
            continue  # "a Samsung fax machine by Samsung"
        if adj and not set(stems(adj)) <= noun_stems and len(adjectives) < 3:
            adjectives.append((_ADJ_ORDER.get(u.fact.kind, 9), adj))
        elif not adj and not after and (pred := _predicate(item, u.fact)):
            after.append(_after_noun(u.fact, pred))
    return " ".join([*(a for _, a in sorted(adjectives, key=lambda x: x[0])), noun]), after[0] if after else ""


def _after_noun(f: Fact, predicate: str) -> str:
    """The fact after the noun: "that takes up to 8 sheets", "in a pack of 12"."""
    if f.kind == "pack":
        return f"in a pack of {f.value.split()[0]}"
    if f.kind == "size" and predicate.startswith("measures"):
        return f"measuring {f.value}"
    return f"that {predicate}"


def _with_purchase(first: str, bought: Purchase, maker: str | None) -> str:
    """The opening sentence tied to the purchase it relates to, naming that purchase in its own
    title's words: "Another stapler by Swingline, like the Bostitch one you bought"."""
    if bought.relation == "type":
        return f"{first}, like the {bought.detail} one you bought" if bought.detail else f"{first}, like one you bought before"
    if bought.relation == "maker" and maker:
        like = f"like the {bought.name} you bought" if bought.name else "like one of your past purchases"
        return f"From {maker}, {like}: {first[0].lower()}{first[1:]}"
    return f"Suggested because you bought the {bought.name}. {first}"


# --- the shopper's history -----------------------------------------------------------------------------


_TYPE_STEMS = frozenset(stem(t) for t in PRODUCT_TYPES)


@dataclass(frozen=True)
class Purchase:
    """The purchase a reason cites: how it relates to the item ("type" | "maker" | "words"),
    what it was in its title's words ("laptop stand"), and for one of the same type a fact of its
    title that tells it apart ("20-sheet")."""

    relation: str
    name: str
    detail: str = ""


def _purchase(title: str) -> Item:
    return Item(id="", title=title)


def related_purchase(item: Item, titles: Sequence[str]) -> Purchase | None:
    """The purchase most related to `item`: one of its product type, else one of its maker, else
    the one sharing most words of its title (two at least), the latest first on a tie; None when
    nothing bought relates to it (a file folder is not suggested "because you bought a
    chalkboard"). Only `titles` (the purchases the reason writer shows) are looked at."""
    maker = [] if not item.brand or is_non_brand(item.brand) else stems(item.brand)
    mine = {s for s in content_stems(item.title) if not s.isdigit()} - set(maker)
    mine_type = product_type(item)
    best: tuple[tuple[bool, bool, int, int], str] | None = None
    for age, title in enumerate(reversed(list(titles))):
        bought = _purchase(title)
        same = mine_type is not None and product_type(bought) is not None and same_type(item, bought)
        by_maker = bool(maker) and bool(find_seq(stems(title), maker))
        overlap = len(mine & set(content_stems(title)))
        key = (same, by_maker, overlap, -age)
        if (same or by_maker or overlap >= 2) and (best is None or key > best[0]):
            best = key, title
    if best is None:
        return None
    (same, by_maker, _, _), title = best
    name = _purchase_name(title)
    if same:
        mine_facts = {(f.kind, f.value.casefold()) for f in item_facts(item)}
        theirs = [f for f in item_facts(_purchase(title)) if f.kind in ("capacity", "colour", "cut", "power", "material") and (f.kind, f.value.casefold()) not in mine_facts]
        detail = next((a for f in theirs if (a := _adjective(_purchase(title), f))), "")
        return Purchase("type", name, detail)
    if by_maker:
        return Purchase("maker", name)
    return Purchase("words", name) if name else None


def _purchase_name(title: str) -> str:
    """What a bought item was, in its title's words: its product type and the word before it
    when that is not the title's first word (the maker, as often as not): "laptop stand"."""
    kind = product_type(_purchase(title))
    if kind is None or kind.field != "title" or stem(kind.value) not in _TYPE_STEMS:
        return ""  # "Retail Packaging": a title's last noun is not always what was bought
    before = list(re.finditer(r"[A-Za-z]+", title[: kind.span[0]]))
    prev = before[-1] if len(before) >= 2 and title[before[-1].end() : kind.span[0]] == " " and title[before[-1].start() - 1] == " " else None
    if prev is not None and prev[0].isalpha() and not prev[0].isupper() and stem(prev[0]) not in FILLER_STEMS:
        return f"{prev[0].casefold()} {kind.value}"
    return kind.value


def answer_reasons(items: Sequence[Item], context: ReasonContext | None = None, *, history_items: int = 3) -> list[str]:
    """Template reasons for the items of one answer, written together: each names what the
    shopper asked for when its record states it, and what sets it apart from the other items
    shown; for a returning shopper, the purchase most related to it among the last
    `history_items` (the ones the reason writer shows, so the gate can check the citation). No two
    reasons of an answer are the same text."""
    context = context or ReasonContext()
    asked = asked_features(context)
    out: list[str] = []
    said: list[frozenset[str]] = []
    for i, item in enumerate(items):
        others = [o for j, o in enumerate(items) if j != i]
        uses = choose_facts(item, others, asked)
        text = realise(item, uses, context, index=i, items=items, others=others, history_items=history_items)
        key = _item_words(text)
        if key in said:  # the same facts in other words: name what its title calls it
            mark = title_marks(item, [o for o, k in zip(items, said) if k == key])
            noun = item_noun(item, context)
            text = f"{text} This one is the {mark} {noun}." if mark else f"{text} This one is listed under {item.category}." if item.category else f"{text} This is another one like it."
        out.append(text)
        said.append(key)
    return out


def _item_words(text: str) -> frozenset[str]:
    """The words of a reason that say something about its item (the explanation words left out)."""
    return frozenset(stems(text)) - _GLUE_STEMS


_GLUE_STEMS = frozenset(st for w in EXPLANATION_WORDS for st in stems(w))


def is_keyword_list(text: str) -> bool:
    """A reason built as a list of quoted words ("matches “paper”, “shredder”"): two or more
    quotes of at most two words each, next to each other."""
    quotes = re.findall(r"[“\"]([^”\"]{1,40})[”\"]", text)
    short_quotes = [q for q in quotes if len(q.split()) <= 2]
    return len(short_quotes) >= 2 and bool(re.search(r"[”\"]\s*(?:,|and|or)\s*[“\"]", text))


# "...and these bubble wrap rolls are perfect for that": a claim that the item meets the request.
FIT_CLAIM_RE = re.compile(
    r"\b(?:perfect|ideal|great|good|suitable|right|just\s+what)\b[^.;!?]{0,20}?\b(?:for\s+(?:that|this|it|you|your\s+needs?)|you\s+(?:need|want|asked\s+for))\b"
    r"|\bsuits?\s+(?:you|your\s+needs?)\b|\bfits?\s+(?:the\s+bill|your\s+needs?)\b",
    re.I,
)


def _claimed_fit_without_the_product(text: str, record: Sequence[str], context: ReasonContext) -> str | None:
    """Why a claim that the item meets the request is unsupported, or None. Each word of such a
    claim is in the record or the request, so the closed vocabulary passes it; but "a small mail
    bag? These bubble wrap rolls are perfect for that" is false unless the record names the product
    asked for: the request's last content word (its head noun)."""
    if not FIT_CLAIM_RE.search(text):
        return None
    request = context.request_text()
    asked = content_stems(request) if request else []
    if not asked:
        return None
    if asked[-1] in set(content_stems(" ".join(record))):
        return None
    return f"claims the item fits the request, but the record does not name the product asked for ('{asked[-1]}')"


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

    def evidence(self, item: Item, context: ReasonContext) -> tuple[list[str], list[str], list[str]]:
        """(item evidence, request evidence, history evidence): the item's own record; the user's
        words and what the dialogue established from them (backs only a restatement of the
        request); the history titles the prompt showed (only those: a purchase the model never saw
        backs nothing), which back only claims about what the shopper bought."""
        shown = list(context.history_titles)[-self.history_items :] if self.history_items else []
        request = ReasonContext(context.query, (), context.conversation).user_texts() + list(context.need) + list(context.features)
        if context.price_min is not None:
            request.append(money(context.price_min))
        if context.price_max is not None:
            request.append(money(context.price_max))
        return item_evidence(item), request, shown

    def check(self, text: str, item: Item, context: ReasonContext, *, prose: bool = True) -> GroundingReport:
        """Format check (prose, not an echo of the prompt; LLM text only) + the grounding gate, with
        a closed vocabulary: a reason says only what the record, the request and the history state."""
        problems = format_problems(text) if prose else []
        if problems:
            return GroundingReport(ok=False, unsupported=problems, checked=0)
        record, request, history = self.evidence(item, context)
        report = check_grounding(text, record, request_evidence=request, history_evidence=history, catalog_brands=self.catalog_brands, closed=True)
        misfit = _claimed_fit_without_the_product(text, record, context)
        if misfit:
            return GroundingReport(ok=False, unsupported=[*report.unsupported, misfit], checked=report.checked + 1)
        return report

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
        # Template reasons are written per answer (the jobs of one context), so each can say what
        # sets its item apart from the others shown.
        groups: dict[int, list[int]] = {}
        for i in range(len(jobs)):
            groups.setdefault(id(jobs[i][1]), []).append(i)
        templates: dict[int, str] = {}
        for members in groups.values():
            if any(i in pending for i in members):
                texts = answer_reasons([jobs[i][0] for i in members], jobs[members[0]][1], history_items=self.history_items)
                templates.update(zip(members, texts))
        for i in pending:
            item, context = jobs[i]
            text = templates[i]
            report = self.check(text, item, context, prose=False)
            if not report.ok:  # cannot happen by construction; keep the promise visible if it ever does
                log.error("template reason for item %s failed grounding: %s", item.id, report.unsupported)
            reasons[i] = Reason(item.id, text, report.ok, "template", first_try_ok=False, problems=problems[i], raw=raws[i])
        return [r for r in reasons if r is not None]
