"""Session lifetime and store failures through the HTTP API and the CLI: DELETE /v1/sessions/{id},
expiry, the per-key cap (429 + Retry-After), and 503 JSON when the SQLite file is damaged or full."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.chat.store import SQLiteSessionStore, StoreUnavailable
from agent.entrypoints.api import create_app
from agent.entrypoints.ratelimit import key_id
from agent.errors import DiskFull

KEY = "k"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(agent, store: SQLiteSessionStore | None = None) -> TestClient:
    if store is not None:
        agent.store.close()
        agent.store = store
    return TestClient(create_app(agent.settings, agent=agent, api_key=KEY), headers={"Authorization": f"Bearer {KEY}"})


def error_of(response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


def test_delete_session(tiny_agent):
    agent = tiny_agent()
    client = client_for(agent)
    sid = client.post("/v1/turn", json={"message": "a quiet stapler"}).json()["session_id"]
    error_of(client.delete(f"/v1/sessions/{sid}", headers={"Authorization": ""}), 401, "missing_api_key")
    r = client.delete(f"/v1/sessions/{sid}")
    assert r.status_code == 204 and r.content == b""
    error_of(client.get(f"/v1/sessions/{sid}"), 404, "unknown_session")
    error_of(client.post("/v1/turn", json={"session_id": sid, "message": "cheaper"}), 404, "unknown_session")
    error_of(client.delete(f"/v1/sessions/{sid}"), 404, "unknown_session")
    error_of(client.delete("/v1/sessions/not-an-id"), 404, "unknown_session")


def test_sessions_expire_after_the_ttl(tiny_agent, tmp_path):
    clock = Clock()
    agent = tiny_agent()
    client = client_for(agent, SQLiteSessionStore(tmp_path / "ttl.sqlite", ttl_s=60, clock=clock))
    sid = client.post("/v1/turn", json={"message": "a label maker"}).json()["session_id"]
    clock.now += 50
    assert client.post("/v1/turn", json={"session_id": sid, "message": "cheaper"}).status_code == 200
    clock.now += 50  # 50 s after the last turn: still alive
    assert client.get(f"/v1/sessions/{sid}").status_code == 200
    clock.now += 11
    error = error_of(client.post("/v1/turn", json={"session_id": sid, "message": "cheaper"}), 404, "session_expired")
    assert "POST /v1/sessions" in error["message"]
    error_of(client.get(f"/v1/sessions/{sid}"), 404, "unknown_session")  # and it is gone


def test_cap_on_sessions_per_key_answers_429(tiny_agent, tmp_path):
    clock = Clock()
    agent = tiny_agent()
    store = SQLiteSessionStore(tmp_path / "cap.sqlite", ttl_s=3600, max_sessions_per_owner=2, clock=clock)
    client = client_for(agent, store)
    first = client.post("/v1/sessions").json()["session_id"]
    clock.now += 600
    client.post("/v1/turn", json={"message": "a gel pen"})
    assert store.get(first).owner == key_id(KEY, None) != ""  # a fingerprint, never the key itself
    for response in (
        client.post("/v1/sessions"),
        client.post("/v1/turn", json={"message": "a stapler"}),
        client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a stapler"}]}),
    ):
        error = error_of(response, 429, "too_many_sessions")
        assert response.headers["Retry-After"] == "3000"  # when the oldest expires
        assert "DELETE /v1/sessions/{id}" in error["message"]
    assert len(store.list_sessions()) == 2  # nothing was created, no turn ran
    assert client.delete(f"/v1/sessions/{first}").status_code == 204
    assert client.post("/v1/sessions").status_code == 201


def test_damaged_store_answers_503_json(tiny_agent, tmp_path):
    agent = tiny_agent()
    path = tmp_path / "damaged.sqlite"
    client = client_for(agent, SQLiteSessionStore(path))
    sid = client.post("/v1/sessions").json()["session_id"]
    agent.store.close()
    for extra in path.parent.glob("damaged.sqlite-*"):  # the WAL and its index
        extra.unlink()
    path.write_bytes(b"this is not a database " * 512)
    for response in (
        client.post("/v1/turn", json={"session_id": sid, "message": "a stapler"}),
        client.post("/v1/turn", json={"message": "a stapler"}),
        client.post("/v1/sessions"),
        client.get(f"/v1/sessions/{sid}"),
        client.delete(f"/v1/sessions/{sid}"),
    ):
        error = error_of(response, 503, "session_store_unavailable")
        assert str(path) in error["message"] and "move it aside" in error["message"]
    with pytest.raises(StoreUnavailable):
        agent.store.ping()
    ready = client.get("/ready")  # and readiness says why
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    assert ready.json()["checks"]["session_store"]["status"] == "fail" and "move it aside" in ready.json()["checks"]["session_store"]["detail"]


def test_full_store_is_unavailable_and_ping_says_why(tmp_path):
    store = SQLiteSessionStore(tmp_path / "full.sqlite")
    assert store.ping() is None
    db = store._connection()
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")  # the disk is full
    with pytest.raises(DiskFull, match="free space"):
        for _ in range(100):
            store.create("tiny-shop", {"padding": "x" * 5000})
    store.close()


@pytest.mark.parametrize("breakage", ["garbage", "under_a_file"])
def test_bad_store_at_start_up_is_one_clear_line(tmp_path, breakage):
    if breakage == "garbage":
        path = tmp_path / "sessions.sqlite"
        path.write_bytes(b"\x00garbage" * 1000)
    else:
        (tmp_path / "afile").write_text("not a folder")
        path = tmp_path / "afile" / "sessions.sqlite"
    with pytest.raises(StoreUnavailable) as err:
        SQLiteSessionStore(path)
    assert "\n" not in str(err.value) and err.value.status == 503
    assert ("move it aside" if breakage == "garbage" else "AISLE_HOME") in str(err.value)


def test_sessions_cli(tmp_path):
    from agent.entrypoints.cli import app

    home = tmp_path / "home"
    store = SQLiteSessionStore(home / "sessions.sqlite")
    ids = [store.create("tiny-shop", {}) for _ in range(3)]
    store.close()
    runner = CliRunner()
    listed = runner.invoke(app, ["--home", str(home), "sessions", "list", "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.splitlines()) == 2 and all(line.split()[0] in ids for line in listed.stdout.splitlines())
    kept = runner.invoke(app, ["--home", str(home), "sessions", "purge"])
    assert kept.exit_code == 0 and "purged 0 sessions" in kept.stdout
    purged = runner.invoke(app, ["--home", str(home), "sessions", "purge", "--older-than", "0s"])
    assert purged.exit_code == 0 and "purged 3 sessions" in purged.stdout, purged.output
    bad = runner.invoke(app, ["--home", str(home), "sessions", "purge", "--older-than", "a week"])
    assert bad.exit_code == 2 and "not a duration" in bad.output

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "sessions.sqlite").write_bytes(b"garbage" * 1000)
    failed = runner.invoke(app, ["--home", str(tmp_path / "broken"), "sessions", "list"])
    assert failed.exit_code == 2 and "error: session store" in failed.output and "Traceback" not in failed.output


def test_factory_opens_sqlite_without_a_url(tmp_path: Path):
    """SQLite at the settings' path with their TTL and cap; a sessions URL must be PostgreSQL's."""
    from agent.chat.store import make_session_store
    from agent.settings import Settings

    settings = Settings(home=tmp_path, session_ttl_s=5, max_sessions_per_key=3)
    store = make_session_store(settings)
    assert isinstance(store, SQLiteSessionStore) and store.path == tmp_path / "sessions.sqlite"
    assert (store.ttl_s, store.max_sessions_per_owner) == (5, 3)
    store.close()
    with pytest.raises(ValueError, match="sessions_url"):
        Settings(sessions_url="mysql://x")
