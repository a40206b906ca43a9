"""`aisle train models --catalog NAME`: rebuild a catalog's recommender models after new history.

What it (re)builds, in order, each only when its data changed (or with --retrain):
1. SASRec and the text-aware sequential model on the items before each user's second-to-last
   (early stopping on it), then refitted on all but the last item for serving
   (`agent.recommend.ltr.SourceModels`);
2. the learned ranker (LightGBM lambdarank) on the second-to-last items
   (`agent.recommend.ltr.train_ranking_stage`), after its candidate depths and tree settings
   are chosen on held-out users of that same split (`retrieval.ranker_search`); the choice is
   saved in the ranker's meta (`ranker-<catalog>.lgb.json`, "search") and printed.
Co-occurrence and popularity are fitted at load time (about a second) and need no file.

History is the catalog's interactions: the imported file plus every event recorded through the
API (`POST /v1/events`) and the chat's likes, so feedback reaches the next training run.
A running server picks the new files up when it reopens the catalog (`aisle serve` restarts, or
the next items update); one that ran this command itself at start-up (agent/train/background.py)
loads them as soon as it is done.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

MODELS = ("sasrec", "textseq", "ranker")


def models_command(
    ctx: typer.Context,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="Registered catalog with an interaction history (default: AISLE_CATALOG).")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Train only these: sasrec, textseq, ranker (repeatable).")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train even when a cached model matches the data.")] = False,
    users: Annotated[int, typer.Option("--users", min=100, help="Users whose second-to-last item trains the ranker (seeded sample).")] = 4000,
    llm_stage: Annotated[
        bool,
        typer.Option(
            "--llm-stage",
            help="Also train and gate the LLM stage (the engine's one-pass score over the top 20; the fine-tuned adapter when `aisle train ranker` made one). Kept only when it beats the ranker on held-out users.",
        ),
    ] = False,
) -> None:
    """Train SASRec, the text-aware sequential model and the learned ranker of a catalog."""
    from agent.entrypoints.cli_app import fail, settings_of
    from agent.recommend.ltr import SourceModels, train_ranking_stage
    from retrieval.catalog import CatalogError
    from retrieval.registry import load_interactions

    settings = settings_of(ctx)
    catalog = catalog or settings.catalog
    chosen = list(only or MODELS)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}", param_hint="--only")
    try:
        load_interactions(settings, catalog)
    except CatalogError as exc:
        fail(f"{exc}\nA catalog needs an interaction history to train on: aisle catalog update {catalog} --interactions FILE")
    t0 = time.perf_counter()
    seq = [m for m in chosen if m in ("sasrec", "textseq")] or []
    if retrain:
        _drop_cached(settings, catalog, seq)
    val = SourceModels.load(settings, catalog, train=True, split="val", progress=True, which=seq or ("sasrec", "textseq"))
    SourceModels.load(settings, catalog, train=True, split="serve", progress=True, which=seq or ("sasrec", "textseq"))
    for name in seq:
        model = getattr(val, name)
        state = f"ready, {model.report.best_epoch} epochs chosen by early stopping on the validation split" if model is not None else "FAILED (see the log above)"
        typer.echo(f"{name}: {state} ({val.seconds.get(name, 0):.0f} s)")
    if "ranker" in chosen:
        ranker, info = train_ranking_stage(settings, catalog, models=val, users=users, progress=True)
        typer.echo(
            f"ranker: {info['groups']} training users with their item among the candidates (union recall {info['union_recall']:.1%}), "
            f"valid NDCG@10 {ranker.report.valid_ndcg10 or 0:.4f}, {info['seconds']:.0f} s"
        )
        typer.echo("top features (share of total gain): " + ", ".join(f"{n} {v:.1%}" for n, v in ranker.top_importances(8)))
        typer.echo(settings_line(ranker.meta.get("search", {})))
    if llm_stage:
        _train_llm_stage(settings, catalog, val)
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s; models in {settings.models_dir}")


def settings_line(search: dict) -> str:
    """The settings the search chose on the validation split, and what each candidate scored."""
    tried = "; ".join(
        f"{t.get('profile')} depths, {t.get('ranker') or 'default trees'}: " + (f"{t['ndcg10']:.4f} ± {t['se']:.4f}" if "ndcg10" in t else str(t.get("why"))) for t in search.get("tried", [])
    )
    return (
        f"settings chosen on {search.get('holdout_users', 0)} held-out validation users ({search.get('seconds', 0):.0f} s): "
        f"{search.get('profile')} depths {search.get('depths')}, trees {search.get('ranker')}\n  held-out NDCG@10 per candidate: {tried}"
    )


def _train_llm_stage(settings, catalog: str, val) -> None:
    from agent.engines import make_engine
    from agent.recommend.ltr import LLMStage, llm_stage_path, train_llm_stage
    from agent.recommend.rank import Reranker
    from agent.train.ranker import ranker_adapter_path
    from retrieval.search import open_searcher

    adapter = ranker_adapter_path(settings, catalog)
    engine = make_engine(settings, adapter=adapter)
    llm = LLMStage(Reranker(engine, mode="onepass", llm_weight=1.0, calibrate=settings.calibrate, seed=settings.seed), None, "llm")
    searcher = open_searcher(settings, catalog, progress=False)
    kept, _forced, report = train_llm_stage(settings, catalog, llm, searcher=searcher, val_models=val, adapter=str(adapter) if adapter else None, progress=True)
    what = f"adapter {adapter}" if adapter else "the base model (no `aisle train ranker` adapter)"
    verdict = f"kept, saved to {llm_stage_path(settings, catalog)}" if kept is not None else f"dropped: {report.get('why')}"
    typer.echo(
        f"LLM stage with {what}: {report.get('groups')} groups; held-out NDCG@10 {report.get('gate_ndcg10_stage1')} without vs "
        f"{report.get('gate_ndcg10_with_llm')} with the LLM: {verdict} ({report.get('seconds')} s)"
    )


def _drop_cached(settings, catalog: str, names: list[str]) -> None:
    for name in names:
        for suffix in (".pt", ".serve.pt"):
            path = settings.models_dir / f"{name}-{catalog}{suffix}"
            path.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
