"""Serving many shoppers: no request builds an index, limits answer 429 with Retry-After, /ready
tells the truth, /metrics counts turns."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient

from agent.entrypoints.api import create_app
from retrieval.registry import FeedSpec, Registry

KEY = "k"


def client_for(agent, **settings) -> TestClient:
    agent.settings = agent.settings.model_copy(update=settings)
    return TestClient(create_app(agent.settings, agent=agent, api_key=KEY), headers={"Authorization": f"Bearer {KEY}"})


def test_an_unindexed_catalog_answers_at_once_and_never_blocks_other_turns(tiny_agent, fast_settings, tmp_path):
    feed = tmp_path / "unindexed.jsonl"
    feed.write_text("\n".join(json.dumps({"id": str(n), "title": f"Desk lamp model {n}", "description": "An LED desk lamp. " * 20}) for n in range(300)))
    name = f"unindexed-{tmp_path.name[-8:].lower()}"
    Registry(fast_settings).add(name, FeedSpec(str(feed)), progress=False)
    agent = tiny_agent()
    client = client_for(agent)
    other: dict = {}

    def other_shopper() -> None:
        t = time.perf_counter()
        other["response"] = client.post("/v1/turn", json={"message": "a quiet stapler"})
        other["seconds"] = time.perf_counter() - t

    thread = threading.Thread(target=other_shopper)
    t = time.perf_counter()
    thread.start()
    r = client.post("/v1/turn", json={"message": "a desk lamp", "catalog": name})
    elapsed = time.perf_counter() - t
    thread.join(30)
    assert r.status_code == 409 and r.json()["error"]["code"] == "catalog_not_indexed", r.text
    assert f"aisle index --catalog {name}" in r.json()["error"]["message"]
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert other["response"].status_code == 200 and other["response"].json()["items"]
    assert agent.store.path.exists()
    from retrieval.embed import Embedder
    from retrieval.index import CatalogIndex, make_chroma_client

    assert CatalogIndex(make_chroma_client(agent.settings), name, Embedder.from_settings(agent.settings)).count() == 0  # nothing was built


def test_session_and_key_limits_answer_429_with_retry_after(tiny_agent):
    client = client_for(tiny_agent(), rate_session_per_min=2, rate_key_per_min=0)
    first = client.post("/v1/turn", json={"message": "a quiet stapler"}).json()
    sid = first["session_id"]
    assert client.post("/v1/turn", json={"session_id": sid, "message": "cheaper"}).status_code == 200
    r = client.post("/v1/turn", json={"session_id": sid, "message": "why the first?"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    assert client.post("/v1/turn", json={"message": "a gel pen"}).status_code == 200  # another session is not limited

    client = client_for(tiny_agent(), rate_session_per_min=0, rate_key_per_min=3)
    codes = [client.get("/v1/models").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/health").status_code == 200  # liveness is never limited
    assert 'aisle_rate_limited_total{scope="key"} 1.0' in client.get("/metrics").text  # /metrics itself is not limited


def test_ready_and_metrics(tiny_agent):
    agent = tiny_agent()
    client = client_for(agent)
    r = client.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] in ("ready", "degraded") and body["checks"]["session_store"]["status"] == "ok" and body["checks"]["index"]["status"] == "ok"
    client.post("/v1/turn", json={"message": "a quiet stapler"})
    text = client.get("/metrics").text
    assert 'aisle_turns_total{action="recommend",catalog="tiny-shop"' in text
    assert "aisle_turn_seconds_bucket" in text and "aisle_llm_queue_depth" in text
    assert TestClient(create_app(agent.settings, agent=agent, api_key=KEY)).get("/metrics").status_code == 401


def test_ready_says_503_and_why_when_the_default_catalog_has_no_index(tiny_agent, fast_settings, tmp_path):
    feed = tmp_path / "cold.jsonl"
    feed.write_text(json.dumps({"id": "1", "title": "Desk lamp"}))
    name = f"noindex-{tmp_path.name[-8:].lower()}"
    Registry(fast_settings).add(name, FeedSpec(str(feed)), progress=False)
    agent = tiny_agent()
    agent.default_catalog = name
    r = client_for(agent).get("/ready")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"]["code"] == "not_ready" and "not indexed" in body["error"]["message"]
    assert body["checks"]["index"]["status"] == "fail"
