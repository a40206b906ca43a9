"""`aisle eval ranking --rows valid|test`: the published row protocol of a catalog's splits.

Every row of the split (history in, next item out) is scored against the full catalog, as the
generative-recommender papers do (MiniOneRec on amazon-office-2018: HR@10 / NDCG@10 over all
items, every test row, history items *not* masked). The masked figure (history items removed
from the same ranking) is reported beside it.

What models see (`retrieval.rows.training_histories`):
- `--rows valid` (every choice is made here): what precedes the valid period. SASRec stops early
  on the valid rows, so its valid figure includes that one choice; the candidate depths and the
  ranker's trees are chosen on held-out users of the valid rows (`retrieval.ranker_search`), and
  the ranker is then cross-fitted (trained on the other folds' users, scored on a fold's rows):
  its valid figure includes that choice too.
- `--rows test`: the valid rows (history + target) and each test user's first-row history.
  SASRec is refitted on them for the epoch count the valid run chose; the learned ranker trains
  with the settings chosen on the valid rows, on the valid rows (features from the valid-period sources), then scores test rows with the
  sources refitted on the test-period history. No test target is ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evals import report as rep
from evals.metrics import evaluate_rankings

ROW_METRICS = ("hit_rate@10", "ndcg@10")
DEPTH = 20  # ranked per row; the masked figure drops history items from it (rows hold <= 10)
FOLDS = 5  # cross-fitting folds of the learned ranker on valid rows

# MiniOneRec's table (HR@10, NDCG@10; full ranking over 3,459 items, every test row).
PAPER_ROWS: dict[str, dict[str, tuple[float, float]]] = {
    "amazon-office-2018": {
        "GRU4Rec": (0.1019, 0.0669),
        "SASRec": (0.1120, 0.0858),
        "TIGER": (0.1408, 0.1002),
        "HSTU": (0.1400, 0.1126),
        "BIGRec": (0.1434, 0.1091),
        "D3": (0.1634, 0.1213),
        "S-DPO": (0.1587, 0.1255),
        "MiniOneRec": (0.1634, 0.1242),
    }
}
DIFFERENCES = (
    "The source's train file was not published: models here learn only from the valid rows and the test users' "
    "first-row histories (what precedes the test period), a fraction of the paper's training interactions.",
    "Users with no valid or test row are absent from training altogether (the paper's train file holds them).",
)


@dataclass
class RowsConfig:
    catalog: str = "amazon-office-2018"
    rows: str = "valid"  # "valid" | "test"
    sasrec: dict[str, Any] = field(default_factory=dict)  # SASRecConfig overrides
    sasrec_epochs: int = 200
    sasrec_patience: int = 10
    sources: tuple[str, ...] = ("popularity", "cooc", "sasrec", "dense_hist", "bm25_hist")
    depths: dict[str, int] = field(default_factory=lambda: {"popularity": 50, "cooc": 100, "sasrec": 100, "dense_hist": 50, "bm25_hist": 50})
    ranker: bool = True
    search: bool = True  # depths and ranker trees chosen on the valid rows (retrieval.ranker_search)
    out: Path = field(default_factory=lambda: Path("eval-out/ranking-rows"))
    progress: bool = True
    seed: int = 0


def row_runs(rows: Sequence[Any], rankings: Sequence[Sequence[str]], *, masked: bool) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(targets, top-10 runs) keyed by row number; `masked` drops each row's history items first."""
    runs: dict[str, list[str]] = {}
    targets: dict[str, str] = {}
    for i, (row, ranked) in enumerate(zip(rows, rankings)):
        seen = set(row.history) if masked else set()
        runs[str(i)] = [x for x in ranked if x not in seen][:10]
        targets[str(i)] = row.target
    return targets, runs


def row_metrics(rows: Sequence[Any], rankings: Sequence[Sequence[str]], *, masked: bool) -> dict[str, dict[str, float]]:
    """HR@10 / NDCG@10 (mean, SE) over rows, by ranx."""
    return evaluate_rankings(*row_runs(rows, rankings, masked=masked), ROW_METRICS)


# --- models ----------------------------------------------------------------------------------------


def _sequence_model(kind: str, item_ids: Sequence[str], cfg: RowsConfig, histories: Mapping[str, Sequence[str]], *, val_rows: Sequence[Any] | None, epochs: int, progress: bool, text_vectors: np.ndarray | None = None) -> Any:
    """SASRec ("sasrec") or the text-aware model ("textseq", over `text_vectors`), early-stopped on
    `val_rows` or fitted for `epochs`."""
    from retrieval.sasrec import SASRecConfig, SASRecRecommender

    if kind == "textseq":
        from retrieval.textseq import TextSeqConfig, TextSeqRecommender

        model = TextSeqRecommender(item_ids, text_vectors, TextSeqConfig(seed=cfg.seed))
    else:
        model = SASRecRecommender(item_ids, SASRecConfig(**{"seed": cfg.seed, **cfg.sasrec}))
    if val_rows is not None:
        val = ([list(r.history) for r in val_rows], [r.target for r in val_rows])
        model.fit(histories, epochs=epochs, patience=cfg.sasrec_patience, progress=progress, val=val)
    else:
        model.fit(histories, epochs=epochs, validate=False, progress=progress)
    return model


def _stage(catalog: Any, histories: Mapping[str, Sequence[str]], searcher: Any, models: Mapping[str, Any], depths: Mapping[str, int], cfg: RowsConfig, vectors: np.ndarray | None) -> Any:
    """Every source fitted on `histories`; only `cfg.sources` nominate candidates (the others
    are still features of the learned ranker)."""
    from agent.recommend.ltr import RankingStage, SourceModels, build_sources

    sources, table = build_sources(catalog, histories, searcher, SourceModels(**models), vectors)
    return RankingStage(sources, table, None, {k: v for k, v in depths.items() if k in cfg.sources})


@dataclass
class RowScores:
    """One split's rows scored by one stage: each source's and RRF's top DEPTH, and the
    learned ranker's feature groups (candidate positions, features, labels)."""

    tops: dict[str, list[list[str]]]
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    recall: dict[str, float]


def score_rows(stage: Any, rows: Sequence[Any], *, features: bool, progress: bool, desc: str, batch: int = 256) -> RowScores:
    from retrieval.candidates import Shopper

    names = [n for n in stage.sources.names if n in stage.depths]
    tops: dict[str, list[list[str]]] = {n: [] for n in [*names, "union:rrf"]}
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    hits = dict.fromkeys([*names, "union"], 0)
    ids = stage.sources.item_ids
    position = stage.sources.position
    for start in tqdm(range(0, len(rows), batch), desc=desc, unit="batch", disable=not progress, leave=False):
        chunk = rows[start : start + batch]
        shoppers = [Shopper(history=list(r.history), mask_history=False) for r in chunk]
        for row, shopper, scored in zip(chunk, shoppers, stage.score(shoppers)):
            target = position.get(row.target, -1)
            for n in names:
                top = scored.top(n, max(DEPTH, stage.depths[n]))
                tops[n].append([ids[p] for p in top[:DEPTH]])
                hits[n] += int(target in set(top[: stage.depths[n]].tolist()))
            cands = stage.candidates(scored)
            hits["union"] += int(target in set(cands.tolist()))
            rrf = stage.rrf(scored, cands)
            tops["union:rrf"].append([ids[p] for p in cands[np.argsort(-rrf, kind="stable")][:DEPTH]])
            if features:
                x = stage.feature_matrix(scored, shopper, cands, {"in_history": np.isin(cands, [position[i] for i in row.history if i in position]).astype(np.float64)})
                groups.append((cands, x, (cands == target).astype(np.float32)))
    n = max(len(rows), 1)
    return RowScores(tops, groups, {k: round(v / n, 4) for k, v in hits.items()})


def _ranker(names: Sequence[str], groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], config: Any) -> Any:
    from retrieval.learned_ranker import LearnedRanker

    ranker = LearnedRanker(names, config)
    ranker.fit([(x, y) for _c, x, y in groups])
    return ranker


def ranker_names(stage: Any) -> list[str]:
    from retrieval.learned_ranker import feature_names

    return feature_names(stage.feature_sources, ("in_history",))


def choose_settings(stage: Any, rows: Sequence[Any], groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: RowsConfig) -> Any:
    """Depths and ranker trees chosen on held-out users of the valid rows (`retrieval.ranker_search`);
    `groups` were scored at the deepest profile. Never called with test rows."""
    from retrieval.learned_ranker import RankerConfig
    from retrieval.ranker_search import Selection, depth_profiles, select

    base = {k: v for k, v in cfg.depths.items() if k in cfg.sources}
    if not cfg.search:
        return Selection("default", base, RankerConfig(seed=cfg.seed))
    profiles = depth_profiles(base, cfg.sources)
    return select([(x, y) for _c, x, y in groups], ranker_names(stage), stage.feature_sources, profiles, RankerConfig(seed=cfg.seed), owners=[r.user for r in rows], seed=cfg.seed)


def restricted(stage: Any, groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], depths: Mapping[str, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`groups` (scored at deeper depths) as if scored at `depths` (`retrieval.ranker_search.restrict`)."""
    from retrieval.ranker_search import kept, restrict

    names = ranker_names(stage)
    out = []
    for c, x, y in groups:
        if len(y) == 0:
            out.append((c, x, y))
            continue
        rx, ry = restrict((x, y), names, stage.feature_sources, depths)
        out.append((c[kept(x, names, stage.feature_sources, depths)], rx, ry))
    return out


def _order(ranker: Any, ids: Sequence[str], group: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    cands, x, _y = group
    return [ids[p] for p in cands[np.argsort(-ranker.predict(x), kind="stable")][:DEPTH]]


def cross_fitted(stage: Any, rows: Sequence[Any], groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, folds: int, config: Any) -> tuple[list[list[str]], list[Any]]:
    """Each row ordered by a ranker trained on the other folds' users (folds split by user)."""
    users = sorted({r.user for r in rows})
    fold_of = {u: k % folds for k, u in enumerate(np.random.default_rng(config.seed).permutation(users).tolist())}
    out: list[list[str]] = [[] for _ in rows]
    rankers = []
    for k in range(folds):
        ranker = _ranker(ranker_names(stage), [g for r, g in zip(rows, groups) if fold_of[r.user] != k], config)
        rankers.append(ranker)
        for i, (r, g) in enumerate(zip(rows, groups)):
            if fold_of[r.user] == k:
                out[i] = _order(ranker, stage.sources.item_ids, g)
    return out, rankers


# --- the run -----------------------------------------------------------------------------------------

LABELS = {
    "popularity": "Popularity",
    "cooc": "Item co-occurrence",
    "sasrec": "SASRec (aisle)",
    "textseq": "Text-aware sequential (aisle)",
    "dense_hist": "Dense similarity to last items",
    "bm25_hist": "BM25 of last titles",
    "union:rrf": "All sources, union + RRF",
    "union:ltr": "All sources + learned ranker",
}


def run_rows_eval(settings: Any, cfg: RowsConfig) -> dict[str, Any]:
    """Train on what precedes the period, score every row of it; write results.json + report.md."""
    from agent.recommend.ltr import item_vectors
    from retrieval.catalog import CatalogError
    from retrieval.collab import id_sort_key
    from retrieval.registry import Registry
    from retrieval.rows import read_rows, training_histories
    from retrieval.search import open_searcher

    if cfg.rows not in ("valid", "test"):
        raise ValueError(f"rows must be 'valid' or 'test', got {cfg.rows!r}")
    t_start = time.perf_counter()
    env = rep.environment()
    registry = Registry(settings)
    files = registry.split_files(cfg.catalog)
    if not files:
        raise CatalogError(f"catalog {cfg.catalog!r} declares no published splits; add them with `aisle catalog update {cfg.catalog} --valid-rows FILE --test-rows FILE`")
    catalog = registry.load(cfg.catalog)
    valid = read_rows(files["valid"], catalog.items)
    test = read_rows(files["test"], catalog.items)
    eval_rows = valid if cfg.rows == "valid" else test
    item_ids = sorted(catalog.items, key=id_sort_key)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    searcher = open_searcher(settings, catalog=catalog, progress=cfg.progress)
    vectors = item_vectors(searcher, list(searcher.lexical.ids)) if "dense_hist" in cfg.sources else None
    seconds["searcher"] = time.perf_counter() - t0

    hist_valid = training_histories(valid, test, "valid")
    seq_kinds = [k for k in ("sasrec", "textseq") if k in cfg.sources]
    text_vectors = None
    if "textseq" in seq_kinds:
        from retrieval.textseq import item_text

        t0 = time.perf_counter()
        text_vectors = searcher.embedder.encode([item_text(catalog.items[i]) for i in item_ids], show_progress=cfg.progress)
        seconds["textseq item texts embedded"] = time.perf_counter() - t0
    models_v: dict[str, Any] = {}
    for kind in seq_kinds:
        t0 = time.perf_counter()
        models_v[kind] = _sequence_model(kind, item_ids, cfg, hist_valid, val_rows=valid, epochs=cfg.sasrec_epochs, progress=cfg.progress, text_vectors=text_vectors)
        seconds[f"{kind} (valid period, early stopping)"] = time.perf_counter() - t0
    stage_v = _stage(catalog, hist_valid, searcher, models_v, cfg.depths, cfg, vectors)
    t0 = time.perf_counter()
    scored_v = score_rows(stage_v, valid, features=cfg.ranker, progress=cfg.progress, desc="valid rows")
    seconds["score valid rows"] = time.perf_counter() - t0

    ranker_info: dict[str, Any] = {}
    depths = {k: v for k, v in cfg.depths.items() if k in cfg.sources}
    if cfg.ranker:
        t0 = time.perf_counter()
        selection = choose_settings(stage_v, valid, scored_v.groups, cfg)
        depths = selection.depths
        groups_v = restricted(stage_v, scored_v.groups, depths)
        seconds["settings search (valid rows)"] = time.perf_counter() - t0
        ranker_info["search"] = selection.summary()
    if cfg.rows == "valid":
        scored, stage, hist = scored_v, stage_v, hist_valid
        if cfg.ranker:
            t0 = time.perf_counter()
            scored.tops["union:ltr"], rankers = cross_fitted(stage_v, valid, groups_v, folds=FOLDS, config=selection.config)
            seconds["learned ranker (cross-fitted)"] = time.perf_counter() - t0
            ranker_info.update({"folds": FOLDS, "groups_per_fold": [r.report.groups for r in rankers], "best_iterations": [r.report.best_iteration for r in rankers],
                                "importances_top": dict(rankers[0].top_importances(8))})  # fmt: skip
    else:
        hist = training_histories(valid, test, "test")
        models_t: dict[str, Any] = {}
        for kind, model in models_v.items():
            t0 = time.perf_counter()
            models_t[kind] = _sequence_model(kind, item_ids, cfg, hist, val_rows=None, epochs=max(1, model.report.best_epoch), progress=cfg.progress, text_vectors=text_vectors)
            seconds[f"{kind} (refit before the test period)"] = time.perf_counter() - t0
        stage = _stage(catalog, hist, searcher, models_t, depths, cfg, vectors)
        t0 = time.perf_counter()
        scored = score_rows(stage, test, features=cfg.ranker, progress=cfg.progress, desc="test rows")
        seconds["score test rows"] = time.perf_counter() - t0
        if cfg.ranker:
            t0 = time.perf_counter()
            ranker = _ranker(ranker_names(stage_v), groups_v, selection.config)
            scored.tops["union:ltr"] = [_order(ranker, stage.sources.item_ids, g) for g in scored.groups]
            seconds["learned ranker (trained on valid rows)"] = time.perf_counter() - t0
            ranker_info.update({"groups": ranker.report.groups, "best_iteration": ranker.report.best_iteration, "importances_top": dict(ranker.top_importances(8))})

    systems: dict[str, Any] = {}
    for name, tops in scored.tops.items():
        systems[name] = {
            "label": LABELS.get(name, name),
            "unmasked": row_metrics(eval_rows, tops, masked=False),
            "masked": row_metrics(eval_rows, tops, masked=True),
        }
    result = {
        "kind": "ranking-rows",
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "files": {k: str(v) for k, v in files.items()},
            "catalog_items": len(catalog),
            "rows_evaluated": len(eval_rows),
            "users_evaluated": len({r.user for r in eval_rows}),
            "training_users": len(hist),
            "training_interactions": sum(len(s) for s in hist.values()),
            **{f"{k}_best_epoch": m.report.best_epoch for k, m in models_v.items()},
            **{f"{k}_best_valid_ndcg10_masked": m.report.best_val_ndcg10 for k, m in models_v.items()},
            "git": rep.git_state(),
            **{f"env_{k}": v for k, v in env.items()},
        },
        "systems": systems,
        "paper": PAPER_ROWS.get(cfg.catalog, {}),
        "differences": list(DIFFERENCES),
        "candidate_recall": scored.recall,
        "ranker": ranker_info,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    rep.write_json(result, cfg.out)
    (cfg.out / rep.REPORT_FILE).write_text(rows_markdown(result), encoding="utf-8")
    return result


def rows_table(result: Mapping[str, Any]) -> str:
    """Measured systems (unmasked, masked) beside the paper's rows."""
    rows = []
    for s in result["systems"].values():
        u, m = s["unmasked"], s["masked"]
        rows.append([s["label"], rep.metric_cell(u["hit_rate@10"]), rep.metric_cell(u["ndcg@10"]), rep.metric_cell(m["hit_rate@10"]), rep.metric_cell(m["ndcg@10"])])
    for name, (hr, ndcg) in result.get("paper", {}).items():
        rows.append([f"paper: {name}", f"{hr:.4f}", f"{ndcg:.4f}", "", ""])
    return rep.md_table(["system", "HR@10", "NDCG@10", "HR@10 (masked)", "NDCG@10 (masked)"], rows)


def rows_markdown(result: Mapping[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Published row protocol — {cfg['catalog']}, {cfg['rows']} rows",
        "",
        f"Every one of the **{cfg['rows_evaluated']} {cfg['rows']} rows** ({cfg['users_evaluated']} users) ranks all "
        f"{cfg['catalog_items']} items; HR@10 / NDCG@10 by ranx, mean ± standard error over rows. History items are not "
        "masked (as the source evaluates); the masked columns drop them from the same ranking. Models learned from "
        f"{cfg['training_interactions']} interactions of {cfg['training_users']} users, all before the {cfg['rows']} period.",
        "",
        rows_table(result),
        "",
        "## What still differs from the paper",
        "",
        *[f"- {d}" for d in result.get("differences", [])],
        "",
        "## Candidate recall (target in a source's top depth, unmasked)",
        "",
        rep.md_table(["source", "recall"], [[k, rep.pct(v)] for k, v in result.get("candidate_recall", {}).items()]),
        "",
        *[f"{k}: best epoch {cfg.get(f'{k}_best_epoch')} (early stopping on valid rows, masked NDCG@10 {rep.fmt(cfg.get(f'{k}_best_valid_ndcg10_masked'))})." for k in ("sasrec", "textseq") if cfg.get(f"{k}_best_epoch") is not None],
        "",
        "Learned ranker: " + ", ".join(f"{k} {v}" for k, v in (result.get("ranker") or {}).items()),
        "",
        "## Time (s)",
        "",
        rep.md_table(["step", "seconds"], list(result.get("seconds", {}).items())),
        f"\nTotal {result.get('total_seconds')} s.",
        "",
    ]
    return "\n".join(lines)
