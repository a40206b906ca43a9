"""The ranking stage of a catalog: all candidate sources, their union, and the learned ranker.

    sources (retrieval.candidates)  ->  union of each source's top `depth`  ->  LightGBM lambdarank
    (retrieval.learned_ranker)  ->  optionally, on its top 20, a second LightGBM stage that adds
    the LLM's one-pass score (base model and/or the `aisle train ranker` adapter)

Splits (nothing ever sees the item an eval holds out):
- serving / test: histories = every user's items but the last (`leave_one_out`); popularity and
  co-occurrence are fitted on them, SASRec and the text-aware model are the "serve" models
  (`SourceModels`: refitted on them for the epoch count early stopping chose).
- ranker training ("val"): histories = the items before the second-to-last, target = the
  second-to-last; popularity and co-occurrence are refitted on those histories and the sequence
  models are the "val" ones (trained on them, stopped early on the second-to-last), so the
  features a ranker learns from behave as they do at serving time, one step earlier.
- the LLM stage trains and is gated on a fifth of the val users that the first stage never saw.

`aisle train models --catalog NAME` trains the source models and this ranker and saves it at
`models_dir/ranker-<catalog>.lgb` (+ .json: features, depths, importances, training report).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.candidates import DEFAULT_DEPTHS, HISTORY_SOURCES, Scored, Shopper, SourceSet, union
from retrieval.collab import CooccurrenceRecommender, PopularityRecommender, leave_one_out, sample_users
from retrieval.learned_ranker import ItemTable, LearnedRanker, RankerConfig, feature_names, features
from retrieval.progress import job_bar
from retrieval.ranker_search import Selection, deepest, depth_profiles, restrict, search_space, select

log = logging.getLogger(__name__)

STAGE2_DEPTH = 20  # candidates the LLM scores (one-pass labels A..T)
TRAIN_USERS = 4000  # training groups sampled for the ranker (seeded); more add little and cost time
LLM_STAGE_USERS = 1000  # val users kept out of the first stage to train and gate the LLM stage


def ranker_path(settings: Any, catalog: str) -> Path:
    return Path(settings.models_dir) / f"ranker-{catalog}.lgb"


def item_vectors(searcher: Any, item_ids: Sequence[str], chunk: int = 5000) -> np.ndarray:
    """Unit title vectors of `item_ids` from the catalog's index (zeros for an item it lacks)."""
    dim = None
    rows: dict[str, np.ndarray] = {}
    for start in range(0, len(item_ids), chunk):
        got = searcher.index.embeddings(list(item_ids[start : start + chunk]))
        rows.update(got)
        if got and dim is None:
            dim = len(next(iter(got.values())))
    matrix = np.zeros((len(item_ids), dim or searcher.embedder.dim), dtype=np.float32)
    for i, item in enumerate(item_ids):
        if item in rows:
            v = rows[item]
            matrix[i] = v / (np.linalg.norm(v) or 1.0)
    return matrix


@dataclass
class SourceModels:
    """The sequence models of one split: "val" models trained on the items before each user's
    second-to-last (they stop early on it), "serve" models refitted on everything but the last
    item for the val model's best number of epochs, so at serving time SASRec knows the latest
    purchases just as co-occurrence does. (Serving the val model instead cost SASRec ~15 % NDCG@10
    on amazon-office-2014, and a ranker trained on val features then over-trusted it.)"""

    sasrec: Any = None
    textseq: Any = None
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Any, catalog: str, *, train: bool, split: str = "serve", progress: bool = False, which: Sequence[str] = ("sasrec", "textseq")) -> SourceModels:
        """`train=False` (requests): only models already trained for the current data, never a fit."""
        if split not in ("val", "serve"):
            raise ValueError(f"split must be 'val' or 'serve', got {split!r}")
        out = cls()
        loaders: dict[str, Callable[..., Any]] = {}
        if "sasrec" in which:
            from retrieval.sasrec import load_or_train_sasrec

            loaders["sasrec"] = load_or_train_sasrec
        if "textseq" in which:
            try:
                from retrieval.textseq import load_or_train_textseq

                loaders["textseq"] = load_or_train_textseq
            except ImportError as exc:
                log.warning("text-aware sequential model unavailable: %s", exc)
        for name, loader in loaders.items():
            t0 = time.perf_counter()
            try:
                model = loader(settings, catalog, progress=progress, train=train)
                if model is not None and split == "serve":
                    model = refit_on_latest(settings, catalog, name, model, train=train, progress=progress)
                if model is None and not train:
                    model = _last_trained(settings, catalog, name, split)
                setattr(out, name, model)
            except Exception as exc:  # a broken cache must not take the ranking stage down
                log.warning("%s unavailable for %s: %s", name, catalog, exc)
            out.seconds[name] = round(time.perf_counter() - t0, 1)
        return out


def _last_trained(settings: Any, catalog: str, name: str, split: str) -> Any:
    """The last model trained for this catalog even if history has grown since (new events, chat
    likes): an older model still ranks well, and dropping it would leave the ranker's features
    empty until `aisle train models` runs. Items it never saw are scored by the other sources."""
    suffix = ".serve.pt" if split == "serve" else ".pt"
    path = Path(settings.models_dir) / f"{name}-{catalog}{suffix}"
    if not path.is_file():
        return None
    try:
        if name == "sasrec":
            from retrieval.sasrec import SASRecRecommender as cls
        else:
            from retrieval.textseq import TextSeqRecommender as cls
        model = cls.load(path)
    except Exception as exc:  # a broken file is the same as none
        log.warning("cached %s at %s is unusable (%s)", name, path, exc)
        return None
    log.info("%s for %s was trained on older history; serving it until: aisle train models --catalog %s", name, catalog, catalog)
    return model


def refit_on_latest(settings: Any, catalog: str, name: str, val_model: Any, *, train: bool, progress: bool = False) -> Any:
    """`val_model` refitted on every user's items but the last, for its best epoch count (cached
    at models_dir/<name>-<catalog>.serve.pt); None when missing and `train` is False."""
    import copy

    from retrieval.registry import load_interactions

    histories, _ = leave_one_out(load_interactions(settings, catalog))
    epochs = max(1, int(val_model.report.best_epoch or 1))
    blob = json.dumps([val_model.meta.get("fingerprint"), epochs, sorted(histories.items())], separators=(",", ":"))
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = Path(settings.models_dir) / f"{name}-{catalog}.serve.pt"
    from retrieval.sasrec import load_cached

    cached = load_cached(type(val_model), path, fingerprint, train=train)
    if cached is not None or not train:
        return cached
    model = copy.deepcopy(val_model)
    model.fit(histories, epochs=epochs, validate=False, progress=progress)
    model.meta = {"fingerprint": fingerprint, "catalog": catalog, "refit_of": val_model.meta.get("fingerprint"), "epochs": epochs, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    model.save(path)
    return model


def build_sources(catalog: Any, histories: Mapping[str, Sequence[str]], searcher: Any, models: SourceModels, vectors: np.ndarray | None = None) -> tuple[SourceSet, ItemTable]:
    """Sources over the catalog with popularity and co-occurrence fitted on `histories`."""
    item_ids = list(searcher.lexical.ids)  # the searcher's item order: the lexical index is reused as is
    fitted: dict[str, Any] = {
        "popularity": PopularityRecommender(item_ids).fit(histories),
        "cooc": CooccurrenceRecommender(item_ids).fit(histories),
    }
    if models.sasrec is not None:
        fitted["sasrec"] = models.sasrec
    if models.textseq is not None:
        fitted["textseq"] = models.textseq
    items = [catalog.items[i] for i in item_ids]
    sources = SourceSet(
        item_ids=item_ids,
        models=fitted,
        vectors=item_vectors(searcher, item_ids) if vectors is None else vectors,
        lexical=searcher.lexical,
        titles=[it.title for it in items],
        available=np.array([it.available for it in items], dtype=bool),
        embed_query=searcher.embedder.encode_one,
    )
    return sources, ItemTable.build(items, histories)


def with_history(stage: RankingStage, catalog: Any, histories: Mapping[str, Sequence[str]]) -> RankingStage:
    """`stage` with the history-fitted parts (popularity, co-occurrence, the item table's counts)
    refitted on `histories`; the trained models, item vectors, lexical index and ranker are reused.
    New events reach the ranking this way in well under a second, without reopening the catalog."""
    old = stage.sources
    item_ids = old.item_ids
    models = dict(old.models)
    models["popularity"] = PopularityRecommender(item_ids).fit(histories)
    models["cooc"] = CooccurrenceRecommender(item_ids).fit(histories)
    sources = SourceSet(
        item_ids=item_ids, models=models, vectors=old.vectors, lexical=old.lexical, titles=old.titles, available=old.available, embed_query=old.embed_query
    )
    fresh = RankingStage(sources, ItemTable.build([catalog.items[i] for i in item_ids], histories), stage.ranker, stage.depths)
    fresh.llm, fresh.llm_catalog = stage.llm, stage.llm_catalog
    return fresh


def missing_models(settings: Any, catalog: str) -> list[str]:
    """Which of the files `aisle train models` writes are missing for `catalog` (stale ones count as
    present: the ranking stage serves the last trained model until the next training run)."""
    models_dir = Path(settings.models_dir)
    missing = [name for name in ("sasrec", "textseq") if not (models_dir / f"{name}-{catalog}.serve.pt").is_file()]
    return missing + ([] if ranker_path(settings, catalog).is_file() else ["ranker"])


class RankingStage:
    """Candidates from every source, ordered by the learned ranker (or by RRF when it has none)."""

    def __init__(self, sources: SourceSet, table: ItemTable, ranker: LearnedRanker | None, depths: Mapping[str, int] | None = None) -> None:
        self.sources = sources
        self.table = table
        self.ranker = ranker
        self.depths = dict(depths or DEFAULT_DEPTHS)
        self.feature_sources = list(HISTORY_SOURCES)  # fixed columns: a missing source is NaN
        self.llm: LLMStage | None = None  # a second stage over the top 20, only when its gate kept it
        self.llm_catalog: Any = None  # the Catalog whose records the LLM prompt shows

    def score(self, shoppers: Sequence[Shopper], *, query_sources: bool = False) -> list[Scored]:
        """Every source's scores; the query sources only when asked (the ranker's features never
        read them, and a search turn has already embedded and BM25-scored the words)."""
        return self.sources.score(shoppers, None if query_sources else HISTORY_SOURCES)

    def candidates(self, scored: Scored, *, query_sources: bool = False) -> np.ndarray:
        depths = {k: v for k, v in self.depths.items() if query_sources or k in HISTORY_SOURCES}
        return union(scored, depths)

    def feature_matrix(self, scored: Scored, shopper: Shopper, cands: np.ndarray, extra: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        return features(self.sources, self.table, scored, shopper, cands, self.feature_sources, self.depths, extra)

    def rrf(self, scored: Scored, cands: np.ndarray) -> np.ndarray:
        """Reciprocal-rank fusion of the history sources (the no-learning reference)."""
        from retrieval.collab import RRF_K

        total = np.zeros(len(cands))
        for s in self.feature_sources:
            if s in scored.scores:
                ranks = scored.ranks(s, cands)
                total += np.where(np.isfinite(ranks) & (ranks <= self.depths.get(s, 0)), 1.0 / (RRF_K + np.nan_to_num(ranks, nan=1e9)), 0.0)
        return total

    def rank(self, scored: Scored, shopper: Shopper, *, query_sources: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(candidate positions best first, their scores). The learned ranker's order, else RRF."""
        cands = self.candidates(scored, query_sources=query_sources)
        if len(cands) == 0:
            return cands, np.zeros(0)
        if self.ranker is None:
            scores = self.rrf(scored, cands)
        else:
            scores = self.ranker.predict(self.feature_matrix(scored, shopper, cands))
        order = np.argsort(-scores, kind="stable")
        return cands[order], scores[order]

    def order(self, shopper: Shopper, item_ids: Sequence[str]) -> list[tuple[str, float]]:
        """`item_ids` (e.g. search hits) ordered by the ranker for this shopper (RRF without one);
        ids outside the catalog's vocabulary are dropped."""
        scored = self.score([shopper])[0]
        cands = np.array([self.sources.position[i] for i in item_ids if i in self.sources.position], dtype=np.int64)
        if len(cands) == 0:
            return []
        scores = self.rrf(scored, cands) if self.ranker is None else self.ranker.predict(self.feature_matrix(scored, shopper, cands))
        order = np.argsort(-scores, kind="stable")
        return [(self.sources.item_ids[cands[i]], float(scores[i])) for i in order]

    def recommend(self, shopper: Shopper, n: int, *, query_sources: bool = False, keep: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        """Top-n (item id, score) for one shopper; `keep` filters item ids (search filters)."""
        scored = self.score([shopper], query_sources=query_sources)[0]
        positions, scores = self.rank(scored, shopper, query_sources=query_sources)
        out: list[tuple[str, float]] = []
        for p, s in zip(positions, scores):
            item = self.sources.item_ids[p]
            if keep is None or keep(item):
                out.append((item, float(s)))
                if len(out) == max(n, STAGE2_DEPTH if self.llm is not None else n):
                    break
        if self.llm is not None and len(out) > 1:
            head = out[:STAGE2_DEPTH]
            catalog = self.llm_catalog
            if catalog is not None:
                ids, s2 = self.llm.reorder(catalog, shopper, [i for i, _ in head], np.array([s for _, s in head]))
                out = list(zip(ids, map(float, s2))) + out[STAGE2_DEPTH:]
        return out[:n]


# --- the LLM stage ---------------------------------------------------------------------------------

LLM_STAGE_NAMES = ("stage1_score", "stage1_rank", "llm_score", "llm_rank")


class LLMStage:
    """A second LightGBM stage over the first stage's top 20: the first stage's score and rank plus
    the LLM's one-pass score and rank (calibrated letter probabilities, `agent.recommend.rank`).
    It is trained on users the first stage never trained on, and kept only when it beats the first
    stage's own order on them (`gate`); otherwise the LLM is not called at all."""

    def __init__(self, reranker: Any, ranker: LearnedRanker | None = None, name: str = "llm") -> None:
        self.reranker = reranker  # agent.recommend.rank.Reranker in "onepass" mode
        self.ranker = ranker
        self.name = name

    def llm_scores(self, catalog: Any, shopper: Shopper, top_ids: Sequence[str]) -> np.ndarray:
        """The LLM's normalised score per candidate (NaN when it fell back: no answer, no signal)."""
        from agent.recommend.rank import Candidate, RankContext

        titles = [catalog.items[i].title for i in shopper.history if i in catalog.items]
        cands = [Candidate(catalog.items[i], float(len(top_ids) - k)) for k, i in enumerate(top_ids)]
        result = self.reranker.rank(cands, RankContext(shopper.query, titles))
        by_id = {r.item.id: r.llm_score for r in result.items}
        return np.array([np.nan if by_id.get(i) is None else float(by_id[i]) for i in top_ids], dtype=np.float64)

    @staticmethod
    def features(stage1_scores: np.ndarray, llm: np.ndarray) -> np.ndarray:
        ranks = np.arange(1, len(stage1_scores) + 1, dtype=np.float64)
        llm_rank = np.full(len(llm), np.nan)
        ok = np.isfinite(llm)
        if ok.any():
            order = np.argsort(-np.where(ok, llm, -np.inf), kind="stable")
            llm_rank[order] = ranks
            llm_rank[~ok] = np.nan
        return np.column_stack([stage1_scores, ranks, llm, llm_rank]).astype(np.float32)

    def reorder(self, catalog: Any, shopper: Shopper, top_ids: list[str], stage1_scores: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The top ids re-ordered by the second stage (unchanged when there is none)."""
        if self.ranker is None or len(top_ids) < 2:
            return top_ids, stage1_scores
        x = self.features(stage1_scores, self.llm_scores(catalog, shopper, top_ids))
        scores = self.ranker.predict(x)
        order = np.argsort(-scores, kind="stable")
        return [top_ids[i] for i in order], scores[order]


def fit_llm_stage(groups: Sequence[tuple[np.ndarray, np.ndarray]], config: RankerConfig | None = None, gate_share: float = 0.3) -> tuple[LearnedRanker | None, dict[str, Any]]:
    """Train the second stage on `groups` (features from `LLMStage.features`, label 1 on the held-out
    item) and gate it on groups it never saw (neither for fitting nor for early stopping): kept
    only when its NDCG@10 there beats the first stage's order by more than two standard errors of
    the paired difference. A signal-less LLM therefore costs nothing: its stage is dropped.
    Returns (ranker or None, report with both figures and the feature importances)."""
    kept = [(x, y) for x, y in groups if y.sum() > 0]
    cfg = config or RankerConfig(num_leaves=7, min_child_samples=20, n_estimators=200, valid_share=0.2, early_stopping_rounds=30)
    report: dict[str, Any] = {"groups": len(kept), "kept": False}
    if len(kept) < 30:
        report["why"] = f"only {len(kept)} groups with the held-out item in the top {STAGE2_DEPTH}; need 30"
        return None, report
    order = np.random.default_rng(cfg.seed + 1).permutation(len(kept))
    n_gate = max(10, int(len(kept) * gate_share))
    gate, fit = [kept[i] for i in order[:n_gate]], [kept[i] for i in order[n_gate:]]
    ranker = LearnedRanker(list(LLM_STAGE_NAMES), cfg)
    ranker.fit(fit)
    first = np.array([_ndcg10(-x[:, 1], y) for x, y in gate])  # the first stage's order is its rank
    second = np.array([_ndcg10(ranker.predict(x), y) for x, y in gate])
    diff = second - first
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    keep = bool(diff.mean() > 2 * se)  # about a 2.5 % chance of keeping a signal-less LLM
    report.update(
        {
            "fit_groups": len(fit),
            "gate_groups": len(gate),
            "gate_ndcg10_stage1": round(float(first.mean()), 4),
            "gate_ndcg10_with_llm": round(float(second.mean()), 4),
            "gate_diff_se": round(se, 4),
            "kept": keep,
            "importances": ranker.report.importances,
        }
    )
    if not keep:
        report["why"] = "on held-out users the LLM stage did not beat the first stage's order by more than two standard errors"
    return (ranker if keep else None), report


def llm_stage_path(settings: Any, catalog: str) -> Path:
    return Path(settings.models_dir) / f"ranker-{catalog}.llm.lgb"


def train_llm_stage(
    settings: Any,
    catalog_name: str,
    llm: LLMStage,
    *,
    searcher: Any,
    val_models: SourceModels,
    max_users: int = LLM_STAGE_USERS,
    adapter: str | None = None,
    save: bool = True,
    progress: bool = False,
) -> tuple[LearnedRanker | None, LearnedRanker | None, dict[str, Any]]:
    """Train and gate the LLM stage on the val users the first stage never saw (their
    second-to-last item, first-stage top 20 from the saved ranker). Returns (the gated ranker or
    None, the same stage fitted regardless of the gate for ablations, the report). With `save`,
    a kept stage is written next to the ranker (and a stale one removed when dropped)."""
    from retrieval.registry import load_interactions

    t0 = time.perf_counter()
    catalog = searcher.catalog
    train, _ = leave_one_out(load_interactions(settings, catalog_name))
    val_hist, val_targets = leave_one_out(train)
    users = val_split(val_hist, val_targets, catalog, seed=settings.seed)["stage2"][:max_users]
    sources, table = build_sources(catalog, val_hist, searcher, val_models)
    stage = RankingStage(sources, table, LearnedRanker.load(ranker_path(settings, catalog_name)))
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    for u in job_bar(users, desc=f"{llm.name} stage: training users", unit="user", enabled=progress, leave=False):
        ranked = stage.recommend(Shopper(history=val_hist[u]), STAGE2_DEPTH)
        ids = [i for i, _ in ranked]
        if val_targets[u] not in ids:
            continue  # only users whose item is in the top 20 carry a gradient: the LLM is not called for the rest
        x = LLMStage.features(np.array([s for _, s in ranked]), llm.llm_scores(catalog, Shopper(history=val_hist[u]), ids))
        groups.append((x, np.array([1.0 if i == val_targets[u] else 0.0 for i in ids], dtype=np.float32)))
    ranker, report = fit_llm_stage(groups)
    forced = ranker
    if ranker is None and len(groups) >= 30:
        forced = LearnedRanker(list(LLM_STAGE_NAMES), RankerConfig(num_leaves=7, min_child_samples=20, n_estimators=200, valid_share=0.2, early_stopping_rounds=30, seed=settings.seed))
        forced.fit(groups)
    report.update({"users": len(users), "adapter": adapter, "seconds": round(time.perf_counter() - t0, 1)})
    if save:
        path = llm_stage_path(settings, catalog_name)
        if ranker is not None:
            ranker.meta = {"adapter": adapter, "gate": {k: v for k, v in report.items() if k != "importances"}, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            ranker.save(path)
        else:
            path.unlink(missing_ok=True)
            Path(str(path) + ".json").unlink(missing_ok=True)
    return ranker, forced, report


def _ndcg10(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = np.flatnonzero(labels[order] > 0)
    return float(1.0 / np.log2(hits[0] + 2)) if hits.size and hits[0] < 10 else 0.0


# --- training ------------------------------------------------------------------------------------


def training_groups(
    stage: RankingStage,
    histories: Mapping[str, Sequence[str]],
    targets: Mapping[str, str],
    users: Sequence[str],
    *,
    progress: bool = False,
    batch: int = 256,
    desc: str = "ranker features",
    keep_misses: bool = False,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Feature groups (one per user) with label 1 on the target, and the candidate recall.
    `keep_misses`: a user whose target no source nominated keeps an empty group (the settings
    search scores them as misses)."""
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    hits = 0
    position = stage.sources.position
    empty = (np.zeros((0, len(feature_names(stage.feature_sources))), dtype=np.float32), np.zeros(0, dtype=np.float32))
    with job_bar(total=len(users), desc=desc, unit="user", enabled=progress, leave=False) as bar:
        for start in range(0, len(users), batch):
            chunk = list(users[start : start + batch])
            shoppers = [Shopper(history=histories[u]) for u in chunk]
            for u, shopper, scored in zip(chunk, shoppers, stage.score(shoppers)):
                cands = stage.candidates(scored)
                labels = (cands == position.get(targets[u], -1)).astype(np.float32)
                hits += int(labels.sum() > 0)
                if labels.sum() > 0:
                    groups.append((stage.feature_matrix(scored, shopper, cands), labels))
                elif keep_misses:
                    groups.append(empty)
            bar.update(len(chunk))
    return groups, {"users": len(users), "target_in_union": hits, "union_recall": hits / max(len(users), 1)}


def val_split(val_hist: Mapping[str, Sequence[str]], val_targets: Mapping[str, str], catalog: Any, *, seed: int = 0) -> dict[str, list[str]]:
    """Users of the val split (target = second-to-last item): "stage2" (a seeded fifth, at most
    LLM_STAGE_USERS) trains and gates the LLM stage and is never seen by the first stage, which
    trains on "stage1" (the rest)."""
    eligible = sorted(u for u in val_targets if val_targets[u] in catalog.items and val_hist[u])
    stage2 = set(sample_users(eligible, min(LLM_STAGE_USERS, len(eligible) // 5), seed=seed + 7))
    return {"stage1": [u for u in eligible if u not in stage2], "stage2": sorted(stage2)}


def stage_fingerprint(item_ids: Sequence[str], histories: Mapping[str, Sequence[str]], models: SourceModels, config: RankerConfig, depths: Mapping[str, int], *, search: bool = True) -> str:
    """The data and settings a ranker was trained from (`config`, `depths`: the search's defaults)."""
    parts = [list(item_ids), sorted(histories.items()), repr(config), sorted(depths.items()), search_space() if search else None]
    for name in ("sasrec", "textseq"):
        model = getattr(models, name)
        parts.append((name, (getattr(model, "meta", {}) or {}).get("fingerprint") if model is not None else None))
    return hashlib.sha256(json.dumps(parts, separators=(",", ":"), default=str).encode()).hexdigest()[:16]


def train_ranking_stage(
    settings: Any,
    catalog_name: str,
    *,
    searcher: Any = None,
    models: SourceModels | None = None,
    users: int = TRAIN_USERS,
    config: RankerConfig | None = None,
    depths: Mapping[str, int] | None = None,
    search: bool = True,
    progress: bool = True,
    save: bool = True,
) -> tuple[LearnedRanker, dict[str, Any]]:
    """Train the learned ranker on the second-to-last items (val split) and save it. With
    `search`, its depths and tree settings are first chosen on the same users
    (`retrieval.ranker_search`; `config` and `depths` are the defaults it starts from)."""
    from retrieval.registry import load_interactions
    from retrieval.search import open_searcher

    t0 = time.perf_counter()
    searcher = searcher or open_searcher(settings, catalog_name, progress=progress)
    catalog = searcher.catalog
    models = models or SourceModels.load(settings, catalog_name, train=True, split="val", progress=progress)
    config = config or RankerConfig(seed=settings.seed)
    depths = dict(depths or DEFAULT_DEPTHS)
    train, _test = leave_one_out(load_interactions(settings, catalog_name))
    val_hist, val_targets = leave_one_out(train)
    split = val_split(val_hist, val_targets, catalog, seed=config.seed)
    chosen = sample_users(split["stage1"], users, seed=config.seed)
    sources, table = build_sources(catalog, val_hist, searcher, models)
    profiles = depth_profiles(depths, HISTORY_SOURCES) if search else {"default": depths}
    stage = RankingStage(sources, table, None, deepest(profiles))
    groups, _ = training_groups(stage, val_hist, val_targets, chosen, progress=progress, keep_misses=True)
    names = feature_names(stage.feature_sources)
    selection = select(groups, names, stage.feature_sources, profiles, config, seed=config.seed) if search else Selection("default", depths, config)
    groups = [restrict(g, names, stage.feature_sources, selection.depths) for g in groups]
    hits = sum(int(y.sum() > 0) for _x, y in groups)
    recall = {"users": len(chosen), "target_in_union": hits, "union_recall": hits / max(len(chosen), 1)}
    ranker = LearnedRanker(names, selection.config)
    report = ranker.fit(groups, progress=progress)
    ranker.meta = {
        "catalog": catalog_name,
        "fingerprint": stage_fingerprint(sources.item_ids, train, models, config, depths, search=search),
        "depths": selection.depths,
        "search": selection.summary(),
        "train_users": len(chosen),
        "llm_stage_users": len(split["stage2"]),
        "split": "target = each user's second-to-last item; sources fitted on the items before it; the last item is never seen",
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **{f"val_{k}": v for k, v in recall.items()},
    }
    if save:
        ranker.save(ranker_path(settings, catalog_name))
    info = {"seconds": round(time.perf_counter() - t0, 1), "fit_seconds": report.seconds, "search_seconds": round(selection.seconds, 1), "groups": report.groups, **recall}
    log.info("trained the ranker for %s in %.0f s (%d groups, valid NDCG@10 %.4f)", catalog_name, info["seconds"], report.groups, report.valid_ndcg10 or 0.0)
    return ranker, info


def load_ranking_stage(
    settings: Any, catalog_name: str, searcher: Any, *, interactions: Mapping[str, Sequence[str]] | None = None, engine_for: Callable[[str | None], Any] | None = None
) -> RankingStage | None:
    """The serving stage of a catalog: sources fitted on the current history and the saved ranker
    (None when the catalog has no history). Without a trained ranker (or a stale one) it orders
    by RRF and logs how to train it; requests never train. `engine_for(adapter)` gives the LLM
    engine for a kept LLM stage (None: the stage is not used)."""
    from retrieval.catalog import CatalogError
    from retrieval.registry import load_interactions

    try:
        interactions = interactions if interactions is not None else load_interactions(settings, catalog_name)
    except CatalogError:
        return None
    train, _ = leave_one_out(interactions)
    models = SourceModels.load(settings, catalog_name, train=False)
    sources, table = build_sources(searcher.catalog, train, searcher, models)
    ranker: LearnedRanker | None = None
    path = ranker_path(settings, catalog_name)
    if path.is_file():
        try:
            ranker = LearnedRanker.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ranker at %s is unusable (%s); ordering by RRF until: aisle train models --catalog %s", path, exc, catalog_name)
    else:
        log.info("no learned ranker for %s; ordering by RRF until: aisle train models --catalog %s", catalog_name, catalog_name)
    depths = ranker.meta.get("depths") if ranker is not None else None
    stage = RankingStage(sources, table, ranker, depths)
    llm_path = llm_stage_path(settings, catalog_name)
    if ranker is not None and engine_for is not None and llm_path.is_file():
        try:
            second = LearnedRanker.load(llm_path)
            engine = engine_for(second.meta.get("adapter"))
            if engine is not None:
                from agent.recommend.rank import Reranker

                stage.llm = LLMStage(Reranker(engine, mode="onepass", llm_weight=1.0, seed=settings.seed), second)
                stage.llm_catalog = searcher.catalog
        except (OSError, ValueError, KeyError) as exc:
            log.warning("LLM stage at %s is unusable (%s); the first stage orders alone", llm_path, exc)
    return stage


def first_stage(settings: Any, catalog_name: str, *, split: str = "val", n: int = STAGE2_DEPTH, searcher: Any = None) -> Callable[[Sequence[str]], list[str]]:
    """A function history -> the stage's top-n item ids, for building LLM training data.

    split "val": sources fitted on the items before each user's second-to-last (what the LLM
    ranker trains on); "test": fitted on all but the last (serving)."""
    from retrieval.registry import load_interactions
    from retrieval.search import open_searcher

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    searcher = searcher or open_searcher(settings, catalog_name, progress=False)
    train, _ = leave_one_out(load_interactions(settings, catalog_name))
    histories = leave_one_out(train)[0] if split == "val" else train
    models = SourceModels.load(settings, catalog_name, train=False, split="val" if split == "val" else "serve")
    sources, table = build_sources(searcher.catalog, histories, searcher, models)
    path = ranker_path(settings, catalog_name)
    stage = RankingStage(sources, table, LearnedRanker.load(path) if path.is_file() else None)

    def top(history: Sequence[str]) -> list[str]:
        return [i for i, _s in stage.recommend(Shopper(history=list(history)), n)]

    return top


__all__ = [
    "RankingStage",
    "SourceModels",
    "build_sources",
    "first_stage",
    "item_vectors",
    "load_ranking_stage",
    "missing_models",
    "ranker_path",
    "train_ranking_stage",
    "training_groups",
    "with_history",
]
