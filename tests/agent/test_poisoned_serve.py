"""The poisoned-catalog suite against a real `aisle serve` process: the catalog added with
`aisle catalog add`, the server started with `AISLE_LLM=openai` pointing at a compromised
OpenAI-compatible server on 127.0.0.1 (reasons, intro and extraction all on), driven over HTTP.
No text field of any reply may carry a planted payload."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from agent.settings import REPO_ROOT
from tests.conftest import free_port
from tests.fast.conftest import share_models
from tests.poisoned import MESSAGES, POISONED_ROWS, HostileLLM, reply_payloads, write_feed

API_KEY = "poison-test-key"
CLI = [sys.executable, "-c", "from agent.entrypoints.cli import main; main()"]


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[tuple[str, HostileLLM]]:
    hostile = HostileLLM()
    home = share_models(tmp_path_factory.mktemp("serve-home"))
    feed = write_feed(tmp_path_factory.mktemp("feed") / "poisoned.jsonl")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "AISLE_HOME": str(home),
        "AISLE_DATA_DIR": str(settings.data_dir),
        "AISLE_CHROMA_URL": "",
        "AISLE_LLM": "openai",
        "AISLE_LLM_URL": hostile.url,
        "AISLE_LLM_SERVED_MODEL": "hostile",
        "AISLE_LLM_REASONS": "true",
        "AISLE_LLM_INTRO": "true",
        "AISLE_LLM_EXTRACT": "true",
        "AISLE_CATALOG": "poisoned",
    }
    added = subprocess.run([*CLI, "catalog", "add", "poisoned", "--items", str(feed)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stderr[-2000:]
    assert "left out" in added.stderr and "not a plain http(s) URL" in added.stderr  # the import says what it dropped
    port = free_port()
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--api-key", API_KEY], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (home / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "aisle serve did not start"
            time.sleep(0.5)
        yield url, hostile
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        hostile.stop()


def test_no_payload_reaches_a_reply_of_a_real_server(server):
    url, hostile = server
    headers = {"Authorization": f"Bearer {API_KEY}"}
    bodies = []
    shown: set[str] = set()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        sid = None
        for message in MESSAGES:
            r = http.post("/v1/turn", json={"message": message, **({"session_id": sid} if sid else {})})
            assert r.status_code == 200, r.text
            sid = r.json()["session_id"]
            bodies.append(r.json())
            shown.update(i["id"] for i in r.json()["items"])
        r = http.post("/v1/chat/completions", json={"model": "aisle", "messages": [{"role": "user", "content": "a stapler"}]})
        assert r.status_code == 200, r.text
        bodies.append(r.json())
        stream = http.post("/v1/chat/completions", json={"model": "aisle", "stream": True, "messages": [{"role": "user", "content": "why the first?"}], "user": r.json()["aisle"]["session_id"]})
        assert stream.status_code == 200
        bodies.append({"stream": stream.text})
    assert hostile.answers > 0
    assert len(shown & {row["id"] for row in POISONED_ROWS}) >= 3, shown
    leaks = [leak for body in bodies for leak in reply_payloads(body)]
    assert leaks == [], leaks[:5]
