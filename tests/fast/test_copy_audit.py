"""`aisle eval copy-audit` (evals/copy_audit.py): blind sample of kept copy, verdicts, un-blinding."""

from __future__ import annotations

import json

import pytest

from evals.copy_audit import make_sample, merge_runs, read_verdicts, score

pytestmark = pytest.mark.fast


def _row(i, status="ok", words=None):
    return {"id": i, "title": f"T{i}", "status": status, "selling_point": f"Point {i}.", "description": f"Copy of {i}.", "specific_words": words}


RUN = {
    "catalog": "shop",
    "per_item": [_row("a", words=[]), _row("b", words=["mahogany"]), _row("c", "dropped"), _row("d", words=[])],
    "variants": {"base": {}, "fine-tuned": {"per_item": [_row("a", words=["roller"]), _row("b", words=[]), _row("c", words=[]), _row("d", "dropped")]}},
}


def test_the_sample_holds_items_both_kept_and_names_no_copywriter():
    lines, key = make_sample(RUN, {"a": ["T a", "Acme"]}, n_items=10, seed=0)
    assert key["items"] == 2 and sorted({line["item"] for line in lines}) == ["a", "b"]  # c and d were dropped by one copywriter
    assert len(lines) == 4 and all(line["verdict"] is None for line in lines)
    assert not any("base" in json.dumps(line) or "fine-tuned" in json.dumps(line) for line in lines)
    assert {m["copywriter"] for m in key["keys"].values()} == {"base", "fine-tuned"}
    assert next(line for line in lines if line["item"] == "a")["fields"] == ["T a", "Acme"]


def test_score_unblinds_and_measures_the_signal(tmp_path):
    lines, key = make_sample(RUN, {}, n_items=10, seed=0)
    for line in lines:  # the reader finds the mahogany and roller copies invented
        meta = key["keys"][line["key"]]
        line["verdict"] = "invented" if meta["specific_words"] else "ok"
    result = score(lines, key)
    assert result["copywriters"]["base"]["invented"] == 1 and result["copywriters"]["base"]["share"] == 0.5
    assert result["copywriters"]["fine-tuned"]["specific_words_signal"] == {"flagged": 1, "precision": 1.0, "recall": 1.0}


def test_a_line_without_a_verdict_is_named(tmp_path):
    lines, _ = make_sample(RUN, {}, n_items=10, seed=0)
    lines[0]["verdict"] = "ok"
    lines[2]["verdict"] = "maybe"
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(ValueError, match=r"3 of 4 lines .* \(lines 2, 3, 4\).*ok, invented"):
        read_verdicts(path)


def test_two_runs_are_read_as_one_blind_sample_named_by_model():
    other = {"catalog": "shop", "engine": {"name": "llamacpp", "model": "big"}, "per_item": [_row("a", words=[]), _row("b", words=[])]}
    mine = {**RUN, "engine": {"name": "transformers", "model": "small"}}
    merged = merge_runs([mine, other])
    assert set(merged["variants"]) == {"small:base", "small:fine-tuned", "big:base"}
    lines, key = make_sample(merged, {}, n_items=10, seed=0)
    assert {m["copywriter"] for m in key["keys"].values()} == {"small:base", "small:fine-tuned", "big:base"}
    assert not any("small" in json.dumps(line) or "big" in json.dumps(line) for line in lines)


def test_runs_on_different_catalogs_are_refused():
    with pytest.raises(ValueError, match="different catalogs"):
        merge_runs([RUN, {**RUN, "catalog": "other"}])
