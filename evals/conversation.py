"""`aisle eval conversation`: the pipeline on real dialogues.

ReDial (movies): each test turn's dialogue context is the request and the movies the human
recommender then named are the targets. Protocol of He et al. (CIKM 2023), whose prepared split
this is: one query per (turn, target movie) pair, and targets already mentioned earlier in the
dialogue are removed ("repeated items can be shortcuts"); the turns whose every target was
already mentioned are left out. Movies mentioned in the context are excluded from the ranking.
The catalog is the 6,281-movie list (`retrieval.movies`), indexed in a real Chroma collection.

The request text is built from the seeker's own turns, most recent first (the embedding model
truncates long input, so the latest words must come first), with the latest turn repeated:
recency weighting that works in both the dense and the BM25 half of hybrid search. Chosen on 200
test turns drawn with seed 1 (255 pairs, retrieval only; Recall@50): last message only 0.063, all
user turns 0.067, last 3 turns 0.075, latest twice + last 3 turns 0.078, per-turn searches fused
by RRF with weights 1/0.5/0.25 0.067. The gaps are within sampling noise; the choice is the
cheapest form of "recent turns weighted" that did not lose to the others.

MG-ShopDial: 64 human shopping dialogues run as multi-turn smoke conversations against the
mg-shopdial catalog: each run of client utterances is one user turn, our own answer becomes
the assistant turn, and every failure is counted (exception, empty answer, id not in catalog).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from tqdm.auto import tqdm

from agent.settings import Settings
from evals import report as rep
from evals.metrics import CONVERSATION_METRICS, Tally, evaluate_rankings, latency_summary, unchanged_order_rate
from evals.ranking import eval_options, rank_mode_of
from retrieval.collab import id_sort_key

log = logging.getLogger(__name__)

DEFAULT_TURNS = 300
DEFAULT_PROMPTS = ("rerank_onepass.v1",)
REDIAL_K = 50  # Recall@50 needs 50 ranked movies: the pipeline retrieves and returns 50

# Published figures on this exact split, from the authors' result files (repository
# AaronHeee/LLMs-as-Zero-Shot-Conversational-RecSys, commit fcdd4169, files
# src/<model>/general/intermediate/redial/filtered_True_exclude_seen_True/summary.csv, row
# "recommendation": out-of-catalog generations filtered, already-mentioned items removed, the
# setting that matches ours). Evaluated on 4,288 (turn, movie) pairs. No Recall@50 is published there.
PAPER_REFERENCE: dict[str, Any] = {
    "source": "He et al., 'Large Language Models as Zero-Shot Conversational Recommenders', CIKM 2023; "
    "authors' result files github.com/AaronHeee/LLMs-as-Zero-Shot-Conversational-RecSys "
    "(src/<model>/general/intermediate/redial/filtered_True_exclude_seen_True/summary.csv, row 'recommendation')",
    "pairs": 4288,
    "models": {
        "GPT-4 (zero-shot)": {"recall@1": 0.05037313432835821, "recall@5": 0.1396921641791045, "recall@10": 0.20079291044776118, "recall@20": 0.267490671641791},
        "GPT-3.5-turbo (zero-shot)": {"recall@1": 0.043143656716417914, "recall@5": 0.12639925373134328, "recall@10": 0.18306902985074627, "recall@20": 0.22411380597014927},
        "BAIZE-V2-13B (zero-shot)": {"recall@1": 0.033870203694931315, "recall@5": 0.1049265750828991, "recall@10": 0.1442444339175746, "recall@20": 0.16745618190431075},
        "Vicuna-13B (zero-shot)": {"recall@1": 0.033815298507462684, "recall@5": 0.08908582089552239, "recall@10": 0.12033582089552239, "recall@20": 0.1443563432835821},
    },
}


@dataclass
class ConversationConfig:
    dataset: str = "redial"  # "redial" | "mg-shopdial" | "all"
    turns: int = DEFAULT_TURNS
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    seed: int = 0
    n_orders: int = 1  # candidate orders the one-pass re-ranker averages (Recommender default: 1)
    llm_all_turns: bool = False  # also re-rank turns with no target among the candidates
    reason_turns: int = 5  # ReDial turns whose top items also get reasons (grounding rate)
    reason_k: int = 3
    dialogues: int | None = 8  # MG-ShopDial dialogues, stratified by domain (None = all 64)
    smoke_k: int = 3
    smoke_reasons: int = 4  # MG-ShopDial: dialogues whose last user turn also gets reasons
    out: Path = field(default_factory=lambda: Path("eval-out/conversation"))
    progress: bool = True


# --- dialogue helpers ----------------------------------------------------------------------------


def redial_messages(context: Sequence[str]) -> list[dict[str, str]]:
    """ReDial context -> chat messages. The turn right before the recommender's reply is the
    seeker's, and speakers alternate, so roles are assigned from the end (the source's own
    `input` field labels them from the start and gets them wrong whenever the seeker opened)."""
    messages = []
    for back, text in enumerate(reversed(list(context))):
        if text.strip():
            messages.append({"role": "user" if back % 2 == 0 else "assistant", "content": text.strip()})
    return messages[::-1]


def dialogue_query(messages: Sequence[dict[str, str]], max_turns: int = 3) -> str | None:
    """The request text: the user's turns, most recent first, the latest one twice (weight)."""
    user = [m["content"] for m in reversed(list(messages)) if m["role"] == "user"][:max_turns]
    if not user:
        return None
    return "\n".join([user[0], *user])


def load_redial_turns(data_dir: Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "redial" / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set AISLE_DATA_DIR to the shared data folder")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def redial_cases(rows: Sequence[dict[str, Any]], catalog_ids: set[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Eligible turns with their new targets and exclusions, plus counts of what was left out."""
    cases, skipped = [], {"all_targets_already_mentioned": 0, "no_user_turn": 0, "target_not_in_catalog": 0}
    for row in rows:
        mentioned = {str(e) for e in row.get("prev_entity", [])}
        targets = [str(r) for r in row["rec"] if str(r) not in mentioned]
        if not targets:
            skipped["all_targets_already_mentioned"] += 1
            continue
        if any(t not in catalog_ids for t in targets):
            skipped["target_not_in_catalog"] += 1
            continue
        messages = redial_messages(row["context"])
        if not any(m["role"] == "user" for m in messages):
            skipped["no_user_turn"] += 1
            continue
        cases.append(
            {
                "id": str(row["turn_id"]),
                "targets": targets,
                "messages": messages,
                "exclude": sorted(mentioned & catalog_ids),
            }
        )
    return cases, skipped


# --- ReDial --------------------------------------------------------------------------------------


def run_redial(settings: Settings, cfg: ConversationConfig, engine: Any, latencies: dict[str, list[float]]) -> dict[str, Any]:
    from agent.recommend.pipeline import Recommender, RecommendRequest
    from retrieval.movies import load_redial_catalog
    from retrieval.search import open_searcher

    catalog = load_redial_catalog(settings.data_dir)
    searcher = open_searcher(settings, catalog=catalog, progress=cfg.progress)
    rows = load_redial_turns(settings.data_dir)
    cases, skipped = redial_cases(rows, set(catalog.items))
    pool = sorted(cases, key=lambda c: id_sort_key(c["id"]))
    sample = pool if cfg.turns >= len(pool) else random.Random(cfg.seed).sample(pool, cfg.turns)
    # ranx query = one (turn, target) pair, as in the paper
    pair_targets = {f"{c['id']}:{t}": t for c in sample for t in c["targets"]}

    variants: list[tuple[str, str, str, str | None, bool]] = [
        ("last-message", "Retrieval, last user message only", "none", None, False),
        ("pipeline:none", "Retrieval, weighted user turns (no re-rank)", "none", None, True),
    ]
    variants += [(f"pipeline:{p}", f"Pipeline + LLM {p}", rank_mode_of(p), p, True) for p in cfg.prompts]
    systems: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    reason_cases = sample[: cfg.reason_turns]
    llm_cases = list(sample)
    candidate_recall: dict[str, Any] | None = None
    reference_rankings: dict[str, list[str]] = {}
    reasons_done = False
    for name, label, mode, prompt, weighted in variants:
        recommender = Recommender(
            settings, engine=engine, searcher=searcher, prompts={f"rerank_{mode}": prompt} if prompt else {}, n_candidates=REDIAL_K, n_orders=cfg.n_orders
        )
        tally = Tally(name, catalog.items)
        t_sys = time.perf_counter()
        run_cases = sample if mode == "none" else llm_cases
        for case in tqdm(run_cases, desc=f"ReDial: {label}", unit="turn", disable=not cfg.progress, leave=False):
            req = RecommendRequest(
                query=dialogue_query(case["messages"]) if weighted else None,
                conversation=case["messages"],
                exclude_ids=case["exclude"],
                k=REDIAL_K,
                rank_mode=mode,
                with_reasons=False,
            )
            t0 = time.perf_counter()
            try:
                result = recommender.recommend(req)
            except Exception as exc:
                tally.add_error(case["id"], exc)
                continue
            tally.add(case["id"], [r.item.id for r in result.items], (time.perf_counter() - t0) * 1e3)
            tally.candidate_counts.append(result.n_candidates)
            if mode != "none":
                tally.add_llm(result.llm_valid, result.fallback)
        seconds[name] = time.perf_counter() - t_sys
        extra: dict[str, Any] = {"rank_mode": mode, "prompt": prompt, "n_orders": cfg.n_orders if mode == "onepass" else None}
        if mode != "none":
            extra["llm_turns"] = len(run_cases)
            extra["unchanged_order_rate"] = unchanged_order_rate(tally.rankings, reference_rankings)
        if mode != "none" and reason_cases and not reasons_done:
            extra["reasons_latency"] = _reasons(recommender, reason_cases, mode, cfg, tally, label)
            reasons_done = True
        rankings = {q: tally.rankings.get(q.split(":", 1)[0], []) for q in pair_targets}
        systems[name] = {
            "label": label,
            "role": "baseline" if name == "last-message" else ("reference" if mode == "none" else "llm"),
            "scope": f"{len(catalog)} movies",
            "metrics": evaluate_rankings(pair_targets, rankings, CONVERSATION_METRICS),
            **tally.summary(),
            **extra,
            "latency_samples_ms": [round(x, 2) for x in tally.latency_ms],
        }
        latencies[f"redial/{name}"] = tally.latency_ms
        if name == "pipeline:none":
            reference_rankings = dict(tally.rankings)
            # Exact shortcut (as in the ranking eval): the LLM only reorders these 50 candidates, so a
            # turn with no target among them scores 0 on every metric whatever the LLM says.
            hit = [c for c in sample if set(c["targets"]) & set(tally.rankings.get(c["id"], ()))]
            candidate_recall = {"n_candidates": REDIAL_K, "turns_with_a_target": len(hit), "turns": len(sample)}
            if not cfg.llm_all_turns:
                llm_cases = hit
    return {
        "candidate_recall": candidate_recall,
        "catalog_items": len(catalog),
        "catalog_report": catalog.report.summary().splitlines()[0],
        "test_turns": len(rows),
        "eligible_turns": len(cases),
        "skipped_turns": skipped,
        "turns_evaluated": len(sample),
        "pairs_evaluated": len(pair_targets),
        "sampled_turns_sha256": rep.ids_hash(c["id"] for c in sample),
        "systems": systems,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "reference": PAPER_REFERENCE,
        "embed_model": searcher.embedder.model_id,
    }


def _reasons(recommender: Any, cases: Sequence[dict[str, Any]], mode: str, cfg: ConversationConfig, tally: Tally, label: str) -> dict[str, Any]:
    """Top reason_k with reasons on a few turns: grounding rate and user-facing latency."""
    from agent.recommend.pipeline import RecommendRequest

    lat: list[float] = []
    for case in tqdm(cases, desc=f"{label}: reasons", unit="turn", disable=not cfg.progress, leave=False):
        req = RecommendRequest(query=dialogue_query(case["messages"]), conversation=case["messages"], exclude_ids=case["exclude"], k=cfg.reason_k, rank_mode=mode, with_reasons=True, llm_reasons=True)
        t0 = time.perf_counter()
        try:
            result = recommender.recommend(req)
        except Exception as exc:
            tally.add_error(f"{case['id']} (reasons)", exc)
            continue
        lat.append((time.perf_counter() - t0) * 1e3)
        for r in result.items:
            if r.reason_source:
                tally.add_reason(r.grounded, r.reason_source)
            if r.item.id not in tally._catalog:
                tally.out_of_catalog.append(r.item.id)
    return latency_summary(lat)


# --- MG-ShopDial smoke ---------------------------------------------------------------------------


def shopdial_turns(dialogue: dict[str, Any]) -> list[str]:
    """Each run of consecutive client utterances, joined: one user turn."""
    turns = []
    for who, group in itertools.groupby(dialogue.get("utterances", []), key=lambda u: u.get("participant")):
        if who == "Client":
            text = " ".join(u.get("utterance", "").strip() for u in group).strip()
            if text:
                turns.append(text)
    return turns


def stratified_dialogues(dialogues: Sequence[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """n dialogues spread evenly over the four product domains (seeded), so a small smoke run still
    touches books, phones, sports and office products; None or n >= all -> every dialogue."""
    ordered = sorted(dialogues, key=lambda d: d["id"])
    if n is None or n >= len(ordered):
        return ordered
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for d in ordered:
        by_domain.setdefault(d["id"].split(":", 1)[0], []).append(d)
    rng = random.Random(seed)
    for group in by_domain.values():
        rng.shuffle(group)
    picked: list[dict[str, Any]] = []
    for row in itertools.zip_longest(*by_domain.values()):  # round-robin over domains
        picked.extend(d for d in row if d is not None)
    return picked[:n]


def assistant_text(titles: Sequence[str]) -> str:
    return "You could look at: " + "; ".join(titles) if titles else "Sorry, I found nothing that fits."


def run_shopdial(settings: Settings, cfg: ConversationConfig, engine: Any, latencies: dict[str, list[float]]) -> dict[str, Any]:
    from agent.recommend.pipeline import Recommender, RecommendRequest
    from retrieval.search import open_searcher

    path = Path(settings.data_dir) / "mg-shopdial" / "dialogues.json"
    dialogues = json.loads(path.read_text(encoding="utf-8"))
    dialogues = stratified_dialogues(dialogues, cfg.dialogues, cfg.seed)
    searcher = open_searcher(settings, "mg-shopdial", progress=cfg.progress)
    catalog = searcher.catalog
    prompt = cfg.prompts[0] if cfg.prompts else None
    mode = rank_mode_of(prompt) if prompt else "none"
    recommender = Recommender(settings, engine=engine, searcher=searcher, prompts={f"rerank_{mode}": prompt} if prompt else {}, n_candidates=20, n_orders=cfg.n_orders)
    tally = Tally("mg-shopdial", catalog.items)
    reason_dialogues = {d["id"] for d in dialogues[: cfg.smoke_reasons]}
    failures: list[dict[str, Any]] = []
    per_dialogue: list[dict[str, Any]] = []
    reason_ms: list[float] = []
    n_turns = sum(len(shopdial_turns(d)) for d in dialogues)
    bar = tqdm(total=n_turns, desc="MG-ShopDial smoke", unit="turn", disable=not cfg.progress, leave=False)
    t_all = time.perf_counter()
    for d in dialogues:
        turns = shopdial_turns(d)
        conversation: list[dict[str, str]] = []
        failed = 0
        for t_index, text in enumerate(turns):
            conversation.append({"role": "user", "content": text})
            with_reasons = d["id"] in reason_dialogues and t_index == len(turns) - 1
            qid = f"{d['id']}#{t_index}"
            req = RecommendRequest(query=None, conversation=list(conversation), k=cfg.smoke_k, rank_mode=mode, with_reasons=with_reasons, llm_reasons=True)
            t0 = time.perf_counter()
            try:
                result = recommender.recommend(req)
            except Exception as exc:
                tally.add_error(qid, exc)
                failures.append({"turn": qid, "kind": "exception", "detail": f"{type(exc).__name__}: {exc}"[:300], "user": text[:160]})
                failed += 1
                conversation.append({"role": "assistant", "content": assistant_text([])})
                bar.update(1)
                continue
            ids = [r.item.id for r in result.items]
            elapsed = (time.perf_counter() - t0) * 1e3
            if with_reasons:  # kept apart: reasons cost 10x a ranking call and would skew p95
                reason_ms.append(elapsed)
            tally.add(qid, ids, None if with_reasons else elapsed)
            if mode != "none":
                tally.add_llm(result.llm_valid, result.fallback)
            for r in result.items:
                if with_reasons and r.reason_source:
                    tally.add_reason(r.grounded, r.reason_source)
            ooc = [i for i in ids if i not in catalog.items]
            if not ids:
                failures.append({"turn": qid, "kind": "empty answer", "detail": result.fallback or "", "user": text[:160]})
                failed += 1
            if ooc:
                failures.append({"turn": qid, "kind": "out-of-catalog", "detail": ", ".join(ooc), "user": text[:160]})
                failed += 1
            conversation.append({"role": "assistant", "content": assistant_text([r.item.title for r in result.items])})
            bar.update(1)
        per_dialogue.append({"id": d["id"], "turns": len(turns), "failed_turns": failed})
    bar.close()
    latencies["mg-shopdial/smoke"] = tally.latency_ms
    summary = tally.summary()
    kinds: dict[str, int] = {}
    for f in failures:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    return {
        "dialogues": len(dialogues),
        "dialogue_ids_sha256": rep.ids_hash(d["id"] for d in dialogues),
        "user_turns": n_turns,
        "catalog_items": len(catalog),
        "prompt": prompt,
        "rank_mode": mode,
        "k": cfg.smoke_k,
        "failures": len(failures),
        "failure_kinds": kinds,
        "reasons_latency": latency_summary(reason_ms),
        "failure_examples": failures[:20],
        "dialogues_with_failures": sum(1 for p in per_dialogue if p["failed_turns"]),
        "seconds": round(time.perf_counter() - t_all, 1),
        "system": {"label": "MG-ShopDial smoke", **summary, "latency_samples_ms": [round(x, 2) for x in tally.latency_ms]},
    }


# --- orchestration -------------------------------------------------------------------------------


def run_conversation_eval(settings: Settings, cfg: ConversationConfig, *, engine: Any = None) -> dict[str, Any]:
    from agent.prompts import prompt_fingerprint

    t_start = time.perf_counter()
    env = rep.environment()
    for p in cfg.prompts:
        rank_mode_of(p)
    if engine is None and cfg.prompts:
        from agent.engines import make_engine

        engine = make_engine(settings)
    latencies: dict[str, list[float]] = {}
    result: dict[str, Any] = {
        "kind": "conversation",
        "config": {
            "dataset": cfg.dataset,
            "turns_requested": cfg.turns,
            "seed": cfg.seed,
            "prompts": list(cfg.prompts),
            "prompt_fingerprints": {p: prompt_fingerprint(p) for p in cfg.prompts},
            "engine": getattr(engine, "name", None),
            "model_id": getattr(engine, "model_id", None),
            "redial_k": REDIAL_K,
            "n_orders": cfg.n_orders,
            "llm_all_turns": cfg.llm_all_turns,
            "dialogues_requested": cfg.dialogues,
            "smoke_k": cfg.smoke_k,
            "smoke_reasons": cfg.smoke_reasons,
            "reason_turns": cfg.reason_turns,
            "reason_k": cfg.reason_k,
            "metrics": list(CONVERSATION_METRICS),
            "git": rep.git_state(),
            **{f"env_{k}": v for k, v in env.items()},
        },
        "notes": [],
    }
    if cfg.dataset in ("redial", "all"):
        result["redial"] = run_redial(settings, cfg, engine, latencies)
    if cfg.dataset in ("mg-shopdial", "all"):
        result["mg_shopdial"] = run_shopdial(settings, cfg, engine, latencies)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_conversation_outputs(result, latencies, cfg.out)
    return result


def write_conversation_outputs(result: dict[str, Any], latencies: dict[str, list[float]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rep.write_json(result, out)
    plots: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if "redial" in result:
        systems = result["redial"]["systems"]
        labels.update({f"redial/{n}": f"ReDial: {s['label']}" for n, s in systems.items()})
        plots["redial_recall"] = lambda path: plot_redial(result["redial"], path)
    if "mg_shopdial" in result:
        labels["mg-shopdial/smoke"] = "MG-ShopDial smoke (k=%d)" % result["mg_shopdial"]["k"]
    if any(latencies.values()):
        plots["latency"] = lambda path: rep.plot_latency(latencies, labels, path, title="Latency per conversational request")
    result["figures"] = rep.draw_figures(plots, out, result.setdefault("notes", []))
    rep.write_json(result, out)
    (out / rep.REPORT_FILE).write_text(conversation_markdown(result), encoding="utf-8")


def plot_redial(redial: dict[str, Any], path: Path) -> Path:
    """Recall@K per system, ours beside the published zero-shot LLMs (dashed, hollow markers)."""
    plt = rep._pyplot()
    ks = [1, 5, 10, 20, 50]
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=120)
    llm_colours = iter(["#e6550d", "#d62728", "#fd8d3c", "#a63603"])
    for name, s in redial["systems"].items():
        xs = [k for k in ks if f"recall@{k}" in s["metrics"]]
        colour = next(llm_colours, None) if s["role"] == "llm" else rep.COLOURS.get(s["role"])
        ax.errorbar(
            xs, [s["metrics"][f"recall@{k}"]["mean"] for k in xs], yerr=[s["metrics"][f"recall@{k}"]["se"] for k in xs],
            marker="o", capsize=3, linewidth=2, label=f"ours: {s['label']}", color=colour,
        )
    ref_colours = iter(["#6a3d9a", "#33a02c", "#8c564b", "#e377c2", "#17becf"])
    for model, figs in redial["reference"]["models"].items():
        xs = [k for k in ks if f"recall@{k}" in figs]
        ax.plot(xs, [figs[f"recall@{k}"] for k in xs], linestyle="--", marker="s", markerfacecolor="none", alpha=0.8, color=next(ref_colours, None), label=f"He et al.: {model}")
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_title(f"ReDial test: Recall@K ({redial['pairs_evaluated']} turn-movie pairs, ours) vs published", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def conversation_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# Conversation eval", "", f"Total run time {result.get('total_seconds')} s on {cfg.get('env_cpu_count')} CPU cores "
             f"(load average at start {cfg.get('env_load_avg_at_start')}). Engine `{cfg.get('engine')}`, model `{cfg.get('model_id')}`, "
             f"prompts {', '.join(f'`{p}`' for p in cfg['prompts']) or '–'}.", ""]
    if "redial" in result:
        rd = result["redial"]
        systems = rd["systems"]
        metric_names = cfg["metrics"]
        lines += [
            "## ReDial (movies)",
            "",
            f"{rd['turns_evaluated']} of {rd['eligible_turns']} eligible test turns (seed {cfg['seed']}, hash `{rd['sampled_turns_sha256']}`), "
            f"**{rd['pairs_evaluated']} (turn, movie) pairs**; {rd['test_turns']} turns in the file, skipped: {rd['skipped_turns']}. "
            f"Catalog: {rd['catalog_items']} movies (titles only, from the DBpedia URIs) in Chroma (`{rd['embed_model']}`). "
            "Targets already mentioned in the dialogue are removed and mentioned movies are excluded from the ranking (He et al.'s protocol). "
            f"The pipeline retrieves {cfg['redial_k']} candidates; the LLM re-ranks the first 26 (labels A–Z), the rest keep retriever order.",
            "",
            rep.md_table(["system", *[m.upper() for m in metric_names]], [[s["label"], *[rep.metric_cell(s["metrics"].get(m)) for m in metric_names]] for s in systems.values()]),
            "",
            *([f"Candidate recall: a target is among the {rd['candidate_recall']['n_candidates']} candidates in "
               f"{rd['candidate_recall']['turns_with_a_target']} of {rd['candidate_recall']['turns']} turns. "
               + ("The LLM re-rankers ran only on those turns (for any other turn every metric is 0 whatever the LLM answers); "
                  "their validity and latency figures are over those calls. " if not cfg.get("llm_all_turns") else "")
               + f"One-pass re-ranking averaged {cfg.get('n_orders')} candidate order(s).", ""] if rd.get("candidate_recall") else []),
            "### Compared with the published figures",
            "",
            f"Source: {rd['reference']['source']}; {rd['reference']['pairs']} pairs, full test split. Those systems *generate* titles with "
            "the LLM's own movie knowledge; ours retrieves from titles only with a 135M model, so the comparison shows the size of the gap, not a like-for-like ranking.",
            "",
        ]
        ref_metrics = ["recall@1", "recall@5", "recall@10", "recall@20"]
        ref_rows = [[f"{m} (published)", *[rep.fmt(f.get(k)) for k in ref_metrics]] for m, f in rd["reference"]["models"].items()]
        our_rows = []
        for s in systems.values():
            our_rows.append([f"ours: {s['label']}", *[rep.fmt(s["metrics"][k]["mean"]) if k in s["metrics"] else "–" for k in ref_metrics]])
        lines.append(rep.md_table(["system", *[m.upper() for m in ref_metrics]], our_rows + ref_rows))
        if "redial_recall" in result.get("figures", {}):
            lines += ["", "![ReDial Recall@K](redial_recall.png)", ""]
        lines += ["### Validity, grounding, latency", "", rep.md_table(rep.QUALITY_HEADER, rep.quality_rows(systems)), ""]
        lines += rep.unchanged_order_line(systems, "identical to the retrieval order")
        reason_lat = [(s["label"], s["reasons_latency"]) for s in systems.values() if s.get("reasons_latency")]
        if reason_lat:
            lines += [f"Reasons: first {cfg['reason_turns']} sampled turns, top {cfg['reason_k']} items.", "",
                      rep.md_table(["system", "with reasons: p50", "p95", "calls", "reason sources"], [[l, rep.ms(x.get("p50_ms")), rep.ms(x.get("p95_ms")), x.get("n"), json.dumps(systems_by_label(systems, l).get("reason_sources", {}))] for l, x in reason_lat]), ""]
        lines += [rep.md_table(["system", "seconds"], [[systems[k]["label"], v] for k, v in rd["seconds"].items()]), ""]
    if "mg_shopdial" in result:
        sd = result["mg_shopdial"]
        s = sd["system"]
        lines += [
            "## MG-ShopDial smoke conversations",
            "",
            f"{sd['dialogues']} dialogues, {sd['user_turns']} user turns (runs of client utterances), against the {sd['catalog_items']}-item mg-shopdial catalog; "
            f"rank mode `{sd['rank_mode']}` with `{sd['prompt']}`, top {sd['k']} per turn; our answer is fed back as the assistant turn. "
            f"Reasons were asked for on the last turn of the first {cfg.get('smoke_reasons')} dialogues.",
            "",
            rep.md_table(
                ["turns", "failures", "exceptions", "empty answers", "out-of-catalog ids", "dialogues with a failure", "LLM output valid", "reasons grounded", "p50", "p95", "seconds"],
                [[sd["user_turns"], sd["failures"], s["errors"], s["empty_answers"], s["out_of_catalog"], sd["dialogues_with_failures"],
                  rep.pct(s.get("llm_valid_rate")) if s.get("llm_asked") else "n/a", rep.reasons_cell(s),
                  rep.ms(s["latency"].get("p50_ms")), rep.ms(s["latency"].get("p95_ms")), sd["seconds"]]],
            ),
            "",
        ]
        if sd.get("reasons_latency", {}).get("n"):
            rl = sd["reasons_latency"]
            lines += [f"Latency above excludes the {rl['n']} turns with reasons; those took p50 {rep.ms(rl['p50_ms'])}, max {rep.ms(rl['max_ms'])}.", ""]
        if s.get("fallbacks"):
            lines += ["Re-rank fallbacks: " + ", ".join(f"{k} ×{v}" for k, v in s["fallbacks"].items()), ""]
        if sd["failure_examples"]:
            lines += ["Failures (first 20):", "", rep.md_table(["turn", "kind", "detail", "user said"], [[f["turn"], f["kind"], f["detail"], f["user"]] for f in sd["failure_examples"]]), ""]
        else:
            lines += ["No failures.", ""]
    if "latency" in result.get("figures", {}):
        lines += ["![Latency](latency.png)", ""]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    lines += ["## Configuration", "", rep.md_table(["key", "value"], rep.config_rows(cfg)), ""]
    return "\n".join(lines)


def systems_by_label(systems: dict[str, Any], label: str) -> dict[str, Any]:
    return next((s for s in systems.values() if s["label"] == label), {})


# --- CLI -----------------------------------------------------------------------------------------


def conversation_command(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="redial | mg-shopdial | all")] = "redial",
    turns: Annotated[int, typer.Option("--turns", "-n", min=1, help="ReDial test turns sampled (seeded).")] = DEFAULT_TURNS,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Re-rank prompt variant, repeatable.")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="LLM engine: auto | transformers | llamacpp | vllm | openai.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: AISLE_SEED).")] = None,
    dialogues: Annotated[int, typer.Option("--dialogues", min=1, help="MG-ShopDial dialogues, spread over the 4 domains (64 = all; ~10 turns each).")] = 8,
    n_orders: Annotated[Optional[int], typer.Option("--orders", min=1, max=6, help="Candidate orders the one-pass re-ranker averages (default: AISLE_N_ORDERS).")] = None,
    llm_all_turns: Annotated[bool, typer.Option("--llm-all-turns", help="Also re-rank ReDial turns with no target among the candidates (cannot change metrics).")] = False,
    reason_turns: Annotated[int, typer.Option("--reason-turns", min=0, help="ReDial turns whose top items also get reasons.")] = 5,
    smoke_reasons: Annotated[int, typer.Option("--smoke-reasons", min=0, help="MG-ShopDial dialogues whose last turn also gets reasons.")] = 4,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default eval-out/conversation-<timestamp>, git-ignored).")] = None,
) -> None:
    """ReDial Recall@K vs the published figures, and MG-ShopDial multi-turn smoke conversations."""
    if dataset not in ("redial", "mg-shopdial", "all"):
        raise typer.BadParameter("use redial, mg-shopdial or all", param_hint="--dataset")
    settings, prompts = eval_options(ctx, engine, prompt, DEFAULT_PROMPTS)
    out = out or Path("eval-out") / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = ConversationConfig(
        dataset=dataset, turns=turns, prompts=prompts, seed=settings.seed if seed is None else seed, dialogues=dialogues,
        n_orders=settings.n_orders if n_orders is None else n_orders, llm_all_turns=llm_all_turns,
        reason_turns=reason_turns, smoke_reasons=smoke_reasons, out=out,
    )
    result = run_conversation_eval(settings, cfg)
    typer.echo(summary_text(result))
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")


def summary_text(result: dict[str, Any]) -> str:
    parts = []
    if "redial" in result:
        rd = result["redial"]
        names = result["config"]["metrics"]
        rows = [[s["label"], *[f"{s['metrics'][m]['mean']:.4f}" for m in names], rep.pct(s.get("llm_valid_rate")) if s.get("llm_asked") else "n/a", s["out_of_catalog"], rep.ms(s["latency"]["p50_ms"]), rep.ms(s["latency"]["p95_ms"])] for s in rd["systems"].values()]
        parts.append(f"ReDial: {rd['turns_evaluated']} turns, {rd['pairs_evaluated']} pairs\n" + rep.md_table(["system", *names, "LLM valid", "OOC", "p50", "p95"], rows))
    if "mg_shopdial" in result:
        sd = result["mg_shopdial"]
        parts.append(f"MG-ShopDial smoke: {sd['dialogues']} dialogues, {sd['user_turns']} turns, {sd['failures']} failures {sd['failure_kinds']}, out-of-catalog {sd['system']['out_of_catalog']}")
    return "\n\n".join(parts)
