"""Faults of real files and real processes against a real `aisle serve`: a truncated HNSW file, a
damaged chroma.sqlite3, a full disk (a tmpfs made by the test) and an LLM server that accepts
connections and never answers. Each answers 503 with a code naming the part (or, for the LLM, a
degraded answer without it), /ready says so, and no turn takes over 5 s (the serving contract).

The catalog has 700 items (1,400 vectors): Chroma keeps a small collection's vectors in its log
and rebuilds the HNSW files from it at start-up (a truncated file then heals itself); past its
sync threshold (1,000) the files are the only copy, as in a real shop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.settings import REPO_ROOT
from tests.agent.test_engine_recovery import HangingServer
from tests.conftest import free_port
from tests.fast.conftest import share_models

KEY = "fault-test-key-1234"
TURN_LIMIT_S = 5.0  # the serving contract: no turn over 5 s, whatever is broken
KINDS = ["stapler", "gel pen", "shredder", "label maker", "notebook", "desk lamp", "paper clip", "binder", "marker", "tape dispenser"]
BRANDS = ["Swingline", "Bostitch", "Pilot", "Fellowes", "Brother", "DYMO", "Bic", "Pentel", "Rapid", "Acme"]


def aisle(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """The `aisle` command of this checkout (PYTHONPATH: this tree's code, not an installed one)."""
    exe = str(Path(sys.executable).with_name("aisle"))
    return subprocess.Popen([exe, *args], env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}, **kwargs)


@pytest.fixture(scope="module")
def shop_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the 700-item catalog "shop" registered and indexed (by the CLI)."""
    root = tmp_path_factory.mktemp("faults")
    feed = root / "items.jsonl"
    with feed.open("w") as f:
        for n in range(700):
            kind, brand = KINDS[n % 10], BRANDS[n * 7 % 10]
            row = {"id": f"i{n}", "title": f"{brand} {kind.title()} model {n}", "description": f"A {kind} by {brand}, item {n}.", "brand": brand, "price": round(2 + n * 0.7, 2)}
            f.write(json.dumps(row) + "\n")
    home = share_models(root / "home")
    proc = aisle("--home", str(home), "catalog", "add", "shop", "--items", str(feed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert list((home / "chroma").glob("*/data_level0.bin")), "the index has no HNSW files"
    return home


def copy_home(home: Path, dest: Path) -> Path:
    shutil.copytree(home, dest, symlinks=True)
    return dest


class Server:
    """`aisle serve` on 127.0.0.1 in its own process, its log in a file."""

    def __init__(self, home: Path, log_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = aisle("--home", str(home), "serve", "--port", str(self.port), "--api-key", KEY, "--catalog", "shop", env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, f"aisle serve exited: {self.log()}"
            assert time.monotonic() < deadline, f"aisle serve did not come up: {self.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.3)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def turn(self, body: dict) -> tuple[httpx.Response, float]:
        t0 = time.monotonic()
        r = self.http.post("/v1/turn", json=body)
        return r, time.monotonic() - t0

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def serving(home: Path, log_dir: Path, **kwargs) -> Iterator[Server]:
    server = Server(home, log_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def sessions_in(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "sessions.sqlite")) as db:
        return db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]


def damage(home: Path, kind: str) -> None:
    chroma = home / "chroma"
    if kind == "truncated_hnsw":
        (hnsw,) = chroma.glob("*/data_level0.bin")
        os.truncate(hnsw, 1000)
    elif kind == "sqlite_header":
        with (chroma / "chroma.sqlite3").open("r+b") as f:
            f.write(b"\x00garbage" * 64)
    elif kind == "sqlite_pages":
        db = chroma / "chroma.sqlite3"
        size = db.stat().st_size
        with db.open("r+b") as f:
            f.seek(size // 3)
            f.write(b"\xa5" * (size // 3))


@pytest.mark.parametrize("kind", ["truncated_hnsw", "sqlite_header", "sqlite_pages"])
def test_damaged_index_answers_503_and_ready_says_so(shop_home, tmp_path, kind):
    home = copy_home(shop_home, tmp_path / "home")
    damage(home, kind)
    with serving(home, tmp_path) as server:
        for body in ({"message": "a stapler"}, {"message": "a gel pen", "catalog": "shop"}):
            r, seconds = server.turn(body)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "vector_store_unavailable", r.text
            assert "aisle index" in r.json()["error"]["message"]
            assert seconds < TURN_LIMIT_S, seconds
        ready = server.http.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready", ready.text
        assert ready.json()["checks"]["index"]["status"] == "fail" and ready.json()["checks"]["index"]["code"] == "vector_store_unavailable"
        assert ready.json()["checks"]["session_store"]["status"] == "ok"
        assert httpx.get(f"{server.url}/ready").status_code == 401  # behind the key
        assert "internal_error" not in server.log()
    assert sessions_in(home) == 0  # the refused first turns made no session


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs at tmp_path/disk (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the volume to the last byte (a real ENOSPC), returning the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    assert shutil.disk_usage(disk).free < 65536
    return filler


@pytest.mark.parametrize("on_disk", ["home", "session_store"])
def test_full_disk_answers_503_disk_full_and_keeps_what_was_saved(shop_home, small_disk, tmp_path, on_disk):
    """on_disk: what lives on the small disk, the whole home or only the session store (a symlink
    to it: SQLite keeps its WAL beside the real file)."""
    if on_disk == "home":
        home = copy_home(shop_home, small_disk / "home")
    else:
        home = copy_home(shop_home, tmp_path / "home")
        (home / "sessions.sqlite").symlink_to(small_disk / "sessions.sqlite")
    with serving(home, tmp_path) as server:
        first, _ = server.turn({"message": "a stapler"})
        assert first.status_code == 200, first.text
        sid = first.json()["session_id"]
        filler = fill(small_disk)

        for body in ({"session_id": sid, "message": "cheaper"}, {"message": "a gel pen"}):
            r, seconds = server.turn(body)
            assert r.status_code == 503 and r.json()["error"]["code"] == "disk_full", r.text
            assert "free space" in r.json()["error"]["message"]
            if on_disk == "session_store":
                assert "session store" in r.json()["error"]["message"]
            assert seconds < TURN_LIMIT_S, seconds
        time.sleep(2.1)  # past ready_cache_s: the check runs again
        ready = server.http.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready", ready.text
        assert ready.json()["checks"]["session_store"]["code"] == "disk_full", ready.text

        filler.unlink()  # room again: nothing was lost, and turns resume
        r, _ = server.turn({"session_id": sid, "message": "cheaper"})
        assert r.status_code == 200 and r.json()["turn_no"] == 2, r.text
        turns = server.http.get(f"/v1/sessions/{sid}").json()["turns"]
        assert [t["message"] for t in turns] == ["a stapler", "cheaper"]
        time.sleep(2.1)
        assert server.http.get("/ready").status_code == 200
        assert "internal_error" not in server.log()
    assert sessions_in(home) == 1  # the refused first turn made no session


def test_hanging_llm_costs_no_turn_over_5_s_and_turns_say_degraded(shop_home, tmp_path):
    home = copy_home(shop_home, tmp_path / "home")
    hanging = HangingServer()
    url = hanging.url.replace("http://", "http://shop:hunter2pw@")
    env = {
        "AISLE_LLM": "openai",
        "AISLE_LLM_URL": url,
        "AISLE_RANK_MODE": "onepass",  # every recommendation asks the LLM to rank
        "AISLE_LLM_PROBE_TIMEOUT_S": "1.5",  # llm_timeout_s stays at its 120 s default
        "AISLE_LLM_BREAKER_MIN_S": "1",
        "AISLE_LLM_BREAKER_MAX_S": "2",
    }
    try:
        with serving(home, tmp_path, env=env) as server:
            seconds = []
            messages = ["a stapler", "a gel pen", "a shredder", "a binder", "a marker", "a notebook"]
            for message in messages:
                r, took = server.turn({"message": message})
                assert r.status_code == 200 and r.json()["items"], r.text
                seconds.append(took)
                time.sleep(1.2)  # let the back-off run out: the next turn may be the breaker's trial
            assert max(seconds) < TURN_LIMIT_S, seconds
            assert len(hanging.connections) >= 2  # warm-up's try, then at least one trial probe

            ready = server.http.get("/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
            assert ready.json()["checks"]["llm"]["status"] == "degraded"
            metrics = server.http.get("/metrics").text
            degraded = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("aisle_turns_total{") and 'degraded="yes"' in line)
            assert degraded == len(messages), metrics
            assert 'degraded="no"' not in metrics
            for text in (ready.text, metrics, server.log()):
                assert "hunter2pw" not in text
            assert "***@127.0.0.1" in server.log()
    finally:
        hanging.stop()
    print(f"turn seconds with a hanging LLM: {[round(s, 2) for s in seconds]}")
