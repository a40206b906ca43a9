"""/ready tells the truth and gives nothing away, secrets are masked, wrong keys are slowed per
address, refusals leave no session behind, and turns answered without the LLM are counted as
degraded. In process (TestClient) over the tiny agent; the faults of real files and processes are
in tests/agent/test_faults.py."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from fastapi.testclient import TestClient

from agent.chat.agent import Agent
from agent.chat.store import SessionStore
from agent.entrypoints.api import create_app
from agent.entrypoints.ratelimit import AuthBackoff
from agent.errors import RateLimited
from agent.redact import redact, redact_logs
from retrieval.registry import FeedSpec, Registry

KEY = "the-server-key-123"
BEARER = {"Authorization": f"Bearer {KEY}"}


def app_for(agent, api_key: str | None = KEY, **settings):
    agent.settings = agent.settings.model_copy(update=settings)
    return create_app(agent.settings, agent=agent, api_key=api_key)


def sessions_in(agent) -> int:
    with sqlite3.connect(agent.store.path) as db:
        return db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]


# --- /ready -----------------------------------------------------------------------------------------


def test_ready_needs_the_key_when_the_server_has_one(tiny_agent):
    app = app_for(tiny_agent())
    anonymous = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = anonymous.get("/ready", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
        assert "checks" not in r.text
    agent = tiny_agent()
    app = app_for(agent)
    agent.parts(agent.default_catalog)
    agent.wait_for_stage(agent.default_catalog)  # the ranking stage loads in the background; /ready says degraded until then
    r = TestClient(app, headers=BEARER).get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert set(r.json()["checks"]) == {"session_store", "index", "llm", "llm_queue", "models"}


def test_open_server_ready_is_a_bare_status(tiny_agent, fast_settings, tmp_path):
    agent = tiny_agent()
    agent.wait_for_stage(agent.default_catalog)
    client = TestClient(app_for(agent, api_key=None))
    assert client.get("/ready").json() == {"status": "ready"}
    # not ready: still nothing about the insides (no paths, catalogs or messages)
    feed = tmp_path / "cold.jsonl"
    feed.write_text(json.dumps({"id": "1", "title": "Desk lamp"}))
    name = f"bare-{tmp_path.name[-8:].lower()}"
    Registry(fast_settings).add(name, FeedSpec(str(feed)), progress=False)
    agent.default_catalog = name
    client = TestClient(app_for(agent, api_key=None))
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["status"] == "not_ready" and r.json()["error"]["code"] == "not_ready"
    assert name not in r.text and str(tmp_path) not in r.text and "checks" not in r.json()


def test_ready_checks_once_per_period_and_is_rate_limited(tiny_agent):
    agent = tiny_agent()
    pings = []
    real_ping = agent.store.ping
    agent.store.ping = lambda: (pings.append(1), real_ping())[1]  # type: ignore[method-assign]
    app = app_for(agent, ready_cache_s=600, rate_ready_per_min=30)
    client = TestClient(app, headers=BEARER)
    codes = [client.get("/ready").status_code for _ in range(31)]
    assert codes == [200] * 30 + [429]
    assert len(pings) == 1 and app.state.readiness.checks_run == 1  # one SQLite write for 30 probes
    other = TestClient(app, headers=BEARER, client=("10.0.0.2", 5000))
    assert other.get("/ready").status_code == 200  # the limit is per address
    assert 'aisle_rate_limited_total{scope="ready"} 1.0' in client.get("/metrics").text


def test_ready_reports_a_session_store_that_cannot_write(tiny_agent, tmp_path):
    agent = tiny_agent()
    agent.store = SessionStore(tmp_path / "ro" / "sessions.sqlite")
    agent.store.close()
    (tmp_path / "ro" / "sessions.sqlite").write_bytes(b"not a database " * 300)
    r = TestClient(app_for(agent, ready_cache_s=0), headers=BEARER).get("/ready")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    check = r.json()["checks"]["session_store"]
    assert check["status"] == "fail" and check["code"] == "session_store_unavailable" and "move it aside" in check["detail"]


# --- secrets --------------------------------------------------------------------------------------------


def test_redact_masks_url_passwords_query_secrets_and_known_keys():
    text = "at http://user:s3cr3t@llm.local:8000/v1, postgresql://aisle:pw@db/x?sslmode=require, http://h/?api_key=abcd1234&x=1, key the-server-key-123"
    out = redact(text, ["the-server-key-123", "EMPTY"])
    assert "s3cr3t" not in out and ":pw@" not in out and "abcd1234" not in out and KEY not in out
    assert "http://***@llm.local:8000/v1" in out and "postgresql://***@db/x?sslmode=require" in out and "api_key=***&x=1" in out
    assert redact("EMPTY and abc", ["EMPTY", "abc"]) == "EMPTY and abc"  # placeholders and short strings are not secrets


def test_llm_url_password_never_reaches_ready_errors_or_logs(fast_settings, shop_searcher, tmp_path, caplog):
    from tests.conftest import free_port

    url = f"http://aisle:hunter2pw@127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    settings = fast_settings.model_copy(update={"llm": "openai", "llm_url": url, "llm_api_key": "sk-llm-secret-42", "llm_served_model": "m", "llm_breaker_min_s": 60})
    agent = Agent(settings, store=SessionStore(tmp_path / "s.sqlite"), searchers={"tiny-shop": shop_searcher}, default_catalog="tiny-shop", rank_mode="onepass")
    factory = logging.getLogRecordFactory()
    try:
        redact_logs([KEY, settings.llm_api_key])
        with caplog.at_level(logging.INFO):
            client = TestClient(create_app(settings, agent=agent, api_key=KEY), headers=BEARER)
            turn = client.post("/v1/turn", json={"message": "a quiet stapler"})
            ready = client.get("/ready")
            logging.getLogger("aisle.test").error("calling %s with key %s", url, settings.llm_api_key)
    finally:
        logging.setLogRecordFactory(factory)
    assert turn.status_code == 200 and turn.json()["items"]  # answered without the LLM
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    llm = ready.json()["checks"]["llm"]
    assert llm["status"] == "degraded" and "http://***@127.0.0.1" in llm["detail"], llm
    logs = caplog.text
    assert "http://***@127.0.0.1" in logs
    for secret in ("hunter2pw", "sk-llm-secret-42", KEY):
        assert secret not in ready.text and secret not in turn.text and secret not in logs, secret


# --- wrong keys -----------------------------------------------------------------------------------------


def test_wrong_keys_are_slowed_per_address_and_right_keys_elsewhere_are_not(tiny_agent):
    app = app_for(tiny_agent(), auth_free_failures=3, auth_backoff_max_s=60)
    guesser = TestClient(app, client=("203.0.113.7", 4000))
    shop = TestClient(app, headers=BEARER, client=("198.51.100.2", 4000))
    codes = [guesser.get("/v1/models", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(4)]
    assert codes == [401, 401, 401, 401]  # the 4th wrong key starts a wait
    r = guesser.get("/v1/models", headers={"Authorization": "Bearer guess-5"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "auth_backoff" and int(r.headers["Retry-After"]) >= 1
    assert guesser.get("/v1/models", headers=BEARER).status_code == 429  # even the right key waits here
    assert guesser.get("/ready", headers={"Authorization": "Bearer guess-6"}).status_code == 429
    assert shop.get("/v1/models").status_code == 200 and shop.post("/v1/turn", json={"message": "a stapler"}).status_code == 200
    assert guesser.get("/health").status_code == 200
    assert 'aisle_rate_limited_total{scope="auth"} 3.0' in shop.get("/metrics").text


def test_auth_backoff_doubles_and_a_right_key_clears_it():
    now = [0.0]
    backoff = AuthBackoff(free=2, max_s=8, clock=lambda: now[0])
    waits = []
    for _ in range(7):
        backoff.check("a")
        backoff.failed("a")
        try:
            backoff.check("a")
            waits.append(0)
        except RateLimited as exc:
            waits.append(exc.retry_after_s)
            now[0] += exc.retry_after_s  # wait it out
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    backoff.check("b")  # another address never waits
    backoff.succeeded("a")
    backoff.failed("a")
    backoff.check("a")  # the count started again


# --- refusals leave nothing behind ------------------------------------------------------------------------


def test_a_refused_first_turn_creates_no_session(tiny_agent, fast_settings, tmp_path):
    feed = tmp_path / "unindexed.jsonl"
    feed.write_text(json.dumps({"id": "1", "title": "Desk lamp"}))
    name = f"noidx-{tmp_path.name[-8:].lower()}"
    Registry(fast_settings).add(name, FeedSpec(str(feed)), progress=False)
    agent = tiny_agent()
    client = TestClient(app_for(agent), headers=BEARER)
    for response in (
        client.post("/v1/turn", json={"message": "a desk lamp", "catalog": name}),
        client.post("/v1/chat/completions", json={"model": f"aisle-{name}", "messages": [{"role": "user", "content": "a desk lamp"}]}),
        client.post("/v1/chat/completions", json={"model": f"aisle-{name}", "stream": True, "messages": [{"role": "user", "content": "a desk lamp"}]}),
    ):
        assert response.status_code == 409 and response.json()["error"]["code"] == "catalog_not_indexed", response.text
    assert sessions_in(agent) == 0


def test_a_first_turn_that_fails_midway_leaves_no_session(tiny_agent, monkeypatch):
    from agent.errors import VectorStoreUnavailable

    agent = tiny_agent()
    client = TestClient(app_for(agent), headers=BEARER)

    def broken(*args, **kwargs):
        raise VectorStoreUnavailable("the index of tiny-shop cannot be read")

    monkeypatch.setattr(agent, "turn", broken)
    r = client.post("/v1/turn", json={"message": "a stapler"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "vector_store_unavailable"
    assert sessions_in(agent) == 0


# --- degraded turns in /metrics ---------------------------------------------------------------------------


def test_turns_answered_without_the_llm_are_labelled_degraded(tiny_agent):
    agent = tiny_agent(rank_mode="onepass")
    client = TestClient(app_for(agent, turn_budget_s=0.2), headers=BEARER)
    with agent.scheduler.slot("another-shopper"):  # the model is busy for this turn's whole budget
        busy = client.post("/v1/turn", json={"message": "a quiet stapler"})
    assert busy.status_code == 200 and busy.json()["items"]
    free = client.post("/v1/turn", json={"message": "a gel pen"})
    assert free.status_code == 200
    text = client.get("/metrics").text
    assert 'aisle_turns_total{action="recommend",catalog="tiny-shop",degraded="yes",reason="budget"} 1.0' in text, text
    assert 'aisle_turns_total{action="recommend",catalog="tiny-shop",degraded="no",reason=""} 1.0' in text
    assert 'aisle_llm_fallbacks_total{reason="budget"} 1.0' in text
    assert 'aisle_llm_calls_total{outcome="budget_exceeded"} 1.0' in text


@pytest.mark.parametrize(("error", "reason"), [("open", "breaker_open"), ("timeout", "llm_timeout")])
def test_engine_failures_are_labelled_by_reason(tiny_agent, scripted, error, reason):
    from agent.engines.base import EngineTimeout
    from agent.engines.breaker import CircuitOpen

    exc = CircuitOpen("the LLM failed; calls fail fast") if error == "open" else EngineTimeout("no answer within 2 s")
    agent = tiny_agent(engine=scripted(raise_error=exc), rank_mode="onepass")
    client = TestClient(app_for(agent), headers=BEARER)
    assert client.post("/v1/turn", json={"message": "a quiet stapler"}).status_code == 200
    assert f'degraded="yes",reason="{reason}"' in client.get("/metrics").text
