"""Request limits of the HTTP API: per API key (or client address) and per session, answered with
429 and Retry-After. Moving windows from the `limits` library, in this process's memory: with
several replicas each enforces its own share (put the limit a load balancer sees at N x this)."""

from __future__ import annotations

import hashlib
import time

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
    def __init__(self, *, per_key_per_min: int, per_session_per_min: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_key = RateLimitItemPerMinute(per_key_per_min) if per_key_per_min else None
        self._per_session = RateLimitItemPerMinute(per_session_per_min) if per_session_per_min else None
        self.refused = {"key": 0, "session": 0}  # for /metrics

    def check_key(self, who: str) -> None:
        """One request by `who` (see key_id); RateLimited when over the per-key limit."""
        self._hit("key", self._per_key, who, "requests from this API key (or address)")

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
