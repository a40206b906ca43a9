"""The ranking stage's rows of `aisle eval ranking`: every source alone, their union fused by RRF,
the union ordered by the learned ranker, and the learned ranker with the LLM stage (base model,
fine-tuned adapter), all on the full catalog (an item no source nominated is a miss).

Also measured here: the recall ceiling of each source and of the union at 20/50/100/200, the
same metrics on cold-item users (held-out item with <= 2 training interactions), and the training
time of every model. Called by `evals.ranking.run_ranking_eval`; see `agent.recommend.ltr` for the
splits (nothing trains on the evaluated item).

LLM calls are made only for users whose held-out item is in the first stage's top 20: the LLM
stage only permutes those 20, so for every other user each metric is the first stage's, exactly.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evals.metrics import Tally

log = logging.getLogger(__name__)

RECALL_DEPTHS = (20, 50, 100, 200)
DEPTH = 20
COLD_MAX = 2
SOURCE_LABELS = {
    "textseq": "Text-aware sequential (source)",
    "dense_hist": "Dense similarity to last items (source)",
    "bm25_hist": "BM25 of last titles (source)",
}


def cold_users(users: Sequence[str], histories: Mapping[str, Sequence[str]], targets: Mapping[str, str], max_count: int = COLD_MAX) -> list[str]:
    """Users whose held-out item appears at most `max_count` times in all training histories."""
    counts = Counter(i for seq in histories.values() for i in seq)
    return [u for u in users if counts.get(targets[u], 0) <= max_count]


def run_stage_rows(
    settings: Any,
    cfg: Any,
    catalog: Any,
    searcher: Any,
    users: Sequence[str],
    histories: Mapping[str, list[str]],
    targets: Mapping[str, str],
    record: Callable[..., None],
    seconds: dict[str, float],
    notes: list[str],
    *,
    serve_models: Any,
    engine: Any = None,
    all_targets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Adds the stage's systems through `record`; returns recall ceilings, gates, training times and
    the cold-item block (every user of the catalog whose held-out item is cold, not only the sample)."""
    from agent.recommend.ltr import RankingStage, SourceModels, build_sources, ranker_path, stage_fingerprint, train_ranking_stage
    from retrieval.candidates import DEFAULT_DEPTHS, Shopper
    from retrieval.learned_ranker import LearnedRanker, RankerConfig

    meta: dict[str, Any] = {"training_seconds": {}}
    t0 = time.perf_counter()
    val_models = SourceModels.load(settings, cfg.catalog, train=True, split="val", progress=cfg.progress)
    for name in ("sasrec", "textseq"):
        for split, models in (("val", val_models), ("serve", serve_models)):
            model = getattr(models, name)
            if model is not None:
                meta["training_seconds"][f"{name} ({split})"] = round(float(model.report.seconds), 1)
    seconds["models (load or train)"] = time.perf_counter() - t0

    # --- the first stage: reuse the saved ranker when it was trained on exactly this data ---
    t0 = time.perf_counter()
    ranker = None
    path = ranker_path(settings, cfg.catalog)
    sources, table = build_sources(catalog, histories, searcher, serve_models)
    expected = stage_fingerprint(sources.item_ids, histories, val_models, RankerConfig(seed=settings.seed), DEFAULT_DEPTHS)
    if path.is_file():
        try:
            cached = LearnedRanker.load(path)
            if cached.meta.get("fingerprint") == expected:
                ranker = cached
        except (OSError, ValueError, KeyError) as exc:
            notes.append(f"saved ranker unusable ({exc}); retrained")
    if ranker is None:
        try:
            ranker, info = train_ranking_stage(settings, cfg.catalog, searcher=searcher, models=val_models, progress=cfg.progress)
            meta["ranker_train"] = info
        except ValueError as exc:  # too little history to learn from: the union is ordered by RRF only
            notes.append(f"learned ranker not trained: {exc}")
    if ranker is not None:
        meta["training_seconds"]["learned ranker"] = ranker.report.seconds
        meta["ranker"] = {"report": ranker.report.__dict__, "meta": ranker.meta}
    seconds["learned ranker (load or train)"] = time.perf_counter() - t0

    depths = ranker.meta.get("depths") if ranker is not None else None
    stage = RankingStage(sources, table, ranker, depths)
    rrf = RankingStage(sources, table, None, depths)
    source_names = [n for n in sources.names if n not in ("dense_query", "bm25_query")]
    tallies = {name: Tally(name, catalog.items) for name in ["union:rrf", "union:ltr", *[f"source:{n}" for n in source_names]]}
    stage1: dict[str, tuple[list[str], np.ndarray]] = {}
    recall = {n: dict.fromkeys(RECALL_DEPTHS, 0) for n in [*source_names, "union"]}
    union_sizes: list[int] = []
    t0 = time.perf_counter()
    for user in tqdm(users, desc="Ranking stage", unit="user", disable=not cfg.progress, leave=False):
        shopper = Shopper(history=histories[user])
        t_user = time.perf_counter()
        scored = stage.score([shopper])[0]
        positions, scores = stage.rank(scored, shopper)
        ltr_ms = (time.perf_counter() - t_user) * 1e3
        ranked = [sources.item_ids[p] for p in positions]
        tallies["union:ltr"].add(user, ranked[:DEPTH], ltr_ms)
        stage1[user] = (ranked[:DEPTH], scores[:DEPTH])
        p_rrf, _ = rrf.rank(scored, shopper)
        tallies["union:rrf"].add(user, [sources.item_ids[p] for p in p_rrf[:DEPTH]], None)
        target = sources.position.get(targets[user], -1)
        union_sizes.append(len(positions))
        for name in source_names:
            top = scored.top(name, max(RECALL_DEPTHS))
            tallies[f"source:{name}"].add(user, [sources.item_ids[p] for p in top[:DEPTH]], None)
            for d in RECALL_DEPTHS:
                recall[name][d] += int(target in set(top[:d].tolist()))
        for d in RECALL_DEPTHS:
            recall["union"][d] += int(target in set(positions[:d].tolist()))
    seconds["union (RRF and learned ranker)"] = time.perf_counter() - t0
    n = max(len(users), 1)
    meta["recall"] = {name: {str(d): round(v / n, 4) for d, v in per.items()} for name, per in recall.items()}
    meta["union_size_mean"] = round(float(np.mean(union_sizes)), 1) if union_sizes else 0
    for name in source_names:
        if name in SOURCE_LABELS:
            record(f"source:{name}", tallies[f"source:{name}"], SOURCE_LABELS[name], "source", "full catalog")
    record("union:rrf", tallies["union:rrf"], "All sources, union + RRF", "ablation", "full catalog")
    meta["cold"] = _cold_block(stage, serve_models, sources, histories, all_targets or targets, catalog, cfg)
    if ranker is None:
        return meta
    record("union:ltr", tallies["union:ltr"], "All sources + learned ranker", "pipeline", "full catalog", {"importances_top": dict(ranker.top_importances(6))})

    # --- the LLM stage: base model, and the fine-tuned adapter when one exists ---
    llm_rows = _llm_stage_rows(settings, cfg, catalog, searcher, users, histories, targets, stage1, record, seconds, notes, meta, engine, val_models)
    meta["llm_stage"] = llm_rows
    return meta


def _cold_block(stage: Any, serve_models: Any, sources: Any, histories: Mapping[str, list[str]], targets: Mapping[str, str], catalog: Any, cfg: Any) -> dict[str, Any]:
    """NDCG@10 / Recall@20 on every user whose held-out item has <= COLD_MAX training interactions
    (all of them, not only the sampled users): SASRec, co-occurrence, the text-aware model, the
    learned ranker. A sample of a few hundred users holds too few of them to compare."""
    from evals.metrics import evaluate_rankings
    from retrieval.candidates import Shopper

    eligible = sorted(u for u in targets if targets[u] in catalog.items and histories.get(u))
    users = cold_users(eligible, histories, targets)
    out: dict[str, Any] = {"max_count": COLD_MAX, "users": len(users), "systems": {}}
    if not users:
        return out
    runs: dict[str, dict[str, list[str]]] = {"cooc": {}, "sasrec": {}, "sasrec:corrected": {}, "textseq": {}, "union:ltr": {}}
    # The text model's scores carry a popularity correction (retrieval/textseq.py, score_batch): the
    # same correction applied to SASRec shows how much of its lead on these users the correction
    # alone would give an id model.
    beta = float(getattr(getattr(serve_models.textseq, "config", None), "popularity_correction", 0.0) or 0.0)
    counts = Counter(i for h in histories.values() for i in h)
    log_counts = np.log1p(np.array([counts[i] for i in sources.item_ids], dtype=np.float64))
    for u in tqdm(users, desc="Cold-item users", unit="user", disable=not cfg.progress, leave=False):
        shopper = Shopper(history=histories[u])
        scored = stage.score([shopper])[0]
        for name in ("cooc", "sasrec", "textseq"):
            if name in scored.scores:
                runs[name][u] = [sources.item_ids[p] for p in scored.top(name, DEPTH)]
        if beta and "sasrec" in scored.scores:
            scored.scores["sasrec:corrected"] = scored.scores["sasrec"] - beta * log_counts
            runs["sasrec:corrected"][u] = [sources.item_ids[p] for p in scored.top("sasrec:corrected", DEPTH)]
        positions, _ = stage.rank(scored, shopper)
        runs["union:ltr"][u] = [sources.item_ids[p] for p in positions[:DEPTH]]
    labels = {
        "cooc": "Item co-occurrence",
        "sasrec": "SASRec",
        "sasrec:corrected": f"SASRec with the text model's popularity correction (beta {beta:g})",
        "textseq": "Text-aware sequential",
        "union:ltr": "All sources + learned ranker" if stage.ranker is not None else "All sources, union + RRF",
    }
    for name, run in runs.items():
        if run:
            out["systems"][name] = {"label": labels[name], **evaluate_rankings({u: targets[u] for u in users}, run, ("ndcg@10", "recall@20"))}
    return out


def _llm_stage_rows(
    settings: Any,
    cfg: Any,
    catalog: Any,
    searcher: Any,
    users: Sequence[str],
    histories: Mapping[str, list[str]],
    targets: Mapping[str, str],
    stage1: Mapping[str, tuple[list[str], np.ndarray]],
    record: Callable[..., None],
    seconds: dict[str, float],
    notes: list[str],
    meta: dict[str, Any],
    engine: Any,
    val_models: Any,
) -> dict[str, Any]:
    from agent.recommend.ltr import LLMStage, train_llm_stage
    from agent.recommend.rank import Reranker
    from retrieval.candidates import Shopper

    engines: list[tuple[str, str, Any]] = []
    if cfg.llm_stage:
        from agent.engines import make_engine

        base = engine if engine is not None else make_engine(settings)
        engines.append(("llm", "+ LLM one-pass feature (packaged model)", base))
        adapter = _ranker_adapter(settings, cfg.catalog)
        if adapter is not None:
            try:
                engines.append(("llm-ft", f"+ fine-tuned LLM feature ({adapter.name})", make_engine(settings, adapter=adapter)))
            except Exception as exc:
                notes.append(f"fine-tuned LLM ranker skipped: {type(exc).__name__}: {exc}")
        else:
            notes.append(f"no fine-tuned LLM ranker for {cfg.catalog} (aisle train ranker --catalog {cfg.catalog}): its row is missing")
    if not engines:
        return {}

    out: dict[str, Any] = {}
    hit_users = [u for u in users if targets[u] in set(stage1[u][0])]
    for key, label, eng in engines:
        t0 = time.perf_counter()
        llm = LLMStage(Reranker(eng, mode="onepass", llm_weight=1.0, calibrate=cfg.calibrate, seed=settings.seed), None, key)
        ranker2, forced, gate = train_llm_stage(settings, cfg.catalog, llm, searcher=searcher, val_models=val_models, max_users=cfg.llm_stage_users, adapter=key, save=False, progress=cfg.progress)
        train_s = time.perf_counter() - t0
        tally = Tally(f"union:ltr+{key}", catalog.items)
        lat: list[float] = []
        llm_ranks: list[float] = []  # the held-out item's rank among the 20 by the LLM's score alone
        stage1_ranks: list[int] = []
        for u in users:
            ids, s1 = stage1[u]
            if u in hit_users:
                t_user = time.perf_counter()
                x = LLMStage.features(s1, llm.llm_scores(catalog, Shopper(history=histories[u]), ids))
                pos = ids.index(targets[u])
                stage1_ranks.append(pos + 1)
                llm_ranks.append(float(x[pos, 3]) if np.isfinite(x[pos, 3]) else float(len(ids)))
                order = np.argsort(-forced.predict(x), kind="stable") if forced is not None else np.arange(len(ids))
                lat.append((time.perf_counter() - t_user) * 1e3)
                tally.add(u, [ids[i] for i in order], None)
            else:
                tally.add(u, ids, None)
        tally.latency_ms = lat
        seconds[f"LLM stage {key}"] = time.perf_counter() - t0
        same_candidates = {
            "users": len(llm_ranks),
            "llm_mean_rank": round(float(np.mean(llm_ranks)), 2) if llm_ranks else None,
            "llm_ndcg10": round(float(np.mean([1 / np.log2(r + 1) if r <= 10 else 0.0 for r in llm_ranks])), 4) if llm_ranks else None,
            "stage1_mean_rank": round(float(np.mean(stage1_ranks)), 2) if stage1_ranks else None,
            "stage1_ndcg10": round(float(np.mean([1 / np.log2(r + 1) if r <= 10 else 0.0 for r in stage1_ranks])), 4) if stage1_ranks else None,
            "chance_mean_rank": 10.5,
        }
        extra = {
            "llm_users": len(hit_users), "gate": gate, "train_seconds": round(train_s, 1), "importances": (forced.report.importances if forced else {}),
            "same_candidates": same_candidates,
        }  # fmt: skip
        record(f"union:ltr+{key}", tally, f"All sources + learned ranker {label} (forced in)", "ablation", "full catalog", extra)
        out[key] = {"gate": gate, "train_seconds": round(train_s, 1), "same_candidates": same_candidates}
    return out


def _ranker_adapter(settings: Any, catalog: str) -> Any:
    from agent.train.ranker import ranker_adapter_path

    return ranker_adapter_path(settings, catalog)
