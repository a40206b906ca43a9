"""`aisle train models` in a background process, for a server whose catalog was never trained.

Why a child process and not a thread: training is minutes of small torch ops driven from Python;
inside the server it would hold the GIL between them and slow every turn. The child runs niced
(one at a time), writes its progress to `home/logs/train-<catalog>.log`, and when it exits
successfully `on_done` makes the server load the new files before the job reads "done".
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.settings import Settings

log = logging.getLogger(__name__)

NICE = 10  # turns keep the CPU first; training takes what is left
# The child lowers its own priority first (no `nice` binary needed) and, on Linux, asks to be
# stopped when the server dies (PR_SET_PDEATHSIG), so a killed server leaves no training behind;
# a parent that is already gone by then (the pid it was given is not its parent) stops it too.
CHILD = (
    f"import os, sys; os.nice({NICE})\n"
    "if sys.platform == 'linux':\n"
    "    import ctypes, signal; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "    os.getppid() == int(os.environ['AISLE_TRAIN_PARENT']) or sys.exit('the server that started this training is gone')\n"
    "from agent.entrypoints.cli import main; main()"
)


class BackgroundTrainer:
    def __init__(self, settings: Settings, on_done: Callable[[str], None]) -> None:
        self.settings = settings
        self.on_done = on_done
        self._lock = threading.Lock()
        self._slot = threading.Semaphore(1)  # one training process at a time: the machine is shared with the turns
        self._jobs: dict[str, dict[str, Any]] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        atexit.register(self.stop)

    def log_path(self, catalog: str) -> Path:
        return self.settings.home / "logs" / f"train-{catalog}.log"

    def start(self, catalog: str, missing: list[str]) -> bool:
        """Train `catalog`'s models in the background; False when it already was (or is) this run."""
        with self._lock:
            if catalog in self._jobs:
                return False
            self._jobs[catalog] = {"state": "queued", "missing": list(missing), "started": time.time(), "log": str(self.log_path(catalog))}
        threading.Thread(target=self._run, args=(catalog,), name=f"train-{catalog}", daemon=True).start()
        return True

    def training(self, catalog: str) -> bool:
        job = self._jobs.get(catalog)
        return job is not None and job["state"] in ("queued", "training", "loading")

    def status(self, catalog: str) -> dict[str, Any] | None:
        """{"state": queued | training | loading (the new files) | done | failed, "missing", "seconds", "log", "progress"}; None if never started."""
        job = self._jobs.get(catalog)
        if job is None:
            return None
        out = {k: v for k, v in job.items() if k != "started"}
        out["seconds"] = round((job.get("ended") or time.time()) - job["started"], 1)
        out.pop("ended", None)
        if job["state"] == "training":
            out["progress"] = _last_line(Path(job["log"]))
        return out

    def stop(self) -> None:
        """Stop the training processes this server started (at exit: they would outlive it)."""
        for proc in list(self._procs.values()):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _run(self, catalog: str) -> None:
        job = self._jobs[catalog]
        path = Path(job["log"])
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = False
        with self._slot:
            job["state"], job["started"] = "training", time.time()
            log.info("training %s for %s in the background (log: %s)", ", ".join(job["missing"]), catalog, path)
            env = {**os.environ, **self.settings.as_env(), "AISLE_TRAIN_PARENT": str(os.getpid())}
            try:
                with path.open("w") as out:
                    proc = subprocess.Popen([sys.executable, "-c", CHILD, "train", "models", "--catalog", catalog], env=env, stdout=out, stderr=subprocess.STDOUT)
                    self._procs[catalog] = proc
                    code = proc.wait()
                ok = code == 0
                job["exit_code"] = code
            except OSError as exc:
                job["error"] = str(exc)
        job["ended"] = time.time()
        (log.info if ok else log.warning)("background training of %s %s after %.0f s (log: %s)", catalog, "finished" if ok else "FAILED", job["ended"] - job["started"], path)
        if ok:
            job["state"] = "loading"
            try:
                self.on_done(catalog)  # returns once the new models serve
            except Exception:
                log.exception("loading the newly trained models of %s failed", catalog)
        job["state"] = "done" if ok else "failed"


def _last_line(path: Path, tail: int = 2000) -> str:
    """The last progress line of the log (tqdm redraws its bar with carriage returns)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - tail))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    pieces = [p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip()]
    return pieces[-1][-160:] if pieces else ""
