"""Eval outputs people can read: `results.json` (every figure + the exact configuration),
`report.md` (tables) and PNG plots beside it.

Why JSON *and* Markdown: the JSON is what `aisle eval compare` and CI read; the Markdown is what
a reviewer reads in a PR. Both come from the same dict, so they never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.settings import REPO_ROOT

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


# --- configuration record ------------------------------------------------------------------------


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """HEAD commit and whether the working tree had changes (an eval of uncommitted code says so)."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def ids_hash(ids: Iterable[str]) -> str:
    """sha256 of the sorted ids: two runs on the same sample have the same hash."""
    blob = "\n".join(sorted(str(i) for i in ids)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def environment() -> dict[str, Any]:
    """Where the run happened: timings only compare on the same kind of machine and load."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in load] if load else None,
        "argv": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(result: Mapping[str, Any], out_dir: Path) -> Path:
    return save_json(result, out_dir / RESULTS_FILE)


def save_json(result: Mapping[str, Any], path: Path) -> Path:
    """Write a result to `path` (folders made; a temporary file renamed, so no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def load_result(path: Path) -> dict[str, Any]:
    """A results.json, or the results.json inside a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8"))


# --- formatting ----------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def unchanged_order_line(systems: Mapping[str, Mapping[str, Any]], what: str, tail: str = "") -> list[str]:
    """The report line for `unchanged_order_rate` (see evals.metrics); none when no system has it."""
    unchanged = [(s["label"], s["unchanged_order_rate"]) for s in systems.values() if s.get("unchanged_order_rate") is not None]
    if not unchanged:
        return []
    return [f"Order left unchanged by the LLM ({what}): " + ", ".join(f"{label}: {pct(v)}" for label, v in unchanged) + "." + tail, ""]


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def metric_cell(entry: Mapping[str, Any] | None) -> str:
    """'0.1234 ± 0.0050' (mean ± standard error over queries)."""
    if not entry:
        return "–"
    return f"{entry['mean']:.4f} ± {entry['se']:.4f}"


# --- plots ---------------------------------------------------------------------------------------

# Baselines grey, candidate generator blue, LLM re-rankers orange/red: the eye finds the pipeline.
COLOURS = {"baseline": "#9e9e9e", "reference": "#1f77b4", "llm": "#e6550d"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers/CI
    import matplotlib.pyplot as plt

    return plt


def plot_metric_bars(
    systems: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: Path,
    *,
    title: str,
    ceiling: float | None = None,
    ceiling_label: str = "",
) -> Path:
    """Horizontal bars of one metric per system, with ± 1 standard error, coloured by role."""
    plt = _pyplot()
    names = [n for n, s in systems.items() if metric in s.get("metrics", {})]
    means = [systems[n]["metrics"][metric]["mean"] for n in names]
    errs = [systems[n]["metrics"][metric]["se"] for n in names]
    colours = [COLOURS.get(systems[n].get("role", "baseline"), "#9e9e9e") for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 2.0), dpi=120)
    y = list(range(len(names)))[::-1]
    ax.barh(y, means, xerr=errs, color=colours, capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
    for yi, m, e in zip(y, means, errs):
        ax.text(m + e + max(max(means, default=0), 0.001) * 0.02, yi, f"{m:.3f}", va="center", fontsize=9)
    ax.set_yticks(y)
    ax.set_yticklabels([systems[n].get("label", n) for n in names], fontsize=9)
    ax.set_xlabel(f"{metric.upper()} (mean ± 1 s.e.)")
    ax.set_title(title, fontsize=11)
    if ceiling is not None:
        ax.axvline(ceiling, color="#555555", linestyle="--", linewidth=1)
        ax.text(ceiling, max(y) + 0.45, f" {ceiling_label}", fontsize=8, color="#555555", va="bottom")
    right = max([m + e for m, e in zip(means, errs)] + [ceiling or 0.0, 0.001])
    ax.set_xlim(0, right * 1.18)
    from matplotlib.patches import Patch

    used = {systems[n].get("role", "baseline") for n in names}
    legend = {"baseline": "baseline (full catalog)", "reference": "candidate generator", "llm": "LLM re-rank"}
    ax.legend(
        handles=[Patch(color=COLOURS[r], label=legend[r]) for r in ("baseline", "reference", "llm") if r in used],
        loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_latency(latencies: Mapping[str, Sequence[float]], labels: Mapping[str, str], path: Path, *, title: str) -> Path:
    """Box plot of per-request latency per system on a log axis (LLM calls are 100-1000x slower
    than index look-ups; a linear axis would flatten the baselines to a line)."""
    plt = _pyplot()
    names = [n for n, v in latencies.items() if len(v)]
    data = [[max(x, 0.01) for x in latencies[n]] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.6), dpi=120)
    ax.boxplot(data, orientation="horizontal", tick_labels=[labels.get(n, n) for n in names], showfliers=True, whis=(5, 95), flierprops={"markersize": 2, "alpha": 0.4})
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per request (log scale)")
    ax.set_title(f"{title}\nbox p25–p75, line p50, whiskers p5–p95, dots beyond", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_figures(plots: Mapping[str, Any], out: Path, notes: list[str], *, enabled: Mapping[str, bool] | None = None) -> dict[str, str]:
    """Draw each `name -> fn(path)` plot as out/<name>.png; a failing plot becomes a note, not a crash."""
    figures: dict[str, str] = {}
    for name, draw in plots.items():
        if enabled is not None and not enabled.get(name, True):
            continue
        path = out / f"{name}.png"
        try:
            draw(path)
        except Exception as exc:  # matplotlib API drift must not lose an hour of measurements
            notes.append(f"plot {name} failed: {type(exc).__name__}: {exc}")
            continue
        figures[name] = path.name
    return figures


# --- shared table --------------------------------------------------------------------------------


def quality_rows(systems: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Operational figures per system: validity, grounding, out-of-catalog, errors, latency."""
    rows = []
    for name, s in systems.items():
        lat = s.get("latency", {})
        rows.append(
            [
                s.get("label", name),
                f"{s.get('answered', 0)}/{s.get('queries', 0)}",
                pct(s.get("llm_valid_rate")) if s.get("llm_asked") else "n/a",
                reasons_cell(s),
                str(s.get("out_of_catalog", 0)),
                str(s.get("empty_answers", 0)),
                str(s.get("errors", 0)),
                ms(lat.get("p50_ms")),
                ms(lat.get("p95_ms")),
            ]
        )
    return rows


def reasons_cell(s: Mapping[str, Any]) -> str:
    """'100.0 % of 15 (llm 4, llm-retry 2, template 9)': a template reason is grounded by
    construction, so the share the LLM itself got right is what shows prompt quality."""
    if not s.get("reasons"):
        return "n/a"
    sources = ", ".join(f"{k} {v}" for k, v in s.get("reason_sources", {}).items())
    return f"{pct(s.get('grounded_rate'))} of {s['reasons']} ({sources})"


QUALITY_HEADER = ["system", "answered", "LLM output valid", "reasons grounded", "out-of-catalog ids", "empty answers", "errors", "latency p50", "latency p95"]


def config_rows(config: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, value in config.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        rows.append([key, f"`{value}`" if value not in (None, "") else "–"])
    return rows
