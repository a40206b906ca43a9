"""Progress bars of long jobs (indexing, training): one tqdm bar per job.

On a terminal the bar redraws in place. Written to a log or a pipe (CI, `aisle serve`'s background
training, `2> train.log`) every redraw reads as a line of its own, so there it redraws at most once
every LOG_INTERVAL_S: six lines a minute rather than two per epoch, and still fresh enough for the
training progress that /ready reads from the log's last line (agent/train/background.py). Callers
set their postfix (epoch loss, validation score) with `refresh=False`, so it shows at the next redraw.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

TERMINAL_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


def job_bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str, total: int | None = None, enabled: bool = True, leave: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar on stderr, throttled when stderr is not a terminal."""
    stream = sys.stderr
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        iterable,
        desc=desc,
        unit=unit,
        total=total,
        initial=initial,
        disable=not enabled,
        leave=leave,
        file=stream,
        mininterval=TERMINAL_INTERVAL_S if terminal else LOG_INTERVAL_S,
    )
