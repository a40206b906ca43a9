"""Import benchmark: a big feed (real items replicated under new ids) through `aisle catalog add`,
then `aisle index`, each in its own process, with wall time, items/s and peak memory (RSS).

    python bench/import_feed.py [--items 100000] [--also 20000] [--keep DIR]

`--also N` runs a second, smaller feed first: if memory is bounded (streamed import, batched
indexing), the import's peak RSS barely moves between N and --items. Everything runs in a
throw-away AISLE_HOME; the converted embedding model is re-used from the normal home's models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.settings import Settings  # noqa: E402
from retrieval.registry import load_catalog  # noqa: E402


def write_feed(path: Path, n: int) -> None:
    """`n` JSONL rows: amazon-office-2014's items over and over, each copy under new ids."""
    base = [item.to_record() for item in load_catalog(Settings(), "amazon-office-2014").items.values()]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            record = dict(base[i % len(base)])
            record["id"] = f"{record['id']}~{i // len(base)}"
            fh.write(json.dumps(record) + "\n")


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `aisle` process. The peak is the child's own VmHWM,
    read from /proc while it runs: getrusage's figure for a child also counts the parent's pages
    it held between fork and exec."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "from agent.entrypoints.cli import main; main()", *args], env=env, stdout=subprocess.DEVNULL)
    peak_kb = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"aisle {' '.join(args)} failed with exit code {proc.returncode}")
    return time.perf_counter() - t0, peak_kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--also", type=int, default=20_000, help="a smaller feed run first, for the memory comparison (0: skip)")
    ap.add_argument("--keep", type=Path, help="work in this folder instead of a temporary one")
    ap.add_argument("--no-index", action="store_true", help="time the import only")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="aisle-import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    env = {**os.environ, "AISLE_HOME": str(work / "home")}
    # Re-use the converted embedding model instead of converting it again in the fresh home.
    (work / "home").mkdir(exist_ok=True)
    models = work / "home" / "models"
    if not models.exists() and settings.models_dir.is_dir():
        models.symlink_to(settings.models_dir.resolve())

    # Convert the embedding model now (once, in a child: the bench stays small), so no timed run
    # includes the conversion.
    warm = "from pathlib import Path; from agent.settings import Settings; from retrieval.embed import Embedder; Embedder.from_settings(Settings(home=Path(%r)))"
    subprocess.run([sys.executable, "-c", warm % str(work / "home")], check=True, env=env)

    sizes = [n for n in (args.also, args.items) if n]
    rows = []
    for n in sizes:
        feed = work / f"feed-{n}.jsonl"
        t = time.perf_counter()
        write_feed(feed, n)
        print(f"wrote {feed} ({n} items, {feed.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
        name = f"bench-{n}"
        import_s, import_rss = run(["catalog", "add", name, "--items", str(feed), "--no-index"], env)
        print(f"  import: {import_s:.1f} s, {n / import_s:.0f} items/s, peak RSS {import_rss:.0f} MB", flush=True)
        index_s, index_rss = run(["index", "--catalog", name], env) if not args.no_index else (float("nan"), float("nan"))
        print(f"  index:  {index_s:.1f} s, {n / index_s:.1f} items/s, peak RSS {index_rss:.0f} MB", flush=True)
        rows.append((n, import_s, import_rss, index_s, index_rss))

    print()
    print(f"{'items':>8} {'import s':>9} {'items/s':>8} {'RSS MB':>7} | {'index s':>8} {'items/s':>8} {'RSS MB':>7} | {'total s':>8}")
    for n, import_s, import_rss, index_s, index_rss in rows:
        print(f"{n:>8} {import_s:9.1f} {n / import_s:8.0f} {import_rss:7.0f} | {index_s:8.1f} {n / index_s:8.1f} {index_rss:7.0f} | {import_s + index_s:8.1f}")
    if len(rows) == 2:
        (n1, _, r1, _, x1), (n2, _, r2, _, x2) = rows
        print(f"\n{n2 // n1}x the items: import peak RSS x{r2 / r1:.2f}, index peak RSS x{x2 / x1:.2f}")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
