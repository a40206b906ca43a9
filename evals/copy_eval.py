"""`aisle eval copy`: does generated copy help cold-start items, and is it grounded?

Protocol (amazon-office-2018, whose items have human descriptions):
1. pick N items with a real description (seeded); hide those descriptions ("cold" catalog);
2. index the cold catalog in a real Chroma store in a temporary AISLE_HOME;
3. for each item, search with a query built from its HIDDEN human description (its first words
   minus the title's words) and record the item's rank: the cold baseline;
4. generate copy for the items from title/brand/categories (`aisle describe`'s code path, into an
   overlay in the temporary home), apply the overlay, re-sync the index (only those items are
   re-embedded) and search again;
5. report (a) the share of drafts with an unsupported claim before and after regeneration,
   (b) similarity of the kept copy to the human text (MiniLM cosine, ROUGE-L F1) -- of the
   description alone and of selling point + description (the whole copy: what the index holds beside the title) -- next to
   the same numbers for the bare title as a reference and for title + copy (the text the index
   holds for the item: does the copy add anything the title lacks?), (c) rank / Recall@10 / MRR
   cold vs generated.

Base vs fine-tuned (issue #17): with a copywriter adapter (`--adapter`, or the one `aisle train
copywriter` left in the home) steps 4-5 run twice on the same items and the same index, first with
the base model, then with the adapter; the top-level figures stay the base model's and `variants`
holds both rows ("base", "fine-tuned"). The items are picked by `agent.copy.heldout.select_eval_items`,
the function the trainer holds out; an adapter trained on this catalog is refused unless it held
out every evaluated item. On another catalog (`--catalog amazon-office-2014 --adapter <2018 adapter>`)
items whose title also appears in the training catalog are left out (`--exclude-titles-of`,
defaulting to the adapter's catalog).

JSON keys (documented, tested): catalog, items, seed, config, engine, timing, generation,
grounding, similarity, retrieval, per_item, environment, heldout (ids hash, exclusions), variants.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.copy.corroborate import DEFAULT_CORROBORATE

# The held-out sample is picked by ONE function shared with `aisle train copywriter`.
from agent.copy.heldout import MIN_DESCRIPTION_WORDS, MIN_QUERY_WORDS, QUERY_WORDS, description_query, eligible, select_eval_items  # noqa: F401
from agent.copy.select import DEFAULT_DRAFTS
from agent.copy.writer import DEFAULT_BATCH_SIZE
from agent.settings import Settings
from retrieval.catalog import Catalog

log = logging.getLogger(__name__)

DEFAULT_CATALOG = "amazon-office-2018"
DEFAULT_ITEMS = 200
SEARCH_DEPTH = 100
RESULT_KEYS = ("catalog", "items", "seed", "config", "engine", "timing", "generation", "grounding", "similarity", "retrieval", "per_item", "environment",
               "heldout", "variants")


def hide_descriptions(catalog: Catalog, ids: Sequence[str], *, pool: int | None = None, seed: int = 0) -> Catalog:
    """A copy of the catalog with those items' descriptions removed (never touches the source).

    `pool`: keep only the eval items plus this many other items (seeded) - for quick runs/tests;
    None keeps the whole catalog (the real eval)."""
    wanted = set(ids)
    keep = list(catalog.items)
    if pool is not None:
        others = sorted(i for i in catalog.items if i not in wanted)
        keep = sorted(wanted | set(random.Random(seed + 1).sample(others, min(pool, len(others)))))
    items = {i: dataclasses.replace(catalog.items[i], description="") if i in wanted else catalog.items[i] for i in keep}
    return Catalog(name=catalog.name, items=items, report=catalog.report)


def _rank(searcher: Any, item_id: str, query: str, depth: int) -> int | None:
    hits = searcher.search(query, k=depth, depth=depth)
    for rank, hit in enumerate(hits, start=1):
        if hit.item.id == item_id:
            return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], k: int = 10) -> dict[str, Any]:
    """Recall@k, MRR (0 when not in the top `depth`), median rank (missing = depth + 1)."""
    n = len(ranks)
    if n == 0:
        return {"n": 0}
    found = [r for r in ranks if r is not None]
    capped = [r if r is not None else SEARCH_DEPTH + 1 for r in ranks]
    return {
        "n": n,
        f"recall@{k}": sum(1 for r in found if r <= k) / n,
        "recall@1": sum(1 for r in found if r == 1) / n,
        "mrr": sum(1.0 / r for r in found) / n,
        "median_rank": statistics.median(capped),
        "found_in_top": len(found) / n,
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _variant(label, engine, adapter_info, *, report, records_count, writer, ids, source, human, cold_ranks, warm_ranks, sync, embedder, scorer, index_size, queries) -> dict[str, Any]:
    """generation / grounding / similarity / retrieval / per_item for one copywriter (base or fine-tuned)."""
    results = {r.item_id: r for r in report.results}
    kept = [i for i in ids if i in results and results[i].usable and results[i].copy]

    # (b) similarity to the human description, with the bare title as a reference point
    cos: dict[str, float] = {}
    rouge: dict[str, float] = {}
    title_cos: dict[str, float] = {}
    title_rouge: dict[str, float] = {}
    copy_cos: dict[str, float] = {}  # selling point + description: the whole copy
    copy_rouge: dict[str, float] = {}
    with_title_cos: dict[str, float] = {}  # title + selling point + description: the text the index holds
    with_title_rouge: dict[str, float] = {}
    if kept:
        copies = {i: results[i].copy for i in kept}
        full = {i: c.text() for i, c in copies.items()}  # type: ignore[union-attr]
        with_title = {i: f"{source.items[i].title}. {full[i]}" for i in kept}
        gen_vecs = embedder.encode([copies[i].description for i in kept])  # type: ignore[union-attr]
        full_vecs = embedder.encode([full[i] for i in kept])
        hum_vecs = embedder.encode([human[i] for i in kept])
        title_vecs = embedder.encode([source.items[i].title for i in kept])
        both_vecs = embedder.encode([with_title[i] for i in kept])
        for j, i in enumerate(kept):
            cos[i] = float(gen_vecs[j] @ hum_vecs[j])
            copy_cos[i] = float(full_vecs[j] @ hum_vecs[j])
            title_cos[i] = float(title_vecs[j] @ hum_vecs[j])
            with_title_cos[i] = float(both_vecs[j] @ hum_vecs[j])
            rouge[i] = scorer.score(human[i], copies[i].description)["rougeL"].fmeasure  # type: ignore[union-attr]
            copy_rouge[i] = scorer.score(human[i], full[i])["rougeL"].fmeasure
            with_title_rouge[i] = scorer.score(human[i], with_title[i])["rougeL"].fmeasure
            title_rouge[i] = scorer.score(human[i], source.items[i].title)["rougeL"].fmeasure

    # (a) grounding before / after regeneration, over drafts that parsed
    generated = [results[i] for i in ids if i in results]
    first_parsed = [r for r in generated if r.first_format_error is None]
    first_flagged = [r for r in first_parsed if r.first_unsupported]
    second_drafts = [r for r in generated if r.regenerated]
    still_flagged = [r for r in generated if r.status == "dropped" and any(not p.startswith("format:") for p in r.unsupported)]
    problem_kinds = Counter(p.split(" ", 1)[0].strip("'\"") for r in generated for p in r.first_unsupported)

    per_item = []
    for i in ids:
        r = results.get(i)
        per_item.append({
            "id": i,
            "title": source.items[i].title,
            "query": queries[i],
            "status": r.status if r else "error",
            "selling_point": r.copy.selling_point if r and r.usable and r.copy else None,
            "description": r.copy.description if r and r.usable and r.copy else None,
            "first_draft_unsupported": r.first_unsupported if r else [],
            "final_unsupported": r.unsupported if r else [],
            "first_draft_format_error": r.first_format_error if r else None,
            "drafts": r.drafts if r else 0,
            "drafts_passed": r.passed if r else 0,
            "draft_score": r.score if r else None,
            "specific_words": r.specific if r and r.usable else [],
            "pruned_sentences": r.pruned if r and r.usable else [],
            "cosine_to_human": round(cos[i], 4) if i in cos else None,
            "rougeL_to_human": round(rouge[i], 4) if i in rouge else None,
            "copy_cosine_to_human": round(copy_cos[i], 4) if i in copy_cos else None,
            "rank_cold": cold_ranks[i],
            "rank_generated": warm_ranks[i],
        })
    return {
        "label": label,
        "engine": {"name": engine.name, "model": engine.model_id},
        "adapter": adapter_info,
        "generation": {
            "drafts_sampled": sum(r.drafts for r in generated),
            "drafts_passed_first_round": sum(r.passed for r in generated if r.status == "ok"),
            "generated": report.generated, "ok": report.ok, "regenerated_ok": report.regenerated_ok, "dropped": report.dropped,
            "errors": report.errors, "bad_items": report.bad_items, "items_per_s": round(report.items_per_s, 3),
            "kept_share": round(len(kept) / len(ids), 4) if ids else None,
        },
        "grounding": {
            "drafts_parsed_first_try": len(first_parsed),
            "unsupported_share_before": round(len(first_flagged) / len(first_parsed), 4) if first_parsed else None,
            "format_error_share_first_try": round(1 - len(first_parsed) / len(generated), 4) if generated else None,
            "regenerated": len(second_drafts),
            "unsupported_share_after": round(len(still_flagged) / len(generated), 4) if generated else None,
            # Kept copy passed the checker by construction, so its flag share is no measure; what
            # the checker cannot read shows in specific words (`agent.copy.terms`) and a hand read.
            "kept_with_specific_words_share": round(sum(bool(results[i].specific) for i in kept) / len(kept), 4) if kept else None,
            "specific_words_per_kept_copy": round(sum(len(results[i].specific) for i in kept) / len(kept), 3) if kept else None,
            "specific_words": writer.rarity.describe() if writer.rarity is not None else None,
            "problem_kinds_first_try": dict(problem_kinds.most_common()),
            "top_problems_first_try": dict(report.problem_counts.most_common(15)),
        },
        "similarity": {
            "n": len(kept),
            "embedding_cosine_mean": _mean(list(cos.values())),
            "rougeL_f_mean": _mean(list(rouge.values())),
            "title_only_cosine_mean": _mean(list(title_cos.values())),
            "title_only_rougeL_f_mean": _mean(list(title_rouge.values())),
            "copy_cosine_mean": _mean(list(copy_cos.values())),
            "copy_rougeL_f_mean": _mean(list(copy_rouge.values())),
            "title_plus_copy_cosine_mean": _mean(list(with_title_cos.values())),
            "title_plus_copy_rougeL_f_mean": _mean(list(with_title_rouge.values())),
        },
        "retrieval": {
            "k": 10,
            "reembedded": sync.updated + sync.added,
            "index_size": index_size,
            "cold": retrieval_metrics([cold_ranks[i] for i in ids]),
            "generated": retrieval_metrics([warm_ranks[i] for i in ids]),
            "kept_only": {
                "cold": retrieval_metrics([cold_ranks[i] for i in kept]),
                "generated": retrieval_metrics([warm_ranks[i] for i in kept]),
            },
        },
        "timing": {"generate_s": round(report.elapsed_s, 1)},
        "per_item": per_item,
    }


def check_adapter_split(adapter: Any, catalog_name: str, ids: Sequence[str]) -> dict[str, Any] | None:
    """The adapter's training split as recorded in its metadata; raises ValueError when the adapter
    was trained on `catalog_name` and any evaluated item is outside its held-out set."""
    from agent.train.lora import read_metadata

    if not isinstance(adapter, Path):
        return None
    meta = read_metadata(adapter) or {}
    heldout = meta.get("heldout")
    if not heldout:
        return None
    if heldout.get("catalog") == catalog_name:
        outside = [i for i in ids if i not in set(heldout.get("ids") or [])]
        if outside:
            raise ValueError(
                f"{len(outside)} evaluated items (e.g. {outside[:3]}) were not held out when {adapter} was trained "
                f"(held out: --items {heldout.get('n')} --seed {heldout.get('seed')}); evaluate with those, or retrain with matching --eval-items/--seed"
            )
    return heldout


def run_copy_eval(
    settings: Settings,
    *,
    catalog_name: str = DEFAULT_CATALOG,
    n_items: int = DEFAULT_ITEMS,
    seed: int = 0,
    batch_size: int = 16,
    max_tokens: int | None = None,
    prompt: str | None = None,
    pool: int | None = None,
    engine: Any = None,
    progress: bool = True,
    work_dir: Path | None = None,
    adapter: Path | str | None = None,
    tuned_engine: Any = None,
    exclude_titles_of: str | None = None,
    ban_unsupported: bool = True,
    drafts: int = 1,
    corroborate: bool = False,
) -> dict[str, Any]:
    """Run the protocol above and return the result dict (see RESULT_KEYS).

    `adapter` (a copywriter LoRA folder) or `tuned_engine` (an engine already carrying one): also
    run the fine-tuned copywriter on the same items, after the base model, in the same index; the
    top-level generation/grounding/similarity/retrieval/per_item stay the base model's and
    `variants` holds both ("base", "fine-tuned"). An adapter trained on this catalog must have held
    out every evaluated item (its metadata is checked); an adapter trained on another catalog
    excludes that catalog's titles by default (`exclude_titles_of`: leave out items whose title
    also appears in that catalog).

    `work_dir`: keep the eval's AISLE_HOME (Chroma store) there instead of a temporary folder, so a
    re-run re-embeds only the eval items (the index is incremental) instead of the whole catalog.
    The overlay in it is always started afresh.

    `drafts`: sampled drafts per item; above 1 the writer keeps the passing draft closest to the
    item's fields (`agent.copy.select.FieldSimilarity`, with the eval's embedder)."""
    from rouge_score import rouge_scorer

    from agent.copy.heldout import ids_hash, items_with_titles_of
    from agent.copy.select import FieldSimilarity
    from agent.copy.writer import DEFAULT_MAX_TOKENS, DEFAULT_PROMPT, Copywriter, describe_catalog
    from agent.engines import make_engine
    from agent.train.copywriter import adapter_record
    from evals.report import environment, git_state
    from retrieval.embed import Embedder
    from retrieval.index import CatalogIndex, make_chroma_client
    from retrieval.overlay import apply_overlay, overlay_path, read_overlay
    from retrieval.registry import load_catalog
    from retrieval.search import HybridSearcher

    max_tokens = max_tokens or DEFAULT_MAX_TOKENS
    prompt = prompt or DEFAULT_PROMPT
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    source = load_catalog(settings, catalog_name)
    trained_on = None
    if isinstance(adapter, Path):
        from agent.train.lora import read_metadata

        trained_on = (read_metadata(adapter) or {}).get("catalog")
        if exclude_titles_of is None and trained_on and trained_on != catalog_name:
            exclude_titles_of = trained_on
            log.info("adapter trained on %s: leaving out items whose title is also in %s", trained_on, trained_on)
    excluded: set[str] = set()
    if exclude_titles_of:
        excluded = items_with_titles_of(source, load_catalog(settings, exclude_titles_of))
    items = select_eval_items(source, n_items, seed, exclude=excluded)
    ids = [it.id for it in items]
    adapter_split = check_adapter_split(adapter, catalog_name, ids) if adapter is not None else None
    human = {it.id: it.description for it in items}
    queries = {it.id: description_query(it) for it in items}
    cold = hide_descriptions(source, ids, pool=pool, seed=seed)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    # (label, engine factory, owns the engine, adapter record)
    runs: list[tuple[str, Any, bool, Any]] = [("base", (lambda: engine) if engine is not None else (lambda: make_engine(settings)), engine is None, None)]
    if tuned_engine is not None:
        runs.append(("fine-tuned", lambda: tuned_engine, False, adapter_record(getattr(tuned_engine, "adapter", None) or adapter)))
    elif adapter is not None:
        runs.append(("fine-tuned", lambda: make_engine(settings, adapter=adapter), True, adapter_record(adapter)))
    embedder = Embedder.from_settings(settings)
    variants: dict[str, dict[str, Any]] = {}
    writer = None
    with contextlib.ExitStack() as stack:
        tmp = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aisle-copy-eval-")))
        tmp_settings = settings.model_copy(update={"home": Path(tmp), "chroma_url": None})
        index = CatalogIndex(make_chroma_client(tmp_settings), cold.name, embedder)
        t = time.perf_counter()
        index.sync(cold, progress=progress)
        timing["index_cold_s"] = time.perf_counter() - t

        t = time.perf_counter()
        searcher = HybridSearcher(cold, index, embedder)
        cold_ranks = {i: _rank(searcher, i, queries[i], SEARCH_DEPTH) for i in ids}
        timing["search_cold_s"] = time.perf_counter() - t

        for label, factory, owns, adapter_info in runs:
            run_engine = factory()  # built from the real home: reuses the converted model
            try:
                # The cold catalog, as `aisle describe` would see it: the hidden descriptions shape
                # neither the brand list nor which words count as rare.
                writer = Copywriter.for_catalog(run_engine, cold, prompt=prompt, max_tokens=max_tokens, ban_unsupported=ban_unsupported,
                                                drafts=drafts, scorer=FieldSimilarity(embedder) if drafts > 1 else None,
                                                corroborate=corroborate)
                path = overlay_path(tmp_settings, cold.name)
                path.unlink(missing_ok=True)  # each copywriter starts from the cold catalog
                report = describe_catalog(cold, writer, path, ids=ids, batch_size=batch_size, progress=progress, keep_results=True, adapter=adapter_info)
            finally:
                if owns:
                    run_engine.close()
            records = read_overlay(path)
            warm = apply_overlay(cold, records)
            t = time.perf_counter()
            sync = index.sync(warm, progress=progress)  # re-embeds only the items whose text changed
            reindex_s = time.perf_counter() - t
            t = time.perf_counter()
            searcher = HybridSearcher(warm, index, embedder)
            warm_ranks = {i: _rank(searcher, i, queries[i], SEARCH_DEPTH) for i in ids}
            search_s = time.perf_counter() - t
            variants[label] = _variant(label, run_engine, adapter_info, report=report, records_count=len(records), writer=writer, ids=ids, source=source,
                                       human=human, cold_ranks=cold_ranks, warm_ranks=warm_ranks, sync=sync, embedder=embedder, scorer=scorer,
                                       index_size=len(cold), queries=queries)
            variants[label]["timing"].update({"reindex_s": round(reindex_s, 1), "search_generated_s": round(search_s, 1)})
            if label == "base":
                timing["generate_s"] = report.elapsed_s
                timing["reindex_s"] = reindex_s
                timing["search_generated_s"] = search_s
            else:
                timing[f"generate_{label}_s"] = report.elapsed_s
        del searcher, index  # release the Chroma store before the temp folder goes

    base = variants["base"]
    timing["total_s"] = time.perf_counter() - t0
    result = {
        "catalog": catalog_name,
        "items": len(ids),
        "seed": seed,
        "config": {"prompt": prompt, "max_tokens": max_tokens, "batch_size": batch_size, "pool": pool, "search_depth": SEARCH_DEPTH,
                   "temperature": writer.temperature if writer else None, "retry_temperature": writer.retry_temperature if writer else None,
                   "ban_unsupported": writer.ban_unsupported if writer else None, "drafts": drafts, "corroborate": corroborate,
                   "selection": writer.selection if writer else None,
                   "query": f"first {QUERY_WORDS} words of the human description minus title words", "git": git_state()},
        "engine": base["engine"],
        "timing": {k: round(v, 1) for k, v in timing.items()},
        "generation": base["generation"],
        "grounding": base["grounding"],
        "similarity": base["similarity"],
        "retrieval": base["retrieval"],
        "per_item": base["per_item"],
        "environment": environment(),
        "heldout": {
            "function": "agent.copy.heldout.select_eval_items", "ids_hash": ids_hash(ids), "excluded_titles_of": exclude_titles_of,
            "excluded_items": len(excluded), "adapter_trained_on": trained_on,
            "adapter_heldout_ids_hash": (adapter_split or {}).get("ids_hash"),
        },
        "variants": {label: {k: v for k, v in var.items() if k != "per_item" or label != "base"} for label, var in variants.items()},
    }
    return result


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_report(result: dict[str, Any]) -> str:
    """The result as a few plain-text tables; one row per copywriter ("base", "fine-tuned")."""
    variants = result.get("variants") or {"base": {k: result[k] for k in ("engine", "generation", "grounding", "similarity", "retrieval")}}
    base = variants.get("base") or next(iter(variants.values()))
    r, t = base["retrieval"], result["timing"]
    held = result.get("heldout") or {}
    lines = [
        f"copy eval: {result['catalog']}, {result['items']} items (seed {result['seed']}), prompt {result['config']['prompt']}",
    ]
    for label, v in variants.items():
        lines.append(f"  {label}: {v['engine']['name']} / {v['engine']['model']}" + (f" (adapter fingerprint {v['adapter'].get('fingerprint')})" if v.get("adapter") else ""))
    if held.get("excluded_titles_of"):
        lines.append(f"  left out {held['excluded_items']} items whose title is also in {held['excluded_titles_of']}")
    lines += ["", "generation      ok   regen-ok  dropped  errors  kept   items/s"]
    for label, v in variants.items():
        g = v["generation"]
        lines.append(f"  {label:<12}  {g['ok']:<4} {g['regenerated_ok']:<9} {g['dropped']:<8} {g['errors']:<7} {_f(g['kept_share'], 2):<6} {_f(g['items_per_s'])}")
    lines += ["", "grounding (share of drafts with an unsupported claim)"]
    for label, v in variants.items():
        gr = v["grounding"]
        lines += [
            f"  {label}: first draft {_f(gr['unsupported_share_before'])} (of {gr['drafts_parsed_first_try']} parsed; {_f(gr['format_error_share_first_try'])} unparseable); "
            f"after one regeneration {_f(gr['unsupported_share_after'])}; kept copy with a specific word (rare in the catalog, not in "
            f"the item's fields; the checker cannot judge those) {_f(gr.get('kept_with_specific_words_share'))}",
            "    first-draft problem kinds: " + ", ".join(f"{k} {v}" for k, v in list(gr["problem_kinds_first_try"].items())[:8]),
        ]
    lines += ["", "similarity to the human description (kept copy)   n     description  point + desc.  title only   title + copy"]
    for label, v in variants.items():
        s = v["similarity"]
        for metric, key in (("MiniLM cosine", "cosine"), ("ROUGE-L F1", "rougeL_f")):
            lines.append(f"  {label:<12} {metric:<33}{s['n']:<6}{_f(s['embedding_cosine_mean' if key == 'cosine' else 'rougeL_f_mean']):<13}"
                         f"{_f(s.get(f'copy_{key}_mean')):<15}{_f(s[f'title_only_{key}_mean']):<13}{_f(s.get(f'title_plus_copy_{key}_mean'))}")
    lines += [
        "",
        f"retrieval of the item by a query from its hidden description ({r['index_size']} items indexed)",
        "                                  Recall@1  Recall@10  MRR     median rank",
    ]
    rows = [("cold (title only)", r["cold"])]
    for label, v in variants.items():
        vr = v["retrieval"]
        rows += [(f"{label}: with generated copy", vr["generated"]), (f"{label}: kept only: cold", vr["kept_only"]["cold"]),
                 (f"{label}: kept only: generated", vr["kept_only"]["generated"])]
    for label, m in rows:
        lines.append(f"  {label:<32}{_f(m.get('recall@1')):<10}{_f(m.get('recall@10')):<11}{_f(m.get('mrr')):<8}{_f(m.get('median_rank'), 1)}")
    lines += ["", "timing (s): " + ", ".join(f"{k} {v}" for k, v in t.items())]
    return "\n".join(lines)


def copy_command(
    ctx: typer.Context,
    catalog: Annotated[str, typer.Option("--catalog", "-c", help="Catalog with human descriptions.")] = DEFAULT_CATALOG,
    items: Annotated[int, typer.Option("--items", "-n", min=1, help="Items whose description is hidden and regenerated (seeded sample).")] = DEFAULT_ITEMS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the item sample.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per engine.batch call (items x --drafts).")] = DEFAULT_BATCH_SIZE,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=16, help="Token budget per answer (default: the copywriter's).")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt template, e.g. describe.v1.")] = None,
    pool: Annotated[Optional[int], typer.Option("--pool", min=0, help="Index only the eval items + this many others (quick runs); default: whole catalog.")] = None,
    work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Keep the eval's index here (re-runs re-embed only the eval items); default: a temporary folder.")] = None,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="Copywriter LoRA adapter to compare with the base model (row 'fine-tuned'); default: <home>/adapters/copywriter-<catalog> when it fits.")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Only the base model (no 'fine-tuned' row).")] = False,
    exclude_titles_of: Annotated[Optional[str], typer.Option("--exclude-titles-of", help="Leave out items whose title also appears in this catalog (default: the adapter's training catalog when it is another one).")] = None,
    no_ban: Annotated[bool, typer.Option("--no-ban", help="Decode without banning the words the checker would flag (ablation of the copywriter's default).")] = False,
    drafts: Annotated[int, typer.Option("--drafts", min=1, max=16, help="Drafts sampled per item; the passing one closest to the item's fields is kept (1: the first that passes).")] = DEFAULT_DRAFTS,
    corroborate: Annotated[bool, typer.Option("--corroborate/--no-corroborate", help="Remove sentences that neither the item's fields nor similar items' descriptions support (agent.copy.corroborate).")] = DEFAULT_CORROBORATE,
) -> None:
    """Hide human descriptions, generate copy, and measure grounding, similarity and retrieval;
    base model and fine-tuned copywriter (when an adapter is given or found) on the same items."""
    from agent.engines.base import EngineError
    from agent.entrypoints.cli_app import fail, settings_of
    from agent.prompts import PromptError
    from agent.train.copywriter import resolve_copy_adapter
    from evals.report import save_json
    from retrieval.catalog import CatalogError

    settings = settings_of(ctx)
    if adapter is not None and no_adapter:
        fail("--adapter and --no-adapter exclude each other")
    try:
        chosen = resolve_copy_adapter(settings, catalog, adapter, use_adapter=not no_adapter)
        result = run_copy_eval(settings, catalog_name=catalog, n_items=items, seed=seed, batch_size=batch_size,
                               max_tokens=max_tokens, prompt=prompt, pool=pool, work_dir=work_dir, adapter=chosen,
                               exclude_titles_of=exclude_titles_of, ban_unsupported=not no_ban, drafts=drafts, corroborate=corroborate)
    except (CatalogError, EngineError, PromptError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(format_report(result))
    if out:
        typer.echo(f"wrote {save_json(result, out)}")
