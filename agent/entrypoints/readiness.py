"""Can this process serve turns? What `GET /ready` reports, checked for real and cached briefly.

Each part is checked the way a turn uses it: the session store by a write (its ping) and the free
space of its disk; the default catalog's index by reading its database and running one
nearest-neighbour search (a truncated HNSW file or a damaged chroma.sqlite3 fails here, not only in
a shopper's turn); the LLM by its circuit breaker's state. A failing part carries the code a turn
would answer with (`session_store_unavailable`, `disk_full`, `vector_store_unavailable`,
`catalog_not_indexed`, ...).

The result is reused for `cache_s` seconds and computed by one caller at a time, so a load
balancer (or anyone) probing hundreds of times a second costs one check per period, not one
SQLite write per probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.chat.agent import Agent
from agent.errors import AisleError
from agent.faults import translate
from agent.redact import redact


@dataclass
class Report:
    """Each part's {"status": ok | degraded | fail, "detail", "code"?} and the verdict."""

    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    catalogs: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[str]:
        return [name for name, c in self.checks.items() if c["status"] == "fail"]

    @property
    def status(self) -> str:
        """"not_ready" (turns fail), "degraded" (turns answer without the LLM) or "ready"."""
        if self.failing:
            return "not_ready"
        return "degraded" if any(c["status"] == "degraded" for c in self.checks.values()) else "ready"


class Readiness:
    def __init__(self, agent: Agent, *, cache_s: float, secrets: Iterable[str | None] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.agent = agent
        self.cache_s = cache_s
        self.secrets = tuple(secrets)
        self.clock = clock
        self.checks_run = 0  # how many real checks ran (the rest were served from the cache)
        self._lock = threading.Lock()
        self._last: tuple[float, Report] | None = None

    def report(self) -> Report:
        """The last report while it is fresh; else a new one (callers arriving meanwhile wait for it)."""
        with self._lock:
            if self._last is not None and self.clock() - self._last[0] < self.cache_s:
                return self._last[1]
            report = self._check()
            self.checks_run += 1
            self._last = (self.clock(), report)
            return report

    def _fail(self, exc: BaseException, where: str = "") -> dict[str, str]:
        error = translate(exc, self.agent.settings.home) or AisleError(f"{type(exc).__name__}: {exc}")
        return {"status": "fail", "code": error.code, "detail": redact(f"{where}{error.message}", self.secrets)}

    def _check(self) -> Report:
        agent = self.agent
        checks: dict[str, dict[str, str]] = {}
        try:
            agent.store.ping()
            checks["session_store"] = {"status": "ok", "detail": "writable"}
        except Exception as exc:  # StoreUnavailable / DiskFull say what is wrong and what to do
            checks["session_store"] = self._fail(exc)
        catalog = agent.default_catalog
        try:
            parts = agent.parts(catalog)
            parts.recommender.searcher.index.check()
            checks["index"] = {"status": "ok", "detail": f"{catalog}: {len(parts.items)} items"}
        except Exception as exc:
            checks["index"] = self._fail(exc, f"{catalog}: ")
        checks["llm"] = self._llm()
        checks["llm_queue"] = {"status": "ok", "detail": f"{agent.scheduler.running} running, {agent.scheduler.depth} waiting"}
        checks["models"] = models_check(agent.models_status())
        try:
            catalogs = agent.catalogs()
        except Exception:  # the registry's failure is the index check's to report
            catalogs = []
        return Report(checks, catalogs)

    def _llm(self) -> dict[str, str]:
        agent = self.agent
        if agent.rank_mode == "none" and not agent.llm_reasons and not agent.llm_extract and not agent.llm_intro:
            return {"status": "ok", "detail": "not used (rank mode none)"}
        llm = agent.llm_status()
        if llm.get("state") in ("open", "unavailable", "half-open") or llm.get("error"):
            detail = f"{llm.get('state')}: {llm.get('error') or 'not reachable'}; turns use retrieval order and template reasons"
            return {"status": "degraded", "code": "llm_unavailable", "detail": redact(detail, self.secrets)}
        return {"status": "ok", "detail": str(llm.get("state", "ok"))}

    def public(self, report: Report, *, full: bool) -> dict[str, Any]:
        """The body of /ready: with `full` (a caller holding the key) every part's detail; without,
        the bare verdict, which says nothing about the server's insides."""
        body: dict[str, Any] = {"status": report.status}
        if full:
            body |= {"checks": report.checks, "catalogs": report.catalogs, "default_catalog": self.agent.default_catalog}
        return body


def models_check(status: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What each open catalog's ranking is still waiting for: "degraded" while its ranking stage
    loads or its models train (turns answer without them and say so), or when either failed."""
    waiting, parts = False, []
    for catalog, s in sorted(status.items()):
        what = [f"ranking stage {s['stage']}" + (f" ({s['error']})" if s.get("error") else "")]
        waiting |= s["stage"] in ("idle", "loading", "failed")
        if s.get("reopening"):
            what.append("loading a catalog update")
        training = s.get("training")
        if training:
            what.append(f"training {', '.join(training['missing'])}: {training['state']} ({training['seconds']:.0f} s{'; ' + training['progress'] if training.get('progress') else ''})")
            waiting |= training["state"] != "done"
        parts.append(f"{catalog}: {'; '.join(what)}")
    return {"status": "degraded" if waiting else "ok", "detail": " | ".join(parts) or "no catalog open yet"}

