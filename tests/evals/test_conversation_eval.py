"""The conversation eval on real ReDial / MG-ShopDial data: dialogue handling, the movie catalog,
and (slow) the whole eval end to end with the real LLM."""

from __future__ import annotations

import json

import pytest

from evals.conversation import (
    PAPER_REFERENCE,
    ConversationConfig,
    dialogue_query,
    load_redial_turns,
    redial_cases,
    redial_messages,
    run_conversation_eval,
    shopdial_turns,
    stratified_dialogues,
)
from retrieval.movies import load_redial_catalog, title_from_uri


@pytest.fixture(scope="module")
def redial_catalog(settings):
    return load_redial_catalog(settings.data_dir)


@pytest.fixture(scope="module")
def redial_rows(settings):
    return load_redial_turns(settings.data_dir)


def test_titles_from_dbpedia_uris():
    assert title_from_uri("<http://dbpedia.org/resource/Police_Academy_(1984_film)>") == ("Police Academy (1984)", "1984")
    assert title_from_uri("<http://dbpedia.org/resource/Kids_(film)>") == ("Kids", None)
    assert title_from_uri("<http://dbpedia.org/resource/Super_Troopers>") == ("Super Troopers", None)
    assert title_from_uri("<http://dbpedia.org/resource/Red_(2016_American_film)>") == ("Red (2016)", "2016")
    assert title_from_uri("<http://dbpedia.org/resource/Hostage_(song)>") == ("Hostage (song)", None)  # not a film: qualifier kept
    assert title_from_uri("<http://dbpedia.org/resource/Am%C3%A9lie>") == ("Amélie", None)
    with pytest.raises(ValueError):
        title_from_uri("Police Academy")


def test_redial_catalog(redial_catalog):
    assert len(redial_catalog) == 6281 and not redial_catalog.report.rejected
    assert redial_catalog.items["29891"].title == "Police Academy"  # <...Police_Academy_(film)>
    assert redial_catalog.items["30154"].title == "Red (2016)"  # <...Red_(2016_film)>
    assert redial_catalog.items["14557"].title == "Lethal Weapon"


def test_roles_are_assigned_from_the_end(redial_rows):
    """The turn before the recommender's reply is the seeker's; the source's own `input` field
    starts with 'User:' and therefore mislabels dialogues the recommender opened."""
    row = next(r for r in redial_rows if r["context"][:3] == ["", "Hello!", "Hello!"])
    messages = redial_messages(row["context"])
    assert messages[-1]["role"] == "user" and messages[-1]["content"] == row["context"][-1].strip()
    assert [m["role"] for m in messages] == ["assistant", "user"] * (len(messages) // 2) or messages[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in zip(messages, messages[1:]))


def test_dialogue_query_weights_recent_user_turns():
    msgs = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "sys"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "sys2"},
        {"role": "user", "content": "third"},
    ]
    assert dialogue_query(msgs) == "third\nthird\nsecond\nfirst"
    assert dialogue_query([{"role": "assistant", "content": "hi"}]) is None


def test_cases_drop_already_mentioned_targets(redial_rows, redial_catalog):
    cases, skipped = redial_cases(redial_rows, set(redial_catalog.items))
    assert len(cases) + sum(skipped.values()) == len(redial_rows) == 3552
    by_id = {str(r["turn_id"]): r for r in redial_rows}
    for case in cases[:200]:
        row = by_id[case["id"]]
        mentioned = {str(e) for e in row["prev_entity"]}
        assert case["targets"] and not set(case["targets"]) & mentioned
        assert set(case["exclude"]) <= mentioned
    # the paper's repository evaluates 4,288 (turn, movie) pairs with seen items removed; we get
    # within 1 % of that from prev_entity (its own seen-item rule is not published with the data)
    pairs = sum(len(c["targets"]) for c in cases)
    assert abs(pairs - PAPER_REFERENCE["pairs"]) / PAPER_REFERENCE["pairs"] < 0.01


def test_shopdial_turns_and_domain_spread(settings):
    dialogues = json.loads((settings.data_dir / "mg-shopdial" / "dialogues.json").read_text())
    turns = shopdial_turns(dialogues[0])
    clients = [u["utterance"].strip() for u in dialogues[0]["utterances"] if u["participant"] == "Client"]
    assert turns and " ".join(turns).split() == " ".join(c for c in clients if c).split()
    picked = stratified_dialogues(dialogues, 4, seed=0)
    assert len({d["id"].split(":")[0] for d in picked}) == 4
    assert stratified_dialogues(dialogues, 4, seed=0) == picked
    assert len(stratified_dialogues(dialogues, None, seed=0)) == 64


@pytest.mark.slow
def test_conversation_eval_end_to_end(settings, tmp_path):
    """ReDial (real Chroma collection of the 6,281 movies) + one MG-ShopDial dialogue, real LLM."""
    from agent.engines.transformers_engine import TransformersEngine
    from agent.settings import Settings

    engine = TransformersEngine(Settings(llm="transformers"))
    try:
        cfg = ConversationConfig(dataset="all", turns=5, dialogues=1, llm_all_turns=True, reason_turns=1, smoke_reasons=1, out=tmp_path, progress=False)
        result = run_conversation_eval(settings, cfg, engine=engine)
    finally:
        engine.close()
    assert {"kind", "config", "redial", "mg_shopdial", "figures", "total_seconds"} <= set(result)
    rd = result["redial"]
    assert rd["turns_evaluated"] == 5 and rd["pairs_evaluated"] >= 5
    assert set(rd["systems"]) == {"last-message", "pipeline:none", "pipeline:rerank_onepass.v1"}
    for s in rd["systems"].values():
        assert s["out_of_catalog"] == 0 and s["errors"] == 0
        assert {"recall@1", "recall@5", "recall@10", "recall@50"} <= set(s["metrics"])
    assert rd["systems"]["pipeline:rerank_onepass.v1"]["llm_asked"] == 5
    sd = result["mg_shopdial"]
    assert sd["dialogues"] == 1 and sd["user_turns"] > 0
    assert sd["system"]["out_of_catalog"] == 0
    md = (tmp_path / "report.md").read_text()
    assert "## ReDial" in md and "Compared with the published figures" in md and "## MG-ShopDial smoke" in md
    assert (tmp_path / "redial_recall.png").stat().st_size > 5_000 and (tmp_path / "latency.png").stat().st_size > 5_000
