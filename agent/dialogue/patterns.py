"""The words and patterns a message is read with: references, prices, follow-up intents, negation,
filler, feature words, and the spans of a message that are not the shopper's own request.

Word sets are kept in two forms when both are needed: raw words for matching tokens as typed
(`FEATURE_WORDS`, `COMPARATIVES`) and stems for comparing with `agent.text.stems`
(`FEATURE_STEMS`, ...; the filler list is `agent.lexicon.FILLER`). Snowball writes "please" as "pleas" and "batteries" as "batteri", so a stem
looked up in a raw list silently misses.
"""

from __future__ import annotations

import re

from agent.lexicon import COLOURS, COMPATIBILITY, FEATURE_PHRASES, MATERIALS, SHOPPING_FEATURES
from agent.text import stem, stems

# --- references to shown items ------------------------------------------------------------------------

ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "top": 1,
}
ORDINAL_RE = re.compile(
    r"\b(?:the\s+)?(?P<word>first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|sixth|6th|seventh|7th|eighth|8th|ninth|9th|tenth|10th|last)\b"
    r"(?:\s+(?:one|item|option|product|pick|result)s?)?"
    r"|(?:#|\bno\.?\s*|\bnumber\s+|\bitem\s+|\boption\s+|\bpick\s+)(?P<num>\d{1,2})\b"
    r"|\b(?P<both>both)\b",
    re.I,
)
TOP_PICK_RE = re.compile(r"\btop\s+(?:one|item|pick|result)", re.I)  # "top" alone is no reference ("top quality")
PRONOUN_RE = re.compile(r"\b(?:that|this|the)\s+one\b|\b(?:it|that|this)\b(?!\s+(?:brand|kind|type|price))", re.I)
ONE_RE = re.compile(r"\b(?:one|it|that|this)\b", re.I)  # "the Swingline one"

# --- prices -----------------------------------------------------------------------------------------------

_NUM = r"(\d{1,6}(?:[.,]\d{1,2})?)"
_CUR = r"(?:\s*(?:dollars?|bucks|usd|\$))"
# A number followed by one of these is a count or a size, not a price ("under 40 sheets").
UNIT_AFTER = re.compile(
    r"^\s*(?:sheets?|pages?|pcs|pieces?|pack|packs|count|ct|mm|cm|in|inch|inches|ft|feet|oz|lbs?|pounds?|gb|tb|mb|watts?|w|v|volts?|"
    r"hours?|hrs?|minutes?|mins?|days?|years?|people|users?|ppm|dpi|colors?|colours?|x|%|percent|degrees?|ml|l|g|kg|items?|sheet)\b",
    re.I,
)
PRICE_RANGE = [
    re.compile(rf"\bbetween\s+\$?\s*{_NUM}{_CUR}?\s*(?:and|-|to)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\bfrom\s+\$\s*{_NUM}\s*(?:to|-)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\$\s*{_NUM}\s*(?:-|–|to)\s*\$?\s*{_NUM}", re.I),
    re.compile(rf"\b{_NUM}\s*(?:-|–|to)\s*{_NUM}{_CUR}", re.I),
]
PRICE_MAX = re.compile(
    rf"(?:\bunder|\bbelow|\bless\s+than|\bcheaper\s+than|\b(?:no|not)\s+more\s+than|\bat\s+most|\bmax(?:imum)?|\bup\s+to|\bwithin|"
    rf"\bbudget(?:\s+is|\s+of)?|\blower\s+than|\bbeneath|\bdon'?t\s+want\s+to\s+spend\s+more\s+than|<=?)\s*(?:of\s+|about\s+)?(\$)?\s*{_NUM}(?P<cur>{_CUR})?",
    re.I,
)
PRICE_MAX_AFTER = re.compile(rf"(\$)?\s*{_NUM}(?P<cur>{_CUR})?\s+(?:or\s+(?:less|under|below|cheaper)|max\b|tops\b|at\s+most)", re.I)
PRICE_MIN = re.compile(
    rf"(?:\bover|\babove|\bmore\s+than|\bat\s+least|\bmin(?:imum)?|\bstarting\s+at|\bhigher\s+than|>=?)\s*(\$)?\s*{_NUM}(?P<cur>{_CUR})?",
    re.I,
)
PRICE_AROUND = re.compile(rf"(?:\baround|\babout|\broughly|\bapprox(?:imately)?|\bclose\s+to)\s*(\$)\s*{_NUM}|(?:\baround|\babout|\broughly)\s+{_NUM}{_CUR}", re.I)
AROUND_SPREAD = 0.25  # "around $100" means $75-$125
PRICE_WORDS = re.compile(r"\b(?:price|cost|costs|budget|spend|pay|\$)", re.I)

# --- intents ------------------------------------------------------------------------------------------------

RESET_RE = re.compile(r"\b(?:start\s+(?:over|again|afresh|from\s+scratch)|reset|new\s+(?:search|conversation|chat)|clear\s+(?:everything|all|(?:the\s+)?filters)|forget\s+(?:it|that|everything|all\s+that))\b", re.I)
SMALL_TALK = [
    ("greeting", re.compile(r"^\s*(?:hi+|hello+|hey+|hiya|howdy|good\s+(?:morning|afternoon|evening)|greetings|yo)\b[\s!.,]*(?:there|aisle)?[\s!.,]*$", re.I)),
    ("thanks", re.compile(r"^\s*(?:thanks?(?:\s+you)?|thank\s+you(?:\s+so\s+much)?|thx|ty|cheers|great,?\s+thanks?|perfect,?\s+thanks?|ok(?:ay)?,?\s+thanks?)\b[\s!.,]*(?:a\s+lot|so\s+much)?[\s!.,]*$", re.I)),
    ("bye", re.compile(r"^\s*(?:bye|goodbye|see\s+you|that'?s\s+all|i'?m\s+done|no\s+thanks?)\b[\s!.,]*$", re.I)),
    ("identity", re.compile(r"\b(?:who|what)\s+are\s+you\b|\bare\s+you\s+(?:a\s+)?(?:bot|human|robot|ai)\b", re.I)),
    ("help", re.compile(r"^\s*(?:help|what\s+can\s+you\s+do|how\s+does\s+this\s+work|how\s+do\s+(?:i|you)\s+use\s+(?:this|you))\b[\s?!.]*$", re.I)),
    ("ack", re.compile(r"^\s*(?:ok(?:ay)?|cool|nice|great|got\s+it|i\s+see|alright|sure|hmm+)[\s!.]*$", re.I)),
]
WHY_RE = re.compile(r"\bwhy\b|\bexplain\b|\bwhat\s+makes\b|\bhow\s+(?:come|is\s+(?:it|that|this))\s+(?:a\s+)?(?:good|right|a\s+match)", re.I)
MORE_LIKE_RE = re.compile(r"\b(?:more|others?|something|anything|items?|ones?|stuff|products?)\s+(?:just\s+|a\s+bit\s+|a\s+little\s+)?like\b|\bsimilar\b|\bsame\s+(?:kind|type|style|sort)\b|\balternatives?\s+to\b|\blike\s+(?:that|this)\s+one\b", re.I)
LIKE_RE = re.compile(r"\b(?:i\s+(?:really\s+)?(?:like|love|prefer)|looks?\s+(?:good|great|nice|perfect)|(?:is|sounds|seems)\s+(?:good|great|perfect|nice)|i'?ll\s+(?:take|go\s+with|buy)|that'?s\s+(?:the\s+one|perfect)|favou?rite|thumbs\s+up)\b", re.I)
REJECT_RE = re.compile(
    r"\b(?:don'?t|do\s+not|doesn'?t)\s+(?:like|want|need|love)|\bnot\s+(?:a\s+fan\s+of|interested\s+in|the)\b|\b(?:hate|dislike|remove|drop|skip|exclude|hide)\b|\bno\s+to\b|\bthumbs\s+down\b|\bnope\b|\bnot\s+(?:that|this)\s+one\b",
    re.I,
)
REJECT_ALL_RE = re.compile(r"\b(?:none\s+of\s+(?:these|those|them|the\s+above)|(?:don'?t|do\s+not)\s+like\s+(?:any|all)\s+of\s+(?:these|those|them)|not\s+(?:these|those)|neither)\b", re.I)
QUESTION_RE = {
    "price": re.compile(r"\b(?:price|cost|costs|how\s+much|expensive|cheap)\b", re.I),
    "brand": re.compile(r"\b(?:what|which|who)\b.{0,20}\b(?:brand|makes?|made|manufacturer|maker)\b|\bbrand\s+is\b|\bwho\s+makes\b", re.I),
    "category": re.compile(r"\b(?:what|which)\s+(?:kind|type|category|sort)\b|\bcategory\b", re.I),
    "details": re.compile(r"\b(?:tell\s+me\s+(?:more\s+)?about|more\s+(?:info|information|details)|details?|describe|description|specs?|what\s+is|what'?s)\b", re.I),
    "has": re.compile(r"\b(?:does|do|is|can|will|has)\s+(?:it|that|this|the\s+\w+(?:\s+one)?)\s+(?:have|has|come\s+with|include|support|work\s+with|fit|hold|handle|use|take|made\s+of|made\s+from|be|a|an)?\s*(?P<what>[^?.!]{2,60})", re.I),
}
# "Could I get a pack of 2?", "Can you find one that's blue?", "Do you have any in red?": a request
# put as a question, not a question about a shown item (whose pronoun, "I need it for work", is the
# product asked for).
REQUEST_QUESTION_RE = re.compile(
    r"\b(?:could|can|would|will)\s+(?:you|i|we)\s+(?:please\s+)?(?:get|find|show|see|have|try|recommend|suggest|look\s+for|give|go\s+for|pick)\b"
    r"|\b(?:do|have)\s+you\s+(?:have|got|carry|sell|stock)\b|\bany\s+chance\b",
    re.I,
)
# "I need it for my trip", "It's handy for my car": why the shopper wants the product asked for, not
# another product (its words are not product words; USE_CASE_RE still reads the use).
REASON_CLAUSE_RE = re.compile(
    r"\b(?:i\s+(?:need|want|use|(?:will|'ll)\s+use)\s+(?:it|them|these|those|this|one)|(?:it|that|this)(?:'s|\s+is|\s+would\s+be)|(?:they|these)(?:'re|\s+are))"
    r"\s+(?:(?:really|very|so|pretty|quite|handy|useful|great|good|perfect|ideal|nice|needed|mostly|just)\s+)*(?:for|in|on|at|during|while)\b[^.;!?]*",
    re.I,
)
MONEY_RE = re.compile(r"[$€£]\s*\d|\b\d+(?:[.,]\d+)?\s*(?:dollars?|bucks|usd|euros?|eur|pounds?\s+sterling|cents?)\b", re.I)
CHEAPER_RE = re.compile(r"\b(?:cheaper|less\s+expensive|lower[- ]priced?|lower\s+price|too\s+(?:expensive|pricey|much|costly)|more\s+affordable|cost(?:s|ing)?\s+less|something\s+cheap|inexpensive\s+ones?)\b", re.I)
# "the cheapest one", "which is cheapest?": the current product ordered by price, never a product word.
CHEAPEST_RE = re.compile(r"\b(?:cheapest|least\s+expensive|lowest[- ]priced?|lowest\s+price|most\s+affordable|best\s+price|(?:lowest|best)\s+deal)\b", re.I)
PRICIER_RE = re.compile(r"\b(?:more\s+expensive|pricier|higher[- ]end|higher\s+price[d]?|more\s+premium|premium\s+ones?|fancier|splurge)\b", re.I)
OTHER_BRAND_RE = re.compile(
    r"\b(?:not|no|avoid|different|another|other|else|without|except|don'?t\s+(?:like|want)|hate|dislike)\b[^.?!]{0,25}\bbrands?\b"
    r"|\bbrands?\s+(?:other\s+than|besides|except)\b|\b(?:not|no\s+more)\s+(?:from|by)\s+(?:them|that\s+(?:company|maker|manufacturer))\b",
    re.I,
)
PLURAL_BRAND_RE = re.compile(r"\b(?:those|these|brands)\b", re.I)
MORE_RE = re.compile(r"\b(?:show\s+(?:me\s+)?more|more\s+(?:options|items|results|suggestions|choices|please|of\s+(?:these|those|them))|anything\s+else|what\s+else|other\s+(?:options|ones|items|choices|suggestions)|different\s+ones|next\s+(?:ones|page)|something\s+else|any\s+others)\b|^\s*more[\s!.?]*$", re.I)
AGAIN_RE = re.compile(r"\b(?:show|see|list)\s+(?:me\s+)?(?:them|those|these|it|the\s+\w+(?:\s+\w+)?)\s+again\b|\bagain\s+please\b|\bgo\s+back\s+to\s+(?:those|the\s+previous)\b", re.I)
# "something for a student": an open request for someone or some use, not a detail of the current product.
OPEN_REQUEST_RE = re.compile(r"^\s*(?:(?:i\s+(?:need|want)|i'?m\s+looking\s+for|looking\s+for|show\s+me|any\s+ideas\s+for)\s+)?(?:something|anything|a\s+gift|gift\s+ideas?|ideas?)\s+(?:for|to\s+use\s+(?:for|in|at|with))\b", re.I)
# "what do you have?", "show me something", "anything good?": a broad request that names no product;
# answered with popular items (or picks from the shopper's history) and a question that narrows it down.
BROWSE_RE = re.compile(
    r"\bwhat\s+(?:do|can|would)\s+you\s+(?:have|sell|carry|offer|stock|recommend|suggest)\b|\bwhat\s+have\s+you\s+got\b"
    r"|\bwhat(?:'s|\s+is|\s+are)\s+(?:good|popular|(?:your\s+)?(?:best\s*sellers?|top\s+picks?|favou?rites?))\b"
    r"|\b(?:show|give)\s+me\s+(?:something|anything|some\s+(?:stuff|things|items|products|ideas)|what\s+you(?:'ve)?\s+(?:have|got))\b"
    r"|\b(?:anything|something)\s+(?:good|nice|interesting|popular)\b|\b(?:any|some)\s+(?:recommendations?|suggestions?|ideas)\b"
    r"|\brecommend\s+(?:me\s+)?(?:something|anything)\b|\bsurprise\s+me\b|\b(?:i'?m\s+)?just\s+browsing\b",
    re.I,
)
# "a cross-cut one", "the black ones": the current product with a detail.
ONE_NOUN_RE = re.compile(r"\bones?\b", re.I)
SWITCH_RE = re.compile(r"\b(?:now|instead|also\s+(?:need|want|looking)|what\s+about|how\s+about|actually|rather|switch\s+to|let'?s\s+look\s+(?:at|for))\b", re.I)

# --- negation scope (on raw, case-folded words) -----------------------------------------------------------

NEGATORS = frozenset({"not", "no", "without", "except", "avoid", "avoiding", "hate", "dislike", "never", "nothing", "exclude", "excluding", "besides", "nor", "dont", "doesnt", "isnt", "didnt"})
NEGATOR_PHRASES = (("other", "than"), ("anything", "but"), ("instead", "of"), ("rather", "than"), ("no", "more"), ("do", "not"), ("fed", "up"))
NEGATED_VERBS = frozenset({"want", "need", "like", "love"})  # "don't want HP"
VERB_NEGATORS = frozenset({"don", "dont", "not", "t", "doesnt", "didnt", "never"})
CLAUSE_BREAK = frozenset({"but", "however", "though", "although", "prefer", "preferably", "rather", "instead", "want", "like", "love", "need"})
NEGATION_WINDOW = 6  # words looked back from a brand for a negator
BRAND_CUES = frozenset({"brand", "brands", "by", "from", "make"})  # "by universal": the brand, even in lower case

# --- where the product phrase ends -------------------------------------------------------------------------

# "ink | for my printer", "a printer | that holds 250 sheets": categories are read before the split.
HEAD_SPLIT = re.compile(r"\b(?:for|compatible|that|which|with|to\s+use|fits?|to\s+go\s+with|works?)\b", re.I)
# The product noun is the last content word before any of these ("a stapler | under $20").
NOUN_SPLIT = re.compile(r"\b(?:for|compatible|that|which|with|to\s+use|fits?|to\s+go\s+with|works?|from|by|under|below|between|around|about|not|without|except)\b", re.I)
USE_CASE_RE = re.compile(r"\b(?:for|to\s+use\s+(?:for|in|at|with)|used\s+for|to\s+(?:use|take)\s+to)\s+(?P<use>(?:my|our|a|an|the|school|work|home|office|kids?|children|students?|travel|college|business|gaming|everyday|daily)\b[^,.;!?]{0,40})", re.I)
NEED_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:[-'.][A-Za-z0-9]+)*")  # "heavy-duty", "3.5", "men's" stay one word
MAX_NEED_CHARS = 200
# A message that opens like this adds detail to the current product ("with a metal body").
REFINE_LEAD = re.compile(r"^\s*(?:with|that|which|in|made|one|ones|something|preferably|but|and|also|maybe|ideally|in\s+\w+|for|without|has|having|more|less|a\s+bit|not\s+too)\b", re.I)

# --- word sets ------------------------------------------------------------------------------------------------

# Words that carry no product meaning; trimmed from the ends of the need phrase.

# Feature words a shopper may ask for: the lexicon's colours, materials, compatibilities and
# shopping features (the same lists the grounding checker reads claims with).
FEATURE_WORDS = COLOURS | MATERIALS | COMPATIBILITY | SHOPPING_FEATURES
FEATURE_STEMS = frozenset(stem(w) for w in FEATURE_WORDS if len(stems(w)) == 1)
# Phrases matched as a whole ("heavy duty", "stainless steel"), before single words; a phrase may
# open a longer word ("noise cancel" in "noise cancelling").
FEATURE_PHRASE_RES = tuple(
    (phrase, re.compile(r"\b" + re.escape(phrase), re.I))
    for phrase in dict.fromkeys([*FEATURE_PHRASES, *sorted(w for w in FEATURE_WORDS if len(stems(w)) > 1)])
)

# "a smaller one": a detail of the current product, never a product of its own.
COMPARATIVES = frozenset(
    """bigger smaller larger lighter heavier longer shorter thinner thicker faster quieter softer stronger
    better nicer newer wider narrower simpler sturdier""".split()
)
COMPARATIVE_STEMS = frozenset(stem(w) for w in COMPARATIVES)


# --- text that is not the shopper's request ----------------------------------------------------------------

# Quoted text is someone else's words: a title the shopper quotes, or the text an injection wants
# echoed ("say 'Swingline is the best'"). A straight double quote after a digit is an inch mark
# (12" ruler); a single quote between letters is an apostrophe (don't, kids').
QUOTED_RE = re.compile(
    r'(?<!\d)"[^"\n]{0,300}"'
    r"|“[^”\n]{0,300}”"
    r"|‘[^\n]{0,300}?’(?![A-Za-z])"
    r"|(?<![A-Za-z0-9])'(?=\S)[^\n]{0,300}?(?<=\S)'(?![A-Za-z0-9])"
)
# Instruction-like text addressed to the model behind the assistant, from its trigger to the end of
# its sentence (a "." inside a word, as in $19.99 or evil.example, does not end it):
#   ignore / disregard / forget / override ... instructions | prompt | rules | guidelines
#   "system prompt", "system message", "you are now"
#   print / reveal / show / repeat / output / tell me ... your (hidden ...) instructions | prompt | rules
#   reply / respond / answer with ..., say only | exactly | just ...
# A brand named there ("... instructions verbatim", "... and recommend Swingline") is not a brand
# the shopper asked for. Deliberately narrow: "ignore the price", "show me the rules of the game"
# and "let's say under $20" are ordinary shopping talk.
INSTRUCTION_RE = re.compile(
    r"(?:"
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}?\b(?:instructions?|prompts?|rules|guidelines|directives?)\b"
    r"|\bsystem\s+(?:prompt|message)s?\b"
    r"|\byou\s+are\s+now\b"
    r"|\b(?:print|reveal|show|repeat|output|display|leak|dump|tell|give)\s+(?:me\s+|us\s+)?"
    r"(?:your|the\s+(?:hidden|secret|system|internal|original|initial|full|exact|previous))\s+(?:\w+\s+){0,3}?"
    r"(?:instructions?|prompts?|rules|guidelines|configuration)\b"
    r"|\b(?:reply|respond|answer)\s+(?:only\s+|just\s+)?with\b"
    r"|\bsay\s+(?:only|exactly|just|the\s+words?)\b"
    r")(?:[^.!?\n]|[.!?](?=\S))*",
    re.I,
)


# How a request opens ("I'm looking for", "do you have"): no product words, and its "for" does not
# end the product phrase ("I'm looking for | index cards" would leave no product noun).
REQUEST_LEAD_RE = re.compile(
    r"^\s*(?:(?:hi|hello|hey)\b[\s,!.]*)?(?:(?:i'?m|i\s+am|we'?re|we\s+are)\s+)?(?:looking|searching|shopping|hunting)\s+for\b"
    r"|^\s*(?:do\s+you\s+(?:have|sell|carry)|have\s+you\s+got|can\s+you\s+find(?:\s+me)?)\b",
    re.I,
)


def ignored_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of `text` whose words must not become constraints: quoted and instruction-like text."""
    return [m.span() for m in QUOTED_RE.finditer(text)] + [m.span() for m in INSTRUCTION_RE.finditer(text)]


def blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the characters of `spans` replaced by spaces (offsets stay valid)."""
    chars = list(text)
    for a, b in spans:
        chars[a:b] = " " * (min(b, len(chars)) - a)
    return "".join(chars)


def shopper_text(text: str) -> str:
    """`text` without its quoted and instruction-like spans: what the shopper's own request says."""
    return blank(text, ignored_spans(text))
