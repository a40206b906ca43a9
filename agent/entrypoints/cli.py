"""`aisle` command line: the top-level commands, one per job. Heavy imports happen inside the
commands, so a command loads only what it uses (`aisle search` no LLM, torch or ranking stage).
The app, its global options and `fail` live in cli_app.py, which the command groups import."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from agent.copy.corroborate import DEFAULT_CORROBORATE
from agent.copy.select import DEFAULT_DRAFTS
from agent.entrypoints.cli_app import CatalogOpt, app, fail, settings_of


@app.command()
def prepare(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Only convert the LLM; skip the index build.")] = False,
    no_train: Annotated[bool, typer.Option("--no-train", help="Skip training the catalog's recommender models (aisle train models).")] = False,
) -> None:
    """One-time setup: convert the packaged LLM to a local HF folder, build the catalog index and
    train the catalog's recommender models (when it has a history and they are missing), so the
    server never starts without them."""
    from agent.engines import engine_kind
    from agent.engines.base import EngineError
    from agent.engines.model_store import ensure_llm_model

    settings = settings_of(ctx)
    if engine_kind(settings) == "transformers":
        try:
            typer.echo(f"LLM model folder: {ensure_llm_model(settings)}", err=True)
        except (EngineError, FileNotFoundError) as exc:
            fail(str(exc))
    if not no_index:
        index(ctx, catalog=catalog, rebuild=False)
    if not no_index and not no_train:
        _train_missing(ctx, catalog or settings.catalog)


def _train_missing(ctx: typer.Context, catalog: str) -> None:
    from agent.recommend.ltr import missing_models
    from agent.train.models import models_command
    from retrieval.registry import Registry

    settings = settings_of(ctx)
    missing = missing_models(settings, catalog)
    if not missing:
        typer.echo(f"{catalog}: recommender models already trained", err=True)
        return
    if Registry(settings).entry(catalog).n_events == 0:
        typer.echo(f"{catalog}: no interaction history, so no recommender models to train", err=True)
        return
    typer.echo(f"{catalog}: training {', '.join(missing)} (aisle train models: 26 min for amazon-office-2014 on 2 busy cores)", err=True)
    models_command(ctx, catalog=catalog, only=None, retrain=False, users=4000, llm_stage=False)


@app.command()
def index(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the collection and embed everything again.")] = False,
) -> None:
    """Embed a catalog into Chroma (incremental: only new or changed items are embedded)."""
    from agent.entrypoints.catalog_cli import index_catalog
    from retrieval.catalog import CatalogError
    from retrieval.embed import Embedder
    from retrieval.index import CatalogIndex, VectorStoreError, make_chroma_client
    from retrieval.registry import Registry

    settings = settings_of(ctx)
    name = catalog or settings.catalog
    try:
        registry = Registry(settings)
        if rebuild:
            CatalogIndex(make_chroma_client(settings), name, Embedder.from_settings(settings)).drop()
        registry.ensure_imported(name)  # the first use of a built-in data set imports it
        typer.echo(registry.last_report(name).summary(show=5), err=True)
        typer.echo(index_catalog(settings, name))
    except (CatalogError, VectorStoreError, FileNotFoundError) as exc:
        fail(str(exc))


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
    attr: Annotated[Optional[list[str]], typer.Option("--attr", help="NAME=VALUE: only items with this attribute value, e.g. --attr colour=red (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Item ids to leave out (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Hybrid (dense + BM25) search with filters. Titles, brands and categories are shown through
    the text screen, as in the chat's cards."""
    from agent.recommend.shown import ShownItem
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError
    from retrieval.search import SearchFilters, open_searcher

    settings = settings_of(ctx)
    try:
        pairs = [a.partition("=") for a in attr or ()]
        if any(not sep or not n.strip() or not v.strip() for n, sep, v in pairs):
            raise ValueError("--attr takes NAME=VALUE, e.g. --attr colour=red")
        attributes = tuple((n.strip().casefold(), v.strip()) for n, _, v in pairs)
        filters = SearchFilters(tuple(brand or ()), tuple(not_brand or ()), tuple(category or ()), price_min, price_max, attributes)
        searcher = open_searcher(settings, catalog, progress=not as_json)
        hits = searcher.search(query, k, filters=filters, exclude_ids=exclude or ())
    except (CatalogError, VectorStoreError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    shown = [ShownItem.of(hit.item, reason="", grounded=False, reason_source="", score=hit.score) for hit in hits]
    if as_json:
        results = [{**hit.to_dict(), "title": item.title, "brand": item.brand, "category": item.category} for hit, item in zip(hits, shown)]
        json.dump({"query": query, "catalog": searcher.catalog.name, "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not hits:
        typer.echo("no items match; loosen the filters")
    for rank, item in enumerate(shown, start=1):
        price = f"  ${item.price:.2f}" if item.price is not None else ""
        typer.echo(f"{rank:>3}. [{item.id}] {item.title}  ({item.brand or 'no brand'}; {item.category}){price}  score={item.score:.4f}")


@app.command()
def chat(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="Send one message and exit (for scripts).")] = None,
    session: Annotated[Optional[str], typer.Option("--session", "-s", help="Continue this session id (printed by earlier turns).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --message: print the turn as JSON.")] = False,
    llm_reasons: Annotated[
        Optional[bool], typer.Option("--llm-reasons/--template-reasons", help="LLM-written reasons (grounding-checked; slower on CPU) or from the record (default: AISLE_LLM_REASONS).")
    ] = None,
) -> None:
    """Talk to the recommender: a terminal chat, or one turn with --message (add --json for scripts)."""
    from agent.chat.agent import Agent, TurnResult
    from agent.errors import AisleError
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError

    settings = settings_of(ctx)
    try:
        agent = Agent(settings, llm_reasons=llm_reasons, build_index=True)  # one user: index on first use
        if session is None:
            session = agent.new_session(catalog)
        elif catalog is not None and agent.store.get(session).catalog != catalog:
            fail(f"session {session} uses catalog {agent.store.get(session).catalog!r}; drop --catalog or start a new session")
    except (AisleError, CatalogError, VectorStoreError) as exc:
        fail(str(exc))

    def one_turn(text: str, *, stream: bool) -> TurnResult | None:
        result = None
        for piece in agent.turn_stream(session, text):
            if isinstance(piece, TurnResult):
                result = piece
            elif stream:
                typer.echo(piece, nl=False)
        if stream:
            typer.echo("")
        return result

    if message is not None:
        try:
            agent.wait_for_stage(agent.store.get(session).catalog)  # one turn and exit: nothing to answer meanwhile
            result = one_turn(message, stream=not as_json)
        except (AisleError, CatalogError, VectorStoreError) as exc:
            fail(str(exc))
        if as_json and result is not None:
            json.dump(result.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
        else:
            typer.echo(f"[session {session}]", err=True)
        return

    rec = agent.store.get(session)
    typer.echo(f"aisle chat on {rec.catalog} (session {session}). Empty line or Ctrl-D to quit; 'start over' resets.", err=True)
    agent.warm_up(rec.catalog, train_missing=settings.train_missing)
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("", err=True)
            break
        if not text:
            break
        typer.echo("aisle> ", nl=False)
        try:
            one_turn(text, stream=True)
        except AisleError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    typer.echo(f"session {session} saved; continue with: aisle chat --session {session}", err=True)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (127.0.0.1 = this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="AISLE_API_KEY", help="Require 'Authorization: Bearer KEY' (env AISLE_API_KEY).")] = None,
    catalog: CatalogOpt = None,
    docs: Annotated[bool, typer.Option("--docs", help="Serve the OpenAPI schema at /openapi.json (behind --api-key); no Swagger UI.")] = False,
) -> None:
    """HTTP API for bots: /v1/turn, /v1/sessions, /v1/feedback and OpenAI-compatible /v1/chat/completions."""
    from agent.entrypoints.api import serve as run_server
    from agent.errors import AisleError
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError

    settings = settings_of(ctx)
    if catalog:
        settings = settings.model_copy(update={"catalog": catalog})
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.secho(f"warning: listening on {host} without --api-key: anyone who can reach it can use it", err=True, fg=typer.colors.YELLOW)
    try:
        run_server(settings, host=host, port=port, api_key=api_key, docs=docs)
    except (AisleError, CatalogError, VectorStoreError) as exc:  # AisleError: e.g. the session store cannot open
        fail(str(exc))


@app.command("mcp")
def mcp_server(
    ctx: typer.Context,
    transport: Annotated[str, typer.Option("--transport", help="stdio (a desktop agent starts `aisle mcp`) | http (streamable HTTP at /mcp, for remote agents).")] = "stdio",
    host: Annotated[str, typer.Option("--host", help="http: interface to listen on (127.0.0.1 = this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="http: port.")] = 8001,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="AISLE_API_KEY", help="http: require 'Authorization: Bearer KEY' (env AISLE_API_KEY).")] = None,
    catalog: CatalogOpt = None,
) -> None:
    """MCP server for agent platforms: tools search, recommend, chat_turn, item_details, feedback."""
    from agent.entrypoints.mcp_server import run
    from agent.errors import AisleError
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError

    if transport not in ("stdio", "http"):
        fail(f"unknown --transport {transport!r}; use stdio or http")
    settings = settings_of(ctx)
    if catalog:
        settings = settings.model_copy(update={"catalog": catalog})
    if transport == "http" and host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.secho(f"warning: listening on {host} without --api-key: anyone who can reach it can use it", err=True, fg=typer.colors.YELLOW)
    try:
        run(settings, transport=transport, host=host, port=port, api_key=api_key)
    except (AisleError, CatalogError, VectorStoreError) as exc:
        fail(str(exc))


@app.command()
def recommend(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="User id from the catalog's interactions (their history is the input; `aisle catalog users NAME` lists them).")],
    catalog: CatalogOpt = None,
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="What the user is looking for (optional).")] = None,
    k: Annotated[Optional[int], typer.Option("--k", min=1, max=50, help="How many items (default: AISLE_K, 5).")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="LLM re-ranking: onepass | listwise | none (default: AISLE_RANK_MODE, none).")] = None,
    llm_reasons: Annotated[
        Optional[bool], typer.Option("--llm-reasons/--template-reasons", help="Reasons written by the LLM (grounding-checked; slow on CPU) or from the record (default: AISLE_LLM_REASONS, templates).")
    ] = None,
    candidates: Annotated[Optional[int], typer.Option("--candidates", min=1, max=100, help="Candidates ranked (default: AISLE_N_CANDIDATES, 20; at least --k).")] = None,
    no_reasons: Annotated[bool, typer.Option("--no-reasons", help="No reasons at all.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recommend items for a user (history + optional query): candidates, ranking, grounded reasons.
    Every option left out takes its value from the settings (AISLE_* env vars)."""
    from agent.dialogue.rules import feature_words
    from agent.engines.base import EngineError
    from agent.facts import must_haves
    from agent.recommend.pipeline import Recommender, RecommendRequest
    from agent.recommend.rank import MODES
    from retrieval.catalog import CatalogError
    from retrieval.index import VectorStoreError
    from retrieval.registry import load_interactions

    settings = settings_of(ctx)
    name = catalog or settings.catalog
    mode = settings.rank_mode if mode is None else mode
    k = settings.k if k is None else k
    llm_reasons = settings.llm_reasons if llm_reasons is None else llm_reasons
    n_candidates = max(settings.n_candidates if candidates is None else candidates, k)
    if mode not in MODES:
        fail(f"unknown --mode {mode!r}; use one of: {', '.join(MODES)}")
    try:
        interactions = load_interactions(settings, name)
    except CatalogError as exc:
        fail(f"{exc} (--user needs a catalog with purchase histories)")
    if user not in interactions:
        fail(f"unknown user {user!r} in catalog {name!r} ({len(interactions)} users; ids look like {', '.join(sorted(interactions)[:3])}, ...); list them with: aisle catalog users {name}")
    try:
        rec = Recommender(settings, name, n_candidates=n_candidates)
        must_have = must_haves(feature_words(query)) if query else ()
        req = RecommendRequest(query=query, history=interactions[user], k=k, rank_mode=mode, with_reasons=not no_reasons, llm_reasons=llm_reasons, must_have=must_have)
        result = rec.recommend(req)
    except (CatalogError, VectorStoreError, EngineError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        json.dump({"user": user, "catalog": name, "query": query, "mode": mode, "llm_reasons": llm_reasons, **result.to_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from retrieval.collab import distinct_history
    from retrieval.screen import display

    history = [display(rec.catalog.items[i].title, name=True) for i in distinct_history(interactions[user])[-3:] if i in rec.catalog.items]
    typer.echo(f"user {user}: {len(interactions[user])} items bought, latest: " + " | ".join(h[:50] for h in history))
    if result.fallback:
        typer.secho(f"note: LLM ranking not used, retriever order shown ({result.fallback})", err=True, fg=typer.colors.YELLOW)
    if result.unmet:
        typer.secho(f"note: no candidate's record says {' or '.join(result.unmet)}; the closest items are shown", err=True, fg=typer.colors.YELLOW)
    if not result.items:
        typer.echo("no items match")
    for rank, r in enumerate(result.items, start=1):
        llm = f" llm={r.llm_score:.3f}" if r.llm_score is not None else ""
        item = r.shown()  # screened for display, like the chat's cards
        typer.echo(f"{rank:>3}. [{item.id}] {item.title}  ({item.brand or 'no brand'}; {item.category})  score={r.score:.3f} retrieval={r.retrieval_score:.4f}{llm}")
        if item.reason_source:
            flag = "grounded" if item.grounded else "NOT grounded"
            typer.echo(f"       why: {item.reason}  [{item.reason_source}, {flag}]")
    t = result.timings_ms
    typer.echo(f"({result.n_candidates} candidates; retrieval {t['retrieval']:.0f} ms, rank {t['rank']:.0f} ms, reasons {t['reasons']:.0f} ms, total {t['total']:.0f} ms)", err=True)


@app.command()
def describe(
    ctx: typer.Context,
    catalog: CatalogOpt = None,
    only_missing: Annotated[bool, typer.Option("--only-missing", help="Only items whose catalog description is empty (cold-start items).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=0, help="Write at most N items in this run (after skipping done ones).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Overlay JSONL (default: <home>/overlays/<catalog>.describe.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1024, help="Sequences per engine.batch call (items x --drafts; the items are also the resume granularity). vLLM likes 128+.")] = 16,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16, max=1024, help="Token budget per answer.")] = 120,
    prompt: Annotated[str, typer.Option("--prompt", help="Prompt template (prompts/<name>.j2).")] = "describe.v1",
    no_regenerate: Annotated[bool, typer.Option("--no-regenerate", help="Drop flagged copy instead of regenerating it once.")] = False,
    no_index: Annotated[bool, typer.Option("--no-index", help="Do not re-index the catalog with the generated copy at the end.")] = False,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="LoRA adapter folder from `aisle train copywriter` (default: <home>/adapters/copywriter-<catalog> when it fits the base model).")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Write with the base model even when a copywriter adapter exists.")] = False,
    no_ban: Annotated[bool, typer.Option("--no-ban", help="Decode without banning the words the claim checker would flag for the item (the checker still gates every draft).")] = False,
    drafts: Annotated[int, typer.Option("--drafts", min=1, max=16, help="Drafts sampled per item; of those that pass the checker the one closest to the item's fields is kept. Time grows with it; 1 keeps the first that passes.")] = DEFAULT_DRAFTS,
    corroborate: Annotated[bool, typer.Option("--corroborate/--no-corroborate", help="Also remove every sentence whose added words neither the item's fields nor similar items' descriptions use (features must be in the fields).")] = DEFAULT_CORROBORATE,
) -> None:
    """Write grounded product copy (description + selling point) into an overlay, then re-index.

    Uses the fine-tuned copywriter adapter when there is one (see --adapter / --no-adapter); every
    overlay record names the model (with the adapter), the adapter's fingerprint and the prompt.
    Resumable: finished batches are in the overlay file and are skipped on the next run."""
    from agent.copy.select import FieldSimilarity
    from agent.copy.writer import Copywriter, describe_catalog
    from agent.engines import make_engine
    from agent.engines.base import EngineError
    from agent.prompts import PromptError
    from agent.train.copywriter import adapter_record, resolve_copy_adapter
    from retrieval.catalog import CatalogError
    from retrieval.embed import Embedder
    from retrieval.overlay import apply_overlay, overlay_path, read_overlay
    from retrieval.registry import load_catalog

    settings = settings_of(ctx)
    name = catalog or settings.catalog
    try:
        cat = load_catalog(settings, name)
    except CatalogError as exc:
        fail(str(exc))
    path = out or overlay_path(settings, name)
    if adapter is not None and no_adapter:
        fail("--adapter and --no-adapter exclude each other")
    try:
        chosen = resolve_copy_adapter(settings, name, adapter, use_adapter=not no_adapter)
        engine = make_engine(settings, adapter=chosen)
        scorer = FieldSimilarity(Embedder.from_settings(settings)) if drafts > 1 else None
        writer = Copywriter.for_catalog(engine, cat, prompt=prompt, max_tokens=max_tokens, regenerate=not no_regenerate, ban_unsupported=not no_ban,
                                        drafts=drafts, scorer=scorer, corroborate=corroborate)
    except (EngineError, PromptError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{engine.name} engine, model {engine.model_id} ({f'adapter {chosen}' if chosen else 'no adapter'}); overlay {path}", err=True)
    try:
        report = describe_catalog(cat, writer, path, only_missing=only_missing, limit=limit, batch_size=batch_size, adapter=adapter_record(chosen))
    finally:
        engine.close()
    typer.echo(report.summary())
    if no_index:
        return
    if path.resolve() != overlay_path(settings, name).resolve():
        typer.echo(f"not re-indexed: search reads the default overlay {overlay_path(settings, name)}, not {path}", err=True)
        return
    from retrieval.index import CatalogIndex, VectorStoreError, make_chroma_client

    try:
        overlaid = apply_overlay(cat, read_overlay(path), show=settings.show_generated_copy)
        idx = CatalogIndex(make_chroma_client(settings), name, Embedder.from_settings(settings))
        index_report = idx.sync(overlaid)
    except (VectorStoreError, FileNotFoundError) as exc:
        fail(f"copy written to {path}, but re-indexing failed: {exc}. Run `aisle describe --catalog {name}` again (nothing is regenerated) once fixed.")
    typer.echo(f"{idx.name}: {index_report}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
