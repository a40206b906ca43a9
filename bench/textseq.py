"""Leave-one-out benchmark of TextSeq (text-based item representations) against SASRec.

    python -m bench.textseq [--users 1000] [--seed 0] [--retrain]

Full-catalog ranking, history items excluded, metrics by ranx, on amazon-office-2014:
- "sample": a seeded sample of `--users` users;
- "cold-item": every user whose held-out item occurs at most twice in all training histories
  (the items an id-only model knows least about).
SASRec and the default TextSeq come from their caches (trained first if missing); the TextSeq
variant with the other `use_id` is trained here, from the same text vectors, every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections import Counter

from agent.settings import Settings
from retrieval.collab import PopularityRecommender, ScoringRecommender, evaluate_leave_one_out, id_sort_key, leave_one_out, sample_users
from retrieval.registry import load_catalog, load_interactions
from retrieval.sasrec import load_or_train_sasrec
from retrieval.textseq import TextSeqRecommender, load_or_train_textseq

CATALOG = "amazon-office-2014"
METRICS = ("ndcg@10", "recall@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold-max", type=int, default=2, help="a held-out item with at most this many training occurrences is cold")
    parser.add_argument("--retrain", action="store_true", help="retrain the cached SASRec and TextSeq")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    settings = Settings()
    item_ids = sorted(load_catalog(settings, CATALOG).items, key=id_sort_key)
    train, held_out = leave_one_out(load_interactions(settings, CATALOG))
    counts = Counter(i for seq in train.values() for i in seq)
    groups = {
        "sample": sample_users(held_out, args.users, seed=args.seed),
        "cold-item": sorted(u for u in held_out if counts[held_out[u]] <= args.cold_max),
    }

    models: dict[str, ScoringRecommender] = {"popularity": PopularityRecommender(item_ids).fit(train)}
    seconds: dict[str, float] = {"popularity": 0.0}
    sasrec = load_or_train_sasrec(settings, CATALOG, retrain=args.retrain, progress=args.progress)
    assert sasrec is not None
    models["sasrec"], seconds["sasrec"] = sasrec, sasrec.report.seconds
    default = load_or_train_textseq(settings, CATALOG, retrain=args.retrain, progress=args.progress)
    assert default is not None
    cfg = default.config
    other_cfg = dataclasses.replace(cfg, use_id=not cfg.use_id)
    other = TextSeqRecommender(default.item_ids, default.text_vectors, other_cfg)
    other.fit(train, progress=args.progress)
    for model in (default, other):
        name = f"textseq use_id={model.config.use_id}" + (" (default)" if model is default else "")
        models[name], seconds[name] = model, model.report.seconds

    print(f"amazon-office-2014, leave-one-out test, full catalog ({len(item_ids)} items), history excluded")
    print(f"sample: {len(groups['sample'])} users (seed {args.seed}); cold-item: {len(groups['cold-item'])} users (held-out item seen <= {args.cold_max}x in training)")
    head = "| model | " + " | ".join(f"{g} {m}" for g in groups for m in METRICS) + " | train s | best epoch |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, model in models.items():
        row = []
        for users in groups.values():
            result = evaluate_leave_one_out(model, train, held_out, users, METRICS)
            row += [f"{result[m]:.4f}" for m in METRICS]
        epoch = getattr(getattr(model, "report", None), "best_epoch", "")
        print(f"| {name} | " + " | ".join(row) + f" | {seconds[name]:.0f} | {epoch} |")


if __name__ == "__main__":
    main()
