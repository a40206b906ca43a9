"""The HTTP API over real HTTP: uvicorn on 127.0.0.1, the real agent, the `openai` client and
LangChain's ChatOpenAI as clients."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from agent.chat.agent import MAX_MESSAGE_CHARS, Agent
from agent.chat.store import SessionStore
from agent.entrypoints.api import create_app

API_KEY = "test-key-123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def agent(settings, transformers_engine, office_searcher, shopdial_searcher, tmp_path_factory):
    store = SessionStore(tmp_path_factory.mktemp("api") / "sessions.sqlite")
    a = Agent(settings, store=store, engine=transformers_engine, searchers={"amazon-office-2014": office_searcher, "mg-shopdial": shopdial_searcher})
    a.warm_up("mg-shopdial")
    a.wait_for_stage("amazon-office-2014")  # the ranking stage loads in the background; these turns use it
    yield a
    store.close()


@pytest.fixture(scope="module")
def base_url(settings, agent):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, agent=agent, api_key=API_KEY), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=300) as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"]), body
    return body["error"]


def test_turn_session_and_feedback(http):
    created = http.post("/v1/sessions", json={"catalog": "mg-shopdial"})
    assert created.status_code == 201
    sid = created.json()["session_id"]
    r = http.post("/v1/turn", json={"session_id": sid, "message": "a book under $20"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["session_id"] == sid and body["reply"] and body["items"]
    for item in body["items"]:
        assert set(item) >= {"id", "title", "brand", "category", "reason", "grounded", "score"}
        assert item["price"] <= 20 and item["reason"]
    more = http.post("/v1/turn", json={"session_id": sid, "message": "show me more"}).json()
    assert more["constraints"]["price_max"] == 20

    fb = http.post("/v1/feedback", json={"session_id": sid, "item_id": body["items"][0]["id"], "value": "down"})
    assert fb.status_code == 200 and fb.json()["value"] == -1
    info = http.get(f"/v1/sessions/{sid}").json()
    assert [t["message"] for t in info["turns"]] == ["a book under $20", "show me more"]
    assert info["feedback"] == {body["items"][0]["id"]: -1} and info["state"]["rejected"] == [body["items"][0]["id"]]


def test_turn_without_session_starts_one(http):
    r = http.post("/v1/turn", json={"message": "hello", "catalog": "mg-shopdial"})
    assert r.status_code == 200 and r.json()["action"] == "small_talk"
    sid = r.json()["session_id"]
    assert http.get(f"/v1/sessions/{sid}").json()["catalog"] == "mg-shopdial"


def test_bad_inputs_get_clear_4xx(http, base_url):
    sid = http.post("/v1/sessions", json={"catalog": "mg-shopdial"}).json()["session_id"]
    cases = [
        (http.post("/v1/turn", content=b"{not json", headers={"Content-Type": "application/json"}), 400, "invalid_json"),
        (http.post("/v1/turn", json={"session_id": sid, "message": "   "}), 400, "empty_message"),
        (http.post("/v1/turn", json={"session_id": sid, "message": "x" * (MAX_MESSAGE_CHARS + 1)}), 413, "message_too_long"),
        (http.post("/v1/turn", json={"session_id": "no-such-session-0000000", "message": "pens"}), 404, "unknown_session"),
        (http.get("/v1/sessions/no-such-session-0000000"), 404, "unknown_session"),
        (http.post("/v1/turn", json={"session_id": sid}), 422, "invalid_request"),
        (http.post("/v1/turn", json={"session_id": sid, "message": 42}), 422, "invalid_request"),
        (http.post("/v1/turn", json={"session_id": sid, "message": "pens", "catalog": "amazon-office-2014"}), 409, "catalog_mismatch"),
        (http.post("/v1/turn", json={"message": "pens", "catalog": "no-such-catalog"}), 400, "unknown_catalog"),
        (http.post("/v1/turn", json={"message": "pens", "catalog": ""}), 400, "unknown_catalog"),
        (http.post("/v1/turn", content=b'{"message": "stapler \\ud800"}', headers={"Content-Type": "application/json"}), 400, "invalid_text"),
        (http.post("/v1/turn", json={"session_id": sid, "message": "\u200b\u2060\ufeff"}), 400, "empty_message"),
        (http.post("/v1/feedback", json={"session_id": sid, "item_id": "Books:1", "value": 7}), 422, "invalid_request"),
        (http.post("/v1/feedback", json={"session_id": sid, "item_id": "Books:1", "value": True}), 422, "invalid_request"),
        (http.post("/v1/feedback", json={"session_id": sid, "item_id": "not-an-item", "value": 1}), 400, "unknown_item"),
        (http.post("/v1/chat/completions", json={"stream": "yes", "messages": [{"role": "user", "content": "pens"}]}), 422, "invalid_request"),
        (http.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "pens"}]}), 404, "model_not_found"),
        (http.post("/v1/chat/completions", json={"model": "aisle", "messages": [{"role": "system", "content": "be nice"}]}), 400, "no_user_message"),
        (http.post("/v1/turn", content=b"x" * 300_000, headers={"Content-Type": "application/json"}), 413, "body_too_large"),
        # chunked (no Content-Length): counted as it arrives over a real socket
        (http.post("/v1/turn", content=(b"x" * 65536 for _ in range(128)), headers={"Content-Type": "application/json"}), 413, "body_too_large"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_of(response)["code"]) == (status, code), response.text
    assert http.get(f"/v1/sessions/{sid}").json()["turns"] == []  # no bad request ran a turn
    no_key = httpx.post(f"{base_url}/v1/turn", json={"message": "pens"})
    wrong_key = httpx.post(f"{base_url}/v1/turn", json={"message": "pens"}, headers={"Authorization": "Bearer nope"})
    assert no_key.status_code == 401 and error_of(no_key)["code"] == "missing_api_key"
    assert wrong_key.status_code == 401 and error_of(wrong_key)["code"] == "invalid_api_key"
    assert no_key.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{base_url}/health").status_code == 200  # liveness needs no key


def test_openai_client_chat_completions(base_url, http):
    from openai import AuthenticationError, NotFoundError, OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    assert {m.id for m in client.models.list()} >= {"aisle", "aisle-mg-shopdial", "aisle-amazon-office-2014"}

    sid = http.post("/v1/sessions", json={"catalog": "mg-shopdial"}).json()["session_id"]
    first = client.chat.completions.create(model="aisle-mg-shopdial", user=sid, messages=[{"role": "system", "content": "You are a shop bot."}, {"role": "user", "content": "a USB microphone"}])
    assert first.object == "chat.completion" and first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop" and "Microphone" in first.choices[0].message.content
    assert first.model_extra["aisle"]["session_id"] == sid and first.model_extra["aisle"]["items"]

    # Continue the conversation with the session in a header; only the last user message counts.
    raw = client.chat.completions.with_raw_response.create(
        model="aisle",
        messages=[
            {"role": "user", "content": "a USB microphone"},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": [{"type": "text", "text": "what's the price of the first one?"}]},
        ],
        extra_headers={"X-Aisle-Session": sid},
    )
    second = raw.parse()
    assert raw.headers["x-aisle-session"] == sid and "$" in second.choices[0].message.content

    stream = client.chat.completions.create(model="aisle", user=sid, stream=True, messages=[{"role": "user", "content": "show me more"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason == "stop"
    assert text.startswith("Looking for") and chunks[-1].model_extra["aisle"]["reply"] == text

    # A new conversation when no session is named: the id comes back in the header.
    fresh = client.chat.completions.with_raw_response.create(model="aisle-mg-shopdial", messages=[{"role": "user", "content": "hi"}])
    new_sid = fresh.headers["x-aisle-session"]
    assert new_sid != sid and http.get(f"/v1/sessions/{new_sid}").status_code == 200

    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="aisle", user="no-such-session-0000000", messages=[{"role": "user", "content": "pens"}])


def test_sse_wire_format(http):
    sid = http.post("/v1/sessions", json={"catalog": "mg-shopdial"}).json()["session_id"]
    with http.stream("POST", "/v1/chat/completions", json={"model": "aisle", "user": sid, "stream": True, "messages": [{"role": "user", "content": "badminton shuttlecocks"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_langchain_chat_model_against_the_server(base_url, http):
    from agent.entrypoints.langchain_tool import aisle_chat_model

    sid = http.post("/v1/sessions", json={"catalog": "mg-shopdial"}).json()["session_id"]
    llm = aisle_chat_model(f"{base_url}/v1", session_id=sid, api_key=API_KEY)
    answer = llm.invoke("running shoes under $70")
    assert "Running Shoe" in answer.content
    follow = llm.invoke("what's the price of the second one?")
    assert "$" in follow.content
    assert [t["message"] for t in http.get(f"/v1/sessions/{sid}").json()["turns"]] == ["running shoes under $70", "what's the price of the second one?"]
