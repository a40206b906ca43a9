"""The learned ranking stage: LambdaMART (LightGBM's lambdarank) over the union of all sources' candidates.

Why a learned stage: no single source wins everywhere. Co-occurrence is strong on the head,
SASRec on order, the text-aware model on cold items, text similarity on shoppers whose history
is all one product line; a fixed fusion (RRF) weighs them the same for everyone. A ranker
trained on the catalog's own history learns when to trust which, from features such as:

- every source's score and rank for the candidate (NaN where a source cannot score it);
- how many sources nominated it, and its reciprocal-rank fusion score;
- text similarity to the last history item and the best match over the history;
- brand and category overlap with the history (last item, and share of the history);
- popularity and a cold-item flag (<= 2 interactions in the training data);
- price against the history's median price;
- optional extra columns supplied by the caller (the LLM's one-pass score).

Training protocol (`fit`): one group per shopper, label 1 on the held-out item, 0 on the other
candidates; groups whose held-out item is not a candidate carry no gradient and are dropped.
Callers train on each user's second-to-last item, with the sources fitted before it, and
evaluate on the last item: the evaluated item is never seen. 15 % of the training groups are
kept aside for early stopping. The feature importances (total gain) are saved with the model, so
a feature without signal (a noise LLM score) is visible as one with ~no weight.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.candidates import Scored, Shopper, SourceSet
from retrieval.collab import RRF_K
from retrieval.progress import job_bar

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
COLD_MAX_COUNT = 2  # an item with at most this many training interactions is "cold"
MAX_RANK = 5000.0  # rank feature cap (ranks past it say nothing more)


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM settings. Defaults chosen by the NDCG@10 of the early-stopping groups (val split,
    never the evaluated item) on amazon-office-2014, 3,313 training groups: 15 leaves / 100 rows
    per leaf 0.145; 7 / 200 0.142; 31 / 50 0.131; 63 / 20 0.122; lambdarank truncation 50
    instead of 20 0.143; learning rate 0.03 0.131. Small, well-filled trees: the signal is thin."""

    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 400
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambdarank_truncation_level: int = 20
    early_stopping_rounds: int = 40
    valid_share: float = 0.15
    seed: int = 0
    threads: int = 2


@dataclass
class ItemTable:
    """Per-item columns the features read, aligned with `SourceSet.item_ids`."""

    brands: np.ndarray  # object array of casefolded brands ("" = unknown)
    leaves: np.ndarray  # object array of the deepest category ("" = none)
    paths: list[tuple[str, ...]]  # casefolded category paths
    prices: np.ndarray  # float, NaN = unknown
    counts: np.ndarray  # interactions in the training histories

    @classmethod
    def build(cls, items: Sequence[Any], histories: Mapping[str, Sequence[str]]) -> ItemTable:
        """`items`: retrieval.catalog.Item objects in the vocabulary's order."""
        counts = Counter(i for seq in histories.values() for i in seq)
        paths = [tuple(c.casefold() for c in it.categories) for it in items]
        return cls(
            brands=np.array([(it.brand or "").casefold() for it in items], dtype=object),
            leaves=np.array([p[-1] if p else "" for p in paths], dtype=object),
            paths=paths,
            prices=np.array([np.nan if it.price is None else float(it.price) for it in items], dtype=np.float64),
            counts=np.array([counts.get(it.id, 0) for it in items], dtype=np.float64),
        )


def feature_names(sources: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    names = []
    for s in sources:
        names += [f"{s}_score", f"{s}_rank"]
    names += [
        "n_sources",
        "rrf",
        "sim_last",
        "sim_max",
        "brand_last",
        "brand_share",
        "leaf_last",
        "leaf_share",
        "path_common_last",
        "log_pop",
        "cold",
        "price_ratio",
        "has_price",
        "history_len",
    ]
    return names + list(extra)


def features(
    sources: SourceSet,
    table: ItemTable,
    scored: Scored,
    shopper: Shopper,
    cands: np.ndarray,
    source_names: Sequence[str],
    depths: Mapping[str, int],
    extra: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Feature matrix (len(cands), len(feature_names(source_names, extra))) for one shopper."""
    cols: list[np.ndarray] = []
    n = len(cands)
    nominated = np.zeros(n)
    rrf = np.zeros(n)
    for s in source_names:
        if s in scored.scores:
            values = scored.scores[s][cands]
            ranks = scored.ranks(s, cands)
            finite = np.isfinite(values)
            cols += [np.where(finite, values, np.nan), np.minimum(ranks, MAX_RANK)]
            in_top = finite & (ranks <= depths.get(s, 0))
            nominated += in_top
            rrf += np.where(in_top, 1.0 / (RRF_K + np.nan_to_num(ranks, nan=MAX_RANK)), 0.0)
        else:
            cols += [np.full(n, np.nan), np.full(n, np.nan)]
    known = [sources.position[i] for i in shopper.history if i in sources.position]
    if sources.vectors is not None and known:
        sims = sources.vectors[cands] @ sources.vectors[known[-10:]].T
        sim_last, sim_max = sims[:, -1], sims.max(axis=1)
    else:
        sim_last = sim_max = np.full(n, np.nan)
    if known:
        last = known[-1]
        hist_brands = table.brands[known]
        hist_leaves = table.leaves[known]
        cand_brands = table.brands[cands]
        cand_leaves = table.leaves[cands]
        brand_last = np.where(cand_brands != "", (cand_brands == table.brands[last]).astype(float), np.nan)
        brand_counts, leaf_counts, h = Counter(hist_brands.tolist()), Counter(hist_leaves.tolist()), float(len(known))
        brand_share = np.array([brand_counts.get(b, 0) / h if b else np.nan for b in cand_brands])
        leaf_last = np.where(cand_leaves != "", (cand_leaves == table.leaves[last]).astype(float), np.nan)
        leaf_share = np.array([leaf_counts.get(c, 0) / h if c else np.nan for c in cand_leaves])
        last_path = table.paths[last]
        path_common = np.array([_common_prefix(table.paths[c], last_path) for c in cands], dtype=float)
        hist_prices = table.prices[known]
        median = float(np.nanmedian(hist_prices)) if np.isfinite(hist_prices).any() else math.nan
    else:
        brand_last = brand_share = leaf_last = leaf_share = path_common = np.full(n, np.nan)
        median = math.nan
    prices = table.prices[cands]
    price_ratio = prices / median if math.isfinite(median) and median > 0 else np.full(n, np.nan)
    counts = table.counts[cands]
    cols += [
        nominated,
        rrf,
        sim_last,
        sim_max,
        brand_last,
        brand_share,
        leaf_last,
        leaf_share,
        path_common,
        np.log1p(counts),
        (counts <= COLD_MAX_COUNT).astype(float),
        price_ratio,
        np.isfinite(prices).astype(float),
        np.full(n, float(len(known))),
    ]
    for values in (extra or {}).values():
        cols.append(np.asarray(values, dtype=np.float64))
    return np.column_stack(cols).astype(np.float32) if cols else np.zeros((n, 0), dtype=np.float32)


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    k = 0
    for x, y in zip(a, b):
        if x != y:
            break
        k += 1
    return k


@dataclass
class TrainReport:
    groups: int = 0  # training groups with the held-out item among the candidates
    groups_total: int = 0
    rows: int = 0
    best_iteration: int = 0
    valid_ndcg10: float | None = None
    seconds: float = 0.0
    importances: dict[str, float] = field(default_factory=dict)  # total gain, normalised to sum 1


class LearnedRanker:
    """A LightGBM lambdarank booster plus the feature names it was trained on."""

    def __init__(self, names: Sequence[str], config: RankerConfig | None = None) -> None:
        self.names = list(names)
        self.config = config or RankerConfig()
        self.booster: Any = None
        self.report = TrainReport()
        self.meta: dict[str, Any] = {}

    def fit(self, groups: Sequence[tuple[np.ndarray, np.ndarray]], *, progress: bool = False) -> TrainReport:
        """groups: (features (n_i, n_features), labels (n_i,)) per shopper. Groups without a
        positive label are dropped (they carry no lambdarank gradient). `progress`: one bar of
        boosting rounds with the validation NDCG@10 (early stopping ends it before the total)."""
        import time

        import lightgbm as lgb

        start = time.perf_counter()
        cfg = self.config
        kept = [(x, y) for x, y in groups if y.sum() > 0 and len(y) > 1]
        if len(kept) < 10:
            raise ValueError(f"only {len(kept)} training groups have their held-out item among the candidates; need at least 10")
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(kept))
        n_valid = max(1, int(len(kept) * cfg.valid_share))
        valid, train = [kept[i] for i in order[:n_valid]], [kept[i] for i in order[n_valid:]]

        def dataset(part: list[tuple[np.ndarray, np.ndarray]], reference: Any = None) -> Any:
            x = np.vstack([g[0] for g in part])
            y = np.concatenate([g[1] for g in part])
            return lgb.Dataset(x, y, group=[len(g[1]) for g in part], feature_name=self.names, reference=reference, free_raw_data=False)

        train_set = dataset(train)
        valid_set = dataset(valid, train_set)
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "num_leaves": cfg.num_leaves,
            "learning_rate": cfg.learning_rate,
            "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction,
            "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": 1,
            "lambdarank_truncation_level": cfg.lambdarank_truncation_level,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": cfg.threads,
            "verbosity": -1,
        }
        bar = job_bar(desc="ranker", unit="round", total=cfg.n_estimators, enabled=progress)

        def show(env: Any) -> None:
            bar.update(1)
            bar.set_postfix({name: f"{value:.4f}" for _, name, value, *_ in env.evaluation_result_list}, refresh=False)

        try:
            self.booster = lgb.train(
                params,
                train_set,
                num_boost_round=cfg.n_estimators,
                valid_sets=[valid_set],
                valid_names=["valid"],
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False), show],
            )
        finally:
            bar.close()
        gains = self.booster.feature_importance(importance_type="gain", iteration=self.booster.best_iteration or None)
        total = float(gains.sum()) or 1.0
        best = self.booster.best_score.get("valid", {}).get("ndcg@10")
        self.report = TrainReport(
            groups=len(kept),
            groups_total=len(groups),
            rows=int(sum(len(y) for _x, y in kept)),
            best_iteration=int(self.booster.best_iteration or self.booster.current_iteration()),
            valid_ndcg10=None if best is None else float(best),
            seconds=round(time.perf_counter() - start, 2),
            importances={n: round(float(g) / total, 5) for n, g in zip(self.names, gains)},
        )
        return self.report

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("the ranker is not trained: call fit() or load()")
        if x.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} features ({', '.join(self.names[:4])}, ...), got {x.shape[1]}")
        return np.asarray(self.booster.predict(x, num_iteration=self.booster.best_iteration or None, num_threads=1), dtype=np.float64)

    def top_importances(self, k: int = 10) -> list[tuple[str, float]]:
        return sorted(self.report.importances.items(), key=lambda kv: -kv[1])[:k]

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """`path` (LightGBM's text model) and `path.json` (names, config, report, meta), written atomically."""
        if self.booster is None:
            raise RuntimeError("nothing to save: the ranker is not trained")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        self.booster.save_model(str(tmp), num_iteration=self.booster.best_iteration or None)
        meta = {"format": FORMAT_VERSION, "names": self.names, "config": asdict(self.config), "report": asdict(self.report), "meta": self.meta}
        tmp_meta = Path(str(path) + ".json.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=1))
        tmp.replace(path)
        tmp_meta.replace(Path(str(path) + ".json"))

    @classmethod
    def load(cls, path: Path) -> LearnedRanker:
        import lightgbm as lgb

        path = Path(path)
        meta = json.loads(Path(str(path) + ".json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported ranker format {meta.get('format')!r}; retrain it with: aisle train models")
        ranker = cls(meta["names"], RankerConfig(**meta["config"]))
        ranker.booster = lgb.Booster(model_file=str(path))
        ranker.report = TrainReport(**meta["report"])
        ranker.meta = dict(meta.get("meta", {}))
        return ranker
