"""OpenAIEngine failure paths against real sockets (quick; no model, no mocks).

A tiny stdlib HTTP server plays the OpenAI-compatible server: it answers like vLLM does, or
sleeps, or drops the connection, or is shut down between two calls. The happy paths against a
real `vllm serve` live in test_engines_vllm.py (slow).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.engines.base import ContextOverflow, EngineError, EngineTimeout, EngineUnavailable, InvalidOutput
from agent.engines.openai_engine import OpenAIEngine
from agent.settings import Settings
from tests.openai_stub import Behaviour, StubHandler, StubServer

MSGS = [{"role": "user", "content": "hi"}]

def _completion(content: str, *, finish: str = "stop", logprobs: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
    if logprobs is not None:
        top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in logprobs]
        choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "stub", "choices": [choice]}


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], StubServer]]:
    servers: list[StubServer] = []

    def start(behaviour: Behaviour) -> StubServer:
        servers.append(StubServer(behaviour))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _engine(url: str, *, timeout_s: float = 5.0, model: str | None = "stub-model") -> OpenAIEngine:
    return OpenAIEngine(Settings(llm="openai", llm_url=url, llm_served_model=model, llm_timeout_s=timeout_s))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_url_configured() -> None:
    with pytest.raises(EngineUnavailable, match="AISLE_LLM_URL"):
        OpenAIEngine(Settings(llm="openai", llm_url=None))


def test_nothing_listening_is_unavailable() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    engine = _engine(url)
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable) as info:
        engine.chat(MSGS)
    assert url in str(info.value) and "vllm serve" in str(info.value)
    assert time.monotonic() - t0 < 2.0  # refused at once, no retry loop
    # Without a served-model name the constructor asks /v1/models and fails the same way.
    with pytest.raises(EngineUnavailable, match="cannot reach"):
        _engine(url, model=None)


def test_first_listed_model_is_used(serve: Callable[[Behaviour], StubServer]) -> None:
    server = serve(lambda h, body: h.send_json(_completion("hello")))
    engine = _engine(server.url, model=None)
    assert engine.model_id == "stub-model"
    assert engine.chat(MSGS) == "hello"
    assert server.requests[-1]["model"] == "stub-model" and server.requests[-1]["temperature"] == 0.0


def test_server_stopped_mid_test_is_unavailable(serve: Callable[[Behaviour], StubServer]) -> None:
    server = serve(lambda h, body: h.send_json(_completion("ok")))
    engine = _engine(server.url)
    assert engine.chat(MSGS) == "ok"
    server.stop()
    with pytest.raises(EngineUnavailable, match=server.url.replace(".", r"\.")):
        engine.chat(MSGS)


def test_connection_dropped_mid_stream_is_unavailable(serve: Callable[[Behaviour], StubServer]) -> None:
    def half_stream(h: StubHandler, body: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        event = b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        h.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)  # die without the terminating chunk

    server = serve(half_stream)
    pieces: list[str] = []
    with pytest.raises(EngineUnavailable, match="lost the connection|cannot reach"):
        for piece in _engine(server.url).stream(MSGS):
            pieces.append(piece)
    assert pieces == ["Hel"]


def test_sleeping_server_times_out(serve: Callable[[Behaviour], StubServer]) -> None:
    server = serve(lambda h, body: (time.sleep(3), h.send_json(_completion("late"))))
    engine = _engine(server.url, timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(EngineTimeout, match=r"0\.5 s"):
        engine.chat(MSGS)
    assert time.monotonic() - t0 < 2.0  # one attempt only
    assert len(server.requests) == 1


def test_stream_that_stalls_times_out(serve: Callable[[Behaviour], StubServer]) -> None:
    def stall(h: StubHandler, body: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"A"}}]}\n\n')
        h.wfile.flush()
        time.sleep(3)

    server = serve(stall)
    pieces: list[str] = []
    with pytest.raises(EngineTimeout):
        for piece in _engine(server.url, timeout_s=0.5).stream(MSGS):
            pieces.append(piece)
    assert pieces == ["A"]


def test_context_overflow_400(serve: Callable[[Behaviour], StubServer]) -> None:
    # The exact text vLLM 0.32 answers with (copied from a real `vllm serve` reply).
    msg = (
        "This model's maximum context length is 4096 tokens. However, your prompt contains at least 4097 "
        "input tokens, which exceeds this limit even without any output tokens."
    )
    server = serve(lambda h, body: h.send_json({"error": {"message": msg, "type": "BadRequestError", "code": 400}}, 400))
    with pytest.raises(ContextOverflow, match="maximum context length is 4096"):
        _engine(server.url).chat(MSGS)


def test_other_400_is_a_plain_engine_error(serve: Callable[[Behaviour], StubServer]) -> None:
    server = serve(lambda h, body: h.send_json({"error": {"message": "temperature must be >= 0"}}, 400))
    with pytest.raises(EngineError, match="temperature must be") as info:
        _engine(server.url).chat(MSGS)
    assert not isinstance(info.value, (ContextOverflow, EngineUnavailable))


def test_chat_json_sends_schema_and_rejects_invalid(serve: Callable[[Behaviour], StubServer]) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    replies = iter(['{"n": 3}', '{"n": "three"}', '{"n":', "{}"])
    finishes = iter(["stop", "stop", "length", "stop"])
    server = serve(lambda h, body: h.send_json(_completion(next(replies), finish=next(finishes))))
    engine = _engine(server.url)
    assert engine.chat_json(MSGS, schema) == {"n": 3}
    assert server.requests[0]["response_format"]["json_schema"]["schema"] == schema
    with pytest.raises(InvalidOutput, match="does not match the schema") as info:
        engine.chat_json(MSGS, schema)
    assert info.value.raw == '{"n": "three"}'
    with pytest.raises(InvalidOutput, match="max_tokens"):
        engine.chat_json(MSGS, schema)
    with pytest.raises(InvalidOutput, match="'n' is a required property"):
        engine.chat_json(MSGS, schema)


def test_score_choices_renormalises_and_falls_back_once(serve: Callable[[Behaviour], StubServer]) -> None:
    # A server that does not know vLLM's structured_outputs (400), then answers unconstrained.
    def behaviour(h: StubHandler, body: dict[str, Any]) -> None:
        if "structured_outputs" in body:
            h.send_json({"error": {"message": "Unrecognized request argument supplied: structured_outputs"}}, 400)
        else:
            h.send_json(_completion("A", logprobs=[("A", -0.5), (" B", -1.5), ("The", -2.0), ("B", -3.0)]))

    server = serve(behaviour)
    engine = _engine(server.url)
    scores = engine.score_choices(MSGS, ["A", "B", "C"])
    assert scores.keys() == {"A", "B", "C"}
    assert sum(scores.values()) == pytest.approx(1.0)
    assert scores["C"] == 0.0 and scores["A"] > scores["B"] > 0.0
    pa, pb = 2.718281828 ** -0.5, 2.718281828 ** -1.5 + 2.718281828 ** -3.0  # " B" and "B" both count
    assert scores["A"] == pytest.approx(pa / (pa + pb), rel=1e-6)
    assert [("structured_outputs" in r) for r in server.requests] == [True, False]
    engine.score_choices(MSGS, ["A", "B"])  # remembered: no second constrained attempt
    assert [("structured_outputs" in r) for r in server.requests] == [True, False, False]
    assert server.requests[-1]["max_tokens"] == 1 and server.requests[-1]["top_logprobs"] == 20


def test_batch_keeps_order(serve: Callable[[Behaviour], StubServer]) -> None:
    def echo(h: StubHandler, body: dict[str, Any]) -> None:
        text = body["messages"][-1]["content"]
        time.sleep(0.05 if text.endswith("0") else 0.0)  # the first one finishes last
        h.send_json(_completion(text.upper()))

    server = serve(echo)
    convs = [[{"role": "user", "content": f"msg {i}"}] for i in range(10)]
    assert _engine(server.url).batch(convs, max_tokens=8) == [f"MSG {i}" for i in range(10)]


def test_batch_sends_bad_words_per_request_only_when_banned(serve: Callable[[Behaviour], StubServer]) -> None:
    """`banned` reaches a vLLM server as its `bad_words` extension, per request; a request with no
    banned words is a plain OpenAI request (other servers reject unknown fields)."""
    server = serve(lambda h, body: h.send_json(_completion(body["messages"][-1]["content"])))
    convs = [[{"role": "user", "content": f"msg {i}"}] for i in range(3)]
    replies = _engine(server.url).batch(convs, max_tokens=8, banned=[["blue", "Blue"], [], ["the best"]])
    assert replies == ["msg 0", "msg 1", "msg 2"]
    sent = {r["messages"][-1]["content"]: r.get("bad_words") for r in server.requests}
    assert sent == {"msg 0": ["blue", "Blue"], "msg 1": None, "msg 2": ["the best"]}
    with pytest.raises(ValueError, match="2 lists for 3 conversations"):
        _engine(server.url).batch(convs, max_tokens=8, banned=[[], []])
