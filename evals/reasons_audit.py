"""`aisle eval reasons-audit`: a blind hand read of LLM-written reasons, against the gate's verdicts.

The planted-claims eval measures the gate on claims someone wrote to be false. This measures it on
what a model actually writes: every answer the LLM gave in `aisle eval claims --llm N` or `aisle eval
reasons --llm-queries N` (first try and retry), cleaned as the gate sees it, read by a person who sees the item's record, the shopper's
history and request, and the text, but not which model wrote it nor what the gate said.

1. `aisle eval reasons-audit sample RUN [RUN ...] --out audit.jsonl -n 60` takes up to N answers per
   run (each RUN is an `aisle eval claims --llm` or `aisle eval reasons --llm-queries` output folder,
   or its llm_reasons.json), shuffled.
2. The reader sets each line's "verdict" to "ok" (every claim is supported by the record or the
   history shown) or "invented" (any claim that is not: a feature, a number, a purchase, a use).
   The gate's verdict on each answer is today's gate's (the run's code may have been older).
3. `aisle eval reasons-audit score audit.jsonl` un-blinds and reports per model: the invented
   share, and the gate against the reader: invented answers it accepted (shown to a shopper: must
   be 0) and supported answers it rejected (its cost).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from evals.copy_audit import _share, unblind, write_audit

DEFAULT_ANSWERS = 60

reasons_audit_app = typer.Typer(help="Blind hand read of LLM-written reasons against the gate's verdicts.", no_args_is_help=True)


def answers(sample: dict[str, Any], gate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Every LLM answer of an `llm_reasons.json`, with the gate's verdict on it.

    A row's answers are its first try and its retry. Without `gate`, the verdict is the run's: the
    gate accepted the last one when the row's source is not "template", and rejected every other.
    With `gate` (answer -> accepted), the answers are judged again by today's gate."""
    from agent.recommend.reasons import clean_reason

    out = []
    for row in sample["rows"]:
        raws = row.get("raw") or []
        for n, raw in enumerate(raws):
            accepted = row["source"] != "template" and n == len(raws) - 1
            out.append({"catalog": row["catalog"], "item": row["item"], "history": row.get("history") or [], "query": row.get("query"),
                        "text": clean_reason(raw), "attempt": n, "accepted": accepted})
    out = [a for a in out if a["text"]]
    if gate is not None:
        for a in out:
            a["accepted"] = gate(a)
    return out


def make_sample(samples: list[dict[str, Any]], records: dict[tuple[str, str], list[str]], *, per_run: int, seed: int = 0,
                gate: Callable[[dict[str, Any]], bool] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(lines to read, key): up to `per_run` answers of each run, shuffled together."""
    rng = random.Random(f"{seed}:reasons-audit")
    lines, key = [], {}
    for n, sample in enumerate(samples, start=1):
        model = sample.get("model") or f"run{n}"
        pool = answers(sample, gate)
        for a in rng.sample(pool, min(per_run, len(pool))):
            k = hashlib.sha1(f"{seed}:{n}:{model}:{a['catalog']}:{a['item']}:{a['attempt']}:{a['text']}".encode()).hexdigest()[:10]
            key[k] = {"model": model, "accepted": a["accepted"], "attempt": a["attempt"], "item": a["item"], "catalog": a["catalog"]}
            lines.append({"key": k, "record": records.get((a["catalog"], a["item"]), []), "history": a["history"], "request": a["query"],
                          "text": a["text"], "verdict": None, "note": ""})
    rng.shuffle(lines)
    return lines, {"seed": seed, "keys": key}


def score(lines: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any]:
    """Per model: invented share, and the gate's verdicts against the reader's."""
    keys = key["keys"]
    by: dict[str, list[tuple[bool, bool]]] = {}
    for line in lines:
        meta = keys.get(line["key"])
        if meta is None:
            raise ValueError(f"line with key {line['key']!r} is not in the key file: was the audit file edited by hand?")
        by.setdefault(meta["model"], []).append((line["verdict"] == "invented", bool(meta["accepted"])))
    out: dict[str, Any] = {"models": {}}
    for model, pairs in sorted(by.items()):
        row = _share(sum(inv for inv, _ in pairs), len(pairs))
        row["gate"] = {
            "accepted": sum(acc for _, acc in pairs),
            "accepted_invented": sum(inv and acc for inv, acc in pairs),
            "rejected_ok": sum((not inv) and (not acc) for inv, acc in pairs),
            "rejected_invented": sum(inv and not acc for inv, acc in pairs),
        }
        out["models"][model] = row
    return out


def format_audit(result: dict[str, Any]) -> str:
    lines = ["hand read of LLM reasons", "  model                              answers  invented  share ± s.e.   gate: accepted  accepted+invented  rejected+ok"]
    for model, r in result["models"].items():
        g = r["gate"]
        lines.append(f"  {model:<34} {r['n']:<8} {r['invented']:<9} {r['share']:.3f} ± {r['stderr']:.3f}  {g['accepted']:<15} {g['accepted_invented']:<18} {g['rejected_ok']}")
    return "\n".join(lines)


def _catalogs(settings: Any, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """name -> items of every catalog the runs drew pairs from."""
    from evals.claims_eval import SHOPS
    from retrieval.registry import load_catalog

    names = {row["catalog"] for sample in samples for row in sample["rows"]}
    return {name: SHOPS[name] if name in SHOPS else load_catalog(settings, name).items for name in names}


def _records(catalogs: dict[str, Any], samples: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """What the reader checks a reason against: each item's record, as the reason writer saw it
    (title, brand, categories, attributes, description), and its price."""
    from agent.copy.writer import copy_evidence

    out: dict[tuple[str, str], list[str]] = {}
    for sample in samples:
        for row in sample["rows"]:
            item = catalogs[row["catalog"]].get(row["item"])
            if item is not None:
                fields = copy_evidence(item)
                if item.description:
                    fields.append(f"description: {item.description[:600]}")
                if item.price is not None:
                    fields.append(f"price: {item.price:.2f}")
                out[(row["catalog"], row["item"])] = fields
    return out


def _gate(catalogs: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Today's reason gate (agent.recommend.reasons.ReasonWriter.check), as the writer runs it."""
    from agent.recommend.reasons import ReasonContext, ReasonWriter

    writers = {name: ReasonWriter(None, catalog_brands={it.brand for it in items.values() if it.brand}) for name, items in catalogs.items()}

    def accepted(a: dict[str, Any]) -> bool:
        item = catalogs[a["catalog"]][a["item"]]
        ctx = ReasonContext(query=a["query"] or None, history_titles=list(a["history"]))
        return writers[a["catalog"]].check(a["text"], item, ctx).ok

    return accepted


@reasons_audit_app.command("sample")
def sample_command(
    ctx: typer.Context,
    run: Annotated[list[Path], typer.Argument(help="`aisle eval claims --llm N` or `aisle eval reasons --llm-queries N` output folders (or their llm_reasons.json).", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Audit file to write (JSONL; its key goes beside it as <out>.key.json).")],
    per_run: Annotated[int, typer.Option("--answers", "-n", min=1, help="Answers to read per run.")] = DEFAULT_ANSWERS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and of the shuffle.")] = 0,
) -> None:
    """Write a blind sample of LLM reasons to read: set each line's "verdict" to ok or invented."""
    from agent.entrypoints.cli_app import fail, settings_of

    if out.exists():
        fail(f"{out} exists: it may hold verdicts already; choose another --out or move it away")
    paths = [p / "llm_reasons.json" if p.is_dir() else p for p in run]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        fail(f"no llm_reasons.json at {', '.join(missing)}: run `aisle eval claims --llm N --out DIR` first")
    samples = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    catalogs = _catalogs(settings_of(ctx), samples)
    lines, key = make_sample(samples, _records(catalogs, samples), per_run=per_run, seed=seed, gate=_gate(catalogs))
    write_audit(out, lines, key, paths, "answers")


@reasons_audit_app.command("score")
def score_command(
    audit: Annotated[Path, typer.Argument(help="The audit file, every line with a verdict.", exists=True, dir_okay=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
) -> None:
    """Un-blind a read audit: invented share per model, and the gate's verdicts against the reader's."""
    unblind(audit, out, score, format_audit, "reasons-audit")
