"""`aisle eval reasons-audit` (evals/reasons_audit.py): every LLM answer read blind, the gate un-blinded."""

from __future__ import annotations

import json

import pytest

from evals.reasons_audit import answers, make_sample, score

pytestmark = pytest.mark.fast


def _row(item, source, raws, query=None):
    return {"catalog": "shop", "item": item, "title": f"T{item}", "history": ["Old pen"], "query": query, "source": source, "grounded": source != "template",
            "text": raws[-1], "raw": raws, "problems": []}


SMALL = {"engine": "llamacpp", "model": "small", "rows": [
    _row("a", "llm", ["A good pen."]),
    _row("b", "llm-retry", ["You bought a safe.", "A sturdy binder."]),
    _row("c", "template", ["Made of mahogany.", "Made of oak."]),
]}
BIG = {"engine": "llamacpp", "model": "big", "rows": [_row("a", "template", ["You bought a shredder."])]}


def test_every_answer_is_read_with_the_runs_verdict():
    got = answers(SMALL)
    assert [(a["item"], a["attempt"], a["accepted"]) for a in got] == [("a", 0, True), ("b", 0, False), ("b", 1, True), ("c", 0, False), ("c", 1, False)]


def test_todays_gate_can_judge_the_answers_again():
    got = answers(SMALL, gate=lambda a: "mahogany" not in a["text"])
    assert [a["accepted"] for a in got] == [True, True, True, False, True]


def test_the_sample_hides_the_model_and_the_verdict():
    lines, key = make_sample([SMALL, BIG], {("shop", "a"): ["Ta", "Acme"]}, per_run=10, seed=0)
    assert len(lines) == 6
    text = json.dumps(lines)
    assert "small" not in text and "big" not in text and "accepted" not in text and "template" not in text
    assert next(line for line in lines if line["text"] == "A good pen.")["record"] == ["Ta", "Acme"]


def test_score_counts_what_the_gate_let_through():
    lines, key = make_sample([SMALL, BIG], {}, per_run=10, seed=0)
    for line in lines:  # the reader: the safe, the shredder and the mahogany were invented
        line["verdict"] = "invented" if any(w in line["text"] for w in ("safe", "shredder", "mahogany")) else "ok"
    result = score(lines, key)
    small = result["models"]["small"]
    assert small["n"] == 5 and small["invented"] == 2
    assert small["gate"] == {"accepted": 2, "accepted_invented": 0, "rejected_ok": 1, "rejected_invented": 2}
    assert result["models"]["big"]["gate"]["rejected_invented"] == 1
