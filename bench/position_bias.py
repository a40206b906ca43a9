"""Position bias of one-pass re-ranking, and what calibration and order averaging do about it.

    python bench/position_bias.py [--users 40] [--prompt rerank_onepass.v1]

For each sampled real user of amazon-office-2014 (leave-one-out history, the held-out item's
category as the query) the fused 20 candidates are put in two random orders, and each method
scores both orders:
  - x1:              one order, raw label probabilities
  - x1 calibrated:   one order, divided by the content-free label prior (the default)
  - x3:              averaged over 3 orders (given, reversed, a shuffle), raw
  - x3 calibrated:   averaged over 3 orders, calibrated
Printed per method:
  - where its top pick sat in the input order: the share at position A and the largest share
    at any one position (no bias: about 1/20 = 0.05 each, up to sampling noise);
  - consistency: how often the top pick is the same item for both orders, and the mean Kendall
    tau between the two score vectors (a method that reads the items, not their positions,
    scores the same items alike in any order: tau near 1);
  - content signal: (a) how often the top pick is in the requested category, against the share
    of candidates that are (what a pick blind to the items would get); (b) the held-out item's
    rank among the candidates as a fraction (0 = first, 1 = last; no signal: 0.5), over users
    whose item was retrieved;
  - forward passes per query.
The engine is the default one (settings), so on a CPU with bf16 the scoring runs in bf16.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scipy.stats import kendalltau  # noqa: E402

from agent.engines import make_engine  # noqa: E402
from agent.prompts import resolve_prompt  # noqa: E402
from agent.recommend.pipeline import Recommender, RecommendRequest  # noqa: E402
from agent.recommend.rank import RankContext, Reranker  # noqa: E402
from agent.settings import Settings  # noqa: E402
from retrieval.collab import leave_one_out, sample_users  # noqa: E402
from retrieval.registry import load_interactions  # noqa: E402


class CountingCache:
    """Wraps an engine: counts scoring forward passes and reuses identical ones, so a method and
    its calibrated twin share their forward passes (same numbers: scoring is deterministic)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.cache: dict[str, dict[str, float]] = {}
        self.calls = 0

    def score_choices(self, messages, choices):
        key = repr((messages, list(choices)))
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = self.engine.score_choices(messages, choices)
        return self.cache[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--prompt", default=None, help="one-pass template (default: agent.prompts.DEFAULT_PROMPTS)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    settings = Settings()
    t_start = time.perf_counter()
    engine = make_engine(settings)
    rec = Recommender(settings, "amazon-office-2014", engine=engine, n_candidates=args.candidates, collab="rrf")
    histories, targets = leave_one_out(load_interactions(settings, "amazon-office-2014"))
    prompt = args.prompt or resolve_prompt("rerank_onepass", {})
    scorer = CountingCache(engine)
    methods = {
        "x1": Reranker(scorer, mode="onepass", prompt=prompt, n_orders=1, calibrate=False),  # type: ignore[arg-type]
        "x1 calibrated": Reranker(scorer, mode="onepass", prompt=prompt, n_orders=1, calibrate=True),  # type: ignore[arg-type]
        "x3": Reranker(scorer, mode="onepass", prompt=prompt, n_orders=3, calibrate=False),  # type: ignore[arg-type]
        "x3 calibrated": Reranker(scorer, mode="onepass", prompt=prompt, n_orders=3, calibrate=True),  # type: ignore[arg-type]
    }
    top_pos: dict[str, list[int]] = {m: [] for m in methods}
    agree: dict[str, list[int]] = {m: [] for m in methods}
    taus: dict[str, list[float]] = {m: [] for m in methods}
    target_rank: dict[str, list[float]] = {m: [] for m in methods}
    top_in_category: dict[str, list[int]] = {m: [] for m in methods}
    base_in_category: list[float] = []
    users = sample_users(histories, args.users * 2, seed=args.seed)
    done = 0
    for user in users:
        if done >= args.users:
            break
        target = rec.catalog.items[targets[user]]
        query = target.category or "office supplies"
        cands, _ = rec.candidates(RecommendRequest(query=query, history=histories[user]))
        if len(cands) < args.candidates:
            continue
        done += 1
        titles = [rec.catalog.items[i].title for i in histories[user] if i in rec.catalog.items]
        ctx = RankContext(query=query, history_titles=titles)
        ids = [c.item.id for c in cands]
        in_category = {c.item.id: int(c.item.category == query) for c in cands}
        base_in_category.append(sum(in_category.values()) / len(cands))
        for name, ranker in methods.items():
            vectors = []
            for rep in range(2):
                perm = list(range(len(cands)))
                random.Random(f"{user}-{rep}").shuffle(perm)
                result = ranker.rank([cands[i] for i in perm], ctx)
                if not result.llm_valid:
                    raise SystemExit(f"{name}: the LLM answer was not used ({result.fallback})")
                by_id = {r.item.id: r.llm_score for r in result.items}
                vectors.append([by_id[i] for i in ids])  # scores by candidate, in retriever order
                best = max(range(len(perm)), key=lambda pos: (by_id[cands[perm[pos]].item.id], -pos))
                top_pos[name].append(best)
                top_in_category[name].append(in_category[cands[perm[best]].item.id])
                if target.id in by_id:
                    order = sorted(ids, key=lambda i: -by_id[i])
                    target_rank[name].append(order.index(target.id) / (len(ids) - 1))
            a, b = vectors
            agree[name].append(int(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)))
            taus[name].append(float(kendalltau(a, b).statistic))
        print(f"  user {done}/{args.users}: {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)

    n_pos = args.candidates
    print(f"# bench/position_bias.py — {engine.name} engine, {engine.model_id}, prompt {prompt}, "
          f"{done} users x 2 random candidate orders, {args.candidates} candidates")
    dtype = getattr(engine, "score_dtype", None)
    if dtype is not None:
        print(f"scoring dtype: {dtype}")
    print(f"\n{'method':<15} {'top pick at A':>13} {'max share at one position':>26} {'same top pick':>14} {'Kendall tau':>12} "
          f"{'top pick in the asked category':>31} {'held-out item rank (0 best, chance 0.5)':>40} {'forward passes':>15}")
    for name, ranker in methods.items():
        counts = Counter(top_pos[name])
        picks = len(top_pos[name])
        passes = ranker.n_orders
        tr = target_rank[name]
        rank_txt = f"{statistics.mean(tr):.3f} (n={len(tr)})" if tr else "-"
        print(f"{name:<15} {counts[0] / picks:>13.2f} {max(counts.values()) / picks:>26.2f} {statistics.mean(agree[name]):>14.2f} "
              f"{statistics.mean(taus[name]):>12.2f} {statistics.mean(top_in_category[name]):>31.2f} {rank_txt:>40} {passes:>15}")
    print(f"\nno position bias would put about {1 / n_pos:.2f} of top picks at each position; "
          f"a pick blind to the items lands in the asked category {statistics.mean(base_in_category):.2f} of the time. "
          f"Scoring passes run: {scorer.calls}; total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
