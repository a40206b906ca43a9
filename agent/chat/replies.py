"""The text of a chat reply, built from catalog fields and the dialogue state only.

Why templates: with the packaged 135M model on a shared CPU an LLM sentence costs seconds and is
often wrong; a reply must stay under ~2 s and never state a fact the catalog does not hold.
"""

from __future__ import annotations

from typing import Any

from agent.dialogue import DialogueState, Plan
from agent.facts import has_feature, item_facts, product_type, shared_facts
from agent.recommend.reasons import FactUse, ReasonContext, _quotable, _quote_around, _where, answer_reasons, asked_features, choose_facts
from agent.text import money, short, stems
from retrieval.catalog import Item
from retrieval.screen import display

ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]

EXAMPLES: dict[str, list[str]] = {
    "amazon-office-2014": ["I need a heavy duty stapler, not Swingline", "black gel pens for school", "a label maker by Brother"],
    "amazon-office-2018": ["a wireless mouse for my laptop", "sticky notes in bright colours", "a desk organizer"],
    "mg-shopdial": ["running shoes under $70", "a USB microphone for podcasts", "a mystery novel under $20"],
}
HINT = "You can say “cheaper”, “not that brand”, “more like the second one”, “why the first?” or “start over”."



def liked_reply(item_ids: list[str], state: DialogueState, items: dict[str, Item]) -> str:
    if not item_ids:
        return "Which one do you mean? Say “the first”, “the second”, …"
    item = items[item_ids[0]]
    n = state.last_shown.index(item.id) + 1 if item.id in state.last_shown else 1
    return f"Noted: you like #{n} “{item.title}”. Say “more like the {ORDINAL_WORDS[n - 1] if n <= 10 else 'first'} one” to see similar items."


def small_talk(kind: str, catalog: str, has_shown: bool) -> str:
    examples = "; ".join(f"“{e}”" for e in EXAMPLES.get(catalog, [])[:2])
    if kind == "greeting":
        return f"Hi! I'm aisle, a shopping assistant for the {catalog} catalog. Tell me what you need, e.g. {examples}."
    if kind == "thanks":
        return "You're welcome! Anything else you're looking for?"
    if kind == "bye":
        return "Bye, and good luck with your purchase!"
    if kind == "identity":
        return f"I'm aisle, an assistant that recommends products from the {catalog} catalog and explains why each one fits. I only state facts from the catalog."
    if kind == "help":
        return f"Tell me what you need ({examples}). {HINT}"
    return "OK. " + (HINT if has_shown else f"Tell me what you're looking for, e.g. {examples}.")


def clarify(catalog: str) -> str:
    examples = "; ".join(f"“{e}”" for e in EXAMPLES.get(catalog, []))
    return f"What are you looking for? For example: {examples}."


def nothing_found(state: DialogueState, plan: Plan) -> str:
    if plan.more:
        return f"That's everything I have for {state.describe() or 'that'}. Try different words, another brand or a wider budget, or “start over”."
    tips = []
    if state.brands:
        tips.append("another brand")
    if state.avoid_brands:
        tips.append(f"allowing {', '.join(state.avoid_brands)} again (“any brand is fine”)")
    if state.price_max is not None or state.price_min is not None:
        tips.append("a wider budget")
    tips.append("“start over”")
    return f"Nothing in the {state.catalog} catalog matches {state.describe() or 'that'}. Try " + ", or ".join(tips) + "."


def catalog_facts(item: Item) -> str:
    bits = []
    if item.brand:
        bits.append(f"brand {item.brand}")
    if item.categories:
        bits.append("category " + " > ".join(item.categories))
    if item.price is not None:
        bits.append(f"price {money(item.price, item.currency)}")
    return "; ".join(bits)


class ItemLine(str):
    """A reply piece that lists one recommended item. Text clients (API, terminal) show it like any
    piece; a client that shows the items as cards (app.py) leaves it out, so each item is listed once."""


def item_line(n: int, item: Item, reason: str) -> ItemLine:
    meta = [m for m in (item.brand, item.category, money(item.price, item.currency) if item.price is not None else "") if m]
    return ItemLine(f"{n}. {item.title}" + (f" ({' · '.join(meta)})" if meta else "") + f"\n   {reason}\n")


def quote_around(text: str, word_stems: list[str], width: int = 160) -> str:
    """A short passage of `text` around the first of `word_stems`."""
    words = text.split()
    for i, w in enumerate(words):
        if any(s in stems(w) for s in word_stems):
            lo = max(0, i - 8)
            return short(("…" if lo else "") + " ".join(words[lo : lo + 30]), width)
    return short(text, width)


def mentions_any(item: Item, word_stems: list[str]) -> bool:
    """Does the item's own text (title, categories, description) contain one of the words?"""
    text = set(stems(item.title + " " + " ".join(item.categories) + " " + item.description[:3000]))
    return any(w in text for w in word_stems)


def similar_reason(item: Item, liked: Item) -> str:
    """What a "more like that" item shares with the one picked: its kind, and the picked item's
    facts its record also states ("Also a shredder, like the one you picked; also cross-cut, 8 sheets.")."""
    kind = product_type(liked)
    noun = kind.value if kind is not None and kind.field == "title" else "item of its kind"
    shared = shared_facts(item, liked)
    also = f"; also {', '.join(shared[:3])}" if shared else ""
    return f"Also a {noun}, like the one you picked{also}."


def state_context(state: DialogueState) -> ReasonContext:
    """What the conversation established, as the reason writer reads it."""
    return ReasonContext(need=state.need, features=state.features, price_min=state.price_min, price_max=state.price_max, similar_to=state.similar_to)


def state_reasons(items: list[Item], state: DialogueState) -> list[str]:
    """Template reasons for the items of one answer, written together so each says what sets it apart."""
    return answer_reasons(items, state_context(state))


def _names(positions: list[int]) -> str:
    names = [f"#{p}" for p in positions]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _grouped(pairs: list[tuple[int, Any]], unit: str, *, verb: bool = False) -> str:
    """[(1, 6), (5, 6), (4, 12)] -> "#1 and #5 (6 sheets), #4 (12 sheets)"; with `verb`:
    "#1 and #3 are cross-cut, #4 is micro-cut"."""
    groups: dict[Any, list[int]] = {}
    for p, v in pairs:
        groups.setdefault(v, []).append(p)
    fmt = (lambda v: f"{v:g}") if unit else str
    if verb:
        return ", ".join(f"{_names(ps)} {'is' if len(ps) == 1 else 'are'} {fmt(v)}" for v, ps in groups.items())
    return ", ".join(f"{_names(ps)} ({fmt(v)} {unit})" for v, ps in groups.items())


def _support_text(item: Item, uses: list[FactUse]) -> str:
    """"the title says “8-Sheet” and “Strip-Cut”; the description says “…quiet…”" """
    by_field: dict[str, list[str]] = {}
    for u in uses:
        quote = u.fact.quote(item) if u.fact.field == "title" else _quote_around(item, u.fact, words=3)
        quote = _quotable(quote, 90, record=True) if quote else None
        kept = by_field.setdefault(_where(u.fact), [])
        if quote and not any(quote in q or q in quote for q in kept):
            kept.append(quote)
    parts = []
    for where, quotes in by_field.items():
        if not quotes:
            continue
        said = " and ".join(f"“{q}”" for q in quotes[:2])
        parts.append(f"the {where} says {said}")
    return "; ".join(parts)


def _comparison(item: Item, pos: int, shown: list[Item], uses: list[FactUse], asked: list[str]) -> list[str]:
    """How the item compares with the other shown items, from their records only."""
    others = [(p, o) for p, o in enumerate(shown, start=1) if o.id != item.id]
    if not others:
        return []
    out: list[str] = []
    for u in uses:
        f = u.fact
        if f.kind == "capacity" and f.value.endswith(("sheet", "sheets")):
            mine = float(f.value.split()[0])
            theirs = [(p, next((float(g.value.split()[0]) for g in item_facts(o) if g.kind == "capacity" and g.value.endswith(("sheet", "sheets"))), None)) for p, o in others]
            more = [(p, n) for p, n in theirs if n is not None and n < mine]
            fewer = [(p, n) for p, n in theirs if n is not None and n > mine]
            bits = []
            if more:
                bits.append(f"more than {_grouped(more, 'sheets')}")
            if fewer:
                bits.append(f"fewer than {_grouped(fewer, 'sheets')}")
            if bits:
                out.append(f"it takes {f.value}, " + " and ".join(bits))
            continue
        if f.kind == "cut":
            theirs = [(p, next((g.value for g in item_facts(o) if g.kind == "cut"), None)) for p, o in others]
            differ = [(p, c) for p, c in theirs if c and c != f.value]
            if u.distinct:
                tail = f" ({_grouped(differ, '', verb=True)})" if differ else ""
                out.append(f"it is the only {f.value} one{tail}")
            continue
        if u.distinct:
            out.append(f"it is the only one whose record says {f.value}")
    for want in asked:
        has = has_feature(item, want)
        also = [p for p, o in others if has_feature(o, want)]
        lack = [p for p, o in others if not has_feature(o, want)]
        if has and lack and not any(u.asked == want and u.distinct for u in uses):
            out.append((f"{_names(also)} also {'says' if len(also) == 1 else 'say'} {want}, " if also else "") + f"{_names(lack)} {'does' if len(lack) == 1 else 'do'} not mention {want}")
        elif not has and also:
            out.append(f"unlike {_names(also)}, its record does not mention {want}")
    maker = item.brand.strip()
    if maker and not any(o.brand.strip().casefold() == maker.casefold() for _, o in others):
        out.append(f"it is the only one by {maker}")
    priced = [(p, o.price) for p, o in [(pos, item), *others] if o.price is not None]
    if item.price is not None and len(priced) >= 2:
        rank = 1 + sum(1 for _, pr in priced if pr < item.price)
        word = ORDINAL_WORDS[rank - 1] if rank <= len(ORDINAL_WORDS) else str(rank)
        at = f"at {money(item.price, item.currency)} it is the"
        if rank == 1:
            out.append(f"{at} cheapest of the {len(priced)} with a price")
        elif rank == len(priced):
            out.append(f"{at} most expensive of the {len(priced)} with a price")
        else:
            out.append(f"{at} {word} cheapest of the {len(priced)} with a price")
    return list(dict.fromkeys(out))


def why_answer(item: Item, shown: list[Item], state: DialogueState, reason: str | None = None) -> str:
    """"Why that one?": the reason, the facts of the record that support it (and where they
    are), and how the item compares with the other items shown."""
    shown = shown or [item]
    if item.id not in [i.id for i in shown]:
        shown = [*shown, item]
    pos = [i.id for i in shown].index(item.id) + 1
    context = state_context(state)
    reason = reason or answer_reasons(shown, context)[pos - 1]
    asked = asked_features(context)
    uses = choose_facts(item, [o for o in shown if o.id != item.id], asked, limit=4)
    name = f"#{pos} “{item.title}”" if item.id in state.last_shown else f"“{item.title}”"
    lines = [name, f"Why: {reason}"]
    support = _support_text(item, uses)
    if support:
        lines.append(f"What its record says: {support}.")
    else:
        lines.append("Its record states little beyond the title" + (f" and the category {item.category}" if item.category else "") + ".")
    compared = _comparison(item, pos, shown, uses, asked)
    if compared:
        others = len(shown) - 1
        lines.append(f"Compared with the other {others} shown: " + "; ".join(compared) + ".")
    return "\n".join(lines)


def constraints_of(state: DialogueState) -> dict[str, Any]:
    """The state's constraints as a client sees them: the shopper's words (and a model's reading
    of them) through the text screen."""

    def shown(values: list[str]) -> list[str]:
        return [v for v in (display(x) for x in values) if v]

    return {
        "need": display(" ".join(state.need)),
        "categories": shown(list(state.categories)),
        "brands": shown(list(state.brands)),
        "avoid_brands": shown(list(state.avoid_brands)),
        "price_min": state.price_min,
        "price_max": state.price_max,
        "features": shown(list(state.features)),
        "use_case": display(state.use_case) if state.use_case else state.use_case,
        "similar_to": list(state.similar_to),
        "rejected": list(state.rejected),
        "liked": list(state.liked),
    }


def description_facts(description: str, limit: int = 300) -> str:
    """The description's sentences that describe the product, cut to `limit` characters: the text
    screen (retrieval/screen.py) leaves out those that address the reader or a model."""
    return short(display(" ".join((description or "").split())), limit)
