"""`aisle eval copy-audit verifiers`: can anything automatic find the invented details a reader found?

A read copy audit (`aisle eval copy-audit sample` + verdicts) is ground truth per copy. Each
verifier gives every copy a suspicion score; the table reports how well the scores separate the
copies the reader marked "invented" from the "ok" ones (ROC AUC: 0.5 is chance, 1.0 perfect) and,
at the verifier's own cut, what it flags (precision, recall) and how much good copy it costs.

- `corroboration` (no model): the share of sentences `agent.copy.corroborate` rejects; its cut is
  what the writer does with `--corroborate` (the copy fails when its selling point or every
  description sentence is rejected).
- `llm-judge` (`--llm`): the configured model asked per sentence whether the data supports it
  (`prompts/copy_judge.v1.j2`, one forward pass, P("no")); the copy's score is its worst sentence.
- `agreement` (`--llm`, SelfCheckGPT-style): `--samples` more drafts of the same prompt; a word of a
  sentence that is not in the item's fields and that most other drafts do not use is suspect;
  the copy's score is 1 - the lowest support of any sentence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

JUDGE_PROMPT = "copy_judge.v1"
DEFAULT_SAMPLES = 4
SAMPLE_TEMPERATURE = 0.7


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """P(an invented copy scores above an ok one), ties half; None when the read has only one verdict."""
    from sklearn.metrics import roc_auc_score

    if len(set(positive)) < 2:
        return None
    return float(roc_auc_score(list(positive), list(scores)))


def flag_stats(flags: Sequence[bool], positive: Sequence[bool]) -> dict[str, Any]:
    tp = sum(f and p for f, p in zip(flags, positive))
    flagged = sum(flags)
    return {"flagged": flagged, "precision": round(tp / flagged, 3) if flagged else None,
            "recall": round(tp / max(1, sum(positive)), 3), "ok_flagged": sum(f and not p for f, p in zip(flags, positive))}


def sentences_of(line: dict[str, Any]) -> list[str]:
    from agent.copy.writer import _sentences

    return [line["selling_point"], *_sentences(line["description"] or "")]


def corroboration_scores(lines: Sequence[dict[str, Any]], catalog: Any, corroboration: Any) -> tuple[list[float], list[bool]]:
    from agent.copy.writer import copy_evidence

    scores, flags = [], []
    for line in lines:
        item = catalog.items[line["item"]]
        point, *body = corroboration.judge(sentences_of(line), copy_evidence(item), item)
        verdicts = [point, *body]
        scores.append(sum(not v.ok for v in verdicts) / len(verdicts))
        flags.append(not point.ok or not any(v.ok for v in body))
    return scores, flags


def judge_scores(lines: Sequence[dict[str, Any]], catalog: Any, engine: Any) -> list[float]:
    from agent.prompts import render_messages

    out = []
    for line in lines:
        item = catalog.items[line["item"]]
        convs = [render_messages(JUDGE_PROMPT, title=item.title, brand=item.brand or "", sentence=s) for s in sentences_of(line)]
        out.append(max(d["no"] for d in engine.score_choices_batch(convs, ["yes", "no"])))
    return out


def agreement_scores(lines: Sequence[dict[str, Any]], catalog: Any, writer: Any, samples: int) -> list[float]:
    """1 - the lowest support of a sentence: support is, over the sentence's words that are not in
    the item's fields, the least share of the other drafts using the word."""
    from agent.copy.writer import CopyFormatError, copy_evidence, parse_copy
    from agent.text import content_stems

    out = []
    for line in lines:
        item = catalog.items[line["item"]]
        raws = writer.engine.batch([writer.messages(item)] * samples, max_tokens=writer.max_tokens, temperature=SAMPLE_TEMPERATURE,
                                   banned=[writer.banned(item)] * samples)
        drafts = []
        for raw in raws:
            try:
                drafts.append(set(content_stems(parse_copy(raw, title=item.title).text())))
            except CopyFormatError:
                drafts.append(set(content_stems(raw)))
        fields = set(content_stems(" ".join(copy_evidence(item))))
        support = 1.0
        for sentence in sentences_of(line):
            added = {w for w in content_stems(sentence) if w not in fields and not w.isdigit()}
            if added:
                support = min(support, min(sum(w in d for d in drafts) / len(drafts) for w in added))
        out.append(1.0 - support)
    return out


def verifiers_command(
    ctx: typer.Context,
    audit: Annotated[Path, typer.Argument(help="A read audit file of `aisle eval copy-audit sample` (every line with a verdict).", exists=True, dir_okay=False)],
    llm: Annotated[bool, typer.Option("--llm", help="Also measure the configured model as a judge and by agreement between its own drafts (loads the model).")] = False,
    samples: Annotated[int, typer.Option("--samples", min=2, max=16, help="Extra drafts per copy for the agreement check.")] = DEFAULT_SAMPLES,
    prompt: Annotated[str, typer.Option("--prompt", help="Copy prompt the extra drafts are sampled from (the one the read copy was written with).")] = "describe.v1",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the result JSON here.")] = None,
) -> None:
    """How well automatic verifiers find the invented details a blind reader found."""
    from agent.copy.corroborate import Corroboration
    from agent.entrypoints.cli_app import fail, settings_of
    from evals.copy_audit import read_verdicts, run_rows
    from evals.copy_eval import hide_descriptions
    from evals.report import save_json
    from retrieval.catalog import CatalogError
    from retrieval.registry import load_catalog

    settings = settings_of(ctx)
    key_path = Path(f"{audit}.key.json")
    try:
        lines = read_verdicts(audit)
        key = json.loads(key_path.read_text(encoding="utf-8")) if key_path.is_file() else {}
        catalog_name = key.get("catalog") or fail(f"no key file {key_path} naming the catalog: it is written by `aisle eval copy-audit sample`")
        source = load_catalog(settings, catalog_name)
    except (CatalogError, ValueError) as exc:
        fail(str(exc))
    # The copy was written with every eval item's description hidden: verify in the same catalog.
    hidden = {line["item"] for line in lines}
    for run in key.get("runs") or []:
        if Path(run).is_file():
            hidden |= {i for rows in run_rows(json.loads(Path(run).read_text(encoding="utf-8"))).values() for i in rows}
    cold = hide_descriptions(source, sorted(i for i in hidden if i in source.items))
    invented = [line["verdict"] == "invented" for line in lines]
    result: dict[str, Any] = {"audit": str(audit), "catalog": catalog_name, "copies": len(lines), "invented": sum(invented), "verifiers": {}}
    scores, flags = corroboration_scores(lines, cold, Corroboration(cold))
    result["verifiers"]["corroboration"] = {"auc": roc_auc(scores, invented), **flag_stats(flags, invented)}
    if llm:
        from agent.copy.writer import Copywriter
        from agent.engines import make_engine

        engine = make_engine(settings)
        try:
            result["engine"] = {"name": engine.name, "model": engine.model_id}
            result["verifiers"]["llm-judge"] = {"auc": roc_auc(judge_scores(lines, cold, engine), invented)}
            writer = Copywriter.for_catalog(engine, cold, prompt=prompt)
            result["verifiers"]["agreement"] = {"auc": roc_auc(agreement_scores(lines, cold, writer, samples), invented), "samples": samples}
        finally:
            engine.close()
    typer.echo(f"verifiers against a hand read: {catalog_name}, {len(lines)} copies, {sum(invented)} invented")
    typer.echo("  verifier        ROC AUC  flagged  precision  recall  ok copies flagged")
    for name, r in result["verifiers"].items():
        auc = f"{r['auc']:.3f}" if r.get("auc") is not None else "-"
        typer.echo(f"  {name:<15} {auc:<8} {r.get('flagged', '-')!s:<8} {r.get('precision', '-')!s:<10} {r.get('recall', '-')!s:<7} {r.get('ok_flagged', '-')}")
    if out:
        typer.echo(f"wrote {save_json(result, out)}")
