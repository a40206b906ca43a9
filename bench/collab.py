"""Leave-one-out benchmark of the collaborative candidate sources on amazon-office-2014.

    python -m bench.collab [--users 1000] [--seed 0] [--retrain]

Full-catalog ranking, history items excluded, the same fixed user sample for every model,
metrics by ranx. Prints a markdown table and writes bench/out/collab.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.settings import REPO_ROOT, Settings
from retrieval.collab import (
    CooccurrenceRecommender,
    PopularityRecommender,
    ScoringRecommender,
    evaluate_leave_one_out,
    fuse_candidates,
    id_sort_key,
    leave_one_out,
    sample_users,
)
from retrieval.registry import load_catalog, load_interactions
from retrieval.sasrec import load_or_train_sasrec, sasrec_path

METRICS = ("recall@10", "ndcg@10", "mrr@10", "recall@50")


class _Fused(ScoringRecommender):
    """RRF of two recommenders' top-100 lists, exposed as scores so the same evaluator applies."""

    def __init__(self, parts: dict[str, ScoringRecommender], weights: dict[str, float] | None = None) -> None:
        self.parts, self.weights = parts, weights
        self._set_vocabulary(next(iter(parts.values())).item_ids)

    def score_batch(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        lists = {name: model.recommend_batch(histories, 100) for name, model in self.parts.items()}
        out = np.full((len(histories), len(self.item_ids)), -np.inf)
        for row in range(len(histories)):
            fused = fuse_candidates({name: ranked[row] for name, ranked in lists.items()}, self.weights, k=200)
            for item, score in fused:
                out[row, self._index[item]] = score
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="amazon-office-2014")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="retrain SASRec even if a cached model exists")
    args = parser.parse_args()

    settings = Settings()
    item_ids = sorted(load_catalog(settings, args.catalog).items, key=id_sort_key)
    train, held_out = leave_one_out(load_interactions(settings, args.catalog))
    users = sample_users(held_out, args.users, seed=args.seed)

    fit_seconds: dict[str, float] = {}
    models: dict[str, ScoringRecommender] = {}
    for name, build in (("popularity", PopularityRecommender), ("cooccurrence", CooccurrenceRecommender)):
        start = time.perf_counter()
        models[name] = build(item_ids).fit(train)
        fit_seconds[name] = time.perf_counter() - start
    cached = sasrec_path(settings, args.catalog).is_file() and not args.retrain
    start = time.perf_counter()
    sasrec = load_or_train_sasrec(settings, args.catalog, retrain=args.retrain)
    models["sasrec"] = sasrec
    fit_seconds["sasrec (load)" if cached else "sasrec"] = time.perf_counter() - start
    models["rrf(cooccurrence, sasrec)"] = _Fused({"cooccurrence": models["cooccurrence"], "sasrec": sasrec})

    results = {name: evaluate_leave_one_out(model, train, held_out, users, METRICS) for name, model in models.items()}
    print(f"\n{args.catalog}: leave-one-out, {len(users)} users (seed {args.seed}), full catalog ({len(item_ids)} items), history excluded\n")
    print("| model | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS) + " |")
    print(f"\nSASRec fit report: {sasrec.report.epochs_run} epochs, best {sasrec.report.best_epoch} (val NDCG@10 {sasrec.report.best_val_ndcg10}), training {sasrec.report.seconds:.0f} s")
    print("fit/load seconds:", {k: round(v, 1) for k, v in fit_seconds.items()})

    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "catalog": args.catalog,
        "users": len(users),
        "seed": args.seed,
        "results": results,
        "fit_seconds": fit_seconds,
        "sasrec_report": {"epochs_run": sasrec.report.epochs_run, "best_epoch": sasrec.report.best_epoch, "best_val_ndcg10": sasrec.report.best_val_ndcg10, "train_seconds": sasrec.report.seconds},
    }
    Path(out / "collab.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
