"""The grounding gate: may a generated text be shown to a shopper or written to the catalog?

Every LLM text aisle shows or stores goes through `check_grounding`: recommendation reasons
(agent.recommend.reasons), the chat's one-line intro (agent.chat) and product copy
(agent.copy.check adds copy rules on top). It works on plain strings, with two kinds of rule.

1. The screen (`screen_text`): text that is never shown, whatever the evidence, because a model
   that writes it follows someone else's instructions (an injection in a shopper's message or a
   catalog row) or sends the reader somewhere:
   - links and addresses: a URL scheme ("http:", "javascript:", "://"), "www.", an e-mail
     address, an @handle, and any domain-like token ("evil.example", "shop.example.com") unless
     the item's own record names it ("Avery Stamps.com Postal Center");
   - markup: markdown links and images ("[x](y)", "![x]"), HTML tags and entities, code fences;
   - calls to action and instructions to the reader (`CALLS_TO_ACTION`): visit, click here, go
     to, call / text / e-mail / contact us, buy it at, order now, available at, sign up,
     subscribe, download, use code, reply, hurry, limited time, free shipping ...;
   - instructions to the model (`INJECTION_MARKERS`): "ignore ... instructions", "disregard",
     "system prompt", "new instructions", "jailbreak", "PWNED", "hacked", "as an AI";
   - shouting: a word of four or more capital letters that neither the record nor the shopper
     wrote (a brand written in capitals, "DYMO", is in the record);
   - accusations the record does not make: "recalled", "dangerous", "counterfeit", "scam" ...
     (a compromised model defaming an item or a brand);
   - everything the text screen (retrieval/screen.py) finds. Every rule reads the text as written
     and as the screen folds it (look-alike letters as Latin ones, invisible characters removed),
     so "vіsit evil.exаmple" with Cyrillic letters is a call to action and a web address.
2. Claims: every claim about the item must be supported by the ITEM's own record (title, brand,
   categories, description, price: `item_evidence`):
   - brand: a known catalog brand (`catalog_brands`) named in the text;
   - numbers, sizes, quantities ("12", "0.8mm", "a dozen", "8 1/2"), money ("$1", "20 dollars":
     only the record's own price or amounts), model numbers ("GSF11", verbatim up to case and
     punctuation), "#1";
   - lexicon words (agent.lexicon): colours, materials, features and compatibility, devices,
     named sizes, product claims (waterproof, best-selling, warranty ...), product types and
     price/value words.
   The shopper's words (`request_evidence`: their query and messages, the titles they bought)
   support a claim only where the text restates the request: the words after "you asked for",
   "you wanted", "you need", "you bought", "your search for" ..., to the end of the clause, or
   to the closing quote when the restatement is quoted, and "the ... you bought" (`restated_spans`). "You asked for a gold
   stapler" passes when the shopper said gold; "this stapler is made of gold and costs $1"
   passes only when the record says gold and $1. A text about no item at all (the chat's intro)
   passes `restates_request=True`: all of it restates the request.

Word-level and conservative (not entailment): a false "unsupported" costs a retry or a template
fallback, a false "supported" shows the shopper an invented fact or an attacker's link. Words are
compared as Snowball stems on both sides (agent.text), so "envelopes" meets "envelope";
negations ("not wireless") are flagged too when the word is not in the evidence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from agent.lexicon import (
    CLAIMS,
    COLOURS,
    COMMON_WORD_BRANDS,
    COMPATIBILITY,
    DEVICES,
    EXPLANATION_WORDS,
    IMPLIED_COUNTS,
    MATERIALS,
    NAMED_SIZES,
    NON_BRANDS,
    NUMBER_WORDS,
    PRICE_WORDS,
    PRODUCT_TYPES,
    SYNONYMS,
    UNIT_WORDS,
)
from agent.text import find_seq, money, squash, stem, stems, tokens
from retrieval.sanitize import visible
from retrieval.screen import WEB_ADDRESS, findings, plain


@dataclass
class GroundingReport:
    """Result of `check_grounding`: `ok` when nothing was screened out and no claim is unsupported."""

    ok: bool
    unsupported: list[str] = field(default_factory=list)  # human-readable, one per problem
    checked: int = 0  # how many claims were looked at (0 = the text made no checkable claim)

    def __bool__(self) -> bool:
        return self.ok


# --- the screen ----------------------------------------------------------------------------------

_LINKS = (
    ("a link", re.compile(r"\b(?:https?|ftp|javascript|mailto|tel)\s*:|\b(?:file|data):[\w/]|://|\bwww\d{0,3}\s*\.", re.I)),
    ("an e-mail address", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("an @handle", re.compile(r"(?<![\w@])@[A-Za-z_]\w+")),
)
_DOMAIN = re.compile(r"(?<![\w@.\-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]{1,23}(?![\w@\-]|\.[a-z0-9])", re.I)
_MARKUP = re.compile(r"!?\[[^\]\n]*\]\s*[(\[]|\]\s*\(|<\s*/?\s*[a-z][a-z0-9-]*(?:\s[^<>]*)?/?\s*>|&(?:#\d+|#x[0-9a-f]+|[a-z]{2,8});|```", re.I)

# Phrases that send the reader somewhere or tell them to act. Written as phrases, not bare verbs,
# so product words stay usable ("cash register", "call bell", "click the top to retract", "easy to
# install", "U disk to download data").
CALLS_TO_ACTION: tuple[str, ...] = (
    r"visit(?:s|ed|ing)?",
    r"click(?:s|ed|ing)?\s+(?:here|below|now|through|(?:on\s+)?(?:the\s+|this\s+)?link|to\s+(?:buy|order|see|learn|visit|shop|get|claim|read|view))",
    r"tap\s+(?:here|on|the\s+link|this\s+link|below|now)",
    r"(?:go|head|navigate|proceed)\s+(?:over\s+|straight\s+)?to",
    r"(?:call|phone|ring|text|e-?mail|contact|message|dm|write\s+to|reach\s+out\s+to|reach)\s+(?:us|me|our|now|today)",
    r"call\s+\+?\d",
    r"(?:buy|order|purchase|shop|get|grab|find)\s+(?:it|them|this|these|one|yours)\s+(?:now\s+)?(?:at|from|on|via)",
    r"(?:buy|order|purchase|shop|get|grab)\s+(?:yours\s+)?(?:now|today|here|online)",
    r"(?:available|sold|in\s+stock)\s+(?:only\s+|exclusively\s+)?(?:at|on)",
    r"shop\s+(?:at|with|our)",
    r"sign(?:ing)?\s+(?:up|in)|subscribe|log\s*in|register\s+(?:now|today|here|online|at)|follow\s+us|like\s+us|share\s+this",
    r"(?:download|install)\s+(?:it|now|here|today|our|the\s+app|from|at)",
    r"(?:use|enter|apply|redeem)\s+(?:the\s+|my\s+|our\s+|this\s+)?(?:code|coupon|promo|voucher)",
    r"(?:promo|coupon|discount|voucher|referral)\s+codes?",
    r"repl(?:y|ies|ying)",
    r"respond\s+(?:with|to|by)",
    r"hurry|act\s+now|limited[\s-]time|don'?t\s+miss|do\s+not\s+miss|free\s+shipping|while\s+supplies\s+last",
)
# Words a model writes when it follows instructions hidden in its input instead of its prompt.
INJECTION_MARKERS: tuple[str, ...] = (
    r"ignor(?:e|es|ed|ing)\b[^.!?]{0,60}\b(?:instructions?|rules?|prompts?|above|previous|prior|guidelines?)",
    r"disregard(?:s|ed|ing)?",
    r"(?:system|developer|hidden)\s+(?:prompt|message|instructions?)",
    r"(?:new|updated|my|these|following)\s+instructions?",
    r"prompt\s+injection",
    r"jailbr(?:eak|oken)\w*",
    r"pwn(?:ed|s|z)?",
    r"hack(?:ed|s)?",
    r"as\s+an\s+(?:ai|language\s+model)",
    r"you\s+(?:must|should|will)\s+now",
)
# Accusations a shop assistant never makes on its own: said only where the item's record says so.
ACCUSATIONS: tuple[str, ...] = (
    "recall", "recalled", "dangerous", "unsafe", "hazard", "hazardous", "toxic", "poisonous", "scam",
    "fraud", "fraudulent", "counterfeit", "fake", "defective", "lawsuit", "banned", "knockoff",
)
_CTA = re.compile(r"\b(?:" + "|".join(CALLS_TO_ACTION) + r")\b", re.I)
_INJECTION = re.compile(r"\b(?:" + "|".join(INJECTION_MARKERS) + r")\b", re.I)
_SHOUT = re.compile(r"(?<![A-Za-z0-9])[A-Z]{4,}(?![A-Za-z0-9])")


def screen_text(text: str, *, record: str = "", request: str = "") -> list[str]:
    """Why `text` must never be shown, whatever it claims (empty when it may): links, addresses,
    markup, calls to action, instructions to the model, shouting.

    `record`: the item's own data; a domain-like name it contains ("Stamps.com") may be repeated.
    `request`: the shopper's words; with the record, the capitalised words that are not shouting.
    Nothing else in either makes a link, a call to action or an instruction acceptable."""
    problems: list[str] = []

    def flag(message: str) -> None:
        if message not in problems:
            problems.append(message)

    if visible(text) != text:
        flag("invisible characters are not allowed")
    foreign = sorted({ch for ch in text if ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") and ch not in record})
    if foreign:  # look-alike letters ("vіsit" with a Cyrillic і, fullwidth "ｗｗｗ") hide words from the rules below
        flag(f"letters from another script or style ('{''.join(foreign[:8])}') are not allowed")
    for problem in findings(text):
        if not problem.startswith(WEB_ADDRESS + " ("):  # a plain web address: the record may name it (below)
            flag(f"{problem} is not allowed")
    folded = plain(text)
    for variant in dict.fromkeys((text, folded)):
        for problem in _patterns(variant, record, request):
            flag(problem)
    record_stems = set(stems(record))
    for word in tokens(folded):
        if word in ACCUSATIONS and stem(word) not in record_stems:
            flag(f"an accusation the record does not make ('{word}') is not allowed")
    return problems


def _patterns(text: str, record: str, request: str) -> list[str]:
    """The gate's own patterns (links, web addresses the record does not name, markup, calls to
    action, instructions, shouting) on one reading of the text."""
    problems: list[str] = []

    def flag(message: str) -> None:
        if message not in problems:
            problems.append(message)

    for what, pattern in _LINKS:
        for m in pattern.finditer(text):
            flag(f"{what} ('{m.group(0).strip()}') is not allowed")
    for m in _DOMAIN.finditer(text):
        if not re.search(r"(?<![\w.\-])" + re.escape(m.group(0)) + r"(?![\w\-])", record, re.I):
            flag(f"a web address ('{m.group(0)}') is not allowed")
    for m in _MARKUP.finditer(text):
        flag(f"markup ('{m.group(0)}') is not allowed")
    for m in _CTA.finditer(text):
        flag(f"a call to action ('{m.group(0)}') is not allowed")
    for m in _INJECTION.finditer(text):
        flag(f"an instruction to the model ('{m.group(0)}') is not allowed")
    shouts = _SHOUT.findall(text)
    if shouts:
        known = set(tokens(record)) | set(tokens(request))
        for word in shouts:
            if word.casefold() not in known:
                flag(f"shouting ('{word}') is not allowed")
    return problems


# --- restating the request -----------------------------------------------------------------------

_RESTATE_CUE = re.compile(
    r"\byou(?:'ve|'re|'d| have| are| were| had)?\s+(?:also\s+|just\s+|already\s+|recently\s+)?"
    r"(?:asked|asking|requested|wanted|want|need|needed|said|mentioned|specified|described|searched|"
    r"looking|looked)\b(?:\s+(?:for|about|to\s+see|to\s+find))?"
    r"|\byour\s+(?:request|search|query|question|message)s?\b(?:\s+(?:for|of))?"
    r"|\bwithin\s+your\b",
    re.I,
)
_QUOTE_OPEN = re.compile(r"\s*[(:]?\s*([“\"«])")
_QUOTE_CLOSE = {"“": "”", '"': '"', "«": "»"}
_DETERMINER = r"(?:and|but|so|yet|while|which|because|whereas|this|these|that|those|it|its|they|their|the|our|here|each|every|plus|you)\b"
_CLAUSE_END = re.compile(
    r"[.!?](?=\s|$)|[;:()\[\]—–]|\s-\s|,\s*(?=" + _DETERMINER + r")|\s(?=(?:and|but|so|because|while|whereas)\s+" + _DETERMINER + r")",
    re.I,
)


# Claims about the shopper's past and tastes: what they bought, liked or use, "since you ...",
# "your previous purchase ...". Each is checked against the titles of their history as the
# writer saw them, never against the item or the request.
_APOS = r"(?:'|’)"
_HISTORY_CUE = re.compile(
    r"\byou(?:" + _APOS + r"ve| have| had)?\s+(?:also\s+|just\s+|already\s+|recently\s+|previously\s+|once\s+|often\s+|always\s+|usually\s+|really\s+|clearly\s+)?"
    r"(?:bought|purchased|ordered|liked|loved|enjoyed|reviewed|rated|owned|tried|chose|chosen|picked|got|used|like|love|enjoy|prefer|own|use|collect|drink|"
    r"been\s+(?:buying|using|ordering|drinking|collecting|enjoying))\b"
    r"|\bsince\s+you\b"
    r"|\byour\s+(?:(?:previous|past|last|recent|earlier|prior|latest|first|other|usual|favou?rite)\s+)*(?:purchases?|orders?|buys?|history|favou?rites?|collection|picks?)\b"
    r"(?:\s+(?:of|for|with|from|includes?|included|was|were|is|are|shows?))?"
    r"|\bbased\s+on\s+your\b(?:\s+(?:previous|past|recent|purchase|order|shopping|buying|browsing))*(?:\s+(?:history|purchases?|orders?))?",
    re.I,
)
# Conditionals are not claims: "if you use it daily" says nothing about the shopper.
_CONDITIONAL = re.compile(r"\b(?:if|whether|when|unless|once)\s+$", re.I)
# "the washable markers you bought": a purchase restated before its cue, from the nearest
# determiner (a few words, no punctuation).
_PURCHASE_CUE = re.compile(r"\byou(?:'ve|’ve| have)?\s+(?:also\s+|just\s+|already\s+|recently\s+|previously\s+)?(?:bought|purchased|ordered|liked|reviewed)\b", re.I)
_NOUN_START = re.compile(r"\b(?:the|those|these|that|your)\s+", re.I)
_MAX_PURCHASE_WORDS = 6
# Who the shopper is: flattery and personas ("you're the queen of ...", "a tea lover like you",
# "your impeccable taste"). Nothing in a record or a history says any of it.
_PERSONA = re.compile(
    r"\byou(?:" + _APOS + r"re| are| were)\b(?!\s+(?:looking|asking|searching|shopping|after|in\s+the\s+market)\b)"
    r"|\b(?:someone|somebody|people|anyone|those|folks|shoppers?|customers?|buyers?)\s+like\s+you(?:rself)?\b"
    r"|\byour\s+(?:own\s+)?(?:taste|tastes|style|personality|lifestyle|passion|passions|love|discerning|refined|impeccable|sophisticated|busy|hectic|hard|creative|inner)\b"
    r"|\byou(?:" + _APOS + r"ll| will| would| must| should)?\s+(?:clearly|obviously|truly|surely|certainly|definitely|undoubtedly)\b"
    r"|\byou(?:" + _APOS + r"ll| will| would)\s+(?:love|adore|enjoy|appreciate|like|be)\b"
    r"|\byou\s+(?:deserve|seem|appear|must\s+be)\b"
    r"|\bas\s+an?\s+(?:\w+\s+){0,2}(?:lover|fan|enthusiast|professional|expert|connoisseur|aficionado|teacher|student|parent|mom|dad|mother|father|artist|queen|king|boss|pro)\b",
    re.I,
)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def restated_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each part of `text` that restates what the shopper asked for: after a cue
    ("you asked for", "you need", "your search for", "within your" ...), the quoted words when a
    quote follows, else the words up to the end of the clause (punctuation, or ", and", "and
    these", "but it" ...). What they bought is a claim about their history (`history_spans`)."""
    history = history_spans(text)
    return _merge([(s, e) for s, e in _forward_spans(text, _RESTATE_CUE) if not any(hs <= s < he for hs, he in history)])


def history_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each claim about the shopper's past or tastes: the words after a history cue
    ("you bought", "you liked", "since you", "your previous purchase", "based on your history" ...)
    to the end of the clause or the closing quote, the cue included; and "the ... you bought"."""
    spans = [(cue, end) for cue, end in _forward_spans(text, _HISTORY_CUE, with_cue=True) if not _CONDITIONAL.search(text[:cue])]
    for cue in _PURCHASE_CUE.finditer(text):
        starts = [m.end() for m in _NOUN_START.finditer(text, max(0, cue.start() - 80), cue.start())]
        phrase = text[starts[-1] : cue.start()] if starts else ""
        if phrase.strip() and len(phrase.split()) <= _MAX_PURCHASE_WORDS and not re.search(r"[.,;:!?()\"“”]", phrase):
            spans.append((starts[-1], cue.end()))
    return _merge(spans)


def _forward_spans(text: str, cues: re.Pattern[str], *, with_cue: bool = False) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for cue in cues.finditer(text):
        if cue.start() < pos:
            continue
        start = cue.end()
        quote = _QUOTE_OPEN.match(text, start)
        close = text.find(_QUOTE_CLOSE[quote.group(1)], quote.end()) if quote else -1
        if quote and close != -1:
            end = close + 1
        else:
            stop = _CLAUSE_END.search(text, start)
            end = stop.start() if stop else len(text)
        if end > start or with_cue:
            spans.append((cue.start() if with_cue else start, end))
            pos = end
    return spans


# --- evidence ------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_FRACTION = re.compile(r"(?<![\w./])(?:(\d+)(?:\s*-\s*|\s+))?(\d+)/(\d+)(?![\w/])")
_AMOUNT = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONEY = re.compile(r"[$€£]\s*" + _AMOUNT + r"|" + _AMOUNT + r"\s*(dollars?|bucks|usd|euros?|eur|cents?)\b", re.I)
_RANKING = re.compile(r"#\s*1\b|\bno\.\s*1\b", re.I)
_ALNUM_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/.]*[A-Za-z0-9]|[A-Za-z0-9]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"'(“]\s*)$")
# Number words that describe rather than count ("single-use", "double-sided"): evidence only.
_DESCRIPTIVE_NUMBERS = frozenset({"single", "double", "triple"})


def _canonical_number(raw: str) -> str:
    value = raw.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".") or "0"
    value = value.lstrip("0") or "0"
    return "0" + value if value.startswith(".") else value


def _decimal(value: Fraction) -> str | None:
    """'8.5' for 17/2; None when the fraction has no short decimal form (1/3)."""
    scaled = value * 1000
    return _canonical_number(f"{float(value):.3f}") if scaled.denominator == 1 else None


def _fractions(text: str) -> tuple[str, set[str]]:
    """(`text` with its fractions blanked, the fractions as decimals): "1/4" is a quarter, not a 1
    and a 4 ("$1" is not in "1/4-inch"); "8-1/2" is 8.5."""
    found: set[str] = set()
    for m in _FRACTION.finditer(text):
        value = int(m.group(1) or 0) + Fraction(int(m.group(2)), max(1, int(m.group(3))))
        found.add(_decimal(value) or f"{m.group(2)}/{m.group(3)}")
    return _FRACTION.sub(" ", text), found


def _numbers(text: str) -> set[str]:
    """Every number the evidence states, canonical ('1,000' -> '1000', '2.50' -> '2.5'), with
    fractions as decimals ('8-1/2' -> '8.5'), number words and implied counts ('pair')."""
    rest, found = _fractions(text)
    found |= {_canonical_number(m.group(0)) for m in _NUMBER.finditer(rest)}
    for word in tokens(text):
        digit = NUMBER_WORDS.get(word) or IMPLIED_COUNTS.get(word)
        if digit:
            found.add(digit)
    return found


def stated_numbers(text: str) -> set[str]:
    """The numbers a text states, canonical ('8-1/2' -> '8.5'; '1/4' states 0.25, not 1 or 4)."""
    return _numbers(text)


canonical_number = _canonical_number


def _text_numbers(text: str) -> list[str]:
    """Numbers the text claims, in order; number words only when used as a quantity."""
    rest, fractions = _fractions(text)
    out = sorted(fractions) + [_canonical_number(m.group(0)) for m in _NUMBER.finditer(rest)]
    out.extend(NUMBER_WORDS[w] for w in tokens(text) if w in NUMBER_WORDS and w not in _DESCRIPTIVE_NUMBERS)
    return out


# Units whose number means one thing: "12 sheets" is not stated by "12 pens" or "12 inches".
_UNIT_FAMILIES = {
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("in", "inch", "inches"), "in"),
    **dict.fromkeys(("ft", "foot", "feet"), "ft"),
    **dict.fromkeys(("oz", "ounce", "ounces"), "oz"),
    **dict.fromkeys(("lb", "lbs", "pound", "pounds"), "lb"),
    **dict.fromkeys(("g", "gram", "grams", "gsm"), "g"),
    **dict.fromkeys(("kg", "kilogram", "kilograms"), "kg"),
    **dict.fromkeys(("ml", "milliliter", "milliliters"), "ml"),
    **dict.fromkeys(("l", "liter", "liters", "litre", "litres"), "l"),
    **dict.fromkeys(("sheet", "sheets"), "sheet"),
    **dict.fromkeys(("page", "pages"), "page"),
    **dict.fromkeys(("gb", "mb", "tb"), "bytes"),
    **dict.fromkeys(("ppm", "dpi", "mah", "v", "volt", "volts", "w", "watt", "watts", "hz"), "power"),
    **dict.fromkeys(("gallon", "gallons", "gal"), "gal"),
    **dict.fromkeys(("cup", "cups"), "cup"),
    **dict.fromkeys(("bag", "bags", "teabag", "teabags", "sachet", "sachets"), "bag"),
    **dict.fromkeys(("year", "years", "yr", "month", "months", "day", "days", "hour", "hours", "minute", "minutes"), "time"),
    **dict.fromkeys(("pack", "packs", "pk", "count", "ct", "pc", "pcs", "piece", "pieces"), "count"),
}
_QUANTITY = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*-?\s*([A-Za-z]+)", re.I)


_INCHES = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:\"|''|”)")


def _quantities(text: str, *, inch_marks: bool = False) -> set[tuple[str, str]]:
    """(number, unit family) for each number written with a unit ("12 sheets", "0.8mm", "3-pack");
    a number followed by a word that is no unit gives (number, "noun") ("12 Pens"). `inch_marks`:
    a record's 14" is 14 inches (in generated text the mark may close a quote)."""
    out = set()
    rest = _fractions(text)[0]
    for m in _QUANTITY.finditer(rest):
        out.add((_canonical_number(m.group(1)), _UNIT_FAMILIES.get(m.group(2).lower(), "noun")))
    if inch_marks:
        out.update((_canonical_number(m.group(1)), "in") for m in _INCHES.finditer(rest))
    return out


def _money(text: str) -> list[tuple[str, str]]:
    """(canonical amount in the main unit, surface) for each amount of money in `text`."""
    out = []
    for m in _MONEY.finditer(text):
        amount = m.group(1) or m.group(2)
        if (m.group(3) or "").lower().startswith("cent"):
            amount = _decimal(Fraction(amount.replace(",", "")) / 100) or amount
        out.append((_canonical_number(amount), m.group(0)))
    return out


def _word_stems(text: str) -> tuple[list[str], list[str]]:
    """(tokens, stems), aligned; a synonym written with a hyphen ("wifi" -> "wi-fi") gives one stem
    per part, as the hyphenated spelling does."""
    raw: list[str] = []
    out: list[str] = []
    for token in tokens(text):
        for part in stem(token).split("-"):
            if part:
                raw.append(token)
                out.append(part)
    return raw, out


PRICE_LABEL = "Price:"
_GLUED = re.compile(r"(?<![A-Za-z])(\d+(?:\.\d+)?)([A-Za-z]{2,})\b")
_PRICE_LINE = re.compile(r"^\s*" + re.escape(PRICE_LABEL) + r"(.*)$", re.M)


@dataclass(frozen=True)
class _Evidence:
    """One body of evidence, read once: its text, stems, numbers, quantities and price. Only the
    record's price line ("Price: $12.99", see `item_evidence`) supports an amount of money: a
    "$5 rebate" in a description is not the item's price."""

    text: str
    stems: tuple[str, ...]
    stem_set: frozenset[str]
    numbers: frozenset[str]
    money: frozenset[str]
    squashed: str
    quantities: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, text: str, *, said: str = "") -> _Evidence:
        """`text`: the record; `said`: the shopper's words, whose amounts count too ("your $20 limit")."""
        if said:
            text = f"{text}\n{said}"
        # "30sheets", "5colors": a record's number glued to its word states the word too
        stems = tuple(_word_stems(text)[1]) + tuple(_word_stems(" ".join(w for _, w in _GLUED.findall(text)))[1])
        price = frozenset(a for line in [*_PRICE_LINE.findall(text), said] for a, _ in _money(line))
        return cls(text, stems, frozenset(stems), frozenset(_numbers(text)), price, squash(text), frozenset(_quantities(_GLUED.sub(r"\1 \2", text), inch_marks=True)))

    def states_quantity(self, number: str, unit: str) -> bool:
        """Does the evidence state `number` with this unit? A count ("12-pack") is also stated by
        the number before a noun ("12 Pens")."""
        if (number, unit) in self.quantities:
            return True
        return unit == "count" and (number, "noun") in self.quantities

    def states(self, phrase: tuple[str, ...]) -> bool:
        return phrase[0] in self.stem_set if len(phrase) == 1 else bool(find_seq(self.stems, phrase))


def item_evidence(item: object) -> list[str]:
    """The item's own record as evidence: title, brand, categories, attributes, description and price.
    Works with `retrieval.catalog.Item` or any object with those attributes. The shopper's words
    are not item evidence: pass them to `check_grounding` as `request_evidence`."""
    parts = [getattr(item, "title", "") or "", getattr(item, "brand", "") or ""]
    parts.extend(getattr(item, "categories", ()) or ())
    parts.extend(f"{name}: {value}" for name, value in getattr(item, "attributes", ()) or ())
    parts.append(getattr(item, "description", "") or "")
    price = getattr(item, "price", None)
    if price is not None:
        parts.append(f"{PRICE_LABEL} {money(price, getattr(item, 'currency', ''))}")
    return [p for p in parts if p]


# --- claims --------------------------------------------------------------------------------------

_LEXICON_KINDS = (
    ("colour", COLOURS),
    ("material", MATERIALS),
    ("feature/compatibility", COMPATIBILITY | DEVICES),
    ("size", NAMED_SIZES),
    ("claim", CLAIMS),
    ("product type", PRODUCT_TYPES),
    ("price/value claim", PRICE_WORDS),
)


@lru_cache(maxsize=1)
def _lexicon_terms() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(kind, term, stems) of every lexicon phrase, stemmed once."""
    return tuple((kind, term, key) for kind, words in _LEXICON_KINDS for term in sorted(words) if (key := tuple(_word_stems(term)[1])))


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First stem -> [(stems of a lexicon phrase, kind)], longest phrase first; a stem sequence in
    two lists keeps its first kind ("gold" is a colour before it is a material)."""
    kinds: dict[tuple[str, ...], str] = {}
    for kind, _, key in _lexicon_terms():
        kinds.setdefault(key, kind)
    table: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for key, kind in kinds.items():
        table.setdefault(key[0], []).append((key, kind))
    for entries in table.values():
        entries.sort(key=lambda e: -len(e[0]))
    return table


def unstated_lexicon_terms(evidence: Sequence[str]) -> list[str]:
    """The lexicon's phrases (colours, materials, claims, product types ...) that `evidence` does not
    state: each would be flagged in a text checked against it. Decoding can ban them up front."""
    ev = _Evidence.of("\n".join(e for e in evidence if e))
    out = list(dict.fromkeys(term for _, term, key in _lexicon_terms() if not ev.states(key)))
    unstated = set(out)
    # A synonym reads as its lexicon word ("pad" is a "notepad"): banned with it.
    out.extend(a if b in unstated else b for a, b in SYNONYMS.items() if (a in unstated) != (b in unstated))
    return out


def _lexicon_mentions(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, words as written, stems) for each lexicon phrase in `text`, longest match first."""
    raw, word_stems = _word_stems(text)
    table = _lexicon()
    found = []
    i = 0
    while i < len(word_stems):
        for key, kind in table.get(word_stems[i], ()):
            n = len(key)
            if tuple(word_stems[i : i + n]) != key:
                continue
            # "clearly" shares its stem with "clear", but an adverb is not a colour
            if not (kind == "colour" and n == 1 and raw[i].endswith("ly")):
                found.append((kind, " ".join(dict.fromkeys(raw[i : i + n])), key))
            i += n
            break
        else:
            i += 1
    return found


def _model_numbers(text: str) -> list[str]:
    """Tokens mixing letters and digits that are not just a number with a unit ('CS6114', 'GSF11-Blk')."""
    out = []
    for m in _ALNUM_TOKEN.finditer(text):
        token = m.group(0).strip(".-/")
        if not (re.search(r"\d", token) and re.search(r"[A-Za-z]", token)):
            continue
        parts = [p for p in re.split(r"[\-/.]", token) if p]
        letters = [re.sub(r"\d+", " ", p).split() for p in parts]
        # "12-pack", "0.8mm", "3rd", "8.5x11": every letter run is a unit/quantity word
        if all(all(run.lower() in UNIT_WORDS or run.lower() in NUMBER_WORDS or run.lower() in {"pack", "set"} for run in runs) for runs in letters):
            continue
        out.append(token)
    return out


def _brand_key(brand: str) -> str:
    b = brand.replace("®", "").replace("™", "").strip()
    b = re.sub(r",?\s+(?:inc\.?|llc\.?|co\.?|corporation|limited)$", "", b, flags=re.I)
    return b.strip()


@lru_cache(maxsize=16)
def _brand_patterns(brands: tuple[str, ...]) -> list[tuple[str, re.Pattern[str], bool]]:
    """(display name, pattern, is_common_word) for each usable brand, longest first (so 'Uni-ball'
    wins over 'Uni'). A brand that is also a word counts only when written as a name:
    capitalised as the brand and not at the start of a sentence."""
    seen: dict[str, str] = {}
    for raw in brands:
        b = _brand_key(raw)
        if b.casefold() in NON_BRANDS or len(b) < 2:
            continue
        seen.setdefault(b.casefold(), b)
    out = []
    for key, b in sorted(seen.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        common = key in COMMON_WORD_BRANDS
        flags = 0 if common else re.IGNORECASE
        out.append((b, re.compile(r"(?<![\w&\-])" + re.escape(b) + r"(?![\w&])", flags), common))
    return out


def _brand_mentions(text: str, brands: Collection[str]) -> list[str]:
    taken: list[tuple[int, int]] = []
    found: list[str] = []
    for name, pattern, common in _brand_patterns(tuple(sorted(set(brands)))):
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if common and _SENTENCE_START.search(text[: m.start()]):
                continue
            taken.append((m.start(), m.end()))
            if name not in found:
                found.append(name)
    return found


def _in_text(phrase: str, text: str) -> bool:
    """Word-boundary, case-insensitive containment (also after dropping ® and punctuation)."""
    if re.search(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])", text, re.IGNORECASE):
        return True
    squashed = squash(phrase)
    return bool(squashed) and squashed in squash(text) and len(squashed) >= 4


_EASE = re.compile(r"\b(?:easy|easier|easiest|simple|quick|quicker|safe|hard|difficult|comfortable|convenient)\s+to\s+[a-z]+", re.I)


@lru_cache(maxsize=1)
def _explanation_stems() -> frozenset[str]:
    return frozenset(st for w in EXPLANATION_WORDS for st in _word_stems(w)[1]) | {"s", "t", "ll", "re", "ve", "d", "m"}


def _unstated_words(text: str, evidence: _Evidence) -> list[str]:
    """Words of `text` that neither the evidence nor `EXPLANATION_WORDS` has (numbers aside)."""
    glue = _explanation_stems()
    raw, word_stems = _word_stems(text)
    return list(dict.fromkeys(w for w, st in zip(raw, word_stems) if not w.isdigit() and st not in evidence.stem_set and st not in glue and not _NUMBER.fullmatch(w)))


def _claims(text: str, evidence: _Evidence, catalog_brands: Collection[str], *, closed: bool = False, what: str = "the item data") -> tuple[int, list[str]]:
    """(claims looked at, the unsupported ones) of `text` against one body of evidence. `closed`:
    every word must be in the evidence or be an explanation word (closed vocabulary)."""
    problems: list[str] = []
    checked = 0

    def claim(supported: bool, message: str) -> None:
        nonlocal checked
        checked += 1
        if not supported and message not in problems:
            problems.append(message)

    brands = _brand_mentions(text, catalog_brands)
    for brand in brands:
        claim(_in_text(brand, evidence.text), f"brand '{brand}' is not this item's brand and is not in the item data")
    for amount, surface in _money(text):
        claim(amount in evidence.money, f"price '{surface.strip()}' is not the item's price and is not in the item data")
    for number in _text_numbers(_MONEY.sub(" ", text)):
        claim(number in evidence.numbers, f"number '{number}' does not appear in {what}")
    for number, unit in _quantities(_GLUED.sub(r"\1 \2", _MONEY.sub(" ", text))):
        if unit != "noun" and number in evidence.numbers:
            claim(evidence.states_quantity(number, unit), f"number '{number}' is not stated as {unit} in {what}")
    brand_keys = {squash(b) for b in brands}
    for token in _model_numbers(text):
        key = squash(token)
        claim(key in evidence.squashed or key in brand_keys, f"model/part number '{token}' does not appear in the item data")
    for m in _RANKING.finditer(text):
        claim(bool(_RANKING.search(evidence.text)), f"ranking claim '{m.group(0)}' is not stated in the item data")
    for kind, words, key in _lexicon_mentions(text):
        claim(evidence.states(key), f"{kind} '{words}' is not stated in {what}")
    if closed:
        for word in _unstated_words(text, evidence):
            claim(False, f"'{word}' is not in {what}")
        # "easy to use" is not stated by "easy to install ... use the board": an ease claim as a phrase
        for m in _EASE.finditer(text):
            claim(evidence.states(tuple(_word_stems(m.group(0))[1])), f"claim '{m.group(0)}' is not stated in {what}")
    return checked, problems


# --- the gate ------------------------------------------------------------------------------------


def check_grounding(
    text: str,
    item_evidence: Sequence[str] = (),
    *,
    request_evidence: Sequence[str] = (),
    history_evidence: Sequence[str] = (),
    catalog_brands: Collection[str] = (),
    restates_request: bool = False,
    closed: bool = False,
) -> GroundingReport:
    """The gate for generated text: the screen (links, markup, calls to action, instructions,
    shouting, hidden or look-alike characters), claims about who the shopper is, and every claim
    checked against the evidence for what it is about. Returns `GroundingReport(ok, unsupported,
    checked)`; an empty text is not grounded (there is nothing to show).

    `item_evidence`: the item's own record (see `item_evidence(item)`); supports claims about the item.
    `request_evidence`: what the shopper wrote (query, messages, what the dialogue established);
    supports only a restatement of the request (`restated_spans`), never an item fact.
    `history_evidence`: the titles of the shopper's history as the writer saw them; a claim about
    what they bought, liked or use (`history_spans`) must be one title's words. None: every such
    claim fails.
    `catalog_brands`: every brand the catalog knows, so naming another real brand is a claim.
    `restates_request`: the whole text is about the request, not an item (the chat's intro).
    `closed`: closed vocabulary (recommendation reasons): every word of an item claim is in the
    record or is an explanation word (`agent.lexicon.EXPLANATION_WORDS`), so nothing borrowed
    from another item, a history or the model's imagination passes."""
    if not text or not text.strip():
        return GroundingReport(ok=False, unsupported=["the text is empty"], checked=0)
    record = "\n".join(e for e in item_evidence if e)
    request = "\n".join(e for e in request_evidence if e)
    problems = screen_text(text, record=record, request=request + "\n" + "\n".join(history_evidence))
    for m in _PERSONA.finditer(text):
        message = f"a claim about who the shopper is ('{m.group(0)}') is not allowed"
        if message not in problems:
            problems.append(message)

    history = [] if restates_request else history_spans(text)
    spans = [(0, len(text))] if restates_request else restated_spans(text)
    rest = list(text)
    for start, end in [*spans, *history]:
        rest[start:end] = " " * (end - start)
    checked, unsupported = _claims("".join(rest), _Evidence.of(record), catalog_brands, closed=closed)
    if spans:
        restated = "\n".join(text[s:e] for s, e in spans)
        n, more = _claims(restated, _Evidence.of(record, said=request), catalog_brands)
        checked += n
        unsupported.extend(p for p in more if p not in unsupported)
        if closed and not restates_request:  # "you asked for X": X is the shopper's words
            n, more = _claims(restated, _Evidence.of("", said=request), (), closed=True, what="what the shopper said")
            checked += n
            unsupported.extend(p for p in more if p.startswith("'") and p not in unsupported)
    for start, end in history:
        n, more = _history_claim(text[start:end], history_evidence, catalog_brands)
        checked += n
        unsupported.extend(p for p in more if p not in unsupported)
    problems.extend(p for p in unsupported if p not in problems)
    return GroundingReport(ok=not problems, unsupported=problems, checked=checked)


def _history_claim(span: str, titles: Sequence[str], catalog_brands: Collection[str]) -> tuple[int, list[str]]:
    """A claim about the shopper's history is true when one title of that history states all of it
    (closed vocabulary: its words, numbers, brands)."""
    said = " ".join(span.split())
    if not any(t.strip() for t in titles):
        return 1, [f"a claim about the shopper's history ('{said[:60]}') but no history was given"]
    best: list[str] | None = None
    for title in titles:
        _, problems = _claims(span, _Evidence.of(title), catalog_brands, closed=True, what="the shopper's history")
        if not problems:
            return 1, []
        best = problems if best is None or len(problems) < len(best) else best
    return 1, [f"claim about the shopper's history ('{said[:60]}') is not one of their items: " + "; ".join(best or [])]
