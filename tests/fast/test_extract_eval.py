"""`aisle eval extract`: the per-slot scorer counts right and wrong readings, the LLM column goes
through the extractor's validation, and a grocery catalog works end to end."""

from __future__ import annotations

import json

from agent.dialogue import CatalogVocab, Understanding
from evals.extract_eval import ExtractConfig, Scorer, Turn, make_readers, run_extract_eval, score_readers, simulated_conversations
from tests.fast.conftest import ScriptedEngine, make_catalog

GROCERY_ROWS = [
    {"id": "g1", "title": "Heinz Tomato Ketchup, 32 oz", "brand": "Heinz", "categories": "Pantry > Condiments", "price": 3.49, "description": "Classic ketchup, squeeze bottle."},
    {"id": "g2", "title": "Hunt's Organic Ketchup", "brand": "Hunt's", "categories": "Pantry > Condiments", "price": 2.99, "description": "Organic ketchup with no corn syrup."},
    {"id": "g3", "title": "French's Classic Yellow Mustard", "brand": "French's", "categories": "Pantry > Condiments", "price": 1.99, "description": "Yellow mustard, squeeze bottle."},
    {"id": "g4", "title": "Rao's Homemade Marinara Pasta Sauce", "brand": "Rao's", "categories": "Pantry > Pasta Sauce", "price": 8.99, "description": "Marinara sauce in a glass jar."},
    {"id": "g5", "title": "Barilla Organic Basil Pasta Sauce", "brand": "Barilla", "categories": "Pantry > Pasta Sauce", "price": 3.29, "description": "Organic tomato and basil sauce, glass jar."},
    {"id": "g6", "title": "Prego Traditional Pasta Sauce", "brand": "Prego", "categories": "Pantry > Pasta Sauce", "price": 2.79, "description": "Traditional Italian sauce."},
    {"id": "g7", "title": "Barilla Spaghetti, 16 oz", "brand": "Barilla", "categories": "Pantry > Pasta", "price": 1.79, "description": "Durum wheat spaghetti."},
    {"id": "g8", "title": "De Cecco Penne Rigate", "brand": "De Cecco", "categories": "Pantry > Pasta", "price": 2.49, "description": "Bronze-cut penne."},
    {"id": "g9", "title": "Banza Chickpea Rotini, Gluten Free", "brand": "Banza", "categories": "Pantry > Pasta", "price": 3.99, "description": "Gluten free chickpea pasta, black box."},
]
GROCERY = make_catalog(GROCERY_ROWS, name="tiny-grocery")
GOLD = {"category": [], "brands": [], "avoid_brands": [], "price_min": [], "price_max": [], "features": [], "rejected": []}


def test_the_scorer_counts_right_and_wrong_per_slot():
    scorer = Scorer()
    right = Understanding(brands=["HEINZ"], price_max=3.495, categories=["condiments"])  # brand key, a price within a cent, casefold
    scorer.add(Turn("a#1", "Heinz condiments under $3.49", gold={**GOLD, "brands": ["Heinz"], "price_max": [3.49], "category": ["Condiments"]}), right, 1.0, False)
    invented = Understanding(brands=["Acme"], price_max=9.99)  # a brand nobody said, a price the gold does not have
    scorer.add(Turn("a#2", "ketchup under $3.49", gold={**GOLD, "price_max": [3.49]}), invented, 1.0, False)
    scorer.add(Turn("a#3", "context only", gold=None), invented, 1.0, False)  # not scored
    slots = scorer.summary()["slots"]
    assert slots["brands"] == {"turns": 2, "with_gold": 1, "correct": 1, "stated_wrongly": 1, "agree": 1, "accuracy": 1.0, "agreement": 0.5}
    assert slots["price_max"] == {"turns": 2, "with_gold": 2, "correct": 1, "stated_wrongly": 1, "agree": 1, "accuracy": 0.5, "agreement": 0.5}
    assert slots["category"]["correct"] == 1 and slots["category"]["stated_wrongly"] == 0
    assert scorer.summary()["turns"] == 2


def test_the_llm_column_keeps_what_the_message_says_and_drops_what_it_invents():
    # One value right (a feature the rules have no word for), one invented brand, one invented price.
    engine = ScriptedEngine(json_answer={"category": None, "brands": ["Prego"], "avoid_brands": [], "price_min": None, "price_max": 4.99, "features": ["organic"], "use_case": None})
    turn = Turn("g#1", "I'd like an organic pasta sauce, please.", gold={**GOLD, "category": ["Pasta Sauce"], "features": ["organic"]})
    readers = make_readers(CatalogVocab.from_catalog(GROCERY), engine)
    scores = score_readers(readers, [[turn]], GROCERY, "test", progress=False)
    rules, llm = scores["rules"], scores["rules+llm"]
    assert rules["slots"]["features"]["correct"] == 0 and llm["slots"]["features"]["correct"] == 1
    for slot in ("brands", "price_max"):  # the invented values were dropped by the validation
        assert llm["slots"][slot]["stated_wrongly"] == 0
    assert llm["llm_calls"] == 1 and llm["llm_values_dropped"] == 2 and rules["llm_calls"] == 0
    assert [c[0] for c in engine.calls] == ["chat_json"]


def test_a_grocery_catalog_runs_end_to_end(tmp_path, fast_settings):
    conversations = simulated_conversations(GROCERY, n=4, max_turns=3, seed=1)
    assert len(conversations) == 4 and all(1 <= len(c) <= 3 for c in conversations)
    openings = [c[0] for c in conversations]
    assert all(t.gold["category"] == [GROCERY.items[t.key.split("#")[0]].categories[-1]] for t in openings)
    assert all(json.dumps(t.gold) for c in conversations for t in c)
    engine = ScriptedEngine(json_answer={"category": None, "brands": [], "avoid_brands": [], "price_min": None, "price_max": None, "features": [], "use_case": None})
    cfg = ExtractConfig(catalog=GROCERY.name, n=4, max_turns=3, seed=1, shopdial=False, out=tmp_path, progress=False)
    result = run_extract_eval(fast_settings, cfg, engine=engine, catalog=GROCERY)
    assert set(result["simulated"]["readers"]) == {"rules", "rules+llm"}
    assert result["simulated"]["readers"]["rules"]["slots"]["category"]["with_gold"] == 4
    assert json.loads((tmp_path / "results.json").read_text())["config"]["catalog"] == "tiny-grocery"
    assert "| Rules | category |" in (tmp_path / "report.md").read_text()


def test_a_rejection_is_read_as_its_shown_position():
    state_turns = [Turn("x#1", "I'm looking for pasta", shown=["g7", "g8", "g9"], gold={**GOLD, "category": ["Pasta"]}), Turn("x#2", "I don't like the second one.", gold={**GOLD, "rejected": [1]})]
    scores = score_readers(make_readers(CatalogVocab.from_catalog(GROCERY), None), [state_turns], GROCERY, "test", progress=False)
    assert scores["rules"]["slots"]["rejected"]["correct"] == 1
