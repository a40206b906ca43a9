"""`aisle eval extract`: how well the dialogue understanding reads a shopper's constraints, per slot.

Two readers of the same messages: the rules alone (`Understander.rules`) and the rules plus the
LLM extractor (`Understander(..., llm_extract=True)`, the configured engine). Each replays a
conversation in its own `DialogueState` (understand, `policy.apply`, `record_shown`), so every
message is read in the context the agent would read it in, and the reading of that one message is
compared with its gold, slot by slot: category, brands, avoid_brands, price_min, price_max,
features and rejected (the shown positions a message rejects).

Gold, two sources:
- simulated shoppers (`evals.simulate.ScriptedShopper`) on a catalog: n seeded targets, each
  shopper talking to a BM25 shelf (the lexical half of retrieval over its messages so far, the
  target left out so every shopper talks for all its turns). A turn's gold is what the shopper's
  `said` gained at that turn (brand, avoided brand, price bound, feature, rejected item), plus the
  category its opening names (the target's category);
- MG-ShopDial: 40 client utterances picked with a seeded sample and labelled by hand, blind to
  both readers (`evals/gold/mg_shopdial_slots.json`: labels only, keyed by dialogue and utterance
  id; the text is read from the data folder). Each is read after the dialogue's earlier client
  utterances, which build the state with the rules alone (the LLM reads only the labelled
  utterance), against the mg-shopdial catalog's vocabulary. Shown positions do not exist there.

A slot of one turn is correct when the value set read equals the gold set after normalisation
(casefold; brands by `brand_key`; categories and features by their word stems; prices within
1 cent). "Stated wrongly" counts the turns where a value was read that the gold does not have,
on every scored turn (also those whose gold is empty).
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from tqdm.auto import tqdm

from agent.dialogue import CatalogVocab, DialogueState, Understander, Understanding, apply, record_shown
from agent.settings import Settings
from agent.text import stems
from evals import report as rep
from evals.metrics import latency_summary, rate
from evals.simulate import TOP_K, FeatureWords, Said, ScriptedShopper, System, brand_key, simulate
from retrieval.catalog import Catalog, Item

SLOTS = ("category", "brands", "avoid_brands", "price_min", "price_max", "features", "rejected")
PRICE_SLOTS = frozenset({"price_min", "price_max"})
PRICE_TOLERANCE = 0.01
GOLD_FILE = Path(__file__).parent / "gold" / "mg_shopdial_slots.json"
SHOPDIAL_CATALOG = "mg-shopdial"
LATENCY_NOTE = (
    "Latency per LLM call is the reading time of the turns on which the extractor called the model "
    "(one `chat_json` call each, not batched: the engines batch free text only); the rules' part of it is under a millisecond."
)


# --- turns and their gold --------------------------------------------------------------------------


@dataclass
class Turn:
    """One shopper message, what was shown after it, and its gold (None: context only, not scored).
    `llm`: whether the LLM reader reads it with its model (context turns may be read by rules)."""

    key: str
    message: str
    shown: list[str] = field(default_factory=list)
    gold: dict[str, list[Any]] | None = None
    llm: bool = True


def said_gain(before: Said, after: Said, shown_before: Sequence[str]) -> dict[str, list[Any]]:
    """What the shopper stated at one turn: the difference of its `said` before and after."""
    return {
        "brands": [after.brand] if after.brand and after.brand != before.brand else [],
        "avoid_brands": sorted(after.avoid_brands - before.avoid_brands),
        "price_min": [],
        "price_max": [after.price_max] if after.price_max is not None and after.price_max != before.price_max else [],
        "features": [f for f in after.features if f not in before.features],
        "rejected": [shown_before.index(i) for i in sorted(after.rejected_ids - before.rejected_ids) if i in shown_before],
    }


class Shelf:
    """The shopper's counterpart: BM25 over its messages so far, the target left out. Records the
    gold of every message (the shopper's `said` gain) as the message arrives."""

    def __init__(self, index: Any, shopper: ScriptedShopper, target: Item, key: str, category: str | None) -> None:
        self.index, self.shopper, self.target, self.key = index, shopper, target, key
        self.category = category
        self.messages: list[str] = []
        self.turns: list[Turn] = []
        self.said = Said()

    def say(self, message: str) -> list[str]:
        self.messages.append(message)
        now = copy.deepcopy(self.shopper.said)
        gold = said_gain(self.said, now, self.turns[-1].shown if self.turns else [])
        # The opening names the target's category; no later message names one.
        gold["category"] = ([self.category] if self.category else []) if len(self.turns) == 0 else []
        self.said = now
        hits = self.index.top(" ".join(self.messages), TOP_K + 1)
        shown = [i for i, _ in hits if i != self.target.id][:TOP_K]
        self.turns.append(Turn(f"{self.key}#{len(self.turns) + 1}", message, shown, gold))
        return shown


def simulated_conversations(catalog: Catalog, n: int, max_turns: int, seed: int) -> list[list[Turn]]:
    """n seeded targets, one scripted shopper each, talking to the BM25 shelf for max_turns turns."""
    from retrieval.collab import id_sort_key
    from retrieval.lexical import LexicalIndex
    from retrieval.search import lexical_text

    items = catalog.items
    ids = sorted(items, key=id_sort_key)
    index = LexicalIndex(ids, [lexical_text(items[i]) for i in ids])
    features = FeatureWords(items)
    conversations = []
    for target_id in random.Random(seed).sample(ids, min(n, len(ids))):
        item = items[target_id]
        target = features.target(item)
        shopper = ScriptedShopper()
        # The opening names the most specific category (`Target.need`); without one it names the title's noun, no category.
        shelf = Shelf(index, shopper, item, target_id, target.category or None)
        simulate(System("shelf", "BM25 shelf", lambda _history, s=shelf: s), shopper, item, target, items, max_turns)
        conversations.append(shelf.turns)
    return conversations


def shopdial_conversations(data_dir: Path, gold_file: Path = GOLD_FILE) -> tuple[list[list[Turn]], dict[str, Any]]:
    """Each labelled utterance after its dialogue's earlier client utterances (context, rules only)."""
    path = Path(data_dir) / "mg-shopdial" / "dialogues.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set AISLE_DATA_DIR to the shared data folder")
    gold = json.loads(gold_file.read_text(encoding="utf-8"))
    dialogues = {d["id"]: d for d in json.loads(path.read_text(encoding="utf-8"))}
    conversations = []
    for key, labels in gold["labels"].items():
        dialogue_id, utterance_id = key.rsplit("#", 1)
        if dialogue_id not in dialogues:
            raise ValueError(f"{gold_file}: dialogue {dialogue_id!r} is not in {path}")
        client = [u for u in dialogues[dialogue_id]["utterances"] if u.get("participant") == "Client"]
        pos = next((k for k, u in enumerate(client) if str(u.get("utterance_id")) == utterance_id), None)
        if pos is None:
            raise ValueError(f"{gold_file}: {key!r} is no client utterance of {path}")
        turns = [Turn(f"{dialogue_id}#{u['utterance_id']}", u.get("utterance", ""), llm=False) for u in client[:pos]]
        turns.append(Turn(key, client[pos].get("utterance", ""), gold=shopdial_gold(labels)))
        conversations.append(turns)
    return conversations, {k: v for k, v in gold.items() if k != "labels"}


def shopdial_gold(labels: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A label row as slot value lists (there are no shown items, so no rejected slot)."""
    one = lambda v: [] if v is None else [v]  # noqa: E731
    return {
        "category": one(labels.get("category")),
        "brands": list(labels.get("brands", [])),
        "avoid_brands": list(labels.get("avoid_brands", [])),
        "price_min": one(labels.get("price_min")),
        "price_max": one(labels.get("price_max")),
        "features": list(labels.get("features", [])),
    }


# --- reading -----------------------------------------------------------------------------------------


def read_slots(u: Understanding) -> dict[str, list[Any]]:
    return {
        "category": list(u.categories),
        "brands": list(u.brands),
        "avoid_brands": list(u.avoid_brands),
        "price_min": [] if u.price_min is None else [u.price_min],
        "price_max": [] if u.price_max is None else [u.price_max],
        "features": list(u.features),
        "rejected": list(u.refs) if u.feedback < 0 else [],
    }


@dataclass
class Reader:
    name: str
    label: str
    understander: Understander


def replay(reader: Reader, conversation: Sequence[Turn], catalog: Catalog, on_turn: Callable[[Turn, Understanding, float, bool], None]) -> None:
    """Read a conversation turn by turn in the reader's own state, as the agent would."""
    state = DialogueState(catalog=catalog.name)
    for turn in conversation:
        t0 = time.perf_counter()
        u = reader.understander.understand(turn.message, state, catalog.items) if turn.llm else reader.understander.rules(turn.message, state, catalog.items)
        ms = (time.perf_counter() - t0) * 1e3
        called = u.llm_used or any(d.startswith("extraction failed") for d in u.llm_dropped)
        apply(u, state, catalog.items)
        state.remember("user", turn.message)
        state.turns += 1
        if turn.shown:
            record_shown(state, turn.shown)
        on_turn(turn, u, ms, called)


# --- scoring -------------------------------------------------------------------------------------------


def normalise(slot: str, value: Any) -> Any:
    if slot in PRICE_SLOTS:
        return float(value)
    if slot == "rejected":
        return int(value)
    if slot in ("brands", "avoid_brands"):
        return brand_key(str(value))
    return " ".join(stems(str(value)))


def _same(slot: str, a: Any, b: Any) -> bool:
    return abs(a - b) <= PRICE_TOLERANCE if slot in PRICE_SLOTS else a == b


def compare(slot: str, gold: Sequence[Any], read: Sequence[Any]) -> tuple[bool, list[Any]]:
    """(the read set equals the gold set, the values read that the gold does not have)."""
    g = [normalise(slot, v) for v in gold]
    r = [normalise(slot, v) for v in read]
    wrong = [v for v in r if not any(_same(slot, v, x) for x in g)]
    missing = [x for x in g if not any(_same(slot, x, v) for v in r)]
    return not wrong and not missing, wrong


@dataclass
class SlotScore:
    turns: int = 0  # turns scored for this slot
    with_gold: int = 0  # ... whose gold has a value
    correct: int = 0  # ... of those, read exactly
    stated_wrongly: int = 0  # turns (any scored) where a value was read that the gold lacks
    agree: int = 0  # turns where the reading equals the gold, empty or not

    def summary(self) -> dict[str, Any]:
        return {**self.__dict__, "accuracy": rate(self.correct, self.with_gold), "agreement": rate(self.agree, self.turns)}


@dataclass
class Scorer:
    """Per-slot counts of one reader on one gold set, with a few examples of what went wrong."""

    slots: dict[str, SlotScore] = field(default_factory=lambda: {s: SlotScore() for s in SLOTS})
    latency_ms: list[float] = field(default_factory=list)
    llm_ms: list[float] = field(default_factory=list)
    llm_failed: int = 0
    llm_dropped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, turn: Turn, u: Understanding, ms: float, called: bool) -> None:
        if turn.gold is None:
            return
        self.latency_ms.append(ms)
        if called:
            self.llm_ms.append(ms)
            self.llm_failed += any(d.startswith("extraction failed") for d in u.llm_dropped)
        self.llm_dropped += sum(1 for d in u.llm_dropped if not d.startswith("extraction failed"))
        read = read_slots(u)
        for slot, gold in turn.gold.items():
            score = self.slots[slot]
            ok, wrong = compare(slot, gold, read[slot])
            score.turns += 1
            score.with_gold += bool(gold)
            score.correct += bool(gold) and ok
            score.agree += ok
            score.stated_wrongly += bool(wrong)
            if not ok and len(self.errors) < 40:
                self.errors.append({"turn": turn.key, "slot": slot, "gold": gold, "read": read[slot]})

    def summary(self) -> dict[str, Any]:
        return {
            "slots": {s: v.summary() for s, v in self.slots.items() if v.turns},
            "turns": len(self.latency_ms),
            "latency": latency_summary(self.latency_ms),
            "llm_calls": len(self.llm_ms),
            "llm_call_latency": latency_summary(self.llm_ms),
            "llm_failed_calls": self.llm_failed,
            "llm_values_dropped": self.llm_dropped,
            "mistakes": self.errors,
        }


def score_readers(readers: Sequence[Reader], conversations: Sequence[Sequence[Turn]], catalog: Catalog, desc: str, progress: bool) -> dict[str, Any]:
    out = {}
    for reader in readers:
        scorer = Scorer()
        bar = tqdm(total=sum(len(c) for c in conversations), desc=f"{desc}: {reader.label}", unit="turn", disable=not progress, leave=False)
        for conversation in conversations:
            replay(reader, conversation, catalog, lambda t, u, ms, called: (scorer.add(t, u, ms, called), bar.update(1)))
        bar.close()
        out[reader.name] = {"label": reader.label, **scorer.summary()}
    return out


# --- the eval -------------------------------------------------------------------------------------------


@dataclass
class ExtractConfig:
    catalog: str  # the CLI fills catalog and seed from Settings
    seed: int
    n: int = 20  # simulated shoppers (targets)
    max_turns: int = 5
    llm: bool = True  # also the rules + LLM reader
    shopdial: bool = True  # also the hand-labelled MG-ShopDial utterances
    out: Path = field(default_factory=lambda: Path("eval-out/extract"))
    progress: bool = True


def make_readers(vocab: CatalogVocab, engine: Any) -> list[Reader]:
    readers = [Reader("rules", "Rules", Understander(vocab))]
    if engine is not None:
        readers.append(Reader("rules+llm", f"Rules + LLM ({getattr(engine, 'model_id', '') or getattr(engine, 'name', 'engine')})", Understander(vocab, engine=engine, llm_extract=True)))
    return readers


def run_extract_eval(settings: Settings, cfg: ExtractConfig, *, engine: Any = None, catalog: Catalog | None = None, shopdial_catalog: Catalog | None = None) -> dict[str, Any]:
    """Both readers on the simulated turns (and the MG-ShopDial labels); writes results.json and report.md."""
    t_start = time.perf_counter()
    if cfg.llm and engine is None:
        from agent.engines import make_engine

        engine = make_engine(settings)
    engine = engine if cfg.llm else None
    if catalog is None:
        from retrieval.registry import load_catalog

        catalog = load_catalog(settings, cfg.catalog)
    conversations = simulated_conversations(catalog, cfg.n, cfg.max_turns, cfg.seed)
    result: dict[str, Any] = {"kind": "extract", "config": _config(cfg, engine, catalog, conversations), "notes": [LATENCY_NOTE]}
    result["simulated"] = {
        "turns": sum(len(c) for c in conversations),
        "examples": [[{"message": t.message, "gold": t.gold} for t in c] for c in conversations[:3]],
        "readers": score_readers(make_readers(CatalogVocab.from_catalog(catalog), engine), conversations, catalog, "simulated", cfg.progress),
    }
    if cfg.shopdial:
        if shopdial_catalog is None:
            from retrieval.registry import load_catalog

            shopdial_catalog = load_catalog(settings, SHOPDIAL_CATALOG)
        sd_conversations, selection = shopdial_conversations(Path(settings.data_dir))
        result["mg_shopdial"] = {
            "utterances": len(sd_conversations),
            "catalog_items": len(shopdial_catalog),
            "selection": selection,
            "readers": score_readers(make_readers(CatalogVocab.from_catalog(shopdial_catalog), engine), sd_conversations, shopdial_catalog, "MG-ShopDial", cfg.progress),
        }
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_extract_outputs(result, cfg.out)
    return result


def _config(cfg: ExtractConfig, engine: Any, catalog: Catalog, conversations: Sequence[Sequence[Turn]]) -> dict[str, Any]:
    from agent.prompts import prompt_fingerprint

    return {
        "catalog": catalog.name,
        "catalog_items": len(catalog),
        "targets": len(conversations),
        "targets_sha256": rep.ids_hash(c[0].key.split("#", 1)[0] for c in conversations if c),
        "max_turns": cfg.max_turns,
        "seed": cfg.seed,
        "llm": cfg.llm,
        "engine": getattr(engine, "name", None),
        "model_id": getattr(engine, "model_id", None),
        "prompt": "extract_state.v1",
        "prompt_fingerprint": prompt_fingerprint("extract_state.v1"),
        "git": rep.git_state(),
        **{f"env_{k}": v for k, v in rep.environment().items()},
    }


# --- outputs ---------------------------------------------------------------------------------------------


def write_extract_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rep.write_json(result, out)
    (out / rep.REPORT_FILE).write_text(extract_markdown(result), encoding="utf-8")


SLOT_HEADER = ["reader", "slot", "turns", "with gold", "correct", "accuracy", "stated wrongly", "agreement (all turns)"]


def slot_rows(readers: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [r["label"], slot, s["turns"], s["with_gold"], s["correct"], rep.pct(s["accuracy"]), s["stated_wrongly"], rep.pct(s["agreement"])]
        for r in readers.values()
        for slot, s in r["slots"].items()
    ]


def latency_rows(readers: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [r["label"], r["turns"], rep.ms(r["latency"]["p50_ms"]), rep.ms(r["latency"]["p95_ms"]), r["llm_calls"], rep.ms(r["llm_call_latency"]["p50_ms"]), rep.ms(r["llm_call_latency"]["p95_ms"]), r["llm_failed_calls"], r["llm_values_dropped"]]
        for r in readers.values()
    ]


LATENCY_HEADER = ["reader", "turns", "p50/turn", "p95/turn", "LLM calls", "p50/call", "p95/call", "failed calls", "LLM values dropped"]


def extract_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    sim = result["simulated"]
    lines = [
        "# Constraint extraction eval", "",
        f"How well each reader reads the constraints of one shopper message, per slot. Engine `{cfg['engine']}`, model `{cfg['model_id']}`, "
        f"prompt `{cfg['prompt']}`. Total {result['total_seconds']} s on {cfg.get('env_cpu_count')} CPU cores.", "",
        "A slot is correct when the values read equal the gold after normalisation (casefold; brands by brand key; categories and features by stems; "
        "prices within 1 cent). Accuracy is over the turns whose gold has a value; “stated wrongly” counts turns, with gold or not, where a value was read "
        "that the gold lacks; agreement is over every scored turn.", "",
        "## Simulated shoppers", "",
        f"{cfg['targets']} seeded targets of `{cfg['catalog']}` ({cfg['catalog_items']} items; seed {cfg['seed']}, hash `{cfg['targets_sha256']}`), "
        f"{sim['turns']} turns of the scripted shopper against a BM25 shelf (target left out), up to {cfg['max_turns']} turns each. "
        "Gold: what the shopper's `said` gained at each turn, plus the category its opening names.", "",
        rep.md_table(SLOT_HEADER, slot_rows(sim["readers"])), "",
        rep.md_table(LATENCY_HEADER, latency_rows(sim["readers"])), "",
    ]
    if "mg_shopdial" in result:
        sd = result["mg_shopdial"]
        gold = sd["selection"]
        lines += [
            "## MG-ShopDial (hand-labelled)", "",
            f"{sd['utterances']} client utterances (seed {gold['selection']['seed']}: {gold['selection']['rule']}), labelled blind: {gold['labelling']} "
            f"Vocabulary: the {sd['catalog_items']}-item mg-shopdial catalog. The earlier client utterances of each dialogue build the state with the rules alone.", "",
            rep.md_table(SLOT_HEADER, slot_rows(sd["readers"])), "",
            rep.md_table(LATENCY_HEADER, latency_rows(sd["readers"])), "",
        ]
    for title, part in (("simulated", sim), ("MG-ShopDial", result.get("mg_shopdial"))):
        for r in (part or {}).get("readers", {}).values():
            if r["mistakes"]:
                lines += [f"### Mistakes, {title}: {r['label']} (first 10)", "", rep.md_table(["turn", "slot", "gold", "read"], [[m["turn"], m["slot"], json.dumps(m["gold"]), json.dumps(m["read"])] for m in r["mistakes"][:10]]), ""]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    lines += ["## Configuration", "", rep.md_table(["key", "value"], rep.config_rows(cfg)), ""]
    return "\n".join(lines)


def summary_text(result: dict[str, Any]) -> str:
    parts = [f"Simulated: {result['simulated']['turns']} turns\n" + rep.md_table(SLOT_HEADER, slot_rows(result["simulated"]["readers"])) + "\n\n" + rep.md_table(LATENCY_HEADER, latency_rows(result["simulated"]["readers"]))]
    if "mg_shopdial" in result:
        sd = result["mg_shopdial"]
        parts.append(f"MG-ShopDial: {sd['utterances']} labelled utterances\n" + rep.md_table(SLOT_HEADER, slot_rows(sd["readers"])) + "\n\n" + rep.md_table(LATENCY_HEADER, latency_rows(sd["readers"])))
    return "\n\n".join(parts)


# --- CLI ---------------------------------------------------------------------------------------------------


def extract_command(
    ctx: typer.Context,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="Catalog the simulated shoppers' targets come from (default: AISLE_CATALOG).")] = None,
    n: Annotated[int, typer.Option("--shoppers", "-n", min=1, help="Simulated shoppers (seeded targets).")] = 20,
    max_turns: Annotated[int, typer.Option("--max-turns", min=1, max=20, help="Shopper turns per conversation.")] = 5,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Target sampling seed (default: AISLE_SEED).")] = None,
    llm: Annotated[bool, typer.Option("--llm/--no-llm", help="Also score the rules + LLM reader (the configured engine; slow on CPU).")] = True,
    shopdial: Annotated[bool, typer.Option("--shopdial/--no-shopdial", help="Also score the 40 hand-labelled MG-ShopDial utterances.")] = True,
    engine: Annotated[Optional[str], typer.Option("--engine", help="LLM engine: auto | transformers | llamacpp | vllm | openai.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default eval-out/extract-<timestamp>, git-ignored).")] = None,
) -> None:
    """Per-slot accuracy of reading a shopper's constraints: the rules alone vs rules + LLM extractor."""
    from evals.ranking import eval_options

    settings, _prompts = eval_options(ctx, engine, None, ())
    out = out or Path("eval-out") / f"extract-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = ExtractConfig(catalog=catalog or settings.catalog, n=n, max_turns=max_turns, seed=settings.seed if seed is None else seed, llm=llm, shopdial=shopdial, out=out)
    result = run_extract_eval(settings, cfg)
    typer.echo(summary_text(result))
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")
