"""Measure vLLM on this machine: `vllm serve` (through OpenAIEngine / the openai client) and the
in-process VLLMEngine. Prints one table.

    python bench/engines_vllm.py                       # both modes, eager (no torch.compile)
    python bench/engines_vllm.py --mode server --compile --reserved-cpus 0

Runs from any venv that has `openai` (the server mode) and finds the interpreter with vllm the
same way the tests do: --vllm-python, $AISLE_VLLM_PYTHON, this one, or .venv-vllm/bin/python.
The in-process mode runs in that interpreter as a child (`--child`), printing JSON.

Rows: load = process start to first answer possible; prefill = prompt tokens/s of a ~1.5k-token
prompt (max_tokens=1, fresh text each time so the prefix cache does not help); decode = tokens/s
after the first token of a 128-token greedy reply (ignore_eos); score = one 20-label
score_choices call; batch = 32 prompts x 64 new tokens sent together vs one after another.
Each timing is the median of --reps runs. On a shared 2-core box expect +-30 % between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LABELS = [chr(ord("A") + i) for i in range(20)]
WORDS = "pen stapler desk chair lamp paper folder binder marker tape clip ruler notebook envelope label printer toner ink cable monitor".split()


def _text(n_words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _rank_prompt(seed: int) -> list[dict[str, str]]:
    lines = [f"{c}. {_text(8, seed * 100 + i)}" for i, c in enumerate(LABELS)]
    return [{"role": "user", "content": f"Query: {_text(6, seed)}\nCandidates:\n" + "\n".join(lines) + "\nAnswer with the letter of the best candidate."}]


def _median_time(fn: Any, reps: int) -> tuple[float, Any]:
    times, last = [], None
    for i in range(reps):
        t = time.perf_counter()
        last = fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times), last


# --- server mode ----------------------------------------------------------------------------------


def bench_server(args: argparse.Namespace, python: str, model: Path) -> dict[str, Any]:
    from openai import OpenAI

    from agent.engines.openai_engine import OpenAIEngine
    from agent.engines.vllm_engine import serve_command, serve_env
    from agent.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = serve_command(python, model, port=port, enforce_eager=not args.compile, dtype=args.dtype)
    env = serve_env(dict(os.environ), kv_cache_gb=1, reserved_cpus=args.reserved_cpus)
    log = open(Path(args.log_dir) / f"serve-{port}.log", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"vllm serve exited ({proc.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if time.perf_counter() - t0 > 900:
                raise SystemExit(f"vllm serve not healthy after 900 s; see {log.name}")
        load_s = time.perf_counter() - t0
        url = f"http://127.0.0.1:{port}/v1"
        client = OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)
        engine = OpenAIEngine(Settings(llm="openai", llm_url=url, llm_timeout_s=600))
        m = engine.model_id
        engine.chat([{"role": "user", "content": "warm up"}], max_tokens=4)

        def prefill(i: int) -> int:
            r = client.chat.completions.create(model=m, messages=[{"role": "user", "content": _text(1500, 1000 + i)}], max_tokens=1)
            return r.usage.prompt_tokens

        pre_s, n_prompt = _median_time(prefill, args.reps)

        def decode(i: int) -> float:
            first = last = None
            n = 0
            stream = client.chat.completions.create(
                model=m, messages=[{"role": "user", "content": f"Write about item {i}."}], max_tokens=128, temperature=0,
                stream=True, extra_body={"ignore_eos": True},
            )  # fmt: skip
            for ch in stream:
                if ch.choices and ch.choices[0].delta.content:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    n += 1
            return (n - 1) / (last - first)

        dec = statistics.median(decode(i) for i in range(args.reps))
        score_s, scores = _median_time(lambda i: engine.score_choices(_rank_prompt(i), LABELS), args.reps)

        def one(i: int) -> int:
            r = client.chat.completions.create(
                model=m, messages=[{"role": "user", "content": f"Tip {i}: {_text(20, 5000 + i)}"}], max_tokens=64, temperature=0, extra_body={"ignore_eos": True}
            )
            return r.usage.completion_tokens

        t = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            toks = sum(pool.map(one, range(32)))
        together = time.perf_counter() - t
        t = time.perf_counter()
        toks_seq = sum(one(100 + i) for i in range(32))
        seq = time.perf_counter() - t
        engine.close()
        return {
            "load_s": load_s, "prefill_tok_s": n_prompt / pre_s, "prompt_tokens": n_prompt, "decode_tok_s": dec,
            "score_s": score_s, "score_sum": sum(scores.values()),
            "batch_s": together, "batch_tok_s": toks / together, "seq_s": seq, "seq_tok_s": toks_seq / seq,
        }  # fmt: skip
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


# --- in-process mode (runs in the vllm interpreter) ----------------------------------------------


def bench_in_process(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    from agent.engines.vllm_engine import VLLMEngine
    from agent.settings import Settings

    eng = VLLMEngine(Settings(llm="vllm", llm_model=model), enforce_eager=not args.compile, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    llm = eng._llm
    eng.chat([{"role": "user", "content": "warm up"}], max_tokens=4)
    eng.score_choices(_rank_prompt(999), LABELS)  # first logprob_token_ids call is slow once

    def prefill(i: int) -> int:
        out = llm.chat([[{"role": "user", "content": _text(1500, 1000 + i)}]], eng._params(1, 0.0), use_tqdm=False)
        return len(out[0].prompt_token_ids)

    pre_s, n_prompt = _median_time(prefill, args.reps)

    def gen(i: int, n: int) -> float:
        t = time.perf_counter()
        llm.chat([[{"role": "user", "content": f"Write about item {i}."}]], eng._params(n, 0.0, ignore_eos=True), use_tqdm=False)
        return time.perf_counter() - t

    # decode rate = extra tokens / extra time between a 1-token and a 128-token reply
    dec = statistics.median(127 / (gen(i, 128) - gen(i, 1)) for i in range(args.reps))
    score_s, scores = _median_time(lambda i: eng.score_choices(_rank_prompt(i), LABELS), args.reps)
    convs = [[{"role": "user", "content": f"Tip {i}: {_text(20, 5000 + i)}"}] for i in range(32)]
    p64 = eng._params(64, 0.0, ignore_eos=True)
    t = time.perf_counter()
    outs = llm.chat(convs, p64, use_tqdm=False)
    together = time.perf_counter() - t
    toks = sum(len(o.outputs[0].token_ids) for o in outs)
    t = time.perf_counter()
    toks_seq = sum(len(llm.chat([c], p64, use_tqdm=False)[0].outputs[0].token_ids) for c in convs)
    seq = time.perf_counter() - t
    eng.close()
    return {
        "load_s": load_s, "prefill_tok_s": n_prompt / pre_s, "prompt_tokens": n_prompt, "decode_tok_s": dec,
        "score_s": score_s, "score_sum": sum(scores.values()),
        "batch_s": together, "batch_tok_s": toks / together, "seq_s": seq, "seq_tok_s": toks_seq / seq,
    }  # fmt: skip


# --- driver ---------------------------------------------------------------------------------------


def _vllm_python(explicit: str | None) -> str:
    import importlib.util

    for cand in [explicit, os.environ.get("AISLE_VLLM_PYTHON")]:
        if cand:
            return cand
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    side = REPO / ".venv-vllm" / "bin" / "python"
    if side.exists():
        return str(side)
    raise SystemExit("no interpreter with vllm: run scripts/install_vllm.sh or pass --vllm-python")


def _model(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    from agent.engines.model_store import DEFAULT_FOLDER_NAME, ensure_llm_model, is_converted
    from agent.settings import Settings

    settings = Settings()
    folder = settings.models_dir / DEFAULT_FOLDER_NAME
    return folder if is_converted(folder) else ensure_llm_model(settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["server", "in-process", "both"], default="both")
    ap.add_argument("--compile", action="store_true", help="let vLLM torch.compile the model (slow start) instead of --enforce-eager")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--reserved-cpus", type=int, default=None, help="VLLM_CPU_NUM_OF_RESERVED_CPU for the server (vLLM default: 1)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=None, help="HF model folder (default: the converted packaged SmolLM2)")
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--log-dir", default="/tmp")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # in-process mode inside the vllm interpreter
        print("RESULT " + json.dumps(bench_in_process(args, Path(args.model))), flush=True)
        return

    python, model = _vllm_python(args.vllm_python), _model(args.model)
    rows: dict[str, dict[str, Any]] = {}
    if args.mode in ("server", "both"):
        rows["vllm serve + OpenAIEngine"] = bench_server(args, python, model)
    if args.mode in ("in-process", "both"):
        cmd = [python, __file__, "--child", "--model", str(model), "--reps", str(args.reps), "--dtype", args.dtype]
        if args.compile:
            cmd.append("--compile")
        from agent.engines.vllm_engine import serve_env

        env = serve_env({**os.environ, "PYTHONPATH": str(REPO)}, reserved_cpus=args.reserved_cpus)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"in-process bench failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rows["in-process VLLMEngine"] = json.loads(lines[-1][7:])

    mode = "torch.compile" if args.compile else "eager"
    print(f"\nvLLM CPU, SmolLM2-135M-Instruct, {args.dtype}, {mode}, reserved cpus={args.reserved_cpus if args.reserved_cpus is not None else 'default(1)'}, "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, median of {args.reps}")  # fmt: skip
    head = f"{'mode':28} {'load s':>7} {'prefill tok/s':>13} {'decode tok/s':>12} {'score 20 s':>10} {'32x64 together':>20} {'32x64 one by one':>20}"
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(
            f"{name:28} {r['load_s']:7.1f} {r['prefill_tok_s']:13.0f} {r['decode_tok_s']:12.1f} {r['score_s']:10.3f} "
            f"{r['batch_s']:8.1f} s {r['batch_tok_s']:6.0f} t/s {r['seq_s']:8.1f} s {r['seq_tok_s']:6.0f} t/s"
        )
    print(f"(prefill prompt = {next(iter(rows.values()))['prompt_tokens']} tokens; score sums: {[round(r['score_sum'], 6) for r in rows.values()]})")


if __name__ == "__main__":
    main()
