"""One LLM, many shoppers: a bounded, fair queue in front of the engine, and a per-turn deadline.

A CPU engine runs one call at a time, and one call can take seconds (a written reason). First come,
first served lets one session's loop of "why?" turns hold the model while every other shopper
waits. So every engine call of a chat turn goes through `LLMScheduler.slot`:

- at most `slots` calls run at once; at most `max_waiting` wait, and a call that finds the queue
  full fails at once with `LLMBusy` (the turn answers without the LLM and says so);
- when a slot frees, it goes to the waiting session that used the LLM least recently (its use in
  seconds, halving every `half_life_s`), so a session that keeps the model busy yields to the others;
- a call waits no longer than its turn's deadline: the turn then goes on without the LLM.

`ScheduledEngine` is the engine the agent's parts hold: the shared engine (built lazily, see
`LazyEngine`) behind the scheduler. The session and deadline of the turn being served come from
`turn_scope` (a context variable), so no layer between the agent and the engine passes them on;
a call outside any turn (an eval, the CLI) has no deadline. The scope also keeps why any of the
turn's calls went without the model (`TurnScope.degraded`), which /metrics and the turn log report:
each caller falls back quietly, so only this choke point sees them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agent.engines.base import EngineError, EngineTimeout, EngineUnavailable, LLMEngine, Message
from agent.engines.breaker import CircuitOpen


class LLMBusy(EngineUnavailable):
    """The LLM queue is full (code llm_queue_full), or the turn's time budget ran out while waiting
    for the model (llm_budget_exceeded)."""

    code = "llm_busy"


def degraded_reason(exc: BaseException) -> str | None:
    """Why a call went without the model, as a /metrics label (a fixed set, never a message):
    budget, queue_full, breaker_open, llm_timeout, llm_unavailable; None for an answer that was
    merely bad (invalid output, context overflow): the model was there."""
    if isinstance(exc, LLMBusy):
        return "queue_full" if exc.code == "llm_queue_full" else "budget"
    if isinstance(exc, CircuitOpen):
        return "breaker_open"
    if isinstance(exc, EngineTimeout):
        return "llm_timeout"
    if isinstance(exc, EngineUnavailable):
        return "llm_unavailable"
    return None


@dataclass
class TurnScope:
    """The turn being served: whose it is, until when its calls may wait for the model, and why
    any of them went without it (in the order it happened)."""

    owner: str = "-"
    deadline: float | None = None  # a time.monotonic() value
    dropped: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> str | None:
        """The first reason a call of this turn went without the model; None when none did."""
        return self.dropped[0] if self.dropped else None


_TURN: ContextVar[TurnScope | None] = ContextVar("aisle_turn", default=None)


def _current() -> TurnScope:
    """The turn being served; outside any turn a throwaway scope (no deadline, nothing kept)."""
    return _TURN.get() or TurnScope()


@contextmanager
def turn_scope(owner: str | TurnScope, deadline: float | None = None) -> Iterator[TurnScope]:
    """Engine calls inside the block are made for the scope's owner and wait for the model until
    its deadline. Pass one TurnScope for every step of a streamed turn, so its record is whole."""
    scope = owner if isinstance(owner, TurnScope) else TurnScope(owner, deadline)
    token = _TURN.set(scope)
    try:
        yield scope
    finally:
        _TURN.reset(token)


@dataclass
class _Waiter:
    owner: str
    since: float
    granted: threading.Event = field(default_factory=threading.Event)


class LLMScheduler:
    def __init__(self, *, slots: int = 1, max_waiting: int = 16, half_life_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.max_waiting = max_waiting
        self.half_life_s = half_life_s
        self.clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: list[_Waiter] = []
        self._usage: dict[str, tuple[float, float]] = {}  # owner -> (seconds used, as of time)
        # counters for /metrics
        self.granted = 0
        self.rejected_full = 0
        self.timed_out = 0
        self.wait_seconds_total = 0.0

    @property
    def depth(self) -> int:
        """Calls waiting for the model now."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    def usage(self, owner: str) -> float:
        """The owner's recent LLM time in seconds, decayed (what fairness compares)."""
        used, at = self._usage.get(owner, (0.0, 0.0))
        return used * 0.5 ** ((self.clock() - at) / self.half_life_s) if used else 0.0

    @contextmanager
    def slot(self, owner: str, deadline: float | None = None) -> Iterator[None]:
        """Hold one model slot for the body. Raises LLMBusy when the queue is full or `deadline`
        (a `clock()` time) passes while waiting."""
        waited = self._acquire(owner, deadline)
        self.wait_seconds_total += waited
        started = self.clock()
        try:
            yield
        finally:
            self._release(owner, self.clock() - started)

    def _acquire(self, owner: str, deadline: float | None) -> float:
        start = self.clock()
        with self._lock:
            if self._running < self.slots and not self._waiting:
                self._running += 1
                self.granted += 1
                return 0.0
            if len(self._waiting) >= self.max_waiting:
                self.rejected_full += 1
                raise LLMBusy(f"the language model is busy ({len(self._waiting)} calls waiting)", code="llm_queue_full")
            waiter = _Waiter(owner, start)
            self._waiting.append(waiter)
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        if waiter.granted.wait(timeout):
            return self.clock() - start
        with self._lock:
            if waiter.granted.is_set():  # granted just as the wait timed out: keep the slot
                return self.clock() - start
            self._waiting.remove(waiter)
            self.timed_out += 1
        raise LLMBusy(f"the language model was busy for this turn's whole time budget ({self.clock() - start:.1f} s)", code="llm_budget_exceeded")

    def _release(self, owner: str, used_s: float) -> None:
        with self._lock:
            now = self.clock()
            self._usage[owner] = (self.usage(owner) + used_s, now)
            if len(self._usage) > 10_000:  # forget the quietest owners
                for key in sorted(self._usage, key=self.usage)[:5_000]:
                    del self._usage[key]
            if self._waiting:
                # The least recent LLM use goes first; among equals, the longest wait.
                nxt = min(self._waiting, key=lambda w: (self.usage(w.owner), w.since))
                self._waiting.remove(nxt)
                self.granted += 1
                nxt.granted.set()  # the slot passes straight to it: _running is unchanged
            else:
                self._running -= 1


class ScheduledEngine(LLMEngine):
    """The shared engine behind the scheduler: every call takes a slot for the current turn's
    session and gives up (LLMBusy) at the turn's deadline. `source()` returns the shared engine or
    None when it is unavailable (then calls raise EngineUnavailable, which every caller already
    turns into retrieval order and template reasons)."""

    def __init__(
        self,
        source: Callable[[], LLMEngine | None],
        scheduler: LLMScheduler,
        *,
        unavailable: Callable[[], str] = lambda: "",
        status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._source = source
        self._scheduler = scheduler
        self._unavailable = unavailable
        self._status = status  # the engine's circuit breaker (LazyEngine.status): checked before queueing

    def _inner(self) -> LLMEngine:
        if self._status is not None:
            state = self._status()
            if state.get("state") in ("open", "unavailable") and (state.get("retry_in_s") or 0) > 0:
                # Failing fast anyway: do not make the turn queue behind other calls first.
                raise CircuitOpen(f"LLM unavailable, next try in {state['retry_in_s']:.0f} s: {state.get('error') or ''}")
        engine = self._source()
        if engine is None:
            raise EngineUnavailable(self._unavailable() or "no LLM engine")
        return engine

    @property
    def name(self) -> str:  # type: ignore[override]
        engine = self._source()
        return engine.name if engine is not None else "unavailable"

    @property
    def model_id(self) -> str:  # type: ignore[override]
        engine = self._source()
        return engine.model_id if engine is not None else "unavailable"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        scope = _current()
        try:
            engine = self._inner()
            with self._scheduler.slot(scope.owner, scope.deadline):
                return getattr(engine, method)(*args, **kwargs)
        except EngineError as exc:
            _note(scope, exc)
            raise

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        return self._call("chat", messages, max_tokens=max_tokens, temperature=temperature)

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        return self._call("chat_json", messages, schema, max_tokens=max_tokens)

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        return self._call("batch", conversations, max_tokens=max_tokens, temperature=temperature, banned=banned)

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        return self._call("score_choices", messages, choices)

    def score_choices_batch(self, conversations: Sequence[Sequence[Message]], choices: Sequence[str]) -> list[dict[str, float]]:
        return self._call("score_choices_batch", conversations, choices)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        scope = _current()
        try:
            engine = self._inner()
            with self._scheduler.slot(scope.owner, scope.deadline):
                yield from engine.stream(messages, max_tokens=max_tokens, temperature=temperature)
        except EngineError as exc:
            _note(scope, exc)
            raise

    def close(self) -> None:  # the shared engine belongs to the agent, not to one turn
        pass


def _note(scope: TurnScope, exc: BaseException) -> None:
    reason = degraded_reason(exc)
    if reason is not None:
        scope.dropped.append(reason)
