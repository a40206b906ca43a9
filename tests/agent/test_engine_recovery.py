"""The LLM engine recovers, against real sockets (no model, no mocks; a few seconds).

- A server that is down when aisle starts: calls degrade at once; once a tiny OpenAI-compatible
  stub starts on that port, the engine is used again after the back-off, without a restart. The
  same when it goes down later and comes back.
- A server that accepts connections and never answers: one turn's LLM calls (ranking, reasons)
  cost one timeout together, not one each; and that timeout is the short probe's
  (`llm_probe_timeout_s`), since a server is probed before it is trusted, at its first use and at
  each half-open trial.
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.engines import LazyEngine
from agent.engines.base import EngineTimeout, EngineUnavailable
from agent.engines.breaker import CircuitOpen
from agent.recommend.rank import Candidate, Reranker
from agent.recommend.reasons import ReasonContext, ReasonWriter
from agent.settings import Settings
from retrieval.catalog import Item

MSGS = [{"role": "user", "content": "hi"}]
TIMEOUT_S = 1.0
PROBE_S = 0.5  # llm_probe_timeout_s: what a hanging server costs a turn before it is trusted
ITEMS = [
    Item(id="s1", title="Swingline Heavy Duty Stapler", brand="Swingline", categories=("Office", "Staplers"), price=39.99),
    Item(id="s2", title="Bostitch Quiet Desktop Stapler", brand="Bostitch", categories=("Office", "Staplers"), price=19.99),
    Item(id="s3", title="Rapid Electric Stapler", brand="Rapid", categories=("Office", "Staplers"), price=54.0),
]
CANDS = [Candidate(item, 1.0 - i / 10) for i, item in enumerate(ITEMS)]
BRANDS = frozenset(it.brand for it in ITEMS)


class _Stub(BaseHTTPRequestHandler):
    """Answers like vLLM: /v1/models lists one model, every chat completion says "hello"."""

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "me"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        message = {"role": "assistant", "content": "hello"}
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "stub-model", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


class StubServer:
    """The stub on 127.0.0.1:`port`, in a thread."""

    def __init__(self, port: int) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Stub)  # SO_REUSEADDR: restartable on the port
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class HangingServer:
    """Accepts every connection and never answers (a wedged server); counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(url: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"llm": "openai", "llm_url": url, "llm_timeout_s": TIMEOUT_S, "llm_probe_timeout_s": PROBE_S, "llm_breaker_min_s": 0.3, "llm_breaker_max_s": 2.0}
    return Settings(**(base | kw))


def _wait_half_open(lazy: LazyEngine, limit_s: float = 5.0) -> float:
    t0 = time.monotonic()
    while lazy.status()["retry_in_s"] not in (0.0, None):
        assert time.monotonic() - t0 < limit_s, lazy.status()
        time.sleep(0.02)
    return time.monotonic() - t0


def _turn(engine: Any) -> tuple[str | None, list[str]]:
    """What a chat turn asks of the LLM: a ranking, then reasons (the real callers)."""
    ranked = Reranker(engine, mode="onepass").rank(CANDS)
    reasons = ReasonWriter(engine, catalog_brands=BRANDS).write(ITEMS, ReasonContext(query="a stapler"))
    return ranked.fallback, [r.source for r in reasons]


def test_server_down_at_start_is_used_once_it_comes_up() -> None:
    port = _free_port()
    lazy = LazyEngine(_settings(f"http://127.0.0.1:{port}/v1"))  # no served model: the build asks /v1/models
    importlib.import_module("openai")  # the timing is of the call, not of importing the client (seconds on a busy CPU)
    t0 = time.monotonic()
    engine = lazy.get()
    assert time.monotonic() - t0 < 1.0  # connection refused: at once
    st = lazy.status()
    assert st["state"] == "unavailable" and "cannot reach" in st["error"] and 0 < st["retry_in_s"] <= 0.3

    t0 = time.monotonic()
    fallback, sources = _turn(engine)  # degrades without waiting for anything
    assert time.monotonic() - t0 < 0.5
    assert fallback and fallback.startswith("CircuitOpen") and sources == ["template"] * 3

    server = StubServer(port)
    try:
        _wait_half_open(lazy)
        assert engine.chat(MSGS) == "hello"  # rebuilt (asked /v1/models) and used: no restart
        assert lazy.status() == {"state": "closed", "error": None, "retry_in_s": None, "failures": 0}
        assert engine.model_id == "stub-model" and engine.name == "openai"
    finally:
        server.stop()

    # It goes down later: one failure, then fail-fast, then used again once it is back.
    with pytest.raises(EngineUnavailable, match="cannot reach") as info:
        engine.chat(MSGS)
    assert not isinstance(info.value, CircuitOpen)
    with pytest.raises(CircuitOpen):
        engine.chat(MSGS)
    assert lazy.status()["state"] == "open"
    server = StubServer(port)
    try:
        waited = _wait_half_open(lazy)
        assert waited <= 0.5  # the back-off started again from llm_breaker_min_s after the success
        assert engine.chat(MSGS) == "hello"
        assert lazy.status()["state"] == "closed"
    finally:
        server.stop()


def test_a_server_still_down_is_tried_less_and_less_often() -> None:
    port = _free_port()
    lazy = LazyEngine(_settings(f"http://127.0.0.1:{port}/v1", llm_served_model="stub-model", llm_breaker_min_s=0.1, llm_breaker_max_s=0.4))
    engine = lazy.get()  # building names the model without asking, but its probe finds the server down
    assert lazy.status()["state"] == "unavailable"
    pauses = [lazy.status()["retry_in_s"]]
    for _ in range(3):
        _wait_half_open(lazy)
        with pytest.raises(EngineUnavailable):
            engine.chat(MSGS)
        pauses.append(lazy.status()["retry_in_s"])
    assert [round(p, 1) for p in pauses] == [0.1, 0.2, 0.4, 0.4]


def test_hanging_server_costs_one_probe_per_turn(hanging: HangingServer) -> None:
    lazy = LazyEngine(_settings(hanging.url, llm_served_model="stub-model"))
    engine = lazy.get()  # the build's probe times out
    assert lazy.status()["state"] == "unavailable" and len(hanging.connections) == 1

    _wait_half_open(lazy)
    t0 = time.monotonic()
    fallback, sources = _turn(engine)
    elapsed = time.monotonic() - t0
    assert fallback and fallback.startswith("EngineTimeout")  # ranking was the trial: one probe ...
    assert sources == ["template"] * 3  # ... and the reasons did not wait again
    assert PROBE_S * 0.9 <= elapsed < PROBE_S + 0.6, elapsed  # the probe's timeout, not llm_timeout_s
    assert len(hanging.connections) == 2  # one request, no retry
    assert lazy.status()["failures"] == 2 and lazy.status()["retry_in_s"] > 0.3  # the back-off doubled

    # A turn during the back-off does not wait at all.
    t0 = time.monotonic()
    fallback, _ = _turn(engine)
    assert fallback and fallback.startswith("CircuitOpen") and time.monotonic() - t0 < PROBE_S, time.monotonic() - t0
    assert len(hanging.connections) == 2


def test_hanging_server_at_start_costs_one_probe(hanging: HangingServer) -> None:
    """No served model named: building the engine asks /v1/models, which hangs. That one probe
    timeout is all the turn pays; its LLM calls then fail fast."""
    lazy = LazyEngine(_settings(hanging.url))
    t0 = time.monotonic()
    engine = lazy.get()
    assert lazy.status()["state"] == "unavailable" and f"did not answer within {PROBE_S:g} s" in lazy.status()["error"]
    fallback, sources = _turn(engine)
    elapsed = time.monotonic() - t0
    assert fallback and fallback.startswith("CircuitOpen") and sources == ["template"] * 3
    assert PROBE_S * 0.9 <= elapsed < PROBE_S + 0.6, elapsed
    assert len(hanging.connections) == 1


def test_two_calls_of_one_turn_cost_one_probe(hanging: HangingServer) -> None:
    """The engine calls themselves (not only the callers' fallbacks): a probe timeout, then fail-fast."""
    engine = LazyEngine(_settings(hanging.url, llm_served_model="stub-model")).get()
    t0 = time.monotonic()
    with pytest.raises(CircuitOpen):  # the build's probe already found it hanging
        engine.score_choices(MSGS, ["A", "B"])
    with pytest.raises(CircuitOpen):
        engine.batch([MSGS] * 10)
    elapsed = time.monotonic() - t0
    assert elapsed < PROBE_S + 0.6, elapsed


def test_a_server_that_hangs_after_it_was_trusted_costs_one_full_timeout() -> None:
    """The one case that waits llm_timeout_s: the server answered (probe passed), then hangs."""
    port = _free_port()
    server = StubServer(port)
    lazy = LazyEngine(_settings(f"http://127.0.0.1:{port}/v1", llm_served_model="stub-model"))
    engine = lazy.get()
    assert engine.chat(MSGS) == "hello" and lazy.status()["state"] == "closed"
    server.stop()
    hanging_sock = socket.socket()
    hanging_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hanging_sock.bind(("127.0.0.1", port))
    hanging_sock.listen(8)  # accepts (the kernel does) and never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineTimeout):
            engine.chat(MSGS)
        assert TIMEOUT_S * 0.9 <= time.monotonic() - t0 < TIMEOUT_S + 0.6
        _wait_half_open(lazy)
        t0 = time.monotonic()
        with pytest.raises(EngineTimeout):  # the trial: the probe's timeout
            engine.chat(MSGS)
        assert PROBE_S * 0.9 <= time.monotonic() - t0 < PROBE_S + 0.6
    finally:
        hanging_sock.close()
