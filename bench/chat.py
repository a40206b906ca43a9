"""Conversation benchmark: latency of a chat turn on CPU with the default engine, and throughput
with concurrent sessions.

    python bench/chat.py [--catalog amazon-office-2014] [--turns 50] [--sessions 8] [--threads 1]

1. Latency: `--turns` scripted turns (5-turn conversations: a request, follow-ups such as "not that
   brand" / "show me more" / "cheaper", a question about an item, "why the first?"), one at a time.
   Reports p50/p95 per stage (understand, retrieval, rank, reasons) and in total, overall and by
   action (recommend / explain / answer), because "why?" runs an LLM reason and costs more.
2. Throughput: `--sessions` threads, each its own session running one 5-turn script, all at once; turns/s.

Sessions go to a throw-away SQLite file; the catalog index is the normal one (built if missing).
The machine's load average is printed: on a shared CPU the numbers scale with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from agent.chat.agent import Agent, TurnResult  # noqa: E402
from agent.chat.store import SessionStore  # noqa: E402
from agent.settings import Settings  # noqa: E402

SCRIPTS: dict[str, list[list[str]]] = {
    "amazon-office-2014": [
        ["black gel pens", "not that brand", "show me more", "what brand is the second one?", "why the first?"],
        ["a heavy duty stapler, not Swingline", "more like the first one", "I don't like the second one", "tell me about the third one", "start over"],
        ["a label maker by Brother", "I like the second one", "show me more", "how much is the first one?", "thanks!"],  # the like ranks "show me more" (ranking stage)
        ["ink for my HP printer", "show me more", "not that brand", "why the second one?", "show me more"],
        ["a cordless phone", "with an answering machine", "not that brand", "what category is the first one?", "show me more"],
    ],
    "mg-shopdial": [
        ["running shoes under $70", "cheaper", "tell me about the first one", "why the first?", "start over"],
        ["a book under $20", "show me more", "I don't like the first one", "how much is the second one?", "a mystery novel"],
        ["a USB microphone", "cheaper", "show me more", "what's the price of the first one?", "thanks"],
        ["badminton shuttlecocks", "more like the first one", "how much is the second one?", "why the second one?", "start over"],
        ["a phone over $400", "not that brand", "tell me about the first one", "show me more", "hi"],
    ],
}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def script_turns(catalog: str, n: int) -> list[list[str]]:
    """Conversations covering n turns (the scripts repeated as needed)."""
    convs, total = [], 0
    while total < n:
        for script in SCRIPTS[catalog]:
            take = script[: n - total]
            convs.append(take)
            total += len(take)
            if total >= n:
                break
    return convs


def run_conversation(agent: Agent, catalog: str, messages: list[str]) -> list[TurnResult]:
    sid = agent.new_session(catalog)
    out = []
    for m in messages:
        t = time.perf_counter()
        r = agent.turn(sid, m)
        r.timings_ms["wall"] = (time.perf_counter() - t) * 1e3
        out.append(r)
    return out


def summarise(results: list[TurnResult]) -> dict[str, dict[str, float]]:
    stages = ("understand", "retrieval", "rank", "reasons", "total")
    table: dict[str, dict[str, float]] = {}
    for stage in stages:
        vals = [r.timings_ms.get(stage, 0.0) for r in results]
        table[stage] = {"p50": pct(vals, 50), "p95": pct(vals, 95), "mean": statistics.fmean(vals)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", default="amazon-office-2014", choices=list(SCRIPTS))
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: AISLE_LLM_THREADS or torch's own)")
    parser.add_argument("--rank-mode", default=None, choices=["onepass", "listwise", "none"], help="LLM re-ranking blend (default: the settings', none)")
    parser.add_argument("--llm-reasons", action="store_true", help="LLM reasons for every item (slow on CPU)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "chat.json")
    args = parser.parse_args()

    settings = Settings()
    if args.threads:
        settings = settings.model_copy(update={"llm_threads": args.threads})
    tmp = Path(tempfile.mkdtemp(prefix="aisle-bench-chat-"))
    agent = Agent(settings, store=SessionStore(tmp / "sessions.sqlite"), rank_mode=args.rank_mode, llm_reasons=args.llm_reasons)
    args.rank_mode = agent.rank_mode
    t = time.perf_counter()
    agent.warm_up(args.catalog)
    agent.wait_for_stage(args.catalog)  # measure turns, not the ranking stage's background load
    run_conversation(agent, args.catalog, ["hello", "a desk lamp", "why the first?"])  # warm caches (JSON tokenizer, first forward)
    print(f"warm-up {time.perf_counter() - t:.1f}s; engine {getattr(agent.engine(), 'model_id', None)}; torch threads {settings.llm_threads or 'default'}; "
          f"rank {args.rank_mode}; reasons {'llm' if args.llm_reasons else 'template'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

    # 1. latency, one turn at a time
    load0 = os.getloadavg()[0]
    results: list[TurnResult] = []
    t = time.perf_counter()
    for conv in script_turns(args.catalog, args.turns):
        results.extend(run_conversation(agent, args.catalog, conv))
    seq_wall = time.perf_counter() - t
    table = summarise(results)
    print(f"\n== latency: {len(results)} turns on {args.catalog}, sequential ({seq_wall:.1f}s; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f})")
    print(f"{'stage':<12}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for stage, row in table.items():
        print(f"{stage:<12}{row['p50']:>10.0f}{row['p95']:>10.0f}{row['mean']:>10.0f}")
    by_action: dict[str, dict[str, float]] = {}
    for action in sorted({r.action for r in results}):
        vals = [r.timings_ms["total"] for r in results if r.action == action]
        by_action[action] = {"n": len(vals), "p50": pct(vals, 50), "p95": pct(vals, 95)}
        print(f"  {action:<11} n={len(vals):<3} total p50 {by_action[action]['p50']:>7.0f} ms   p95 {by_action[action]['p95']:>7.0f} ms")
    rec = [r for r in results if r.action == "recommend"]
    searches = [r.debug.get("searches", 1) for r in rec]
    print(f"  recommend turns ran {statistics.fmean(searches):.2f} searches on average (only the first is re-ranked); {sum(1 for r in rec if not r.items)} found nothing")

    # 2. throughput with concurrent sessions
    convs = script_turns(args.catalog, args.turns)
    done: list[int] = []
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            done.append(len(run_conversation(agent, args.catalog, convs[k % len(convs)])))
        except BaseException as exc:
            errors.append(exc)

    load1 = os.getloadavg()[0]
    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    n_turns = sum(done)
    print(f"\n== throughput: {args.sessions} concurrent sessions, {n_turns} turns in {wall:.1f}s = {n_turns / wall:.2f} turns/s "
          f"(sequential: {len(results) / seq_wall:.2f} turns/s; load avg {load1:.1f} -> {os.getloadavg()[0]:.1f}){'; ERRORS: ' + repr(errors[:3]) if errors else ''}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "catalog": args.catalog, "turns": len(results), "rank_mode": args.rank_mode, "llm_reasons": args.llm_reasons,
        "torch_threads": settings.llm_threads, "latency_ms": table, "by_action": by_action,
        "sequential_turns_per_s": len(results) / seq_wall, "concurrent_sessions": args.sessions,
        "concurrent_turns_per_s": n_turns / wall, "errors": [repr(e) for e in errors], "cpus": os.cpu_count(),
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
