"""Turn latency with and without a stream of history events, against a real `aisle serve`, in one run.

    AISLE_HOME=... python bench/events.py [--catalog amazon-office-2014] [--seconds 60] [--shoppers 2] [--every 3]

Every POST /v1/events used to make the next turn reopen the whole catalog (index, searcher,
ranking stage); now events only refit the ranking stage's history sources in the background. The
bench runs scripted shoppers (history turns included: "I like the first one", "more like the first
one") for --seconds without events, then for --seconds while one event is posted every --every
seconds, and prints p50/p95 of each phase and the p95 ratio (target: within 1.5x).

The server runs on a scratch copy of $AISLE_HOME's registry (the index and models are linked, not
copied), so the bench's events never enter the real catalog's history; start-up training is off.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SCRIPT = ["a heavy duty stapler", "I like the first one", "show me more like that", "cheaper", "more like the first one", "a label maker", "why the first?", "start over"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def scratch_home(home: Path) -> Path:
    """A home that shares `home`'s index and model files but has its own registry and sessions."""
    tmp = Path(tempfile.mkdtemp(prefix="aisle-events-bench-"))
    src = sqlite3.connect(home / "catalogs.sqlite")
    with sqlite3.connect(tmp / "catalogs.sqlite") as dst:
        src.backup(dst)
    src.close()
    (tmp / "chroma").symlink_to((home / "chroma").resolve(), target_is_directory=True)
    (tmp / "models").mkdir()
    for entry in (home / "models").iterdir():
        (tmp / "models" / entry.name).symlink_to(entry.resolve())
    return tmp


class Shopper(threading.Thread):
    def __init__(self, url: str, catalog: str, stop_at: float, offset: int) -> None:
        super().__init__(daemon=True)
        self.url, self.catalog, self.stop_at, self.offset = url, catalog, stop_at, offset
        self.samples: list[float] = []
        self.seen: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=600) as client:
            session, i = None, self.offset
            while time.monotonic() < self.stop_at:
                message = SCRIPT[i % len(SCRIPT)]
                if message == SCRIPT[0]:
                    session = None
                body = {"message": message, "catalog": self.catalog, **({"session_id": session} if session else {})}
                t = time.perf_counter()
                r = client.post("/v1/turn", json=body)
                elapsed = time.perf_counter() - t
                i += 1
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code}: {r.text[:120]}")
                    continue
                out = r.json()
                session = out["session_id"]
                self.samples.append(elapsed)
                self.seen.extend(item["id"] for item in out["items"])


def post_events(url: str, catalog: str, items: list[str], every: float, stop_at: float, posted: list[float]) -> None:
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < stop_at:
            event = {"user_id": f"bench-{rng.randrange(50)}", "item_id": rng.choice(items)}
            t = time.perf_counter()
            r = client.post("/v1/events", json={"catalog": catalog, "events": [event]})
            posted.append(time.perf_counter() - t)
            if r.status_code != 201:
                print(f"event refused: {r.status_code} {r.text[:200]}")
            time.sleep(every)


def phase(url: str, catalog: str, shoppers: int, seconds: float, *, events_every: float | None = None, items: list[str] = ()) -> dict:
    stop_at = time.monotonic() + seconds
    crowd = [Shopper(url, catalog, stop_at, offset=3 * n) for n in range(shoppers)]
    posted: list[float] = []
    poster = threading.Thread(target=post_events, args=(url, catalog, list(items), events_every, stop_at, posted), daemon=True) if events_every else None
    for s in crowd:
        s.start()
    if poster:
        poster.start()
    for s in crowd:
        s.join(seconds + 600)
    if poster:
        poster.join(60)
    times = [x for s in crowd for x in s.samples]
    return {"turns": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "events": len(posted), "event_p95": pct(posted, 95),
            "errors": [e for s in crowd for e in s.errors], "seen": sorted({i for s in crowd for i in s.seen})}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default="amazon-office-2014")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--shoppers", type=int, default=2)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between events in the second phase")
    ap.add_argument("--port", type=int, default=8767)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from agent.settings import Settings

    home = scratch_home(Settings().home)
    env = {**os.environ, "AISLE_HOME": str(home), "AISLE_CATALOG": args.catalog, "AISLE_RATE_KEY_PER_MIN": "0", "AISLE_RATE_SESSION_PER_MIN": "0", "AISLE_TRAIN_MISSING": "false"}
    url = f"http://127.0.0.1:{args.port}"
    log = (home / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", "from agent.entrypoints.cli import main; main()", "serve", "--port", str(args.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while True:
            try:
                ready = httpx.get(url + "/ready", timeout=5).json()
                if ready.get("checks", {}).get("models", {}).get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if server.poll() is not None or time.monotonic() - t0 > 600:
                raise SystemExit(f"server did not get ready; see {home / 'server.log'}")
            time.sleep(1)
        print(f"server ready in {time.monotonic() - t0:.0f} s; models: {ready['checks']['models']['detail']}")
        warm = phase(url, args.catalog, 1, 15)
        quiet = phase(url, args.catalog, args.shoppers, args.seconds)
        busy = phase(url, args.catalog, args.shoppers, args.seconds, events_every=args.every, items=warm["seen"] + quiet["seen"])
        for label, row in (("no events", quiet), (f"1 event every {args.every:g} s", busy)):
            print(f"{label:>22}: {row['turns']} turns, p50 {row['p50']:.3f} s, p95 {row['p95']:.3f} s; events posted {row['events']} (p95 {row['event_p95']:.3f} s); errors {len(row['errors'])}")
            for e in row["errors"][:3]:
                print(f"    error: {e}")
        ratio = busy["p95"] / quiet["p95"]
        print(f"p95 with events / without: {ratio:.2f}x (target <= 1.5x: {'MET' if ratio <= 1.5 else 'NOT MET'}); p50 ratio {busy['p50'] / quiet['p50']:.2f}x")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        print(f"server log and scratch registry: {home}")


if __name__ == "__main__":
    main()
