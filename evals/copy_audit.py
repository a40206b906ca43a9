"""`aisle eval copy-audit`: a blind hand read of kept copy, for what no checker can judge.

The claim checker passes every kept copy by construction, so "unsupported claims in kept copy"
needs a reader: does the copy say anything about the item that its fields (title, brand,
categories, attributes: all the copywriter saw) do not support? "made of mahogany" on a notebook,
"a magnetic roller" on a calendar, "paid for by <brand>" are invented; "great for the office" is
not (it asserts nothing a shopper could find false).

1. `aisle eval copy-audit sample RUN.json --items 40 --out audit.jsonl` takes N items of an
   `aisle eval copy` run that every copywriter kept copy for and writes one line per (item,
   copywriter), shuffled, with the item's fields and the copy, and no word of which copywriter
   wrote it (that goes to `audit.jsonl.key.json`).
2. The reader sets each line's "verdict" to "ok" or "invented" (and may add a "note").
3. `aisle eval copy-audit score audit.jsonl` un-blinds and reports, per copywriter, the share of
   copy with an invented detail (± binomial s.e.), and how well the automatic signal of
   `agent.copy.terms` (specific words) matches the reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Annotated, Any

import typer

VERDICTS = ("ok", "invented")
DEFAULT_ITEMS = 40

audit_app = typer.Typer(help="Blind hand read of kept copy (invented details the checker cannot see).", no_args_is_help=True)


def run_rows(run: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """copywriter label -> item id -> per-item row of an `aisle eval copy` result."""
    variants = run.get("variants") or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label, v in variants.items():
        rows = v.get("per_item") or (run.get("per_item") if label == "base" else None) or []
        out[label] = {r["id"]: r for r in rows}
    if not out:
        out["base"] = {r["id"]: r for r in run.get("per_item") or []}
    return out


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several `aisle eval copy` runs on the same catalog as one run whose copywriters are named
    "<model>:<variant>" (e.g. two engines' runs read in one blind sample)."""
    if len(runs) == 1:
        return runs[0]
    catalogs = {r.get("catalog") for r in runs}
    if len(catalogs) != 1:
        raise ValueError(f"the runs are on different catalogs ({', '.join(map(str, catalogs))}); read one catalog at a time")
    variants: dict[str, Any] = {}
    for n, run in enumerate(runs, start=1):
        engine = run.get("engine") or {}
        model = engine.get("model") or engine.get("model_id") or f"run{n}" if isinstance(engine, dict) else f"run{n}"
        for label, rows in run_rows(run).items():
            name = f"{model}:{label}"
            if name in variants:
                name = f"run{n}:{name}"
            variants[name] = {"per_item": list(rows.values())}
    return {"catalog": catalogs.pop(), "variants": variants}


def _kept(row: dict[str, Any] | None) -> bool:
    return bool(row) and row.get("status") in ("ok", "regenerated") and bool(row.get("description"))


def make_sample(run: dict[str, Any], fields: dict[str, list[str]], *, n_items: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(lines to read, key): `n_items` items every copywriter kept copy for, one line per copy."""
    rows = run_rows(run)
    labels = sorted(rows)
    common = sorted(i for i in set.intersection(*(set(r) for r in rows.values())) if all(_kept(rows[label].get(i)) for label in labels))
    if not common:
        raise ValueError("no item has kept copy from every copywriter of this run")
    rng = random.Random(f"{seed}:copy-audit")
    items = rng.sample(common, min(n_items, len(common)))
    lines, key = [], {}
    for item_id in items:
        for label in labels:
            row = rows[label][item_id]
            k = hashlib.sha1(f"{seed}:{label}:{item_id}".encode()).hexdigest()[:10]
            key[k] = {"copywriter": label, "item": item_id, "specific_words": row.get("specific_words")}
            lines.append({"key": k, "item": item_id, "fields": fields.get(item_id, [row.get("title", "")]),
                          "selling_point": row.get("selling_point"), "description": row.get("description"), "verdict": None, "note": ""})
    rng.shuffle(lines)
    return lines, {"catalog": run.get("catalog"), "seed": seed, "items": len(items), "keys": key}


def read_verdicts(path: Path) -> list[dict[str, Any]]:
    """The audit lines; raises ValueError naming every line without a valid verdict."""
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    bad = [n for n, line in enumerate(lines, start=1) if line.get("verdict") not in VERDICTS]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise ValueError(f"{len(bad)} of {len(lines)} lines of {path} have no verdict (lines {shown}): set \"verdict\" to one of {', '.join(VERDICTS)}")
    return lines


def _share(k: int, n: int) -> dict[str, Any]:
    p = k / n if n else None
    return {"n": n, "invented": k, "share": round(p, 4) if p is not None else None,
            "stderr": round(math.sqrt(p * (1 - p) / n), 4) if p is not None and n else None}


def score(lines: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any]:
    """Per copywriter: invented share; and the specific-words signal against the reader."""
    keys = key["keys"]
    by: dict[str, list[tuple[bool, bool | None]]] = {}
    for line in lines:
        meta = keys.get(line["key"])
        if meta is None:
            raise ValueError(f"line with key {line['key']!r} is not in the key file: was the audit file edited by hand?")
        words = meta.get("specific_words")
        by.setdefault(meta["copywriter"], []).append((line["verdict"] == "invented", bool(words) if words is not None else None))
    out: dict[str, Any] = {"catalog": key.get("catalog"), "items": key.get("items"), "copywriters": {}}
    for label, pairs in sorted(by.items()):
        row = _share(sum(inv for inv, _ in pairs), len(pairs))
        signal = [(inv, flag) for inv, flag in pairs if flag is not None]
        if signal:
            tp = sum(inv and flag for inv, flag in signal)
            row["specific_words_signal"] = {
                "flagged": sum(flag for _, flag in signal),
                "precision": round(tp / max(1, sum(flag for _, flag in signal)), 3),
                "recall": round(tp / max(1, sum(inv for inv, _ in signal)), 3),
            }
        out["copywriters"][label] = row
    return out


def write_audit(out: Path, lines: list[dict[str, Any]], key: dict[str, Any], runs: list[Path], what: str) -> None:
    """The audit file (JSONL, one line to read each) and its key beside it (`<out>.key.json`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    Path(f"{out}.key.json").write_text(json.dumps({**key, "runs": [str(r) for r in runs]}, indent=1), encoding="utf-8")
    typer.echo(f"wrote {len(lines)} {what} to {out} (key: {out}.key.json); set each \"verdict\" to ok or invented")


def unblind(audit: Path, out: Path | None, score_fn: Any, format_fn: Any, tool: str) -> None:
    """Score a read audit file against its key, print the table and save the result (`score` commands)."""
    from agent.entrypoints.cli_app import fail
    from evals.report import save_json

    key_path = Path(f"{audit}.key.json")
    if not key_path.is_file():
        fail(f"no key file {key_path}: it is written by `aisle eval {tool} sample` beside the audit file")
    try:
        result = score_fn(read_verdicts(audit), json.loads(key_path.read_text(encoding="utf-8")))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(format_fn(result))
    if out:
        typer.echo(f"wrote {save_json(result, out)}")


def format_audit(result: dict[str, Any]) -> str:
    lines = [f"hand read of kept copy: {result['catalog']}, {result['items']} items", "  copywriter     copies  invented  share ± s.e.    specific words: flagged  precision  recall"]
    for label, r in result["copywriters"].items():
        s = r.get("specific_words_signal") or {}
        lines.append(f"  {label:<14} {r['n']:<7} {r['invented']:<9} {r['share']:.3f} ± {r['stderr']:.3f}   "
                     f"{s.get('flagged', '-')!s:<24}{s.get('precision', '-')!s:<11}{s.get('recall', '-')}")
    return "\n".join(lines)


@audit_app.command("sample")
def sample_command(
    ctx: typer.Context,
    run: Annotated[list[Path], typer.Argument(help="`aisle eval copy --out` result JSONs (several: one blind sample of all their copywriters).", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Audit file to write (JSONL; its key goes beside it as <out>.key.json).")],
    items: Annotated[int, typer.Option("--items", "-n", min=1, help="Items to read (each with every copywriter's copy).")] = DEFAULT_ITEMS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and of the shuffle.")] = 0,
) -> None:
    """Write a blind sample of kept copy to read: set each line's "verdict" to ok or invented."""
    from agent.copy.writer import copy_evidence
    from agent.entrypoints.cli_app import fail, settings_of
    from retrieval.catalog import CatalogError
    from retrieval.registry import load_catalog

    if out.exists():
        fail(f"{out} exists: it may hold verdicts already; choose another --out or move it away")
    try:
        result = merge_runs([json.loads(r.read_text(encoding="utf-8")) for r in run])
        catalog = load_catalog(settings_of(ctx), result["catalog"])
        ids = {i for rows in run_rows(result).values() for i in rows}
        fields = {i: copy_evidence(catalog.items[i]) for i in ids if i in catalog.items}
        lines, key = make_sample(result, fields, n_items=items, seed=seed)
    except (CatalogError, KeyError, ValueError) as exc:
        fail(f"{', '.join(map(str, run))}: {exc}")
    write_audit(out, lines, key, run, f"copies of {key['items']} items")


@audit_app.command("score")
def score_command(
    audit: Annotated[Path, typer.Argument(help="The audit file, every line with a verdict.", exists=True, dir_okay=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
) -> None:
    """Un-blind a read audit: invented share per copywriter, and the specific-words signal's match."""
    unblind(audit, out, score, format_audit, "copy-audit")
