"""Speed of an LLM engine on the calls aisle makes: load, prefill, decode, choice scoring, batching.

    python bench/engines.py                         # default: transformers + packaged SmolLM2
    python bench/engines.py --threads 1 --dtype bfloat16
    python bench/engines.py --engine openai --url http://127.0.0.1:8000/v1
    python bench/engines.py --engine vllm --model /path/to/hf-folder

Everything is measured in one run, so ratios (batch vs one-by-one) are comparable even on a
busy machine; absolute numbers are not, so the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from agent.engines import LLMEngine, make_engine  # noqa: E402
from agent.settings import Settings  # noqa: E402

LABELS = [chr(ord("A") + i) for i in range(20)]
TITLES = [
    "Swingline Stapler, Commercial Desk Stapler, 20 Sheet Capacity, Black",
    "BIC Round Stic Xtra Life Ballpoint Pen, Medium Point, Black, 60-Count",
    "Post-it Super Sticky Notes, 3x3 in, 12 Pads, Assorted Colors",
    "Scotch Heavy Duty Shipping Packaging Tape, 1.88 in x 54.6 yd, 6 Rolls",
    "Sharpie Permanent Markers, Fine Point, Black, 12 Count",
    "AmazonBasics Multipurpose Copy Printer Paper, 8.5 x 11 Inch, 1 Ream, 500 Sheets",
    "Fellowes Powershred 8Cd 8-Sheet Cross-Cut Paper and Credit Card Shredder",
    "Texas Instruments TI-84 Plus Graphing Calculator, Black",
    "Avery Durable View 3 Ring Binder, 1 Inch Slant Rings, White",
    "Paper Mate Mechanical Pencils, 0.7mm HB #2, 24 Count",
    "Elmer's Disappearing Purple School Glue Sticks, 0.21 oz, 30 Count",
    "Brother P-touch PTD210 Label Maker, One-Touch Keys, Multiple Font Styles",
    "Westcott 8-Inch Straight Titanium Bonded Scissors, Pack of 3",
    "Expo Low-Odor Dry Erase Markers, Chisel Tip, Assorted Colors, 12 Count",
    "Smead Manila File Folders, 1/3-Cut Tab, Letter Size, 100 per Box",
    "Zebra F-301 Retractable Ballpoint Stainless Steel Pen, Fine Point, Black, 2 Pack",
    "Staples Hyper Tough Standard Staples, 5000 per Box",
    "Quartet Cork Board Bulletin Board, 17 x 23 Inches, Oak Finish Frame",
    "Pilot G2 Premium Retractable Gel Pens, Fine Point, Black Ink, 12 Pack",
    "Mead Spiral Notebook, 1 Subject, College Ruled Paper, 70 Sheets, Assorted",
]
PRODUCTS = [t.split(",")[0] for t in TITLES]


def rerank_messages(titles: list[str]) -> list[dict[str, str]]:
    listing = "\n".join(f"{label}. {title}" for label, title in zip(LABELS, titles))
    return [
        {"role": "system", "content": "You are a shopping assistant. You pick the product that best fits the request."},
        {
            "role": "user",
            "content": "Request: I need a sturdy stapler for my home office, something that handles thick stacks.\n\n"
            f"Candidates:\n{listing}\n\nAnswer with the letter of the best candidate only.",
        },
    ]


def long_prompt(engine: LLMEngine, target_tokens: int = 600) -> list[dict[str, str]]:
    """A realistic ~600-token prompt: candidates with short descriptions, plus a question."""
    question = "\n\nWhich one would you recommend for writing notes? Explain briefly."
    lines = [
        f"{label}. {title}. A popular office product with good reviews; ships in original packaging."
        for label, title in zip(LABELS, TITLES)
    ]
    tokenizer = getattr(engine, "tokenizer", None)
    text = "Here are products from our catalog:"
    for i in range(200):
        candidate = text + "\n" + lines[i % len(lines)]
        size = len(tokenizer(candidate + question)["input_ids"]) if tokenizer is not None else len(candidate) // 4
        if size > target_tokens - 30:  # the chat template adds ~30 tokens
            break
        text = candidate
    return [{"role": "user", "content": text + question}]


def count_tokens(engine: LLMEngine, text: str) -> int | None:
    tokenizer = getattr(engine, "tokenizer", None)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else None


def timed(fn: Callable[[], Any], repeat: int = 1, engine: LLMEngine | None = None) -> tuple[float, Any]:
    """Median wall time of `repeat` calls, and the last result. With `engine`, its prompt cache is
    dropped before each call (llama.cpp would otherwise reuse the repeated prompt and time nothing)."""
    times, result = [], None
    for _ in range(repeat):
        if engine is not None and hasattr(engine, "forget"):
            engine.forget()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def build_settings(args: argparse.Namespace, home: Path | None = None) -> Settings:
    overrides: dict[str, Any] = {"llm": args.engine}
    if home is not None:
        overrides["home"] = home
    if args.model:
        overrides["llm_model"] = Path(args.model)
    if args.url:
        overrides["llm_url"] = args.url
    if args.served_model:
        overrides["llm_served_model"] = args.served_model
    if args.threads:
        overrides["llm_threads"] = args.threads
    return Settings(**overrides)


def open_engine(args: argparse.Namespace, settings: Settings) -> LLMEngine:
    if args.engine == "transformers" and args.dtype:
        from agent.engines.transformers_engine import TransformersEngine

        return TransformersEngine(settings, dtype=args.dtype)
    return make_engine(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["transformers", "llamacpp", "vllm", "openai"], default="transformers")
    parser.add_argument("--model", help="AISLE_LLM_MODEL: HF folder or .gguf (default: packaged SmolLM2)")
    parser.add_argument("--url", help="AISLE_LLM_URL for --engine openai")
    parser.add_argument("--served-model", help="AISLE_LLM_SERVED_MODEL for --engine openai")
    parser.add_argument("--threads", type=int, help="AISLE_LLM_THREADS (torch CPU threads)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help="transformers engine run dtype (default float32; auto = bf16 on CPUs with native bf16)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold GGUF conversion timing")
    args = parser.parse_args(argv)

    print(
        f"# engine={args.engine} load average={os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '(unset)')}"
    )

    # --- load: cold (GGUF conversion into an empty home) and warm (cached folder) ---
    if args.engine == "transformers":
        t0 = time.perf_counter()
        # Timed apart, so the load numbers below are the model's alone.
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

        import agent.engines.transformers_engine  # noqa: F401

        print(f"import torch + transformers:                        {time.perf_counter() - t0:6.2f} s")
    if args.engine == "transformers" and not args.skip_cold and (args.model is None or args.model.endswith(".gguf")):
        tmp_home = Path(tempfile.mkdtemp(prefix="aisle-bench-"))
        try:
            cold_s, engine = timed(lambda: open_engine(args, build_settings(args, tmp_home)))
            engine.close()
            del engine
        finally:
            shutil.rmtree(tmp_home, ignore_errors=True)
        print(f"load, cold (GGUF -> safetensors conversion + load): {cold_s:6.2f} s")
    settings = build_settings(args)
    warm_s, engine = timed(lambda: open_engine(args, settings))
    dtype = getattr(engine, "dtype", "")
    print(f"load, warm (converted folder):                      {warm_s:6.2f} s   model={engine.model_id} {dtype}")

    short = [{"role": "user", "content": "Hi!"}]
    engine.chat(short, max_tokens=4)  # warm-up (first call allocates, tunes kernels)

    # --- prefill: a ~600-token prompt, one new token ---
    prompt = long_prompt(engine)
    n_prompt = None
    if hasattr(engine, "_prompt_ids"):
        n_prompt = len(engine._prompt_ids(prompt, 1))  # type: ignore[attr-defined]
    prefill_s, _ = timed(lambda: engine.chat(prompt, max_tokens=1), repeat=3, engine=engine)
    if n_prompt:
        print(f"prefill: {n_prompt} prompt tokens in {prefill_s:.3f} s = {n_prompt / prefill_s:7.1f} tokens/s")
    else:
        print(f"prefill: ~600-token prompt, time to 1 token = {prefill_s:.3f} s")

    # --- decode: stream a long answer, rate after the first piece ---
    story = [{"role": "user", "content": "Write a long, detailed product description of a desk stapler."}]
    t0 = time.perf_counter()
    first = None
    pieces = []
    for piece in engine.stream(story, max_tokens=128):
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    n_out = count_tokens(engine, "".join(pieces)) or len(pieces)
    if first is not None and n_out > 1:
        print(f"decode: {n_out} tokens, {(n_out - 1) / (end - first):7.1f} tokens/s (first piece after {first - t0:.3f} s)")

    # --- score_choices over a 20-candidate prompt ---
    rr = rerank_messages(TITLES)
    score_s, scores = timed(lambda: engine.score_choices(rr, LABELS), repeat=3, engine=engine)
    best = max(scores, key=scores.get)
    n_rr = len(engine._prompt_ids(rr, 0)) if hasattr(engine, "_prompt_ids") else "?"  # type: ignore[attr-defined]
    print(f"score_choices: 20 labels, {n_rr}-token prompt: {score_s * 1000:7.1f} ms per pass (top: {best}={scores[best]:.2f})")
    if hasattr(engine, "score_choices_batch"):
        orders = [rerank_messages(TITLES[i:] + TITLES[:i]) for i in range(0, 20, 5)]
        sb_s, _ = timed(lambda: engine.score_choices_batch(orders, LABELS), repeat=3, engine=engine)  # type: ignore[attr-defined]
        print(f"score_choices_batch: 4 candidate orders in one pass: {sb_s * 1000:7.1f} ms ({sb_s / score_s:.2f}x one pass)")

    # --- batch vs one by one, same prompts, same run ---
    convs = [
        [{"role": "user", "content": f"Write a detailed product description for: {PRODUCTS[i % len(PRODUCTS)]}. Mention use cases {i}."}]
        for i in range(args.batch_size)
    ]
    n = args.new_tokens
    batch_s, outs_b = timed(lambda: engine.batch(convs, max_tokens=n))
    loop_s, outs_l = timed(lambda: [engine.chat(c, max_tokens=n) for c in convs])
    tok_b = sum(count_tokens(engine, o) or 0 for o in outs_b)
    tok_l = sum(count_tokens(engine, o) or 0 for o in outs_l)
    same = sum(a == b for a, b in zip(outs_b, outs_l))
    print(
        f"batch: {args.batch_size} prompts x {n} new tokens: {batch_s:6.1f} s ({tok_b / batch_s:6.1f} tok/s) | "
        f"one by one: {loop_s:6.1f} s ({tok_l / loop_s:6.1f} tok/s) | speed-up {loop_s / batch_s:.2f}x | "
        f"identical outputs {same}/{len(convs)}"
    )
    engine.close()
    print(f"# load average at end={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
