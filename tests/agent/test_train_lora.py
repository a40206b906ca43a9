"""LoRA training on the real packaged model (agent/train/lora.py): stop, resume, load in the engine.

Short prompts and 5 steps of 2 examples keep it well under a minute on the 2-core CPU."""

from __future__ import annotations

import json

import pytest
import torch

from agent.train.lora import CHECKPOINTS, METADATA_FILE, Example, LoraTrainConfig, adapter_matches, latest_checkpoint, train_lora

LETTERS = "ABC"


@pytest.fixture(autouse=True)
def _one_thread():
    """train_lora(threads=1) changes torch's process-wide pool: put it back for the other tests.
    (One thread: on a shared 2-core box two OpenMP threads collapse; see agent/train/ranker.py.)"""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _examples() -> list[Example]:
    out = []
    for i in range(10):
        colour = ["red", "green", "blue"][i % 3]
        items = "\n".join(f"ITEM {label}: {name} pen" for label, name in zip(LETTERS, ["red", "green", "blue"]))
        out.append(Example([{"role": "system", "content": "Answer with one letter."}, {"role": "user", "content": f"{items}\nWhich pen is {colour}? ({i})"}], "C"))
    return out


def test_train_stop_resume_and_load(tmp_path, llm_settings, transformers_engine):
    from agent.engines.transformers_engine import TransformersEngine

    model_dir = transformers_engine.model_dir
    config = LoraTrainConfig(r=4, alpha=8, lr=5e-3, batch_size=2, epochs=1, checkpoint_every=100, warmup_ratio=0.0, threads=1)
    out = tmp_path / "run"

    first = train_lora(model_dir, _examples(), out, config, task="test", prompt="rerank_onepass.v1", split="toy", max_steps=3, progress=False)
    assert (first.steps, first.total_steps, first.complete) == (3, 5, False)
    assert latest_checkpoint(out).name == "step-000003"
    assert not adapter_matches(out, model_dir), "an unfinished run is not picked up"

    second = train_lora(model_dir, _examples(), out, config, task="test", prompt="rerank_onepass.v1", split="toy", progress=False)
    assert second.resumed_from == 3
    assert (second.steps, second.complete) == (5, True)
    assert len(second.losses) == 5 and second.losses[:3] == first.losses
    assert (out / CHECKPOINTS / "step-000005").is_dir()

    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["task"] == "test" and meta["complete"] and meta["steps"] == 5 and meta["examples"] == 10
    assert meta["base_model"]["path"] == str(model_dir) and meta["prompt"]["fingerprint"]
    assert meta["hparams"]["r"] == 4 and len(meta["train_loss"]) == 5 and meta["data_fingerprint"]
    assert adapter_matches(out, model_dir)

    # A different data set may not resume this run.
    with pytest.raises(ValueError, match="data_fingerprint"):
        train_lora(model_dir, _examples()[:8], out, config, task="test", progress=False)

    messages = _examples()[0].messages
    base = transformers_engine.score_choices(messages, list(LETTERS))
    tuned_engine = TransformersEngine(llm_settings, adapter=out)
    try:
        tuned = tuned_engine.score_choices(messages, list(LETTERS))
        assert tuned_engine.model_id.endswith("+run")
        assert not any("lora" in n for n, _ in tuned_engine.model.named_parameters()), "adapter merged"
    finally:
        tuned_engine.close()
    assert max(abs(tuned[c] - base[c]) for c in LETTERS) > 0.05, (base, tuned)
    assert tuned["C"] > base["C"]


def test_resume_matches_uninterrupted_run(tmp_path, transformers_engine):
    """Stopping after 3 steps and resuming gives the same losses as one uninterrupted run."""
    model_dir = transformers_engine.model_dir
    config = LoraTrainConfig(r=4, alpha=8, lr=5e-3, batch_size=2, epochs=1, warmup_ratio=0.0, dtype="float32", threads=1)
    whole = train_lora(model_dir, _examples(), tmp_path / "whole", config, task="test", progress=False)
    train_lora(model_dir, _examples(), tmp_path / "split", config, task="test", max_steps=3, progress=False)
    resumed = train_lora(model_dir, _examples(), tmp_path / "split", config, task="test", progress=False)
    assert resumed.resumed_from == 3
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(whole.losses), atol=1e-4, rtol=1e-4)
