"""`aisle eval copy-loss` (evals/copy_loss.py) on the real catalogs and the real packaged model:
the scored items are unseen by every compared run, and an adapter is scored against the same items
as the base model (an untrained LoRA, whose B matrices start at zero, scores exactly like it)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evals.copy_loss import run_copy_loss, unseen_items


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _fake_adapter(folder, catalog):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "aisle_adapter.json").write_text(json.dumps({"task": "describe", "catalog": catalog}))
    return folder


def test_scored_items_are_unseen(llm_settings, tmp_path):
    from agent.copy.heldout import items_with_titles_of, norm_title, select_eval_items
    from retrieval.registry import load_catalog

    adapter = _fake_adapter(tmp_path / "cw", "amazon-office-2018")
    _, rows, excluded = unseen_items(llm_settings, "amazon-office-2014", [adapter], n_items=40)
    c14, c18 = load_catalog(llm_settings, "amazon-office-2014"), load_catalog(llm_settings, "amazon-office-2018")
    same_title = items_with_titles_of(c14, c18)
    copy_eval = {it.id for it in select_eval_items(c14, 100, 0, exclude=same_title)}
    titles_18 = {norm_title(it.title) for it in c18.items.values()}
    assert len(rows) == 40 and excluded["titles_of"] == ["amazon-office-2018"]
    for item, target in rows:
        assert item.id not in copy_eval and norm_title(item.title) not in titles_18
        assert target.startswith("Selling point: ") and "\nDescription: " in target

    with pytest.raises(ValueError, match="trained on amazon-office-2014"):
        unseen_items(llm_settings, "amazon-office-2014", [_fake_adapter(tmp_path / "own", "amazon-office-2014")])
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        unseen_items(llm_settings, "amazon-office-2014", [tmp_path / "missing"])


def test_untrained_adapter_scores_like_the_base_model(llm_settings, transformers_engine, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(transformers_engine.model_dir, dtype=torch.float32)
    folder = tmp_path / "untrained"
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(folder)

    result = run_copy_loss(llm_settings, adapters=[folder], n_items=2, threads=1, progress=False)
    assert result["items"] == 2 and list(result["models"]) == ["base", "untrained"]
    base, tuned = result["models"]["base"], result["models"]["untrained"]
    assert math.isfinite(base["mean_target_loss"]) and base["mean_target_loss"] > 0
    assert tuned["mean_target_loss"] == pytest.approx(base["mean_target_loss"], abs=1e-3)
    assert tuned["fingerprint"] and base["fingerprint"] is None
