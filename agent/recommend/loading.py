"""A catalog's ranking stage, built and refreshed off the request path.

A turn never waits for a model: `StageLoader.get()` answers at once with the stage that is ready
(None while the first one builds), and the build runs in a background thread. Later jobs swap a
new stage in only once it is complete, so the old one serves meanwhile:
- `refresh()`: new history (events) refits the cheap history sources; at most once every
  `min_refresh_s` (a refit of amazon-office-2014's 53k events takes ~0.3 s of CPU);
- `reload()`: a full rebuild, e.g. after `aisle train models` wrote new model files.
Nothing here trains: builds only load what was trained (agent.recommend.ltr).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STATES = ("idle", "loading", "ready", "none", "failed")  # "none": the catalog has no ranking stage (no history)


class StageLoader:
    def __init__(self, build: Callable[[], Any], refresh: Callable[[Any], Any], *, min_refresh_s: float = 5.0, name: str = "") -> None:
        self._build = build
        self._refresh = refresh
        self.min_refresh_s = min_refresh_s
        self.name = name
        self._cond = threading.Condition()
        self._stage: Any = None
        self._state = "idle"
        self._error = ""
        self._pending: str | None = None  # "build" | "refresh"; a build supersedes a refresh
        self._worker: threading.Thread | None = None
        self._last_refresh = 0.0

    @property
    def state(self) -> str:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    @property
    def busy(self) -> bool:
        """A job is queued or running (the first build, a refresh or a reload)."""
        with self._cond:
            return self._pending is not None or (self._worker is not None and self._worker.is_alive())

    def get(self) -> Any:
        """The ready stage, or None; never blocks. The first call starts the build."""
        with self._cond:
            if self._state == "idle":
                self._schedule("build")
            return self._stage

    def wait(self, timeout: float | None = None) -> Any:
        """The stage once the first build has finished (starting it if needed); None on timeout."""
        with self._cond:
            if self._state == "idle":
                self._schedule("build")
            self._cond.wait_for(lambda: self._state not in ("idle", "loading"), timeout)
            return self._stage

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running (tests, a reload that must finish before a swap)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and self._worker is None, timeout)

    def refresh(self) -> None:
        """New history: refit it in the background (a first build covers it if none ran yet)."""
        with self._cond:
            self._schedule("refresh" if self._state != "idle" else "build")

    def reload(self) -> None:
        """Rebuild in the background; the current stage serves until the new one is ready."""
        with self._cond:
            self._schedule("build")

    def _schedule(self, job: str) -> None:
        if job == "build" or self._pending is None:
            self._pending = job
        if self._stage is None and self._state == "idle":
            self._state = "loading"
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name=f"stage-{self.name}", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                job, self._pending = self._pending, None
                if job is None:
                    self._worker = None
                    self._cond.notify_all()
                    return
                stage = self._stage
                wait = self._last_refresh + self.min_refresh_s - time.monotonic() if job == "refresh" else 0.0
            if wait > 0:
                time.sleep(wait)  # events arrive in bursts: one refit covers them all
            t0 = time.perf_counter()
            error = ""
            try:
                new = self._build() if job == "build" or stage is None else self._refresh(stage)
            except Exception as exc:  # a broken model file must not take recommendations down
                log.warning("ranking stage of %s: %s failed (%s); %s", self.name, job, exc, "the previous one serves" if stage is not None else "query search only")
                new, error = stage, f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._stage = new
                self._error = error
                self._state = "ready" if new is not None else ("failed" if error else "none")
                if job == "refresh":
                    self._last_refresh = time.monotonic()
                self._cond.notify_all()
            log.info("ranking stage of %s: %s done in %.1f s (%s)", self.name, job, time.perf_counter() - t0, self._state)
