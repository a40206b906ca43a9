"""One chat turn after the message was read: act on the plan and compose the reply.

A `Turn` holds what a turn works with (the state, the plan, the catalog's parts) and what it
collects on the way (reply pieces, shown items, votes, timings, notes), so every action is a
method that reads and writes the turn instead of a function handed a bundle of out-parameters.
State changes go through `agent.dialogue`'s policy functions; replies are built from catalog
fields (`agent.chat.replies`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agent.chat.replies import (
    EXAMPLES,
    HINT,
    ItemLine,
    catalog_facts,
    clarify,
    description_facts,
    item_line,
    liked_reply,
    mentions_any,
    nothing_found,
    quote_around,
    similar_reason,
    small_talk,
    state_reasons,
    why_answer,
)
from agent.dialogue import DialogueState, Plan, Understanding, content_stems, keep_budget, record_shown, relax_cheaper
from agent.engines.base import EngineError, LLMEngine, Message
from agent.errors import UnknownItem
from agent.facts import brand_fact, must_haves, product_type, same_type, serves_other, shared_facts, stated_features
from agent.grounding import canonical_number, stated_numbers
from agent.recommend.must_have import unmet
from agent.recommend.pipeline import Recommendation, RecommendRequest
from agent.recommend.shown import ShownItem
from agent.text import money, stems, whole_sentences
from retrieval.catalog import Item
from retrieval.overlay import is_generated
from retrieval.screen import display
from retrieval.search import SearchFilters

if TYPE_CHECKING:
    from agent.chat.agent import CatalogParts

log = logging.getLogger(__name__)

MAX_SEARCHES_PER_TURN = 3  # a turn's first search is re-ranked; widening searches (retrieval only) stop after this
MIN_ITEMS = 3  # widen the search (another re-ranking pass) only when fewer items than this were found


@dataclass(frozen=True)
class TurnOptions:
    """The agent's knobs a turn needs."""

    k: int
    rank_mode: str
    llm_reasons: bool
    llm_intro: bool


BUSY_NOTE = "(Ordered by search relevance this time: the language model is busy with other shoppers.)"
# A turn never waits for a model (agent.recommend.loading): it says what its order was made without.
PENDING_NOTES = {
    "loading": "(Ordered by search this time: the shopping-history ranking is still loading.)",
    "training": "(Ranked without the sequence models this time: they are still being trained.)",
}


@dataclass
class Turn:
    state: DialogueState
    understanding: Understanding
    plan: Plan
    parts: CatalogParts
    options: TurnOptions
    engine: LLMEngine | None = None  # for the optional LLM intro
    timings: dict[str, float] = field(default_factory=dict)
    debug: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    shown: list[ShownItem] = field(default_factory=list)
    votes: list[tuple[str, int]] = field(default_factory=list)  # feedback to store: (item id, +1 / -1)
    searches_left: int = MAX_SEARCHES_PER_TURN

    def __post_init__(self) -> None:
        u = self.understanding
        self.debug.update(flags=sorted(u.flags), llm_extract=u.llm_used, llm_dropped=u.llm_dropped)
        self.notes = list(self.plan.notes)

    @property
    def reply(self) -> str:
        return "".join(self.pieces)

    def _emit(self, piece: str) -> str:
        """The piece as the shopper sees it: through the text screen, whatever built it (catalog
        fields, the shopper's own words restated, the LLM's intro); an item line stays one."""
        piece = ItemLine(display(piece)) if isinstance(piece, ItemLine) else display(piece)
        self.pieces.append(piece)
        return piece

    # --- the action ----------------------------------------------------------------------------------

    def run(self) -> Iterator[str]:
        """Act on the plan, yielding reply pieces as they are ready."""
        state, plan, u, items = self.state, self.plan, self.understanding, self.parts.items
        if plan.action == "recommend":
            if u.feedback < 0:
                self.votes = [(i, -1) for i in state.rejected if i in state.last_shown]
            for piece in self._recommend():
                yield self._emit(piece)
        elif plan.action == "explain":
            for piece in self._explain(plan.item_ids[0]):
                yield self._emit(piece)
        elif plan.action == "answer" and u.question == "cheapest":
            yield self._emit(self._cheapest(plan.item_ids))
        elif plan.action == "answer":
            yield self._emit(self._answer(plan.item_ids[0], u.question))
        elif plan.action == "feedback":
            self.votes = [(i, 1) for i in plan.item_ids]
            yield self._emit(liked_reply(plan.item_ids, state, items))
        elif plan.action == "small_talk":
            yield self._emit(small_talk(u.small_talk, state.catalog, bool(state.last_shown)))
        elif plan.action == "reset":
            yield self._emit("OK, starting over. What are you looking for? For example: " + "; ".join(f"“{e}”" for e in EXAMPLES.get(state.catalog, [])[:2]) + ".")
        else:  # clarify
            yield self._emit(" ".join(self.notes) if self.notes else clarify(state.catalog))
            self.notes = []
        if self.notes:
            yield self._emit(("\n" if self.pieces else "") + " ".join(self.notes))

    # --- recommend -----------------------------------------------------------------------------------

    def _recommend(self) -> Iterator[str]:
        state, plan, parts = self.state, self.plan, self.parts
        if plan.browse:
            yield from self._browse()
            return
        if not state.has_constraints() and not state.avoid_brands and state.price_max is None and state.price_min is None:
            yield clarify(state.catalog)
            return
        described = state.describe()
        yield f"Looking for {described}.\n" if described else "Looking…\n"
        if self.options.llm_intro:
            intro = self._llm_intro()
            if intro:
                yield intro + "\n"

        found, closest = self._search()
        if not found and relax_cheaper(state, plan):
            self.searches_left = max(self.searches_left, 1)
            found, closest = self._search()
            if found:
                self.notes.insert(0, f"Nothing is cheaper than everything I showed, so these are under their average price ({money(state.price_max)}).")
        unknown_word = bool(state.head) and not set(stems(state.head)) & parts.vocab.word_stems
        if not found and closest and unknown_word and not plan.no_repeats:
            found = closest
            self.notes.insert(0, f"Nothing in the catalog mentions “{state.head or ' '.join(state.need[-1:])}” with these constraints; these are the closest items.")
        if not found and plan.cheaper_than is not None:
            keep_budget(state, plan)
            yield f"Nothing cheaper than {money(plan.cheaper_than)} matches “{' '.join(state.need[-2:]) or 'this'}” in the {state.catalog} catalog; what I showed is the cheapest I have."
            return
        if not found:
            yield nothing_found(state, plan)
            return
        if plan.cheapest:
            found = sorted(found, key=lambda r: (r.item.price is None, r.item.price or 0.0))[: self.options.k]
            self.notes.append("Cheapest first, among the closest matches.")
        missing = unmet([r.item for r in found], must_haves(state.features))
        if missing:  # a stated constraint is never broken silently
            self.notes.append(f"Nothing I found says {' or '.join(f'“{f}”' for f in missing)}; these are the closest matches.")
        yield from self._list(found)

    def _browse(self) -> Iterator[str]:
        """"What do you have?": the ranking stage's picks (the catalog's most popular items for a new
        shopper, what goes with their history for a returning one) and a question naming a few kinds
        of product the catalog sells; only the question when there is nothing to rank by (a catalog
        without a history, or the stage still loading). "Something else", "cheaper" or "not that
        brand" after such a list go on browsing with the new filters."""
        kinds = self.parts.kinds(4)
        question = (
            "To narrow it down, what kind of product are you after? For example: " + ", ".join(kinds[:-1]) + f" or {kinds[-1]}."
            if len(kinds) > 1
            else clarify(self.state.catalog)
        )
        asked = "browse" in self.understanding.flags  # not a follow-up ("something else") of a browse list
        found, _ = self._search()
        if not found and relax_cheaper(self.state, self.plan):
            self.searches_left = max(self.searches_left, 1)
            found, _ = self._search()
            if found:
                self.notes.insert(0, f"Nothing is cheaper than everything I showed, so these are under their average price ({money(self.state.price_max)}).")
        if not found:
            self.notes = [n for n in self.notes if n not in PENDING_NOTES.values()]  # no order to explain
            if self.plan.cheaper_than is not None:
                keep_budget(self.state, self.plan)
            yield question if asked else nothing_found(self.state, self.plan)
            return
        returning = any(i in self.parts.items for i in [*self.state.history, *self.state.liked])
        yield "Here are picks that go with what you bought before.\n" if returning else "Here are some of the catalog's most popular items.\n"
        if asked:
            self.notes.insert(0, question)
        yield from self._list(found)

    def _list(self, found: list[Recommendation]) -> Iterator[str]:
        """The found items as numbered lines with their reasons; records them as shown."""
        state = self.state
        t = time.perf_counter()
        templates = state_reasons([r.item for r in found], state)  # aisle#16: one answer's reasons together
        liked = self._liked()
        for n, rec in enumerate(found, start=1):
            reason, grounded, source = rec.reason, rec.grounded, rec.reason_source
            if not reason:
                reason, grounded, source = templates[n - 1], True, "template"
            if liked is not None:
                reason = f"{reason} {similar_reason(rec.item, liked)}".strip()
            self.shown.append(ShownItem.of(rec.item, reason=reason, grounded=grounded, reason_source=source, score=round(rec.score, 4)))
            yield item_line(n, rec.item, reason)
        if not self.options.llm_reasons:
            self.timings["reasons"] = self.timings.get("reasons", 0.0) + (time.perf_counter() - t) * 1e3
        if record_shown(state, [s.id for s in self.shown]):
            self.notes.append(HINT)

    def _search(self) -> tuple[list[Recommendation], list[Recommendation]]:
        """Run the attempts until k relevant items are found.

        Returns (relevant items, the first attempt's closest items when none was relevant).
        "Relevant" = the item's text mentions the product noun ("shoes"); without that gate a small
        catalog fills the list with whatever is left (printer paper for "running shoes"). An item
        whose title names the noun only as what it is for ("Shredder Oil") comes after the products,
        where the catalog sells the noun on its own (not ink: "Ink Cartridge" is how ink is sold;
        a filter instead of the demotion lost 13 points of success@5 in the simulator). Items whose
        title names an avoided brand are dropped even when their brand field is empty. The gate runs
        inside the recommender, before ranking, so the ranker orders only showable items."""
        state, parts = self.state, self.parts
        k = self._k()
        head = stems(state.head)[:1] if state.head else []
        avoid = [tuple(stems(f)) for b in state.avoid_brands for f in parts.vocab.brand_family(b)]

        liked = self._liked()
        noun = stems(state.head or "")

        def made_for(item: Item) -> bool:
            return serves_other(item, noun)

        def ok(item: Item) -> bool:
            if liked is not None:
                if not same_type(item, liked):  # "more like that": the same kind of product
                    return False
            elif head and not mentions_any(item, head):
                return False
            # An unbranded item whose title starts with an avoided brand ("Swingline Optima ..." with no
            # brand field); "ink for HP 61" by another maker is fine.
            return not (avoid and not item.brand and any(tuple(stems(item.title)[: len(a)]) == a for a in avoid))

        found: list[Recommendation] = []
        closest: list[Recommendation] = []
        seen: set[str] = set()
        for note, include_shown, categories in self._attempts():
            if len(found) >= min(k, MIN_ITEMS) or self.searches_left <= 0:
                break
            # Only the first search is re-ranked by the LLM: widening/top-up searches are fallbacks, and
            # another re-ranking pass would double the turn's latency on a CPU.
            first = self.searches_left == MAX_SEARCHES_PER_TURN
            req = self._request(include_shown=include_shown, categories=categories, exclude=seen, rank_mode=None if first else "none")
            req.relevant = ok
            if head and liked is None and parts.sold_on_its_own(noun):
                req.demote = made_for
            if req.query is None and not req.history and not self.plan.browse:
                break
            result = parts.recommender.recommend(req)
            self.searches_left -= 1
            self.debug["searches"] = self.debug.get("searches", 0) + 1
            for key in ("retrieval", "rank", "reasons"):
                self.timings[key] = self.timings.get(key, 0.0) + result.timings_ms.get(key, 0.0)
            self.debug.update(llm_valid=result.llm_valid, fallback=result.fallback, n_candidates=result.n_candidates)
            if result.fallback and result.fallback.startswith("LLMBusy") and BUSY_NOTE not in self.notes:
                self.notes.append(BUSY_NOTE)  # say so: the order is the search's, not the model's
            if result.pending:
                self.debug["pending"] = result.pending
                if PENDING_NOTES[result.pending] not in self.notes:
                    self.notes.append(PENDING_NOTES[result.pending])
            if not closest and not found:
                closest = [r for r in result.closest if r.item.id not in seen]
            new = [r for r in result.items if r.item.id not in seen][: k - len(found)]
            if new and note and found:
                self.notes.append(note)
            elif new and note:
                self.notes.append(note.replace("I also looked", "I looked").replace("Few items matched", "Nothing matched"))
            found.extend(new)
            seen.update(r.item.id for r in new)
        return found, ([] if found else closest)

    def _liked(self) -> Item | None:
        """The item "more like that" is about, if this turn asks for similar items."""
        ids = [i for i in self.state.similar_to if i in self.parts.items]
        return self.parts.items[ids[0]] if ids else None

    def _k(self) -> int:
        """Items to find: for "the cheapest one", every candidate, so the cheapest can be picked from them."""
        return self.parts.recommender.n_candidates if self.plan.cheapest else self.options.k

    def _attempts(self) -> list[tuple[str | None, bool, list[str]]]:
        """Searches to run in order until k items are found: (note shown if used, include_shown, categories)."""
        plan, vocab = self.plan, self.parts.vocab
        cats = list(self.state.categories)
        wider = list(dict.fromkeys(vocab.parents.get(c, "") for c in cats if vocab.parents.get(c)))
        attempts: list[tuple[str | None, bool, list[str]]] = [(None, plan.include_shown, cats)]
        if wider:
            attempts.append((f"I also looked in the wider category {' / '.join(wider)}.", plan.include_shown, wider))
        if not plan.include_shown and not plan.no_repeats:
            attempts.append(("Nothing else new matches, so I included earlier suggestions.", True, wider or cats))
        if cats:
            attempts.append((f"Few items matched in {' / '.join(wider or cats)}, so I looked in every category.", plan.include_shown, []))
        return attempts

    def _request(self, *, include_shown: bool, categories: list[str], exclude: Collection[str] = (), rank_mode: str | None = None) -> RecommendRequest:
        state, vocab = self.state, self.parts.vocab
        excluded = set(state.rejected) | set(exclude)
        if not include_shown:
            excluded |= set(state.shown)
        conversation = [Message(role=m["role"], content=m["content"]) for m in state.recent]
        query = state.query()
        history: list[str] = []
        if state.similar_to:
            # "more like the second one": the recommender's similar-items path runs only when it has
            # no text to search, so the query and the user's messages stay out of this request.
            history = list(state.similar_to)
            query = None
            conversation = [m for m in conversation if m["role"] != "user"]
        elif self.plan.browse:
            # "what do you have?" is no product: the ranking stage orders the catalog without words.
            conversation = [m for m in conversation if m["role"] != "user"]
        elif not query:
            query = " ".join(state.categories + state.brands) or None
        if not state.similar_to and (state.history or state.liked):
            # What the shopper bought before and what they liked here are their history: the ranking
            # stage (agent/recommend/ltr.py) orders the search hits by what goes with them.
            history = list(dict.fromkeys(i for i in [*state.history, *state.liked] if i in self.parts.items))
        filters = state.filters(with_categories=False)
        if categories:
            filters = replace(filters or SearchFilters(), categories=tuple(categories))
        if filters is not None and (filters.brands or filters.exclude_brands):
            # "Swingline" also means "Swingline GBC"; "Bostitch" also "Stanley Bostitch".
            filters = replace(
                filters,
                brands=tuple(dict.fromkeys(f for b in filters.brands for f in vocab.brand_family(b))),
                exclude_brands=tuple(dict.fromkeys(f for b in filters.exclude_brands for f in vocab.brand_family(b))),
            )
        return RecommendRequest(
            query=query,
            history=history,
            filters=filters,
            exclude_ids=sorted(excluded),
            k=self._k(),
            conversation=conversation,
            rank_mode=rank_mode or self.options.rank_mode,
            with_reasons=self.options.llm_reasons and not self.plan.cheapest,
            llm_reasons=self.options.llm_reasons,
            must_have=self._must_haves(),
            shopper_text=self.plan.opening if query and not state.similar_to else None,
        )

    def _must_haves(self) -> tuple[str, ...]:
        """The shopper's features and stated facts ("cross-cut", "8 sheets"); for "more like that",
        the picked item's own facts, so the items sharing most of them come first."""
        state, liked = self.state, self._liked()
        own = shared_facts(liked, liked) if liked is not None else []
        return must_haves([*state.features, *stated_features(state.need), *own])

    # --- explain and answer ----------------------------------------------------------------------------

    def _explain(self, item_id: str) -> Iterator[str]:
        """"Why that one?" (`why_answer`): the reason (the LLM's, grounding-checked, with
        `llm_reasons`, else the template over the item's facts), the facts of its record that
        support it, and how it compares with the other shown items."""
        state = self.state
        item = self.parts.items[item_id]
        shown = [self.parts.items[i] for i in state.last_shown if i in self.parts.items]
        if not self.options.llm_reasons:  # aisle#16: the reason, its facts and how it compares with the others shown
            yield why_answer(item, shown, state)
            return
        req = RecommendRequest(query=state.query(), conversation=[Message(role=m["role"], content=m["content"]) for m in state.recent], k=self.options.k)
        t = time.perf_counter()
        reason, grounded = "", False
        if self.options.llm_reasons:  # otherwise the same catalog-field reason the item was shown with
            try:
                reason, grounded = self.parts.recommender.explain(item_id, req)
            except UnknownItem:
                pass
        self.timings["reasons"] = (time.perf_counter() - t) * 1e3
        yield why_answer(item, shown, state, reason=whole_sentences(reason) if reason and grounded else None)

    def _cheapest(self, item_ids: list[str]) -> str:
        """"Which one is cheapest?": of the items shown, by their catalog prices."""
        items = [self.parts.items[i] for i in item_ids if i in self.parts.items]
        priced = [(it.price, n, it) for n, it in enumerate(items, start=1) if it.price is not None]
        if not priced:
            return "The catalog lists no prices for these items, so I can't tell which is cheapest."
        price, n, item = min(priced, key=lambda p: (p[0], p[1]))
        unpriced = len(items) - len(priced)
        extra = f" ({unpriced} of them have no price in the catalog.)" if unpriced else ""
        return f"#{n} “{item.title}” is the cheapest I showed, at {money(price, item.currency)}.{extra}"

    def _answer(self, item_id: str, question: str) -> str:
        """Answer a question about a shown item quoting only its record: catalog fields, and generated
        copy only when the shop shows it (labelled as generated)."""
        state = self.state
        item = self.parts.items[item_id]
        generated = is_generated(item)  # shown generated copy (show_generated_copy) is labelled as such
        n = state.last_shown.index(item_id) + 1 if item_id in state.last_shown else None
        name = f"#{n} “{item.title}”" if n else f"“{item.title}”"
        if question == "price":
            return f"{name} is listed at {money(item.price, item.currency)}." if item.price is not None else f"The catalog has no price for {name}."
        if question == "brand":
            maker = brand_fact(item)
            if maker is None:
                return f"The catalog lists no brand for {name}."
            source = "the catalog's brand field" if maker.field == "brand" else f"its title starts with “{maker.quote(item)}”; the catalog's brand field is empty"
            return f"{name} is by {maker.value} ({source})."
        if question == "category":
            if item.categories:
                return f"{name} is listed under {' > '.join(item.categories)}."
            kind = product_type(item)
            said = f"; its title calls it a {kind.value}" if kind is not None and kind.field == "title" else ""
            return f"The catalog has no category for {name}{said}."
        if question.startswith("has:"):
            what = question[4:].strip()
            words = content_stems(what)
            haystack = stems(item.title + " " + item.description)
            found = [w for w in words if w in haystack]
            # a number is confirmed only as a number the record states: "1/4" holds no 1
            stated = stated_numbers(item.title + "\n" + item.description)
            if any(w.replace(".", "", 1).isdigit() and canonical_number(w) not in stated for w in words):
                found = []
            if words and len(found) == len(words):
                snippet = quote_around(item.title + ". " + description_facts(item.description, 3000), words)
                source = "generated copy (written by aisle, not the catalog)" if generated else "catalog text"
                return f"The {source} for {name} mentions {what}: “{snippet}”. Check the full description before buying."
            return f"The catalog description of {name} doesn't mention {what}, so I can't confirm it."
        desc = description_facts(item.description, 300)
        lines = [f"{name}", f"From the catalog: {catalog_facts(item)}."]
        label = "Generated description (written by aisle, not the catalog)" if generated else "Description"
        lines.append(f"{label}: “{desc}”" if desc else "The catalog has no description for it.")
        return "\n".join(lines)

    def _llm_intro(self) -> str:
        """A one-line opener from the LLM, shown only if it names nothing the user did not say."""
        from agent.grounding import check_grounding
        from agent.prompts import PromptError, render_messages

        if self.engine is None:
            return ""
        state = self.state
        user_texts = [m["content"] for m in state.recent if m["role"] == "user"]
        try:
            messages = render_messages("reply.v1", wants=state.describe(), messages=user_texts[-3:])
            text = self.engine.chat(messages, max_tokens=32)
        except (EngineError, PromptError) as exc:
            log.info("LLM intro skipped: %s", exc)
            return ""
        text = " ".join(text.split())
        text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0][:160]
        if not text or re.search(r"\d", text):
            return ""
        # The intro may only restate what the shopper asked for; it names no item fact.
        report = check_grounding(text, (), request_evidence=user_texts + [state.describe()], catalog_brands=self.parts.recommender.brands, restates_request=True)
        return text if report.ok else ""
