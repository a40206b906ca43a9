"""Re-ranking and reason benchmark on real users of amazon-office-2014 (leave-one-out).

    python bench/rerank.py [--queries 20] [--users 100] [--candidates 20] [--k 1]

Part 1, speed: the SAME 20 fused candidates per query are re-ranked by
  - one-pass label scoring, one candidate order, calibrated (the default),
  - one-pass averaged over `--orders` candidate orders (3),
  - generative listwise JSON (schema-constrained), writing one-letter labels (rerank_listwise.v1)
    and writing the candidates' item ids (rerank_listwise.v2),
interleaved per query so that load drift on a shared machine hits every mode alike. Prints time
per query and the listwise / one-pass ratio (LlamaRec's claim: one-pass >= 10x faster), plus
hit@5 of the held-out item as a rough quality sign (20 queries: noisy).
Queries are the held-out item's category name ("Rollerball Pens"), with the user's history.
The transformers engine's dtypes come from the settings: by default generation runs in float32
and one-pass scoring in bfloat16 where the CPU has native bf16 (agent/engines/transformers_engine.py
says why); AISLE_LLM_DTYPE / AISLE_LLM_SCORE_DTYPE set them, e.g. both bfloat16 or both float32
for a same-dtype comparison.

Part 2, reasons: for `--users` users (history only, no query), the top-k items of the candidate
list get reasons from the LLM, batched across users; prints the share that passed the grounding
check on the first try, after the retry, and the template share.

Uses the real index under the normal AISLE_HOME (built by `aisle index` if missing), and the
engine the settings choose: the default transformers engine, or a vLLM server with
    AISLE_LLM=openai AISLE_LLM_URL=http://127.0.0.1:8011/v1 AISLE_LLM_SERVED_MODEL=smollm2 \
        python bench/rerank.py --users 0
(start the server as in the README's vLLM section, plus --no-enable-prefix-caching: the modes
share prompts, e.g. one order's prompt is the first of three orders' prompts, and a prefix-cache
hit would time a cached prompt against an uncached one). With transformers on a CPU the one-pass
forward over the whole prompt costs about as much as decoding ~25 tokens in float32 (measured on
the quiet 2-core box: 1.0 s vs ~45 ms per generated token); bfloat16 on AMX makes that forward
2.5x faster while single-stream decoding stays as fast as it was, hence the scoring dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engines import make_engine  # noqa: E402
from agent.prompts import resolve_prompt  # noqa: E402
from agent.recommend.pipeline import Recommender, RecommendRequest  # noqa: E402
from agent.recommend.rank import RankContext, Reranker  # noqa: E402
from agent.recommend.reasons import ReasonContext  # noqa: E402
from agent.settings import Settings  # noqa: E402
from retrieval.collab import leave_one_out, sample_users  # noqa: E402
from retrieval.registry import load_interactions  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(ms: list[float]) -> str:
    return f"mean {statistics.mean(ms) / 1e3:6.2f} s  median {statistics.median(ms) / 1e3:6.2f} s  p95 {pct(ms, 95) / 1e3:6.2f} s"


def bench_speed(rec: Recommender, engine, histories: dict[str, list[str]], targets: dict[str, str], users: list[str], n_orders: int, seed: int) -> dict:
    catalog = rec.catalog
    onepass = resolve_prompt("rerank_onepass", rec.prompts)
    modes = {
        "onepass x1 (default)": Reranker(engine, mode="onepass", prompt=onepass, n_orders=1, seed=seed),
        f"onepass x{n_orders} orders": Reranker(engine, mode="onepass", prompt=onepass, n_orders=n_orders, seed=seed),
        "listwise labels (v1)": Reranker(engine, mode="listwise", prompt="rerank_listwise.v1", seed=seed),
        "listwise ids (v2)": Reranker(engine, mode="listwise", prompt="rerank_listwise.v2", seed=seed),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    valid: dict[str, int] = {m: 0 for m in modes}
    hits: dict[str, int] = {m: 0 for m in modes}
    hits["retriever order"] = 0
    n_cands: list[int] = []
    done = 0
    # Warm-up: each mode once on the first query, untimed (first calls pay one-time costs: a
    # server's first request, the JSON-schema tokenizer tables, lazy kernels, the calibration prior).
    first = catalog.items[targets[users[0]]]
    warm, _ = rec.candidates(RecommendRequest(query=first.category or "office supplies", history=histories[users[0]]))
    for mode in modes.values():
        mode.rank(warm, RankContext(query=first.category or "office supplies"))
    for q, user in enumerate(users, start=1):
        target = catalog.items[targets[user]]
        query = target.category or "office supplies"
        cands, _ = rec.candidates(RecommendRequest(query=query, history=histories[user]))
        if len(cands) < 2:
            continue
        done += 1
        n_cands.append(len(cands))
        titles = [catalog.items[i].title for i in histories[user] if i in catalog.items]
        ctx = RankContext(query=query, history_titles=titles)
        hits["retriever order"] += target.id in [c.item.id for c in cands[:5]]
        # rotate which mode goes first, so slow phases of a shared machine do not favour one mode
        names = list(modes)
        names = names[q % len(names):] + names[: q % len(names)]
        for name in names:
            t0 = time.perf_counter()
            result = modes[name].rank(cands, ctx)
            times[name].append((time.perf_counter() - t0) * 1e3)
            valid[name] += result.llm_valid
            hits[name] += target.id in [r.item.id for r in result.items[:5]]
        log(f"  query {q}/{len(users)} {query!r}: " + ", ".join(f"{n} {times[n][-1] / 1e3:.1f}s" for n in modes))
    onepass_modes = [m for m in modes if m.startswith("onepass")]
    listwise_modes = [m for m in modes if m.startswith("listwise")]
    return {
        "queries": done,
        "candidates_mean": statistics.mean(n_cands) if n_cands else 0,
        "times_ms": times,
        "valid": valid,
        "hit5": hits,
        "ratios": {f"{lw} / {op}": statistics.mean(times[lw]) / statistics.mean(times[op]) for lw in listwise_modes for op in onepass_modes},
    }


def bench_reasons(rec: Recommender, engine, histories: dict[str, list[str]], users: list[str], k: int) -> dict:
    catalog = rec.catalog
    writer = rec.reason_writer(engine)
    jobs = []
    for user in users:
        cands, _ = rec.candidates(RecommendRequest(history=histories[user]))
        titles = [catalog.items[i].title for i in histories[user] if i in catalog.items]
        ctx = ReasonContext(query=None, history_titles=titles)
        jobs.extend((c.item, ctx) for c in cands[:k])
    log(f"  writing {len(jobs)} reasons for {len(users)} users (batched across users) ...")
    t0 = time.perf_counter()
    reasons = writer.write_many(jobs)
    seconds = time.perf_counter() - t0
    by_source = {s: sum(r.source == s for r in reasons) for s in ("llm", "llm-retry", "template")}
    examples = {s: next((r.text for r in reasons if r.source == s), None) for s in by_source}
    problems: dict[str, int] = {}
    for r in reasons:
        if r.source != "llm" and r.problems:
            key = r.problems[0].split("'")[0].strip()
            problems[key] = problems.get(key, 0) + 1
    return {
        "reasons": len(reasons),
        "by_source": by_source,
        "grounded": sum(r.grounded for r in reasons),
        "seconds": seconds,
        "examples": examples,
        "first_failure_kinds": dict(sorted(problems.items(), key=lambda kv: -kv[1])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=20, help="queries for the speed comparison (0 = skip)")
    ap.add_argument("--users", type=int, default=100, help="users for the reason grounding rate (0 = skip)")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--k", type=int, default=1, help="reasons per user (top-k candidates)")
    ap.add_argument("--orders", type=int, default=3, help="candidate orders averaged by the second one-pass mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reason-prompt", default=None, help="reason template name (default: agent.prompts.DEFAULT_PROMPTS)")
    ap.add_argument("--onepass-prompt", default=None, help="one-pass template name, e.g. rerank_onepass.v2")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = ap.parse_args()

    settings = Settings()
    t_start = time.perf_counter()
    engine = make_engine(settings)
    prompts = {k: v for k, v in {"reason": args.reason_prompt, "rerank_onepass": args.onepass_prompt}.items() if v}
    rec = Recommender(settings, "amazon-office-2014", engine=engine, n_candidates=args.candidates, collab="rrf", prompts=prompts)
    histories, targets = leave_one_out(load_interactions(settings, "amazon-office-2014"))
    log(f"catalog {rec.catalog.name}: {len(rec.catalog)} items; {len(histories)} users; collaborative model: {rec.collab_name}")
    out: dict = {"cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "model": engine.model_id}

    print(f"# bench/rerank.py — {engine.name} engine, {engine.model_id}, {os.cpu_count()} CPU cores (load average at start {os.getloadavg()[0]:.1f})")
    if hasattr(engine, "score_dtype"):
        print(f"dtypes: generation {engine.dtype}, one-pass scoring {engine.score_dtype}")
    print(f"prompts: one-pass {resolve_prompt('rerank_onepass', prompts)}, listwise {resolve_prompt('rerank_listwise', prompts)}, reason {resolve_prompt('reason', prompts)}")
    if args.queries:
        users = sample_users(histories, args.queries, seed=args.seed)
        log(f"speed: {len(users)} queries x {args.candidates} candidates")
        speed = bench_speed(rec, engine, histories, targets, users, args.orders, args.seed)
        out["speed"] = speed
        print(f"\n## Re-ranking the same {args.candidates} candidates ({speed['queries']} queries, mean {speed['candidates_mean']:.1f} candidates)\n")
        print(f"{'mode':<22} {'time per query':<58} {'valid':>6} {'hit@5':>6}")
        for name, ms in speed["times_ms"].items():
            print(f"{name:<22} {summary(ms):<58} {speed['valid'][name]:>3}/{speed['queries']:<2} {speed['hit5'][name]:>3}/{speed['queries']}")
        print(f"{'retriever order':<22} {'-':<58} {'':>6} {speed['hit5']['retriever order']:>3}/{speed['queries']}")
        print("\nmean time ratios (target: one-pass >= 10x faster than generative):")
        for pair, ratio in speed["ratios"].items():
            print(f"  {pair:<44} {ratio:6.2f}x")
    if args.users:
        users = sample_users(histories, args.users, seed=args.seed + 1)
        log(f"reasons: {len(users)} users x top-{args.k}")
        rs = bench_reasons(rec, engine, histories, users, args.k)
        out["reasons"] = rs
        n = rs["reasons"] or 1
        src = rs["by_source"]
        print(f"\n## Reason grounding ({len(users)} users, leave-one-out histories, top-{args.k} item each: {rs['reasons']} reasons, {rs['seconds']:.0f} s)\n")
        print(f"passed on the first try (llm)       {src['llm']:>4}  {src['llm'] / n:6.1%}")
        print(f"passed after one retry (llm-retry)  {src['llm-retry']:>4}  {src['llm-retry'] / n:6.1%}")
        print(f"LLM reasons passing in total        {src['llm'] + src['llm-retry']:>4}  {(src['llm'] + src['llm-retry']) / n:6.1%}")
        print(f"template fallback                   {src['template']:>4}  {src['template'] / n:6.1%}")
        print(f"grounded as shown                   {rs['grounded']:>4}  {rs['grounded'] / n:6.1%}")
        print("why LLM answers failed (last failed attempt, by kind): " + json.dumps(rs["first_failure_kinds"]))
        for source, text in rs["examples"].items():
            if text:
                print(f"  e.g. [{source}] {text}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
