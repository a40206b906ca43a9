"""`aisle eval ranking`: leave-one-out next-item eval of every recommender on one catalog.

Protocol: each sampled user's last item is held out; everything before it is the history. Every
model is fitted on the leave-one-out *train* histories of all users (no test item is ever seen).

Two scopes, reported side by side and never mixed up:
- full catalog: popularity, co-occurrence, SASRec and embedding similarity rank all items
  (history items excluded);
- candidates: the pipeline (`agent.recommend.Recommender`, history only, no query) re-ranks its
  N retrieved candidates, with `rank_mode="none"` (the candidate generator alone, the reference)
  and with the LLM for each prompt variant. Its metrics can never beat the candidate recall
  ceiling (share of users whose held-out item is among the N candidates), reported alongside.

Metrics by ranx (`evals.metrics`), plus LLM validity, grounding of reasons, out-of-catalog ids
and latency p50/p95 for every system.

CPU budget (SmolLM2-135M on 2 cores: a ~1,000-token one-pass forward takes ~0.4 s in bf16, ~1 s in float32):
- the LLM is only called for users whose held-out item is among the candidates; for any other
  user every metric is 0 whatever the LLM answers, so this is exact (checked: identical metrics
  with `--llm-all-users`), and it cuts LLM calls by the miss rate (~85 % on amazon-office-2014);
- one-pass re-ranking scores 1 candidate order, calibrated, as the Recommender does (`--orders 3`
  averages three, at 3x the cost; `--no-calibrate` turns the position-bias calibration off);
- reasons (grounding rate) are generated for a few users only (`--reason-users`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from tqdm.auto import tqdm

from agent.settings import Settings
from evals import report as rep
from evals.metrics import RANKING_METRICS, Tally, evaluate_rankings, rate, unchanged_order_rate

log = logging.getLogger(__name__)

DEFAULT_USERS = 300
DEFAULT_PROMPTS = ("rerank_onepass.v1",)
DEPTH = 20  # the largest cutoff; every system returns this many items


@dataclass
class RankingConfig:
    catalog: str = "amazon-office-2014"
    users: int = DEFAULT_USERS
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    seed: int = 0
    n_candidates: int = 20
    n_orders: int = 1  # candidate orders the one-pass re-ranker averages over (Recommender default: 1)
    calibrate: bool = True  # divide label probabilities by the content-free prior (Recommender default)
    llm_all_users: bool = False  # also re-rank users whose target is not a candidate (cannot change metrics)
    reason_users: int = 5  # users whose top-k also get reasons (grounding rate), first LLM variant only
    reason_k: int = 3
    sasrec: bool = True
    stage: bool = True  # every source, union + RRF, union + learned ranker (evals.ranking_stage)
    llm_stage: bool = True  # the LLM stage rows (base model; fine-tuned when `aisle train ranker` made an adapter)
    llm_stage_users: int = 1000  # val users that train and gate the LLM stage (only those with their item in the top 20 are scored)
    baselines: bool = True
    pipeline: bool = True
    out: Path = field(default_factory=lambda: Path("eval-out/ranking"))
    progress: bool = True


def eval_options(ctx: typer.Context, engine: str | None, prompt: Sequence[str] | None, default: tuple[str, ...]) -> tuple[Settings, tuple[str, ...]]:
    """Settings (with --engine applied) and the checked --prompt list, shared by the eval commands."""
    from agent.entrypoints.cli_app import settings_of

    settings = settings_of(ctx)
    if engine:
        if engine not in ("auto", "transformers", "llamacpp", "vllm", "openai"):
            raise typer.BadParameter(f"unknown engine {engine!r}; use auto, transformers, llamacpp, vllm or openai", param_hint="--engine")
        settings = settings.model_copy(update={"llm": engine})
    prompts = tuple(prompt) if prompt else default
    for p in prompts:
        try:
            rank_mode_of(p)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--prompt") from exc
    return settings, prompts


def rank_mode_of(prompt: str) -> str:
    """'rerank_onepass.v2' -> 'onepass', 'rerank_listwise.v1' -> 'listwise'."""
    from agent.prompts import prompt_kind

    kind = prompt_kind(prompt)
    if kind == "rerank_onepass":
        return "onepass"
    if kind == "rerank_listwise":
        return "listwise"
    raise ValueError(f"prompt {prompt!r} is not a re-rank prompt (rerank_onepass.* or rerank_listwise.*)")


# --- the systems ---------------------------------------------------------------------------------


def _run_per_user(
    tally: Tally,
    users: Sequence[str],
    recommend: Callable[[str], list[str]],
    *,
    desc: str,
    progress: bool,
) -> float:
    """Call `recommend(user)` for each user, timing each call; exceptions are counted, not raised."""
    start = time.perf_counter()
    for user in tqdm(users, desc=desc, unit="user", disable=not progress, leave=False):
        t0 = time.perf_counter()
        try:
            ranked = recommend(user)
        except Exception as exc:  # an eval must finish and report what broke
            log.warning("%s failed for user %s: %s", tally.name, user, exc)
            tally.add_error(user, exc)
            continue
        tally.add(user, ranked, (time.perf_counter() - t0) * 1e3)
    return time.perf_counter() - start


def run_ranking_eval(settings: Settings, cfg: RankingConfig, *, engine: Any = None) -> dict[str, Any]:
    """Run every system on the same user sample; write results.json, report.md and PNGs to cfg.out."""
    from retrieval.collab import CooccurrenceRecommender, PopularityRecommender, id_sort_key, leave_one_out, sample_users
    from retrieval.overlay import load_catalog_with_overlay
    from retrieval.registry import load_interactions

    t_start = time.perf_counter()
    env = rep.environment()
    catalog = load_catalog_with_overlay(settings, cfg.catalog)  # what users search: with generated copy
    interactions = load_interactions(settings, cfg.catalog)
    histories, targets = leave_one_out(interactions)
    eligible = [u for u in targets if targets[u] in catalog.items and histories[u]]
    users = sample_users(eligible, cfg.users, seed=cfg.seed)
    user_targets = {u: targets[u] for u in users}
    item_ids = sorted(catalog.items, key=id_sort_key)

    systems: dict[str, dict[str, Any]] = {}
    tallies: dict[str, Tally] = {}
    seconds: dict[str, float] = {}
    notes: list[str] = []

    def record(name: str, tally: Tally, label: str, role: str, scope: str, extra: dict[str, Any] | None = None) -> None:
        tallies[name] = tally
        systems[name] = {
            "label": label,
            "role": role,
            "scope": scope,
            "metrics": evaluate_rankings(user_targets, tally.rankings, RANKING_METRICS),
            **tally.summary(),
            **(extra or {}),
            "latency_samples_ms": [round(x, 2) for x in tally.latency_ms],  # lets the plots be redrawn from the JSON
        }

    # --- full-catalog baselines ---
    serve_models = None
    if cfg.baselines:
        t0 = time.perf_counter()
        pop = PopularityRecommender(item_ids).fit(histories)
        cooc = CooccurrenceRecommender(item_ids).fit(histories)
        fit_s = time.perf_counter() - t0
        models: list[tuple[str, str, Any, dict[str, Any]]] = [
            ("popularity", "Popularity", pop, {"fit_s": round(fit_s, 2)}),
            ("cooccurrence", "Item co-occurrence", cooc, {"fit_s": round(fit_s, 2)}),
        ]
        if cfg.sasrec or cfg.stage:
            from agent.recommend.ltr import SourceModels

            t0 = time.perf_counter()
            # The serving models: trained before each user's second-to-last item, refitted on all
            # but the last (agent.recommend.ltr.SourceModels); never the evaluated item.
            serve_models = SourceModels.load(settings, cfg.catalog, train=True, split="serve", progress=cfg.progress)
            load_s = time.perf_counter() - t0
            if cfg.sasrec and serve_models.sasrec is not None:
                sasrec = serve_models.sasrec
                models.append(("sasrec", "SASRec", sasrec, {"fit_s": round(sasrec.report.seconds, 1), "load_or_train_s": round(load_s, 1), "epochs": sasrec.report.epochs_run}))
            elif cfg.sasrec:
                notes.append("SASRec skipped: it could not be loaded or trained (see the log)")
        for name, label, model, extra in models:
            tally = Tally(name, catalog.items)
            seconds[name] = _run_per_user(
                tally, users, lambda u, m=model: [i for i, _s in m.recommend(histories[u], DEPTH)], desc=label, progress=cfg.progress
            )
            record(name, tally, label, "baseline", "full catalog", extra)

    # --- embedding similarity and the pipeline share the searcher ---
    searcher = None
    if cfg.baselines or cfg.pipeline:
        from retrieval.search import open_searcher

        searcher = open_searcher(settings, catalog=catalog, progress=cfg.progress)
    if cfg.baselines and searcher is not None:
        tally = Tally("similar", catalog.items)
        seconds["similar"] = _run_per_user(
            tally, users, lambda u: [h.item.id for h in searcher.similar(histories[u], DEPTH)], desc="Embedding similarity", progress=cfg.progress
        )
        record("similar", tally, "Embedding similarity to history", "baseline", "full catalog")

    stage_meta: dict[str, Any] = {}
    if cfg.stage and searcher is not None:
        from evals.ranking_stage import run_stage_rows

        if serve_models is None:
            from agent.recommend.ltr import SourceModels

            serve_models = SourceModels.load(settings, cfg.catalog, train=True, split="serve", progress=cfg.progress)
        stage_meta = run_stage_rows(
            settings, cfg, catalog, searcher, users, histories, user_targets, record, seconds, notes, serve_models=serve_models, engine=engine, all_targets=targets
        )

    pipeline_meta: dict[str, Any] = {}
    if cfg.pipeline and searcher is not None:
        pipeline_meta = _run_pipeline(settings, cfg, catalog, searcher, users, histories, user_targets, engine, record, seconds, notes)

    ceiling = pipeline_meta.get("candidate_recall")
    result: dict[str, Any] = {
        "kind": "ranking",
        "config": {
            "catalog": cfg.catalog,
            "catalog_items": len(catalog),
            "users_requested": cfg.users,
            "users_evaluated": len(users),
            "users_eligible": len(eligible),
            "sampled_users_sha256": rep.ids_hash(users),
            "seed": cfg.seed,
            "prompts": list(cfg.prompts) if cfg.pipeline else [],
            "prompt_fingerprints": pipeline_meta.get("prompt_fingerprints", {}),
            "engine": pipeline_meta.get("engine"),
            "model_id": pipeline_meta.get("model_id"),
            "embed_model": searcher.embedder.model_id if searcher is not None else None,
            "n_candidates": cfg.n_candidates,
            "n_orders": cfg.n_orders,
            "calibrate": cfg.calibrate,
            "llm_all_users": cfg.llm_all_users,
            "depth": DEPTH,
            "reason_users": cfg.reason_users,
            "reason_k": cfg.reason_k,
            "metrics": list(RANKING_METRICS),
            "git": rep.git_state(),
            **{f"env_{k}": v for k, v in env.items()},
        },
        "systems": systems,
        "candidate_recall": ceiling,
        "stage": stage_meta,
        "headline": None,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "total_seconds": None,
        "notes": notes,
    }
    result["headline"] = headline(result)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_ranking_outputs(result, {n: t.latency_ms for n, t in tallies.items()}, cfg.out)
    return result


BASELINES = ("popularity", "cooccurrence", "sasrec", "similar")


def headline(result: dict[str, Any]) -> dict[str, Any] | None:
    """The full pipeline (learned ranker, plus the LLM stage where its gate kept it) against the
    best baseline of the same run, on NDCG@10."""
    systems = result["systems"]
    if "union:ltr" not in systems:
        return None
    base = {k: systems[k]["metrics"]["ndcg@10"]["mean"] for k in BASELINES if k in systems}
    if not base:
        return None
    best = max(base, key=base.get)
    pipeline, llm_rows = "union:ltr", {}
    for key, info in (result.get("stage", {}).get("llm_stage") or {}).items():
        if isinstance(info, dict) and "gate" in info:
            row = f"union:ltr+{key}"
            llm_rows[row] = systems.get(row, {}).get("metrics", {}).get("ndcg@10", {}).get("mean")
            if info["gate"].get("kept"):
                pipeline = row
    value = systems[pipeline]["metrics"]["ndcg@10"]["mean"]
    ltr = systems["union:ltr"]["metrics"]["ndcg@10"]["mean"]
    return {
        "pipeline": pipeline,
        "pipeline_ndcg10": value,
        "best_baseline": best,
        "best_baseline_ndcg10": base[best],
        "ratio": round(value / base[best], 3) if base[best] > 0 else None,
        "llm_rows_forced_ndcg10": llm_rows,
        "llm_never_lowers": value >= ltr,
    }


def _run_pipeline(
    settings: Settings,
    cfg: RankingConfig,
    catalog: Any,
    searcher: Any,
    users: Sequence[str],
    histories: dict[str, list[str]],
    user_targets: dict[str, str],
    engine: Any,
    record: Callable[..., None],
    seconds: dict[str, float],
    notes: list[str],
) -> dict[str, Any]:
    """The Recommender with rank_mode "none" (reference) and the LLM re-rank per prompt."""
    from agent.prompts import prompt_fingerprint
    from agent.recommend.pipeline import Recommender, RecommendRequest

    modes = {p: rank_mode_of(p) for p in cfg.prompts}
    if engine is None and modes:
        from agent.engines import make_engine

        engine = make_engine(settings)
    meta: dict[str, Any] = {
        "engine": getattr(engine, "name", None) if engine is not None else None,
        "model_id": getattr(engine, "model_id", None) if engine is not None else None,
        "prompt_fingerprints": {p: prompt_fingerprint(p) for p in cfg.prompts},
    }
    variants: list[tuple[str, str, str, str | None]] = [("pipeline:none", "Recommender, no LLM blend", "none", None)]
    variants += [(f"pipeline:{p}", f"Recommender + LLM blend {p}", modes[p], p) for p in cfg.prompts]
    reason_users = list(users[: cfg.reason_users])
    reasons_done = False
    llm_users: list[str] = list(users)
    reference: dict[str, list[str]] = {}
    for name, label, mode, prompt in variants:
        prompts = {f"rerank_{mode}": prompt} if prompt else {}
        recommender = Recommender(
            settings, engine=engine, searcher=searcher, prompts=prompts, n_candidates=cfg.n_candidates, n_orders=cfg.n_orders, calibrate=cfg.calibrate
        )
        tally = Tally(name, catalog.items)
        mismatches: list[str] = []

        def call(user: str, recommender: Any = recommender, mode: str = mode, tally: Tally = tally, mismatches: list[str] = mismatches) -> list[str]:
            result = recommender.recommend(RecommendRequest(query=None, history=histories[user], k=cfg.n_candidates, rank_mode=mode, with_reasons=False))
            tally.candidate_counts.append(result.n_candidates)
            if mode != "none":
                tally.add_llm(result.llm_valid, result.fallback)
            ranked = [r.item.id for r in result.items]
            if mode != "none" and user in reference and set(ranked) != set(reference[user]):
                mismatches.append(user)  # the shortcut below assumes the same candidates in every mode
            return ranked

        run_users = users if mode == "none" else llm_users
        seconds[name] = _run_per_user(tally, run_users, call, desc=label, progress=cfg.progress)
        extra: dict[str, Any] = {"rank_mode": mode, "prompt": prompt, "n_orders": cfg.n_orders if mode == "onepass" else None}
        if mode != "none":
            extra["llm_users"] = len(run_users)
            extra["candidate_set_mismatches"] = len(mismatches)
            extra["unchanged_order_rate"] = unchanged_order_rate(tally.rankings, reference)
            if mismatches:
                notes.append(f"{name}: {len(mismatches)} users got a different candidate set than with rank_mode none (e.g. {mismatches[:3]}); the skipped users' metrics may be understated")
        if mode != "none" and reason_users and not reasons_done:
            t_reasons = time.perf_counter()
            extra["reasons_latency"] = _measure_reasons(recommender, reason_users, histories, mode, cfg, tally, label)
            seconds[f"{name} (reasons)"] = time.perf_counter() - t_reasons
            reasons_done = True
        record(name, tally, label, "reference" if mode == "none" else "llm", "full catalog", extra)
        if name == "pipeline:none":
            reference = dict(tally.rankings)
            hit_users = [u for u in users if user_targets[u] in set(tally.rankings.get(u, ()))]
            meta["candidate_recall"] = {"n_candidates": cfg.n_candidates, "hits": len(hit_users), "users": len(users), "ceiling": rate(len(hit_users), len(users))}
            if not cfg.llm_all_users:
                # Exact shortcut: the re-ranker only permutes the candidates, so a user whose held-out
                # item is not a candidate scores 0 on every metric whatever the LLM says. Only the
                # others are sent to the LLM; the rest count as misses, as they would anyway.
                llm_users = hit_users
    return meta


def _measure_reasons(recommender: Any, users: Sequence[str], histories: dict[str, list[str]], mode: str, cfg: RankingConfig, tally: Tally, label: str) -> dict[str, Any]:
    """The user-facing call (top reason_k with reasons) on a small subsample: the grounding rate
    of reasons and the end-to-end latency a shopper would see. Separate from the ranking calls so
    reason generation does not inflate their latency."""
    from agent.recommend.pipeline import RecommendRequest
    from evals.metrics import latency_summary

    lat: list[float] = []
    for user in tqdm(users, desc=f"{label}: reasons", unit="user", disable=not cfg.progress, leave=False):
        t0 = time.perf_counter()
        try:
            result = recommender.recommend(RecommendRequest(query=None, history=histories[user], k=cfg.reason_k, rank_mode=mode, with_reasons=True, llm_reasons=True))
        except Exception as exc:
            tally.add_error(f"{user} (reasons)", exc)
            continue
        lat.append((time.perf_counter() - t0) * 1e3)
        for r in result.items:
            if r.reason_source:  # "" when no reason was asked for
                tally.add_reason(bool(r.grounded), r.reason_source)
            if r.item.id not in tally._catalog:
                tally.out_of_catalog.append(r.item.id)
    return latency_summary(lat)


# --- outputs -------------------------------------------------------------------------------------


def rerender(out: Path) -> None:
    """Redraw report.md and the PNGs of a finished run from its results.json (after a report change)."""
    result = rep.load_result(out)
    latencies = {n: s.get("latency_samples_ms", []) for n, s in result["systems"].items()}
    write_ranking_outputs(result, latencies, out)


def write_ranking_outputs(result: dict[str, Any], latencies: dict[str, list[float]], out: Path) -> None:
    """results.json + report.md + ndcg10.png + latency.png in `out` (the JSON is written first, so
    a plotting failure never loses the measured figures)."""
    out.mkdir(parents=True, exist_ok=True)
    rep.write_json(result, out)
    systems = result["systems"]
    labels = {n: s["label"] for n, s in systems.items()}
    cfg = result["config"]
    plots = {
        "ndcg10": lambda path: rep.plot_metric_bars(systems, "ndcg@10", path, title=f"NDCG@10 by system and prompt ({cfg['catalog']}, {cfg['users_evaluated']} users)"),
        "latency": lambda path: rep.plot_latency(latencies, labels, path, title="Latency per recommendation request"),
    }
    result["figures"] = rep.draw_figures(plots, out, result.setdefault("notes", []), enabled={"ndcg10": bool(systems), "latency": any(latencies.values())})
    rep.write_json(result, out)
    (out / rep.REPORT_FILE).write_text(ranking_markdown(result), encoding="utf-8")


def _label_for(systems: dict[str, Any], key: str) -> str:
    """'pipeline:x (reasons)' -> 'Pipeline + LLM x (reasons)'."""
    base, _, suffix = key.partition(" ")
    return systems.get(base, {}).get("label", base) + (f" {suffix}" if suffix else "")


def stage_lines(result: dict[str, Any]) -> list[str]:
    """Markdown for the ranking stage: headline, recall ceilings, cold-item users, gates, importances, training times."""
    lines: list[str] = []
    head = result.get("headline")
    systems = result["systems"]
    if head:
        lines += [
            "## Headline",
            "",
            f"Full pipeline (`{head['pipeline']}`) NDCG@10 **{head['pipeline_ndcg10']:.4f}** vs best baseline "
            f"({systems[head['best_baseline']]['label']}) **{head['best_baseline_ndcg10']:.4f}**: **{head['ratio']}x**. "
            f"The LLM stage {'never lowers it' if head['llm_never_lowers'] else 'LOWERS it'} "
            "(the pipeline uses it only where its gate kept it).",
            "",
        ]
    stage = result.get("stage") or {}
    recall = stage.get("recall")
    if recall:
        depths = list(next(iter(recall.values())).keys())
        lines += ["## Candidate recall ceilings", "", "Share of users whose held-out item is in a source's top N (history excluded); "
                  f"the union takes each source at its own depth (mean union size {stage.get('union_size_mean')}).", ""]
        lines.append(rep.md_table(["source", *[f"@{d}" for d in depths]], [[n, *[rep.pct(v.get(d)) for d in depths]] for n, v in recall.items()]))
        lines.append("")
    cold = (result.get("stage") or {}).get("cold") or {}
    if cold.get("systems"):
        lines += ["## Cold-item users", "", f"All {cold['users']} users of the catalog whose held-out item has at most {cold['max_count']} training interactions.", ""]
        lines.append(rep.md_table(["system", "NDCG@10", "Recall@20"], [[c["label"], rep.metric_cell(c["ndcg@10"]), rep.metric_cell(c["recall@20"])] for c in cold["systems"].values()]))
        lines.append("")
    ranker = stage.get("ranker")
    if ranker:
        imp = sorted(ranker["report"]["importances"].items(), key=lambda kv: -kv[1])
        lines += ["## Learned ranker", "", f"{ranker['report']['groups']} training users (val split), best iteration {ranker['report']['best_iteration']}, "
                  f"valid NDCG@10 {ranker['report']['valid_ndcg10']:.4f}. Feature importances (share of total gain), top 12:", ""]
        lines.append(rep.md_table(["feature", "gain share"], [[n, f"{v:.1%}"] for n, v in imp[:12]]))
        lines.append("")
    for key, info in (stage.get("llm_stage") or {}).items():
        if isinstance(info, dict) and "gate" in info:
            gate = info["gate"]
            imp = gate.get("importances", {})
            lines.append(
                f"- LLM stage `{key}`: {gate.get('groups')} training groups; on held-out users stage 1 NDCG@10 {gate.get('gate_ndcg10_stage1')} vs "
                f"with LLM {gate.get('gate_ndcg10_with_llm')} (SE of the difference {gate.get('gate_diff_se')}): "
                f"**{'kept' if gate.get('kept') else 'dropped'}**. Gain share of llm_score {imp.get('llm_score', 0):.1%}, llm_rank {imp.get('llm_rank', 0):.1%}. "
                f"Trained and evaluated in {info.get('train_seconds')} s."
            )
            same = info.get("same_candidates") or {}
            if same.get("users"):
                lines.append(
                    f"  - On the same top-20 candidates ({same['users']} users whose item is among them), the held-out item's mean rank by the LLM's "
                    f"score alone is {same['llm_mean_rank']} (NDCG@10 {same['llm_ndcg10']}); by the first stage {same['stage1_mean_rank']} "
                    f"(NDCG@10 {same['stage1_ndcg10']}); chance is {same['chance_mean_rank']}."
                )
    times = stage.get("training_seconds")
    if times:
        lines += ["", "Training time (s): " + ", ".join(f"{k} {v}" for k, v in times.items()), ""]
    return lines


def ranking_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    systems = result["systems"]
    ceiling = result.get("candidate_recall")
    lines = [
        f"# Ranking eval — {cfg['catalog']}",
        "",
        f"Leave-one-out next-item prediction: each of **{cfg['users_evaluated']} sampled users** (seed {cfg['seed']}, "
        f"sample hash `{cfg['sampled_users_sha256']}`) has their last item held out; the rest is the history. "
        f"Metrics by ranx, mean ± standard error over users. Total run time {result.get('total_seconds')} s "
        f"on {cfg.get('env_cpu_count')} CPU cores (load average at start {cfg.get('env_load_avg_at_start')}).",
        "",
        "**One scope.** Every row ranks the *full catalog* (history items excluded): an item a system did not put in "
        "its top 20 (for the pipelines: one that no source nominated) is a miss. The Recommender rows (`pipeline:*`) "
        f"are the product's code path: the ranking stage's top {cfg['n_candidates']}, then the legacy LLM blend per prompt.",
        "",
    ]
    if ceiling:
        lines += [
            f"**Candidate recall ceiling:** the held-out item is among the {ceiling['n_candidates']} candidates for "
            f"{ceiling['hits']} of {ceiling['users']} users (**{rep.pct(ceiling['ceiling'])}**).",
            "",
        ]
        if not cfg.get("llm_all_users"):
            lines += [
                f"The LLM re-rankers were run only for those {ceiling['hits']} users: the re-ranker only permutes the candidates, so for "
                "every other user each metric is 0 whatever the LLM answers (they count as misses, exactly as in a full run). "
                "LLM validity and latency are therefore measured over those users' calls.",
                "",
            ]
    if any(s.get("rank_mode") == "onepass" for s in systems.values()):
        calibrated = "calibrated for position bias" if cfg.get("calibrate", True) else "**not** calibrated"
        lines += [f"One-pass re-ranking averaged over **{cfg.get('n_orders')} candidate order(s)**, {calibrated} (the Recommender's default: 1 order, calibrated).", ""]
    metric_names = cfg["metrics"]
    lines += ["## Ranking quality", ""]
    lines.append(
        rep.md_table(
            ["system", "scope", *[m.upper() for m in metric_names]],
            [[s["label"], s["scope"], *[rep.metric_cell(s["metrics"].get(m)) for m in metric_names]] for s in systems.values()],
        )
    )
    if "ndcg10" in result.get("figures", {}):
        lines += ["", "![NDCG@10 by system](ndcg10.png)", ""]
    lines += stage_lines(result)
    lines += ["## Validity, grounding, latency", ""]
    lines.append(rep.md_table(rep.QUALITY_HEADER, rep.quality_rows(systems)))
    lines.append("")
    lines += rep.unchanged_order_line(
        systems, "final top-20 identical to the candidate generator's", " A valid answer that changes nothing is not a useful one."
    )
    lines.append(
        "LLM output valid = share of re-rank calls whose answer was used (`RecommendResult.llm_valid`); the rest fell back to retriever order. "
        f"Reasons are generated for the first {cfg['reason_users']} users only, with the first prompt (top {cfg['reason_k']} items, a separate user-facing call), "
        "and graded by the grounding check (`Recommendation.grounded`). Out-of-catalog ids must be 0."
    )
    reason_lat = [(s["label"], s["reasons_latency"]) for s in systems.values() if s.get("reasons_latency")]
    if reason_lat:
        lines += ["", rep.md_table(["system", f"top-{cfg['reason_k']} with reasons: p50", "p95", "calls"], [[l, rep.ms(x.get("p50_ms")), rep.ms(x.get("p95_ms")), x.get("n")] for l, x in reason_lat])]
    fallbacks = [(s["label"], s["fallbacks"]) for s in systems.values() if s.get("fallbacks")]
    if fallbacks:
        lines += ["", "Fallback reasons:", ""] + [f"- {l}: " + ", ".join(f"{k} ×{v}" for k, v in fb.items()) for l, fb in fallbacks]
    errors = [(s["label"], s["error_examples"]) for s in systems.values() if s.get("errors")]
    if errors:
        lines += ["", "Errors (first few):", ""] + [f"- {l}: {e}" for l, ex in errors for e in ex]
    if "latency" in result.get("figures", {}):
        lines += ["", "![Latency distribution](latency.png)", ""]
    lines += ["", "## Time per system", "", rep.md_table(["system", "seconds"], [[_label_for(systems, k), v] for k, v in result.get("seconds", {}).items()])]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    lines += ["", "## Configuration", "", rep.md_table(["key", "value"], rep.config_rows(cfg)), ""]
    return "\n".join(lines)


# --- CLI -----------------------------------------------------------------------------------------


def ranking_command(
    ctx: typer.Context,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="Catalog with an interaction log (default: AISLE_CATALOG).")] = None,
    users: Annotated[int, typer.Option("--users", "-n", min=1, help="Users sampled (seeded); 300 runs in minutes on CPU.")] = DEFAULT_USERS,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Re-rank prompt variant, repeatable (e.g. rerank_onepass.v1 --prompt rerank_onepass.v2).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="LLM engine: auto | transformers | llamacpp | vllm | openai (default: settings / AISLE_LLM).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the user sample (default: AISLE_SEED).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default eval-out/ranking-<timestamp>, git-ignored).")] = None,
    n_candidates: Annotated[Optional[int], typer.Option("--candidates", min=2, max=26, help="Candidates the pipeline retrieves and re-ranks (default: AISLE_N_CANDIDATES).")] = None,
    n_orders: Annotated[Optional[int], typer.Option("--orders", min=1, max=6, help="Candidate orders the one-pass re-ranker averages (default: AISLE_N_ORDERS; each costs one forward pass).")] = None,
    calibrate: Annotated[Optional[bool], typer.Option("--calibrate/--no-calibrate", help="Divide one-pass label probabilities by the content-free prior (position-bias calibration; default: AISLE_CALIBRATE).")] = None,
    llm_all_users: Annotated[bool, typer.Option("--llm-all-users", help="Also re-rank users whose held-out item is not a candidate (cannot change any metric; only adds LLM calls).")] = False,
    reason_users: Annotated[int, typer.Option("--reason-users", min=0, help="Users whose top items also get reasons (grounding rate; first prompt only).")] = 5,
    no_sasrec: Annotated[bool, typer.Option("--no-sasrec", help="Skip SASRec (it trains first if no cached model exists).")] = False,
    no_stage: Annotated[bool, typer.Option("--no-stage", help="Skip the ranking-stage rows (each source, union + RRF, learned ranker, LLM stage).")] = False,
    no_llm_stage: Annotated[bool, typer.Option("--no-llm-stage", help="Skip the LLM-stage rows (they score the first stage's top 20 with the LLM).")] = False,
    llm_stage_users: Annotated[int, typer.Option("--llm-stage-users", min=50, help="Val users that train and gate the LLM stage.")] = 1000,
    no_pipeline: Annotated[bool, typer.Option("--no-pipeline", help="Skip the Recommender rows (the product path with the legacy LLM blend).")] = False,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Only the pipeline rows.")] = False,
    rows: Annotated[Optional[str], typer.Option("--rows", help="valid | test: score every row of the catalog's published split (evals.ranking_rows) instead of the leave-one-out sample.")] = None,
) -> None:
    """Leave-one-out next-item eval: baselines vs the pipeline with each re-rank prompt."""

    settings, prompts = eval_options(ctx, engine, prompt, DEFAULT_PROMPTS)
    if rows is not None:
        _rows_command(settings, catalog or settings.catalog, rows, out, settings.seed if seed is None else seed)
        return
    out = out or Path("eval-out") / f"ranking-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = RankingConfig(
        catalog=catalog or settings.catalog,
        users=users,
        prompts=prompts,
        seed=settings.seed if seed is None else seed,
        n_candidates=settings.n_candidates if n_candidates is None else n_candidates,
        n_orders=settings.n_orders if n_orders is None else n_orders,
        calibrate=settings.calibrate if calibrate is None else calibrate,
        llm_all_users=llm_all_users,
        reason_users=reason_users,
        sasrec=not no_sasrec,
        stage=not no_stage,
        llm_stage=not no_llm_stage,
        llm_stage_users=llm_stage_users,
        baselines=not no_baselines,
        pipeline=not no_pipeline,
        out=out,
    )
    result = run_ranking_eval(settings, cfg)
    typer.echo(summary_table(result))
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")


def _rows_command(settings: Settings, catalog: str, rows: str, out: Path | None, seed: int) -> None:
    from evals.ranking_rows import RowsConfig, rows_table, run_rows_eval
    from retrieval.catalog import CatalogError

    if rows not in ("valid", "test"):
        raise typer.BadParameter(f"{rows!r}: use valid (every choice is made on it) or test (final figures)", param_hint="--rows")
    out = out or Path("eval-out") / f"ranking-{rows}-rows-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = run_rows_eval(settings, RowsConfig(catalog=catalog, rows=rows, out=out, seed=seed))
    except CatalogError as exc:
        raise typer.BadParameter(str(exc), param_hint="--catalog") from exc
    typer.echo(rows_table(result))
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")


def summary_table(result: dict[str, Any]) -> str:
    """The headline table printed at the end of a run."""
    metric_names = result["config"]["metrics"]
    rows = []
    for s in result["systems"].values():
        lat = s.get("latency", {})
        rows.append(
            [s["label"], s["scope"], *[f"{s['metrics'][m]['mean']:.4f}" for m in metric_names], rep.pct(s.get("llm_valid_rate")) if s.get("llm_asked") else "n/a", s.get("out_of_catalog", 0), rep.ms(lat.get("p50_ms")), rep.ms(lat.get("p95_ms"))]
        )
    text = rep.md_table(["system", "scope", *metric_names, "LLM valid", "OOC", "p50", "p95"], rows)
    head = result.get("headline")
    if head:
        text += f"\n\nfull pipeline {head['pipeline']} NDCG@10 {head['pipeline_ndcg10']:.4f} / best baseline {head['best_baseline']} {head['best_baseline_ndcg10']:.4f} = {head['ratio']}x"
    cold = (result.get("stage") or {}).get("cold") or {}
    if cold.get("systems"):
        text += f"\ncold-item users ({cold['users']}, all of the catalog's): " + ", ".join(f"{k} {v['ndcg@10']['mean']:.4f}" for k, v in cold["systems"].items())
    ceiling = result.get("candidate_recall")
    if ceiling:
        text += f"\n\ncandidate recall ceiling ({ceiling['n_candidates']} candidates): {ceiling['hits']}/{ceiling['users']} = {rep.pct(ceiling['ceiling'])}"
    return text
