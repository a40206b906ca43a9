"""`aisle` command line: one subcommand per job. Heavy imports happen inside the commands so
`aisle --help` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from agent.settings import Settings

app = typer.Typer(
    name="aisle",
    help="Conversational product recommender with grounded explanations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CatalogOpt = Annotated[Optional[str], typer.Option("--catalog", "-c", help="Catalog name: amazon-office-2014, amazon-office-2018, mg-shopdial.")]


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data folder (env AISLE_DATA_DIR; default ../shared/data).")] = None,
    home: Annotated[Optional[Path], typer.Option("--home", help="Local state folder: index, models, sessions (env AISLE_HOME; default .aisle).")] = None,
    chroma_url: Annotated[Optional[str], typer.Option("--chroma-url", help="Use a Chroma server instead of the embedded store (env AISLE_CHROMA_URL).")] = None,
    llm: Annotated[Optional[str], typer.Option("--llm", help="LLM engine: transformers | vllm | openai (env AISLE_LLM).")] = None,
    llm_model: Annotated[Optional[Path], typer.Option("--llm-model", help="Local HF model folder or .gguf (env AISLE_LLM_MODEL).")] = None,
    llm_url: Annotated[Optional[str], typer.Option("--llm-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (env AISLE_LLM_URL).")] = None,
) -> None:
    overrides = {k: v for k, v in dict(data_dir=data_dir, home=home, chroma_url=chroma_url, llm=llm, llm_model=llm_model, llm_url=llm_url).items() if v is not None}
    try:
        ctx.obj = Settings(**overrides)
    except Exception as exc:  # pydantic ValidationError: say which setting is wrong
        fail(f"bad setting: {exc}")


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def prepare(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Only convert the LLM; skip the index build.")] = False,
) -> None:
    """One-time setup: convert the packaged LLM to a local HF folder and build the catalog index."""
    from agent.engines.base import EngineError
    from agent.engines.model_store import ensure_llm_model

    settings = settings_of(ctx)
    if settings.llm == "transformers":
        try:
            typer.echo(f"LLM model folder: {ensure_llm_model(settings)}", err=True)
        except (EngineError, FileNotFoundError) as exc:
            fail(str(exc))
    if not no_index:
        index(ctx, catalog=catalog, rebuild=False)


@app.command()
def index(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the collection and embed everything again.")] = False,
) -> None:
    """Embed a catalog into Chroma (incremental: only new or changed items are embedded)."""
    from retrieval.catalog import CatalogError, load_catalog
    from retrieval.embed import Embedder
    from retrieval.index import CatalogIndex, VectorStoreError, make_chroma_client

    settings = settings_of(ctx)
    try:
        cat = load_catalog(catalog or settings.catalog, settings.data_dir)
        typer.echo(cat.report.summary(), err=True)
        idx = CatalogIndex(make_chroma_client(settings), cat.name, Embedder(settings.embed_model, batch_size=settings.embed_batch_size))
        if rebuild:
            idx.drop()
            idx = CatalogIndex(idx.client, cat.name, idx.embedder)
        report = idx.sync(cat)
    except (CatalogError, VectorStoreError, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo(f"{idx.name}: {report}; {idx.count()} items in the index")


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What the shopper is looking for.")],
    catalog: CatalogOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=500, help="How many items.")] = 10,
    brand: Annotated[Optional[list[str]], typer.Option("--brand", help="Only these brands (repeatable).")] = None,
    not_brand: Annotated[Optional[list[str]], typer.Option("--not-brand", help="Exclude these brands (repeatable).")] = None,
    category: Annotated[Optional[list[str]], typer.Option("--category", help="Only items in one of these categories (any level; repeatable).")] = None,
    price_min: Annotated[Optional[float], typer.Option("--price-min", min=0)] = None,
    price_max: Annotated[Optional[float], typer.Option("--price-max", min=0)] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Item ids to leave out (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Hybrid (dense + BM25) search with filters."""
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError
    from retrieval.search import SearchFilters, open_searcher

    settings = settings_of(ctx)
    try:
        filters = SearchFilters(tuple(brand or ()), tuple(not_brand or ()), tuple(category or ()), price_min, price_max)
        searcher = open_searcher(settings, catalog, progress=not as_json)
        hits = searcher.search(query, k, filters=filters, exclude_ids=exclude or ())
    except (CatalogError, VectorStoreError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        json.dump({"query": query, "catalog": searcher.catalog.name, "results": [h.to_dict() for h in hits]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not hits:
        typer.echo("no items match; loosen the filters")
    for rank, hit in enumerate(hits, start=1):
        price = f"  ${hit.item.price:.2f}" if hit.item.price is not None else ""
        typer.echo(f"{rank:>3}. [{hit.item.id}] {hit.item.title}  ({hit.item.brand or 'no brand'}; {hit.item.category}){price}  score={hit.score:.4f}")


def main() -> None:
    from evals.cli import eval_app

    app.add_typer(eval_app, name="eval")
    app()


if __name__ == "__main__":
    main()
