"""`aisle eval compare A.json B.json`: what changed between two eval runs, per metric.

Prints B - A (absolute) and (B - A) / A (relative) for every system and metric both runs have,
plus the operational figures (LLM validity, grounding, out-of-catalog, latency). A difference
smaller than the combined standard error is marked "~" (noise at this sample size). It also
warns when the runs are not comparable (different user/turn sample, catalog, seed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from evals import report as rep

OPERATIONAL = (
    ("llm_valid_rate", "LLM output valid"),
    ("grounded_rate", "reasons grounded"),
    ("out_of_catalog", "out-of-catalog ids"),
    ("errors", "errors"),
    ("empty_answers", "empty answers"),
)


def systems_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All systems of a run, keyed by a stable name ('redial/pipeline:none' for conversation runs)."""
    if result.get("kind") == "ranking":
        return dict(result.get("systems", {}))
    out: dict[str, dict[str, Any]] = {}
    if "redial" in result:
        out.update({f"redial/{n}": s for n, s in result["redial"]["systems"].items()})
    if "mg_shopdial" in result:
        out["mg-shopdial/smoke"] = result["mg_shopdial"]["system"]
    return out


def sample_keys(result: dict[str, Any]) -> dict[str, Any]:
    """What must match for two runs to be compared metric by metric."""
    cfg = result.get("config", {})
    keys = {"kind": result.get("kind"), "seed": cfg.get("seed"), "catalog": cfg.get("catalog"), "sample": cfg.get("sampled_users_sha256")}
    if "redial" in result:
        keys["sample"] = result["redial"].get("sampled_turns_sha256")
    if "mg_shopdial" in result:
        keys["dialogues"] = result["mg_shopdial"].get("dialogue_ids_sha256")
    return keys


def _delta(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    if a is None or b is None:
        return None, None
    diff = b - a
    return diff, (diff / a if a else None)


def metric_rows(a: dict[str, Any], b: dict[str, Any]) -> Iterator[list[str]]:
    sa, sb = systems_of(a), systems_of(b)
    for name in [n for n in sa if n in sb]:
        ma, mb = sa[name].get("metrics", {}), sb[name].get("metrics", {})
        for metric in [m for m in ma if m in mb]:
            va, vb = ma[metric]["mean"], mb[metric]["mean"]
            diff, rel = _delta(va, vb)
            noise = math.hypot(ma[metric].get("se", 0.0), mb[metric].get("se", 0.0))
            flag = "~" if diff is not None and abs(diff) <= noise else ""
            yield [sb[name].get("label", name), metric, f"{va:.4f}", f"{vb:.4f}", f"{diff:+.4f}{flag}", "–" if rel is None else f"{100 * rel:+.1f} %"]
        for key, label in OPERATIONAL:
            va, vb = sa[name].get(key), sb[name].get(key)
            if va is None and vb is None:
                continue
            diff, rel = _delta(va, vb)
            yield [sb[name].get("label", name), label, rep.fmt(va), rep.fmt(vb), "–" if diff is None else f"{diff:+.4g}", "–" if rel is None else f"{100 * rel:+.1f} %"]
        for q in ("p50_ms", "p95_ms"):
            va, vb = sa[name].get("latency", {}).get(q), sb[name].get("latency", {}).get(q)
            if va is None or vb is None:
                continue
            diff, rel = _delta(va, vb)
            yield [sb[name].get("label", name), f"latency {q[:3]}", rep.ms(va), rep.ms(vb), f"{diff:+.0f} ms", "–" if rel is None else f"{100 * rel:+.1f} %"]


def compare_text(a: dict[str, Any], b: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    lines = []
    ka, kb = sample_keys(a), sample_keys(b)
    mismatched = [k for k in ka if ka[k] != kb.get(k)]
    if mismatched:
        lines.append("WARNING: the runs differ in " + ", ".join(f"{k} ({ka[k]} vs {kb.get(k)})" for k in mismatched) + "; differences mix model changes with sample changes.")
    only_a = sorted(set(systems_of(a)) - set(systems_of(b)))
    only_b = sorted(set(systems_of(b)) - set(systems_of(a)))
    if only_a:
        lines.append(f"only in {name_a}: {', '.join(only_a)}")
    if only_b:
        lines.append(f"only in {name_b}: {', '.join(only_b)}")
    ga, gb = a.get("config", {}).get("git", {}), b.get("config", {}).get("git", {})
    lines.append(f"{name_a}: commit {ga.get('commit')} dirty={ga.get('dirty')} prompts={a.get('config', {}).get('prompts')}")
    lines.append(f"{name_b}: commit {gb.get('commit')} dirty={gb.get('dirty')} prompts={b.get('config', {}).get('prompts')}")
    rows = list(metric_rows(a, b))
    if not rows:
        lines.append("no system and metric in common")
    else:
        lines.append("")
        lines.append(rep.md_table(["system", "metric", name_a, name_b, f"{name_b} - {name_a}", "relative"], rows))
        lines.append("")
        lines.append("~ = the difference is within one combined standard error (not distinguishable from sampling noise)")
    return "\n".join(lines)


def compare_command(
    a: Annotated[Path, typer.Argument(help="Baseline run: results.json or its folder.", exists=True)],
    b: Annotated[Path, typer.Argument(help="New run: results.json or its folder.", exists=True)],
) -> None:
    """Per-metric differences between two eval runs (absolute and relative)."""
    ra, rb = rep.load_result(a), rep.load_result(b)
    if ra.get("kind") != rb.get("kind"):
        raise typer.BadParameter(f"cannot compare a {ra.get('kind')!r} run with a {rb.get('kind')!r} run")
    typer.echo(compare_text(ra, rb, "A", "B"))
