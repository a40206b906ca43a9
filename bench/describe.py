"""Copywriting throughput: batched vs one-by-one generation of the same product-copy prompts.

    python bench/describe.py                      # transformers (+ vLLM if an interpreter has it)
    python bench/describe.py --items 64 --batch-size 32 --max-tokens 120 --no-vllm

Why: `aisle describe` writes copy for hundreds of cold-start items offline; batching is what
makes that practical on CPU. The same N real cold-start items of amazon-office-2014 are rendered
with the describe.v1 prompt (exactly what `aisle describe` sends) and generated greedily:
- transformers: `engine.batch` in chunks of --batch-size (left-padded generate) vs `engine.chat`
  one item at a time;
- vLLM (in-process VLLMEngine, CPU build): one `engine.batch` with all items (continuous batching)
  vs `engine.chat` one at a time. Runs in the interpreter that has vllm (this one, $AISLE_VLLM_PYTHON
  or .venv-vllm/bin/python) as a child process printing JSON.
Both modes of an engine run in the same process, interleaved chunk by chunk, so the ratio is
measured in one run under the same load. Output tokens are counted so that a mode cannot look faster by
writing less. On a shared CPU expect +-30 % between runs; compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # before torch loads; why: agent/settings.py OFFLINE_ENV

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_items(n: int, seed: int) -> list[Any]:
    """N real cold-start items (title, no description) of amazon-office-2014, seeded."""
    from agent.copy.writer import item_problem
    from agent.settings import Settings
    from retrieval.registry import load_catalog

    catalog = load_catalog(Settings(), "amazon-office-2014")
    cold = sorted((i for i, it in catalog.items.items() if not it.description and item_problem(it) is None), key=int)
    return [catalog.items[i] for i in sorted(random.Random(seed).sample(cold, n), key=int)]


def _count_tokens(engine: Any, texts: list[str]) -> int:
    tok = getattr(engine, "tokenizer", None) or getattr(engine, "_tokenizer", None)
    if tok is None:
        return sum(len(t.split()) for t in texts)
    return sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)


def run_modes(engine: Any, convs: list[Any], *, batch_size: int, max_tokens: int) -> dict[str, Any]:
    """Batched vs one-by-one over the same conversations; items/s, tokens/s and agreement.

    Interleaved chunk by chunk (a chunk batched, then the same chunk one by one) so that both
    modes see the same machine load: on a shared CPU the load drifts over minutes."""
    engine.chat(convs[0], max_tokens=4)  # warm-up: first call pays one-time costs
    batched: list[str] = []
    single: list[str] = []
    batched_s = single_s = 0.0
    for start in range(0, len(convs), batch_size):
        chunk = convs[start : start + batch_size]
        t = time.perf_counter()
        batched.extend(engine.batch(chunk, max_tokens=max_tokens))
        batched_s += time.perf_counter() - t
        t = time.perf_counter()
        single.extend(engine.chat(c, max_tokens=max_tokens) for c in chunk)
        single_s += time.perf_counter() - t
    n = len(convs)
    b_tok, s_tok = _count_tokens(engine, batched), _count_tokens(engine, single)
    return {
        "items": n,
        "batch_size": batch_size,
        "batched_s": batched_s,
        "batched_items_s": n / batched_s,
        "batched_tok_s": b_tok / batched_s,
        "one_by_one_s": single_s,
        "one_by_one_items_s": n / single_s,
        "one_by_one_tok_s": s_tok / single_s,
        "ratio": single_s / batched_s,
        "output_tokens": {"batched": b_tok, "one_by_one": s_tok},
        "prompt_tokens_per_item": _prompt_tokens(engine, convs[0]),
        "identical_outputs": sum(a.strip() == b.strip() for a, b in zip(batched, single)) / n,
    }


def _prompt_tokens(engine: Any, conv: Any) -> int | None:
    tok = getattr(engine, "tokenizer", None) or getattr(engine, "_tokenizer", None)
    if tok is None:
        return None
    text = tok.apply_chat_template([dict(m) for m in conv], add_generation_prompt=True, tokenize=False)
    return len(tok.encode(text, add_special_tokens=False))


def _conversations(items: list[Any], engine: Any) -> list[Any]:
    from agent.copy.writer import Copywriter

    writer = Copywriter(engine)
    return [writer.messages(it) for it in items]


def bench_transformers(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from agent.engines.transformers_engine import TransformersEngine
    from agent.settings import Settings

    t = time.perf_counter()
    engine = TransformersEngine(Settings(llm="transformers"))
    load_s = time.perf_counter() - t
    items = bench_items(args.items, args.seed)
    row = run_modes(engine, _conversations(items, engine), batch_size=args.batch_size, max_tokens=args.max_tokens)
    engine.close()
    return {**row, "load_s": load_s, "engine": f"transformers ({torch.get_num_threads()} threads)"}


def bench_vllm_child(args: argparse.Namespace) -> dict[str, Any]:
    from agent.engines.vllm_engine import VLLMEngine
    from agent.settings import Settings

    t = time.perf_counter()
    engine = VLLMEngine(Settings(llm="vllm"))
    load_s = time.perf_counter() - t
    items = bench_items(args.items, args.seed)
    # vLLM schedules everything it is given: one call with all items is its natural batch.
    row = run_modes(engine, _conversations(items, engine), batch_size=len(items), max_tokens=args.max_tokens)
    row["prefix_caching"] = bool(getattr(getattr(engine._llm.llm_engine, "cache_config", None), "enable_prefix_caching", False))
    engine.close()
    return {**row, "load_s": load_s, "engine": "vLLM in-process (CPU, eager)"}


def _vllm_python() -> str | None:
    import importlib.util

    explicit = os.environ.get("AISLE_VLLM_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    side = REPO / ".venv-vllm" / "bin" / "python"
    return str(side) if side.exists() else None


def bench_vllm(args: argparse.Namespace) -> dict[str, Any] | str:
    """The vLLM row, or why there is none."""
    python = _vllm_python()
    if python is None:
        return "skipped: no interpreter with vllm (scripts/install_vllm.sh, or set AISLE_VLLM_PYTHON)"
    from agent.engines.model_store import DEFAULT_FOLDER_NAME, ensure_llm_model, is_converted
    from agent.engines.vllm_engine import serve_env
    from agent.settings import Settings

    # The vllm interpreter may lack the packaged-model package: hand it the converted folder.
    settings = Settings()
    folder = settings.models_dir / DEFAULT_FOLDER_NAME
    model = folder if is_converted(folder) else ensure_llm_model(settings)
    env = serve_env({**os.environ, "PYTHONPATH": str(REPO), "AISLE_LLM_MODEL": str(model)})
    env.pop("VIRTUAL_ENV", None)
    cmd = [python, __file__, "--child-vllm", "--items", str(args.items), "--seed", str(args.seed), "--max-tokens", str(args.max_tokens)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.vllm_timeout)
    except subprocess.TimeoutExpired:
        return f"skipped: vLLM run exceeded {args.vllm_timeout}s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'}"
    return json.loads(lines[-1][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="transformers chunk size (its engine caps a generate call at 32)")
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--vllm-timeout", type=int, default=1800)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "describe.json")
    ap.add_argument("--child-vllm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child_vllm:
        print("RESULT " + json.dumps(bench_vllm_child(args)), flush=True)
        return

    load = os.getloadavg()[0]
    rows: dict[str, Any] = {"transformers": "skipped (--no-transformers)" if args.no_transformers else bench_transformers(args)}
    rows["vllm"] = "skipped (--no-vllm)" if args.no_vllm else bench_vllm(args)

    print(f"\ncopy generation, {args.items} cold-start items of amazon-office-2014, prompt describe.v1, max_tokens={args.max_tokens}, "
          f"greedy; {os.cpu_count()} cores, load avg {load:.1f} at start")  # fmt: skip
    head = f"{'engine':34} {'mode':18} {'seconds':>8} {'items/s':>8} {'out tok/s':>9}"
    print(head)
    print("-" * len(head))
    for key, r in rows.items():
        if isinstance(r, str):
            print(f"{key:34} {r}")
            continue
        print(f"{r['engine']:34} {'batched (' + str(r['batch_size']) + ')':18} {r['batched_s']:8.1f} {r['batched_items_s']:8.3f} {r['batched_tok_s']:9.1f}")
        print(f"{'':34} {'one by one':18} {r['one_by_one_s']:8.1f} {r['one_by_one_items_s']:8.3f} {r['one_by_one_tok_s']:9.1f}")
        print(f"{'':34} {'ratio':18} {r['ratio']:8.2f}x   (identical outputs {r['identical_outputs']:.0%}, "
              f"output tokens {r['output_tokens']['batched']} vs {r['output_tokens']['one_by_one']}, "
              f"prompt {r['prompt_tokens_per_item']} tokens/item)")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load_avg": load, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
