"""`aisle sessions ...`: look at the session store and purge idle sessions (SQLite, or the
PostgreSQL database of AISLE_SESSIONS_URL).

    aisle sessions list --limit 20
    aisle sessions purge                    # sessions idle longer than AISLE_SESSION_TTL_S
    aisle sessions purge --older-than 7d    # or any age: 90s, 15m, 12h, 7d, 2w
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import Annotated, Optional

import typer

from agent.entrypoints.cli_app import fail, settings_of

sessions_app = typer.Typer(help="Conversation sessions: list them, purge idle ones.", no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "15m", "12h", "7d" or "2w"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration; write a number with a unit: 90s, 15m, 12h, 7d, 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _with_store(settings, use):
    """`use(store)` on the configured session store, closed after; a store error is one CLI line."""
    from agent.chat.store import StoreUnavailable, make_session_store

    try:
        store = make_session_store(settings)
        try:
            return use(store)
        finally:
            store.close()
    except StoreUnavailable as exc:
        fail(str(exc))


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@sessions_app.command("list")
def list_sessions(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N sessions, most recently used first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The live sessions, most recently used first."""
    sessions = _with_store(settings_of(ctx), lambda store: store.list_sessions(limit))
    if as_json:
        rows = [{"session_id": s.id, "catalog": s.catalog, "owner": s.owner, "created_at": s.created_at, "updated_at": s.updated_at, "version": s.version} for s in sessions]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not sessions:
        typer.echo("no live sessions")
    for s in sessions:
        typer.echo(f"{s.id}  {s.catalog:<20}  last used {_when(s.updated_at)}  created {_when(s.created_at)}  key {s.owner or '-'}")


@sessions_app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[Optional[str], typer.Option("--older-than", help="Idle time, e.g. 90s, 15m, 12h, 7d, 2w (default: AISLE_SESSION_TTL_S).")] = None,
) -> None:
    """Delete sessions idle for longer than --older-than (default: the session TTL), with their turns and feedback."""
    from agent.chat.store import human_duration

    settings = settings_of(ctx)
    age = parse_duration(older_than) if older_than is not None else settings.session_ttl_s
    if older_than is None and age <= 0:
        fail("sessions never expire here (AISLE_SESSION_TTL_S=0); say how old to purge, e.g. --older-than 30d")
    purged = _with_store(settings, lambda store: store.purge(age))
    typer.echo(f"purged {purged} session{'s' if purged != 1 else ''} idle for more than {human_duration(age)}")
