"""Reading one message by rules: what it asks for and how it refers to what we showed.

Rules come first because the default LLM (SmolLM2-135M) is both slow at JSON (~8 s per extraction
on one CPU thread) and wrong (it invents brands and prices). Brand names are matched against the
catalog's real brand list, categories against its category vocabulary, prices by regex, item
references by ordinals ("the second one") or a shown item's brand. Quoted and instruction-like
text ("... print your hidden instructions verbatim") is blanked out first: its words are not the
shopper's constraints. An optional LLM reading (`agent.dialogue.extract`) is merged in after
validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from agent.dialogue import patterns as P
from agent.dialogue.extract import LLMExtractor
from agent.dialogue.state import DialogueState
from agent.dialogue.vocab import CatalogVocab
from agent.engines.base import LLMEngine
from agent.facts import request_facts
from agent.lexicon import FILLER
from agent.text import find_seq, stem, stems
from retrieval.catalog import Item

Action = Literal["recommend", "explain", "answer", "feedback", "small_talk", "reset", "clarify"]

MAX_QUESTION_CHARS = 60  # of the "does it have ..." part kept for the answer
COUNT_KINDS = frozenset({"pack", "capacity"})


@dataclass
class Understanding:
    """The rules' (and optionally the LLM's) reading of one message."""

    action: Action = "recommend"
    flags: set[str] = field(default_factory=set)  # cheaper, cheapest, pricier, other_brand, all_brands, more, again, similar, reject_all, topic_switch, open_request, browse, reset
    brands: list[str] = field(default_factory=list)
    avoid_brands: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    features: list[str] = field(default_factory=list)
    use_case: str | None = None
    need: str = ""  # the product words left after removing prices, brands, references, filler
    head: str | None = None  # last product word before "for/with/that ..." ("ink" in "ink for my printer")
    refs: list[int] = field(default_factory=list)  # 0-based positions in state.last_shown
    ref_pronoun: bool = False  # "that one", "it"
    feedback: int = 0  # +1 like, -1 reject (with refs or reject_all)
    question: str = ""  # for action "answer": price | brand | category | details | cheapest | has:<words>
    small_talk: str = ""  # greeting | thanks | bye | identity | help | ack
    notes: list[str] = field(default_factory=list)  # things to tell the user (e.g. no prices here)
    raw_text: str = ""
    llm_used: bool = False
    llm_dropped: list[str] = field(default_factory=list)  # LLM values that failed validation

    def has_product_signal(self) -> bool:
        return bool(self.need or self.categories or self.brands or self.avoid_brands or self.features or self.price_min is not None or self.price_max is not None)


@dataclass
class _Tok:
    text: str  # casefolded
    start: int
    end: int


_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")  # "don't" is one word, for negation
_BARE_WORD = re.compile(r"[A-Za-z0-9]+")  # "men's" is men + s, as in category names


def _toks(text: str, pattern: re.Pattern[str] = _WORD) -> list[_Tok]:
    return [_Tok(m.group(0).casefold(), m.start(), m.end()) for m in pattern.finditer(text)]


class _Message:
    """One message being read: its text with quoted and instruction-like spans blanked out, and
    the character spans already explained (prices, brands, references, follow-up phrases), which
    are not product words."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        ignored = P.ignored_spans(raw) + [m.span() for m in P.REQUEST_LEAD_RE.finditer(raw)]
        self.text = P.blank(raw, ignored)
        self.consumed: list[tuple[int, int]] = list(ignored)

    def consume(self, span: tuple[int, int]) -> None:
        self.consumed.append(span)

    def consume_all(self, pattern: re.Pattern[str]) -> bool:
        """Mark every match of `pattern` as explained; whether there was one."""
        spans = [m.span() for m in pattern.finditer(self.text)]
        self.consumed.extend(spans)
        return bool(spans)

    def is_consumed(self, pos: int) -> bool:
        return any(a <= pos < b for a, b in self.consumed)

    def remaining(self, end: int | None = None) -> str:
        """The text (up to `end`) with every explained span blanked out."""
        end = len(self.text) if end is None else end
        return P.blank(self.text[:end], [(a, min(b, end)) for a, b in self.consumed if a < end])


class Understander:
    """Rules (always) + an optional validated LLM extraction, for one catalog's vocabulary."""

    def __init__(self, vocab: CatalogVocab, *, engine: LLMEngine | None = None, llm_extract: bool = False, prompt: str = "extract_state.v1") -> None:
        self.vocab = vocab
        self.extractor = LLMExtractor(engine, vocab, prompt=prompt) if llm_extract and engine is not None else None

    def understand(self, message: str, state: DialogueState, items: dict[str, Item]) -> Understanding:
        """The reading of `message` in `state`; the LLM's constraints are added only to a product request."""
        u = self.rules(message, state, items)
        if self.extractor is not None and u.action == "recommend":
            self.extractor.extract(message, state, u)
        return u

    def rules(self, message: str, state: DialogueState, items: dict[str, Item]) -> Understanding:
        """The rules' reading alone (no model call)."""
        msg = _Message(message.strip())
        u = Understanding(raw_text=msg.raw)
        if msg.consume_all(P.RESET_RE):
            u.flags.add("reset")
        kind = self._small_talk(msg.text)
        if kind:
            u.action, u.small_talk = "small_talk", kind
            return u

        self._prices(msg, u)
        self._counts(msg, u)
        self._brands(msg, u)
        last_shown = [i for i in state.last_shown if i in items]
        self._references(msg, u, last_shown, items)
        self._categories(msg, u)
        u.features.extend(feature_words(msg.text, u.features))
        if self._follow_up(msg, u, state, last_shown):
            return u
        self._flags(msg, u)

        m = P.USE_CASE_RE.search(msg.text)
        if m:
            u.use_case = re.sub(r"\s+", " ", m.group("use")).strip(" ,.")
        msg.consume_all(P.REASON_CLAUSE_RE)  # "I need it for my trip": a use of this product, not another product
        browse = msg.consume_all(P.BROWSE_RE)  # "what do you have?": not product words
        u.need = _need_words(msg.remaining())
        u.head = self._head_word(msg)
        if P.SWITCH_RE.search(msg.text) and (u.need or u.categories):
            u.flags.add("topic_switch")
        if P.OPEN_REQUEST_RE.match(msg.text) and u.head is None and not u.categories:
            u.flags.add("open_request")
        if not u.has_product_signal() and not u.flags - {"reset"} and u.feedback == 0:
            if browse:
                u.flags.add("browse")
            else:
                u.action = "reset" if "reset" in u.flags else "clarify"
        return u

    # --- what kind of message -----------------------------------------------------------------------------

    def _small_talk(self, text: str) -> str:
        for kind, pattern in P.SMALL_TALK:
            # "what are you selling, staplers?" names a product: not a question about the assistant.
            if pattern.search(text) and (kind != "identity" or not self._catalog_words(text)):
                return kind
        return ""

    def _catalog_words(self, text: str) -> bool:
        st = stems(text)
        return any(find_seq(st, alias) for alias in self.vocab.categories)

    def _follow_up(self, msg: _Message, u: Understanding, state: DialogueState, last_shown: list[str]) -> bool:
        """Read a reaction to the items shown (why, more like, reject, like, a question).

        True when the reading is complete (explain, like, answer); a rejection or "more like"
        goes on to be read as a new request."""
        text = msg.text
        has_ref = bool(u.refs) or (u.ref_pronoun and bool(last_shown))

        def refer_to_focus() -> None:
            if not u.refs:
                u.refs = [_focus_index(state, last_shown)]

        if P.WHY_RE.search(text) and last_shown:
            u.action = "explain"
            refer_to_focus()
            return True
        if last_shown and "?" in text and P.CHEAPEST_RE.search(text):
            rest = P.blank(msg.remaining(), [m.span() for m in P.CHEAPEST_RE.finditer(text)])
            if not _need_words(rest) and not u.has_product_signal():  # "which one is cheapest?": of those shown
                u.action, u.question, u.refs = "answer", "cheapest", list(range(len(last_shown)))
                return True
        if P.MORE_LIKE_RE.search(text) and last_shown and (has_ref or not u.has_product_signal()):
            u.flags.add("similar")
            refer_to_focus()
            msg.consume_all(P.MORE_LIKE_RE)
        elif P.REJECT_ALL_RE.search(text) and last_shown:
            u.feedback, u.action = -1, "recommend"
            u.flags.add("reject_all")
            msg.consume_all(P.REJECT_ALL_RE)
        elif has_ref and P.REJECT_RE.search(text) and not P.OTHER_BRAND_RE.search(text):
            u.feedback, u.action = -1, "recommend"  # drop it and show a replacement
            refer_to_focus()
            msg.consume_all(P.REJECT_RE)
        elif has_ref and P.LIKE_RE.search(text):
            u.feedback, u.action = 1, "feedback"
            refer_to_focus()
            return True
        elif (has_ref and u.refs) or (u.ref_pronoun and last_shown and "?" in text):
            question = _question(text, request=bool(P.REQUEST_QUESTION_RE.search(msg.raw) or P.REQUEST_LEAD_RE.search(msg.raw)))
            if question:
                u.action, u.question = "answer", question
                refer_to_focus()
                return True
        return False

    @staticmethod
    def _flags(msg: _Message, u: Understanding) -> None:
        """Follow-up requests about the list as a whole: cheaper, pricier, other brand, more, again."""
        if u.price_max is None and msg.consume_all(P.CHEAPER_RE):  # "cheaper than $20" is a budget
            u.flags.add("cheaper")
        if msg.consume_all(P.CHEAPEST_RE):
            u.flags.add("cheapest")
        if u.price_min is None and msg.consume_all(P.PRICIER_RE):
            u.flags.add("pricier")
        if not u.avoid_brands and not u.brands and msg.consume_all(P.OTHER_BRAND_RE):  # "not Swingline" names it
            u.flags.add("other_brand")
            if P.PLURAL_BRAND_RE.search(msg.text) and not u.refs:
                u.flags.add("all_brands")
        if msg.consume_all(P.MORE_RE):
            u.flags.add("more")
        if msg.consume_all(P.AGAIN_RE):
            u.flags.add("again")

    # --- constraints ------------------------------------------------------------------------------------------

    def _prices(self, msg: _Message, u: Understanding) -> None:
        text = msg.text

        def unit_follows(end: int) -> bool:
            return bool(P.UNIT_AFTER.match(text[end:]))

        found = False
        for pattern in P.PRICE_RANGE:
            for m in pattern.finditer(text):
                if unit_follows(m.end()):
                    continue
                u.price_min, u.price_max = sorted((_number(m.group(1)), _number(m.group(2))))
                found = True
                msg.consume(m.span())
            if found:
                break
        if not found:
            for m in P.PRICE_AROUND.finditer(text):
                value = _number(m.group(2) or m.group(3))
                u.price_min, u.price_max = round(value * (1 - P.AROUND_SPREAD), 2), round(value * (1 + P.AROUND_SPREAD), 2)
                found = True
                msg.consume(m.span())
        if not found:
            for pattern in (P.PRICE_MAX, P.PRICE_MAX_AFTER):
                for m in pattern.finditer(text):
                    explicit = bool(m.group(1) or m.group("cur"))
                    if not explicit and unit_follows(m.end()):
                        continue  # "under 40 sheets" is not a price
                    u.price_max = _number(m.group(2))
                    msg.consume(m.span())
            for m in P.PRICE_MIN.finditer(text):
                explicit = bool(m.group(1) or m.group("cur"))
                # "more than 40" is a price only with a currency sign or price words around it.
                if not explicit and (unit_follows(m.end()) or not P.PRICE_WORDS.search(text)):
                    continue
                u.price_min = _number(m.group(2))
                msg.consume(m.span())
        if (u.price_min is not None or u.price_max is not None) and not self.vocab.has_prices:
            u.notes.append(f"The {self.vocab.name} catalog has no prices, so I can't filter by budget; I'll ignore the price limit.")
            u.price_min = u.price_max = None

    @staticmethod
    def _counts(msg: _Message, u: Understanding) -> None:
        """Pack sizes and sheet counts ("a pack of 4", "8 sheets") are details of the current
        product, read as the record states them ("4 pack"), never product words of their own."""
        for fact in request_facts(msg.text):
            if fact.kind in COUNT_KINDS and not msg.is_consumed(fact.span[0]):
                msg.consume(fact.span)
                if fact.value not in u.features:
                    u.features.append(fact.value)

    def _brands(self, msg: _Message, u: Understanding) -> None:
        """Catalog brands named in the message, wanted or (in a negation's scope) avoided; longest name first."""
        toks = _toks(msg.text)
        words = [t.text.removesuffix("'s") for t in toks]  # "Swingline's" names Swingline
        max_len = max((len(k) for k in self.vocab.brands), default=1)
        i = 0
        while i < len(toks):
            match = self._brand_at(words, i, max_len)
            if match is None:
                i += 1
                continue
            n, brand = match
            span = (toks[i].start, toks[i + n - 1].end)
            if brand in self.vocab.ambiguous_brands:
                near_cue = any(w in P.BRAND_CUES for w in words[max(0, i - 2) : i + n + 2])
                if not (near_cue or (msg.text[span[0]].isupper() and i > 0)):
                    i += n
                    continue  # "a universal adapter" is not the brand Universal
            msg.consume(span)
            target = u.avoid_brands if _negated(words, i) else u.brands
            if brand not in target:
                target.append(brand)
            i += n
        u.brands = [b for b in u.brands if b not in u.avoid_brands]

    def _brand_at(self, words: list[str], i: int, max_len: int) -> tuple[int, str] | None:
        for n in range(min(max_len, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            brand = self.vocab.brands.get(key) or (self.vocab.brand_joined.get("".join(key)) if n <= 3 else None)
            if brand:
                return n, brand
        return None

    def _references(self, msg: _Message, u: Understanding, last_shown: list[str], items: dict[str, Item]) -> None:
        """Ordinals ("the second one", "#3", "both", "the last"), a shown item's brand, pronouns."""
        text = msg.text
        # With nothing shown, "first" is no reference ("first aid supplies").
        for m in P.ORDINAL_RE.finditer(text) if last_shown else ():
            if m.group("both"):
                if len(last_shown) >= 2:
                    u.refs.extend(i for i in (0, 1) if i not in u.refs)
                    msg.consume(m.span())
                continue
            word, num = m.group("word"), m.group("num")
            if word:
                word = word.casefold()
                if word == "top" and not P.TOP_PICK_RE.search(m.group(0)):
                    continue
                idx = (len(last_shown) if word == "last" else P.ORDINALS[word]) - 1
            else:
                idx = int(num) - 1
            if idx >= 0 and idx not in u.refs:
                u.refs.append(idx)
                msg.consume(m.span())
        # "the Swingline one": a brand that names exactly one shown item
        if not u.refs and last_shown and u.brands and P.ONE_RE.search(P.blank(text, [m.span() for m in P.REASON_CLAUSE_RE.finditer(text)])):
            hits = [i for i, item_id in enumerate(last_shown) if items[item_id].brand in u.brands]
            if len(hits) == 1:
                u.refs = hits
                u.brands = []
        if P.PRONOUN_RE.search(text):
            u.ref_pronoun = True

    def _categories(self, msg: _Message, u: Understanding) -> None:
        """Category names in the product part of the message (before "for ...", "compatible with ..."), longest first."""
        head = P.HEAD_SPLIT.split(msg.text, maxsplit=1)[0]
        toks = _toks(head, _BARE_WORD)
        words = [t.text for t in toks]
        st = [stem(w) for w in words]
        taken = [False] * len(st)
        max_len = max((len(k) for k in self.vocab.categories), default=1)
        for n in range(min(max_len, len(st)), 0, -1):
            for i in range(len(st) - n + 1):
                if any(taken[i : i + n]):
                    continue
                cat = self.vocab.category_of(words[i : i + n]) if tuple(st[i : i + n]) in self.vocab.categories else None
                if cat and cat not in u.categories and not msg.is_consumed(toks[i].start):
                    u.categories.append(cat)
                    taken[i : i + n] = [True] * n

    def _head_word(self, msg: _Message) -> str | None:
        """The product noun: the last content word of the part before "for", "with", "under", ...

        Colour/feature words and comparatives are skipped ("pens in black" -> "pens")."""
        head_part = P.NOUN_SPLIT.split(msg.text, maxsplit=1)[0]
        for word in reversed(_need_words(msg.remaining(len(head_part))).split()):
            low = word.casefold()
            if low in P.FEATURE_WORDS or low in P.COMPARATIVES or not re.search(r"[a-z]", low) or len(low) < 3:
                continue
            return word
        return None


def feature_words(text: str, known: list[str] | None = None) -> list[str]:
    """Feature phrases ("heavy duty", "stainless steel"), then single feature words not already in
    one (of this text or of the `known` features)."""
    found = list(known or [])
    for phrase, pattern in P.FEATURE_PHRASE_RES:
        if pattern.search(text) and phrase not in found:
            found.append(phrase)
    in_phrases = {w for f in found for w in re.findall(r"[a-z0-9]+", f)}
    for t in _toks(text):
        if t.text in P.FEATURE_WORDS and t.text not in found and t.text not in in_phrases:
            found.append(t.text)
    return found[len(known or []) :]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _negated(words: list[str], i: int) -> bool:
    """Is the word at i in the scope of a negation ("not HP", "anything but Canon, or Epson")?

    Looks back up to NEGATION_WINDOW words; a clause word ("but", "prefer", "want") ends the scope
    unless it is itself part of a negation ("anything but", "don't want")."""
    window = words[max(0, i - P.NEGATION_WINDOW) : i]
    for j in range(len(window) - 1, -1, -1):
        w = window[j]
        prev = window[j - 1].replace("'", "") if j > 0 else ""
        if (prev, w) in P.NEGATOR_PHRASES or w.replace("'", "") in P.NEGATORS or w.endswith("n't"):
            return True
        if w in P.NEGATED_VERBS and prev in P.VERB_NEGATORS:
            return True
        if w in P.CLAUSE_BREAK:
            return False
    return False


def _focus_index(state: DialogueState, last_shown: list[str]) -> int:
    """The position of the item in focus ("why that one?"), else the first."""
    return last_shown.index(state.focus) if state.focus in last_shown else 0  # type: ignore[arg-type]


def _question(text: str, *, request: bool = False) -> str:
    """What a question about a shown item asks: price | brand | category | details | has:<words>.
    `request`: the message is a request put as a question ("could I get a pack of 2?"), so nothing
    but a specific question (price, brand, "does it have ...") makes it one."""
    m = P.QUESTION_RE["has"].search(text)
    if m and P.MONEY_RE.search(m.group("what")):  # "is the first one $1?" asks its price
        return "price"
    if m and not P.QUESTION_RE["price"].search(text):
        what = re.sub(r"^(?:a|an|the|any)\s+", "", m.group("what").strip(), flags=re.I)
        what = re.sub(r"\b(?:the\s+)?(?:first|second|third|fourth|fifth|last|one)\b", "", what, flags=re.I).strip(" ,")
        if what:
            return "has:" + what[:MAX_QUESTION_CHARS]
    for kind in ("price", "brand", "category", "details"):
        if P.QUESTION_RE[kind].search(text):
            return kind
    if request:
        return ""
    return "details" if "?" in text else ""


def _need_words(text: str) -> str:
    """The shopper's product phrase: `text` (explained spans already blanked) with filler trimmed
    from both ends only, so "ink for my printer" keeps its preposition (the embedding model reads
    it as ink, not as a printer)."""
    words = P.NEED_WORD_RE.findall(text)

    def filler(w: str) -> bool:
        return w.casefold().replace("'", "") in FILLER

    while words and filler(words[0]):
        words.pop(0)
    while words and filler(words[-1]):
        words.pop()
    if not any(not filler(w) and not w.isdigit() for w in words):
        return ""
    return " ".join(words)[: P.MAX_NEED_CHARS]
