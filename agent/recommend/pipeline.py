"""Recommend items for a request: candidates -> ranking -> must-haves -> grounded reasons.

1. Candidates and their order (`candidates`, default 20):
   - a shopper with a history: the ranking stage (`agent.recommend.ltr`): every source
     (co-occurrence, SASRec, the text-aware model, dense and BM25 from the history, popularity),
     the union of their candidates ordered by the learned ranker (LightGBM lambdarank);
   - a request in words: hybrid search first (relevance comes first); with a history too, the
     hits are fused with the learned ranker's order of the same hits.
   Filters and exclusions apply everywhere; the history is always excluded.
2. Optional LLM re-ranking (`agent.recommend.rank`, rank_mode "onepass"/"listwise"; default
   "none": the packaged model's score carries no signal, measured by `aisle eval ranking`), then
   the items whose record states the asked must-haves first (`agent.recommend.must_have`).
3. Reasons (`agent.recommend.reasons`): template reasons by default (`llm_reasons` off); with
   `llm_reasons`, LLM sentences checked by `agent.grounding`, retried once, else a template reason.
   Rank mode and reason kind default to the settings, so the LLM loads only when one asks for it.

Hard rule: every item shown is the catalog's own `Item` object, looked up by id; no title,
brand or id written by the LLM is ever displayed.

The conversational agent, the UI and the HTTP API use only `RecommendRequest`, `Recommender`
and the result dataclasses below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.engines import LazyEngine
from agent.engines.base import LLMEngine, Message
from agent.errors import UnknownItem
from agent.prompts import resolve_prompt
from agent.recommend.loading import StageLoader
from agent.recommend.must_have import lift
from agent.recommend.rank import MODES, Candidate, RankContext, Reranker
from agent.recommend.reasons import ReasonContext, ReasonWriter
from agent.recommend.shown import ShownItem
from agent.settings import Settings
from retrieval.catalog import Catalog, Item
from retrieval.search import HybridSearcher, SearchFilters

log = logging.getLogger(__name__)

COLLAB_MODES = ("auto", "rrf", "none")  # ranking stage with the learned ranker / with RRF only / no history signal


@dataclass
class RecommendRequest:
    query: str | None = None
    history: Sequence[str] = ()  # item ids the user bought/liked, oldest first
    filters: SearchFilters | None = None
    exclude_ids: Sequence[str] = ()
    k: int = 5
    conversation: Sequence[Message] = ()  # optional dialogue so far, for the prompts
    rank_mode: str | None = None  # "onepass" | "listwise" | "none"; None: the settings' rank_mode
    with_reasons: bool = True
    llm_reasons: bool | None = None  # reasons written by the LLM (gated); None: the settings' llm_reasons. Else templates.
    # Relevance gate applied to the candidates BEFORE ranking (the chat passes "mentions the product
    # noun"), so the ranker only orders items that can be shown and one search usually suffices.
    relevant: Callable[[Item], bool] | None = None
    # Features the shopper asked for ("quiet", "cross-cut"): items whose record states them are
    # lifted above the others after ranking, before the top k is cut (agent.recommend.must_have).
    must_have: tuple[str, ...] = ()
    # Items made for the asked product rather than the product ("Shredder Oil" for a shredder): kept,
    # but after the others, once must-haves are lifted and before the top k is cut.
    demote: Callable[[Item], bool] | None = None
    # The shopper's own words when they open a topic ("I'm looking for index cards for recipes"):
    # searched too and fused with the query's hits (RRF), so the extracted need never loses what
    # the whole message would have found.
    shopper_text: str | None = None


@dataclass
class Recommendation:
    item: Item
    score: float
    retrieval_score: float
    llm_score: float | None
    reason: str
    grounded: bool
    reason_source: str  # "llm" | "llm-retry" | "template" ("" when reasons were not asked for)

    def shown(self) -> ShownItem:
        return ShownItem.of(self.item, reason=self.reason, grounded=self.grounded, reason_source=self.reason_source, score=round(self.score, 6))

    def to_dict(self) -> dict[str, Any]:
        """The shown item plus the two scores it was blended from."""
        return {
            **self.shown().to_dict(),
            "retrieval_score": round(self.retrieval_score, 6),
            "llm_score": None if self.llm_score is None else round(self.llm_score, 6),
        }


@dataclass
class RecommendResult:
    items: list[Recommendation]
    timings_ms: dict[str, float]  # keys: "retrieval", "rank", "reasons", "total"
    llm_valid: bool  # the re-ranker's LLM answer was used (True when rank_mode="none")
    fallback: str | None  # "<code> (<detail>)" when the retriever order was used instead of the LLM's:
    # code = the EngineError class name, "malformed_answer" or "engine_unavailable"
    n_candidates: int
    sources: dict[str, int] = field(default_factory=dict)  # candidates contributed per source
    dropped: list[str] = field(default_factory=list)  # LLM labels/ids that were not candidates
    closest: list[Recommendation] = field(default_factory=list)  # when the gate kept nothing: the ungated top-k, retriever order
    unmet: list[str] = field(default_factory=list)  # must-haves that no candidate's record states
    pending: str | None = None  # the history ranking was wanted but is "loading" (search order used) or its models are "training"

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [r.to_dict() for r in self.items],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "llm_valid": self.llm_valid,
            "fallback": self.fallback,
            "n_candidates": self.n_candidates,
            "sources": dict(self.sources),
            "dropped": list(self.dropped),
            "unmet": list(self.unmet),
            "pending": self.pending,
        }


class Recommender:
    """Candidates + re-ranking + reasons over one catalog. Heavy parts (search index, LLM,
    collaborative model) load on first use and are shared by later requests (thread-safe).

    `background=True` (serving): the ranking stage loads in a background thread and a request that
    comes before it is ready is answered by search and marked `pending`; otherwise (evals, the
    recommend command) the first request waits for it. `training()`: whether this catalog's models
    are being trained right now (a request then says its ranking lacks them)."""

    def __init__(
        self,
        settings: Settings,
        catalog: str | None = None,
        *,
        engine: LLMEngine | None = None,
        searcher: HybridSearcher | None = None,
        prompts: dict[str, str] | None = None,
        llm_weight: float | None = None,
        n_candidates: int | None = None,
        collab: str | None = None,
        n_orders: int | None = None,
        calibrate: bool | None = None,
        source_weights: dict[str, float] | None = None,
        background: bool = False,
        training: Callable[[], bool] | None = None,
    ) -> None:
        # Keyword arguments override the settings' knobs (evals compare variants this way).
        llm_weight = settings.llm_weight if llm_weight is None else llm_weight
        n_candidates = settings.n_candidates if n_candidates is None else n_candidates
        collab = settings.collab if collab is None else collab
        n_orders = settings.n_orders if n_orders is None else n_orders
        calibrate = settings.calibrate if calibrate is None else calibrate
        if searcher is not None and catalog is not None and searcher.catalog.name != catalog:
            raise ValueError(f"searcher is for catalog {searcher.catalog.name!r}, not {catalog!r}")
        if not 1 <= n_candidates <= 100:
            raise ValueError(f"n_candidates must be in 1..100, got {n_candidates}")
        if not 0.0 <= llm_weight <= 1.0:
            raise ValueError(f"llm_weight must be in [0, 1], got {llm_weight}")
        if collab not in COLLAB_MODES:
            raise ValueError(f"collab must be one of {', '.join(COLLAB_MODES)}, got {collab!r}")
        self.settings = settings
        self.catalog_name = searcher.catalog.name if searcher is not None else (catalog or settings.catalog)
        self.prompts = dict(prompts or {})
        for kind in self.prompts:  # fail now, with the list of names, rather than mid-request
            resolve_prompt(kind, self.prompts)
        self.llm_weight = llm_weight
        self.n_candidates = n_candidates
        self.collab_mode = collab
        self.n_orders = n_orders
        self.calibrate = calibrate
        self.source_weights = source_weights
        self._rerankers: dict[str, Reranker] = {}  # by rank mode
        self._searcher = searcher
        self._engine = LazyEngine(settings, engine)
        self.background = background
        self._training = training or (lambda: False)
        self._loader = StageLoader(self._load_stage, self._refit_stage, min_refresh_s=settings.history_refresh_s, name=self.catalog_name)
        self._brands: frozenset[str] | None = None
        self._lock = threading.RLock()

    # --- lazily loaded parts -----------------------------------------------------------------------

    @property
    def searcher(self) -> HybridSearcher:
        with self._lock:
            if self._searcher is None:
                from retrieval.search import open_searcher

                self._searcher = open_searcher(self.settings, self.catalog_name, progress=False)
            return self._searcher

    @property
    def catalog(self) -> Catalog:
        return self.searcher.catalog

    @property
    def brands(self) -> frozenset[str]:
        if self._brands is None:
            self._brands = frozenset(it.brand for it in self.catalog.items.values() if it.brand)
        return self._brands

    def engine(self) -> LLMEngine | None:
        """The LLM engine, built on first use behind a circuit breaker (agent/engines/breaker.py): when
        it cannot load or its server is down, its calls fail fast and ranking falls back."""
        return self._engine.get()

    def reranker(self, engine: LLMEngine, mode: str) -> Reranker:
        """One Reranker per mode, kept: it caches the content-free label prior of its engine."""
        with self._lock:
            ranker = self._rerankers.get(mode)
            if ranker is None or ranker.engine is not engine:
                kind = "rerank_onepass" if mode == "onepass" else "rerank_listwise"
                ranker = Reranker(
                    engine, mode=mode, prompt=resolve_prompt(kind, self.prompts), llm_weight=self.llm_weight,
                    n_orders=self.n_orders, calibrate=self.calibrate, seed=self.settings.seed,
                )
                self._rerankers[mode] = ranker
            return ranker

    @property
    def collab_name(self) -> str | None:
        """"ranker" (learned ranker), "rrf" (no ranker trained yet) or None: how the history is used (loads it)."""
        stage = self.ranking_stage()
        if stage is None:
            return None
        return "ranker" if stage.ranker is not None else "rrf"

    def ranking_stage(self) -> Any:
        """The catalog's ranking stage (agent.recommend.ltr): every candidate source plus the learned
        ranker; None for catalogs without interactions or with collab "none", and (background
        mode) while it loads. Requests never train: models missing for the current data are left
        out until `aisle train models`."""
        if self.collab_mode == "none":
            return None
        return self._loader.get() if self.background else self._loader.wait()

    @property
    def stage_loader(self) -> StageLoader:
        """Start, wait for, refresh (new events) or reload (new model files) the ranking stage."""
        return self._loader

    def stage_status(self) -> str:
        """"off" (collab none), else the loader's state: idle, loading, ready, none (no history), failed."""
        return "off" if self.collab_mode == "none" else self._loader.state

    def _load_stage(self) -> Any:
        from agent.recommend.ltr import load_ranking_stage

        stage = load_ranking_stage(self.settings, self.catalog_name, self.searcher, engine_for=self._stage_engine)
        if stage is not None and self.collab_mode == "rrf":
            stage.ranker = None
        return stage

    def _refit_stage(self, stage: Any) -> Any:
        from agent.recommend.ltr import with_history
        from retrieval.collab import leave_one_out
        from retrieval.registry import load_interactions

        histories, _ = leave_one_out(load_interactions(self.settings, self.catalog_name))
        return with_history(stage, self.catalog, histories)

    def _pending(self, req: RecommendRequest) -> str | None:
        """Why this request's history ranking is not the full one right now (None: it is)."""
        if self.collab_mode == "none" or not self._wants_stage(req):
            return None
        if self._loader.get() is None:
            return "loading" if self._loader.state in ("idle", "loading") else None
        return "training" if self._training() else None

    def _wants_stage(self, req: RecommendRequest) -> bool:
        return bool(req.history) or not ReasonContext(req.query, (), req.conversation).request_text()

    def _stage_engine(self, adapter: str | None) -> LLMEngine | None:
        """The engine of a kept LLM stage: this recommender's own for the base model, else one with
        the stage's LoRA adapter merged in (`aisle train ranker`)."""
        if adapter is None:
            return self.engine()
        from pathlib import Path

        from agent.engines import make_engine

        return make_engine(self.settings, adapter=Path(adapter))

    # --- pipeline ----------------------------------------------------------------------------------

    def candidates(self, req: RecommendRequest) -> tuple[list[Candidate], dict[str, int]]:
        """Candidates (best first) and how many each source contributed.

        - history, no words: the ranking stage's top n (all sources, learned ranker);
        - words: hybrid search (relevance comes first); with a history too, the search hits
          are fused with the learned ranker's order of those same hits (RRF, query weighted 2:1);
        - neither: the stage's order for an empty history (popularity and what it implies)."""
        from retrieval.candidates import Shopper
        from retrieval.collab import distinct_history, fuse_candidates

        n = self.n_candidates
        history = distinct_history(str(i) for i in req.history)
        exclude = set(history) | {str(i) for i in req.exclude_ids}
        filters = req.filters if req.filters is not None and not req.filters.is_empty() else None
        items = self.catalog.items

        def allowed(item_id: str) -> bool:
            it = items.get(item_id)
            return it is not None and it.available and item_id not in exclude and (filters is None or filters.matches(it))

        asked = ReasonContext(req.query, (), req.conversation).request_text()
        stage = self.ranking_stage() if self._wants_stage(req) else None
        shopper = Shopper(history=[i for i in history if i in items], query=asked, exclude=exclude)
        if stage is not None and filters is not None:
            shopper.allowed = self.searcher.allowed_mask(filters)  # sources nominate only items the filters allow
        lists: dict[str, list[tuple[str, float]]] = {}
        if asked and asked.strip():
            hits = self.searcher.search(asked, n if stage is None else 2 * n, filters=filters, exclude_ids=exclude)
            words = (req.shopper_text or "").strip()
            if words and words.casefold() != asked.strip().casefold():
                said = self.searcher.search(words, n if stage is None else 2 * n, filters=filters, exclude_ids=exclude)
                by_id = {h.item.id: h for h in [*hits, *said]}
                fused_hits = fuse_candidates({"need": [(h.item.id, h.score) for h in hits], "words": [(h.item.id, h.score) for h in said]}, None, len(by_id))
                hits = [by_id[i] for i, _ in fused_hits]
            lists["semantic"] = [(h.item.id, h.score) for h in hits]
            if stage is not None and hits:
                lists["ranker"] = stage.order(shopper, [h.item.id for h in hits])
        elif stage is not None:
            lists["ranker"] = stage.recommend(shopper, n, keep=allowed)
        elif history:
            hits = self.searcher.similar([i for i in history if i in items][-10:], n, filters=filters, exclude_ids=exclude)
            lists["semantic"] = [(h.item.id, h.score) for h in hits]
        if len(lists) == 1:
            fused = next(iter(lists.values()))[:n]
        else:
            fused = fuse_candidates(lists, self.source_weights or {"semantic": 1.0, "ranker": 0.5}, n)
        cands = [Candidate(items[i], s) for i, s in fused if allowed(i)]
        return cands, {name: len(v) for name, v in lists.items()}

    def _contexts(self, req: RecommendRequest) -> tuple[RankContext, ReasonContext]:
        from retrieval.collab import distinct_history

        titles = [self.catalog.items[i].title for i in distinct_history(map(str, req.history)) if i in self.catalog.items]
        conversation = [Message(role=str(m.get("role", "user")), content=str(m.get("content", ""))) for m in req.conversation]
        return RankContext(req.query, titles, conversation), ReasonContext(req.query, titles, conversation)

    def reason_writer(self, engine: LLMEngine | None = None) -> ReasonWriter:
        """The reason writer this recommender uses (its prompt, the catalog's brands); evals call
        `write_many` on it to batch reasons across users."""
        return ReasonWriter(engine, prompt=resolve_prompt("reason", self.prompts), catalog_brands=self.brands)

    def recommend(self, req: RecommendRequest) -> RecommendResult:
        """Top-k recommendations with scores and reasons. LLM failures degrade (retriever order,
        template reasons) and are reported in the result; bad requests raise ValueError."""
        mode = self.settings.rank_mode if req.rank_mode is None else req.rank_mode
        llm_reasons = self.settings.llm_reasons if req.llm_reasons is None else req.llm_reasons
        if mode not in MODES:
            raise ValueError(f"rank_mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not 1 <= req.k <= self.n_candidates:
            raise ValueError(f"k must be in 1..{self.n_candidates} (the number of candidates), got {req.k}")
        t0 = time.perf_counter()
        cands, sources = self.candidates(req)
        pending = self._pending(req)
        closest: list[Recommendation] = []
        if req.relevant is not None:
            kept = [c for c in cands if req.relevant(c.item)]
            if not kept:
                closest = [Recommendation(c.item, c.retrieval_score, c.retrieval_score, None, "", False, "") for c in cands[: req.k]]
            cands = kept
        t1 = time.perf_counter()
        rank_ctx, reason_ctx = self._contexts(req)

        # The LLM loads only for what asks for it: re-ranking, or reasons written by it.
        engine = self.engine() if (mode != "none" or (req.with_reasons and llm_reasons)) and cands else None
        fallback: str | None = None
        if mode != "none" and engine is None and cands:
            fallback = f"engine_unavailable ({self._engine.error})"
        if mode == "none" or engine is None:
            ranker = Reranker(None, mode="none", llm_weight=self.llm_weight)
        else:
            ranker = self.reranker(engine, mode)
        ranked = ranker.rank(cands, rank_ctx)
        llm_valid = ranked.llm_valid and fallback is None
        fallback = fallback or ranked.fallback
        lifted, unmet = lift(ranked.items, req.must_have, lambda r: r.item)
        if req.demote is not None:
            last = [req.demote(r.item) for r in lifted]
            lifted = [r for r, d in zip(lifted, last) if not d] + [r for r, d in zip(lifted, last) if d]
        top = lifted[: req.k]
        t2 = time.perf_counter()

        writer = self.reason_writer(engine if llm_reasons else None)
        reasons = writer.write([r.item for r in top], reason_ctx) if req.with_reasons and top else []
        t3 = time.perf_counter()

        out: list[Recommendation] = []
        for i, r in enumerate(top):
            item = self.catalog.items.get(r.item.id)
            if item is None:  # hard rule: never show an item that is not in the catalog
                log.error("dropping non-catalog item %r from the results", r.item.id)
                continue
            reason = reasons[i] if i < len(reasons) else None
            out.append(
                Recommendation(
                    item=item,
                    score=r.score,
                    retrieval_score=r.retrieval_score,
                    llm_score=r.llm_score,
                    reason=reason.text if reason else "",
                    grounded=reason.grounded if reason else False,
                    reason_source=reason.source if reason else "",
                )
            )
        t4 = time.perf_counter()
        timings = {"retrieval": (t1 - t0) * 1e3, "rank": (t2 - t1) * 1e3, "reasons": (t3 - t2) * 1e3, "total": (t4 - t0) * 1e3}
        return RecommendResult(out, timings, llm_valid, fallback, len(cands), sources, ranked.dropped, closest=closest, unmet=unmet, pending=pending)

    def explain(self, item_id: str, req: RecommendRequest) -> tuple[str, bool]:
        """A reason for one item ("why that one?"): (text, grounded). Raises UnknownItem for
        an id that is not in the catalog."""
        item = self.catalog.items.get(str(item_id))
        if item is None:
            raise UnknownItem(f"item {item_id!r} is not in catalog {self.catalog_name!r}")
        _, reason_ctx = self._contexts(req)
        reason = self.reason_writer(self.engine()).write([item], reason_ctx)[0]
        return reason.text, reason.grounded
