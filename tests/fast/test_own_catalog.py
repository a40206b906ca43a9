"""A shop's own catalog end to end: `aisle catalog add` from a CSV with its own column names, then
search, recommend, chat, the API and the evals answer from it; `update` re-embeds only changed
text and hides removed and out-of-stock items; a refused import leaves the index as it was.
Real registry, real Chroma, real MiniLM; the scripted engine stands in for the LLM."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.settings import Settings
from retrieval.catalog import CatalogError
from retrieval.embed import Embedder
from retrieval.index import CatalogIndex, make_chroma_client
from retrieval.overlay import iter_with_overlay
from retrieval.registry import FeedSpec, ImportRefused, Registry
from retrieval.search import SearchFilters, open_searcher

from .conftest import SHOP_ROWS, ScriptedEngine, share_models

COLUMNS = {"id": "Item Code", "title": "Product", "brand": "Maker", "price": "Cost (USD)", "categories": "Section", "description": "Blurb"}
MAP = [f"{field}={column}" for field, column in COLUMNS.items()]


def write_feed(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*COLUMNS.values(), "Colour", "Stock"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**{COLUMNS[k]: row.get(k, "") for k in COLUMNS}, "Colour": row.get("colour", ""), "Stock": row.get("stock", "in stock")})
    return path


def write_text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def histories() -> list[tuple[str, str]]:
    """Shoppers who buy within a category, in order: (user, item)."""
    groups = [["s1", "s2", "s3", "s5"], ["p1", "p2", "p4", "p3"], ["d1", "d2", "d3"], ["l1", "l2", "l3"]]
    events = []
    for n in range(24):
        group = groups[n % len(groups)]
        for k in range(len(group)):
            events.append((f"u{n}", group[(n // len(groups) + k) % len(group)]))
    return events


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Any]:
    """`aisle catalog add` through the real CLI into a fresh home."""
    from agent.entrypoints.cli import app

    tmp = tmp_path_factory.mktemp("own-catalog")
    rows = [dict(r, colour="red" if r["id"] in ("s1", "p4") else "") for r in SHOP_ROWS]
    feed = write_feed(tmp / "products.csv", rows)
    orders = tmp / "orders.csv"
    with orders.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "sku", "event_time"])
        for t, (user, item) in enumerate(histories()):
            writer.writerow([user, item, 1_700_000_000 + t])
    home = share_models(tmp / "home")
    result = CliRunner().invoke(app, ["--home", str(home), "catalog", "add", "myshop", "--items", str(feed), "--interactions", str(orders), *sum((["--map", m] for m in MAP), [])])
    assert result.exit_code == 0, result.output
    settings = Settings(home=home, chroma_url=None, llm="transformers", catalog="myshop")
    return {"settings": settings, "tmp": tmp, "rows": rows, "cli": result.output}


def test_add_imports_counts_and_indexes(shop):
    settings = shop["settings"]
    entry = Registry(settings).entry("myshop")
    assert (entry.n_items, entry.n_available, entry.n_users, entry.n_events) == (16, 16, 24, len(histories()))
    assert "16 added" in shop["cli"] and "added 16, re-embedded 0" in shop["cli"]
    assert f"report (every rejected row and warning): {shop['settings'].home / 'catalogs' / 'reports' / 'myshop'}" in shop["cli"]
    index = CatalogIndex(make_chroma_client(settings), "myshop", Embedder.from_settings(settings))
    assert index.count() == 16


def test_search_recommend_and_chat_answer_from_the_new_catalog(shop):
    settings = shop["settings"]
    searcher = open_searcher(settings, "myshop", build=False, progress=False)
    ids = {r["id"] for r in SHOP_ROWS}
    hits = searcher.search("quiet stapler", 3)
    assert hits and hits[0].item.id == "s2" and all(h.item.id in ids for h in hits)
    red = searcher.search("stapler", 5, filters=SearchFilters(attributes=(("colour", "red"),)))
    assert [h.item.id for h in red][0] == "s1" and {h.item.id for h in red} == {"s1", "p4"}  # only the red items

    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from agent.recommend.pipeline import Recommender, RecommendRequest
    from retrieval.registry import load_interactions

    history = load_interactions(settings, "myshop")["u0"]
    assert history == ["s1", "s2", "s3", "s5"]  # ordered by the timestamps
    assert load_interactions(settings, "myshop")["u4"] == ["s2", "s3", "s5", "s1"]
    rec = Recommender(settings, "myshop", engine=ScriptedEngine(), searcher=searcher, n_candidates=8)
    result = rec.recommend(RecommendRequest(history=history[:3], k=3, rank_mode="none", with_reasons=False))
    assert result.items and all(r.item.id in ids for r in result.items)
    assert "s5" in [r.item.id for r in result.items]  # the co-buying pattern of the shop's own history
    # A re-purchase in the history reads as the distinct history: same items, none of the history.
    again = rec.recommend(RecommendRequest(history=["s1", "s2", "s1", "s3", "s3"], k=3, rank_mode="none", with_reasons=False))
    same = rec.recommend(RecommendRequest(history=["s2", "s1", "s3"], k=3, rank_mode="none", with_reasons=False))
    assert [r.item.id for r in again.items] == [r.item.id for r in same.items] and not {"s1", "s2", "s3"} & {r.item.id for r in again.items}
    _, reasons = rec._contexts(RecommendRequest(history=["s1", "s2", "s1"]))
    assert [t[:9] for t in reasons.history_titles] == ["Bostitch ", "Swingline"]  # reasons cite each bought item once

    agent = Agent(settings, store=SessionStore(shop["tmp"] / "sessions.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    assert "myshop" in agent.catalogs()
    turn = agent.turn(None, "a label maker", catalog="myshop")
    assert turn.items and all(i.id in ids for i in turn.items) and turn.items[0].id.startswith("l")
    shown = turn.items[0].to_dict()
    assert shown["currency"] == "" and shown["attributes"] == {}


def test_update_reembeds_only_changed_text_and_hides_removed_and_out_of_stock(shop):
    settings = shop["settings"]
    rows = [dict(r) for r in shop["rows"]]
    by_id = {r["id"]: r for r in rows}
    by_id["s2"]["price"] = 17.49  # price only
    by_id["p1"]["description"] = "Retractable gel ink pens in black, now with a comfort grip."  # text
    by_id["d2"]["stock"] = "out of stock"
    rows = [r for r in rows if r["id"] != "l3"]  # removed
    rows.append({"id": "n1", "title": "Moleskine Classic Notebook, Ruled", "brand": "Moleskine", "categories": "Office > Notebooks", "price": 19.0})
    feed = write_feed(shop["tmp"] / "products-v2.csv", rows)

    registry = Registry(settings)
    version = registry.version("myshop")
    report = registry.update("myshop", items=str(feed), progress=False)
    assert (report.added, report.changed, report.removed, report.out_of_stock, report.cold) == (1, 3, 1, 1, ["n1"])

    embedded: list[str] = []

    class CountingEmbedder(Embedder):
        def encode(self, texts, *, show_progress=False):
            embedded.extend(texts)
            return super().encode(texts, show_progress=show_progress)

    index = CatalogIndex(make_chroma_client(settings), "myshop", CountingEmbedder.from_settings(settings))
    sync = index.sync(iter_with_overlay(settings, "myshop"), progress=False)
    assert (sync.added, sync.updated, sync.restamped, sync.deleted) == (1, 1, 2, 1)  # d2's stock and s2's price: metadata only
    assert len(embedded) == 3  # p1's title and description records, n1's title record
    assert any("comfort grip" in t for t in embedded) and any("Moleskine" in t for t in embedded)

    searcher = open_searcher(settings, "myshop", build=False, progress=False)
    for query in ("AmazonBasics Quiet Paper Shredder, 12 sheet", "Brother PT-D210 Label Maker Kit"):
        assert not {"d2", "l3"} & {h.item.id for h in searcher.search(query, 16)}
    assert not {"d2", "l3"} & {h.item.id for h in searcher.similar(["d1", "d3"], 10)}
    assert searcher.catalog.items["s2"].price == 17.49

    # A running agent picks the new version up on its next turn.
    assert registry.version("myshop") > version


def test_agent_reloads_a_catalog_that_changed(shop, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    settings = shop["settings"]
    agent = Agent(settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    first = agent.turn(None, "a gel pen", catalog="myshop")
    assert first.items
    rows = [dict(r) for r in shop["rows"] if not r["id"].startswith("p") or r["id"] == "p3"]
    Registry(settings).update("myshop", items=str(write_feed(tmp_path / "v3.csv", rows)), progress=False)
    old = agent.parts("myshop")  # notices the new version and reopens the catalog in the background
    deadline = time.monotonic() + 60
    while agent.parts("myshop") is old:  # the open parts serve until the new ones are ready
        assert time.monotonic() < deadline, "the catalog was not reopened within 60 s"
        time.sleep(0.05)
    second = agent.turn(None, "a gel pen", catalog="myshop")
    assert not {"p1", "p2", "p4"} & {i.id for i in second.items}


def test_a_refused_import_leaves_items_and_index_as_they_were(shop):
    settings = shop["settings"]
    registry = Registry(settings)
    index = CatalogIndex(make_chroma_client(settings), "myshop", Embedder.from_settings(settings))
    before_items, before_index, version = registry.load("myshop").items, index.stored_hashes(), registry.version("myshop")
    bad = shop["tmp"] / "broken.csv"
    bad.write_text("Item Code,Product,Maker,Cost (USD),Section,Blurb\nx1,,A,3,,\nx2,Thing,A,free,,\n,Nothing,A,1,,\nx4,Pen,A,2,,\n")
    with pytest.raises(ImportRefused, match="3 of 4 rows are bad"):
        registry.update("myshop", items=str(bad), progress=False)
    with pytest.raises(CatalogError, match="--map description=Blurb: no column 'Blurb'"):  # the registered map still applies
        registry.update("myshop", items=write_text(shop["tmp"] / "other.csv", "Item Code,Product\nx1,Pen\n"), progress=False)
    assert registry.load("myshop").items == before_items and registry.version("myshop") == version
    assert index.stored_hashes() == before_index


def test_events_api_appends_to_the_history(shop, tmp_path):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from agent.entrypoints.api import create_app
    from retrieval.registry import load_interactions

    settings = shop["settings"]
    agent = Agent(settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    client = TestClient(create_app(settings, agent=agent))
    r = client.post("/v1/events", json={"catalog": "myshop", "events": [{"user_id": "new-user", "item_id": "s3", "timestamp": "2024-01-01T00:00:00Z", "event": "view"}, {"user_id": "new-user", "item_id": "s1"}]})
    assert r.status_code == 201, r.text
    assert r.json() == {"catalog": "myshop", "recorded": 2}
    assert load_interactions(settings, "myshop")["new-user"] == ["s3", "s1"]
    bad = client.post("/v1/events", json={"catalog": "myshop", "events": [{"user_id": "x", "item_id": "no-such-item"}]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_item"
    assert "x" not in load_interactions(settings, "myshop")
    wrong = client.post("/v1/events", json={"catalog": "myshop", "events": [{"user_id": "x", "item_id": "s1", "event": "like"}]})
    assert wrong.status_code == 422
    when = client.post("/v1/events", json={"catalog": "myshop", "events": [{"user_id": "x", "item_id": "s1", "timestamp": "soon"}]})
    assert when.status_code == 422 and "timestamp" in when.json()["error"]["message"]
    assert client.post("/v1/events", json={"catalog": "nope", "events": [{"user_id": "x", "item_id": "s1"}]}).json()["error"]["code"] == "unknown_catalog"


def test_ranking_and_copy_evals_run_on_a_registered_catalog(shop, tmp_path):
    from evals.copy_eval import run_copy_eval
    from evals.ranking import RankingConfig, run_ranking_eval

    settings = shop["settings"]
    cfg = RankingConfig(catalog="myshop", users=10, prompts=(), sasrec=False, reason_users=0, out=tmp_path / "ranking", n_candidates=5)
    result = run_ranking_eval(settings, cfg, engine=ScriptedEngine())
    assert result["config"]["catalog"] == "myshop" and result["config"]["users_evaluated"] == 10
    assert {"popularity", "cooccurrence", "pipeline:none", "union:rrf"} <= set(result["systems"])
    assert result["stage"]["recall"]["union"]  # recall ceilings of every source and of the union
    assert (tmp_path / "ranking" / "results.json").is_file()

    # The copy eval needs human descriptions to hide and regenerate: a second catalog that has them.
    words = "sturdy metal body with a soft grip that staples up to twenty sheets and keeps a spare row of staples in the base for busy desks"
    rows = [{"id": f"c{n}", "title": f"{kind} model {n}", "brand": "Acme", "description": f"This {kind.lower()} has a {words}.", "categories": "Office > Desk"} for n, kind in enumerate(["Stapler", "Hole Punch", "Tape Dispenser", "Letter Tray", "Desk Lamp", "Pen Cup"])]
    feed = tmp_path / "described.jsonl"
    feed.write_text("\n".join(json.dumps(r) for r in rows))
    Registry(settings).add("described", FeedSpec(str(feed)), progress=False)
    engine = ScriptedEngine(json_answer={"description": "A stapler for the office.", "selling_point": "Staples paper."})
    copy = run_copy_eval(settings, catalog_name="described", n_items=2, engine=engine, progress=False, pool=4)
    assert copy["catalog"] == "described" and copy["items"] == 2, json.dumps(copy)[:500]
    assert copy["generation"] and copy["retrieval"]


def test_a_thumbs_up_becomes_history_for_the_next_training(shop, tmp_path):
    """Session feedback reaches the models' training data: a like is a `session:<id>` event of the
    shop's catalog (without making running servers reload it); built-in benchmark catalogs and
    `learn_from_sessions=False` are never written."""
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.registry import load_interactions

    settings = shop["settings"]
    registry = Registry(settings)
    version = registry.version("myshop")
    agent = Agent(settings, store=SessionStore(tmp_path / "s.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    turn = agent.turn(None, "a label maker", catalog="myshop")
    liked = turn.items[1].id
    agent.turn(turn.session_id, "I like the second one")
    assert load_interactions(settings, "myshop")[f"session:{turn.session_id}"] == [liked]
    agent.feedback(turn.session_id, turn.items[0].id, -1)  # a thumbs-down is not history
    assert load_interactions(settings, "myshop")[f"session:{turn.session_id}"] == [liked]
    assert registry.version("myshop") == version

    quiet = Agent(settings.model_copy(update={"learn_from_sessions": False}), store=SessionStore(tmp_path / "q.sqlite"), engine=ScriptedEngine(), rank_mode="none")
    other = quiet.turn(None, "a label maker", catalog="myshop")
    quiet.feedback(other.session_id, other.items[0].id, 1)
    assert f"session:{other.session_id}" not in load_interactions(settings, "myshop")


def test_rejected_rows_are_not_searchable_and_broken_markup_is_a_warning(shop):
    """Through the CLI: a row with an unreadable price is not imported, so search never finds it;
    a description with a stray `<li` is imported without the tag, and both are reported apart.
    Each `add` and `check` names its own report file."""
    from agent.entrypoints.cli import app

    settings = shop["settings"]
    rows = [dict(r) for r in SHOP_ROWS]
    rows.append({"id": "x9", "title": "Zanzibar Quill Fountain Pen", "brand": "Zanzibar", "categories": "Office > Pens", "price": "abc", "description": "A quill fountain pen."})
    rows.append({"id": "x8", "title": "Kettlebell Desk Timer", "brand": "Acme", "categories": "Office > Timers", "price": 4.0, "description": "Counts down. <li Magnetic back for the fridge."})
    feed = write_feed(shop["tmp"] / "with-rejects.csv", rows)
    cli = ["--home", str(settings.home), "catalog"]
    added = CliRunner().invoke(app, [*cli, "add", "rejects", "--items", str(feed), "--max-bad-share", "0.1", *sum((["--map", m] for m in MAP), [])])
    assert added.exit_code == 0, added.output
    warnings, rejected = added.output.index("warnings (imported"), added.output.index("rejected (not imported)")
    assert "field 'description': broken HTML" in added.output[warnings:rejected] and "unparseable price 'abc'" in added.output[rejected:]
    reports = settings.home / "catalogs" / "reports" / "rejects"
    [first] = list(reports.glob("*.csv"))
    assert f"report (every rejected row and warning): {first}" in added.output

    catalog = Registry(settings).load("rejects")
    assert "x9" not in catalog.items and catalog.items["x8"].description == "Counts down. Magnetic back for the fridge."
    searcher = open_searcher(settings, "rejects", build=False, progress=False)
    assert "x9" not in {h.item.id for h in searcher.search("Zanzibar Quill Fountain Pen", 18)}
    assert searcher.search("magnetic back for the fridge", 1)[0].item.id == "x8"

    checked = CliRunner().invoke(app, [*cli, "check", "rejects", "--items", str(feed)])
    assert checked.exit_code == 0, checked.output
    [second] = set(reports.glob("*.csv")) - {first}
    assert second.name.startswith("0002-") and second.name.endswith("-check.csv") and str(second) in checked.output
