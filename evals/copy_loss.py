"""`aisle eval copy-loss`: held-out target loss of copywriter adapters, a few minutes per model.

`aisle eval copy` is the real judge of a copywriter (it generates, checks and searches: ~45 min
for 200 items on 2 CPU cores), too slow to choose between training runs. This eval scores what
the model would have to write instead: for items none of the compared runs trained on, the mean
cross-entropy of the training-format target (`agent.train.copywriter.factual_target`: the human
description's supported sentences) given the copywriter's prompt. Lower is better; the base model
is the reference row.

The items are unseen by construction: an adapter trained on `--catalog` is refused (its training
pool is that catalog's items); items whose title appears in an adapter's training catalog are left
out, and so are the items `aisle eval copy --catalog C --items N --seed S` evaluates, so choosing a
run by this loss never looks at the copy eval's items.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.settings import Settings

DEFAULT_CATALOG = "amazon-office-2014"
DEFAULT_ITEMS = 120
DEFAULT_COPY_EVAL_ITEMS = 100  # the cross-catalog `aisle eval copy` sample this stays clear of


def validation_items(catalog: Any, *, n: int, skip: set[str], writer: Any) -> list[tuple[Any, str]]:
    """(item, target) for the first `n` eligible items (sorted ids) not in `skip` that keep a target."""
    from agent.copy.heldout import eligible
    from agent.train.copywriter import factual_target
    from retrieval.collab import id_sort_key

    out: list[tuple[Any, str]] = []
    for i in sorted(catalog.items, key=id_sort_key):
        if len(out) >= n:
            break
        item = catalog.items[i]
        if i in skip or not eligible(item):
            continue
        target = factual_target(item, writer)
        if target is not None:
            out.append((item, target))
    return out


def unseen_items(settings: Settings, catalog_name: str, adapters: list[Path], *, n_items: int = DEFAULT_ITEMS,
                 copy_eval_items: int = DEFAULT_COPY_EVAL_ITEMS, seed: int = 0) -> tuple[Any, list[tuple[Any, str]], dict[str, Any]]:
    """(training writer, [(item, target)], what was left out) for items no adapter trained on and
    outside the copy eval's sample. Refuses an adapter trained on `catalog_name`."""
    from agent.copy.heldout import items_with_titles_of, select_eval_items
    from agent.train.copywriter import training_writer
    from agent.train.lora import read_metadata
    from retrieval.registry import load_catalog

    source = load_catalog(settings, catalog_name)
    trained_on: set[str] = set()
    for folder in adapters:
        if not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a LoRA adapter folder (no adapter_config.json); train one with `aisle train copywriter`")
        cat = (read_metadata(folder) or {}).get("catalog")
        if cat == catalog_name:
            raise ValueError(f"adapter {folder} was trained on {catalog_name}: score it on another catalog (its items are not unseen)")
        if cat:
            trained_on.add(cat)
    skip: set[str] = set()
    for cat in sorted(trained_on):
        skip |= items_with_titles_of(source, load_catalog(settings, cat))
    if copy_eval_items:
        skip |= {it.id for it in select_eval_items(source, copy_eval_items, seed, exclude=skip)}
    writer = training_writer(source)
    rows = validation_items(source, n=n_items, skip=skip, writer=writer)
    if not rows:
        raise ValueError(f"no item of {catalog_name} outside the excluded ones keeps a training target")
    return writer, rows, {"titles_of": sorted(trained_on), "copy_eval_items": copy_eval_items, "seed": seed, "count": len(skip)}


def run_copy_loss(settings: Settings, *, catalog_name: str = DEFAULT_CATALOG, adapters: list[Path] | None = None, n_items: int = DEFAULT_ITEMS,
                  copy_eval_items: int = DEFAULT_COPY_EVAL_ITEMS, seed: int = 0, threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Mean target loss of the base model and each adapter on the same unseen items."""
    import torch
    from tqdm import tqdm

    from agent.train.copywriter import adapter_fingerprint
    from agent.train.lora import collate, encode_example, load_base, target_loss
    from agent.train.ranker import base_model_dir
    from evals.report import environment, git_state

    adapters = [Path(a) for a in adapters or []]
    writer, rows, excluded = unseen_items(settings, catalog_name, adapters, n_items=n_items, copy_eval_items=copy_eval_items, seed=seed)
    torch.set_num_threads(threads or settings.llm_threads or 1)
    model_dir = base_model_dir(settings)
    tokenizer, base = load_base(model_dir, torch.device("cpu"))
    encoded = [encode_example(tokenizer, writer.messages(item), target, eos=True) for item, target in rows]
    results: dict[str, Any] = {}
    base_losses: list[float] = []
    t0 = time.perf_counter()
    labels = [f.name if [g.name for g in adapters].count(f.name) == 1 else str(f) for f in adapters]
    for label, folder in [("base", None), *zip(labels, adapters)]:
        model = base
        if folder is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(folder))
        model.eval()
        losses = []
        with torch.no_grad():
            for row in tqdm(encoded, desc=f"target loss {label}", unit="item", disable=not progress):
                losses.append(float(target_loss(model, collate([row], tokenizer.pad_token_id))))
        mean = statistics.fmean(losses)
        base_losses = base_losses or losses
        diffs = [x - y for x, y in zip(losses, base_losses)]  # paired: the same items, so item difficulty cancels
        results[label] = {
            "adapter": str(folder) if folder else None,
            "fingerprint": adapter_fingerprint(folder) if folder else None,
            "mean_target_loss": round(mean, 4),
            "stderr": round(statistics.stdev(losses) / math.sqrt(len(losses)), 4) if len(losses) > 1 else None,
            "perplexity": round(math.exp(mean), 2),
            "vs_base": round(statistics.fmean(diffs), 4),
            "vs_base_stderr": round(statistics.stdev(diffs) / math.sqrt(len(diffs)), 4) if len(diffs) > 1 else None,
            "per_item": [round(x, 4) for x in losses],
        }
        if folder is not None:
            base = model.unload()  # the bare base model again for the next adapter
    return {
        "catalog": catalog_name,
        "items": len(rows),
        "excluded": excluded,
        "base_model": model_dir.name,
        "models": results,
        "seconds": round(time.perf_counter() - t0, 1),
        "git": git_state(),
        "environment": environment(),
    }


def format_loss_report(result: dict[str, Any]) -> str:
    lines = [f"copy target loss on {result['items']} unseen items of {result['catalog']} "
             f"(left out: titles of {', '.join(result['excluded']['titles_of']) or '-'}, the {result['excluded']['copy_eval_items']} copy-eval items)",
             "  model                                   loss     ± s.e.   perplexity  vs base (paired ± s.e.)"]
    for label, row in result["models"].items():
        paired = f"{row['vs_base']:+.4f} ± {row['vs_base_stderr']}" if label != "base" and row["vs_base_stderr"] is not None else "-"
        lines.append(f"  {label:<40}{row['mean_target_loss']:<9}{row['stderr'] if row['stderr'] is not None else '-':<9}{row['perplexity']:<12}{paired}")
    return "\n".join(lines)


def copy_loss_command(
    ctx: typer.Context,
    adapter: Annotated[Optional[list[Path]], typer.Option("--adapter", help="A copywriter LoRA folder to score (repeat to compare several).")] = None,
    catalog: Annotated[str, typer.Option("--catalog", "-c", help="Catalog whose items are scored; not one an adapter trained on.")] = DEFAULT_CATALOG,
    items: Annotated[int, typer.Option("--items", "-n", min=1, help="Items scored (the first that keep a target, by id).")] = DEFAULT_ITEMS,
    copy_eval_items: Annotated[int, typer.Option("--copy-eval-items", min=0, help="Leave out the items `aisle eval copy --items N` evaluates on this catalog.")] = DEFAULT_COPY_EVAL_ITEMS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of that copy-eval sample.")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default AISLE_LLM_THREADS, else 1).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
) -> None:
    """Held-out target loss of the base model and copywriter adapters: a quick way to choose a run."""
    from agent.entrypoints.cli_app import fail, settings_of
    from evals.report import save_json
    from retrieval.catalog import CatalogError

    try:
        result = run_copy_loss(settings_of(ctx), catalog_name=catalog, adapters=adapter, n_items=items, copy_eval_items=copy_eval_items, seed=seed, threads=threads)
    except (CatalogError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(format_loss_report(result))
    if out:
        typer.echo(f"wrote {save_json(result, out)}")
