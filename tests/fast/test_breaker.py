"""The LLM circuit breaker on a fake clock: closed -> open -> half-open -> closed | open, the
back-off doubling up to its cap, builds retried like calls, and callers degrading on fail-fast."""

from __future__ import annotations

import pytest

from agent.engines import LazyEngine
from agent.engines.base import ContextOverflow, EngineError, EngineTimeout, EngineUnavailable, InvalidOutput, LLMEngine
from agent.engines.breaker import BreakerEngine, CircuitBreaker, CircuitOpen
from agent.recommend.rank import Candidate, Reranker
from agent.recommend.reasons import ReasonContext, ReasonWriter
from agent.settings import Settings

from .conftest import SHOP_ROWS, ScriptedEngine, make_catalog

MSGS = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    ticket = breaker.admit()
    breaker.settle(ticket, exc or EngineTimeout("no answer in 1 s"))


def succeed(breaker: CircuitBreaker) -> None:
    breaker.settle(breaker.admit())


def test_closed_open_half_open_closed(clock: Clock) -> None:
    b = CircuitBreaker(min_s=1.0, max_s=60.0, clock=clock)
    assert b.status() == {"state": "closed", "error": None, "retry_in_s": None, "failures": 0}
    succeed(b)
    fail(b, EngineUnavailable("connection refused"))
    st = b.status()
    assert st["state"] == "open" and st["retry_in_s"] == 1.0 and "connection refused" in st["error"]
    with pytest.raises(CircuitOpen, match=r"tried again in 1\.0 s") as info:
        b.admit()
    assert isinstance(info.value, EngineUnavailable)  # what every caller already catches
    clock.advance(0.5)
    with pytest.raises(CircuitOpen):
        b.admit()
    clock.advance(0.5)
    assert b.status()["state"] == "half-open" and b.status()["retry_in_s"] == 0.0
    trial = b.admit()
    assert trial.trial
    with pytest.raises(CircuitOpen, match="trial call in flight"):  # one trial at a time
        b.admit()
    b.settle(trial)
    assert b.status()["state"] == "closed" and b.error is None


def test_backoff_doubles_to_the_cap_and_resets_on_success(clock: Clock) -> None:
    b = CircuitBreaker(min_s=1.0, max_s=10.0, clock=clock)
    pauses = []
    fail(b)
    for _ in range(6):
        pauses.append(b.status()["retry_in_s"])
        clock.advance(pauses[-1])
        fail(b)  # the trial fails: open again, for longer
    pauses.append(b.status()["retry_in_s"])
    assert pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert b.status()["failures"] == 7
    clock.advance(10.0)
    succeed(b)
    fail(b)  # after a success the back-off starts again from the bottom
    assert b.status()["retry_in_s"] == 1.0 and b.status()["failures"] == 1


def test_answers_count_as_success_other_errors_give_no_verdict(clock: Clock) -> None:
    b = CircuitBreaker(min_s=1.0, max_s=60.0, clock=clock)
    for answered in (InvalidOutput("not JSON"), ContextOverflow("too long"), EngineError("HTTP 400")):
        fail(b)
        clock.advance(60)
        fail(b, answered)  # the trial got an answer, a bad one: the server is up
        assert b.state == "closed"
    fail(b)
    clock.advance(60)
    fail(b, ValueError("choices is empty"))  # says nothing about the server: still half-open
    assert b.state == "half-open"
    assert b.admit().trial  # the trial slot was released
    # raw connection errors and timeouts trip too
    b2 = CircuitBreaker(clock=clock)
    fail(b2, ConnectionRefusedError("refused"))
    assert b2.state == "open"


def test_calls_admitted_before_the_circuit_opened_do_not_decide(clock: Clock) -> None:
    b = CircuitBreaker(min_s=1.0, max_s=60.0, clock=clock)
    slow_ok, slow_bad = b.admit(), b.admit()
    fail(b)
    b.settle(slow_ok)  # a success that started before the failure does not close it
    assert b.state == "open"
    b.settle(slow_bad, EngineTimeout("late"))  # nor does a late failure lengthen the back-off
    assert b.status()["failures"] == 1 and b.status()["retry_in_s"] == 1.0


def test_min_zero_retries_every_call(clock: Clock) -> None:
    b = CircuitBreaker(min_s=0.0, max_s=0.0, clock=clock)
    fail(b)
    assert b.state == "half-open" and b.admit().trial


# --- BreakerEngine / LazyEngine -----------------------------------------------------------------


class FlakyBuild:
    """A build that fails `failures` times, then gives a scripted engine."""

    def __init__(self, failures: int, engine: LLMEngine) -> None:
        self.failures = failures
        self.engine = engine
        self.calls = 0

    def __call__(self) -> LLMEngine:
        self.calls += 1
        if self.calls <= self.failures:
            raise EngineUnavailable(f"cannot reach the LLM server (attempt {self.calls})")
        return self.engine


def test_a_failed_build_is_retried_after_the_backoff(clock: Clock) -> None:
    build = FlakyBuild(2, ScriptedEngine(text="hello"))
    engine = BreakerEngine(build, CircuitBreaker(min_s=1.0, max_s=60.0, clock=clock), kind="openai")
    assert engine.name == "openai" and engine.model_id == "" and not engine.built
    with pytest.raises(EngineUnavailable, match="attempt 1"):
        engine.chat(MSGS)
    with pytest.raises(CircuitOpen):
        engine.chat(MSGS)
    assert build.calls == 1  # failing fast does not rebuild
    clock.advance(1.0)
    with pytest.raises(EngineUnavailable, match="attempt 2"):
        engine.chat(MSGS)
    assert engine.breaker.status()["retry_in_s"] == 2.0
    clock.advance(2.0)
    assert engine.chat(MSGS) == "hello"
    assert engine.built and engine.name == "scripted" and engine.breaker.state == "closed"
    assert build.calls == 3


def test_stream_through_the_breaker(clock: Clock) -> None:
    breaker = CircuitBreaker(clock=clock)
    scripted = ScriptedEngine(text="abc")
    engine = BreakerEngine(lambda: scripted, breaker)
    assert list(engine.stream(MSGS)) == ["abc"]
    stream = engine.stream(MSGS)
    next(stream)
    stream.close()  # the reader stopped a flowing stream: the server answered
    assert breaker.state == "closed"
    scripted.raise_error = EngineTimeout("stalled")
    with pytest.raises(EngineTimeout):
        list(engine.stream(MSGS))
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        list(engine.stream(MSGS))


def test_lazy_engine_keeps_no_failure_forever() -> None:
    """No URL configured: the build fails, is reported as "unavailable", and is tried again on the
    next call (min back-off 0 here) rather than remembered."""
    lazy = LazyEngine(Settings(llm="openai", llm_url=None, llm_breaker_min_s=0.0, llm_breaker_max_s=0.0))
    assert lazy.status()["state"] == "closed"
    engine = lazy.get()  # builds now, fails, and still returns the (guarded) engine
    st = lazy.status()
    assert st["state"] == "unavailable" and "AISLE_LLM_URL" in st["error"] and lazy.error == st["error"]
    assert isinstance(engine, BreakerEngine) and not engine.built
    with pytest.raises(EngineUnavailable, match="AISLE_LLM_URL") as info:  # built again, failed again
        engine.chat(MSGS)
    assert not isinstance(info.value, CircuitOpen)
    # An engine passed in is used as given: this one (one breaker per server), or a test's own.
    assert LazyEngine(lazy.settings, engine).get() is engine
    scripted = ScriptedEngine(text="ok")
    assert LazyEngine(lazy.settings, scripted).get() is scripted


def test_callers_degrade_on_fail_fast(clock: Clock) -> None:
    """Ranking falls back to retrieval order and reasons to templates when the circuit is open,
    without calling the engine."""
    shop = make_catalog(SHOP_ROWS)
    staplers = [shop.items[i] for i in ("s1", "s2", "s4")]
    scripted = ScriptedEngine(raise_error=EngineTimeout("no answer in 1 s"))
    engine = BreakerEngine(lambda: scripted, CircuitBreaker(clock=clock))
    cands = [Candidate(item, 1.0 - i / 10) for i, item in enumerate(staplers)]
    first = Reranker(engine, mode="onepass").rank(cands)
    assert first.fallback and first.fallback.startswith("EngineTimeout")
    calls = len(scripted.calls)
    second = Reranker(engine, mode="onepass").rank(cands)
    assert second.fallback and second.fallback.startswith("CircuitOpen")
    assert [r.item.id for r in second.items] == ["s1", "s2", "s4"]
    reasons = ReasonWriter(engine, catalog_brands=frozenset(it.brand for it in staplers)).write(staplers, ReasonContext(query="a stapler"))
    assert all(r.source == "template" and r.grounded for r in reasons)
    assert len(scripted.calls) == calls  # nothing reached the engine
