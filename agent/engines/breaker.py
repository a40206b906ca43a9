"""A circuit breaker in front of the LLM: a server that is down or hangs is not called again at
once, and one that comes back is used again without restarting aisle.

Why: one chat turn makes several LLM calls (reading the message, ranking, reasons, an opener).
Against a server that accepts connections but never answers, each of them would wait the full
`llm_timeout_s`; against a server that was down when aisle started, the engine used to stay
unbuilt until restart. The breaker turns the first failure into fail-fast for the turn's other
calls and for other turns, and keeps trying the server with back-off:

- closed: calls go through. A failure that says the server is unreachable or slow
  (EngineUnavailable, EngineTimeout, a raw connection error or timeout) opens the circuit.
- open: calls fail at once with `CircuitOpen` (an EngineUnavailable, which every caller already
  turns into retrieval order and template reasons) for the back-off: `min_s`, doubling after each
  failed trial, at most `max_s`.
- half-open: the back-off is over; the next call is the one trial let through (others still fail
  fast). The trial first sends the engine's `probe` (a one-token request) with the short
  `probe_timeout_s` (settings.llm_probe_timeout_s): a server that still hangs costs that turn a
  few seconds, not `llm_timeout_s`. Success closes the circuit, resets the back-off and lets the
  call go on; failure re-opens it for twice as long.

Answers the server did give, even bad ones (InvalidOutput, ContextOverflow, HTTP 400), count as
success: the server is up. Errors that say nothing about the server (a ValueError on the
arguments, an interrupted call) leave the state as it was.

`BreakerEngine` is the engine callers see: it builds the real engine on first use (building is
guarded like a call and followed by a probe, so a server that is down or hangs at start-up is found
within the probe timeout and tried again later) and sends every call through one `CircuitBreaker`.
Only the first call to a server that stops answering while trusted waits its full `llm_timeout_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.engines.base import EngineError, EngineTimeout, EngineUnavailable, LLMEngine, Message

log = logging.getLogger(__name__)


class CircuitOpen(EngineUnavailable):
    """The LLM failed recently; this call was not sent (it is retried after a back-off)."""

    code = "llm_circuit_open"


def _trips(exc: BaseException) -> bool:
    """A failure that says the server cannot be reached or does not answer in time."""
    return isinstance(exc, (EngineUnavailable, EngineTimeout, ConnectionError, TimeoutError)) and not isinstance(exc, CircuitOpen)


def _answered(exc: BaseException) -> bool:
    """The server answered (a bad answer is still an answer), or the caller stopped reading a
    stream that was flowing."""
    return isinstance(exc, GeneratorExit) or (isinstance(exc, EngineError) and not isinstance(exc, CircuitOpen) and not _trips(exc))


class Ticket:
    """One admitted call; `trial` when it is the half-open probe."""

    __slots__ = ("settled", "trial")

    def __init__(self, trial: bool) -> None:
        self.trial = trial
        self.settled = False


class CircuitBreaker:
    """closed -> open -> half-open -> closed | open, with exponential back-off. Thread-safe.

    Use: `ticket = breaker.admit()` (raises CircuitOpen), run the call, then
    `breaker.settle(ticket, exc)` with the exception it raised or None. `clock` is injectable
    so the state machine can be tested without sleeping."""

    def __init__(self, *, min_s: float = 1.0, max_s: float = 60.0, clock: Callable[[], float] = time.monotonic, name: str = "LLM") -> None:
        if min_s < 0:
            raise ValueError(f"min_s must be >= 0, got {min_s}")
        self.min_s = min_s
        self.max_s = max(max_s, min_s)
        self.clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._failures = 0  # consecutive failures (the first opening plus failed trials)
        self._retry_at: float | None = None  # None: closed
        self._trial: Ticket | None = None
        self._error: str | None = None

    # --- state -------------------------------------------------------------------------------------

    def backoff_s(self, failures: int) -> float:
        """The pause after `failures` consecutive failures: min_s, 2*min_s, 4*min_s, ... <= max_s."""
        if failures <= 0:
            return 0.0
        return min(self.min_s * 2.0 ** min(failures - 1, 64), self.max_s)

    @property
    def state(self) -> str:
        return self.status()["state"]

    @property
    def error(self) -> str | None:
        """Why the circuit is not closed (the last failure), None when it is."""
        return self._error

    def status(self) -> dict[str, Any]:
        """{"state": "closed" | "open" | "half-open", "error", "retry_in_s", "failures"}.

        half-open: the back-off is over, so the next call (or the one in flight) is the trial;
        retry_in_s is then 0. It is None when closed."""
        with self._lock:
            if self._retry_at is None:
                return {"state": "closed", "error": None, "retry_in_s": None, "failures": 0}
            wait = max(0.0, self._retry_at - self.clock())
            state = "half-open" if self._trial is not None or wait == 0.0 else "open"
            return {"state": state, "error": self._error, "retry_in_s": round(wait, 3), "failures": self._failures}

    # --- calls -------------------------------------------------------------------------------------

    def admit(self) -> Ticket:
        """Let a call through, or raise CircuitOpen while the back-off runs or a trial is in flight."""
        with self._lock:
            if self._retry_at is None:
                return Ticket(trial=False)
            wait = self._retry_at - self.clock()
            if self._trial is None and wait <= 0:
                self._trial = Ticket(trial=True)
                log.info("%s: back-off over; trying it again", self.name)
                return self._trial
            when = "once the trial call in flight answers" if self._trial is not None else f"in {wait:.1f} s"
            raise CircuitOpen(
                f"the {self.name} failed {self._failures} time(s) in a row (last: {self._error}); "
                f"calls fail fast and it is tried again {when}."
            )

    def recheck(self, ticket: Ticket) -> None:
        """For a call admitted while closed that then waited (e.g. for another caller's engine
        build): raise CircuitOpen if the circuit opened meanwhile, instead of trying too."""
        with self._lock:
            if self._retry_at is not None and ticket is not self._trial:
                raise CircuitOpen(f"the {self.name} failed while this call waited ({self._error}); calls fail fast for now.")

    def settle(self, ticket: Ticket, exc: BaseException | None = None) -> None:
        """Record how an admitted call ended: None (answered), or the exception it raised."""
        with self._lock:
            if ticket.settled:
                return
            ticket.settled = True
            if ticket is self._trial:
                self._trial = None
            # A call admitted before the circuit opened says nothing new: the trial decides.
            counts = ticket.trial or self._retry_at is None
            if exc is None or _answered(exc):
                if counts:
                    self._close()
            elif _trips(exc):
                if counts:
                    self._open(f"{type(exc).__name__}: {exc}")
            # anything else (CircuitOpen, bad arguments, KeyboardInterrupt): no verdict

    def _close(self) -> None:
        if self._retry_at is not None:
            log.warning("%s: answering again after %d failure(s); circuit closed", self.name, self._failures)
        self._failures = 0
        self._retry_at = None
        self._error = None

    def _open(self, error: str) -> None:
        self._failures += 1
        pause = self.backoff_s(self._failures)
        self._retry_at = self.clock() + pause
        self._error = error
        log.error("%s failed (%s); calls fail fast, next try in %.1f s", self.name, error, pause)


class BreakerEngine(LLMEngine):
    """The engine built by `build` (on first use), every call guarded by `breaker`.

    A failed build is a failed call: it opens the circuit and is retried after the back-off, so a
    server that is down at start-up is picked up once it answers."""

    def __init__(self, build: Callable[[], LLMEngine], breaker: CircuitBreaker, *, kind: str = "engine", probe_timeout_s: float = 2.0) -> None:
        self._build = build
        self.breaker = breaker
        self._kind = kind
        self.probe_timeout_s = probe_timeout_s
        self._inner: LLMEngine | None = None
        self._build_lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._inner is not None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._inner.name if self._inner is not None else self._kind

    @property
    def model_id(self) -> str:  # type: ignore[override]
        return self._inner.model_id if self._inner is not None else ""

    def load(self) -> None:
        """Build the engine now (a guarded call: raises EngineError, opens the circuit on failure)."""
        self._guarded(lambda engine: None)

    # --- LLMEngine ---------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        return self._guarded(lambda e: e.chat(messages, max_tokens=max_tokens, temperature=temperature))

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        return self._guarded(lambda e: e.chat_json(messages, schema, max_tokens=max_tokens))

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        return self._guarded(lambda e: e.batch(conversations, max_tokens=max_tokens, temperature=temperature, banned=banned))

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        return self._guarded(lambda e: e.score_choices(messages, choices))

    def score_choices_batch(self, conversations: Sequence[Sequence[Message]], choices: Sequence[str]) -> list[dict[str, float]]:
        return self._guarded(lambda e: e.score_choices_batch(conversations, choices))

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        ticket = self._admit()
        try:
            yield from self._engine(ticket).stream(messages, max_tokens=max_tokens, temperature=temperature)
        except BaseException as exc:  # GeneratorExit too: the reader stopped a flowing stream
            self.breaker.settle(ticket, exc)
            raise
        self.breaker.settle(ticket)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()

    # --- helpers -----------------------------------------------------------------------------------

    def _admit(self) -> Ticket:
        """A ticket for one call. The half-open trial is spent on a probe first: when it answers,
        the circuit closes and the call goes on as an ordinary one."""
        ticket = self.breaker.admit()
        if not ticket.trial:
            return ticket
        try:
            if self._inner is None:
                self._engine(ticket)  # builds, and probes what it built
            else:
                self._inner.probe(self.probe_timeout_s)
        except BaseException as exc:
            self.breaker.settle(ticket, exc)
            raise
        self.breaker.settle(ticket)
        return self.breaker.admit()

    def _guarded(self, call: Callable[[LLMEngine], Any]) -> Any:
        ticket = self._admit()
        try:
            result = call(self._engine(ticket))
        except BaseException as exc:
            self.breaker.settle(ticket, exc)
            raise
        self.breaker.settle(ticket)
        return result

    def _engine(self, ticket: Ticket) -> LLMEngine:
        engine = self._inner
        if engine is not None:
            return engine
        with self._build_lock:
            if self._inner is None:
                # Callers that queued behind a build that failed do not each try again.
                self.breaker.recheck(ticket)
                engine = self._build()
                try:
                    engine.probe(self.probe_timeout_s)  # kept once it answers; else rebuilt at the next trial
                except BaseException:
                    engine.close()
                    raise
                self._inner = engine
            return self._inner
