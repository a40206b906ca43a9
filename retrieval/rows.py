"""Published next-item splits: one row per (user, history, next item), as the generative
recommender papers publish them (MiniOneRec's `valid.csv` / `test.csv`: `user_id`,
`history_item_id` = up to 10 earlier item ids, `item_id` = the next one).

A user's rows in one file are consecutive steps of one sequence (row k+1's history ends with row
k's target), so `sequences` rebuilds each user's sequence over the period and `first_histories`
gives what the user had bought before it. Training data for a period is exactly what precedes
it (`training_histories`): nothing a model learns from is a target of the rows it is scored on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.catalog import CatalogError

PERIODS = ("valid", "test")


@dataclass(frozen=True)
class Row:
    user: str
    history: tuple[str, ...]  # oldest first
    target: str


def read_rows(path: Path | str, known: Iterable[str] | None = None) -> list[Row]:
    """Rows of a split file (CSV with user_id, history_item_id, item_id). A bad row fails with its
    line number; `known` (catalog ids) rejects targets or history items outside the catalog."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"split file {path} does not exist")
    ids = set(known) if known is not None else None
    rows: list[Row] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "history_item_id", "item_id"} - set(reader.fieldnames or ())
        if missing:
            raise CatalogError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}; a split file needs user_id, history_item_id (a list of ids) and item_id")
        for line, rec in enumerate(reader, start=2):
            try:
                history = json.loads(rec["history_item_id"])
                if not isinstance(history, list):
                    raise ValueError("not a list")
            except ValueError as exc:
                raise CatalogError(f"{path.name}:{line}: history_item_id {rec['history_item_id'][:60]!r} is not a JSON list of ids ({exc})") from None
            row = Row(str(rec["user_id"]), tuple(str(i) for i in history), str(rec["item_id"]).strip())
            if not row.user or not row.target:
                raise CatalogError(f"{path.name}:{line}: empty user_id or item_id")
            if ids is not None and (row.target not in ids or any(i not in ids for i in row.history)):
                raise CatalogError(f"{path.name}:{line}: item id not in the catalog (target {row.target!r} or one of its history items)")
            rows.append(row)
    if not rows:
        raise CatalogError(f"{path.name}: no rows")
    return rows


def sequences(rows: Sequence[Row]) -> dict[str, list[str]]:
    """Each user's sequence over the split: the first row's history, then every target in order."""
    out: dict[str, list[str]] = {}
    for row in rows:
        if row.user not in out:
            out[row.user] = list(row.history)
        out[row.user].append(row.target)
    return out


def first_histories(rows: Sequence[Row]) -> dict[str, list[str]]:
    """Each user's history at their first row: what they had bought before the split's period."""
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row.user, list(row.history))
    return out


def merge(older: Mapping[str, Sequence[str]], newer: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Per user, one sequence from two views of it (`newer` may end later). When one ends with the
    other (both are suffixes of the same purchases, the rows keep only the last 10) the longer
    wins; otherwise `newer` continues `older` after their longest overlap."""
    out = {u: list(s) for u, s in older.items()}
    for user, seq in newer.items():
        seq = list(seq)
        old = out.get(user)
        if not old or old[-len(seq) :] == seq:
            out[user] = old if old and len(old) >= len(seq) else seq
        elif seq[-len(old) :] == old:
            out[user] = seq
        else:
            k = next((k for k in range(min(len(old), len(seq)), 0, -1) if old[-k:] == seq[:k]), 0)
            out[user] = old + seq[k:]
    return {u: s for u, s in out.items() if s}


def training_histories(valid: Sequence[Row], test: Sequence[Row], period: str) -> dict[str, list[str]]:
    """What precedes `period`, per user. "test": the valid rows (history + target) and, for each
    test user, the history of their first test row. "valid": each valid user's first-row history,
    and the first-row history of test users with no valid row (theirs holds no valid-period item;
    a test user who also has valid rows is represented by those, since their test history
    contains valid targets)."""
    if period == "test":
        return merge(sequences(valid), first_histories(test))
    if period == "valid":
        valid_users = {r.user for r in valid}
        later = {u: h for u, h in first_histories(test).items() if u not in valid_users}
        return merge(first_histories(valid), later)
    raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
