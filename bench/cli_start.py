"""Start-up benchmark of `aisle search` on a built index: old code against this tree, in one run.

    python bench/cli_start.py [--runs 7] [--old REF] [--query stapler] [--catalog amazon-office-2014]

Each run is a fresh process (cold Python, warm OS file cache) running
`aisle --home HOME search QUERY --catalog CATALOG`; old and new alternate so both see the same
load. The old code is `git archive REF` (default: where this branch left main) unpacked into a
temporary folder. Each side gets its own copy of this tree's home (`.aisle`, or AISLE_HOME; build
the index first with `aisle index --catalog CATALOG`), the models folder linked, so neither side's
writes (a re-import by a newer import version, an index sync) reach the other or the real home;
one untimed run per side settles such writes first. Reported per side: median wall seconds, median CPU seconds
(user + sys of the process: what the wall time comes to on an idle machine), what it imported
(torch, transformers, the LLM engines, the ranking stage) and whether stderr drew an indexing bar.
The box's load average is printed before and after: on a shared machine the wall time is the
CPU time stretched by the load, and the ratio of the two sides is the number to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers", "lightgbm", "agent.engines", "agent.recommend.ltr", "agent.recommend.pipeline", "evals")


def probe(out: Path) -> str:
    """`aisle`'s main, writing the imported modules' names to `out` at exit."""
    return (
        "import atexit, json, sys; "
        f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))); "
        "from agent.entrypoints.cli import main; main()"
    )


def run_once(tree: Path, args: list[str], env: dict[str, str], modules_file: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe(modules_file), *args], cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: aisle {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    modules = json.loads(modules_file.read_text())
    heavy = [p for p in HEAVY if any(m == p or m.startswith(p + ".") for m in modules)]
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "modules": len(modules),
        "heavy": heavy,
        "bar": "indexing" in proc.stderr,
        "first_line": proc.stdout.splitlines()[0] if proc.stdout else "",
    }


def copy_home(home: Path, to: Path) -> Path:
    """`home` without its test folder, the models folder linked rather than copied."""
    if not (home / "catalogs.sqlite").is_file():
        raise SystemExit(f"{home} has no catalogs; build the index first: aisle index --catalog CATALOG")
    shutil.copytree(home, to, ignore=lambda folder, names: [n for n in names if Path(folder) == home and n in ("models", "test")], symlinks=True)
    (to / "models").symlink_to((home / "models").resolve(), target_is_directory=True)
    return to


def summary(runs: list[dict]) -> dict:
    return {
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
        "median_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
        "min_wall_s": round(min(r["wall_s"] for r in runs), 2),
        "modules": runs[-1]["modules"],
        "heavy_imports": runs[-1]["heavy"],
        "indexing_bar": any(r["bar"] for r in runs),
        "first_line": runs[-1]["first_line"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="Runs per side (alternating old/new).")
    ap.add_argument("--old", help="Git ref of the old code (default: git merge-base HEAD main).")
    ap.add_argument("--query", default="stapler")
    ap.add_argument("--catalog", default="amazon-office-2014")
    ap.add_argument("--out", type=Path, help="Write the result JSON here.")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "GRADIO_ANALYTICS_ENABLED": "False"}
    home = Path(env.get("AISLE_HOME") or REPO / ".aisle").resolve()
    old_ref = args.old or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    search = ["search", args.query, "--catalog", args.catalog]
    with tempfile.TemporaryDirectory(prefix="aisle-cli-start-") as tmp:
        old_tree = Path(tmp) / "tree"
        old_tree.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", old_ref], cwd=REPO, capture_output=True, check=True).stdout
        archive_path = Path(tmp) / "old.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(old_tree, filter="data")
        trees = {"old": old_tree, "new": REPO}
        homes = {side: copy_home(home, Path(tmp) / f"{side}-home") for side in trees}
        for side in trees:  # untimed: settles any write a side makes to its home on first use
            run_once(trees[side], ["--home", str(homes[side]), *search], env, Path(tmp) / "warm.json")
        load_before = os.getloadavg()
        sides: dict[str, list[dict]] = {"old": [], "new": []}
        for i in range(args.runs):
            for side in ("old", "new"):
                sides[side].append(run_once(trees[side], ["--home", str(homes[side]), *search], env, Path(tmp) / f"{side}-modules.json"))
                print(f"run {i + 1} {side}: {sides[side][-1]['wall_s']:.2f} s wall, {sides[side][-1]['cpu_s']:.2f} s CPU", file=sys.stderr)
        load_after = os.getloadavg()
    result = {
        "command": "aisle " + " ".join(search),
        "old": old_ref,
        "runs_per_side": args.runs,
        "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        **{side: summary(runs) for side, runs in sides.items()},
    }
    result["new_over_old_wall"] = round(result["new"]["median_wall_s"] / result["old"]["median_wall_s"], 3)
    result["new_over_old_cpu"] = round(result["new"]["median_cpu_s"] / result["old"]["median_cpu_s"], 3)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
