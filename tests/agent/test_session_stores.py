"""The session store contract on both backends (SQLite and a real PostgreSQL server), and two
replicas (two Agents, two PostgreSQL stores, one database) sharing sessions with no lost update.

PostgreSQL: `.ci/run` starts a throwaway server (scripts/postgres_test_server.sh) and exports
AISLE_TEST_POSTGRES_URL; without it the PostgreSQL cases skip (and fail under CI). Each test gets a
schema of its own (`search_path` in the URL), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.chat.agent import Agent
from agent.chat.store import BaseSessionStore, ConcurrentUpdate, SessionExpired, SQLiteSessionStore, StoreUnavailable, UnknownSession
from agent.chat.store_postgres import PostgresSessionStore
from agent.errors import TooManySessions
from agent.settings import REPO_ROOT, Settings
from tests.conftest import free_port
from tests.fast.conftest import SHOP_ROWS, ScriptedEngine, make_catalog, share_models

PG_URL = os.environ.get("AISLE_TEST_POSTGRES_URL", "")


class Clock:
    """A clock the test moves: TTLs checked without sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def with_params(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the test server whose tables live in a fresh schema."""
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("AISLE_TEST_POSTGRES_URL is unset under CI: .ci/run starts the server with scripts/postgres_test_server.sh")
        pytest.skip('AISLE_TEST_POSTGRES_URL is unset; start a test server: pg_env=$(bash scripts/postgres_test_server.sh start) && eval "$pg_env"')
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield with_params(PG_URL, options=f"-csearch_path%3D{schema}")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., BaseSessionStore]]:
    """Opens stores of one backend on one database (call it twice: two processes' stores)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened: list[BaseSessionStore] = []

    def make(**kwargs: Any) -> BaseSessionStore:
        store = PostgresSessionStore(url, **kwargs) if url else SQLiteSessionStore(tmp_path / "sessions.sqlite", **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def count(store: BaseSessionStore, table: str) -> int:
    with store._read() as db:
        return db.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"]


# --- the contract ------------------------------------------------------------------------------------------


def test_sessions_turns_feedback_and_delete(open_store):
    store = open_store()
    sid = store.create("tiny-shop", {"price_max": 20}, owner="key:abc")
    rec = store.get(sid)
    assert (rec.catalog, rec.state, rec.version, rec.owner) == ("tiny-shop", {"price_max": 20}, 0, "key:abc")
    assert store.save_state(sid, {"price_max": 15}, expected_version=0) == 1
    assert store.record_turn(sid, "cheaper", "Here are ...", {"items": ["s1"]}, state={"price_max": 10}, expected_version=1) == 1
    assert store.record_turn(sid, "why?", "Because ...", {"action": "explain"}) == 2  # no state: the version stays
    assert store.get(sid).version == 2 and store.get(sid).state == {"price_max": 10}
    assert [(t.turn_no, t.message, t.payload) for t in store.turns(sid)] == [(1, "cheaper", {"items": ["s1"]}), (2, "why?", {"action": "explain"})]
    assert [t.turn_no for t in store.turns(sid, limit=1)] == [2]
    store.set_feedback(sid, "s1", 1)
    store.set_feedback(sid, "s1", -1)
    store.set_feedback(sid, "s2", 1)
    assert store.feedback(sid) == {"s1": -1, "s2": 1}
    other = open_store()  # another process on the same database sees all of it
    assert other.get(sid).state == {"price_max": 10} and len(other.turns(sid)) == 2
    store.delete(sid)
    for call in (lambda: other.get(sid), lambda: store.delete(sid), lambda: store.turns(sid), lambda: store.set_feedback(sid, "s1", 1)):
        with pytest.raises(UnknownSession):
            call()
    assert (count(store, "turns"), count(store, "feedback")) == (0, 0)  # deleted with the session
    for bad in ("x" * 22, "not an id!", "", "a" * 500):
        with pytest.raises(UnknownSession):
            store.get(bad)
    assert store.ping() is None


def test_stale_write_is_refused_and_changes_nothing(open_store):
    store = open_store()
    sid = store.create("tiny-shop", {"n": 0})
    store.save_state(sid, {"n": 1}, expected_version=0)
    with pytest.raises(ConcurrentUpdate, match="retry"):
        store.save_state(sid, {"n": 2}, expected_version=0)
    with pytest.raises(ConcurrentUpdate):
        store.record_turn(sid, "m", "r", {}, state={"n": 3}, expected_version=0)
    assert store.get(sid).state == {"n": 1} and store.get(sid).version == 1 and store.turns(sid) == []


def test_idle_sessions_expire(open_store):
    clock = Clock()
    store = open_store(ttl_s=60, clock=clock)
    sid = store.create("tiny-shop", {})
    clock.now += 59
    store.record_turn(sid, "hi", "hello", {})  # a turn keeps it alive
    clock.now += 59
    assert store.get(sid).id == sid and store.exists(sid)
    clock.now += 2
    with pytest.raises(SessionExpired) as err:
        store.get(sid)
    assert err.value.status == 404 and err.value.code == "session_expired" and "POST /v1/sessions" in str(err.value)
    with pytest.raises(UnknownSession) as gone:  # deleted when it was found expired
        store.get(sid)
    assert gone.value.code == "unknown_session" and count(store, "turns") == 0
    late = store.create("tiny-shop", {})
    clock.now += 61
    for call in (lambda: store.record_turn(late, "m", "r", {}), lambda: store.set_feedback(late, "s1", 1), lambda: store.delete(late)):
        with pytest.raises(SessionExpired):
            call()
    assert not store.exists(late)


def test_purge(open_store):
    clock = Clock()
    store = open_store(ttl_s=3600, clock=clock)
    old = store.create("tiny-shop", {})
    store.record_turn(old, "hi", "hello", {})
    store.set_feedback(old, "s1", 1)
    clock.now += 7200
    fresh = store.create("tiny-shop", {})
    clock.now += 10
    assert [s.id for s in store.list_sessions()] == [fresh]  # an expired session is not listed
    assert store.purge() == 1  # default: the TTL
    assert (count(store, "sessions"), count(store, "turns"), count(store, "feedback")) == (1, 0, 0)
    assert store.purge(older_than_s=60) == 0 and store.purge(older_than_s=5) == 1 and not store.exists(fresh)
    assert open_store(clock=clock).purge() == 0  # no TTL: nothing is old by default


def test_list_sessions(open_store):
    clock = Clock()
    store = open_store(clock=clock)
    ids = []
    for n in range(3):
        ids.append(store.create("tiny-shop", {}, owner=f"key:{n}"))
        clock.now += 1
    store.record_turn(ids[0], "hi", "hello", {})
    listed = store.list_sessions(limit=2)
    assert [s.id for s in listed] == [ids[0], ids[2]] and listed[0].owner == "key:0" and listed[0].state == {}


def test_cap_on_live_sessions_per_key(open_store):
    clock = Clock()
    store = open_store(ttl_s=600, max_sessions_per_owner=2, clock=clock)
    first = store.create("tiny-shop", {}, owner="key:a")
    clock.now += 100
    store.create("tiny-shop", {}, owner="key:a")
    with pytest.raises(TooManySessions) as err:
        store.create("tiny-shop", {}, owner="key:a")
    assert err.value.status == 429 and err.value.code == "too_many_sessions"
    assert err.value.retry_after_s == pytest.approx(500)  # when the oldest expires
    assert "DELETE /v1/sessions" in str(err.value)
    store.create("tiny-shop", {}, owner="key:b")  # another key has its own cap
    store.delete(first)
    store.create("tiny-shop", {}, owner="key:a")
    clock.now += 700  # all expired: they no longer count
    store.create("tiny-shop", {}, owner="key:a")
    never = open_store(max_sessions_per_owner=1)
    never.create("tiny-shop", {}, owner="")
    with pytest.raises(TooManySessions) as err:
        never.create("tiny-shop", {}, owner="")
    assert err.value.retry_after_s == 60 and "never expire" in str(err.value)


def test_cap_holds_across_processes(open_store):
    """8 threads on two stores (two replicas) create 24 sessions of one key at once: exactly the cap are made."""
    stores = [open_store(max_sessions_per_owner=5), open_store(max_sessions_per_owner=5)]
    made, refused, errors = [], [], []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait(timeout=30)
        for _ in range(3):
            try:
                made.append(stores[n % 2].create("tiny-shop", {}, owner="key:a"))
            except TooManySessions:
                refused.append(n)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(made) == 5 and len(refused) == 19 and count(stores[0], "sessions") == 5


# --- failures: 503, with what to do --------------------------------------------------------------------------


def test_postgres_down_at_start_up_is_one_clear_line():
    url = f"postgresql://aisle:s3cret@127.0.0.1:{free_port()}/aisle"
    t0 = time.perf_counter()
    with pytest.raises(StoreUnavailable) as err:
        PostgresSessionStore(url, connect_timeout_s=1)
    message = str(err.value)
    assert err.value.status == 503 and err.value.code == "session_store_unavailable"
    assert "\n" not in message and "s3cret" not in message and "127.0.0.1" in message and "AISLE_SESSIONS_URL" in message, message
    assert time.perf_counter() - t0 < 10


def test_postgres_going_down_answers_503_then_recovers(pg_url):
    """The database stops taking connections (as a server that is down) and comes back."""
    dbname = "down_" + secrets.token_hex(4)
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE DATABASE {dbname}")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the user of AISLE_TEST_POSTGRES_URL may not create databases (the test server's may)")
    url = PG_URL.rsplit("/", 1)[0] + "/" + dbname
    store = PostgresSessionStore(url, connect_timeout_s=1)
    try:
        sid = store.create("tiny-shop", {})
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
        with pytest.raises(StoreUnavailable) as err:
            store.get(sid)
        assert "AISLE_SESSIONS_URL" in str(err.value) and "aisle:aisle" not in str(err.value)
        with pytest.raises(StoreUnavailable):
            store.ping()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")
        deadline = time.monotonic() + 20
        while True:  # the pool reconnects on its own: no restart
            try:
                assert store.get(sid).id == sid
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert store.ping() is None
    finally:
        store.close()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {dbname} WITH (FORCE)")


# --- two replicas on one PostgreSQL database ------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = share_models(tmp_path_factory.mktemp("replicas"))
    return Settings(home=home, chroma_url=None, llm="transformers", data_dir=REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="module")
def shop_searcher(replica_settings: Settings):
    from retrieval.search import open_searcher

    return open_searcher(replica_settings, catalog=make_catalog(SHOP_ROWS, name="tiny-shop"), progress=False)


@pytest.fixture
def replicas(pg_url: str, replica_settings: Settings, shop_searcher) -> Iterator[tuple[Agent, Agent]]:
    """Two Agents as two `aisle serve` processes would have them: each its own store (own pool)."""
    agents = tuple(
        Agent(replica_settings, store=PostgresSessionStore(pg_url), engine=ScriptedEngine(), searchers={"tiny-shop": shop_searcher}, default_catalog="tiny-shop", rank_mode="none")
        for _ in range(2)
    )
    yield agents
    for agent in agents:
        agent.store.close()


def test_a_session_made_on_one_replica_continues_on_the_other(replicas):
    a, b = replicas
    sid = a.new_session()
    first = b.turn(sid, "a stapler under $30")
    assert first.turn_no == 1 and first.items
    follow_up = a.turn(sid, "cheaper")  # a reads the constraints b saved
    assert follow_up.turn_no == 2 and all(i.price is not None and i.price < 30 for i in follow_up.items)
    assert [t["message"] for t in b.session_info(sid)["turns"]] == ["a stapler under $30", "cheaper"]


def test_turns_racing_on_two_replicas_lose_no_update(replicas):
    """Both replicas read the same version before either writes (a barrier at the write): every
    round exactly one turn is saved and the other is refused with ConcurrentUpdate."""
    a, b = replicas
    sid = a.new_session()
    rounds = 5
    at_write = threading.Barrier(2)
    for agent in replicas:
        real = agent.store.record_turn

        def record_turn(*args: Any, _real: Callable[..., int] = real, **kwargs: Any) -> int:
            at_write.wait(timeout=30)
            return _real(*args, **kwargs)

        agent.store.record_turn = record_turn  # type: ignore[method-assign]
    saved: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def shopper(agent: Agent, name: str) -> None:
        for n in range(rounds):
            try:
                saved.append(agent.turn(sid, f"a stapler ({name} {n})").turn_no)
            except ConcurrentUpdate:
                refused.append(name)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=shopper, args=(agent, name)) for agent, name in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(saved) == list(range(1, rounds + 1)) and len(refused) == rounds
    info = a.session_info(sid)
    assert len(info["turns"]) == rounds and info["state"]["turns"] == rounds  # every saved turn's state is in


def test_free_running_replicas_lose_no_update(replicas):
    """3 threads per replica, 4 turns each, no coordination: each turn is saved or refused, and the
    state counts exactly the saved ones."""
    sid = replicas[0].new_session()
    saved: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def shopper(agent: Agent, n: int) -> None:
        start.wait(timeout=30)
        for k in range(4):
            try:
                saved.append(agent.turn(sid, f"a pen {n}-{k}").turn_no)
            except ConcurrentUpdate:
                refused.append(n)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=shopper, args=(replicas[n % 2], n)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(saved) + len(refused) == 24 and saved
    assert sorted(saved) == list(range(1, len(saved) + 1))  # turn numbers: no gap, no duplicate
    info = replicas[1].session_info(sid)
    assert len(info["turns"]) == len(saved) and info["state"]["turns"] == len(saved)
