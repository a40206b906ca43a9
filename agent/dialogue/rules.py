"""Dialogue state and what a user turn means for it.

The state is what the shopper has told us so far (category, brands wanted/avoided, price bounds,
must-have features, use case, the words describing the need) plus what we showed and how they
reacted (shown, liked, rejected, the item in focus). It is plain data that round-trips through
JSON, so the session store can persist it.

Understanding a turn is rule-based first, because the default LLM (SmolLM2-135M) is both slow at
JSON (~8 s per extraction on one CPU thread) and wrong (it invents brands and prices). Rules:
brand names are matched against the catalog's real brand list, categories against its category
vocabulary, prices by regex, item references by ordinals ("the second one") or a shown item's
brand. An optional LLM extraction (`llm_extract`) is merged in, but only after validation: a brand
must be in the catalog and in the message, a category must be in the vocabulary and its words in
the message, a price must be a number the user typed, features must be the user's own words.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from retrieval.catalog import Catalog, Item
from retrieval.search import SearchFilters

log = logging.getLogger(__name__)

MAX_NEED_PARTS = 4  # how many of the user's product phrases make up the retrieval query
MAX_RECENT = 6  # conversation messages kept in the state for prompts
LLM_EXTRACT_MAX_TOKENS = 160  # the schema's worst case fits; a model that rambles is cut and ignored

# --- text helpers ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def stem(word: str) -> str:
    """Crude plural stripping plus a few synonyms, applied to catalog and user words alike
    ("staplers" ~ "stapler", "telephones" ~ "phone")."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return _SYNONYMS.get(word, word)


def stems(text: str) -> list[str]:
    return [stem(t) for t in tokens(text)]


def _find_seq(haystack: Sequence[str], needle: Sequence[str]) -> list[int]:
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(needle)] if n else []


def money(value: float) -> str:
    return f"${value:,.2f}".replace(".00", "")


# --- catalog vocabularies ---------------------------------------------------------------------------

# Placeholder brands that name nobody.
_NON_BRANDS = {"", "unknown", "generic", "n a", "na", "none", "other", "unbranded", "no brand"}
# Brand names that are everyday words; matched only when written as a name ("Universal folders").
_COMMON_WORD_BRANDS = {
    "universal", "cross", "premier", "royal", "platinum", "national", "sharp", "array", "clarity", "compatible",
    "various", "spectrum", "trimmer", "oxford", "smart", "simple", "basic", "classic", "elite", "ideal", "genuine",
    "original", "deluxe", "advantage", "staples", "office", "school",
}
# Category-name parts too vague to mean a product type on their own.
_VAGUE_CATEGORY_WORDS = {
    "accessory", "supply", "product", "equipment", "system", "material", "other", "item", "and",
    "office", "school", "general", "misc", "miscellaneous", "organizer", "holder", "dispenser", "s",
}
# Category words that also appear in phrases that are not about the product type.
_GENERIC_CATEGORY_SHARE = 0.25  # a category holding more than this share of the catalog is no filter
_MIN_CATEGORY_ITEMS = 3  # ... and one with fewer items is too narrow to be what a shopper means
_SYNONYMS = {"telephone": "phone", "cellphone": "phone", "smartphone": "phone", "sneaker": "shoe", "racket": "racquet", "notepad": "pad"}


@dataclass
class CatalogVocab:
    """What the rules may match a message against: the catalog's own brands and categories."""

    name: str
    brands: dict[tuple[str, ...], str]  # token sequence -> canonical brand
    brand_joined: dict[str, str]  # "postit" -> "Post-It" (people drop the hyphen)
    ambiguous_brands: set[str]  # canonical brands that are also ordinary words in titles ("Universal")
    categories: dict[tuple[str, ...], str]  # stemmed alias -> canonical category
    category_sizes: dict[str, int]
    parents: dict[str, str]  # category -> its most common parent in the item paths (for widening)
    word_stems: frozenset[str]  # every word stem in the catalog's text ("is 'couch' a word here at all?")
    has_prices: bool
    n_items: int

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> CatalogVocab:
        items = list(catalog.items.values())
        brand_count = Counter(it.brand for it in items if it.brand.strip().casefold() not in _NON_BRANDS)
        brands: dict[tuple[str, ...], str] = {}
        joined: dict[str, str] = {}
        for brand, _ in brand_count.most_common():  # most common first: it wins a key collision
            toks = tuple(tokens(brand))
            if not toks:
                continue
            brands.setdefault(toks, brand)
            flat = "".join(toks)
            if len(toks) > 1 and len(flat) >= 4:
                joined.setdefault(flat, brand)
        # A brand is "ambiguous" when it is also an ordinary word: written in lower case inside the
        # catalog's descriptions ("a universal adapter", "cross-cut"). Names (Canon, Epson) are not.
        # (A word mostly written in lower case there is a word; one mostly capitalised is a name.)
        lower_words: Counter[str] = Counter()
        cap_words: Counter[str] = Counter()
        for it in items:
            for w in set(re.findall(r"(?<![A-Za-z'])[A-Za-z]+(?![A-Za-z])", it.description)):
                (lower_words if w.islower() else cap_words)[w.casefold()] += 1
        ambiguous = {
            brand
            for toks, brand in brands.items()
            if len(toks) == 1
            and toks[0].isalpha()
            and ((lower_words[toks[0]] >= 3 and lower_words[toks[0]] > cap_words[toks[0]]) or toks[0] in _COMMON_WORD_BRANDS)
        }
        sizes = Counter(c for it in items for c in set(it.categories))
        # alias (a category's name, or a part of it: "Staplers" in "Staplers & Punches") -> the
        # BIGGEST category having it: "phone" means telephones in general, not a 1-item "VoIP > Phones".
        limit = _GENERIC_CATEGORY_SHARE * max(len(items), 1)
        big_catalog = len(items) > 100
        best: dict[tuple[str, ...], tuple[int, str]] = {}
        for cat, size in sizes.items():
            if big_catalog and (size > limit or size < _MIN_CATEGORY_ITEMS):
                continue  # no filter at all / too narrow to be what a shopper means
            full = tuple(stems(cat))
            aliases = {full} | {tuple(stems(part)) for part in re.split(r"\s*(?:&|,|/|\band\b)\s*", cat)}
            for alias in aliases:
                if not alias or (len(alias) == 1 and alias[0] in _VAGUE_CATEGORY_WORDS):
                    continue
                if alias not in best or size > best[alias][0]:
                    best[alias] = (size, cat)
        categories = {alias: cat for alias, (_, cat) in best.items()}
        parent_count: Counter[tuple[str, str]] = Counter()
        for it in items:
            for parent, child in zip(it.categories, it.categories[1:]):
                parent_count[(child, parent)] += 1
        parents: dict[str, str] = {}
        for (child, parent), _ in parent_count.most_common():
            if sizes[parent] <= limit or len(items) <= 100:
                parents.setdefault(child, parent)
        return cls(
            name=catalog.name,
            brands=brands,
            brand_joined=joined,
            ambiguous_brands=ambiguous,
            categories=categories,
            category_sizes=dict(sizes),
            parents=parents,
            word_stems=frozenset(w for it in items for w in stems(it.title + " " + " ".join(it.categories) + " " + it.description[:3000])),
            has_prices=any(it.price is not None for it in items),
            n_items=len(items),
        )

    def brand_family(self, brand: str) -> list[str]:
        """The catalog brands that contain `brand` as words: "Swingline" -> Swingline, Swingline GBC."""
        key = tuple(tokens(brand))
        if not key:
            return []
        family = [b for toks, b in self.brands.items() if _find_seq(toks, key)]
        return family or [brand]

    def canonical_brand(self, text: str) -> str | None:
        toks = tuple(tokens(text))
        return self.brands.get(toks) or self.brand_joined.get("".join(toks))

    def canonical_category(self, text: str) -> str | None:
        return self.categories.get(tuple(stems(text)))


# --- the state -----------------------------------------------------------------------------------------


class DialogueState(BaseModel):
    """Everything a session remembers between turns (JSON-serialisable)."""

    catalog: str
    need: list[str] = Field(default_factory=list)  # the shopper's own product words, per turn
    head: str | None = None  # the product noun ("shoes" in "running shoes"): shown items must mention it
    categories: list[str] = Field(default_factory=list)
    brands: list[str] = Field(default_factory=list)
    avoid_brands: list[str] = Field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    features: list[str] = Field(default_factory=list)
    use_case: str | None = None
    similar_to: list[str] = Field(default_factory=list)
    shown: list[str] = Field(default_factory=list)
    last_shown: list[str] = Field(default_factory=list)
    liked: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    focus: str | None = None  # the item the conversation is about ("why that one?")
    recent: list[dict[str, str]] = Field(default_factory=list)  # last few messages, for prompts
    turns: int = 0

    def filters(self, *, with_categories: bool = True) -> SearchFilters | None:
        lo, hi = self.price_min, self.price_max
        if lo is not None and hi is not None and lo > hi:
            lo = None
        f = SearchFilters(
            brands=tuple(self.brands),
            exclude_brands=tuple(self.avoid_brands),
            categories=tuple(self.categories) if with_categories else (),
            price_min=lo,
            price_max=hi,
        )
        return None if f.is_empty() else f

    def query(self) -> str | None:
        """The retrieval query: the shopper's product phrases, plus any feature they do not contain.

        The use case is not appended: it comes from the same words ("for my printer")."""
        parts = list(self.need)
        have = set(stems(" ".join(parts)))
        for feat in self.features:
            if not set(stems(feat)) <= have:
                parts.append(feat)
        text = " ".join(p for p in parts if p).strip()
        return text or None

    def has_constraints(self) -> bool:
        return bool(self.need or self.categories or self.brands or self.similar_to or self.features)

    def describe(self) -> str:
        """One human line of the active constraints, e.g. 'stapler · under $20 · not Swingline'."""
        bits: list[str] = []
        if self.need:
            bits.append("“" + " ".join(self.need[-2:]) + "”")
        if self.categories:
            bits.append("in " + " or ".join(self.categories))
        if self.brands:
            bits.append("by " + " or ".join(self.brands))
        if self.avoid_brands:
            bits.append("not " + ", ".join(self.avoid_brands))
        if self.price_min is not None and self.price_max is not None:
            bits.append(f"{money(self.price_min)}–{money(self.price_max)}")
        elif self.price_max is not None:
            bits.append(f"up to {money(self.price_max)}")
        elif self.price_min is not None:
            bits.append(f"from {money(self.price_min)}")
        if self.similar_to:
            bits.append("similar to an item you picked")
        return " · ".join(bits)

    def remember(self, role: str, content: str) -> None:
        self.recent.append({"role": role, "content": content[:300]})
        del self.recent[:-MAX_RECENT]

    def reset(self) -> None:
        """Forget constraints and history of this conversation (the session id stays)."""
        fresh = DialogueState(catalog=self.catalog, turns=self.turns)
        for name in DialogueState.model_fields:
            setattr(self, name, getattr(fresh, name))


# --- what a turn says --------------------------------------------------------------------------------

Action = Literal["recommend", "explain", "answer", "feedback", "small_talk", "reset", "clarify"]


@dataclass
class Understanding:
    """The rules' (and optionally the LLM's) reading of one message."""

    action: Action = "recommend"
    flags: set[str] = field(default_factory=set)  # cheaper, pricier, other_brand, more, again, similar, reject_all, topic_switch, reset
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
    question: str = ""  # for action "answer": price | brand | category | details | has:<words>
    small_talk: str = ""  # greeting | thanks | bye | identity | help
    notes: list[str] = field(default_factory=list)  # things to tell the user (e.g. no prices here)
    raw_text: str = ""
    llm_used: bool = False
    llm_dropped: list[str] = field(default_factory=list)  # LLM values that failed validation

    def has_product_signal(self) -> bool:
        return bool(self.need or self.categories or self.brands or self.avoid_brands or self.features or self.price_min is not None or self.price_max is not None)


_ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "top": 1,
}
_ORDINAL_RE = re.compile(
    r"\b(?:the\s+)?(?P<word>first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|sixth|6th|seventh|7th|eighth|8th|ninth|9th|tenth|10th|last)\b"
    r"(?:\s+(?:one|item|option|product|pick|result)s?)?"
    r"|(?:#|\bno\.?\s*|\bnumber\s+|\bitem\s+|\boption\s+|\bpick\s+)(?P<num>\d{1,2})\b"
    r"|\b(?P<both>both)\b",
    re.I,
)
_PRONOUN_RE = re.compile(r"\b(?:that|this|the)\s+one\b|\b(?:it|that|this)\b(?!\s+(?:brand|kind|type|price))", re.I)

_NUM = r"(\d{1,6}(?:[.,]\d{1,2})?)"
_CUR = r"(?:\s*(?:dollars?|bucks|usd|\$))"
_UNIT_AFTER = re.compile(
    r"^\s*(?:sheets?|pages?|pcs|pieces?|pack|packs|count|ct|mm|cm|in|inch|inches|ft|feet|oz|lbs?|pounds?|gb|tb|mb|watts?|w|v|volts?|"
    r"hours?|hrs?|minutes?|mins?|days?|years?|people|users?|ppm|dpi|colors?|colours?|x|%|percent|degrees?|ml|l|g|kg|items?|sheet)\b",
    re.I,
)
_PRICE_RANGE = [
    re.compile(rf"\bbetween\s+\$?\s*{_NUM}{_CUR}?\s*(?:and|-|to)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\bfrom\s+\$\s*{_NUM}\s*(?:to|-)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\$\s*{_NUM}\s*(?:-|–|to)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\b{_NUM}\s*(?:-|–|to)\s*{_NUM}{_CUR}", re.I),
]
_PRICE_MAX = re.compile(
    rf"(?:\bunder|\bbelow|\bless\s+than|\bcheaper\s+than|\b(?:no|not)\s+more\s+than|\bat\s+most|\bmax(?:imum)?|\bup\s+to|\bwithin|"
    rf"\bbudget(?:\s+is|\s+of)?|\blower\s+than|\bbeneath|\bdon'?t\s+want\s+to\s+spend\s+more\s+than|<=?)\s*(?:of\s+|about\s+)?(\$)?\s*{_NUM}(?P<cur>{_CUR})?",
    re.I,
)
_PRICE_MAX_AFTER = re.compile(rf"(\$)?\s*{_NUM}(?P<cur>{_CUR})?\s+(?:or\s+(?:less|under|below|cheaper)|max\b|tops\b|at\s+most)", re.I)
_PRICE_MIN = re.compile(
    rf"(?:\bover|\babove|\bmore\s+than|\bat\s+least|\bmin(?:imum)?|\bstarting\s+at|\bhigher\s+than|>=?)\s*(\$)?\s*{_NUM}(?P<cur>{_CUR})?",
    re.I,
)
_PRICE_AROUND = re.compile(rf"(?:\baround|\babout|\broughly|\bapprox(?:imately)?|\bclose\s+to)\s*(\$)\s*{_NUM}|(?:\baround|\babout|\broughly)\s+{_NUM}{_CUR}", re.I)
_PRICE_WORDS = re.compile(r"\b(?:price|cost|costs|budget|spend|pay|\$)", re.I)

_RESET_RE = re.compile(r"\b(?:start\s+(?:over|again|afresh|from\s+scratch)|reset|new\s+(?:search|conversation|chat)|clear\s+(?:everything|all|(?:the\s+)?filters)|forget\s+(?:it|that|everything|all\s+that))\b", re.I)
_SMALL_TALK = [
    ("greeting", re.compile(r"^\s*(?:hi+|hello+|hey+|hiya|howdy|good\s+(?:morning|afternoon|evening)|greetings|yo)\b[\s!.,]*(?:there|aisle)?[\s!.,]*$", re.I)),
    ("thanks", re.compile(r"^\s*(?:thanks?(?:\s+you)?|thank\s+you(?:\s+so\s+much)?|thx|ty|cheers|great,?\s+thanks?|perfect,?\s+thanks?|ok(?:ay)?,?\s+thanks?)\b[\s!.,]*(?:a\s+lot|so\s+much)?[\s!.,]*$", re.I)),
    ("bye", re.compile(r"^\s*(?:bye|goodbye|see\s+you|that'?s\s+all|i'?m\s+done|no\s+thanks?)\b[\s!.,]*$", re.I)),
    ("identity", re.compile(r"\b(?:who|what)\s+are\s+you\b|\bare\s+you\s+(?:a\s+)?(?:bot|human|robot|ai)\b", re.I)),
    ("help", re.compile(r"^\s*(?:help|what\s+can\s+you\s+do|how\s+does\s+this\s+work|how\s+do\s+(?:i|you)\s+use\s+(?:this|you))\b[\s?!.]*$", re.I)),
    ("ack", re.compile(r"^\s*(?:ok(?:ay)?|cool|nice|great|got\s+it|i\s+see|alright|sure|hmm+)[\s!.]*$", re.I)),
]
_WHY_RE = re.compile(r"\bwhy\b|\bexplain\b|\bwhat\s+makes\b|\bhow\s+(?:come|is\s+(?:it|that|this))\s+(?:a\s+)?(?:good|right|a\s+match)", re.I)
_MORE_LIKE_RE = re.compile(r"\b(?:more|others?|something|anything|items?|ones?|stuff|products?)\s+(?:just\s+|a\s+bit\s+|a\s+little\s+)?like\b|\bsimilar\b|\bsame\s+(?:kind|type|style|sort)\b|\balternatives?\s+to\b|\blike\s+(?:that|this)\s+one\b", re.I)
_LIKE_RE = re.compile(r"\b(?:i\s+(?:really\s+)?(?:like|love|prefer)|looks?\s+(?:good|great|nice|perfect)|(?:is|sounds|seems)\s+(?:good|great|perfect|nice)|i'?ll\s+(?:take|go\s+with|buy)|that'?s\s+(?:the\s+one|perfect)|favou?rite|thumbs\s+up)\b", re.I)
_REJECT_RE = re.compile(
    r"\b(?:don'?t|do\s+not|doesn'?t)\s+(?:like|want|need|love)|\bnot\s+(?:a\s+fan\s+of|interested\s+in|the)\b|\b(?:hate|dislike|remove|drop|skip|exclude|hide)\b|\bno\s+to\b|\bthumbs\s+down\b|\bnope\b|\bnot\s+(?:that|this)\s+one\b",
    re.I,
)
_REJECT_ALL_RE = re.compile(r"\b(?:none\s+of\s+(?:these|those|them|the\s+above)|(?:don'?t|do\s+not)\s+like\s+(?:any|all)\s+of\s+(?:these|those|them)|not\s+(?:these|those)|neither)\b", re.I)
_QUESTION_RE = {
    "price": re.compile(r"\b(?:price|cost|costs|how\s+much|expensive|cheap)\b", re.I),
    "brand": re.compile(r"\b(?:what|which|who)\b.{0,20}\b(?:brand|makes?|made|manufacturer|maker)\b|\bbrand\s+is\b|\bwho\s+makes\b", re.I),
    "category": re.compile(r"\b(?:what|which)\s+(?:kind|type|category|sort)\b|\bcategory\b", re.I),
    "details": re.compile(r"\b(?:tell\s+me\s+(?:more\s+)?about|more\s+(?:info|information|details)|details?|describe|description|specs?|what\s+is|what'?s)\b", re.I),
    "has": re.compile(r"\b(?:does|do|is|can|will|has)\s+(?:it|that|this|the\s+\w+(?:\s+one)?)\s+(?:have|has|come\s+with|include|support|work\s+with|fit|hold|handle|use|take|made\s+of|made\s+from|be|a|an)?\s*(?P<what>[^?.!]{2,60})", re.I),
}
_CHEAPER_RE = re.compile(r"\b(?:cheaper|less\s+expensive|lower[- ]priced?|lower\s+price|too\s+(?:expensive|pricey|much|costly)|more\s+affordable|cost(?:s|ing)?\s+less|something\s+cheap|inexpensive\s+ones?)\b", re.I)
_PRICIER_RE = re.compile(r"\b(?:more\s+expensive|pricier|higher[- ]end|higher\s+price[d]?|more\s+premium|premium\s+ones?|fancier|splurge)\b", re.I)
_OTHER_BRAND_RE = re.compile(
    r"\b(?:not|no|avoid|different|another|other|else|without|except|don'?t\s+(?:like|want)|hate|dislike)\b[^.?!]{0,25}\bbrands?\b"
    r"|\bbrands?\s+(?:other\s+than|besides|except)\b|\b(?:not|no\s+more)\s+(?:from|by)\s+(?:them|that\s+(?:company|maker|manufacturer))\b",
    re.I,
)
_PLURAL_BRAND_RE = re.compile(r"\b(?:those|these|brands)\b", re.I)
_MORE_RE = re.compile(r"\b(?:show\s+(?:me\s+)?more|more\s+(?:options|items|results|suggestions|choices|please|of\s+(?:these|those|them))|anything\s+else|what\s+else|other\s+(?:options|ones|items|choices|suggestions)|different\s+ones|next\s+(?:ones|page)|something\s+else|any\s+others)\b|^\s*more[\s!.?]*$", re.I)
_AGAIN_RE = re.compile(r"\b(?:show|see|list)\s+(?:me\s+)?(?:them|those|these|it|the\s+\w+(?:\s+\w+)?)\s+again\b|\bagain\s+please\b|\bgo\s+back\s+to\s+(?:those|the\s+previous)\b", re.I)
_SWITCH_RE = re.compile(r"\b(?:now|instead|also\s+(?:need|want|looking)|what\s+about|how\s+about|actually|rather|switch\s+to|let'?s\s+look\s+(?:at|for))\b", re.I)
_NEGATORS = {"not", "no", "without", "except", "avoid", "avoiding", "hate", "dislike", "never", "nothing", "exclude", "excluding", "besides", "nor", "dont", "doesnt", "isnt", "didnt"}
_NEGATOR_PHRASES = (("other", "than"), ("anything", "but"), ("instead", "of"), ("rather", "than"), ("no", "more"), ("do", "not"), ("fed", "up"))
_CLAUSE_BREAK = {"but", "however", "though", "although", "prefer", "preferably", "rather", "instead", "want", "like", "love", "need"}
# Where the product part of a message ends: "ink | for my printer", "a printer | that holds 250 sheets".
_HEAD_SPLIT = re.compile(r"\b(?:for|compatible|that|which|with|to\s+use|fits?|to\s+go\s+with|works?)\b", re.I)
_NOUN_SPLIT = re.compile(r"\b(?:for|compatible|that|which|with|to\s+use|fits?|to\s+go\s+with|works?|from|by|under|below|between|around|about|not|without|except)\b", re.I)
_USE_CASE_RE = re.compile(r"\b(?:for|to\s+use\s+(?:for|in|at|with)|used\s+for|to\s+(?:use|take)\s+to)\s+(?P<use>(?:my|our|a|an|the|school|work|home|office|kids?|children|students?|travel|college|business|gaming|everyday|daily)\b[^,.;!?]{0,40})", re.I)
_FILLER = set(
    """i im i'm me my we our us you your a an the some any this that these those it its please pls thanks thank
    need needs want wants wanted looking look find show give get got recommend recommendation recommendations suggest suggestion
    can could would should will shall do does did is are was were be been am have has had help like love prefer
    something anything stuff thing things item items product products one ones option options good nice great best decent new
    for with without and or but to of in on at by from about as just really very also maybe perhaps kind sort type
    buy buying purchase shopping shop hi hello hey ok okay so then now instead actually rather what which how any more less
    other another else different there here them they again cheaper cheap price priced cost costs dollars dollar bucks usd
    under below above over between around within budget max maximum minimum least most than up brand brands not no dont don t s
    doesnt didnt isnt wont cant im ive id
    let lets let's see go well yes yeah tell about""".split()
)
_FEATURE_WORDS: frozenset[str] | None = None


def _feature_lexicon() -> frozenset[str]:
    """Colour/material/compatibility words (shared with the grounding checker) + a few shopping ones."""
    global _FEATURE_WORDS
    if _FEATURE_WORDS is None:
        try:
            from agent.grounding import COLOURS, COMPATIBILITY, MATERIALS

            base = set(COLOURS) | set(MATERIALS) | set(COMPATIBILITY)
        except ImportError:  # grounding is optional for understanding
            base = set()
        base |= {"quiet", "silent", "heavy-duty", "compact", "small", "large", "lightweight", "durable", "fine", "medium", "bold", "erasable", "washable", "retractable", "refill", "refills", "duplex", "color", "colour", "fast", "cheap", "wide"}
        _FEATURE_WORDS = frozenset(base)
    return _FEATURE_WORDS


@dataclass
class _Tok:
    text: str  # casefolded
    start: int
    end: int


def _toks(message: str) -> list[_Tok]:
    return [_Tok(m.group(0).casefold(), m.start(), m.end()) for m in re.finditer(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?", message)]


class Understander:
    """Rules (always) + an optional validated LLM extraction, for one catalog's vocabulary."""

    def __init__(self, vocab: CatalogVocab, *, engine: Any = None, llm_extract: bool = False, prompt: str = "extract_state.v1") -> None:
        self.vocab = vocab
        self.engine = engine
        self.llm_extract = llm_extract and engine is not None
        self.prompt = prompt

    # --- public ---------------------------------------------------------------------------------------

    def understand(self, message: str, state: DialogueState, items: dict[str, Item]) -> Understanding:
        u = self.rules(message, state, items)
        if self.llm_extract and u.action == "recommend":
            self._merge_llm(message, state, u)
        return u

    # --- rules ----------------------------------------------------------------------------------------

    def rules(self, message: str, state: DialogueState, items: dict[str, Item]) -> Understanding:
        text = message.strip()
        u = Understanding(raw_text=text)
        consumed: list[tuple[int, int]] = []  # character spans that are not product words

        if _RESET_RE.search(text):
            u.flags.add("reset")
            consumed.extend(m.span() for m in _RESET_RE.finditer(text))
        for kind, pattern in _SMALL_TALK:
            if pattern.search(text) and (kind != "identity" or not self._catalog_words(text)):
                u.action, u.small_talk = "small_talk", kind
                return u

        self._prices(text, u, consumed)
        self._brands(text, u, consumed)
        last_shown = [i for i in state.last_shown if i in items]
        self._references(text, u, consumed, last_shown, items)
        self._categories(text, u, consumed)
        self._features(text, u)

        has_ref = bool(u.refs) or (u.ref_pronoun and bool(last_shown))
        if _WHY_RE.search(text) and last_shown:
            u.action = "explain"
            if not u.refs:
                u.refs = [self._focus_index(state, last_shown)]
            return u
        if _MORE_LIKE_RE.search(text) and last_shown and (has_ref or not u.has_product_signal()):
            u.flags.add("similar")
            if not u.refs:
                u.refs = [self._focus_index(state, last_shown)]
            consumed.extend(m.span() for m in _MORE_LIKE_RE.finditer(text))
        elif _REJECT_ALL_RE.search(text) and last_shown:
            u.feedback, u.action = -1, "recommend"
            u.flags.add("reject_all")
            consumed.extend(m.span() for m in _REJECT_ALL_RE.finditer(text))
        elif has_ref and _REJECT_RE.search(text) and not _OTHER_BRAND_RE.search(text):
            u.feedback, u.action = -1, "recommend"  # drop it and show a replacement
            if not u.refs:
                u.refs = [self._focus_index(state, last_shown)]
            consumed.extend(m.span() for m in _REJECT_RE.finditer(text))
        elif has_ref and _LIKE_RE.search(text):
            u.feedback, u.action = 1, "feedback"
            if not u.refs:
                u.refs = [self._focus_index(state, last_shown)]
            return u
        elif has_ref and u.refs or (u.ref_pronoun and last_shown and "?" in text):
            question = self._question(text)
            if question:
                u.action, u.question = "answer", question
                if not u.refs:
                    u.refs = [self._focus_index(state, last_shown)]
                return u

        if _CHEAPER_RE.search(text) and u.price_max is None:
            u.flags.add("cheaper")
            consumed.extend(m.span() for m in _CHEAPER_RE.finditer(text))
        if _PRICIER_RE.search(text) and u.price_min is None:
            u.flags.add("pricier")
            consumed.extend(m.span() for m in _PRICIER_RE.finditer(text))
        if _OTHER_BRAND_RE.search(text) and not u.avoid_brands and not u.brands:
            u.flags.add("other_brand")
            if _PLURAL_BRAND_RE.search(text) and not u.refs:
                u.flags.add("all_brands")
            consumed.extend(m.span() for m in _OTHER_BRAND_RE.finditer(text))
        if _MORE_RE.search(text):
            u.flags.add("more")
            consumed.extend(m.span() for m in _MORE_RE.finditer(text))
        if _AGAIN_RE.search(text):
            u.flags.add("again")
            consumed.extend(m.span() for m in _AGAIN_RE.finditer(text))
        m = _USE_CASE_RE.search(text)
        if m:
            u.use_case = re.sub(r"\s+", " ", m.group("use")).strip(" ,.")
        u.need = self._need_words(text, consumed)
        u.head = self._head_word(text, consumed)
        if _SWITCH_RE.search(text) and (u.need or u.categories):
            u.flags.add("topic_switch")
        if not u.has_product_signal() and not u.flags - {"reset"} and u.feedback == 0:
            u.action = "reset" if "reset" in u.flags else "clarify"
        return u

    def _catalog_words(self, text: str) -> bool:
        st = stems(text)
        return any(_find_seq(st, alias) for alias in self.vocab.categories)

    def _prices(self, text: str, u: Understanding, consumed: list[tuple[int, int]]) -> None:
        def num(s: str) -> float:
            return float(s.replace(",", ""))

        def unit_follows(end: int) -> bool:
            return bool(_UNIT_AFTER.match(text[end:]))

        found = False
        for pattern in _PRICE_RANGE:
            for m in pattern.finditer(text):
                if unit_follows(m.end()):
                    continue
                a, b = sorted((num(m.group(1)), num(m.group(2))))
                u.price_min, u.price_max, found = a, b, True
                consumed.append(m.span())
            if found:
                break
        if not found:
            for m in _PRICE_AROUND.finditer(text):
                value = num(m.group(2) or m.group(3))
                u.price_min, u.price_max, found = round(value * 0.75, 2), round(value * 1.25, 2), True
                consumed.append(m.span())
        if not found:
            for pattern in (_PRICE_MAX, _PRICE_MAX_AFTER):
                for m in pattern.finditer(text):
                    explicit = bool(m.group(1) or m.group("cur"))
                    if not explicit and unit_follows(m.end()):
                        continue  # "under 40 sheets" is not a price
                    u.price_max = num(m.group(2))
                    consumed.append(m.span())
            for m in _PRICE_MIN.finditer(text):
                explicit = bool(m.group(1) or m.group("cur"))
                # "more than 40" is a price only with a currency sign or price words around it.
                if not explicit and (unit_follows(m.end()) or not _PRICE_WORDS.search(text)):
                    continue
                u.price_min = num(m.group(2))
                consumed.append(m.span())
        if (u.price_min is not None or u.price_max is not None) and not self.vocab.has_prices:
            u.notes.append(f"The {self.vocab.name} catalog has no prices, so I can't filter by budget; I'll ignore the price limit.")
            u.price_min = u.price_max = None

    def _brands(self, text: str, u: Understanding, consumed: list[tuple[int, int]]) -> None:
        toks = _toks(text)
        words = [t.text for t in toks]
        max_len = max((len(k) for k in self.vocab.brands), default=1)
        i = 0
        while i < len(toks):
            match: tuple[int, str] | None = None
            for n in range(min(max_len, len(toks) - i), 0, -1):
                key = tuple(words[i : i + n])
                brand = self.vocab.brands.get(key) or (self.vocab.brand_joined.get("".join(key)) if n <= 3 else None)
                if brand:
                    match = (n, brand)
                    break
            if match is None:
                i += 1
                continue
            n, brand = match
            span = (toks[i].start, toks[i + n - 1].end)
            raw = text[span[0] : span[1]]
            if brand in self.vocab.ambiguous_brands:
                near_brand_word = any(w in ("brand", "brands", "by", "from", "make") for w in words[max(0, i - 2) : i + n + 2])
                if not (near_brand_word or (raw[:1].isupper() and i > 0)):
                    i += n
                    continue  # "a universal adapter" is not the brand Universal
            consumed.append(span)
            negated = self._negated(words, i)
            target = u.avoid_brands if negated else u.brands
            if brand not in target:
                target.append(brand)
            i += n
        u.brands = [b for b in u.brands if b not in u.avoid_brands]

    @staticmethod
    def _negated(words: list[str], i: int) -> bool:
        """Is the word at i in the scope of a negation ("not HP", "anything but Canon, or Epson")?

        Looks back up to 6 words; a clause word ("but", "prefer", "want") ends the scope unless it
        is itself part of a negation ("anything but", "don't want")."""
        window = words[max(0, i - 6) : i]
        for j in range(len(window) - 1, -1, -1):
            w = window[j]
            prev = window[j - 1].replace("'", "") if j > 0 else ""
            if (prev, w) in _NEGATOR_PHRASES or w.replace("'", "") in _NEGATORS or w.endswith("n't"):
                return True
            if w in ("want", "need", "like", "love") and prev in ("don", "dont", "not", "t", "doesnt", "didnt", "never"):
                return True
            if w in _CLAUSE_BREAK:
                return False
        return False

    def _references(self, text: str, u: Understanding, consumed: list[tuple[int, int]], last_shown: list[str], items: dict[str, Item]) -> None:
        for m in _ORDINAL_RE.finditer(text):
            if m.group("both"):
                if len(last_shown) >= 2:
                    u.refs.extend(i for i in (0, 1) if i not in u.refs)
                    consumed.append(m.span())
                continue
            word, num = m.group("word"), m.group("num")
            if word:
                idx = (len(last_shown) if word.casefold() == "last" else _ORDINALS[word.casefold()]) - 1
            else:
                idx = int(num) - 1
            if word and word.casefold() == "top" and not re.search(r"\btop\s+(?:one|item|pick|result)", m.group(0), re.I):
                continue
            if idx >= 0 and idx not in u.refs:
                u.refs.append(idx)
                consumed.append(m.span())
        # "the Swingline one": a brand that names exactly one shown item
        if not u.refs and last_shown and u.brands and re.search(r"\b(?:one|it|that|this)\b", text, re.I):
            hits = [i for i, item_id in enumerate(last_shown) if items[item_id].brand in u.brands]
            if len(hits) == 1:
                u.refs = hits
                u.brands = []
        if _PRONOUN_RE.search(text):
            u.ref_pronoun = True

    @staticmethod
    def _focus_index(state: DialogueState, last_shown: list[str]) -> int:
        if state.focus in last_shown:
            return last_shown.index(state.focus)  # type: ignore[arg-type]
        return 0

    def _categories(self, text: str, u: Understanding, consumed: list[tuple[int, int]]) -> None:
        """Category words in the product part of the message (before "for ...", "compatible with ...")."""
        head = _HEAD_SPLIT.split(text, maxsplit=1)[0]
        toks = _toks(head)
        st = [stem(t.text) for t in toks]
        taken = [False] * len(st)
        max_len = max((len(k) for k in self.vocab.categories), default=1)
        for n in range(min(max_len, len(st)), 0, -1):
            for i in range(len(st) - n + 1):
                if any(taken[i : i + n]):
                    continue
                cat = self.vocab.categories.get(tuple(st[i : i + n]))
                if cat and cat not in u.categories and not self._inside(consumed, toks[i].start):
                    u.categories.append(cat)
                    for j in range(i, i + n):
                        taken[j] = True

    @staticmethod
    def _inside(spans: list[tuple[int, int]], pos: int) -> bool:
        return any(a <= pos < b for a, b in spans)

    def _features(self, text: str, u: Understanding) -> None:
        lex = _feature_lexicon()
        low = text.casefold()
        for phrase in ("heavy duty", "heavy-duty", "long battery", "long lasting", "fine point", "fine tip", "extra fine", "water resistant", "acid free", "high yield", "noise cancel"):
            if phrase in low and phrase not in u.features:
                u.features.append(phrase)
        for t in _toks(text):
            if t.text in lex and t.text not in u.features and not any(t.text in f for f in u.features):
                u.features.append(t.text)

    @staticmethod
    def _question(text: str) -> str:
        m = _QUESTION_RE["has"].search(text)
        if m and not _QUESTION_RE["price"].search(text):
            what = re.sub(r"^(?:a|an|the|any)\s+", "", m.group("what").strip(), flags=re.I)
            what = re.sub(r"\b(?:the\s+)?(?:first|second|third|fourth|fifth|last|one)\b", "", what, flags=re.I).strip(" ,")
            if what:
                return "has:" + what[:60]
        for kind in ("price", "brand", "category", "details"):
            if _QUESTION_RE[kind].search(text):
                return kind
        if "?" in text:
            return "details"
        return ""

    def _need_words(self, text: str, consumed: list[tuple[int, int]]) -> str:
        """The user's product phrase: the message minus prices, brands, references and follow-up
        phrases, with filler trimmed from both ends only, so "ink for my printer" keeps its
        preposition (the embedding model reads it as ink, not as a printer)."""
        chars = list(text)
        for a, b in consumed:
            for k in range(a, min(b, len(chars))):
                chars[k] = " "
        words = re.findall(r"[A-Za-z0-9]+(?:[-'.][A-Za-z0-9]+)*", "".join(chars))

        def filler(w: str) -> bool:
            return w.casefold().replace("'", "") in _FILLER

        while words and filler(words[0]):
            words.pop(0)
        while words and filler(words[-1]):
            words.pop()
        if not any(not filler(w) and not w.isdigit() for w in words):
            return ""
        return " ".join(words)[:200]

    def _head_word(self, text: str, consumed: list[tuple[int, int]]) -> str | None:
        """The product noun: the last content word of the part before "for", "with", "that", ...

        Colour/feature words and comparatives are skipped ("pens in black" -> "pens")."""
        head_part = _NOUN_SPLIT.split(text, maxsplit=1)[0]
        words = self._need_words(head_part, [(a, b) for a, b in consumed if a < len(head_part)]).split()
        lex = _feature_lexicon()
        for word in reversed(words):
            low = word.casefold()
            if low in lex or low in _COMPARATIVES or not re.search(r"[a-z]", low) or len(low) < 3:
                continue
            return word
        return None

    # --- LLM extraction (optional), validated ---------------------------------------------------------------

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

    def _merge_llm(self, message: str, state: DialogueState, u: Understanding) -> None:
        from agent.engines.base import EngineError
        from agent.prompts import PromptError, render_messages

        try:
            messages = render_messages(
                self.prompt,
                message=message,
                catalog=self.vocab.name,
                has_prices=self.vocab.has_prices,
                current=state.describe(),
            )
            raw = self.engine.chat_json(messages, self.SCHEMA, max_tokens=LLM_EXTRACT_MAX_TOKENS)
        except (EngineError, PromptError, ValueError) as exc:
            log.info("LLM extraction skipped: %s", exc)
            u.llm_dropped.append(f"extraction failed: {exc}")
            return
        u.llm_used = True
        merge_llm_extraction(raw, message, self.vocab, u)


def merge_llm_extraction(raw: Any, message: str, vocab: CatalogVocab, u: Understanding) -> None:
    """Add the LLM's constraints to the rules' reading, keeping only what the message supports.

    The rules win on conflicts (they matched the message literally); a value the LLM could not have
    read in the message (a brand not typed, a price not written) is dropped and listed in `llm_dropped`.
    """
    if not isinstance(raw, dict):
        u.llm_dropped.append(f"not an object: {raw!r}"[:120])
        return
    msg_stems = set(stems(message))
    msg_numbers = {float(n.replace(",", "")) for n in re.findall(r"\d+(?:[.,]\d+)?", message)}

    def in_message(value: str) -> bool:
        words = [w for w in stems(value) if w not in _FILLER]
        return bool(words) and all(w in msg_stems for w in words)

    for key, target, other in (("brands", u.brands, u.avoid_brands), ("avoid_brands", u.avoid_brands, u.brands)):
        for value in raw.get(key) or []:
            brand = vocab.canonical_brand(str(value))
            if brand is None or not in_message(str(value)):
                u.llm_dropped.append(f"{key}: {value!r}")
            elif brand not in target and brand not in other:
                target.append(brand)
    cat_value = raw.get("category")
    if cat_value:
        cat = vocab.canonical_category(str(cat_value))
        if cat is None or not in_message(str(cat_value)):
            u.llm_dropped.append(f"category: {cat_value!r}")
        elif cat not in u.categories and not u.categories:
            u.categories.append(cat)
    for key in ("price_min", "price_max"):
        value = raw.get(key)
        if value is None:
            continue
        if not vocab.has_prices or float(value) not in msg_numbers:
            u.llm_dropped.append(f"{key}: {value!r}")
        elif getattr(u, key) is None:
            setattr(u, key, float(value))
    if u.price_min is not None and u.price_max is not None and u.price_min > u.price_max:
        u.llm_dropped.append(f"price_min: {u.price_min!r} (above price_max)")
        u.price_min = None
    for value in raw.get("features") or []:
        value = str(value).strip()
        if not in_message(value):
            u.llm_dropped.append(f"features: {value!r}")
        elif value.casefold() not in (f.casefold() for f in u.features):
            u.features.append(value)
    use = raw.get("use_case")
    if use:
        if in_message(str(use)):
            u.use_case = u.use_case or str(use).strip()
        else:
            u.llm_dropped.append(f"use_case: {use!r}")


# --- applying a reading to the state ------------------------------------------------------------------


@dataclass
class Plan:
    """What the turn pipeline should do after the state was updated."""

    action: Action
    item_ids: list[str] = field(default_factory=list)  # the items the turn is about (explain/answer/feedback)
    include_shown: bool = False
    notes: list[str] = field(default_factory=list)
    fallback_price_max: float | None = None  # "cheaper": below the average shown, if below the cheapest finds nothing
    cheaper_than: float | None = None  # "cheaper": the cheapest price shown
    prev_price_max: float | None = None  # the budget before "cheaper" (restored when nothing is cheaper)
    more: bool = False  # "show me more": never re-show earlier items
    no_repeats: bool = False  # cheaper / pricier / other brand / more: earlier items would not answer it


def apply(u: Understanding, state: DialogueState, items: dict[str, Item]) -> Plan:
    """Update `state` in place with the reading `u`; return what to do next."""
    notes = list(u.notes)
    if "reset" in u.flags:
        state.reset()
        if u.action in ("reset", "clarify") or not u.has_product_signal():
            return Plan("reset", notes=notes)

    last_shown = [i for i in state.last_shown if i in items]
    refs_ok = [r for r in u.refs if 0 <= r < len(last_shown)]
    if u.refs and not refs_ok:
        n = len(last_shown)
        notes.append(f"I showed {n} item{'s' if n != 1 else ''} last time, so I'm not sure which one you mean; say 'the first', 'the second', ...")
        return Plan("clarify", notes=notes)
    ref_ids = [last_shown[r] for r in refs_ok]

    if u.action in ("small_talk", "clarify"):
        return Plan(u.action, notes=notes)
    if u.action in ("explain", "answer"):
        state.focus = ref_ids[0] if ref_ids else state.focus
        return Plan(u.action, item_ids=ref_ids, notes=notes)
    if u.action == "feedback":
        for item_id in ref_ids:
            if item_id not in state.liked:
                state.liked.append(item_id)
            if item_id in state.rejected:
                state.rejected.remove(item_id)
        state.focus = ref_ids[0] if ref_ids else state.focus
        return Plan("feedback", item_ids=ref_ids, notes=notes)

    # --- recommend: update constraints ---
    if u.feedback < 0:
        targets = last_shown if "reject_all" in u.flags else ref_ids
        for item_id in targets:
            if item_id not in state.rejected:
                state.rejected.append(item_id)
            if item_id in state.liked:
                state.liked.remove(item_id)
        if state.focus in targets:
            state.focus = None
        ref_ids = []

    new_topic = bool(u.categories) and (not state.categories or not set(u.categories) & set(state.categories))
    new_topic = new_topic or ("topic_switch" in u.flags and bool(u.need) and bool(state.need))
    if not new_topic and u.need and state.need and not u.categories and not is_refinement(u, state):
        new_topic = True  # "a mystery novel" after "running shoes": a new product, not a detail
    if new_topic:
        state.need, state.features, state.brands, state.similar_to, state.use_case, state.head = [], [], [], [], None, None
        state.price_min = state.price_max = None
        state.categories = list(u.categories)
        state.focus = None
    elif u.categories:
        state.categories = list(dict.fromkeys(state.categories + u.categories)) if not set(u.categories) <= set(state.categories) else state.categories
    if u.need:
        state.need.append(u.need)
        del state.need[:-MAX_NEED_PARTS]
    if u.head and (state.head is None or new_topic):
        state.head = u.head
    if u.brands:
        state.brands = list(u.brands)
    for brand in u.avoid_brands:
        if brand not in state.avoid_brands:
            state.avoid_brands.append(brand)
        if brand in state.brands:
            state.brands.remove(brand)
    for brand in u.brands:
        if brand in state.avoid_brands:
            state.avoid_brands.remove(brand)  # asking for it again lifts the ban
    if u.price_max is not None:
        state.price_max = u.price_max
        if state.price_min is not None and state.price_min > u.price_max and u.price_min is None:
            state.price_min = None
    if u.price_min is not None:
        state.price_min = u.price_min
        if state.price_max is not None and state.price_max < u.price_min and u.price_max is None:
            state.price_max = None
    for feat in u.features:
        if feat not in state.features:
            state.features.append(feat)
    if u.use_case:
        state.use_case = u.use_case

    shown_items = [items[i] for i in last_shown if i not in state.rejected] or [items[i] for i in last_shown]
    fallback_price_max: float | None = None
    cheaper_than: float | None = None
    prev_price_max = state.price_max
    if "cheaper" in u.flags:
        prices = [it.price for it in shown_items if it.price is not None]
        if not any(it.price is not None for it in items.values()):
            notes.append("This catalog has no prices, so I can't look for cheaper items.")
        elif not prices:
            notes.append("I haven't shown anything with a price yet; tell me a budget, e.g. 'under $20'.")
        else:
            cheaper_than = min(prices)
            state.price_max = round(cheaper_than - 0.01, 2)
            fallback_price_max = round(sum(prices) / len(prices) - 0.01, 2)
            if state.price_min is not None and state.price_min > state.price_max:
                state.price_min = None
    if "pricier" in u.flags:
        prices = [it.price for it in shown_items if it.price is not None]
        if prices:
            state.price_min = round(max(prices) + 0.01, 2)
            if state.price_max is not None and state.price_max < state.price_min:
                state.price_max = None
        elif not any(it.price is not None for it in items.values()):
            notes.append("This catalog has no prices, so I can't look for pricier items.")
    if "other_brand" in u.flags:
        pool = [items[i] for i in ref_ids] if ref_ids else ([items[state.focus]] if state.focus in items and state.focus in last_shown else shown_items)
        if "all_brands" in u.flags or ref_ids:
            avoid = [it.brand for it in pool if it.brand]
        else:
            counts = Counter(it.brand for it in pool if it.brand)
            top = counts.most_common(1)
            avoid = [top[0][0]] if top and (top[0][1] > 1 or len(pool) == 1) else [it.brand for it in pool[:1] if it.brand]
        if not avoid and not (u.flags - {"other_brand", "all_brands"}) and not u.has_product_signal():
            notes.append("The catalog lists no brand for what I showed, so I can't exclude it; name a brand to avoid.")
            return Plan("clarify", notes=notes)
        if not avoid:
            notes.append("The catalog lists no brand for what I showed, so I can't exclude it; name a brand to avoid.")
        for brand in avoid:
            if brand not in state.avoid_brands:
                state.avoid_brands.append(brand)
            if brand in state.brands:
                state.brands.remove(brand)
    if "similar" in u.flags and ref_ids:
        state.similar_to = ref_ids[:3]
        state.focus = ref_ids[0]
    include_shown = "again" in u.flags
    if fallback_price_max is not None and fallback_price_max <= (state.price_max or 0):
        fallback_price_max = None
    return Plan(
        "recommend", item_ids=ref_ids, include_shown=include_shown, notes=notes, fallback_price_max=fallback_price_max, more="more" in u.flags,
        cheaper_than=cheaper_than, prev_price_max=prev_price_max,
        no_repeats=bool(u.flags & {"more", "cheaper", "pricier", "other_brand"}),
    )


_REFINE_LEAD = re.compile(r"^\s*(?:with|that|which|in|made|one|ones|something|preferably|but|and|also|maybe|ideally|in\s+\w+|for|without|has|having|more|less|a\s+bit|not\s+too)\b", re.I)
_COMPARATIVES = {
    "bigger", "smaller", "larger", "lighter", "heavier", "longer", "shorter", "thinner", "thicker", "faster",
    "quieter", "softer", "stronger", "better", "nicer", "newer", "wider", "narrower", "simpler", "sturdier",
}


def is_refinement(u: Understanding, state: DialogueState) -> bool:
    """Does this message add detail to the current product rather than name a new one?"""
    words = [w for w in stems(u.need) if w not in _FILLER]
    if not words:
        return True
    if set(words) & set(stems(" ".join(state.need))):
        return True
    if u.raw_text and _REFINE_LEAD.match(u.raw_text):
        return True
    lex = _feature_lexicon()
    return all(w in lex or w in _COMPARATIVES or w in stems(" ".join(u.features)) for w in words)


def content_stems(text: str) -> list[str]:
    """Stems of the words that carry meaning (filler such as "the", "need", "please" removed)."""
    return [w for w in stems(text) if w not in _FILLER]
