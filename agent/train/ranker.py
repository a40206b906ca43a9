"""`aisle train ranker`: LoRA fine-tune of the engine's LLM for one-pass re-ranking (LlamaRec).

LlamaRec (Yue et al. 2023) trains the LLM on the verbalizer objective the re-ranker reads at
inference: the candidates are listed under letters, and the loss is the cross-entropy of the
held-out item's letter as the first answer token, nothing else. Here:

- Split (never sees the evaluated item): per user, `leave_one_out` twice. The last item (the
  test target of every eval) is dropped; the training target is the second-to-last item and the
  history is everything before it. Users with fewer than 3 items give no example, and the users
  that train and gate the LLM stage of the ranking stage (`agent.recommend.ltr.val_split`) are
  left out, so its gate judges the adapter on users it never saw.
- Candidates: `candidates_for(history) -> top-20 ids, best first` (minus the user's test item,
  should the first stage propose it: it is never shown, not even as a distractor). The lead's
  `agent.recommend.ltr.first_stage(settings, catalog, split="val")` when it exists, else
  co-occurrence fitted on the validation-split histories (so the target is never in the fitted
  data of its own user). Only examples whose target is among the candidates are kept (as LlamaRec
  does: the LLM learns to pick, not to retrieve).
- The candidate order is shuffled per example with an RNG seeded by (seed, user), so the target's
  letter is uniform over positions and position is no shortcut.
- The prompt is `Reranker.messages(candidates, RankContext(query=None, history_titles=...))`: the
  same template (`rerank_onepass.v1` unless --prompt) and code path as inference, rendered with
  the engine's chat template (`agent.train.lora`). Target text = the letter.

Sizing (measured on the 2-core Xeon, avx512_bf16 without AMX, bf16 autocast, SmolLM2-135M, LoRA
r=8 on all linear layers, 20 candidates, ~970-token prompts, batch 1, the box shared with ~3
other CPU-bound jobs, load average ~7): forward + backward + AdamW = 6.0 s per example with ONE
torch thread, but 60-90 s with two (OpenMP threads waiting on each other when the cores are
oversubscribed) -- hence `--threads` defaults to 1 on a CPU. Eager attention holds heads x
length^2 per layer for backward: batch 1 peaks at ~2.8 GB RSS, a padded batch of 4 reached
13 GB, so the CPU default is batch 1 with 4-step gradient accumulation. The defaults
(DEFAULT_EXAMPLES examples x DEFAULT_EPOCHS epoch, ~40 min at 6 s/example plus ~1 min of set-up)
fit the 45-minute budget there; on a quiet box or a GPU raise --examples (and --batch-size).

The adapter lands in `home/adapters/ranker-<catalog>`; `ranker_adapter_path` finds it again
(only when its metadata names the current base model).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.settings import Settings
from agent.train import options as o

log = logging.getLogger(__name__)

N_CANDIDATES = 20
# Measured with `aisle train ranker --examples 32` (see the module docstring); update with the figure.
SECONDS_PER_EXAMPLE = 6.0
DEFAULT_EXAMPLES = 400
DEFAULT_EPOCHS = 1
TASK = "rerank_onepass"

CandidatesFn = Callable[[list[str]], list[str]]


@dataclass
class RankerExample:
    user: str
    history: list[str]  # item ids, oldest first (everything before the target)
    target: str  # item id: the user's second-to-last item
    candidates: list[str]  # shown order (shuffled), len <= 26
    label: str  # the target's letter in the shown order


# --- split ---------------------------------------------------------------------------------------


def validation_split(interactions: Mapping[str, Sequence[str]]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(histories, targets): `leave_one_out` twice. The last item is never used, the target is the
    second-to-last and the history everything before it."""
    from retrieval.collab import leave_one_out

    train, _test = leave_one_out(interactions)  # the test item is dropped here, never looked at again
    return leave_one_out(train)


def cooccurrence_candidates(histories: Mapping[str, Sequence[str]], k: int = N_CANDIDATES) -> CandidatesFn:
    """Fallback first stage: co-occurrence fitted on the validation-split histories, top k."""
    from retrieval.collab import CooccurrenceRecommender

    model = CooccurrenceRecommender().fit(histories)

    def candidates_for(history: list[str]) -> list[str]:
        return [item for item, _ in model.recommend(history, k)]

    return candidates_for


def first_stage(settings: Settings, catalog: str, histories: Mapping[str, Sequence[str]]) -> tuple[CandidatesFn, str]:
    """(candidates_for, description): the lead's learned first stage when available, else co-occurrence."""
    try:
        from agent.recommend.ltr import first_stage as ltr_first_stage  # type: ignore[attr-defined]
    except ImportError:
        return cooccurrence_candidates(histories), "co-occurrence fitted on the validation-split histories, top 20"
    return ltr_first_stage(settings, catalog, split="val"), "agent.recommend.ltr.first_stage(split='val'), top 20"


def shuffled(candidates: Sequence[str], seed: int, user: str) -> list[str]:
    """The candidates in a per-example order, reproducible from (seed, user) alone."""
    order = list(candidates)
    random.Random(f"{seed}:{user}").shuffle(order)
    return order


def _letter(i: int) -> str:
    return chr(ord("A") + i)


def build_examples(
    interactions: Mapping[str, Sequence[str]],
    candidates_for: CandidatesFn,
    *,
    known: Callable[[str], bool] = lambda _: True,
    n: int | None = None,
    seed: int = 0,
    n_candidates: int = N_CANDIDATES,
) -> list[RankerExample]:
    """Examples from the validation split, users in a seeded random order, until `n` are kept.

    `known(item_id)`: whether an id can be shown (is in the catalog); unknown candidates are dropped,
    unknown targets skip the user."""
    histories, targets = validation_split(interactions)
    users = sorted(histories)
    random.Random(seed).shuffle(users)
    out: list[RankerExample] = []
    for user in users:
        if n is not None and len(out) >= n:
            break
        history, target = histories[user], targets[user]
        test_item = interactions[user][-1]
        if not history or not known(target) or target == test_item:
            continue
        # The test item is not even shown as a distractor: training it as a negative for this
        # user would bias the evaluation against it.
        cands = [c for c in candidates_for(list(history))[:n_candidates] if known(c) and c != test_item][:26]
        if target not in cands:
            continue
        order = shuffled(cands, seed, user)
        out.append(RankerExample(user, list(history), target, order, _letter(order.index(target))))
    return out


class _PromptOnly:
    """Stands in for an engine: `Reranker.messages` renders prompts and never calls it."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the training Reranker only renders prompts")


def reranker_for_prompts(prompt: str | None = None) -> Any:
    """A Reranker configured as the pipeline's (history_items default) that only renders prompts."""
    from agent.recommend.rank import Reranker

    return Reranker(_PromptOnly(), mode="onepass", prompt=prompt)  # type: ignore[arg-type]


def to_lora_examples(examples: Sequence[RankerExample], catalog: Any, prompt: str | None = None) -> tuple[list[Any], str]:
    """(lora Examples, prompt name): prompts rendered by `Reranker.messages`, target = the letter."""
    from agent.recommend.rank import Candidate, RankContext
    from agent.train.lora import Example

    ranker = reranker_for_prompts(prompt)
    out = []
    for ex in examples:
        cands = [Candidate(catalog.items[i], 0.0) for i in ex.candidates]
        titles = [catalog.items[i].title for i in ex.history if i in catalog.items]
        out.append(Example(ranker.messages(cands, RankContext(query=None, history_titles=titles)), ex.label))
    return out, ranker.prompt


# --- finding the adapter ---------------------------------------------------------------------------


def base_model_dir(settings: Settings) -> Path:
    """The HF folder the transformers engine loads for `settings` (without converting anything)."""
    from agent.engines.model_store import model_folder

    return model_folder(settings)


def default_adapter_dir(settings: Settings, catalog: str) -> Path:
    return settings.home / "adapters" / f"ranker-{catalog}"


def ranker_adapter_path(settings: Settings, catalog: str) -> Path | None:
    """The ranker adapter to use for `catalog`: `settings.llm_ranker_adapter` or, when unset,
    `home/adapters/ranker-<catalog>`; returned only if its `aisle_adapter.json` names the current
    base model (same fingerprint) and the run finished, else None (with a log line when a folder
    exists but does not fit)."""
    from agent.train.lora import adapter_matches

    folder = Path(settings.llm_ranker_adapter).expanduser() if settings.llm_ranker_adapter else default_adapter_dir(settings, catalog)
    if not folder.is_dir():
        if settings.llm_ranker_adapter:
            log.warning("AISLE_LLM_RANKER_ADAPTER=%s does not exist; ranking with the base model", folder)
        return None
    if adapter_matches(folder, base_model_dir(settings)):
        return folder
    log.warning("ranker adapter %s was not trained (to completion) on %s; ranking with the base model", folder, base_model_dir(settings))
    return None


# --- command -------------------------------------------------------------------------------------


def train_ranker(
    settings: Settings,
    catalog: str,
    *,
    examples: int = DEFAULT_EXAMPLES,
    epochs: int = DEFAULT_EPOCHS,
    lora_r: int = 8,
    lr: float = 2e-4,
    batch_size: int = 1,
    grad_accum: int = 4,
    threads: int | None = None,
    max_minutes: float | None = None,
    resume: bool = True,
    out: Path | None = None,
    prompt: str | None = None,
    candidates_for: CandidatesFn | None = None,
    progress: bool = True,
    **config: Any,
) -> Any:
    """Build the examples and train; returns `agent.train.lora.TrainResult`."""
    from agent.engines.model_store import ensure_llm_model
    from agent.train.lora import LoraTrainConfig, train_lora
    from retrieval.registry import load_catalog, load_interactions

    cat = load_catalog(settings, catalog)
    interactions = load_interactions(settings, catalog)
    if not interactions:
        raise ValueError(f"catalog {catalog!r} has no interactions; the ranker learns from purchase histories")
    histories, targets = validation_split(interactions)
    # The users that train and gate the ranking stage's LLM stage (agent/recommend/ltr.py) stay out,
    # so the gate measures the adapter on users it never saw.
    from agent.recommend.ltr import val_split

    gate_users = set(val_split(histories, targets, cat, seed=settings.seed)["stage2"])
    interactions = {u: seq for u, seq in interactions.items() if u not in gate_users}
    if candidates_for is None:
        candidates_for, source = first_stage(settings, catalog, histories)
    else:
        source = "caller-provided candidates_for"
    rows = build_examples(interactions, candidates_for, known=lambda i: i in cat.items, n=examples, seed=settings.seed)
    if not rows:
        raise ValueError(f"no user of {catalog!r} has a second-to-last item among its first-stage candidates")
    if len(rows) < examples:
        log.warning("only %d examples (asked for %d): not enough users with the target among the candidates", len(rows), examples)
    lora_examples, prompt_name = to_lora_examples(rows, cat, prompt)
    model_dir = ensure_llm_model(settings)
    cfg = LoraTrainConfig(r=lora_r, alpha=2 * lora_r, lr=lr, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, seed=settings.seed,
        threads=threads or settings.llm_threads or (None if torch_cuda() else 1), **config,
    )  # fmt: skip
    split = (
        "per user leave_one_out twice: last item never used; target = second-to-last item, history = all before it; "
        f"candidates = {source}; kept only examples whose target is a candidate; candidate order shuffled with Random(f'{{seed}}:{{user}}'); "
        f"the {len(gate_users)} users that gate the LLM stage (agent.recommend.ltr.val_split 'stage2') left out"
    )
    letters = [r.label for r in rows]
    extra = {
        "catalog": catalog,
        "candidates": source,
        "n_candidates_mean": round(sum(len(r.candidates) for r in rows) / len(rows), 2),
        "label_counts": {c: letters.count(c) for c in sorted(set(letters))},
    }
    return train_lora(
        model_dir, lora_examples, out or default_adapter_dir(settings, catalog), cfg,
        task=TASK, prompt=prompt_name, split=split, extra=extra, resume=resume, max_minutes=max_minutes, progress=progress,
    )  # fmt: skip


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def register(app: typer.Typer) -> None:
    """Add `ranker` to the `aisle train` group."""

    @app.command(
        "ranker",
        help=(
            "LoRA fine-tune of the engine's LLM on LlamaRec's objective: the held-out item's letter among "
            "20 first-stage candidates (second-to-last item per user; the last one is never used). "
            f"Measured ~{SECONDS_PER_EXAMPLE:.2f} s/example on the 2-core CPU (SmolLM2-135M, bf16 autocast, 1 thread, busy box), so the defaults "
            f"({DEFAULT_EXAMPLES} examples x {DEFAULT_EPOCHS} epoch) take ~{SECONDS_PER_EXAMPLE * DEFAULT_EXAMPLES * DEFAULT_EPOCHS / 60:.0f} min there. "
            "Output: <home>/adapters/ranker-<catalog> (used automatically by the transformers engine's ranker)."
        ),
    )
    def ranker(
        ctx: typer.Context,
        catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="A registered catalog with interactions; default: AISLE_CATALOG.")] = None,
        examples: Annotated[int, typer.Option("--examples", min=1, help="Training examples (users whose target is among the candidates).")] = DEFAULT_EXAMPLES,
        epochs: o.Epochs = DEFAULT_EPOCHS,
        lora_r: o.LoraR = 8,
        lr: o.LearningRate = 2e-4,
        batch_size: o.BatchSize = 1,
        threads: o.Threads = None,
        grad_accum: o.GradAccum = 4,
        max_minutes: o.MaxMinutes = None,
        resume: o.Resume = True,
        out: o.out_option("ranker") = None,
        prompt: o.prompt_option("the pipeline's, rerank_onepass.v1") = None,
    ) -> None:
        from agent.entrypoints.cli_app import fail, settings_of
        from retrieval.catalog import CatalogError

        settings = settings_of(ctx)
        name = catalog or settings.catalog
        try:
            result = train_ranker(
                settings, name, examples=examples, epochs=epochs, lora_r=lora_r, lr=lr, batch_size=batch_size, grad_accum=grad_accum, threads=threads,
                max_minutes=max_minutes, resume=resume, out=out, prompt=prompt,
            )  # fmt: skip
        except (CatalogError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        typer.echo(o.run_summary(result))
