"""`aisle train copywriter`: LoRA fine-tune of the engine's LLM on the catalog's own descriptions.

What the model learns (issue #17): to write, for an item that has only what a cold item has, the
copy the shop's humans wrote -- restricted to what the item's fields support.

- Input: `Copywriter.messages(item)` -- the SAME function (`agent.copy.writer.render_describe`,
  prompt describe.v1 unless --prompt, with its worked example turn) that `aisle describe` uses at
  inference, over title, brand, categories and attributes only (`item_facts`). The description is
  never in the prompt.
- Target: "Selling point: <s>\\nDescription: <d1> <d2> ...", the two labelled lines
  `agent.copy.writer.parse_copy` reads (plain labelled text, not JSON: that is the format the
  copywriter parses), followed by the end-of-turn token (`target_eos`), so the model learns to stop.
  Built from the human description's sentences (`factual_target`): every sentence is run through
  the copywriter's claim checker against the item's fields (`copy_evidence`, what the prompt shows)
  and dropped when it states a number, size, colour, material, compatibility, brand or claim the
  fields do not; talk about the task, echoes of the title, cut-off and over-long sentences go too.
  The first remaining short sentence is the selling point, the next 2-4 the description, as many as
  fit the copywriter's max_tokens (`max_target_chars`: a longer target teaches answers that inference
  cuts off). The whole target must then pass the inference gate (`Copywriter._check`: parse +
  checker); items left with too little text are skipped. So the model is taught to write only what
  the fields support.
  Tried and measured, not adopted: also leaving out sentences with a specific word (rare in the
  catalog's descriptions, absent from the fields: `agent.copy.terms`) kept 505 targets of the 2987
  (2 epochs: 1105 s, loss 3.17 -> 2.53). Against this module's adapter, same eval and draft
  selection (`aisle eval copy --items 200`), its kept copy had fewer specific words (19.7 % of
  copies against 32.7 %) but no fewer invented details in a blind hand read (`aisle eval
  copy-audit`: 29 of 40 against 26 of 40), a lower cosine to the human text (0.572 against 0.592)
  and a lower Recall@10 (0.070 against 0.095). The small model invents with common words as readily
  as with rare ones.
- Split: `agent.copy.heldout.select_eval_items(catalog, --eval-items, --seed)` -- the one function
  `aisle eval copy` uses to pick its items -- is held out, and so is every other item with the same
  (normalised) title or the same description (duplicate listings). Training examples are drawn,
  seeded, from the rest. The adapter metadata records the split, the held-out ids (and their hash)
  and the training ids' hash; `aisle eval copy` refuses an adapter whose training could include
  the items it evaluates.

Sizing: SmolLM2-135M, LoRA r=8 on all linear layers, bf16 autocast, batch 1 x 4-step
accumulation, ~364-token prompts with the worked example, ~70-token targets. Building the targets
for the whole pool takes ~40 s: on amazon-office-2018, 1050 of the 2987 training-pool items keep a
target (200 held out, 43 duplicates of held-out items left out; 1934 have too little supported
text). The defaults (all of them, DEFAULT_EPOCHS = 2 passes, lr 3e-4) are the adapter the README's
copy figures come from: `aisle train copywriter --catalog amazon-office-2018 --threads 2
--no-resume` took 2463 s of training (526 steps, 1.17 s/example, loss 3.44 -> 2.89) on the quiet
2-core EPYC. One pass took 1745 s (1.66 s/example, the box partly shared); with ONE torch thread
on a busy box (load ~2.5) a smoke run measured 2.1 s/example, so expect ~75 min there, and
`--max-minutes` + resume split it. On a GPU (same command) raise --batch-size.

The adapter lands in `home/adapters/copywriter-<catalog>`; `copywriter_adapter_path` finds it
again (only a finished run trained on the current base model); `aisle describe` uses it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.settings import Settings
from agent.train import options as o

log = logging.getLogger(__name__)

TASK = "describe"
# Measured by the run in the module docstring (--threads 2, quiet 2-core EPYC); update with the figure.
SECONDS_PER_EXAMPLE = 1.2
# Every target amazon-office-2018's pool keeps (1050), twice: the second epoch lowered the target
# loss on 120 unseen amazon-office-2014 items from 3.062 to 3.021 (paired -0.041 +- 0.007, lower on
# 91 of 120; base model 3.497): `aisle eval copy-loss --adapter <1 epoch> --adapter <2 epochs>`.
DEFAULT_EXAMPLES = 1100
DEFAULT_EPOCHS = 2
DEFAULT_LR = 3e-4
DEFAULT_EVAL_ITEMS = 200  # = `aisle eval copy --items` default
MAX_SENTENCE_WORDS = 40
SELLING_POINT_WORDS = (4, 20)
# A target must fit the copywriter's generation budget (`agent.copy.writer.DEFAULT_MAX_TOKENS`,
# the end-of-turn token included), or the model learns answers that inference cuts off. Uncapped,
# 7.7 % of 1000 amazon-office-2018 targets were over 120 SmolLM2 tokens (p95 125, max 203). At
# 3.7 characters per token (targets average 4.7) every capped target fits: the 1000 targets built
# with the cap have max 119 tokens with EOS, p95 95 (4 % of items lose sentences or the example).
TARGET_CHARS_PER_TOKEN = 3.7


# --- targets ---------------------------------------------------------------------------------------


@dataclass
class TargetStats:
    """Counts over the items a target was tried for (in the adapter metadata)."""

    tried: int = 0
    kept: int = 0
    too_little_text: int = 0
    failed_gate: int = 0
    sentences: int = 0
    sentences_kept: int = 0
    dropped_claims: dict[str, int] = field(default_factory=dict)


class _PromptOnly:
    """Stands in for an engine: the training Copywriter renders prompts and checks text only."""

    name = "prompt-only"
    model_id = "prompt-only"

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the training Copywriter only renders prompts and checks text")


def training_writer(catalog: Any, prompt: str | None = None) -> Any:
    """A Copywriter for `catalog` (its distinctive brands, its prompt) that never calls an engine."""
    from agent.copy.writer import DEFAULT_PROMPT, Copywriter

    # rarity=None: targets do not use specific words (see the module docstring), so skip counting them.
    return Copywriter.for_catalog(_PromptOnly(), catalog, prompt=prompt or DEFAULT_PROMPT, rarity=None)  # type: ignore[arg-type]


def factual_target(item: Any, writer: Any, stats: TargetStats | None = None) -> str | None:
    """The training target for `item` built from its human description's supported sentences, or
    None when fewer than three remain (a selling point and two description sentences). Description
    sentences are added while the whole target fits the generation budget (`max_target_chars`)."""
    from agent.copy.writer import MAX_DESCRIPTION_CHARS, MAX_SELLING_POINT_WORDS, MAX_SENTENCES, _clean_sentences, copy_evidence

    stats = stats if stats is not None else TargetStats()
    stats.tried += 1
    evidence = copy_evidence(item)
    sentences = [s for s in _clean_sentences(item.description, item.title) if len(s.split()) <= MAX_SENTENCE_WORDS]
    stats.sentences += len(sentences)
    kept: list[str] = []
    for s in sentences:
        report = writer.checker(s, evidence, catalog_brands=writer.catalog_brands)
        if report.ok:
            kept.append(s)
            continue
        for problem in report.unsupported:
            kind = problem.split(" ", 1)[0].strip("'\"")
            stats.dropped_claims[kind] = stats.dropped_claims.get(kind, 0) + 1
    stats.sentences_kept += len(kept)
    lo, hi = SELLING_POINT_WORDS
    point_i = next((i for i, s in enumerate(kept) if lo <= len(s.split()) <= min(hi, MAX_SELLING_POINT_WORDS)), None)
    if point_i is None:
        stats.too_little_text += 1
        return None
    point = kept[point_i]
    body: list[str] = []
    for s in kept[:point_i] + kept[point_i + 1 :]:
        if len(body) == MAX_SENTENCES or len(" ".join([*body, s])) > MAX_DESCRIPTION_CHARS:
            break
        if len(_target_text(point, [*body, s])) > max_target_chars():
            break
        body.append(s)
    if len(body) < 2:
        stats.too_little_text += 1
        return None
    target = _target_text(point, body)
    if not writer._check(item, target).passed:  # the gate every generated draft goes through
        stats.failed_gate += 1
        return None
    stats.kept += 1
    return target


def _target_text(point: str, body: list[str]) -> str:
    return f"Selling point: {point}\nDescription: {' '.join(body)}"


def max_target_chars() -> int:
    """The longest target (characters) that fits the copywriter's max_tokens with its end-of-turn token."""
    from agent.copy.writer import DEFAULT_MAX_TOKENS

    return int(TARGET_CHARS_PER_TOKEN * (DEFAULT_MAX_TOKENS - 1))


# --- split -----------------------------------------------------------------------------------------


def _desc_key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))[:300]


@dataclass
class CopySplit:
    heldout: list[str]  # the eval's items (select_eval_items)
    blocked: list[str]  # other items sharing a held-out title or description (duplicates)
    train_pool: list[str]  # everything else with a description, in seeded random order


def copy_split(catalog: Any, eval_items: int = DEFAULT_EVAL_ITEMS, seed: int = 0) -> CopySplit:
    """Held-out = `select_eval_items(catalog, eval_items, seed)` (the eval's own function); the
    training pool = items with a description that are neither held out nor a duplicate of one."""
    from agent.copy.heldout import norm_title, select_eval_items
    from agent.copy.writer import item_problem
    from retrieval.collab import id_sort_key

    heldout = [it.id for it in select_eval_items(catalog, eval_items, seed)] if eval_items else []
    held = set(heldout)
    titles = {norm_title(catalog.items[i].title) for i in heldout}
    descs = {_desc_key(catalog.items[i].description) for i in heldout}
    blocked, pool = [], []
    for i in sorted(catalog.items, key=id_sort_key):
        if i in held:
            continue
        it = catalog.items[i]
        if not it.description.strip() or item_problem(it):
            continue
        if norm_title(it.title) in titles or _desc_key(it.description) in descs:
            blocked.append(i)
            continue
        pool.append(i)
    random.Random(f"{seed}:copywriter-train").shuffle(pool)
    return CopySplit(heldout, blocked, pool)


def build_examples(catalog: Any, split: CopySplit, writer: Any, n: int | None) -> tuple[list[Any], list[str], TargetStats]:
    """(lora Examples, their item ids, stats): the pool in its seeded order, until `n` items kept a target."""
    from agent.train.lora import Example

    stats = TargetStats()
    examples, ids = [], []
    for i in split.train_pool:
        if n is not None and len(examples) >= n:
            break
        item = catalog.items[i]
        target = factual_target(item, writer, stats)
        if target is None:
            continue
        examples.append(Example(writer.messages(item), target))
        ids.append(i)
    return examples, ids, stats


# --- finding the adapter ---------------------------------------------------------------------------


def default_adapter_dir(settings: Settings, catalog: str) -> Path:
    return settings.home / "adapters" / f"copywriter-{catalog}"


def copywriter_adapter_path(settings: Settings, catalog: str) -> Path | None:
    """`home/adapters/copywriter-<catalog>` when it holds a finished copywriter run trained on the
    current base model (same fingerprint), else None (with a log line when a folder exists but does
    not fit)."""
    from agent.train.lora import adapter_matches, read_metadata
    from agent.train.ranker import base_model_dir

    folder = default_adapter_dir(settings, catalog)
    if not folder.is_dir():
        return None
    meta = read_metadata(folder) or {}
    if meta.get("task") == TASK and adapter_matches(folder, base_model_dir(settings)):
        return folder
    log.warning("copywriter adapter %s is not a finished copywriter run on %s; writing with the base model", folder, base_model_dir(settings))
    return None


def resolve_copy_adapter(settings: Settings, catalog: str, explicit: Path | None = None, *, use_adapter: bool = True) -> Path | str | None:
    """The adapter `aisle describe` (and `aisle eval copy`) writes with: None with `use_adapter`
    False; else `explicit` (checked: a LoRA folder trained on the current base model; an unfinished
    run is used with a warning); else `copywriter_adapter_path`. With AISLE_LLM=openai the adapter
    is the server's served name (`explicit` as a string), never looked up."""
    from agent.train.lora import adapter_matches, read_metadata
    from agent.train.ranker import base_model_dir

    if not use_adapter:
        return None
    if settings.llm == "openai":
        return str(explicit) if explicit is not None else None
    if explicit is None:
        return copywriter_adapter_path(settings, catalog)
    folder = Path(explicit).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a LoRA adapter folder (no adapter_config.json); train one with `aisle train copywriter`")
    meta = read_metadata(folder) or {}
    if meta and not adapter_matches(folder, base_model_dir(settings), complete=False):
        raise ValueError(f"adapter {folder} was trained on {(meta.get('base_model') or {}).get('path')}, not on {base_model_dir(settings)}")
    if meta and not meta.get("complete", False):
        log.warning("adapter %s is from an unfinished run (%s/%s steps)", folder, meta.get("steps"), meta.get("total_steps"))
    if meta.get("task") not in (None, TASK):
        log.warning("adapter %s was trained for %r, not for copy", folder, meta.get("task"))
    return folder


def adapter_fingerprint(folder: Path) -> str | None:
    """Content hash of the adapter's weights (adapter_model.safetensors), or None."""
    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def adapter_record(folder: Path | str | None) -> dict[str, Any] | None:
    """What an overlay record says about the adapter that produced it (None: the base model)."""
    if folder is None:
        return None
    if not isinstance(folder, Path):  # a served adapter name (openai engine)
        return {"name": str(folder), "served": True}
    from agent.train.lora import read_metadata

    meta = read_metadata(folder) or {}
    return {
        "name": folder.name,
        "path": str(folder),
        "fingerprint": adapter_fingerprint(folder),
        "task": meta.get("task"),
        "catalog": meta.get("catalog"),
        "base_model": (meta.get("base_model") or {}).get("name"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "complete": meta.get("complete"),
    }


# --- command ---------------------------------------------------------------------------------------


def train_copywriter(
    settings: Settings,
    catalog: str,
    *,
    examples: int = DEFAULT_EXAMPLES,
    epochs: int = DEFAULT_EPOCHS,
    eval_items: int = DEFAULT_EVAL_ITEMS,
    seed: int = 0,
    lora_r: int = 8,
    lr: float = DEFAULT_LR,
    batch_size: int = 1,
    grad_accum: int = 4,
    threads: int | None = None,
    max_minutes: float | None = None,
    resume: bool = True,
    out: Path | None = None,
    prompt: str | None = None,
    progress: bool = True,
    **config: Any,
) -> Any:
    """Build the examples and train; returns `agent.train.lora.TrainResult`."""
    from agent.copy.heldout import ids_hash
    from agent.engines.model_store import ensure_llm_model
    from agent.train.lora import LoraTrainConfig, train_lora
    from agent.train.ranker import torch_cuda
    from retrieval.registry import load_catalog

    cat = load_catalog(settings, catalog)
    split = copy_split(cat, eval_items, seed)
    writer = training_writer(cat, prompt)
    lora_examples, ids, stats = build_examples(cat, split, writer, examples)
    if not lora_examples:
        raise ValueError(f"no item of {catalog!r} outside the held-out set has a description with enough supported sentences")
    if len(lora_examples) < examples:
        log.warning("only %d examples (asked for %d): not enough items with supported description sentences", len(lora_examples), examples)
    leaked = set(ids) & set(split.heldout)
    assert not leaked, f"held-out items in training: {sorted(leaked)[:5]}"
    model_dir = ensure_llm_model(settings)
    cfg = LoraTrainConfig(r=lora_r, alpha=2 * lora_r, lr=lr, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
        target_eos=True, threads=threads or settings.llm_threads or (None if torch_cuda() else 1), **config,
    )  # fmt: skip
    split_text = (
        f"held out: agent.copy.heldout.select_eval_items(catalog, n={eval_items}, seed={seed}) (the items `aisle eval copy --items {eval_items} "
        f"--seed {seed}` evaluates) plus {len(split.blocked)} items sharing a held-out title or description; training items drawn from the rest "
        f"with a description, shuffled with Random('{seed}:copywriter-train'); target = the human description's sentences that pass "
        "the claim checker against title/brand/categories/attributes"
    )
    extra = {
        "catalog": catalog,
        "heldout": {
            "catalog": catalog,
            "n": eval_items,
            "seed": seed,
            "function": "agent.copy.heldout.select_eval_items",
            "ids": split.heldout,
            "ids_hash": ids_hash(split.heldout),
            "blocked_duplicates": len(split.blocked),
        },
        "train_ids_hash": ids_hash(ids),
        "train_pool": len(split.train_pool),
        "targets": {
            "tried": stats.tried,
            "kept": stats.kept,
            "too_little_text": stats.too_little_text,
            "failed_gate": stats.failed_gate,
            "sentences": stats.sentences,
            "sentences_kept": stats.sentences_kept,
            "dropped_claim_kinds": stats.dropped_claims,
        },
    }
    return train_lora(
        model_dir, lora_examples, out or default_adapter_dir(settings, catalog), cfg,
        task=TASK, prompt=writer.prompt, split=split_text, extra=extra, resume=resume, max_minutes=max_minutes, progress=progress,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `copywriter` to the `aisle train` group."""

    @app.command(
        "copywriter",
        help=(
            "LoRA fine-tune of the engine's LLM to write product copy from title/brand/categories/attributes, on the catalog's "
            "own human descriptions reduced to the sentences the claim checker supports (the eval's held-out items never trained on). "
            f"Measured ~{SECONDS_PER_EXAMPLE:.1f} s/example on a quiet 2-core CPU with --threads 2 (SmolLM2-135M, bf16 autocast, batch 1), "
            f"so the defaults ({DEFAULT_EXAMPLES} examples x {DEFAULT_EPOCHS} epochs) take ~{SECONDS_PER_EXAMPLE * DEFAULT_EXAMPLES * DEFAULT_EPOCHS / 60:.0f} min there "
            "plus ~1.5 min of set-up; one thread on a busy box is ~2x slower (--max-minutes and resume split the run). "
            "Output: <home>/adapters/copywriter-<catalog> (used automatically by `aisle describe`)."
        ),
    )
    def copywriter(
        ctx: typer.Context,
        catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="A registered catalog with human descriptions; default: AISLE_CATALOG.")] = None,
        examples: Annotated[int, typer.Option("--examples", min=1, help="Training examples (items whose description keeps enough supported sentences).")] = DEFAULT_EXAMPLES,
        epochs: o.Epochs = DEFAULT_EPOCHS,
        eval_items: Annotated[int, typer.Option("--eval-items", min=0, help="Held-out items: the sample `aisle eval copy --items N --seed S` evaluates; never trained on.")] = DEFAULT_EVAL_ITEMS,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out sample (= `aisle eval copy --seed`) and of the training order.")] = 0,
        lora_r: o.LoraR = 8,
        lr: o.LearningRate = DEFAULT_LR,
        batch_size: o.BatchSize = 1,
        grad_accum: o.GradAccum = 4,
        threads: o.Threads = None,
        max_minutes: o.MaxMinutes = None,
        resume: o.Resume = True,
        out: o.out_option("copywriter") = None,
        prompt: o.prompt_option("the copywriter's, describe.v1") = None,
    ) -> None:
        from agent.entrypoints.cli_app import fail, settings_of
        from retrieval.catalog import CatalogError

        settings = settings_of(ctx)
        name = catalog or settings.catalog
        try:
            result = train_copywriter(
                settings, name, examples=examples, epochs=epochs, eval_items=eval_items, seed=seed, lora_r=lora_r, lr=lr,
                batch_size=batch_size, grad_accum=grad_accum, threads=threads, max_minutes=max_minutes, resume=resume, out=out, prompt=prompt,
            )  # fmt: skip
        except (CatalogError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        meta = result.metadata
        typer.echo(o.run_summary(result, f" (targets kept for {meta['targets']['kept']} of {meta['targets']['tried']} items tried)"))
