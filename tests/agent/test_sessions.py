"""Session store: real SQLite files, real threads."""

from __future__ import annotations

import threading

import pytest

from agent.chat.store import ConcurrentUpdate, SessionStore, UnknownSession


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "sessions.sqlite")
    yield s
    s.close()


def test_create_get_and_save_state(store):
    sid = store.create("mg-shopdial", {"price_max": 20})
    rec = store.get(sid)
    assert rec.catalog == "mg-shopdial" and rec.state == {"price_max": 20} and rec.version == 0
    version = store.save_state(sid, {"price_max": 15}, expected_version=0)
    assert version == 1 and store.get(sid).state == {"price_max": 15}


def test_ids_are_random_and_unknown_ids_raise(store):
    ids = {store.create("mg-shopdial", {}) for _ in range(20)}
    assert len(ids) == 20 and all(len(i) >= 16 for i in ids)
    for bad in ("x" * 22, "not an id!", "", "../../etc/passwd", "a" * 500):
        with pytest.raises(UnknownSession) as err:
            store.get(bad)
        assert "POST /v1/sessions" in str(err.value)  # the error says what to do
    with pytest.raises(UnknownSession):
        store.record_turn("y" * 22, "hi", "hello", {})
    with pytest.raises(UnknownSession):
        store.set_feedback("z" * 22, "1", 1)


def test_state_turns_and_feedback_survive_a_restart(tmp_path):
    path = tmp_path / "s.sqlite"
    first = SessionStore(path)
    sid = first.create("amazon-office-2014", {"avoid_brands": ["Swingline"]})
    first.record_turn(sid, "staplers, not Swingline", "Here are ...", {"items": ["1", "2"]}, state={"avoid_brands": ["Swingline"], "shown": ["1", "2"]})
    first.set_feedback(sid, "2", -1)
    first.close()

    second = SessionStore(path)  # a new process would do exactly this
    rec = second.get(sid)
    assert rec.state == {"avoid_brands": ["Swingline"], "shown": ["1", "2"]}
    turns = second.turns(sid)
    assert [t.message for t in turns] == ["staplers, not Swingline"] and turns[0].payload == {"items": ["1", "2"]}
    assert second.feedback(sid) == {"2": -1}
    second.close()


def test_feedback_replaces_earlier_vote_and_validates(store):
    sid = store.create("mg-shopdial", {})
    store.set_feedback(sid, "Books:1", 1)
    store.set_feedback(sid, "Books:1", -1)
    store.set_feedback(sid, "Books:2", 1)
    assert store.feedback(sid) == {"Books:1": -1, "Books:2": 1}
    with pytest.raises(ValueError, match="1 \\(thumbs up\\) or -1"):
        store.set_feedback(sid, "Books:1", 5)


def test_stale_version_is_refused(store):
    sid = store.create("mg-shopdial", {})
    store.save_state(sid, {"a": 1}, expected_version=0)
    with pytest.raises(ConcurrentUpdate, match="retry"):
        store.save_state(sid, {"a": 2}, expected_version=0)
    with pytest.raises(ConcurrentUpdate):
        store.record_turn(sid, "m", "r", {}, state={}, expected_version=0)


def test_concurrent_sessions_do_not_see_each_other(store):
    """16 threads, each with its own session, writing 15 turns at the same time."""
    n_threads, n_turns = 16, 15
    ids: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        try:
            sid = store.create("mg-shopdial", {"owner": k, "count": 0})
            ids[k] = sid
            start.wait()
            for t in range(n_turns):
                rec = store.get(sid)
                assert rec.state["owner"] == k
                store.record_turn(sid, f"msg {k}-{t}", f"reply {k}-{t}", {"k": k}, state={"owner": k, "count": rec.state["count"] + 1}, expected_version=rec.version)
                store.set_feedback(sid, f"item-{k}", 1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for k, sid in ids.items():
        rec = store.get(sid)
        assert rec.state == {"owner": k, "count": n_turns}
        turns = store.turns(sid)
        assert [t.message for t in turns] == [f"msg {k}-{t}" for t in range(n_turns)]
        assert store.feedback(sid) == {f"item-{k}": 1}


def test_delete_and_purge(store):
    old = store.create("mg-shopdial", {})
    store.record_turn(old, "hi", "hello", {})
    store.delete(old)
    with pytest.raises(UnknownSession):
        store.get(old)
    keep = store.create("mg-shopdial", {})
    assert store.purge(older_than_s=3600) == 0 and store.exists(keep)
    assert store.purge(older_than_s=-1) == 1 and not store.exists(keep)
