"""Supervised LoRA fine-tuning of a causal LM on (chat prompt, target text) examples.

Task-agnostic: the LLM ranker (`agent.train.ranker`, target = one letter) and the copywriter
(target = a paragraph) both use it. What it guarantees:

- The prompt is rendered exactly as the transformers engine renders it at inference
  (`render_prompt`: the tokenizer's chat template with the generation prompt), and the target is
  tokenised *in context* (prompt text + target, so BPE merges match what the model would write).
- The loss covers the target tokens only (every prompt and padding position is -100); logits are
  computed only at those positions (one vocabulary projection per target token, not per prompt
  token: ~20x less memory for a 600-token prompt with a 1-token answer).
- Batches are right-padded with an attention mask (`batch_size` examples per forward pass,
  `grad_accum` passes per optimizer step: on a CPU, batch 1 x accumulation costs the same compute
  with a fraction of the memory -- eager attention keeps heads x length^2 per layer); AdamW over the LoRA parameters only; linear
  warm-up then linear decay; gradient clipping at 1.0.
- bf16 autocast where the device has native bf16 (`pick_dtype("auto")` on CPU, `is_bf16_supported`
  on CUDA), else float32. The base weights stay float32 in memory; LoRA weights are float32.
- Run folder layout (`out_dir`):
      checkpoints/step-000025/  adapter_model.safetensors, adapter_config.json, trainer.pt
      adapter_model.safetensors, adapter_config.json   the final adapter (PeftModel.save_pretrained)
      aisle_adapter.json                                metadata (see `write_metadata`)
  `trainer.pt` holds optimizer + scheduler state, python/torch RNG states, the step and the loss
  curve; the order of examples in each epoch is a function of (seed, epoch), so a resumed run sees
  exactly the batches the uninterrupted run would have seen. The last `keep_checkpoints` are kept
  (the final step's too, so resuming a finished run only rewrites the adapter).
- `resume=True` continues from the latest checkpoint (refusing one made for other data or other
  hyper-parameters); `max_minutes` checkpoints and stops cleanly when the time is up, and the
  adapter is still written, with `"complete": false` in its metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agent.engines.base import Message
from agent.engines.transformers_engine import pick_dtype, render_prompt

log = logging.getLogger(__name__)

METADATA_FILE = "aisle_adapter.json"
TRAINER_STATE = "trainer.pt"
CHECKPOINTS = "checkpoints"
IGNORE = -100


@dataclass
class Example:
    """One supervised example: the chat prompt and the assistant text to learn."""

    messages: list[Message]
    target: str


@dataclass
class LoraTrainConfig:
    """Hyper-parameters (all recorded in the adapter metadata)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 1
    batch_size: int = 4  # examples per forward pass (right-padded together)
    grad_accum: int = 1  # forward passes per optimizer step (CPU: small batches, same update)
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    max_length: int = 2048  # prompt + target tokens; longer examples keep the END of the prompt
    target_eos: bool = False  # also learn the end-of-turn token after the target (generation tasks)
    checkpoint_every: int = 25  # optimizer steps
    keep_checkpoints: int = 2
    seed: int = 0
    dtype: str = "auto"  # autocast: "auto" (bf16 where native), "bfloat16", "float32"
    device: str = "auto"  # "auto" = cuda when available, else cpu
    threads: int | None = None  # torch CPU threads (process-wide); None = leave torch's setting


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    total_steps: int
    complete: bool
    seconds: float  # wall time of this call
    train_seconds: float  # cumulative over resumed runs
    losses: list[float]
    resumed_from: int | None
    metadata: dict[str, Any]


# --- prompts and tokens --------------------------------------------------------------------------


def encode_example(tokenizer: Any, messages: Sequence[Message], target: str, *, eos: bool = False, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one example: labels are -100 everywhere but the target tokens.

    The target is tokenised in context (prompt text + target), as the engine's `_label_token`
    does, so "A" after "<|im_start|>assistant\\n" gets the token the model would emit there.
    """
    prompt_text = render_prompt(tokenizer, messages)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt_text + target, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        target_ids = full_ids[len(prompt_ids) :]
    else:  # the target merged with the prompt's last token: fall back to its standalone encoding
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if not target_ids:
        raise ValueError(f"target {target!r} encodes to no token")
    if eos:
        end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token_id
        target_ids = [*target_ids, end]
    if max_length is not None and len(prompt_ids) + len(target_ids) > max_length:
        keep = max_length - len(target_ids)
        if keep <= 0:
            raise ValueError(f"target is {len(target_ids)} tokens, more than max_length={max_length}")
        prompt_ids = prompt_ids[-keep:]
    return prompt_ids + target_ids, [IGNORE] * len(prompt_ids) + list(target_ids)


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (input_ids, labels) rows into tensors with an attention mask."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def target_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the target tokens only (labels != -100), next-token shifted.

    Runs the transformer body once and projects to the vocabulary only at the positions that
    predict a target token. Falls back to full logits for models without the usual
    `base_model_prefix` body + output embeddings."""
    input_ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    shifted = labels[:, 1:]
    rows, cols = (shifted != IGNORE).nonzero(as_tuple=True)  # position t predicts token t+1
    if rows.numel() == 0:
        raise ValueError("batch has no target token")
    gold = shifted[rows, cols]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is not None and head is not None and body is not base:
        hidden = body(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = head(hidden[rows, cols])
    else:
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[rows, cols]
    return torch.nn.functional.cross_entropy(logits.float(), gold)


# --- fingerprints and metadata ---------------------------------------------------------------------


def model_fingerprint(folder: Path) -> str:
    """Cheap content hash of a model folder: config.json, plus name, size, and the first and last MiB
    of every weight file (reading 500 MB of weights to tell two models apart is not needed)."""
    folder = Path(folder)
    h = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.gguf")):
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with path.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def data_fingerprint(examples: Sequence[Example]) -> str:
    """Hash of the examples, in order (messages + target)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([[dict(m) for m in ex.messages], ex.target], ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:16]


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """The adapter's `aisle_adapter.json`, or None when missing or unreadable."""
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def adapter_matches(folder: Path, base_model_dir: Path, *, complete: bool = True) -> bool:
    """True when `folder` holds an adapter trained on the model in `base_model_dir` (same
    fingerprint), with its weights present, and (by default) a run that finished."""
    meta = read_metadata(folder)
    if not meta or not (Path(folder) / "adapter_config.json").is_file():
        return False
    if complete and not meta.get("complete", False):
        return False
    base = meta.get("base_model") or {}
    try:
        return base.get("fingerprint") == model_fingerprint(base_model_dir)
    except OSError:
        return False


# --- device / dtype ------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """bf16 where the device computes it natively, else float32."""
    if requested != "auto":
        return pick_dtype(requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return pick_dtype("auto")


# --- trainer -------------------------------------------------------------------------------------


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return order


def _checkpoints(out_dir: Path) -> list[Path]:
    folder = out_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step-*") if (p / TRAINER_STATE).is_file()), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = _checkpoints(Path(out_dir))
    return found[-1] if found else None


def load_base(model_dir: Path, device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    return tokenizer, model


def train_lora(
    model_dir: Path,
    examples: Sequence[Example],
    out_dir: Path,
    config: LoraTrainConfig | None = None,
    *,
    task: str,
    prompt: str | None = None,
    split: str | None = None,
    extra: dict[str, Any] | None = None,
    resume: bool = True,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a LoRA adapter on `examples` and save it in `out_dir` (see the module docstring).

    `task` / `prompt` (template name) / `split` (a sentence on how examples were chosen) and
    `extra` go into the metadata. `max_steps` stops (and checkpoints) after that global step, as
    `max_minutes` does after that much wall time; both leave a resumable run.
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    config = config or LoraTrainConfig()
    if not examples:
        raise ValueError("no training examples")
    out_dir = Path(out_dir)
    model_dir = Path(model_dir)
    started = time.perf_counter()
    device = pick_device(config.device)
    amp_dtype = autocast_dtype(device, config.dtype)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    tokenizer, base = load_base(model_dir, device)
    encoded = [encode_example(tokenizer, ex.messages, ex.target, eos=config.target_eos, max_length=config.max_length) for ex in examples]
    data_fp = data_fingerprint(examples)
    hparams = asdict(config)
    per_step = config.batch_size * config.grad_accum  # examples per optimizer step
    steps_per_epoch = math.ceil(len(encoded) / per_step)
    total_steps = steps_per_epoch * config.epochs

    peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.target_modules), task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(base, peft_config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = int(round(config.warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, warmup))

    step = 0
    losses: list[float] = []
    train_seconds = 0.0
    resumed_from: int | None = None
    if not resume and out_dir.exists():
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
        expected = {"data_fingerprint": data_fp, "hparams": hparams, "base_fingerprint": model_fingerprint(model_dir)}
        mismatch = [k for k, v in expected.items() if state.get(k) != v]
        if mismatch:
            raise ValueError(f"checkpoint {ckpt} was made with different {', '.join(mismatch)}; resume with the same data and options, or start over (--no-resume / resume=False)")
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors"), device=str(device)))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = int(state["step"])
        losses = list(state["losses"])
        train_seconds = float(state.get("train_seconds", 0.0))
        resumed_from = step
        log.info("resuming %s from step %d/%d (%s)", out_dir, step, total_steps, ckpt)

    base_fp = model_fingerprint(model_dir)

    def save_checkpoint() -> None:
        folder = out_dir / CHECKPOINTS / f"step-{step:06d}"
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        torch.save(
            {
                "step": step,
                "total_steps": total_steps,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "python_rng": random.getstate(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                "losses": losses,
                "train_seconds": train_seconds + (time.perf_counter() - loop_start),
                "data_fingerprint": data_fp,
                "hparams": hparams,
                "base_fingerprint": base_fp,
            },
            tmp / TRAINER_STATE,
        )
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        for old in _checkpoints(out_dir)[: -max(1, config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    model.train()
    deadline = started + max_minutes * 60 if max_minutes else None
    pad_id = tokenizer.pad_token_id
    loop_start = time.perf_counter()
    stopped_early = False
    bar = tqdm(total=total_steps, initial=step, desc=f"lora {task}", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        last_step_s = 0.0
        while step < total_steps:
            # Stop before a step that would end past the deadline (a step can take minutes on a CPU).
            if deadline is not None and last_step_s and time.perf_counter() + last_step_s > deadline:
                save_checkpoint()
                stopped_early = True
                log.warning("stopping at step %d/%d (time limit); run again with resume to continue", step, total_steps)
                break
            step_start = time.perf_counter()
            epoch, in_epoch = divmod(step, steps_per_epoch)
            order = _epoch_order(len(encoded), config.seed, epoch)
            idx = order[in_epoch * per_step : (in_epoch + 1) * per_step]
            n_targets = sum(sum(1 for t in encoded[i][1] if t != IGNORE) for i in idx)
            step_loss = 0.0
            for start in range(0, len(idx), config.batch_size):
                chunk = [encoded[i] for i in idx[start : start + config.batch_size]]
                batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                    loss = target_loss(model, batch)
                # Weighted by target tokens, so the step's loss is the mean over all its target tokens.
                share = sum(1 for _, lab in chunk for t in lab if t != IGNORE) / n_targets
                (loss * share).backward()
                step_loss += float(loss.detach()) * share
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_step_s = time.perf_counter() - step_start
            losses.append(round(step_loss, 5))
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}", epoch=epoch + 1)
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            hit_max = max_steps is not None and step >= max_steps
            if step == total_steps or step % config.checkpoint_every == 0 or out_of_time or hit_max:
                save_checkpoint()
            if step < total_steps and (out_of_time or hit_max):
                stopped_early = True
                log.warning("stopping at step %d/%d (%s); run again with resume to continue", step, total_steps, "time limit" if out_of_time else "max_steps")
                break
    finally:
        bar.close()

    train_seconds += time.perf_counter() - loop_start
    complete = step >= total_steps and not stopped_early
    model.save_pretrained(out_dir)
    metadata = {
        "task": task,
        "complete": complete,
        "base_model": {"path": str(model_dir), "name": model_dir.name, "fingerprint": base_fp},
        "prompt": {"name": prompt, "fingerprint": _prompt_fp(prompt)} if prompt else None,
        "data_fingerprint": data_fp,
        "split": split,
        "hparams": hparams,
        "device": str(device),
        "autocast_dtype": str(amp_dtype).removeprefix("torch."),
        "examples": len(examples),
        "target_tokens_mean": round(sum(sum(1 for t in lab if t != IGNORE) for _, lab in encoded) / len(encoded), 3),
        "prompt_tokens_mean": round(sum(len(ids) for ids, _ in encoded) / len(encoded), 1),
        "steps": step,
        "total_steps": total_steps,
        "seconds": round(train_seconds, 1),
        "seconds_per_example": round(train_seconds / max(1, min(step * per_step, len(encoded) * config.epochs)), 4) if step else None,
        "train_loss": losses,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    return TrainResult(out_dir, step, total_steps, complete, time.perf_counter() - started, train_seconds, losses, resumed_from, metadata)


def _prompt_fp(name: str) -> str | None:
    from agent.prompts import prompt_fingerprint

    try:
        return prompt_fingerprint(name)
    except ValueError:
        return None
