"""`aisle eval reasons`: how good are the "why this item" reasons, per reason mode?

Requests: for a seeded sample of (leaf category, feature) pairs of the catalog, the shopper asks
"I need a <feature> <category noun>" ("I need a cross-cut shredder"), where <feature> is a fact
value (agent.facts) that some but not all items of that category state. Deterministic for a seed.

Each request runs through the recommender (retrieval, rank mode "none", must-haves lifted, k=5);
the same five items then get reasons from each mode:
- `template`: the CPU default, `answer_reasons` (facts realised as sentences, written per answer);
- `llm`: the recommender's `ReasonWriter` with the configured engine (the packaged model unless
  `AISLE_LLM_MODEL` / `--engine` say otherwise): LLM text gated by the grounding check, one retry,
  then the template (`--llm-queries` bounds its cost on a CPU; 0 skips it).

Metrics per mode (over all reasons of all answers unless said):
- grounding: share of reasons the grounding gate passes (`ReasonWriter.check`);
- specificity: share of reasons naming a fact of their item that none of the other shown items
  states (a fact = an `item_facts` value, the brand, or a word of its title no other shown title
  has, e.g. "Monochrome"); also over the items that have such a fact;
- need coverage: of the items whose record states the asked feature (`has_feature`), the share
  whose reason mentions it (its words, or any noise word for "quiet");
- repetition: answers with two identical reasons, and the mean word overlap (Jaccard) between
  two reasons of one answer;
- keyword-list reasons: reasons built as a list of quoted words (`is_keyword_list`), must be 0;
- form wording: share of reasons quoting catalog text or pointing at a field ("its title says",
  "its description mentions"): a form, not a shop assistant; and the number of distinct sentence
  shapes (`sentence_shape`: the reason with its item words masked) over the first 100 reasons;
- returning shoppers (`--shoppers`, users of the catalog's interactions, no query): the share of
  reasons citing a purchase, and of those the share citing a purchase of the item's own kind
  (`same_type`) rather than only the latest one;
- latency per answer (all its reasons), p50 / p95.
"""

from __future__ import annotations

import random
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.facts import has_feature, item_facts, must_haves, same_type
from agent.grounding import history_spans
from agent.lexicon import EXPLANATION_WORDS, NOISE_WORDS, is_non_brand
from agent.recommend.reasons import ReasonContext, _same, answer_reasons, is_keyword_list, item_noun, title_marks
from agent.settings import Settings
from agent.text import find_seq, stems
from evals import report as rep
from evals.metrics import latency_summary, rate
from retrieval.catalog import Item

K = 5
FEATURE_KINDS = ("noise", "cut", "capacity", "power", "colour", "material", "feature", "size")
_NOISE_STEMS = {s for w in NOISE_WORDS for s in stems(w)}


@dataclass(frozen=True)
class Request:
    query: str
    feature: str
    category: str


def build_requests(items: Mapping[str, Item], n: int, seed: int = 0) -> list[Request]:
    """(category, feature) requests: the feature is a title or attribute fact value that 2+ items
    of the leaf category state, but at most 60 % of them; one request per category, seeded."""
    by_cat: dict[str, list[Item]] = defaultdict(list)
    for it in items.values():
        if it.category:
            by_cat[it.category].append(it)
    pairs: list[Request] = []
    for cat in sorted(by_cat):
        members = by_cat[cat]
        if len(members) < 5:
            continue
        counts: dict[str, int] = defaultdict(int)
        for it in members:
            values = {f.value.casefold() for f in item_facts(it) if f.kind in FEATURE_KINDS and f.field != "description" and not re.search(r"\d", f.value) and len(f.value) > 2}
            for v in values:
                counts[v] += 1
        brands = {s for it in members for s in stems(it.brand)}
        ok = sorted(v for v, c in counts.items() if 2 <= c <= 0.6 * len(members) and must_haves([v]) and not set(stems(v)) <= brands)
        if not ok:
            continue
        feature = random.Random(f"{seed}:{cat}").choice(ok)
        noun = item_noun(members[0])
        pairs.append(Request(f"I need a {feature} {noun}", feature, cat))
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def mentions(text: str, feature: str) -> bool:
    said = stems(text)
    want = stems(feature)
    if find_seq(said, want):
        return True
    return len(want) == 1 and want[0] in _NOISE_STEMS and bool(set(said) & _NOISE_STEMS)


def distinct_facts(item: Item, others: Sequence[Item]) -> list[str]:
    """Values of the item's facts (and its brand) that no other shown item states."""
    out = [f.value for f in item_facts(item) if not any(_same(f, o) for o in others)]
    if item.brand and not is_non_brand(item.brand) and not any(o.brand.casefold() == item.brand.casefold() for o in others):
        out.append(item.brand)
    mark = title_marks(item, others, limit=1)
    if mark:  # a word of its title that no other shown title has ("Monochrome")
        out.append(mark)
    return list(dict.fromkeys(out))


def names_any(text: str, values: Sequence[str]) -> bool:
    """Does the text name one of the values: its words in order, or (for "12 pack" read as "a pack
    of 12") all of its words?"""
    said = stems(text)
    return any(find_seq(said, stems(v)) or set(stems(v)) <= set(said) for v in values if stems(v))


_FORM_WORDING = re.compile(r"[“”]|(?<!\d)\"|\b(?:title|titles|description)\b", re.I)  # an inch mark ('22"') is no quote
_GLUE = frozenset(w.casefold() for w in EXPLANATION_WORDS)
SHAPES_OVER = 100


def form_wording(text: str) -> bool:
    """Does the reason quote catalog text or name a record field ("its title says")?"""
    return bool(_FORM_WORDING.search(text))


def sentence_shape(text: str) -> str:
    """The reason with everything but its explanation words masked ("a X by X. it takes X."):
    two reasons of one shape differ only in their item's words."""
    text = re.sub(r"[“\"][^”\"]*[”\"]", " Q ", text)
    out: list[str] = []
    for tok in re.findall(r"[A-Za-z0-9][A-Za-z0-9'’-]*|[.!?,;:]", text):
        word = tok.casefold()
        shape = word if word in _GLUE or not word[0].isalnum() else "X"
        if not (shape == "X" and out and out[-1] == "X"):
            out.append(shape)
    return " ".join(out)


def cited_purchases(text: str, history: Sequence[Item]) -> list[Item]:
    """The history items a reason's purchase claims cite: the ones whose title has every content
    word of a claim."""
    out: list[Item] = []
    for s, e in history_spans(text):
        words = {st for st in stems(text[s:e])} - {st for w in _GLUE for st in stems(w)}
        out.extend(h for h in history if words <= set(stems(h.title)) and h not in out)
    return out


@dataclass
class ModeStats:
    reasons: int = 0
    grounded: int = 0
    specific: int = 0
    with_distinct: int = 0
    specific_of_distinct: int = 0
    need_items: int = 0
    need_met: int = 0
    keyword_lists: int = 0
    form_worded: int = 0
    shapes: list[str] = field(default_factory=list)
    answers: int = 0
    answers_with_repeats: int = 0
    overlaps: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    llm_written: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, req: Request, items: Sequence[Item], texts: Sequence[str], grounded: Sequence[bool], ms: float, sources: Sequence[str]) -> None:
        self.answers += 1
        self.latency_ms.append(ms)
        if len(set(texts)) < len(texts):
            self.answers_with_repeats += 1
        for a, b in combinations(texts, 2):
            wa, wb = set(re.findall(r"[a-z0-9]+", a.lower())), set(re.findall(r"[a-z0-9]+", b.lower()))
            self.overlaps.append(len(wa & wb) / len(wa | wb) if wa | wb else 1.0)
        for i, (item, text) in enumerate(zip(items, texts)):
            others = [o for j, o in enumerate(items) if j != i]
            self.reasons += 1
            self.grounded += bool(grounded[i])
            self.llm_written += sources[i] != "template"
            distinct = distinct_facts(item, others)
            hit = names_any(text, distinct)
            self.specific += hit
            if distinct:
                self.with_distinct += 1
                self.specific_of_distinct += hit
            if has_feature(item, req.feature):
                self.need_items += 1
                self.need_met += mentions(text, req.feature)
            self.keyword_lists += is_keyword_list(text)
            self.form_worded += form_wording(text)
            self.shapes.append(sentence_shape(text))
        if len(self.examples) < 4:
            self.examples.append({"query": req.query, "reasons": [{"id": it.id, "title": it.title, "reason": t} for it, t in zip(items, texts)]})

    def summary(self) -> dict[str, Any]:
        return {
            "reasons": self.reasons,
            "answers": self.answers,
            "grounding": rate(self.grounded, self.reasons),
            "specificity": rate(self.specific, self.reasons),
            "specificity_of_items_with_a_distinct_fact": rate(self.specific_of_distinct, self.with_distinct),
            "items_with_a_distinct_fact": self.with_distinct,
            "need_coverage": rate(self.need_met, self.need_items),
            "need_items": self.need_items,
            "answers_with_identical_reasons": self.answers_with_repeats,
            "mean_pairwise_word_overlap": sum(self.overlaps) / len(self.overlaps) if self.overlaps else None,
            "keyword_list_reasons": self.keyword_lists,
            "form_wording": rate(self.form_worded, self.reasons),
            "distinct_shapes": len(set(self.shapes[:SHAPES_OVER])),
            "shapes_over": min(SHAPES_OVER, len(self.shapes)),
            "llm_written": rate(self.llm_written, self.reasons),
            "latency": latency_summary(self.latency_ms),
            "examples": self.examples,
        }


@dataclass
class HistoryStats:
    """Template reasons for returning shoppers (history, no query)."""

    reasons: int = 0
    grounded: int = 0
    citing: int = 0
    citing_same_type: int = 0
    citing_latest_only: int = 0
    same_type_in_history: int = 0
    form_worded: int = 0
    shapes: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, history: Sequence[Item], items: Sequence[Item], texts: Sequence[str], grounded: Sequence[bool]) -> None:
        seen = history[-HISTORY_SHOWN:]
        for item, text, ok in zip(items, texts, grounded):
            self.reasons += 1
            self.grounded += ok
            self.form_worded += form_wording(text)
            self.shapes.append(sentence_shape(text))
            related = [h for h in seen if same_type(item, h)]
            self.same_type_in_history += bool(related)
            cited = cited_purchases(text, seen)
            if cited:
                self.citing += 1
                self.citing_same_type += any(h in related for h in cited)
                self.citing_latest_only += cited == [seen[-1]] and not any(h in related for h in cited)
        if len(self.examples) < 4:
            self.examples.append({"history": [h.title for h in seen], "reasons": [{"id": it.id, "title": it.title, "reason": t} for it, t in zip(items, texts)]})

    def summary(self) -> dict[str, Any]:
        return {
            "reasons": self.reasons,
            "grounding": rate(self.grounded, self.reasons),
            "citing_a_purchase": rate(self.citing, self.reasons),
            "citations_of_the_same_kind": rate(self.citing_same_type, self.citing),
            "citations_of_only_the_latest_unrelated": rate(self.citing_latest_only, self.citing),
            "items_with_a_purchase_of_their_kind": self.same_type_in_history,
            "form_wording": rate(self.form_worded, self.reasons),
            "distinct_shapes": len(set(self.shapes[:SHAPES_OVER])),
            "shapes_over": min(SHAPES_OVER, len(self.shapes)),
            "examples": self.examples,
        }


HISTORY_SHOWN = 3  # the writer's default `history_items`: the purchases a reason may cite


@dataclass
class ReasonsConfig:
    catalog: str = "amazon-office-2014"
    queries: int = 50
    llm_queries: int = 10
    shoppers: int = 20
    seed: int = 0
    out: Path = field(default_factory=lambda: Path("eval-out/reasons"))


def run_reasons_eval(settings: Settings, cfg: ReasonsConfig, *, recommender: Any = None, engine: Any = None) -> dict[str, Any]:
    from agent.recommend.pipeline import Recommender, RecommendRequest

    t_start = time.perf_counter()
    env = rep.environment()
    if recommender is None:
        from retrieval.search import open_searcher

        recommender = Recommender(settings, cfg.catalog, searcher=open_searcher(settings, cfg.catalog, progress=False))
    items = recommender.catalog.items
    requests = build_requests(items, cfg.queries, cfg.seed)
    writer = recommender.reason_writer(None)
    modes: dict[str, ModeStats] = {"template": ModeStats()}
    answers: list[tuple[Request, list[Item]]] = []
    for req in requests:
        res = recommender.recommend(RecommendRequest(query=req.query, k=K, rank_mode="none", with_reasons=False, must_have=must_haves([req.feature])))
        shown = [r.item for r in res.items]
        if shown:
            answers.append((req, shown))
    for req, shown in answers:
        ctx = ReasonContext(query=req.query)
        t = time.perf_counter()
        texts = answer_reasons(shown, ctx)
        ms = (time.perf_counter() - t) * 1e3
        grounded = [writer.check(tx, it, ctx, prose=False).ok for it, tx in zip(shown, texts)]
        modes["template"].add(req, shown, texts, grounded, ms, ["template"] * len(shown))
    notes: list[str] = []
    returning = _returning_shoppers(settings, cfg, recommender, writer, notes) if cfg.shoppers else None
    llm_info: dict[str, Any] = {}
    llm_rows: list[dict[str, Any]] = []  # every LLM answer, for a blind read (aisle eval reasons-audit)
    if cfg.llm_queries > 0:
        try:
            if engine is None:
                from agent.engines import make_engine

                engine = make_engine(settings)
            llm_info = {"engine": engine.name, "model": engine.model_id}
            llm_writer = recommender.reason_writer(engine)
            modes["llm"] = ModeStats()
            for req, shown in answers[: cfg.llm_queries]:
                ctx = ReasonContext(query=req.query)
                t = time.perf_counter()
                reasons = llm_writer.write(shown, ctx)
                ms = (time.perf_counter() - t) * 1e3
                modes["llm"].add(req, shown, [r.text for r in reasons], [r.grounded for r in reasons], ms, [r.source for r in reasons])
                llm_rows.extend({"catalog": cfg.catalog, "item": it.id, "title": it.title, "history": [], "query": req.query, "source": r.source,
                                 "grounded": r.grounded, "text": r.text, "raw": r.raw, "problems": r.problems[:4]} for it, r in zip(shown, reasons))
        except Exception as exc:  # an eval reports what broke instead of dying
            notes.append(f"LLM mode not run: {type(exc).__name__}: {exc}"[:300])
            modes.pop("llm", None)
    result: dict[str, Any] = {
        "kind": "reasons",
        "config": {
            "catalog": cfg.catalog,
            "catalog_items": len(items),
            "queries_requested": cfg.queries,
            "queries": len(answers),
            "llm_queries": min(cfg.llm_queries, len(answers)),
            "seed": cfg.seed,
            "k": K,
            "requests_sha256": rep.ids_hash(r.query for r, _ in answers),
            **llm_info,
            "git": rep.git_state(),
            **{f"env_{k}": v for k, v in env.items()},
        },
        "modes": {name: s.summary() for name, s in modes.items()},
        "returning": returning.summary() if returning else None,
        "requests": [{"query": r.query, "feature": r.feature, "category": r.category, "shown": [i.id for i in s]} for r, s in answers],
        "notes": notes,
    }
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_outputs(result, cfg.out)
    if llm_rows:
        rep.save_json({**llm_info, "pairs": len(llm_rows), "accepted": sum(r["source"] != "template" for r in llm_rows), "rows": llm_rows}, cfg.out / "llm_reasons.json")
    return result


def _returning_shoppers(settings: Settings, cfg: ReasonsConfig, recommender: Any, writer: Any, notes: list[str]) -> HistoryStats | None:
    """Template reasons for `cfg.shoppers` sampled users of the catalog's interactions: their
    history (all but the last item) and no query, as `aisle serve` answers a returning shopper."""
    from agent.recommend.pipeline import RecommendRequest
    from retrieval.collab import distinct_history
    from retrieval.registry import load_interactions

    try:
        interactions = load_interactions(settings, cfg.catalog)
    except Exception as exc:  # a catalog without interactions has no returning shoppers
        notes.append(f"returning shoppers not run: {type(exc).__name__}: {exc}"[:300])
        return None
    items = recommender.catalog.items
    users = sorted(u for u, ids in interactions.items() if len(ids) >= 3)
    stats = HistoryStats()
    for u in random.Random(cfg.seed).sample(users, min(cfg.shoppers, len(users))):
        history = [items[i] for i in distinct_history(interactions[u][:-1]) if i in items]
        res = recommender.recommend(RecommendRequest(history=[h.id for h in history], k=K, rank_mode="none", with_reasons=False))
        shown = [r.item for r in res.items]
        if not shown:
            continue
        ctx = ReasonContext(history_titles=[h.title for h in history])
        texts = answer_reasons(shown, ctx)
        stats.add(history, shown, texts, [writer.check(t, it, ctx, prose=False).ok for it, t in zip(shown, texts)])
    return stats


HEADER = ["mode", "answers", "grounding", "specificity", "specificity (items with a distinct fact)", "need coverage", "answers with identical reasons", "mean word overlap", "keyword-list reasons", "form wording", "sentence shapes", "LLM-written", "p50/answer", "p95/answer"]
RETURNING_HEADER = ["reasons", "grounding", "citing a purchase", "citations of the item's kind", "citations of only the latest (unrelated)", "items with a purchase of their kind", "form wording", "sentence shapes"]


def summary_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for name, s in result["modes"].items():
        rows.append([
            name, s["answers"], rep.pct(s["grounding"]), rep.pct(s["specificity"]), rep.pct(s["specificity_of_items_with_a_distinct_fact"]),
            f"{rep.pct(s['need_coverage'])} of {s['need_items']}", s["answers_with_identical_reasons"], rep.fmt(s["mean_pairwise_word_overlap"], 2),
            s["keyword_list_reasons"], rep.pct(s["form_wording"]), f"{s['distinct_shapes']} of {s['shapes_over']}", rep.pct(s["llm_written"]), rep.ms(s["latency"]["p50_ms"]), rep.ms(s["latency"]["p95_ms"]),
        ])
    return rows


def returning_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    r = result.get("returning")
    if not r:
        return []
    return [[r["reasons"], rep.pct(r["grounding"]), rep.pct(r["citing_a_purchase"]), rep.pct(r["citations_of_the_same_kind"]),
             rep.pct(r["citations_of_only_the_latest_unrelated"]), r["items_with_a_purchase_of_their_kind"], rep.pct(r["form_wording"]), f"{r['distinct_shapes']} of {r['shapes_over']}"]]


def markdown(result: Mapping[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Reason-quality eval", "",
        f"{cfg['queries']} requests on `{cfg['catalog']}` ({cfg['catalog_items']} items; seed {cfg['seed']}, hash `{cfg['requests_sha256']}`): "
        f"“I need a <feature> <category>”, top {cfg['k']} by the recommender (rank mode none, must-haves lifted). "
        f"LLM mode on the first {cfg['llm_queries']} ({cfg.get('engine', '–')} / {cfg.get('model', '–')}). Total {result['total_seconds']} s.", "",
        rep.md_table(HEADER, summary_rows(result)), "",
        "Specificity: the reason names a fact of its item (an extracted fact, the brand, or a word of its title) that none of the other shown "
        "items states; the next column counts only the items that have such a fact. Need coverage: "
        "of the items whose record states the asked feature, the share whose reason mentions it. LLM-written: reasons the LLM wrote "
        "and the gate passed (the rest fell back to the template).", "",
    ]
    for name, s in result["modes"].items():
        lines += [f"## Examples: {name}", ""]
        for ex in s["examples"][:3]:
            lines.append(f"**{ex['query']}**")
            lines += [f"- {r['title'][:70]}: {r['reason']}" for r in ex["reasons"]]
            lines.append("")
    if result.get("returning"):
        lines += ["## Returning shoppers (template, history only)", "", rep.md_table(RETURNING_HEADER, returning_rows(result)), ""]
        for ex in result["returning"]["examples"][:3]:
            lines.append("**bought: " + "; ".join(t[:50] for t in ex["history"]) + "**")
            lines += [f"- {r['title'][:70]}: {r['reason']}" for r in ex["reasons"]]
            lines.append("")
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    lines += ["## Configuration", "", rep.md_table(["key", "value"], rep.config_rows(cfg)), ""]
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    rep.write_json(result, out)
    (out / rep.REPORT_FILE).write_text(markdown(result), encoding="utf-8")


def reasons_command(
    ctx: typer.Context,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="Catalog (default: AISLE_CATALOG).")] = None,
    queries: Annotated[int, typer.Option("--queries", "-n", min=1, help="Requests (one per leaf category, seeded).")] = 50,
    llm_queries: Annotated[int, typer.Option("--llm-queries", min=0, help="Requests whose reasons the LLM mode also writes (slow on CPU); 0 skips it.")] = 10,
    shoppers: Annotated[int, typer.Option("--shoppers", min=0, help="Returning shoppers (history, no query) whose template reasons are measured; 0 skips it.")] = 20,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: AISLE_SEED).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="LLM engine for the LLM mode: auto | transformers | llamacpp | vllm | openai.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default eval-out/reasons-<timestamp>, git-ignored).")] = None,
) -> None:
    """Reason quality per mode (template, LLM): grounding, specificity, need coverage, repetition, latency."""
    from evals.ranking import eval_options

    settings, _ = eval_options(ctx, engine, None, ())
    out = out or Path("eval-out") / f"reasons-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = ReasonsConfig(catalog=catalog or settings.catalog, queries=queries, llm_queries=llm_queries, shoppers=shoppers, seed=settings.seed if seed is None else seed, out=out)
    result = run_reasons_eval(settings, cfg)
    typer.echo(rep.md_table(HEADER, summary_rows(result)))
    if result.get("returning"):
        typer.echo("\nreturning shoppers (template):\n" + rep.md_table(RETURNING_HEADER, returning_rows(result)))
    for n in result["notes"]:
        typer.echo(f"note: {n}")
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")


__all__ = ["ReasonsConfig", "build_requests", "reasons_command", "run_reasons_eval"]
