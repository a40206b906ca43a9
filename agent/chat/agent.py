"""The conversational turn pipeline: message -> dialogue state -> recommendations -> reply.

One `Agent` serves many sessions (UI, HTTP API, CLI, LangChain) and catalogs. Per turn:

1. check the message (non-empty, at most MAX_MESSAGE_CHARS), load the session's state;
2. understand it (`agent.dialogue`: rules, optionally a validated LLM extraction) and update the state
   (`agent.dialogue.policy`);
3. act (`agent.chat.turn.Turn`): recommend (retrieval with the state's filters, excluding rejected and already-shown items,
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

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.chat.replies import (
    constraints_of,
)
from agent.chat.store import BaseSessionStore, ConcurrentUpdate, UnknownSession, make_session_store
from agent.chat.turn import Turn, TurnOptions
from agent.dialogue import (
    CatalogVocab,
    DialogueState,
    Understander,
    apply,
    record_votes,
)
from agent.engines import LazyEngine
from agent.engines.base import LLMEngine
from agent.engines.scheduler import LLMScheduler, ScheduledEngine, TurnScope, turn_scope
from agent.errors import (
    BadRequest,
    CatalogMismatch,
    CatalogUnavailable,
    EmptyMessage,
    InvalidText,
    MessageTooLong,
    NotIndexed,
    UnknownCatalog,
    UnknownItem,
    VectorStoreUnavailable,
)
from agent.facts import common_kinds, sold_on_its_own
from agent.recommend.pipeline import Recommender
from agent.recommend.shown import ShownItem
from agent.settings import Settings
from agent.text import visible
from retrieval.catalog import CatalogError, Item
from retrieval.index import VectorStoreError
from retrieval.registry import Registry
from retrieval.search import HybridSearcher

log = logging.getLogger(__name__)
turn_log = logging.getLogger("aisle.turns")

MAX_MESSAGE_CHARS = 2000
MAX_KINDS = 8  # product kinds a catalog names when asked what it has
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
    debug: dict[str, Any] = field(default_factory=dict)  # llm_valid, fallback, llm_dropped, relaxed, degraded

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


def degraded_reason_of(debug: dict[str, Any], scope: TurnScope) -> str | None:
    """Why the turn was answered (in part) without the LLM, as a fixed label: the first call the
    scheduler saw go without the model (budget, queue_full, breaker_open, llm_timeout,
    llm_unavailable), else "llm_invalid_output" when the ranker dropped a bad answer; None when the
    model answered whatever it was asked."""
    if scope.degraded:
        return scope.degraded
    return "llm_invalid_output" if debug.get("fallback") else None


@dataclass
class CatalogParts:
    recommender: Recommender
    vocab: CatalogVocab
    understander: Understander
    _sold_alone: dict[tuple[str, ...], bool] = field(default_factory=dict, repr=False)
    _kinds: list[str] | None = field(default=None, repr=False)

    def sold_on_its_own(self, noun_stems: Sequence[str]) -> bool:
        """`agent.facts.sold_on_its_own` over this catalog, once per noun."""
        key = tuple(noun_stems)
        if key not in self._sold_alone:
            self._sold_alone[key] = sold_on_its_own(self.items.values(), key)
        return self._sold_alone[key]

    def kinds(self, n: int) -> list[str]:
        """`agent.facts.common_kinds` of this catalog, computed once."""
        if self._kinds is None:
            self._kinds = common_kinds(self.items.values(), MAX_KINDS)
        return self._kinds[:n]

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
        store: BaseSessionStore | None = None,
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
        build_index: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store or make_session_store(settings)
        self.default_catalog = default_catalog or settings.catalog
        # Keyword arguments override the settings' knobs for this agent (tests, benchmarks).
        self.k = k if k is not None else settings.k
        self.rank_mode = rank_mode if rank_mode is not None else settings.rank_mode
        self.n_candidates = n_candidates if n_candidates is not None else settings.chat_candidates
        self.n_orders = n_orders if n_orders is not None else settings.n_orders
        self.llm_reasons = llm_reasons if llm_reasons is not None else settings.llm_reasons
        self.llm_extract = settings.llm_extract if llm_extract is None else llm_extract
        self.llm_intro = llm_intro if llm_intro is not None else settings.llm_intro
        # A request never builds an index (minutes of embedding): `warm_up` does, at start-up; a
        # turn on an unindexed catalog answers NotIndexed. `build_index=True` (the terminal chat,
        # one user) builds on first use instead.
        self.build_index = build_index
        self._engine = LazyEngine(settings, engine)
        # Every LLM call of every turn goes through one fair, bounded queue with a per-turn deadline.
        self.scheduler = LLMScheduler(slots=settings.llm_slots, max_waiting=settings.llm_queue_max)
        self._scheduled = ScheduledEngine(self._engine.get, self.scheduler, unavailable=lambda: self._engine.error or "", status=self._engine.status)
        self._searchers = dict(searchers or {})
        self._parts: dict[str, CatalogParts] = {}
        self._catalog_locks: dict[str, threading.Lock] = {}
        self.on_turn: list[Callable[[TurnResult], None]] = []  # called after every turn (metrics)
        self._versions: dict[str, tuple[int, int]] = {}  # registry (items, history) versions of each catalog this agent opened
        self._reopening: set[str] = set()  # catalogs being reopened in the background after a feed update
        self._trainer: Any = None  # agent.train.background.BackgroundTrainer, made by the first warm_up that trains
        self.registry = Registry(settings)
        self._lock = threading.RLock()
        self._session_locks: dict[str, threading.Lock] = {}

    # --- shared parts ----------------------------------------------------------------------------------

    def catalogs(self) -> list[str]:
        """The registered catalogs (retrieval/registry.py) and any this agent was given a searcher for."""
        return list(dict.fromkeys([*self.registry.names(), *self._searchers]))

    def llm_status(self) -> dict[str, Any]:
        """The engine's circuit state for health checks: {"state", "error", "retry_in_s", "failures"}."""
        return self._engine.status()

    def engine(self) -> LLMEngine | None:
        """The shared LLM engine (built on first use, behind a circuit breaker: a failing one fails
        fast, and callers rank by retrieval and use template reasons)."""
        return self._engine.get()

    def parts(self, catalog: str, *, build: bool | None = None) -> CatalogParts:
        """The catalog's searcher, recommender and vocabulary, opened on first use. Only that
        catalog's lock is held while it first opens: turns on other catalogs go on. Once open, a
        turn never waits for it again: a feed update reopens it in the background (the open
        parts serve until the new ones are ready) and new events refit its history sources."""
        if catalog not in self.catalogs():
            raise UnknownCatalog(f"unknown catalog {catalog!r}; choose one of: {', '.join(self.catalogs())}")
        parts = self._parts.get(catalog)
        if parts is not None:
            self._follow(catalog, parts)
            return parts
        with self._lock:
            lock = self._catalog_locks.setdefault(catalog, threading.Lock())
        with lock:
            parts = self._parts.get(catalog)
            if parts is None:
                parts = self._open(catalog, self.build_index if build is None else build)
                self._parts[catalog] = parts
            return parts

    def _follow(self, catalog: str, parts: CatalogParts) -> None:
        """Catch up with the registry: `aisle catalog update` (new prices, stock, items) reopens
        the catalog in the background; events (POST /v1/events, another replica's) only refit the
        ranking stage's history sources."""
        seen = self._versions.get(catalog)
        if seen is None:  # a catalog this agent was handed a searcher for
            return
        now = self.registry.versions(catalog)
        if now[0] != seen[0]:
            self._reopen(catalog, now)
        elif now[1] != seen[1]:
            self._versions[catalog] = now
            parts.recommender.stage_loader.refresh()

    def _reopen(self, catalog: str, versions: tuple[int, int]) -> None:
        with self._lock:
            if catalog in self._reopening:
                return
            self._reopening.add(catalog)

        def run() -> None:
            try:
                log.info("catalog %s changed; reopening it in the background", catalog)
                parts = self._open(catalog, False, reopen=True)
                parts.recommender.stage_loader.wait()  # swap in a complete set: the old one serves until then
                self._parts[catalog] = parts
            except Exception as exc:  # the open parts keep serving, until the catalog changes again
                self._versions[catalog] = versions
                log.warning("catalog %s changed but could not be reopened (%s); serving the previous version", catalog, exc)
            finally:
                with self._lock:
                    self._reopening.discard(catalog)

        threading.Thread(target=run, name=f"reopen-{catalog}", daemon=True).start()

    def _open(self, catalog: str, build: bool, *, reopen: bool = False) -> CatalogParts:
        searcher = None if reopen else self._searchers.get(catalog)
        if searcher is None:
            from retrieval.search import open_searcher

            try:
                self.registry.ensure_imported(catalog)  # a built-in's first use imports it (version 0 -> 1)
                version = self.registry.versions(catalog)
                searcher = open_searcher(self.settings, catalog, build=build, progress=False)
                searcher.index.check()  # damaged files answer 503 here, not garbage in a turn
            except VectorStoreError as exc:
                if "no index" in str(exc):
                    raise NotIndexed(f"catalog {catalog!r} is not indexed yet; run: aisle index --catalog {catalog} (the server never indexes inside a request)") from exc
                raise VectorStoreUnavailable(str(exc)) from exc
            except CatalogError as exc:
                raise CatalogUnavailable(f"catalog {catalog!r} cannot be read: {exc}") from exc
            self._searchers[catalog] = searcher
            self._versions[catalog] = version
        engine = self._scheduled if (self.rank_mode != "none" or self.llm_reasons or self.llm_extract) else None
        rec = Recommender(
            self.settings,
            catalog,
            engine=engine,
            searcher=searcher,
            n_candidates=max(self.n_candidates, self.k),
            n_orders=self.n_orders,
            background=True,
            training=lambda: self._trainer is not None and self._trainer.training(catalog),
        )
        vocab = CatalogVocab.from_catalog(searcher.catalog)
        return CatalogParts(rec, vocab, Understander(vocab, engine=engine, llm_extract=self.llm_extract))

    def warm_up(self, catalog: str | None = None, *, train_missing: bool = False) -> None:
        """Load (building it if needed) the index, vocabularies and the LLM now, at start-up,
        instead of on the first message; the ranking stage starts loading in the background.
        `train_missing` (serve, the UI, the terminal chat: settings.train_missing): models never
        trained for this catalog are trained by a background process, and loaded when it is done."""
        name = catalog or self.default_catalog
        parts = self.parts(name, build=True)
        parts.recommender.stage_loader.get()
        if train_missing:
            self._train_missing(name)
        if self.rank_mode != "none" or self.llm_reasons:
            self.engine()

    def record_events(self, catalog: str, events: list[Any]) -> int:
        """Append history events (POST /v1/events; all or none) and fold them into the open ranking
        stage in the background: the catalog, its index and searcher are not reopened."""
        recorded = self.registry.append_events(catalog, events)
        parts = self._parts.get(catalog)
        if parts is not None:
            self._follow(catalog, parts)
        return recorded

    def wait_for_stage(self, catalog: str | None = None, timeout: float | None = None) -> Any:
        """The catalog's ranking stage once it has loaded (one-shot commands, tests, benchmarks)."""
        return self.parts(catalog or self.default_catalog).recommender.stage_loader.wait(timeout)

    def _train_missing(self, catalog: str) -> None:
        from agent.recommend.ltr import missing_models

        missing = missing_models(self.settings, catalog)
        if not missing or catalog not in self.registry or self.registry.entry(catalog).n_events == 0:
            return
        if self._trainer is None:
            from agent.train.background import BackgroundTrainer

            self._trainer = BackgroundTrainer(self.settings, on_done=self._trained)
        self._trainer.start(catalog, missing)

    def _trained(self, catalog: str) -> None:
        """Background training finished: load the new models (the stage without them serves until then)."""
        parts = self._parts.get(catalog)
        if parts is not None:
            parts.recommender.stage_loader.reload()
            parts.recommender.stage_loader.settle()

    def models_status(self) -> dict[str, dict[str, Any]]:
        """Per opened catalog: its ranking stage's state (agent.recommend.loading), whether a feed
        update is being loaded, and any background training (for /ready)."""
        out: dict[str, dict[str, Any]] = {}
        for name, parts in list(self._parts.items()):
            rec = parts.recommender
            status: dict[str, Any] = {"stage": rec.stage_status(), "error": rec.stage_loader.error, "reopening": name in self._reopening}
            training = self._trainer.status(name) if self._trainer is not None else None
            if training is not None:
                status["training"] = training
            out[name] = status
        return out

    def _session_lock(self, session_id: str) -> threading.Lock:
        with self._lock:
            return self._session_locks.setdefault(session_id, threading.Lock())

    # --- sessions ------------------------------------------------------------------------------------------

    def new_session(self, catalog: str | None = None, *, owner: str = "", history: Sequence[str] = ()) -> str:
        """A new conversation; `history` = the items this shopper bought before (oldest first), which
        rank what the conversation finds and are not shown again. An unknown id is refused."""
        catalog = catalog or self.default_catalog
        if catalog not in self.catalogs():
            raise UnknownCatalog(f"unknown catalog {catalog!r}; choose one of: {', '.join(self.catalogs())}")
        history = [str(i) for i in history]
        if history:
            items = self.parts(catalog).items
            unknown = [i for i in history if i not in items]
            if unknown:
                raise UnknownItem(f"history names item(s) not in catalog {catalog!r}: {', '.join(unknown[:5])}; send ids of the catalog's items")
        return self.store.create(catalog, DialogueState(catalog=catalog, history=history).model_dump(), owner=owner)

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
        self._learn(rec.catalog, session_id, [(item_id, value)])
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
        scope = TurnScope(session_id, time.monotonic() + self.settings.turn_budget_s)
        with self._session_lock(session_id):
            steps = self._turn_locked(session_id, text, parts, scope)
            while True:
                # The LLM scheduler reads the turn's session and deadline from the context; set it
                # around each step, since a streamed turn may resume on another thread.
                with turn_scope(scope):
                    try:
                        piece = next(steps)
                    except StopIteration:
                        return
                    except VectorStoreError as exc:  # the index went bad after it was opened
                        raise VectorStoreUnavailable(str(exc)) from exc
                yield piece

    def _turn_locked(self, session_id: str, text: str, parts: CatalogParts, scope: TurnScope) -> Iterator[str | TurnResult]:
        t0 = time.perf_counter()
        record = self.store.get(session_id)
        state = DialogueState.model_validate(record.state)
        u = parts.understander.understand(text, state, parts.items)
        plan = apply(u, state, parts.items)
        state.remember("user", text)
        state.turns += 1
        turn = Turn(state, u, plan, parts, TurnOptions(self.k, self.rank_mode, self.llm_reasons, self.llm_intro), engine=self._scheduled if self.llm_intro else None)
        turn.timings["understand"] = (time.perf_counter() - t0) * 1e3
        yield from turn.run()

        reply = turn.reply
        summary = ("Showed: " + "; ".join(s.title[:60] for s in turn.shown)) if turn.shown else reply
        state.remember("assistant", summary)
        turn.timings["total"] = (time.perf_counter() - t0) * 1e3
        payload = {"action": plan.action, "items": [s.id for s in turn.shown], "flags": sorted(u.flags), "notes": turn.notes, "timings_ms": {k: round(v, 1) for k, v in turn.timings.items()}}
        for item_id, value in turn.votes:
            self.store.set_feedback(session_id, item_id, value)
        self._learn(state.catalog, session_id, turn.votes)
        turn_no = self.store.record_turn(session_id, text, reply, payload, state=state.model_dump(), expected_version=record.version)
        result = TurnResult(
            session_id=session_id,
            catalog=state.catalog,
            reply=reply,
            items=turn.shown,
            action=plan.action,
            turn_no=turn_no,
            constraints=constraints_of(state),
            notes=turn.notes,
            timings_ms=turn.timings,
            debug={**turn.debug, "degraded": degraded_reason_of(turn.debug, scope)},
        )
        self._report(result)
        yield result

    def _learn(self, catalog: str, session_id: str, votes: list[tuple[str, int]]) -> None:
        """Thumbs-up items become history events (user "session:<id>", a rating of 1) of a shop's
        own catalog for the next `aisle train models` (`learn_from_sessions`), and refit its
        popularity and co-occurrence like any event; the built-in benchmark catalogs are never
        written. Failures are logged: feedback must never fail a turn."""
        liked = [item_id for item_id, value in votes if value > 0]
        if not liked or not self.settings.learn_from_sessions:
            return
        from retrieval.feeds.events import Event

        try:
            if catalog not in self.registry or self.registry.entry(catalog).builtin:
                return  # built-in data sets are eval benchmarks: their history stays as shipped
            self.registry.append_events(catalog, [Event(user_id=f"session:{session_id}", item_id=i, timestamp=time.time(), event="rating", value=1.0) for i in liked], origin="session")
        except Exception as exc:
            log.warning("session feedback not recorded for %s: %s", catalog, exc)

    def _report(self, result: TurnResult) -> None:
        """One structured log line per turn (logger `aisle.turns`, JSON), then the `on_turn` hooks."""
        turn_log.info(
            json.dumps(
                {
                    "event": "turn",
                    "session": result.session_id,
                    "catalog": result.catalog,
                    "turn_no": result.turn_no,
                    "action": result.action,
                    "items": [i.id for i in result.items],
                    "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
                    "degraded": result.debug.get("degraded"),
                    "fallback": result.debug.get("fallback"),
                    "llm_valid": result.debug.get("llm_valid"),
                }
            )
        )
        for hook in self.on_turn:
            try:
                hook(result)
            except Exception:  # a metrics hook must never fail a shopper's turn
                log.exception("on_turn hook failed")
