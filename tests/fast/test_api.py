"""The HTTP API in process (TestClient) over the tiny agent: shapes, auth, and every bad input
answered with a 4xx in the documented shape before any work is done."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.chat.agent import MAX_MESSAGE_CHARS
from agent.chat.store import ConcurrentUpdate
from agent.entrypoints.api import BodyLimit, create_app
from agent.entrypoints.protocol import MAX_BODY_BYTES, lone_surrogate_at, visible

KEY = "k"
ITEM_FIELDS = {"id", "title", "brand", "brand_source", "category", "price", "currency", "availability", "attributes", "url", "image_url", "reason", "grounded", "reason_source", "score"}
OTHER_CATALOG = "amazon-office-2014"  # known to the agent (a built-in), never loaded by these tests


@pytest.fixture
def agent(tiny_agent):
    return tiny_agent()


@pytest.fixture
def turns_run(agent, monkeypatch) -> list[str]:
    """The messages of every turn the agent started (whether or not it was saved)."""
    started: list[str] = []
    real = agent.turn_stream

    def spy(session_id, message, **kwargs):
        started.append(message)
        return real(session_id, message, **kwargs)

    monkeypatch.setattr(agent, "turn_stream", spy)
    return started


def make_client(agent, **kwargs: Any) -> TestClient:
    return TestClient(create_app(agent.settings, agent=agent, api_key=KEY, **kwargs), headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture
def client(agent) -> TestClient:
    return make_client(agent)


def stored(agent) -> tuple[int, int, int]:
    """(sessions, turns, votes) in the agent's session store."""
    with sqlite3.connect(agent.store.path) as db:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("sessions", "turns", "feedback"))  # type: ignore[return-value]


def error_of(response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert all(isinstance(v, str) and v for v in body["error"].values()), body
    assert body["error"]["code"] == code, body
    return body["error"]


def sse_events(response) -> list[str]:
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


# --- auth ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_api_key"), ({"Authorization": "Basic k"}, "missing_api_key"), ({"Authorization": "Bearer nope"}, "invalid_api_key")],
)
def test_v1_needs_the_key(agent, headers, code):
    client = TestClient(create_app(agent.settings, agent=agent, api_key=KEY))
    for response in (client.get("/v1/models", headers=headers), client.post("/v1/turn", json={"message": "a stapler"}, headers=headers)):
        err = error_of(response, 401, code)
        assert err["type"] == "authentication_error" and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/health").status_code == 200  # liveness needs no key
    assert stored(agent) == (0, 0, 0)


# --- shapes --------------------------------------------------------------------------------------------


def test_turn_shape_and_follow_up(client, agent):
    r = client.post("/v1/turn", json={"message": "a quiet stapler"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"session_id", "reply", "items", "action", "turn_no", "catalog", "constraints"}
    assert body["catalog"] == "tiny-shop" and body["action"] == "recommend" and body["turn_no"] == 1 and body["reply"]
    assert body["items"] and all(set(i) == ITEM_FIELDS for i in body["items"])
    assert all("stapler" in i["title"].lower() and i["reason"] for i in body["items"])
    sid = body["session_id"]
    more = client.post("/v1/turn", json={"session_id": sid, "message": "cheaper \u200bplease"})
    assert more.status_code == 200 and more.json()["turn_no"] == 2
    info = client.get(f"/v1/sessions/{sid}").json()
    assert [t["message"] for t in info["turns"]] == ["a quiet stapler", "cheaper please"]  # invisible characters stripped
    assert stored(agent) == (1, 2, 0)


def test_sessions_endpoint(client, agent):
    r = client.post("/v1/sessions", json={"catalog": "tiny-shop"})
    assert r.status_code == 201 and r.json()["catalog"] == "tiny-shop"
    default = client.post("/v1/sessions")
    assert default.status_code == 201 and default.json()["catalog"] == "tiny-shop"
    assert client.get(f"/v1/sessions/{r.json()['session_id']}").json()["turns"] == []
    assert stored(agent) == (2, 0, 0)


def test_chat_completion_shape_and_session_header(client, agent):
    r = client.post(
        "/v1/chat/completions", json={"model": "aisle-tiny-shop", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "black gel pens"}], "temperature": 0.2}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "aisle-tiny-shop"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop" and choice["message"]["content"] == body["aisle"]["reply"]
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert body["aisle"]["items"] and all(set(i) == ITEM_FIELDS for i in body["aisle"]["items"])
    sid = r.headers["x-aisle-session"]
    assert body["aisle"]["session_id"] == sid

    parts = [{"type": "text", "text": "what's the price of the first one?"}, {"type": "image_url", "image_url": {"url": "x"}}]
    again = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]}, headers={"X-Aisle-Session": sid})
    assert again.status_code == 200 and again.headers["x-aisle-session"] == sid and "$" in again.json()["choices"][0]["message"]["content"]
    by_user = client.post("/v1/chat/completions", json={"user": sid, "messages": [{"role": "user", "content": "thanks"}]})
    assert by_user.status_code == 200 and by_user.headers["x-aisle-session"] == sid
    assert stored(agent) == (1, 3, 0)


def test_streamed_chat_completion(client, agent):
    r = client.post("/v1/chat/completions", json={"stream": True, "messages": [{"role": "user", "content": "a label maker"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 3 and all(c["object"] == "chat.completion.chunk" and len({c["id"] for c in chunks}) == 1 for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = chunks[-1]["aisle"]
    assert last["reply"] == text and last["session_id"] == r.headers["x-aisle-session"]
    assert last["items"] and all(set(i) == ITEM_FIELDS for i in last["items"])
    assert all("aisle" not in c for c in chunks[:-1])
    assert stored(agent) == (1, 1, 0)


@pytest.mark.parametrize(("failure", "code"), [(ConcurrentUpdate("session was updated by another request; retry the turn"), "concurrent_update"), (RuntimeError("boom"), "turn_failed")])
def test_stream_failure_is_reported_in_band(client, agent, monkeypatch, failure, code):
    def failing(session_id, message, **kwargs):
        yield "Looking for"
        raise failure

    monkeypatch.setattr(agent, "turn_stream", failing)
    r = client.post("/v1/chat/completions", json={"stream": True, "messages": [{"role": "user", "content": "pens"}]})
    assert r.status_code == 200
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert set(error) == {"error"} and error["error"]["code"] == code and "boom" not in error["error"]["message"]


def test_feedback_values(client, agent):
    first = client.post("/v1/turn", json={"message": "a shredder"}).json()
    sid, ids = first["session_id"], [i["id"] for i in first["items"]]
    for value, stored_value in [("up", 1), (1, 1), ("down", -1), (-1, -1)]:
        r = client.post("/v1/feedback", json={"session_id": sid, "item_id": ids[0], "value": value})
        assert r.status_code == 200 and r.json() == {"session_id": sid, "item_id": ids[0], "value": stored_value}
    info = client.get(f"/v1/sessions/{sid}").json()
    assert info["feedback"] == {ids[0]: -1} and info["state"]["rejected"] == [ids[0]]


def test_models_list(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and all(m["object"] == "model" and m["owned_by"] == "aisle" for m in body["data"])
    assert {m["id"] for m in body["data"]} >= {"aisle", "aisle-tiny-shop", f"aisle-{OTHER_CATALOG}"}


# --- docs ----------------------------------------------------------------------------------------------


def test_docs_are_off_by_default(client):
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        error_of(client.get(path), 404, "not_found")


def test_docs_option_serves_only_the_schema_behind_the_key(agent):
    client = make_client(agent, docs=True)
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]
    assert "/openapi.json" not in schema.json()["paths"]
    error_of(client.get("/openapi.json", headers={"Authorization": ""}), 401, "missing_api_key")
    for path in ("/docs", "/redoc"):  # no Swagger UI or ReDoc: they load scripts from a CDN
        error_of(client.get(path), 404, "not_found")


# --- bad inputs: a 4xx in the documented shape, nothing run or stored ---------------------------------

RAW = {"Content-Type": "application/json"}
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"

# (method, path, request kwargs, status, code); "SID" in a body or header is replaced by a real session
# id, and a callable `content` makes a generator body (sent chunked, with no Content-Length).
BAD_INPUTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # text that is not Unicode: anywhere in a body, before any other check
    ("POST", "/v1/turn", {"content": b'{"message": "stapler \\ud800"}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/turn", {"content": b'{"message": "stapler \xed\xa0\x80"}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/turn", {"content": b'{"session_id": "SID\\udc00", "message": "pens"}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/turn", {"content": b'{"message": "pens", "catalog": "tiny-shop\\ud800"}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/sessions", {"content": b'{"catalog": "\\ud800"}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/chat/completions", {"content": b'{"messages": [{"role": "user", "content": "pens \\ud800"}]}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/chat/completions", {"content": b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/chat/completions", {"content": b'{"user": "SID\\ud800", "messages": [{"role": "user", "content": "pens"}]}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/chat/completions", {"content": b'{"messages": [{"role": "user", "content": "pens"}], "metadata": {"\\ud800": 1}}', "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/feedback", {"content": b'{"session_id": "SID", "item_id": "s1\\ud800", "value": 1}', "headers": RAW}, 400, "invalid_text"),
    # bytes that are not JSON
    ("POST", "/v1/turn", {"content": b"{not json", "headers": RAW}, 400, "invalid_json"),
    ("POST", "/v1/turn", {"content": b'{"message": "\xff"}', "headers": RAW}, 400, "invalid_text"),
    # bodies that are not UTF-8: Python's JSON parser would read UTF-16 and UTF-32
    ("POST", "/v1/turn", {"content": '{"message": "a stapler"}'.encode("utf-16"), "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/turn", {"content": '{"message": "a stapler"}'.encode("utf-16-le"), "headers": RAW}, 400, "invalid_text"),
    ("POST", "/v1/events", {"content": '{"events": [{"user_id": "u", "item_id": "s1"}]}'.encode("utf-32"), "headers": RAW}, 400, "invalid_text"),
    # NaN and Infinity are not JSON, though Python's parser reads them
    ("POST", "/v1/events", {"content": b'{"events": [{"user_id": "u", "item_id": "s1", "event": "rating", "value": NaN}]}', "headers": RAW}, 422, "non_finite_number"),
    ("POST", "/v1/events", {"content": b'{"events": [{"user_id": "u", "item_id": "s1", "timestamp": Infinity}]}', "headers": RAW}, 422, "non_finite_number"),
    ("POST", "/v1/events", {"content": b'{"events": [{"user_id": "u", "item_id": "s1", "value": -Infinity}]}', "headers": RAW}, 422, "non_finite_number"),
    ("POST", "/v1/chat/completions", {"content": b'{"messages": [{"role": "user", "content": "pens"}], "temperature": NaN}', "headers": RAW}, 422, "non_finite_number"),
    # empty messages: blank, or invisible characters only
    ("POST", "/v1/turn", {"json": {"message": "   "}}, 400, "empty_message"),
    ("POST", "/v1/turn", {"json": {"message": ZERO_WIDTH}}, 400, "empty_message"),
    ("POST", "/v1/turn", {"json": {"session_id": "SID", "message": " \u00a0\u3000\u2028\u00ad\u202e\u3164\u2800 "}}, 400, "empty_message"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": ZERO_WIDTH}]}}, 400, "empty_message"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": [{"type": "text", "text": "\ufeff"}]}]}}, 400, "empty_message"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": None}]}}, 400, "empty_message"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "system", "content": "be nice"}]}}, 400, "no_user_message"),
    ("POST", "/v1/chat/completions", {"json": {"messages": []}}, 400, "no_user_message"),
    # sizes
    ("POST", "/v1/turn", {"json": {"message": "x" * (MAX_MESSAGE_CHARS + 1)}}, 413, "message_too_long"),
    ("POST", "/v1/turn", {"content": b"x" * (MAX_BODY_BYTES + 1), "headers": RAW}, 413, "body_too_large"),
    ("POST", "/v1/turn", {"content": lambda: iter([b'{"message": "', b"x" * 1_000_000] * 8 + [b'"}']), "headers": RAW}, 413, "body_too_large"),
    # strict JSON types: no coercion
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": "s1", "value": True}}, 422, "invalid_request"),
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": "s1", "value": 1.0}}, 422, "invalid_request"),
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": "s1", "value": 7}}, 422, "invalid_request"),
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": "s1", "value": "yes"}}, 422, "invalid_request"),
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": 1, "value": 1}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"stream": "yes", "messages": [{"role": "user", "content": "pens"}]}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"stream": 1, "messages": [{"role": "user", "content": "pens"}]}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"user": 5, "messages": [{"role": "user", "content": "pens"}]}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"model": 5, "messages": [{"role": "user", "content": "pens"}]}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}}, 422, "invalid_request"),
    ("POST", "/v1/chat/completions", {"json": {"messages": "pens"}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": {"message": 42}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": {"session_id": 123, "message": "pens"}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": {"message": "pens", "catalog": 5}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": {"session_id": "SID"}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": {"message": "pens", "shop": "x"}}, 422, "invalid_request"),
    ("POST", "/v1/turn", {"json": ["pens"]}, 422, "invalid_request"),
    ("POST", "/v1/sessions", {"json": {"catalog": 5}}, 422, "invalid_request"),
    # catalogs: refused before a session is created
    ("POST", "/v1/turn", {"json": {"message": "pens", "catalog": ""}}, 400, "unknown_catalog"),
    ("POST", "/v1/turn", {"json": {"message": "pens", "catalog": "  "}}, 400, "unknown_catalog"),
    ("POST", "/v1/turn", {"json": {"message": "pens", "catalog": "no-such-catalog"}}, 400, "unknown_catalog"),
    ("POST", "/v1/turn", {"json": {"session_id": "SID", "message": "pens", "catalog": ""}}, 400, "unknown_catalog"),
    ("POST", "/v1/sessions", {"json": {"catalog": ""}}, 400, "unknown_catalog"),
    ("POST", "/v1/sessions", {"json": {"catalog": " tiny-shop"}}, 400, "unknown_catalog"),
    ("POST", "/v1/turn", {"json": {"session_id": "SID", "message": "pens", "catalog": OTHER_CATALOG}}, 409, "catalog_mismatch"),
    ("POST", "/v1/chat/completions", {"json": {"model": f"aisle-{OTHER_CATALOG}", "user": "SID", "messages": [{"role": "user", "content": "pens"}]}}, 409, "catalog_mismatch"),
    ("POST", "/v1/chat/completions", {"json": {"model": "gpt-4", "messages": [{"role": "user", "content": "pens"}]}}, 404, "model_not_found"),
    ("POST", "/v1/chat/completions", {"json": {"model": "aisle-", "messages": [{"role": "user", "content": "pens"}]}}, 404, "model_not_found"),
    # unknown sessions and items
    ("POST", "/v1/turn", {"json": {"session_id": "no-such-session-0000000", "message": "pens"}}, 404, "unknown_session"),
    ("POST", "/v1/turn", {"json": {"session_id": "", "message": "pens"}}, 404, "unknown_session"),
    ("GET", "/v1/sessions/no-such-session-0000000", {}, 404, "unknown_session"),
    ("POST", "/v1/chat/completions", {"json": {"user": "no-such-session-0000000", "messages": [{"role": "user", "content": "pens"}]}}, 404, "unknown_session"),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": "pens"}]}, "headers": {"X-Aisle-Session": "nope"}}, 404, "unknown_session"),
    ("POST", "/v1/feedback", {"json": {"session_id": "no-such-session-0000000", "item_id": "s1", "value": 1}}, 404, "unknown_session"),
    ("POST", "/v1/feedback", {"json": {"session_id": "SID", "item_id": "not-an-item", "value": 1}}, 400, "unknown_item"),
    # paths and methods
    ("GET", "/v1/nothing-here", {}, 404, "not_found"),
    ("GET", "/v1/turn", {}, 405, "method_not_allowed"),
]


def _with_session(value: Any, sid: str) -> Any:
    if isinstance(value, bytes):
        return value.replace(b"SID", sid.encode())
    if isinstance(value, str):
        return value.replace("SID", sid)
    if isinstance(value, dict):
        return {k: _with_session(v, sid) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_session(v, sid) for v in value]
    return value


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_INPUTS, ids=[f"{s}-{c}-{i}" for i, (_, _, _, s, c) in enumerate(BAD_INPUTS)])
def test_bad_input_gets_a_4xx_before_any_work(client, agent, turns_run, method, path, kwargs, status, code):
    sid = agent.new_session()
    kwargs = {k: v() if callable(v) else _with_session(v, sid) for k, v in kwargs.items()}  # a callable: a fresh chunked body
    response = client.request(method, path, **kwargs)
    error_of(response, status, code)
    assert stored(agent) == (1, 0, 0) and turns_run == []
    if status == 405:
        assert response.headers["allow"] == "POST"


def test_chunked_body_has_no_content_length(agent):
    """The generator body above really arrives without Content-Length (so only counting stops it)."""
    seen: dict[str, Any] = {}

    async def app(scope, receive, send):
        seen["headers"] = dict(scope["headers"])
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    r = TestClient(BodyLimit(app)).post("/", content=iter([b"ab", b"cd"]))
    assert r.status_code == 204 and b"content-length" not in seen["headers"] and seen["body"] == b"abcd"


def test_body_limit_counts_chunks_as_they_arrive():
    """Chunks are counted one by one: the app is never called, and reading stops at the limit."""
    called = []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        called.append(scope)

    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(100)]
    sent: list[dict[str, Any]] = []

    async def receive():
        return chunks.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/turn", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, limit=10_000)(scope, receive, send))
    assert called == [] and len(chunks) == 89  # stopped on the 11th chunk
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"


# --- the text helpers ------------------------------------------------------------------------------------


def test_visible_drops_invisible_characters_only():
    assert visible("quiet\u200b stapler\ufeff") == "quiet stapler"
    assert visible("a\u00a0b\u3000c") == "a b c"
    assert visible("line one\nline\ttwo") == "line one\nline\ttwo"
    assert visible("caf\u00e9 \u00fcber \u4e2d\u6587 \U0001f600") == "caf\u00e9 \u00fcber \u4e2d\u6587 \U0001f600"
    assert visible(ZERO_WIDTH + "\u3164\u2800").strip() == ""


def test_lone_surrogate_at_names_the_field():
    assert lone_surrogate_at({"messages": [{"role": "user", "content": "ok"}, {"content": "x\ud800"}]}) == "messages.1.content"
    assert lone_surrogate_at({"a": {"\udc00": 1}}) == "a"
    assert lone_surrogate_at("\ud800") == "body"
    assert lone_surrogate_at({"message": "\U0001f600 fine", "n": 1, "x": None}) is None
