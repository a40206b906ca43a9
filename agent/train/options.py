"""The command-line options and the closing line every `aisle train` LoRA command shares
(`ranker`, `copywriter`), written once so the two commands read and behave the same."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

Catalog = Annotated[Optional[str], typer.Option("--catalog", "-c", help="A registered catalog; default: AISLE_CATALOG.")]
Epochs = Annotated[int, typer.Option("--epochs", min=1, help="Passes over the examples.")]
LoraR = Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank (alpha = 2r).")]
LearningRate = Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate (linear warm-up 5 %, then linear decay).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Examples per forward pass (padded together; raise on a GPU).")]
GradAccum = Annotated[int, typer.Option("--grad-accum", min=1, help="Forward passes per optimizer step (step = batch-size x grad-accum examples).")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads; default AISLE_LLM_THREADS, else 1 (two threads on a busy 2-core box wait on each other).")]
MaxMinutes = Annotated[Optional[float], typer.Option("--max-minutes", min=0.1, help="Checkpoint and stop after this long; --resume continues.")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the latest checkpoint in the output folder.")]


def out_option(task: str) -> Any:
    return Annotated[Optional[Path], typer.Option("--out", "-o", help=f"Run folder (default: <home>/adapters/{task}-<catalog>).")]


def prompt_option(default: str) -> Any:
    return Annotated[Optional[str], typer.Option("--prompt", help=f"Prompt template (default: {default}).")]


def run_summary(result: Any, detail: str = "") -> str:
    """One line: done or where it stopped, examples, steps, time per example, loss, where the adapter is."""
    meta = result.metadata
    state = "done" if result.complete else f"stopped at step {result.steps}/{result.total_steps} (run again to resume)"
    first = sum(result.losses[:5]) / max(1, len(result.losses[:5]))
    last = sum(result.losses[-5:]) / max(1, len(result.losses[-5:]))
    return (
        f"{state}: {meta['examples']} examples{detail}, {result.steps} steps, {meta['seconds']:.0f} s training "
        f"({meta['seconds_per_example']} s/example), loss {first:.3f} -> {last:.3f}; adapter in {result.out_dir}"
    )
