"""Copywriter fine-tuning data (agent/train/copywriter.py): the held-out split, factual targets, and
overlay records that name what produced them. No model is loaded: prompts are only rendered."""

from __future__ import annotations

import json
import string

import pytest

from agent.copy.check import check_copy
from agent.copy.heldout import select_eval_items
from agent.copy.writer import DEFAULT_MAX_TOKENS, Copywriter, _sentences, copy_evidence, describe_catalog, parse_copy
from agent.train.copywriter import (
    TARGET_CHARS_PER_TOKEN,
    TASK,
    adapter_record,
    build_examples,
    copy_split,
    copywriter_adapter_path,
    default_adapter_dir,
    factual_target,
    max_target_chars,
    resolve_copy_adapter,
    training_writer,
)
from tests.fast.conftest import ScriptedEngine, make_catalog

GOOD = "This desk stapler is easy to use every day. It keeps the desk tidy and neat. It is a good pick for home and school work."
UNSUPPORTED = ["It is made of stainless steel.", "It holds 100 sheets at once.", "It comes in bright red.", "It is compatible with Swingline staples."]


def _name(i: int) -> str:
    return string.ascii_uppercase[i % 26] + string.ascii_lowercase[i // 26] + "x"


def _rows(n: int = 60) -> list[dict]:
    rows = []
    for i in range(n):
        title = f"Acme Desk Stapler {_name(i)}"
        desc = f"The {_name(i)} is a sturdy everyday stapler for busy offices and classrooms. {GOOD} {' '.join(UNSUPPORTED)}"
        rows.append({"id": f"i{i}", "title": title, "brand": "Acme", "categories": "Office > Staplers", "description": desc})
    # Duplicate listings: the same product under another id (same title / same description).
    rows.append({"id": "dup-title", "title": "Acme Desk Stapler " + _name(0), "brand": "Acme", "description": "Another text. " + GOOD})
    rows.append({"id": "dup-desc", "title": "Acme Stapler Second Listing", "brand": "Acme", "description": rows[1]["description"]})
    rows.append({"id": "no-desc", "title": "Acme Desk Stapler Plain", "brand": "Acme"})
    return rows


CAT = make_catalog(_rows(), name="staplers")


@pytest.mark.parametrize("seed", [0, 2, 3, 6])
def test_split_is_the_eval_sample_and_never_leaks(seed):
    import evals.copy_eval as copy_eval

    # ONE function picks the evaluated items and the held-out items.
    assert copy_eval.select_eval_items is select_eval_items
    split = copy_split(CAT, eval_items=10, seed=seed)
    evaluated = [it.id for it in copy_eval.select_eval_items(CAT, 10, seed)]
    assert split.heldout == evaluated
    assert not set(split.train_pool) & set(evaluated)
    assert "no-desc" not in split.train_pool

    writer = training_writer(CAT)
    examples, ids, stats = build_examples(CAT, split, writer, n=None)
    assert examples and len(ids) == len(examples) == stats.kept
    assert not set(ids) & set(evaluated), "an evaluated item is in the training data"
    held_titles = {CAT.items[i].title for i in evaluated}
    assert not any(CAT.items[i].title in held_titles for i in ids), "a duplicate listing of a held-out item is in the training data"
    assert len(split.blocked) <= 2 and len(examples) >= 40
    if "i0" in evaluated:
        assert "dup-title" in split.blocked  # seed 0
    if "i1" in evaluated:
        assert "dup-desc" in split.blocked  # seed 2
    held_descs = {CAT.items[i].description for i in evaluated}
    assert not any(CAT.items[i].description in held_descs for i in ids)
    # The prompt is the copywriter's own, over the fields a cold item has (never the description).
    for ex, i in zip(examples, ids):
        assert ex.messages == Copywriter(ScriptedEngine()).messages(CAT.items[i])
        assert "sturdy everyday stapler" not in json.dumps(ex.messages)

    # Same seed, same split; another seed, another held-out set.
    assert copy_split(CAT, eval_items=10, seed=seed).heldout == split.heldout
    assert copy_split(CAT, eval_items=10, seed=seed + 1).heldout != split.heldout


def test_eval_refuses_an_adapter_that_trained_on_its_items(tmp_path):
    from evals.copy_eval import check_adapter_split

    split = copy_split(CAT, eval_items=10, seed=0)
    folder = tmp_path / "copywriter-staplers"
    folder.mkdir()
    (folder / "aisle_adapter.json").write_text(json.dumps({"task": TASK, "catalog": "staplers", "heldout": {"catalog": "staplers", "n": 10, "seed": 0, "ids": split.heldout}}))
    assert check_adapter_split(folder, "staplers", split.heldout)["n"] == 10
    other = [it.id for it in select_eval_items(CAT, 10, 1)]
    with pytest.raises(ValueError, match="not held out"):
        check_adapter_split(folder, "staplers", other)
    assert check_adapter_split(folder, "another-catalog", other) is not None  # cross-catalog: titles are excluded instead


def test_target_keeps_only_supported_sentences():
    item = CAT.items["i1"]
    writer = training_writer(CAT)
    target = factual_target(item, writer)
    assert target is not None
    copy = parse_copy(target, title=item.title)
    assert target == f"Selling point: {copy.selling_point}\nDescription: {copy.description}"
    for bad in UNSUPPORTED:
        assert bad not in target
    for sentence in [copy.selling_point, *_sentences(copy.description)]:
        assert check_copy(sentence, copy_evidence(item), catalog_brands=writer.catalog_brands).ok, sentence
    assert check_copy(copy.text(), copy_evidence(item)).ok
    # The inference gate accepts it as a draft.
    checked = writer._check(item, target)
    assert checked.passed, checked


LONG = [
    "This desk stapler is easy to use every day and it keeps the whole desk tidy and neat for the busy week ahead.",
    "It is a good pick for home and school work because it is simple to load and simple to carry between rooms.",
    "The handle is shaped for a steady press so that every stack of paper is joined on the first try without fuss.",
    "It sits flat on the desk and does not slide around while you work through a pile of letters and school forms.",
]


def test_target_fits_the_generation_budget():
    # Four long supported sentences: uncapped, the target is ~480 characters (> 120 tokens with EOS).
    cat = make_catalog([{"id": "x", "title": "Acme Desk Stapler Zed", "brand": "Acme", "description": "A sturdy stapler for busy offices. " + " ".join(LONG)}])
    assert len("Selling point: A sturdy stapler for busy offices.\nDescription: " + " ".join(LONG)) > max_target_chars()
    target = factual_target(cat.items["x"], training_writer(cat))
    assert target is not None and len(target) <= max_target_chars()
    assert target == "Selling point: A sturdy stapler for busy offices.\nDescription: " + " ".join(LONG[:3])
    # The cap follows the copywriter's token budget (one token left for the end-of-turn token).
    assert max_target_chars() == int(TARGET_CHARS_PER_TOKEN * (DEFAULT_MAX_TOKENS - 1))


def test_item_with_too_little_supported_text_gives_no_example():
    cat = make_catalog([{"id": "x", "title": "Acme Desk Stapler Zed", "brand": "Acme", "description": "It is easy to use every day. " + " ".join(UNSUPPORTED)}])
    assert factual_target(cat.items["x"], training_writer(cat)) is None


# --- describe with and without the adapter --------------------------------------------------------


STAPLER_COPY = "Selling point: A desk stapler for everyday use.\nDescription: This desk stapler is easy to use every day. It keeps the desk tidy and neat."


def _fake_adapter(folder, *, complete=True, task=TASK, fingerprint="base-fp"):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "aisle_adapter.json").write_text(json.dumps({"task": task, "complete": complete, "catalog": "staplers", "data_fingerprint": "data-fp",
                                                         "base_model": {"name": "base", "path": "/x", "fingerprint": fingerprint}}))
    return folder


class AdapterEngine(ScriptedEngine):
    def __init__(self, model_id: str, **kwargs):
        super().__init__(**kwargs)
        self.model_id = model_id


def test_describe_records_name_the_model_adapter_and_prompt(tmp_path):
    folder = _fake_adapter(tmp_path / "copywriter-staplers")
    records = {}
    for label, adapter, model_id in (("base", None, "base"), ("tuned", folder, "base+copywriter-staplers")):
        engine = AdapterEngine(model_id, text=STAPLER_COPY)
        path = tmp_path / f"{label}.jsonl"
        report = describe_catalog(CAT, Copywriter(engine), path, ids=["i2", "i3"], batch_size=2, progress=False, adapter=adapter_record(adapter))
        assert report.ok == 2
        assert [c[0] for c in engine.calls] == ["batch"] and len(engine.calls[0][1]) == 2, "one batched call for the batch"
        records[label] = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records["base"]:
        assert r["model"] == "base" and r["adapter"] is None and r["prompt"]["template"] == "describe.v1" and r["prompt"]["fingerprint"]
    for r in records["tuned"]:
        assert r["model"] == "base+copywriter-staplers"
        assert r["adapter"]["name"] == "copywriter-staplers" and r["adapter"]["path"] == str(folder)
        assert r["adapter"]["fingerprint"] and r["adapter"]["task"] == TASK and r["adapter"]["data_fingerprint"] == "data-fp"
        assert r["prompt"]["template"] == "describe.v1"


def test_adapter_lookup(tmp_path, monkeypatch, fast_settings):
    import agent.train.lora as lora

    settings = fast_settings.model_copy(update={"home": tmp_path, "llm": "transformers"})
    monkeypatch.setattr(lora, "model_fingerprint", lambda _folder: "base-fp")
    assert copywriter_adapter_path(settings, "staplers") is None  # no folder
    default = _fake_adapter(default_adapter_dir(settings, "staplers"), complete=False)
    assert default == tmp_path / "adapters" / "copywriter-staplers"
    assert copywriter_adapter_path(settings, "staplers") is None, "an unfinished run is not picked up"
    (default / "aisle_adapter.json").write_text((default / "aisle_adapter.json").read_text().replace('"complete": false', '"complete": true'))
    assert copywriter_adapter_path(settings, "staplers") == default
    assert resolve_copy_adapter(settings, "staplers") == default
    assert resolve_copy_adapter(settings, "staplers", use_adapter=False) is None  # --no-adapter
    explicit = _fake_adapter(tmp_path / "mine")
    assert resolve_copy_adapter(settings, "staplers", explicit) == explicit  # --adapter
    other_base = _fake_adapter(tmp_path / "other", fingerprint="another-model")
    with pytest.raises(ValueError, match="trained on"):
        resolve_copy_adapter(settings, "staplers", other_base)
    monkeypatch.setattr(lora, "model_fingerprint", lambda _folder: "another-model")
    assert copywriter_adapter_path(settings, "staplers") is None, "trained on another base model"
    with pytest.raises(FileNotFoundError):
        resolve_copy_adapter(settings, "staplers", tmp_path / "nothing")


def test_eval_copy_reports_base_and_fine_tuned_on_the_same_items(tmp_path):
    """`aisle eval copy` with an adapter: one run, the same held-out items, rows "base" and
    "fine-tuned"; the top-level fields stay the base model's."""
    from agent.settings import Settings
    from evals.copy_eval import RESULT_KEYS, format_report, run_copy_eval
    from retrieval.registry import FeedSpec, Registry
    from tests.fast.conftest import share_models

    home = share_models(tmp_path / "home")
    settings = Settings(home=home, chroma_url=None, llm="transformers")
    feed = tmp_path / "staplers.jsonl"
    feed.write_text("\n".join(json.dumps({k: v for k, v in r.items()}) for r in _rows(12)))
    Registry(settings).add("staplers", FeedSpec(str(feed)), progress=False)
    base = AdapterEngine("base", text="Selling point: Desk stapler.\nDescription: Short.")  # unparseable: dropped
    tuned = AdapterEngine("base+copywriter-staplers", text=STAPLER_COPY)
    tuned.adapter = _fake_adapter(tmp_path / "copywriter-staplers")
    result = run_copy_eval(settings, catalog_name="staplers", n_items=3, seed=0, engine=base, tuned_engine=tuned, progress=False)
    assert tuple(result) == RESULT_KEYS
    variants = result["variants"]
    assert list(variants) == ["base", "fine-tuned"]
    assert variants["base"]["generation"]["kept_share"] == 0.0 and result["generation"] == variants["base"]["generation"]
    assert variants["fine-tuned"]["generation"]["kept_share"] == 1.0
    assert variants["fine-tuned"]["engine"]["model"] == "base+copywriter-staplers" and variants["fine-tuned"]["adapter"]["fingerprint"]
    assert [p["id"] for p in variants["fine-tuned"]["per_item"]] == [p["id"] for p in result["per_item"]]
    # Both copywriters were asked about exactly the same items.
    assert len(base.calls[0][1]) == len(tuned.calls[0][1]) == 3
    report = format_report(result)
    assert "  base " in report and "  fine-tuned " in report


def test_cross_catalog_eval_leaves_out_titles_of_the_training_catalog():
    from agent.copy.heldout import items_with_titles_of

    other = make_catalog([{"id": "o1", "title": "ACME desk stapler " + _name(4) + "!"}, {"id": "o2", "title": "Something else"}], name="older")
    excluded = items_with_titles_of(CAT, other)
    assert excluded == {"i4"}  # normalised: case and punctuation do not matter
    for seed in range(5):
        assert "i4" not in {it.id for it in select_eval_items(CAT, 20, seed, exclude=excluded)}
