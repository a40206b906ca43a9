"""The conversational turn pipeline: message -> dialogue state -> recommendations -> reply.

One `Agent` serves many sessions (UI, HTTP API, CLI, LangChain) and catalogs. Per turn:

1. check the message (non-empty, at most MAX_MESSAGE_CHARS), load the session's state;
2. understand it (`agent.dialogue.rules`: rules, optionally a validated LLM extraction) and update the state;
3. act: recommend (retrieval with the state's filters, excluding rejected and already-shown items,
   re-ranking, reasons), explain an item (`Recommender.explain`, no retrieval), answer a question
   about a shown item from catalog fields only, record a like, small talk, reset;
4. compose the reply from templates (fast, and it cannot invent catalog facts), streaming it in
   pieces; save the new state and the turn in the session store.

Why templates by default: with the packaged 135M model on a shared CPU, an LLM sentence costs
seconds and is often wrong; the reply must stay under ~2 s and never state a fact the catalog
does not hold. `llm_reasons=True` uses the recommender's LLM reasons (grounding-checked), and
`llm_intro=True` lets the LLM write a one-line opener, checked before it is shown.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agent.chat.replies import (
    EXAMPLES,
    HINT,
    catalog_facts,
    clarify,
    constraints_of,
    description_facts,
    item_line,
    liked_reply,
    match_reason,
    mentions_any,
    nothing_found,
    quote_around,
    small_talk,
)
from agent.chat.store import ConcurrentUpdate, SessionStore, UnknownSession
from agent.dialogue import (
    CatalogVocab,
    DialogueState,
    Plan,
    Understander,
    Understanding,
    apply,
    content_stems,
    record_votes,
)
from agent.engines import LazyEngine
from agent.engines.base import EngineError, LLMEngine, Message
from agent.errors import BadRequest, CatalogMismatch, EmptyMessage, InvalidText, MessageTooLong, UnknownCatalog, UnknownItem
from agent.recommend.pipeline import Recommendation, Recommender, RecommendRequest
from agent.recommend.shown import ShownItem
from agent.settings import Settings
from agent.text import money, stems, visible, whole_sentences
from retrieval.catalog import LOADERS, Item
from retrieval.search import HybridSearcher, SearchFilters

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
MAX_SEARCHES_PER_TURN = 3  # a turn's first search is re-ranked; widening searches (retrieval only) stop after this
MIN_ITEMS = 3  # widen the search (another re-ranking pass) only when fewer items than this were found
__all__ = [
    "Agent",
    "ConcurrentUpdate",
    "ShownItem",
    "TurnResult",
    "UnknownSession",
    "check_message",
]


def check_message(message: object) -> str:
    """The message, trimmed and without control characters; EmptyMessage / MessageTooLong otherwise."""
    if not isinstance(message, str):
        raise BadRequest(f"message must be text, got {type(message).__name__}")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidText(f"message holds a character that is not valid Unicode text (position {exc.start}); send UTF-8 text") from exc
    text = visible(message).strip()
    if not text:
        raise EmptyMessage("message is empty; say what you are looking for, e.g. 'a quiet stapler'")
    if len(text) > MAX_MESSAGE_CHARS:
        raise MessageTooLong(f"message is {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}. Send a shorter message.")
    return text


@dataclass
class TurnResult:
    session_id: str
    catalog: str
    reply: str
    items: list[ShownItem]
    action: str  # recommend | explain | answer | feedback | small_talk | reset | clarify
    turn_no: int
    constraints: dict[str, Any]  # the state's active constraints after this turn
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)  # understand, retrieval, rank, reasons, total
    debug: dict[str, Any] = field(default_factory=dict)  # llm_valid, fallback, llm_dropped, relaxed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timings_ms"] = {k: round(v, 1) for k, v in self.timings_ms.items()}
        return d

    def public(self) -> dict[str, Any]:
        """What a shopper-facing client receives (API, LangChain): no timings or debug data."""
        return {
            "session_id": self.session_id,
            "reply": self.reply,
            "items": [i.to_dict() for i in self.items],
            "action": self.action,
            "turn_no": self.turn_no,
            "catalog": self.catalog,
            "constraints": self.constraints,
        }


@dataclass
class _CatalogParts:
    recommender: Recommender
    vocab: CatalogVocab
    understander: Understander

    @property
    def items(self) -> dict[str, Item]:
        return self.recommender.catalog.items


class Agent:
    """Sessions + understanding + recommendation + replies. Thread-safe; share one per process.

    Defaults are the fast CPU profile measured in bench/chat.py: 10 candidates re-ranked in one
    forward pass (one candidate order), reasons from catalog fields, rules-only understanding for
    the packaged model. `llm_reasons`, `llm_extract`, `llm_intro`, `n_candidates`, `n_orders`
    trade latency for more LLM involvement.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: SessionStore | None = None,
        engine: LLMEngine | None = None,
        searchers: dict[str, HybridSearcher] | None = None,
        default_catalog: str | None = None,
        k: int | None = None,
        rank_mode: str | None = None,
        n_candidates: int | None = None,
        n_orders: int | None = None,
        llm_reasons: bool | None = None,
        llm_extract: bool | None = None,
        llm_intro: bool | None = None,
        build_index: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store or SessionStore(settings.sessions_db)
        self.default_catalog = default_catalog or settings.catalog
        # Keyword arguments override the settings' knobs for this agent (tests, benchmarks).
        self.k = k if k is not None else settings.k
        self.rank_mode = rank_mode if rank_mode is not None else settings.rank_mode
        self.n_candidates = n_candidates if n_candidates is not None else settings.chat_candidates
        self.n_orders = n_orders if n_orders is not None else settings.n_orders
        self.llm_reasons = llm_reasons if llm_reasons is not None else settings.llm_reasons
        # The packaged 135M model extracts wrong values slowly (measured ~8 s, invented brands):
        # LLM extraction is on by default only for a model the user chose.
        if llm_extract is None:
            llm_extract = settings.llm_extract
        self.llm_extract = llm_extract if llm_extract is not None else (settings.llm != "transformers" or settings.llm_model is not None)
        self.llm_intro = llm_intro if llm_intro is not None else settings.llm_intro
        self.build_index = build_index
        self._engine = LazyEngine(settings, engine)
        self._searchers = dict(searchers or {})
        self._parts: dict[str, _CatalogParts] = {}
        self._lock = threading.RLock()
        self._session_locks: dict[str, threading.Lock] = {}

    # --- shared parts ----------------------------------------------------------------------------------

    def catalogs(self) -> list[str]:
        """The built-in catalogs and any catalog this agent was given a searcher for."""
        return list(dict.fromkeys([*LOADERS, *self._searchers]))

    def engine(self) -> LLMEngine | None:
        """The shared LLM engine (built once); None when it cannot load (the agent then ranks by retrieval)."""
        return self._engine.get()

    def parts(self, catalog: str) -> _CatalogParts:
        if catalog not in self.catalogs():
            raise UnknownCatalog(f"unknown catalog {catalog!r}; choose one of: {', '.join(self.catalogs())}")
        with self._lock:
            parts = self._parts.get(catalog)
            if parts is None:
                searcher = self._searchers.get(catalog)
                if searcher is None:
                    from retrieval.search import open_searcher

                    searcher = open_searcher(self.settings, catalog, build=self.build_index, progress=False)
                    self._searchers[catalog] = searcher
                engine = self.engine() if (self.rank_mode != "none" or self.llm_reasons or self.llm_extract) else None
                rec = Recommender(
                    self.settings,
                    catalog,
                    engine=engine,
                    searcher=searcher,
                    n_candidates=max(self.n_candidates, self.k),
                    n_orders=self.n_orders,
                )
                vocab = CatalogVocab.from_catalog(searcher.catalog)
                parts = _CatalogParts(rec, vocab, Understander(vocab, engine=engine, llm_extract=self.llm_extract))
                self._parts[catalog] = parts
            return parts

    def warm_up(self, catalog: str | None = None) -> None:
        """Load the index, vocabularies and the model now instead of on the first message."""
        self.parts(catalog or self.default_catalog)
        if self.rank_mode != "none" or self.llm_reasons:
            self.engine()

    def _session_lock(self, session_id: str) -> threading.Lock:
        with self._lock:
            return self._session_locks.setdefault(session_id, threading.Lock())

    # --- sessions ------------------------------------------------------------------------------------------

    def new_session(self, catalog: str | None = None) -> str:
        catalog = catalog or self.default_catalog
        if catalog not in self.catalogs():
            raise UnknownCatalog(f"unknown catalog {catalog!r}; choose one of: {', '.join(self.catalogs())}")
        return self.store.create(catalog, DialogueState(catalog=catalog).model_dump())

    def session_info(self, session_id: str) -> dict[str, Any]:
        rec = self.store.get(session_id)
        return {
            "session_id": rec.id,
            "catalog": rec.catalog,
            "created_at": rec.created_at,
            "updated_at": rec.updated_at,
            "state": rec.state,
            "turns": [{"turn_no": t.turn_no, "message": t.message, "reply": t.reply, "items": t.payload.get("items", []), "action": t.payload.get("action")} for t in self.store.turns(session_id)],
            "feedback": self.store.feedback(session_id),
        }

    def feedback(self, session_id: str, item_id: str, value: int) -> dict[str, Any]:
        """Thumbs up (+1) / down (-1): stored, and folded into the state (a rejected item never returns)."""
        if value not in (1, -1):
            raise BadRequest("value must be 1 (thumbs up) or -1 (thumbs down)")
        rec = self.store.get(session_id)
        parts = self.parts(rec.catalog)
        if item_id not in parts.items:
            raise UnknownItem(f"item {item_id!r} is not in catalog {rec.catalog!r}")
        with self._session_lock(session_id):
            rec = self.store.get(session_id)
            state = DialogueState.model_validate(rec.state)
            record_votes(state, [item_id], value)
            self.store.set_feedback(session_id, item_id, value)
            self.store.save_state(session_id, state.model_dump(), expected_version=rec.version)
        return {"session_id": session_id, "item_id": item_id, "value": value}

    # --- turns ---------------------------------------------------------------------------------------------

    def turn(self, session_id: str | None, message: str, *, catalog: str | None = None) -> TurnResult:
        result: TurnResult | None = None
        for piece in self.turn_stream(session_id, message, catalog=catalog):
            if isinstance(piece, TurnResult):
                result = piece
        assert result is not None
        return result

    def turn_stream(self, session_id: str | None, message: str, *, catalog: str | None = None) -> Iterator[str | TurnResult]:
        """Yield reply text pieces as they are ready, then the TurnResult (whose reply is their concatenation)."""
        text = check_message(message)
        if session_id is None:
            session_id = self.new_session(catalog)
        record = self.store.get(session_id)
        if catalog is not None and catalog != record.catalog:
            raise CatalogMismatch(f"session {session_id} uses catalog {record.catalog!r}, not {catalog!r}; start a new session for {catalog!r}")
        parts = self.parts(record.catalog)
        with self._session_lock(session_id):
            yield from self._turn_locked(session_id, text, parts)

    def _turn_locked(self, session_id: str, text: str, parts: _CatalogParts) -> Iterator[str | TurnResult]:
        t0 = time.perf_counter()
        record = self.store.get(session_id)
        state = DialogueState.model_validate(record.state)
        items = parts.items
        u = parts.understander.understand(text, state, items)
        plan = apply(u, state, items)
        timings: dict[str, float] = {"understand": (time.perf_counter() - t0) * 1e3}
        state.remember("user", text)
        state.turns += 1

        pieces: list[str] = []

        def emit(piece: str) -> str:
            pieces.append(piece)
            return piece

        shown: list[ShownItem] = []
        debug: dict[str, Any] = {"flags": sorted(u.flags), "llm_extract": u.llm_used, "llm_dropped": u.llm_dropped}
        notes = list(plan.notes)
        feedback_votes: list[tuple[str, int]] = []

        if plan.action == "recommend":
            if u.feedback < 0:
                feedback_votes = [(i, -1) for i in state.rejected if i in state.last_shown]
            gen = self._recommend(state, parts, plan, u, timings, debug, notes)
            for piece in gen:
                if isinstance(piece, list):
                    shown = piece
                else:
                    yield emit(piece)
        elif plan.action == "explain":
            for piece in self._explain(plan.item_ids[0], state, parts, timings):
                yield emit(piece)
        elif plan.action == "answer":
            yield emit(self._answer(plan.item_ids[0], u.question, state, items))
        elif plan.action == "feedback":
            feedback_votes = [(i, 1) for i in plan.item_ids]
            yield emit(liked_reply(plan.item_ids, state, items))
        elif plan.action == "small_talk":
            yield emit(small_talk(u.small_talk, state.catalog, bool(state.last_shown)))
        elif plan.action == "reset":
            yield emit("OK, starting over. What are you looking for? For example: " + "; ".join(f"“{e}”" for e in EXAMPLES.get(state.catalog, [])[:2]) + ".")
        else:  # clarify
            yield emit(" ".join(notes) if notes else clarify(state.catalog))
            notes = []
        if notes:
            yield emit(("\n" if pieces else "") + " ".join(notes))

        reply = "".join(pieces)
        summary = ("Showed: " + "; ".join(s.title[:60] for s in shown)) if shown else reply
        state.remember("assistant", summary)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        payload = {"action": plan.action, "items": [s.id for s in shown], "flags": sorted(u.flags), "notes": notes, "timings_ms": {k: round(v, 1) for k, v in timings.items()}}
        for item_id, value in feedback_votes:
            self.store.set_feedback(session_id, item_id, value)
        turn_no = self.store.record_turn(session_id, text, reply, payload, state=state.model_dump(), expected_version=record.version)
        yield TurnResult(
            session_id=session_id,
            catalog=state.catalog,
            reply=reply,
            items=shown,
            action=plan.action,
            turn_no=turn_no,
            constraints=constraints_of(state),
            notes=notes,
            timings_ms=timings,
            debug=debug,
        )

    # --- actions -----------------------------------------------------------------------------------------

    def _request(
        self, state: DialogueState, vocab: CatalogVocab, *, include_shown: bool, categories: list[str], exclude: Collection[str] = (), rank_mode: str | None = None
    ) -> RecommendRequest:
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
        elif not query:
            query = " ".join(state.categories + state.brands) or None
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
            k=self.k,
            conversation=conversation,
            rank_mode=rank_mode or self.rank_mode,
            with_reasons=self.llm_reasons,
        )

    def _attempts(self, state: DialogueState, plan: Plan, vocab: CatalogVocab) -> list[tuple[str | None, bool, list[str]]]:
        """Searches to run in order until k items are found: (note shown if used, include_shown, categories)."""
        cats = list(state.categories)
        wider = list(dict.fromkeys(vocab.parents.get(c, "") for c in cats if vocab.parents.get(c)))
        attempts: list[tuple[str | None, bool, list[str]]] = [(None, plan.include_shown, cats)]
        if wider:
            attempts.append((f"I also looked in the wider category {' / '.join(wider)}.", plan.include_shown, wider))
        if not plan.include_shown and not plan.no_repeats:
            attempts.append(("Nothing else new matches, so I included earlier suggestions.", True, wider or cats))
        if cats:
            attempts.append((f"Few items matched in {' / '.join(wider or cats)}, so I looked in every category.", plan.include_shown, []))
        return attempts

    def _recommend(
        self,
        state: DialogueState,
        parts: _CatalogParts,
        plan: Plan,
        u: Understanding,
        timings: dict[str, float],
        debug: dict[str, Any],
        notes: list[str],
    ) -> Iterator[str | list[ShownItem]]:
        if not state.has_constraints() and not state.avoid_brands and state.price_max is None and state.price_min is None:
            yield clarify(state.catalog)
            return
        described = state.describe()
        yield f"Looking for {described}.\n" if described else "Looking…\n"
        if self.llm_intro:
            intro = self._llm_intro(state, parts)
            if intro:
                yield intro + "\n"

        budget = [MAX_SEARCHES_PER_TURN]
        found, closest = self._search(state, parts, plan, timings, debug, notes, budget)
        if not found and plan.fallback_price_max is not None:
            state.price_max = plan.fallback_price_max
            budget[0] = max(budget[0], 1)
            found, closest = self._search(state, parts, plan, timings, debug, notes, budget)
            if found:
                notes.insert(0, f"Nothing is cheaper than everything I showed, so these are under their average price ({money(state.price_max)}).")
        unknown_word = bool(state.head) and not set(stems(state.head)) & parts.vocab.word_stems
        if not found and closest and unknown_word and not plan.no_repeats:
            found = closest
            notes.insert(0, f"Nothing in the catalog mentions “{state.head or ' '.join(state.need[-1:])}” with these constraints; these are the closest items.")
        if not found and plan.cheaper_than is not None:
            state.price_max = plan.prev_price_max  # nothing is cheaper: keep the budget the shopper had
            yield f"Nothing cheaper than {money(plan.cheaper_than)} matches “{' '.join(state.need[-2:]) or 'this'}” in the {state.catalog} catalog; what I showed is the cheapest I have."
            return
        if not found:
            yield nothing_found(state, plan)
            return

        t = time.perf_counter()
        shown: list[ShownItem] = []
        for n, rec in enumerate(found, start=1):
            reason, grounded, source = rec.reason, rec.grounded, rec.reason_source
            if not reason:
                reason, grounded, source = match_reason(rec.item, state), True, "template"
            shown.append(ShownItem.of(rec.item, reason=reason, grounded=grounded, reason_source=source, score=round(rec.score, 4)))
            yield item_line(n, rec.item, reason)
        if not self.llm_reasons:
            timings["reasons"] = timings.get("reasons", 0.0) + (time.perf_counter() - t) * 1e3
        ids = [s.id for s in shown]
        state.last_shown = ids
        first_list = not state.shown
        state.shown = list(dict.fromkeys(state.shown + ids))
        if state.focus not in ids:
            state.focus = None
        if first_list:
            notes.append(HINT)
        yield shown

    def _search(
        self,
        state: DialogueState,
        parts: _CatalogParts,
        plan: Plan,
        timings: dict[str, float],
        debug: dict[str, Any],
        notes: list[str],
        budget: list[int],
    ) -> tuple[list[Recommendation], list[Recommendation]]:
        """Run the attempts until k relevant items are found.

        Returns (relevant items, the first attempt's closest items when none was relevant).
        "Relevant" = the item's text mentions the product noun ("shoes"); without that gate a small
        catalog fills the list with whatever is left (printer paper for "running shoes"). Items whose
        title names an avoided brand are dropped even when their brand field is empty. The gate runs
        inside the recommender, before ranking, so the ranker orders only showable items."""
        head = stems(state.head)[:1] if state.head else []
        avoid = [tuple(stems(f)) for b in state.avoid_brands for f in parts.vocab.brand_family(b)]

        def ok(item: Item) -> bool:
            if head and not mentions_any(item, head):
                return False
            # An unbranded item whose title starts with an avoided brand ("Swingline Optima ..." with no
            # brand field); "ink for HP 61" by another maker is fine.
            return not (avoid and not item.brand and any(tuple(stems(item.title)[: len(a)]) == a for a in avoid))

        found: list[Recommendation] = []
        closest: list[Recommendation] = []
        seen: set[str] = set()
        for note, include_shown, categories in self._attempts(state, plan, parts.vocab):
            if len(found) >= min(self.k, MIN_ITEMS) or budget[0] <= 0:
                break
            # Only the first search is re-ranked by the LLM: widening/top-up searches are fallbacks, and
            # another re-ranking pass would double the turn's latency on a CPU.
            first = budget[0] == MAX_SEARCHES_PER_TURN
            req = self._request(state, parts.vocab, include_shown=include_shown, categories=categories, exclude=seen, rank_mode=None if first else "none")
            req.relevant = ok
            if req.query is None and not req.history:
                break
            result = parts.recommender.recommend(req)
            budget[0] -= 1
            debug["searches"] = debug.get("searches", 0) + 1
            for key in ("retrieval", "rank", "reasons"):
                timings[key] = timings.get(key, 0.0) + result.timings_ms.get(key, 0.0)
            debug.update(llm_valid=result.llm_valid, fallback=result.fallback, n_candidates=result.n_candidates)
            if not closest and not found:
                closest = [r for r in result.closest if r.item.id not in seen]
            new = [r for r in result.items if r.item.id not in seen][: self.k - len(found)]
            if new and note and found:
                notes.append(note)
            elif new and note:
                notes.append(note.replace("I also looked", "I looked").replace("Few items matched", "Nothing matched"))
            found.extend(new)
            seen.update(r.item.id for r in new)
        return found, ([] if found else closest)

    def _explain(self, item_id: str, state: DialogueState, parts: _CatalogParts, timings: dict[str, float]) -> Iterator[str]:
        """Catalog facts first (instant), then the recommender's reason for the item."""
        item = parts.items[item_id]
        n = state.last_shown.index(item_id) + 1 if item_id in state.last_shown else None
        yield f"#{n} “{item.title}” — {catalog_facts(item)}.\n" if n else f"“{item.title}” — {catalog_facts(item)}.\n"
        req = RecommendRequest(query=state.query(), conversation=[Message(role=m["role"], content=m["content"]) for m in state.recent], k=self.k)
        t = time.perf_counter()
        try:
            reason, grounded = parts.recommender.explain(item_id, req)
        except UnknownItem:
            reason, grounded = "", False
        timings["reasons"] = (time.perf_counter() - t) * 1e3
        if not reason or not grounded:
            reason = match_reason(item, state)
        yield f"Why: {whole_sentences(reason)}"

    def _answer(self, item_id: str, question: str, state: DialogueState, items: dict[str, Item]) -> str:
        """Answer a question about a shown item quoting only catalog fields (nothing generated)."""
        item = items[item_id]
        n = state.last_shown.index(item_id) + 1 if item_id in state.last_shown else None
        name = f"#{n} “{item.title}”" if n else f"“{item.title}”"
        if question == "price":
            return f"{name} is listed at {money(item.price)}." if item.price is not None else f"The catalog has no price for {name}."
        if question == "brand":
            return f"{name} is by {item.brand} (the catalog's brand field)." if item.brand else f"The catalog lists no brand for {name}."
        if question == "category":
            return f"{name} is listed under {' > '.join(item.categories)}." if item.categories else f"The catalog has no category for {name}."
        if question.startswith("has:"):
            what = question[4:].strip()
            words = content_stems(what)
            haystack = stems(item.title + " " + item.description)
            found = [w for w in words if w in haystack]
            if words and len(found) == len(words):
                snippet = quote_around(item.title + ". " + description_facts(item.description, 3000), words)
                return f"The catalog text for {name} mentions {what}: “{snippet}”. Check the full description before buying."
            return f"The catalog description of {name} doesn't mention {what}, so I can't confirm it."
        desc = description_facts(item.description, 300)
        lines = [f"{name}", f"From the catalog: {catalog_facts(item)}."]
        lines.append(f"Description: “{desc}”" if desc else "The catalog has no description for it.")
        return "\n".join(lines)

    def _llm_intro(self, state: DialogueState, parts: _CatalogParts) -> str:
        """A one-line opener from the LLM, shown only if it names nothing the user did not say."""
        from agent.grounding import check_grounding
        from agent.prompts import PromptError, render_messages

        engine = self.engine()
        if engine is None:
            return ""
        user_texts = [m["content"] for m in state.recent if m["role"] == "user"]
        try:
            messages = render_messages("reply.v1", wants=state.describe(), messages=user_texts[-3:])
            text = engine.chat(messages, max_tokens=32)
        except (EngineError, PromptError) as exc:
            log.info("LLM intro skipped: %s", exc)
            return ""
        text = " ".join(text.split())
        text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0][:160]
        if not text or re.search(r"\d", text):
            return ""
        # The intro may only restate what the shopper asked for; it names no item fact.
        report = check_grounding(text, (), request_evidence=user_texts + [state.describe()], catalog_brands=parts.recommender.brands, restates_request=True)
        return text if report.ok else ""


# --- text helpers (catalog fields only) ----------------------------------------------------------------------
