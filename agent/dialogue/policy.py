"""The dialogue policy: what a reading of a message does to the state, and what to do next.

`apply` is the only place the shopper's constraints change. A turn either reacts to the items
shown (explain, answer, like, reject) or updates the request: a new product starts a new topic
(its constraints replace the old ones), a detail refines the current one ("with a metal body"),
and follow-ups move the constraints relative to what was shown ("cheaper" = below the cheapest
shown, "not that brand" = avoid the brand most of the list had).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.dialogue import patterns as P
from agent.dialogue.rules import Action, Understanding
from agent.dialogue.state import MAX_NEED_PARTS, DialogueState
from agent.text import content_stems, money, stems
from retrieval.catalog import Item

CENT = 0.01  # "cheaper than $19.99" means at most $19.98
MAX_SIMILAR = 3  # items "more like these" searches around


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
    cheapest: bool = False  # "the cheapest one": the current product's matches, cheapest first
    opening: str | None = None  # the shopper's own words when this message opens a topic (searched too)
    no_repeats: bool = False  # cheaper / pricier / other brand / more: earlier items would not answer it
    browse: bool = False  # "what do you have?" with no product yet: popular items (or history picks)


def apply(u: Understanding, state: DialogueState, items: dict[str, Item]) -> Plan:
    """Update `state` in place with the reading `u`; return what to do next."""
    notes = list(u.notes)
    if "reset" in u.flags:
        state.reset()
        if u.action in ("reset", "clarify") or not (u.has_product_signal() or "browse" in u.flags):
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
        state.focus = ref_ids[0] if ref_ids and u.question != "cheapest" else state.focus
        return Plan(u.action, item_ids=ref_ids, notes=notes)
    if u.action == "feedback":
        _like(state, ref_ids)
        return Plan("feedback", item_ids=ref_ids, notes=notes)

    # --- recommend: update constraints ---
    if u.feedback < 0:
        _reject(state, last_shown if "reject_all" in u.flags else ref_ids)
        ref_ids = []
    opens_topic = bool(u.need) and (not state.need or _is_new_topic(u, state))
    dropped = _update_request(u, state)
    if dropped:
        notes.append(f"A new search, so I dropped what you asked for before ({', '.join(dropped)}); say it again if it still holds.")

    shown_items = [items[i] for i in last_shown if i not in state.rejected] or [items[i] for i in last_shown]
    prev_price_max = state.price_max
    cheaper_than = fallback_price_max = None
    if "cheaper" in u.flags:
        cheaper_than, fallback_price_max, note = _cheaper(state, shown_items, items)
        notes += [note] if note else []
    if "pricier" in u.flags:
        note = _pricier(state, shown_items, items)
        notes += [note] if note else []
    cheapest = "cheapest" in u.flags
    if cheapest and not _has_prices(items):
        notes.append("This catalog lists no prices, so I can't tell which is cheapest; here are the closest matches.")
        cheapest = False
    if "other_brand" in u.flags:
        avoid = _brands_to_avoid(u, state, ref_ids, last_shown, shown_items, items)
        if not avoid:
            notes.append("The catalog lists no brand for what I showed, so I can't exclude it; name a brand to avoid.")
            if not (u.flags - {"other_brand", "all_brands"}) and not u.has_product_signal():
                return Plan("clarify", notes=notes)
        _avoid(state, avoid)
    if "similar" in u.flags and ref_ids:
        state.similar_to = ref_ids[:MAX_SIMILAR]
        state.focus = ref_ids[0]
    if fallback_price_max is not None and fallback_price_max <= (state.price_max or 0):
        fallback_price_max = None
    return Plan(
        "recommend",
        item_ids=ref_ids,
        include_shown="again" in u.flags or cheapest,
        notes=notes,
        fallback_price_max=fallback_price_max,
        cheaper_than=cheaper_than,
        prev_price_max=prev_price_max,
        more="more" in u.flags,
        cheapest=cheapest,
        opening=P.shopper_text(u.raw_text).strip() or None if opens_topic else None,
        no_repeats=bool(u.flags & {"more", "cheaper", "pricier", "other_brand"}),
        # and what follows a browse list without naming a product ("something else", "cheaper")
        browse=not state.has_constraints() and ("browse" in u.flags or bool(last_shown)),
    )


def is_refinement(u: Understanding, state: DialogueState) -> bool:
    """Does this message add detail to the current product rather than name a new one?"""
    words = content_stems(u.need)
    if not words:
        return True
    if set(words) & set(stems(" ".join(state.need))):
        return True
    if u.raw_text and (P.REFINE_LEAD.match(u.raw_text) or P.ONE_NOUN_RE.search(u.raw_text)):
        return True
    feature_stems = set(stems(" ".join(u.features)))
    return all(w in P.FEATURE_STEMS or w in P.COMPARATIVE_STEMS or w in feature_stems for w in words)


# --- the steps of apply -----------------------------------------------------------------------------------


def record_votes(state: DialogueState, ids: list[str], value: int) -> None:
    """A thumbs up (+1) or down (-1) on items: each id is liked or rejected, never both. Turns and
    the feedback buttons record votes through this one function."""
    keep, drop = (state.liked, state.rejected) if value > 0 else (state.rejected, state.liked)
    for item_id in ids:
        if item_id not in keep:
            keep.append(item_id)
        if item_id in drop:
            drop.remove(item_id)


def _like(state: DialogueState, ids: list[str]) -> None:
    record_votes(state, ids, 1)
    state.focus = ids[0] if ids else state.focus


def _reject(state: DialogueState, ids: list[str]) -> None:
    record_votes(state, ids, -1)
    if state.focus in ids:
        state.focus = None


def _is_new_topic(u: Understanding, state: DialogueState) -> bool:
    """A new product: another category, a switch word with new words ("now a lamp"), an open
    request for someone ("something for a student"), another product noun ("a red pen" after
    "a red stapler"), or product words that do not refine the current need ("a mystery novel"
    after "running shoes")."""
    if u.categories and (not state.categories or not set(u.categories) & set(state.categories)):
        return True
    if not state.need:
        return False
    if ("topic_switch" in u.flags or "open_request" in u.flags) and u.need:
        return True
    if u.categories:
        return False
    return _other_product(u, state) or bool(u.need and not is_refinement(u, state))


def _other_product(u: Understanding, state: DialogueState) -> bool:
    """Does the message name a product noun other than the current one? Not when it is "a ... one"
    (the current product), a feature word, a comparative, or a detail led in ("with ...")."""
    if not u.head or not state.head or stems(u.head) == stems(state.head):
        return False
    head = set(stems(u.head))
    if head & (P.FEATURE_STEMS | P.COMPARATIVE_STEMS | set(stems(" ".join(u.features)))):
        return False
    text = u.raw_text
    return not (P.ONE_NOUN_RE.search(text) or P.REFINE_LEAD.match(text) or set(stems(text)) & P.COMPARATIVE_STEMS)


def _update_request(u: Understanding, state: DialogueState) -> list[str]:
    """Fold the reading's product words, brands, prices and features into the state; on a new
    topic, the old topic's constraints go first. Returns those the message did not restate."""
    new_topic = _is_new_topic(u, state)
    before = _constraints(state)
    if new_topic:
        state.need, state.features, state.brands, state.similar_to, state.use_case, state.head = [], [], [], [], None, None
        state.avoid_brands = []
        state.price_min = state.price_max = None
        state.categories = list(u.categories)
        state.focus = None
    elif u.categories and not set(u.categories) <= set(state.categories):
        state.categories = list(dict.fromkeys(state.categories + u.categories))
    if u.need:
        state.need.append(u.need)
        del state.need[:-MAX_NEED_PARTS]
    if u.head and (state.head is None or new_topic):
        state.head = u.head
    if u.brands:
        state.brands = list(u.brands)
    _avoid(state, u.avoid_brands)
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
    if not new_topic:
        return []
    after = set(_constraints(state))
    return [c for c in before if c not in after]


def _constraints(state: DialogueState) -> list[str]:
    """The state's constraints in words ("not Fellowes", "quiet", "up to $20"), to say which were dropped."""
    out = [f"by {b}" for b in state.brands] + [f"not {b}" for b in state.avoid_brands] + list(state.features)
    if state.price_max is not None:
        out.append(f"up to {money(state.price_max)}")
    if state.price_min is not None:
        out.append(f"from {money(state.price_min)}")
    return out


def _avoid(state: DialogueState, brands: list[str]) -> None:
    for brand in brands:
        if brand not in state.avoid_brands:
            state.avoid_brands.append(brand)
        if brand in state.brands:
            state.brands.remove(brand)


def _has_prices(items: dict[str, Item]) -> bool:
    return any(it.price is not None for it in items.values())


def _cheaper(state: DialogueState, shown: list[Item], items: dict[str, Item]) -> tuple[float | None, float | None, str | None]:
    """Lower the budget below the cheapest item shown: (that price, the average as a fallback budget, a note)."""
    prices = [it.price for it in shown if it.price is not None]
    if not prices:
        if not _has_prices(items):
            return None, None, "This catalog has no prices, so I can't look for cheaper items."
        return None, None, "I haven't shown anything with a price yet; tell me a budget, e.g. 'under $20'."
    cheapest = min(prices)
    state.price_max = round(cheapest - CENT, 2)
    if state.price_min is not None and state.price_min > state.price_max:
        state.price_min = None
    return cheapest, round(sum(prices) / len(prices) - CENT, 2), None


def _pricier(state: DialogueState, shown: list[Item], items: dict[str, Item]) -> str | None:
    """Raise the floor above the dearest item shown."""
    prices = [it.price for it in shown if it.price is not None]
    if not prices:
        return None if _has_prices(items) else "This catalog has no prices, so I can't look for pricier items."
    state.price_min = round(max(prices) + CENT, 2)
    if state.price_max is not None and state.price_max < state.price_min:
        state.price_max = None
    return None


def _brands_to_avoid(u: Understanding, state: DialogueState, ref_ids: list[str], last_shown: list[str], shown: list[Item], items: dict[str, Item]) -> list[str]:
    """ "Not that brand": the brand of the item referred to or in focus, else the brand most of
    the list had (or the first item's); "not those brands": every brand shown."""
    if ref_ids:
        pool = [items[i] for i in ref_ids]
    elif state.focus in items and state.focus in last_shown:
        pool = [items[state.focus]]  # type: ignore[index]
    else:
        pool = shown
    if "all_brands" in u.flags or ref_ids:
        return [it.brand for it in pool if it.brand]
    top = Counter(it.brand for it in pool if it.brand).most_common(1)
    if top and (top[0][1] > 1 or len(pool) == 1):
        return [top[0][0]]
    return [it.brand for it in pool[:1] if it.brand]


# --- what the chat layer reports back after acting on a plan ------------------------------------------------


def relax_cheaper(state: DialogueState, plan: Plan) -> bool:
    """"Cheaper" found nothing below the cheapest item shown: look under the shown items' average
    price instead. False when the plan has no such fallback."""
    if plan.fallback_price_max is None:
        return False
    state.price_max = plan.fallback_price_max
    return True


def keep_budget(state: DialogueState, plan: Plan) -> None:
    """Nothing is cheaper than what was shown: the shopper keeps the budget they had."""
    state.price_max = plan.prev_price_max


def record_shown(state: DialogueState, ids: list[str]) -> bool:
    """Remember the items of an answer; True when it is the conversation's first list."""
    first_list = not state.shown
    state.last_shown = list(ids)
    state.shown = list(dict.fromkeys(state.shown + list(ids)))
    if state.focus not in ids:
        state.focus = None
    return first_list
