"""`aisle catalog ...`: bring a shop's own catalog and history, keep it in sync, list, check, remove;
list its users.

    aisle catalog add shop --items products.csv --interactions orders.csv --map title="Product Name"
    aisle catalog update shop --items products-today.csv     # a diff: only changed text re-embedded
    aisle catalog check shop --items products-today.csv      # what an update would do; changes nothing
    aisle catalog list
    aisle catalog users shop --limit 5                       # user ids for `aisle recommend --user`
    aisle catalog remove shop
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Annotated, Optional

import typer

from agent.entrypoints.cli_app import fail, settings_of
from agent.settings import Settings

catalog_app = typer.Typer(help="Register a shop's own catalog and history, keep it in sync, list, check, remove; list its users.", no_args_is_help=True)

ItemsOpt = Annotated[Optional[str], typer.Option("--items", help="Product feed: a file, or a pattern like 'feeds/*.jsonl'.")]
ValidRowsOpt = Annotated[Optional[str], typer.Option("--valid-rows", help="Published valid split: CSV rows user_id, history_item_id (list of ids), item_id (with --test-rows).")]
TestRowsOpt = Annotated[Optional[str], typer.Option("--test-rows", help="Published test split, same columns: `aisle eval ranking --rows test` scores every row.")]
InteractionsOpt = Annotated[Optional[str], typer.Option("--interactions", help="History: user_id, item_id[, timestamp, event, value] rows, or a JSON object user -> [item ids].")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="jsonl | csv | tsv | parquet | json | xml (default: from the file extension, or the preset's).")]
MapOpt = Annotated[Optional[list[str]], typer.Option("--map", help="FIELD=COLUMN for a column with another name (repeatable), e.g. --map title='Product Name' --map attributes.colour=Colour.")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="google-merchant | shopify (feeds shops already export).")]
NoIndexOpt = Annotated[bool, typer.Option("--no-index", help="Import only; index later with `aisle index --catalog NAME`.")]


def index_catalog(settings: Settings, name: str, *, progress: bool = True) -> str:
    """Bring the catalog's Chroma index in line with its items (streamed; only changed text is embedded)."""
    from retrieval.embed import Embedder
    from retrieval.index import CatalogIndex, make_chroma_client
    from retrieval.overlay import iter_with_overlay
    from retrieval.registry import Registry

    total = Registry(settings).entry(name).n_items
    idx = CatalogIndex(make_chroma_client(settings), name, Embedder.from_settings(settings))
    report = idx.sync(iter_with_overlay(settings, name), progress=progress, total=total)
    return f"{idx.name}: {report}"


def _import_result(settings: Settings, report, *, no_index: bool, started: float) -> None:
    typer.echo(report.summary(), err=True)
    if no_index:
        return
    from retrieval.index import VectorStoreError

    try:
        typer.echo(index_catalog(settings, report.catalog), err=True)
    except (VectorStoreError, FileNotFoundError) as exc:
        fail(f"imported, but indexing failed: {exc}. Fix it and run `aisle index --catalog {report.catalog}` (only what is missing is embedded).")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    typer.echo(f"done in {time.perf_counter() - started:.1f} s (peak memory {rss_mb:.0f} MB)", err=True)


@catalog_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Catalog name (lowercase letters, digits, '.', '_', '-').")],
    items: ItemsOpt = None,
    interactions: InteractionsOpt = None,
    format: FormatOpt = None,
    interactions_format: Annotated[Optional[str], typer.Option("--interactions-format", help="Format of the history file (default: from its extension).")] = None,
    map: MapOpt = None,
    preset: PresetOpt = None,
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code for prices that name none (e.g. a Shopify export).")] = "",
    max_bad_share: Annotated[float, typer.Option("--max-bad-share", min=0.0, max=1.0, help="Refuse the whole feed when more than this share of rows is bad.")] = 0.05,
    valid_rows: ValidRowsOpt = None,
    test_rows: TestRowsOpt = None,
    no_index: NoIndexOpt = False,
) -> None:
    """Register a catalog from a product feed (and optionally its history), then index it."""
    from retrieval.catalog import CatalogError
    from retrieval.feeds.schema import known_currency
    from retrieval.registry import FeedSpec, Registry

    if not items:
        fail("--items FILE is required: the product feed (CSV, TSV, JSONL, Parquet, JSON or XML)")
    if currency and not known_currency(currency):
        fail(f"--currency {currency!r} is not an ISO 4217 code (USD, EUR, GBP ...)")
    if bool(valid_rows) != bool(test_rows):
        fail("--valid-rows and --test-rows go together: models are chosen on the valid rows and scored on the test rows")
    settings = settings_of(ctx)
    started = time.perf_counter()
    spec = FeedSpec(
        items=items, format=format, preset=preset, map=list(map or []), interactions=interactions, interactions_format=interactions_format,
        currency=currency.upper(), max_bad_share=max_bad_share, valid_rows=valid_rows, test_rows=test_rows,
    )  # fmt: skip
    try:
        report = Registry(settings).add(name, spec)
    except CatalogError as exc:
        fail(str(exc))
    _import_result(settings, report, no_index=no_index, started=started)


@catalog_app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered catalog.")],
    items: ItemsOpt = None,
    interactions: InteractionsOpt = None,
    map: MapOpt = None,
    max_bad_share: Annotated[Optional[float], typer.Option("--max-bad-share", min=0.0, max=1.0, help="Refuse the whole feed when more than this share of rows is bad.")] = None,
    valid_rows: ValidRowsOpt = None,
    test_rows: TestRowsOpt = None,
    no_index: NoIndexOpt = False,
) -> None:
    """Apply a new feed version as a diff: added, changed and removed items; re-embeds only changed text.

    Without --items the registered feed file is read again."""
    from retrieval.catalog import CatalogError
    from retrieval.registry import Registry

    settings = settings_of(ctx)
    started = time.perf_counter()
    try:
        report = Registry(settings).update(
            name, items=items, interactions=interactions, map=list(map) if map else None, max_bad_share=max_bad_share, valid_rows=valid_rows, test_rows=test_rows
        )
    except CatalogError as exc:
        fail(str(exc))
    _import_result(settings, report, no_index=no_index, started=started)


@catalog_app.command("check")
def check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered catalog.")],
    items: ItemsOpt = None,
    interactions: InteractionsOpt = None,
) -> None:
    """Validate a feed (default: the registered one) and report what an update would change. Changes nothing."""
    from retrieval.catalog import CatalogError
    from retrieval.registry import ImportRefused, Registry

    settings = settings_of(ctx)
    registry = Registry(settings)
    try:
        report = registry.check(name, items=items, interactions=interactions)
    except ImportRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except CatalogError as exc:
        fail(str(exc))
    typer.echo(report.summary())
    entry = registry.entry(name)
    typer.echo(f"now: {entry.n_items} items ({entry.n_items - entry.n_available} out of stock, {entry.n_cold} without description), {entry.n_users} users, {entry.n_events} events")


@catalog_app.command("list")
def list_catalogs(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Registered catalogs with their size, history and feed."""
    from retrieval.registry import Registry

    entries = Registry(settings_of(ctx)).entries()
    if as_json:
        rows = [
            {"name": e.name, "builtin": e.builtin, "imported": e.version > 0, "items": e.n_items, "in_stock": e.n_available, "cold": e.n_cold, "users": e.n_users, "events": e.n_events, "feed": e.spec.items, "updated_at": e.updated_at}
            for e in entries
        ]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    typer.echo(f"{'name':<24} {'items':>8} {'in stock':>8} {'cold':>6} {'users':>7} {'events':>8}  feed")
    for e in entries:
        size = f"{e.n_items:>8} {e.n_available:>8} {e.n_cold:>6}" if e.version else f"{'(not imported yet)':>24}"
        typer.echo(f"{e.name:<24} {size} {e.n_users:>7} {e.n_events:>8}  {e.spec.items}{'  [built-in]' if e.builtin else ''}")


@catalog_app.command("users")
def users(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered catalog.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Show at most N users (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """User ids of the catalog's history with their history length, longest first: the ids `aisle recommend --user` takes."""
    from retrieval.catalog import CatalogError
    from retrieval.registry import Registry

    try:
        rows = Registry(settings_of(ctx)).users(name)
    except CatalogError as exc:
        fail(str(exc))
    shown = rows[:limit] if limit else rows
    if as_json:
        json.dump([{"user_id": user, "events": n} for user, n in shown], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        typer.echo(f"catalog {name!r} has no history yet; add one with `aisle catalog update {name} --interactions FILE`", err=True)
        return
    width = max(len("user"), *(len(user) for user, _ in shown))
    typer.echo(f"{'user':<{width}}  {'events':>6}")
    for user, n in shown:
        typer.echo(f"{user:<{width}}  {n:>6}")
    if len(shown) < len(rows):
        typer.echo(f"({len(shown)} of {len(rows)} users; --limit 0 lists all)", err=True)
    typer.echo(f"try: aisle recommend --catalog {name} --user {shown[0][0]}", err=True)


@catalog_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered catalog.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Forget a catalog: its items, history and index (the feed files are not touched)."""
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError, drop_catalog_collections, make_chroma_client
    from retrieval.registry import Registry

    settings = settings_of(ctx)
    registry = Registry(settings)
    try:
        entry = registry.entry(name)
    except CatalogError as exc:
        fail(str(exc))
    if not yes and not typer.confirm(f"remove catalog {name!r} ({entry.n_items} items, {entry.n_events} events) and its index?"):
        raise typer.Exit(1)
    registry.remove(name)
    try:
        dropped = drop_catalog_collections(make_chroma_client(settings), name)
    except VectorStoreError as exc:
        typer.secho(f"warning: the catalog is removed but its index could not be dropped: {exc}", err=True, fg=typer.colors.YELLOW)
        dropped = []
    typer.echo(f"removed {name} ({len(dropped)} index collection(s) dropped)")
