"""The LLM scheduler: bounded queue, least-recent-use fairness, per-turn deadlines, and a turn that
answers without the LLM (and says so) when the model is busy."""

from __future__ import annotations

import threading
import time

import pytest

from agent.engines.scheduler import LLMBusy, LLMScheduler, ScheduledEngine, turn_scope

from .conftest import ScriptedEngine


def hold(scheduler: LLMScheduler, owner: str, release: threading.Event, started: threading.Event | None = None) -> threading.Thread:
    def body() -> None:
        with scheduler.slot(owner):
            if started is not None:
                started.set()
            release.wait(5)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def wait_until(cond, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_one_slot_is_passed_on_in_order_of_least_recent_use():
    s = LLMScheduler(slots=1, max_waiting=8)
    with s.slot("heavy"):  # "heavy" has used the model before
        time.sleep(0.05)
    release = threading.Event()
    started = threading.Event()
    holder = hold(s, "other", release, started)
    started.wait(2)
    order: list[str] = []

    def want(owner: str) -> None:
        with s.slot(owner):
            order.append(owner)

    waiters = [threading.Thread(target=want, args=("heavy",)), threading.Thread(target=want, args=("light",))]
    waiters[0].start()
    wait_until(lambda: s.depth == 1)  # heavy waits first ...
    waiters[1].start()
    wait_until(lambda: s.depth == 2)
    release.set()
    holder.join(2)
    for w in waiters:
        w.join(2)
    assert order == ["light", "heavy"]  # ... but light, who has used the model less, goes first
    assert s.depth == 0 and s.running == 0 and s.granted == 4


def test_a_full_queue_refuses_at_once_and_a_deadline_gives_up():
    s = LLMScheduler(slots=1, max_waiting=1)
    release_a, release_b = threading.Event(), threading.Event()
    started = threading.Event()
    holder = hold(s, "a", release_a, started)
    started.wait(2)
    b_started = threading.Event()
    waiter = hold(s, "b", release_b, b_started)  # waits behind a, then holds the slot until told
    wait_until(lambda: s.depth == 1)
    t = time.perf_counter()
    with pytest.raises(LLMBusy, match="busy"):
        with s.slot("c"):
            pass
    assert time.perf_counter() - t < 0.5 and s.rejected_full == 1
    release_a.set()
    holder.join(2)
    assert b_started.wait(2)  # the slot passed straight to b
    t = time.perf_counter()
    with pytest.raises(LLMBusy, match="time budget"):
        with s.slot("d", time.monotonic() + 0.2):
            pass
    assert 0.15 < time.perf_counter() - t < 1.5 and s.timed_out == 1 and s.depth == 0
    release_b.set()
    waiter.join(2)
    assert s.running == 0


def test_scheduled_engine_takes_the_turn_from_the_context():
    s = LLMScheduler(slots=1)
    seen: list[str] = []
    engine = ScriptedEngine(text=lambda messages: seen.append("called") or "hi")
    scheduled = ScheduledEngine(lambda: engine, s)
    with turn_scope("session-1", time.monotonic() + 5):
        assert scheduled.chat([{"role": "user", "content": "x"}]) == "hi"
    assert s.usage("session-1") > 0 and s.usage("-") == 0
    assert scheduled.chat([{"role": "user", "content": "x"}]) == "hi"  # outside a turn: no deadline
    with pytest.raises(Exception, match="no LLM"):
        ScheduledEngine(lambda: None, s).chat([{"role": "user", "content": "x"}])


def test_a_turn_answers_without_the_llm_when_the_model_is_busy(tiny_agent, fast_settings):
    """One turn holds the model (a slow scoring call); another turn waits only its budget, then
    ranks by retrieval and says so."""
    gate = threading.Event()

    def slow_scores(messages, choices):
        gate.wait(5)
        return {c: 1.0 / len(choices) for c in choices}

    agent = tiny_agent(engine=ScriptedEngine(score_answer=slow_scores), rank_mode="onepass")
    agent.settings = fast_settings.model_copy(update={"turn_budget_s": 0.3})
    results = {}

    def shopper(name: str, message: str) -> None:
        results[name] = agent.turn(None, message)

    first = threading.Thread(target=shopper, args=("first", "a quiet stapler"))
    first.start()
    wait_until(lambda: agent.scheduler.running == 1, 10)
    t = time.perf_counter()
    shopper("second", "a gel pen")
    waited = time.perf_counter() - t
    gate.set()
    first.join(10)
    second = results["second"]
    assert second.items and "language model is busy" in second.reply and waited < 3
    assert str(second.debug["fallback"]).startswith("LLMBusy")
    assert "busy" not in results["first"].reply and results["first"].debug["fallback"] is None
