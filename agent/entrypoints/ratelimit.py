"""Request limits of the HTTP API: per API key (or client address) and per session, /ready per
client address, and a back-off for wrong API keys per client address; all answered with 429 and
Retry-After. Moving windows from the `limits` library, in this process's memory: with several
replicas each enforces its own share (put the limit a load balancer sees at N x this)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from agent.errors import RateLimited


def key_id(api_key: str | None, client: str | None) -> str:
    """Who a request counts against: a fingerprint of its API key, else its client address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return "addr:" + (client or "unknown")


class RequestLimits:
    def __init__(self, *, per_key_per_min: int, per_session_per_min: int, ready_per_min: int = 0) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_key = RateLimitItemPerMinute(per_key_per_min) if per_key_per_min else None
        self._per_session = RateLimitItemPerMinute(per_session_per_min) if per_session_per_min else None
        self._ready = RateLimitItemPerMinute(ready_per_min) if ready_per_min else None
        self.refused = {"key": 0, "session": 0, "ready": 0, "auth": 0}  # for /metrics

    def check_key(self, who: str) -> None:
        """One request by `who` (see key_id); RateLimited when over the per-key limit."""
        self._hit("key", self._per_key, who, "requests from this API key (or address)")

    def check_ready(self, client: str | None) -> None:
        """One /ready probe from the address `client`."""
        self._hit("ready", self._ready, client or "unknown", "readiness probes from this address")

    def check_session(self, session_id: str) -> None:
        """One turn of `session_id`; RateLimited when over the per-session limit."""
        self._hit("session", self._per_session, session_id, "turns in this session")

    def _hit(self, scope: str, item, identifier: str, what: str) -> None:
        if item is None or self._limiter.hit(item, scope, identifier):
            return
        self.refused[scope] += 1
        reset = self._limiter.get_window_stats(item, scope, identifier).reset_time
        wait = max(1.0, reset - time.time())
        raise RateLimited(f"too many {what}: the limit is {item.amount} per minute; retry in {wait:.0f} s", retry_after_s=wait)


class AuthBackoff:
    """Wrong API keys, per client address: after `free` of them, each further one makes that address
    wait 1, 2, 4 ... seconds (at most `max_s`) before any key it sends is checked again (429 with
    Retry-After). Guessing keys slows to a crawl; other addresses are never slowed, and a right key
    (once the wait is over) clears the address's count. An address quiet for `forget_s` starts
    afresh; at most `max_tracked` addresses are remembered (the quietest are forgotten first)."""

    def __init__(self, *, free: int, max_s: float, forget_s: float = 900.0, max_tracked: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_tracked = max_tracked
        self.clock = clock
        self._lock = threading.Lock()
        self._state: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # address -> (failures, blocked until, last failure)

    def check(self, client: str) -> None:
        """RateLimited while `client` must wait after wrong keys."""
        with self._lock:
            failures, until, last = self._state.get(client, (0, 0.0, 0.0))
            wait = until - self.clock()
        if wait > 0:
            raise RateLimited(
                f"{failures} wrong API keys from this address; wait {wait:.0f} s before sending a key again (the wait doubles with each wrong key)",
                retry_after_s=wait,
                code="auth_backoff",
            )

    def failed(self, client: str) -> None:
        """One wrong key from `client`."""
        with self._lock:
            now = self.clock()
            failures, _, last = self._state.pop(client, (0, 0.0, 0.0))
            if now - last > self.forget_s:
                failures = 0
            failures += 1
            over = failures - self.free
            until = now + min(2.0 ** (over - 1), self.max_s) if over > 0 else 0.0
            self._state[client] = (failures, until, now)
            while len(self._state) > self.max_tracked:
                self._state.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._state.pop(client, None)
