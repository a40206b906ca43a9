"""Nothing a shopper does may stall the shop: no request trains a model, a turn never waits for the
ranking stage to load, events refit history without reopening the catalog, a feed update reopens
it in the background while the open parts keep serving. Real registry, Chroma, MiniLM and models;
the scripted engine stands in for the LLM."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.chat.turn import PENDING_NOTES
from agent.settings import Settings
from retrieval.registry import Registry

from .conftest import SHOP_ROWS, ScriptedEngine, own_models, write_shop

CATALOG = "nostall-shop"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Settings:
    """A registered catalog with a history and an index, and no trained model."""
    from retrieval.search import open_searcher

    tmp = tmp_path_factory.mktemp("nostall")
    settings = Settings(home=own_models(tmp / "home"), chroma_url=None, llm="transformers", catalog=CATALOG, history_refresh_s=0)
    Registry(settings).add(CATALOG, write_shop(tmp / "feed"), progress=False)
    open_searcher(settings, CATALOG, progress=False)
    return settings


def model_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.models_dir.glob(f"*{CATALOG}*"))


def agent_for(settings: Settings, tmp_path: Path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    return Agent(settings, store=SessionStore(tmp_path / "sessions.sqlite"), engine=ScriptedEngine(), rank_mode="none")


class Fits:
    """Records every fit of a sequence model (a request must never make one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from retrieval.sasrec import SASRecRecommender

        self.calls: list[str] = []
        real = SASRecRecommender.fit

        def fit(model, *args, **kwargs):
            self.calls.append(type(model).__name__)
            return real(model, *args, **kwargs)

        monkeypatch.setattr(SASRecRecommender, "fit", fit)


def test_train_false_never_fits_on_a_catalog_with_history(shop, monkeypatch):
    """`train=False` (what requests pass) only ever loads: the history must not be mistaken for the flag."""
    from agent.recommend.ltr import SourceModels
    from retrieval.sasrec import load_or_train_sasrec
    from retrieval.textseq import load_or_train_textseq

    fits = Fits(monkeypatch)
    assert load_or_train_sasrec(shop, CATALOG, train=False, progress=False) is None
    assert load_or_train_textseq(shop, CATALOG, train=False, progress=False) is None
    models = SourceModels.load(shop, CATALOG, train=False)
    assert (models.sasrec, models.textseq) == (None, None)
    assert fits.calls == [] and model_files(shop) == []


def test_a_turn_answers_while_the_stage_loads_and_says_so(shop, tmp_path, monkeypatch):
    """A slow ranking-stage load (held here by an event) never holds up a turn: "more like the
    first one" answers from similar items with a note, and another session's turn goes on."""
    import agent.recommend.ltr as ltr

    release = threading.Event()
    real = ltr.load_ranking_stage

    def slow(*args, **kwargs):
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(ltr, "load_ranking_stage", slow)
    fits = Fits(monkeypatch)
    agent = agent_for(shop, tmp_path)
    agent.warm_up(CATALOG)
    first = agent.turn(None, "a heavy duty stapler", catalog=CATALOG)
    assert first.items
    more = agent.turn(first.session_id, "more like the first one")
    assert more.action == "recommend" and more.items
    assert PENDING_NOTES["loading"] in more.notes and PENDING_NOTES["loading"] in more.reply
    other = agent.turn(None, "a gel pen", catalog=CATALOG)
    assert other.items
    assert agent.models_status()[CATALOG]["stage"] == "loading"

    release.set()
    agent.wait_for_stage(CATALOG, timeout=60)
    again = agent.turn(first.session_id, "more like the second one")
    assert again.items and "pending" not in again.debug and not set(PENDING_NOTES.values()) & set(again.notes)
    assert agent.models_status()[CATALOG]["stage"] == "ready"
    assert fits.calls == [] and model_files(shop) == []


def test_ready_reports_a_loading_stage(shop, tmp_path, monkeypatch):
    import agent.recommend.ltr as ltr
    from agent.entrypoints.api import create_app

    release = threading.Event()
    real = ltr.load_ranking_stage
    monkeypatch.setattr(ltr, "load_ranking_stage", lambda *a, **k: (release.wait(60), real(*a, **k))[1])
    agent = agent_for(shop, tmp_path)
    agent.warm_up(CATALOG)
    agent.settings = agent.settings.model_copy(update={"ready_cache_s": 0.0})  # each probe checks anew
    client = TestClient(create_app(agent.settings, agent=agent, api_key="k"), headers={"Authorization": "Bearer k"})  # details need the key
    busy = client.get("/ready").json()
    assert busy["status"] == "degraded" and busy["checks"]["models"]["status"] == "degraded"
    assert f"{CATALOG}: ranking stage loading" in busy["checks"]["models"]["detail"]
    release.set()
    agent.wait_for_stage(CATALOG, timeout=60)
    done = client.get("/ready").json()
    assert done["checks"]["models"] == {"status": "ok", "detail": f"{CATALOG}: ranking stage ready"}


def test_events_refit_the_history_without_reopening_the_catalog(shop, tmp_path):
    from agent.chat.agent import Agent
    from agent.entrypoints.api import create_app

    opens: list[str] = []
    real_open = Agent._open

    class Counting(Agent):
        def _open(self, catalog, build, *, reopen=False):
            opens.append(catalog)
            return real_open(self, catalog, build, reopen=reopen)

    from agent.chat.store import SessionStore

    agent = Counting(shop, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    agent.warm_up(CATALOG)
    stage = agent.wait_for_stage(CATALOG, timeout=60)
    assert stage is not None and opens == [CATALOG]
    count = lambda st, item: st.table.counts[st.sources.position[item]]  # noqa: E731
    before = count(stage, "l2")

    client = TestClient(create_app(shop, agent=agent))
    events = [{"user_id": f"fan{n}", "item_id": item} for n in range(5) for item in ("l2", "l1")]  # l2 is each fan's history, l1 the held-out last item
    assert client.post("/v1/events", json={"catalog": CATALOG, "events": events}).status_code == 201
    turn = agent.turn(None, "a label maker", catalog=CATALOG)
    assert turn.items
    loader = agent.parts(CATALOG).recommender.stage_loader
    assert loader.settle(60)
    refreshed = agent.parts(CATALOG).recommender.ranking_stage()
    assert count(refreshed, "l2") == before + 5
    assert opens == [CATALOG], "events must not reopen the catalog"

    # A feed update does reopen it, in the background: the open parts answer until the new ones are ready.
    rows = [dict(r, price=1.0) if r["id"] == "l2" else r for r in SHOP_ROWS]
    folder = tmp_path / "v2"
    Registry(shop).update(CATALOG, items=write_shop(folder, rows).items, progress=False)
    old = agent.parts(CATALOG)
    assert agent.parts(CATALOG) is old  # the turn that notices the change does not wait for it
    for _ in range(600):
        if agent.parts(CATALOG) is not old:
            break
        threading.Event().wait(0.1)
    assert opens == [CATALOG, CATALOG] and agent.parts(CATALOG).items["l2"].price == 1.0
