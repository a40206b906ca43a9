"""A real `aisle serve` on a fresh home whose catalog has a history and an index but no trained
model (what every fresh install had):
- with start-up training off, "more like the first one" answers within seconds while another
  session's turn on the same catalog runs beside it, and no model file is written: nothing trains
  inside a request;
- with it on (the default), /ready says what trains, turns answer meanwhile, and the models are
  loaded once the background process has written them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.chat.turn import PENDING_NOTES
from agent.settings import REPO_ROOT, Settings
from retrieval.registry import Registry
from tests.conftest import free_port
from tests.fast.conftest import own_models, write_shop

CATALOG = "shop"
TURN_BOUND_S = 30.0  # generous for a busy CI box; training inside a turn took minutes
MODEL_SUFFIXES = (".pt", ".lgb", ".json", ".tmp")
KEY = "no-stall-key"  # /ready shows its checks only to a caller with the key
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A fresh home: the shop registered with its history and indexed; no model trained."""
    from retrieval.search import open_searcher

    tmp = tmp_path_factory.mktemp("serve-no-stall")
    settings = Settings(home=own_models(tmp / "home"), chroma_url=None)
    Registry(settings).add(CATALOG, write_shop(tmp / "feed", users=40), progress=False)
    open_searcher(settings, CATALOG, progress=False)
    return settings.home


def model_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir() if p.name.endswith(MODEL_SUFFIXES))


def serve(home: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {
        **os.environ,
        "AISLE_HOME": str(home),
        "AISLE_CATALOG": CATALOG,
        "AISLE_RATE_KEY_PER_MIN": "0",
        "AISLE_API_KEY": KEY,
        "PYTHONPATH": str(REPO_ROOT),
        **env,
    }
    log = (home / f"server-{port}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from agent.entrypoints.cli import main; main()", "serve", "--port", str(port)], cwd=REPO_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT
    )
    SERVERS[url := f"http://127.0.0.1:{port}"] = proc
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"aisle serve exited: {(home / f'server-{port}.log').read_text()[-2000:]}"
            assert time.time() < deadline, "aisle serve did not answer /ready within 180 s"
            try:
                if httpx.get(f"{url}/ready", headers=AUTH, timeout=5).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


SERVERS: dict[str, subprocess.Popen] = {}


def timed_turn(client: httpx.Client, message: str, session: str | None = None) -> tuple[dict, float]:
    body = {"message": message, "catalog": CATALOG, **({"session_id": session} if session else {})}
    t = time.perf_counter()
    r = client.post("/v1/turn", json=body)
    elapsed = time.perf_counter() - t
    assert r.status_code == 200, r.text
    return r.json(), elapsed


def test_a_history_turn_never_trains_and_never_blocks_another_session(home):
    before = model_files(home)
    for url in serve(home, AISLE_TRAIN_MISSING="false"):
        with httpx.Client(base_url=url, timeout=300, headers=AUTH) as client:
            first, _ = timed_turn(client, "a heavy duty stapler")
            assert first["items"]
            other, _ = timed_turn(client, "a stapler")
            results: dict[str, tuple[dict, float]] = {}
            start = threading.Barrier(2)

            def run(name: str, message: str, session: str) -> None:
                start.wait()
                results[name] = timed_turn(client, message, session)

            threads = [
                threading.Thread(target=run, args=("more", "more like the first one", first["session_id"])),
                threading.Thread(target=run, args=("cheaper", "cheaper", other["session_id"])),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TURN_BOUND_S * 4)
            more, more_s = results["more"]
            cheaper, cheaper_s = results["cheaper"]
            assert more["action"] == "recommend" and more["items"]
            assert cheaper["items"] or "cheaper" in cheaper["reply"].casefold()
            assert more_s < TURN_BOUND_S and cheaper_s < TURN_BOUND_S, (more_s, cheaper_s)
            print(f"'more like the first one' {more_s:.2f} s beside another session's 'cheaper' {cheaper_s:.2f} s")
            assert client.get(f"/v1/sessions/{first['session_id']}").json()["turns"][-1]["message"] == "more like the first one"  # the turn was saved

            ready = client.get("/ready").json()
            assert "models" in ready["checks"] and CATALOG in ready["checks"]["models"]["detail"]
            assert "training" not in ready["checks"]["models"]["detail"]
    assert model_files(home) == before == [], "a request trained a model"


def test_missing_models_train_in_the_background_and_load_when_done(home):
    for url in serve(home):
        with httpx.Client(base_url=url, timeout=300, headers=AUTH) as client:
            models = client.get("/ready").json()["checks"]["models"]
            assert "training sasrec, textseq, ranker" in models["detail"] and models["status"] == "degraded", models
            first, _ = timed_turn(client, "a heavy duty stapler")
            more, more_s = timed_turn(client, "more like the first one", first["session_id"])
            assert more["items"] and more_s < TURN_BOUND_S
            if "training" in client.get("/ready").json()["checks"]["models"]["detail"].split(" | ")[0]:
                assert PENDING_NOTES["training"] in more["reply"] or PENDING_NOTES["loading"] in more["reply"]

            deadline = time.time() + 300
            while (models := client.get("/ready").json()["checks"]["models"])["status"] != "ok":
                assert "failed" not in models["detail"], models
                assert time.time() < deadline, f"background training did not finish in 300 s: {models}"
                time.sleep(2)
            assert {"sasrec-shop.serve.pt", "textseq-shop.serve.pt", "ranker-shop.lgb"} <= set(model_files(home))
            assert "done" in models["detail"] and "ranking stage ready" in models["detail"]
            again, _ = timed_turn(client, "more like the second one", first["session_id"])
            assert again["items"] and not any(note in again["reply"] for note in PENDING_NOTES.values())


def training_children(server_pid: int) -> list[int]:
    """Pids of the `aisle train models` processes whose parent is `server_pid` (read from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(server_pid) and b"train" in cmdline and b"models" in cmdline:
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the child's parent-death signal is Linux only")
def test_a_killed_server_leaves_no_training_behind(tmp_path):
    """kill -9 of the server (no atexit, no shutdown hook) still stops its background training."""
    from retrieval.search import open_searcher

    settings = Settings(home=own_models(tmp_path / "home"), chroma_url=None)
    Registry(settings).add(CATALOG, write_shop(tmp_path / "feed", users=40), progress=False)
    open_searcher(settings, CATALOG, progress=False)
    for url in serve(settings.home):
        proc = SERVERS[url]
        deadline = time.time() + 60
        while not (children := training_children(proc.pid)):
            assert time.time() < deadline, "the server started no background training"
            time.sleep(0.5)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.time() + 5  # the parent-death signal stops it at once; left alone it would train ~30 s more
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in children):
            assert time.time() < deadline, f"training {children} outlived its killed server"
            time.sleep(0.5)
