"""`aisle eval simulate`: simulated shoppers look for their held-out item in a conversation.

Protocol: each sampled user's last item (leave-one-out) is the target. New shoppers (default)
come with no past; returning shoppers (`--returning`) come with their history, all their items but
the held-out one, which the agent's session gets (`Agent.new_session(history=...)`) and which ranks
what the conversation finds. A shopper opens with the kind
of product the target is (its most specific category, else its title's head noun: "I'm looking for
shredders"), vague or with one of its features at random ("... cross-cut shredders"), then says one
new thing per turn, reacting to what it was shown the way the records allow (`ScriptedShopper`):
a feature from the target's facts (agent.facts: "cross-cut", "8 sheets", "quiet", "black") that
not all shown items state; right after that, rejects a shown item lacking what it asked for; the
target's brand only after it has rejected something, then "not <brand>" for another shown brand;
"cheaper" where prices say the target is cheaper than everything shown; else "show me something
else". The conversation succeeds when the target is among the top 5 shown, and stops there.

`--shopper llm` (evals/llm_shopper.py) keeps these decisions and has an LLM say them in a real
shopper's words, each phrasing checked and replaced by the scripted text when it changes what the
script said.

The shopper never sees the target's title: it gets a `Target` (category path, brand, price,
fact values) with no title field, and every message is checked against the title
(`check_no_title`: not the whole title, no run of 4 of its words) before any system reads it.

Systems answer the same messages for the same users, one conversation each:
- retrieval only: hybrid search over the messages so far, joined (no dialogue state);
- the agent before #16: the same agent with the features the shopper asked for NOT lifting the
  items that state them (`without_must_haves`: the recommender gets no must-haves); the reasons
  do not change which items are shown, so this is the pre-#16 agent as far as the ids go;
- the agent: `agent.chat.agent.Agent` with its defaults (must-haves from the shopper's features
  and stated facts lifted), re-ranking off unless `--llm`;
- returning shoppers only, the history alone: the ranking stage's top 5 from the history with no
  words (what a "recommended for you" shelf shows), the next 5 each turn.
Another variant is one more `System` in `build_systems`.

Metrics per system: success by turn (cumulative), success rate, mean turns to success, constraint
violations (a shown item that breaks something the shopper said: the brand it asked for, a brand
or an item it rejected, its price bound), out-of-catalog ids and latency per turn.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional, Protocol

import typer
from tqdm.auto import tqdm

from agent.facts import has_feature, item_facts, product_type
from agent.lexicon import is_non_brand
from agent.settings import Settings
from agent.text import content_stems, find_seq, stem, stems, tokens
from evals import report as rep
from evals.metrics import latency_summary, rate
from retrieval.catalog import Item

log = logging.getLogger(__name__)

TOP_K = 5  # success: the target among the first 5 shown items
TITLE_RUN = 4  # a message may not repeat this many consecutive words of the target's title
MAX_FEATURES = 8
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth")


# --- what the shopper knows about the target ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The held-out item as the shopper knows it: never its title (there is no field for it)."""

    id: str
    categories: tuple[str, ...]
    brand: str
    price: float | None
    features: tuple[str, ...]  # values of its facts a shopper would ask for, best first
    kind: str = ""  # what it is, one noun of its record (agent.facts.product_type): never its title, brand or model

    @property
    def category(self) -> str:
        return self.categories[-1] if self.categories else ""

    @property
    def need(self) -> str:
        """The most specific category as a need; a one-word one that is no plural noun only
        qualifies its parent ("Calculators > Basic") and is read with it: "basic calculators"."""
        if not self.categories:
            return self.kind
        last = self.categories[-1].lower()
        parent = self.categories[-2].lower() if len(self.categories) > 1 else ""
        if len(tokens(last)) == 1 and not last.endswith("s") and len(tokens(parent)) == 1 and stem(last) != stem(parent):
            return f"{last} {parent}"
        return last


# Fact kinds a shopper states as a wish ("cross-cut", "8 sheets", "black"), best first.
SHOPPER_KINDS = ("cut", "noise", "capacity", "power", "compatibility", "pack", "colour", "material", "size", "feature")
_DESCRIPTION_KINDS = frozenset({"cut", "noise", "capacity", "power"})
_VAGUE = frozenset({"small", "medium", "large", "wide", "fine", "bold", "fast", "cheap", "durable", "compact", "clear", "standard"})


class FeatureWords:
    """What a shopper could ask for about an item: the values of its facts (agent.facts) that a
    person would say ("cross-cut", "8 sheets", "quiet", "black"; title and attribute facts, and
    the description's cut, noise, capacity and power), that at least one other item also states
    (a feature, not an identifier) and at most `max_share` of the catalog states. Not the item's
    rare words (a product line such as "Velocity" would name the item, not a need)."""

    def __init__(self, items: Mapping[str, Item], max_share: float = 0.2) -> None:
        self.df: Counter[str] = Counter()
        for item in items.values():
            self.df.update({v for _k, v in self._facts(item)})
        self.max_df = max(2, int(max_share * len(items)))

    @staticmethod
    def _facts(item: Item) -> list[tuple[str, str]]:
        out = []
        for f in item_facts(item):
            if f.kind not in SHOPPER_KINDS or f.value.casefold() in _VAGUE:
                continue
            if f.field == "description" and f.kind not in _DESCRIPTION_KINDS:
                continue
            if f.kind == "size" and re.search(r"\d", f.value):
                continue  # "8.5 x 11": a shopper says "letter size"
            if f.kind == "capacity" and f.field == "description" and re.match(r"\d{3,}", f.value):
                continue
            out.append((f.kind, f.value.casefold()))
        return list(dict.fromkeys(out))

    def of(self, item: Item) -> tuple[str, ...]:
        skip = {stem(w) for w in tokens(" ".join((item.brand, *item.categories)))}
        facts = [(k, v) for k, v in self._facts(item) if 2 <= self.df[v] <= self.max_df and not set(stems(v)) <= skip]
        ranked = sorted(facts, key=lambda kv: (SHOPPER_KINDS.index(kv[0]), self.df[kv[1]]))
        return tuple(dict.fromkeys(v for _k, v in ranked))[:MAX_FEATURES]

    def target(self, item: Item) -> Target:
        return target_view(item, self.of(item))


def target_view(item: Item, features: Sequence[str]) -> Target:
    """What the shopper is told about the item: every field that could say the title is left out
    (a category or brand that holds the whole title or TITLE_RUN of its words, such a feature)."""

    def safe(text: str) -> bool:
        return not title_leaks(text, item.title)

    categories = tuple(c for c in item.categories if safe(c))
    brand = item.brand if safe(item.brand) and not is_non_brand(item.brand) else ""
    kind = product_type(item)
    noun = kind.value if kind is not None and kind.field == "title" and safe(kind.value) and stem(kind.value) not in set(stems(brand)) else ""
    return Target(item.id, categories, brand, item.price, tuple(w for w in features if safe(w)), noun)


def brand_key(brand: str) -> str:
    """'Scotch®' and 'scotch' are one brand."""
    return " ".join(tokens(brand))


def same_maker(brand: str, other: str) -> bool:
    """One maker under two spellings of the brand field: "Epson" and "EPSON AMERICA, INC." (the
    words of one start the other), as a shopper reads them."""
    a, b = tokens(brand), tokens(other)
    n = min(len(a), len(b))
    return n > 0 and a[:n] == b[:n]


def _record_text(item: Item) -> str:
    return " ".join((item.title, " ".join(v for _n, v in item.attributes), item.description[:2000]))


def record_stems(item: Item) -> list[str]:
    return [stem(w) for w in tokens(_record_text(item))]


# --- the title guard ------------------------------------------------------------------------------


class TitleLeak(AssertionError):
    """A shopper message gave away the target's title."""


def title_leaks(message: str, title: str) -> bool:
    """Does the message hold the whole title or a run of TITLE_RUN consecutive words of it?"""
    said, words = tokens(message), tokens(title)
    if not words:
        return False
    if find_seq(said, words):
        return True
    return any(find_seq(said, words[i : i + TITLE_RUN]) for i in range(len(words) - TITLE_RUN + 1))


def check_no_title(message: str, title: str) -> str:
    if title_leaks(message, title):
        raise TitleLeak(f"shopper message {message!r} repeats the target's title")
    return message


class TitleGuard:
    """What a shopper may ask about the target's title without being told it: whether a message
    would give it away (`title_leaks`), or says a word of it the shopper does not know from its
    own view of the target. A shopper whose wording is not its own (an LLM's) checks it here."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._stems = frozenset(content_stems(title))

    def leaks(self, message: str) -> bool:
        return title_leaks(message, self._title)

    def words_beyond(self, message: str, known: str) -> list[str]:
        """Stems of the title's words in `message` that `known` (what the shopper may say) lacks."""
        allowed = set(stems(known))
        return [w for w in content_stems(message) if w in self._stems and w not in allowed]


# --- the shopper -------------------------------------------------------------------------------------


@dataclass
class Said:
    """What the shopper has asked for so far: the constraints a shown item must not break."""

    brand: str = ""
    avoid_brands: set[str] = field(default_factory=set)
    rejected_ids: set[str] = field(default_factory=set)
    price_max: float | None = None
    features: list[str] = field(default_factory=list)

    def broken_by(self, item: Item) -> list[str]:
        broken = []
        if self.brand and not same_maker(item.brand, self.brand):
            broken.append("brand")
        if brand_key(item.brand) and any(same_maker(item.brand, b) for b in self.avoid_brands):
            broken.append("rejected brand")
        if item.id in self.rejected_ids:
            broken.append("rejected item")
        if self.price_max is not None and item.price is not None and item.price > self.price_max:
            broken.append("price")
        return broken


class Shopper(ABC):
    """One simulated shopper for one conversation. A subclass decides what to say; `said` records
    the constraints it stated, which the eval checks every later answer against."""

    name = "shopper"

    def __init__(self) -> None:
        self.said = Said()
        self.guard: TitleGuard | None = None  # set by `simulate` for the conversation's target

    @abstractmethod
    def first_message(self, target: Target) -> str: ...

    @abstractmethod
    def react(self, shown: Sequence[Item], target: Target, turn: int) -> str | None:
        """The next message after seeing `shown` (best first), or None to stop (target found)."""


class ScriptedShopper(Shopper):
    """A shopper who knows what it wants but not the item's name. It opens with the kind of product
    (the target's category, else its title's head noun; vague or with one feature, see
    `first_message`), then says one new thing per turn, reacting to what it was shown:
    - a feature of the target's facts that not all shown items state ("One that is cross-cut,
      please."), the one most shown items lack first;
    - right after stating a feature, "I don't like the second one" for a shown item that lacks
      what it asked for (or breaks a constraint);
    - the target's brand only after it has rejected an item ("I'd prefer something from Fellowes."),
      then "not <brand>" for another shown brand;
    - "cheaper, under $x" where prices say the target is cheaper than everything shown;
    - else "Show me something else." (which rejects all it was shown, so the brand may follow)."""

    name = "scripted"

    def __init__(self, opening: str = "random") -> None:
        super().__init__()
        if opening not in OPENINGS:
            raise ValueError(f"opening must be one of {', '.join(OPENINGS)}, got {opening!r}")
        self.opening = opening
        self.last = ""
        self.dismissed = False

    def first_message(self, target: Target) -> str:
        """The kind of product (its category, else its title's head noun), vague or with one of its
        features ("I'm looking for cross-cut shredders"): half of the shoppers each, by the target's id.
        A record with neither a kind nor a feature gets an opening that names no domain."""
        specific = self.opening == "specific" or (self.opening == "random" and zlib.crc32(target.id.encode()) % 2 == 1)
        feature = next((f for f in target.features if not re.match(r"\d", f)), None) if specific else None
        if feature is not None:
            self.said.features.append(feature)
        if target.need:
            return f"I'm looking for {feature} {target.need}" if feature else f"I'm looking for {target.need}"
        return f"I'm looking for something {feature}" if feature else "What do you have?"

    def react(self, shown: Sequence[Item], target: Target, turn: int) -> str | None:
        if any(item.id == target.id for item in shown[:TOP_K]):
            return None
        steps = [self._feature, self._reject_item, self._ask_brand, self._avoid_brand, self._cheaper]
        if self.last == "feature":
            steps = [self._reject_item, *[s for s in steps if s != self._reject_item]]
        for step in steps:
            message = step(shown, target)
            if message:
                self.last = step.__name__.strip("_")
                return message
        self.last = "else"
        self.dismissed = True  # a rejection of everything shown: the brand may come next
        return "Show me something else."

    def _ask_brand(self, shown: Sequence[Item], target: Target) -> str | None:
        if not target.brand or self.said.brand or not (self.said.rejected_ids or self.dismissed):
            return None
        if shown and all(brand_key(i.brand) == brand_key(target.brand) for i in shown):
            return None
        self.said.brand = target.brand
        return f"I'd prefer something from {target.brand}."

    def _avoid_brand(self, shown: Sequence[Item], target: Target) -> str | None:
        if not self.said.brand:
            return None
        avoid = {brand_key(b) for b in self.said.avoid_brands} | {brand_key(target.brand)}
        other = next((i.brand for i in shown if brand_key(i.brand) and brand_key(i.brand) not in avoid and not is_non_brand(i.brand)), None)
        if other is None:
            return None
        self.said.avoid_brands.add(other)
        return f"Not {other}, please."

    def _cheaper(self, shown: Sequence[Item], target: Target) -> str | None:
        prices = [i.price for i in shown]
        if target.price is None or not prices or any(p is None for p in prices):
            return None
        bound = min(p for p in prices if p is not None)
        if target.price >= bound or (self.said.price_max is not None and bound >= self.said.price_max):
            return None
        self.said.price_max = bound
        return f"Something cheaper, under ${bound:.2f}, please."

    def _feature(self, shown: Sequence[Item], target: Target) -> str | None:
        best, best_lacking = None, 0
        for value in target.features:
            if value in self.said.features:
                continue
            lacking = sum(1 for i in shown if not has_feature(i, value)) if shown else 1
            if lacking > best_lacking:
                best, best_lacking = value, lacking
        if best is None:
            return None
        self.said.features.append(best)
        return feature_request(best)

    def _reject_item(self, shown: Sequence[Item], target: Target) -> str | None:
        for pos, item in enumerate(shown[: len(ORDINAL_WORDS)]):
            if item.id in self.said.rejected_ids:
                continue
            if self.said.broken_by(item) or any(not has_feature(item, f) for f in self.said.features):
                self.said.rejected_ids.add(item.id)
                return f"I don't like the {ORDINAL_WORDS[pos]} one."
        return None


def feature_request(value: str) -> str:
    """How the shopper asks for a feature: "One that is cross-cut, please.", "One with 8 sheets, please."."""
    pack = re.fullmatch(r"(\S+) pack", value)
    if pack:
        return f"A pack of {pack[1]}, please."
    if re.match(r"\d", value):
        return f"One with {value}, please."
    return f"One that is {value}, please."


SHOPPERS = ("scripted", "llm")  # evals/llm_shopper.py: the scripted decisions, phrased by an LLM
OPENINGS = ("random", "vague", "specific")


# --- the systems -----------------------------------------------------------------------------------


class Conversation(Protocol):
    def say(self, message: str) -> list[str]:
        """The ids shown in answer to `message`, best first."""


@dataclass
class System:
    name: str
    label: str
    start: Callable[[Sequence[str]], Conversation]  # a new conversation for a shopper with this history (oldest first)


class RetrievalConversation:
    """No dialogue state: each turn searches the messages so far, joined."""

    def __init__(self, searcher: Any, k: int = TOP_K) -> None:
        self.searcher, self.k = searcher, k
        self.messages: list[str] = []

    def say(self, message: str) -> list[str]:
        self.messages.append(message)
        return [h.item.id for h in self.searcher.search(" ".join(self.messages), self.k)]


class HistoryConversation:
    """No words: the ranking stage's order for the shopper's history, the next k each turn."""

    def __init__(self, recommender: Any, history: Sequence[str], k: int = TOP_K) -> None:
        self.recommender, self.history, self.k = recommender, list(history), k
        self.shown: list[str] = []

    def say(self, message: str) -> list[str]:
        from agent.recommend.pipeline import RecommendRequest

        req = RecommendRequest(history=self.history, exclude_ids=self.shown, k=self.k, rank_mode="none", with_reasons=False)
        ids = [r.item.id for r in self.recommender.recommend(req).items]
        self.shown += ids
        return ids


class AgentConversation:
    def __init__(self, agent: Any, catalog: str, history: Sequence[str] = ()) -> None:
        self.agent, self.catalog = agent, catalog
        self.session = agent.new_session(catalog, history=history)

    def say(self, message: str) -> list[str]:
        return [i.id for i in self.agent.turn(self.session, message, catalog=self.catalog).items]


def build_systems(agent: Any, catalog: str, baseline: Any = None, *, returning: bool = False) -> list[System]:
    """Retrieval only; for returning shoppers the history alone; the agent before #16's
    must-haves (`baseline`, when given); the agent (given the history when `returning`)."""
    recommender = agent.parts(catalog).recommender
    systems = [System("retrieval", "Retrieval only (hybrid search of the messages)", lambda history: RetrievalConversation(recommender.searcher))]
    if returning:
        stage = recommender.collab_name or "no ranking stage: similar items"
        systems.append(System("history", f"History only (ranking stage, no words; {stage})", lambda history: HistoryConversation(recommender, history)))
    given = "; given the history" if returning else ""
    if baseline is not None:
        systems.append(System("agent-before", f"Agent without must-have lifting (before #16; rank mode {baseline.rank_mode}{given})", lambda history: AgentConversation(baseline, catalog, history)))
    label = f"Agent (must-haves from facts lifted; rank mode {agent.rank_mode}{given})"
    systems.append(System("agent", label, lambda history: AgentConversation(agent, catalog, history)))
    return systems


def without_must_haves(agent: Any, catalog: str) -> Any:
    """The agent as it was before #16: the same dialogue, retrieval and ranking, but the features
    the shopper asked for do not lift the items whose record states them (the recommender gets
    no must-haves). Wraps this agent's recommender for `catalog`."""
    from dataclasses import replace

    rec = agent.parts(catalog).recommender
    original = rec.recommend

    def recommend(req: Any) -> Any:
        return original(replace(req, must_have=()))

    rec.recommend = recommend
    return agent


# --- one conversation --------------------------------------------------------------------------------


@dataclass
class Dialogue:
    user: str
    target: str
    messages: list[str] = field(default_factory=list)
    shown: list[list[str]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    success_turn: int | None = None
    violations: list[dict[str, Any]] = field(default_factory=list)
    out_of_catalog: list[str] = field(default_factory=list)
    error: str | None = None


def simulate(
    system: System, shopper: Shopper, item: Item, target: Target, items: Mapping[str, Item], max_turns: int, user: str = "", history: Sequence[str] = ()
) -> Dialogue:
    """Play one conversation; the title guard sees every message before the system does."""
    dialogue = Dialogue(user, target.id)
    conversation = system.start(history)
    shopper.guard = TitleGuard(item.title)
    message: str | None = shopper.first_message(target)
    turn = 0
    while message is not None and turn < max_turns:
        turn += 1
        dialogue.messages.append(check_no_title(message, item.title))
        t0 = time.perf_counter()
        shown_ids = [str(i) for i in conversation.say(message)][:TOP_K]
        dialogue.latency_ms.append((time.perf_counter() - t0) * 1e3)
        dialogue.shown.append(shown_ids)
        dialogue.out_of_catalog += [i for i in shown_ids if i not in items]
        shown = [items[i] for i in shown_ids if i in items]  # an unknown id has no record to react to
        for it in shown:
            broken = shopper.said.broken_by(it)
            if broken:
                dialogue.violations.append({"turn": turn, "item": it.id, "broken": broken})
        if target.id in shown_ids:
            dialogue.success_turn = turn
            break
        message = shopper.react(shown, target, turn)
    return dialogue


# --- the eval -----------------------------------------------------------------------------------------


@dataclass
class SimulateConfig:
    catalog: str = "amazon-office-2014"
    users: int = 20
    max_turns: int = 5
    seed: int = 0
    llm: bool = False  # the agent re-ranks with its LLM (settings' rank mode) instead of "none"
    shopper: str = "scripted"
    returning: bool = False  # shoppers come with their history (all their items but the target)
    baseline: bool = True  # also run the agent without must-have lifting
    out: Path = field(default_factory=lambda: Path("eval-out/simulate"))
    progress: bool = True


def summarise(dialogues: Sequence[Dialogue], max_turns: int) -> dict[str, Any]:
    n = len(dialogues)
    turns = [d.success_turn for d in dialogues if d.success_turn is not None]
    latencies = [ms for d in dialogues for ms in d.latency_ms]
    broken = Counter(b for d in dialogues for v in d.violations for b in v["broken"])
    ooc = [i for d in dialogues for i in d.out_of_catalog]
    return {
        "users": n,
        "success_by_turn": {t: rate(sum(1 for x in turns if x <= t), n) for t in range(1, max_turns + 1)},
        "success_rate": rate(len(turns), n),
        "successes": len(turns),
        "mean_turns_to_success": sum(turns) / len(turns) if turns else None,
        # over every shopper, one that never found its item counted as max_turns + 1 (comparable across systems)
        "mean_turns_all": (sum(turns) + (max_turns + 1) * (n - len(turns))) / n if n else None,
        "violations": sum(len(d.violations) for d in dialogues),
        "violations_by_kind": dict(sorted(broken.items())),
        "conversations_with_violations": sum(1 for d in dialogues if d.violations),
        "shown_items": sum(len(s) for d in dialogues for s in d.shown),
        "empty_answers": sum(1 for d in dialogues for s in d.shown if not s),
        "out_of_catalog": len(ooc),
        "out_of_catalog_examples": sorted(set(ooc))[:5],
        "errors": sum(1 for d in dialogues if d.error),
        "error_examples": [d.error for d in dialogues if d.error][:5],
        "turns": len(latencies),
        "latency": latency_summary(latencies),
    }


def make_agent(settings: Settings, cfg: SimulateConfig, store_dir: Path, *, searchers: dict[str, Any] | None = None, name: str = "sessions") -> Any:
    """The current agent, its sessions in a throw-away store (the eval leaves no sessions behind)."""
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    agent = Agent(settings, store=SessionStore(store_dir / f"{name}.sqlite"), rank_mode=None if cfg.llm else "none", build_index=True, searchers=searchers)
    agent.wait_for_stage(cfg.catalog)  # every simulated turn ranks with the full stage, as a warm server does
    return agent


def make_baseline(settings: Settings, cfg: SimulateConfig, agent: Any, store_dir: Path) -> Any:
    """A second agent on the same searcher, without must-have lifting (`without_must_haves`)."""
    searcher = agent.parts(cfg.catalog).recommender.searcher
    base = make_agent(settings, cfg, store_dir, searchers={cfg.catalog: searcher}, name="baseline")
    return without_must_haves(base, cfg.catalog)


@dataclass
class Shoppers:
    """Plays one conversation per (system, user): a fresh shopper, the same target view."""

    new_shopper: Callable[[], Shopper]
    features: FeatureWords
    items: Mapping[str, Item]
    max_turns: int

    def play(self, system: System, user: str, target_id: str, history: Sequence[str] = ()) -> Dialogue:
        item = self.items[target_id]
        try:
            return simulate(system, self.new_shopper(), item, self.features.target(item), self.items, self.max_turns, user, history)
        except TitleLeak:
            raise  # a bug in the shopper, not a result: the run stops
        except Exception as exc:  # an eval must finish and report what broke
            log.warning("%s failed for user %s: %s", system.name, user, exc)
            return Dialogue(user, target_id, error=f"{user}: {type(exc).__name__}: {exc}"[:300])


def make_shoppers(settings: Settings, cfg: SimulateConfig, items: Mapping[str, Item], features: FeatureWords, targets: Sequence[str], engine: Any = None) -> tuple[Callable[[], Shopper], Any]:
    """A new shopper per conversation, and for `llm` the `Phraser` its shoppers share (its
    openings for `targets` phrased in one batch; the engine is the settings' unless given)."""
    if cfg.shopper == "scripted":
        return ScriptedShopper, None
    if cfg.shopper == "llm":
        from evals.llm_shopper import LLMShopper, Phraser, prefetch_openings

        if engine is None:
            from agent.engines import make_engine

            phraser = Phraser(make_engine(settings), items, features, own_engine=True)
        else:
            phraser = Phraser(engine, items, features)
        prefetch_openings(phraser, [features.target(items[t]) for t in targets])
        return (lambda: LLMShopper(phraser)), phraser
    raise ValueError(f"unknown shopper {cfg.shopper!r}; use one of {', '.join(SHOPPERS)}")


def run_simulate_eval(
    settings: Settings, cfg: SimulateConfig, *, agent: Any = None, interactions: Mapping[str, Sequence[str]] | None = None, engine: Any = None
) -> dict[str, Any]:
    """Every system converses with the same shoppers; writes results.json and report.md to cfg.out.
    `engine`: the LLM shopper's engine (default: built from the settings)."""
    with tempfile.TemporaryDirectory(prefix="aisle-simulate-") as tmp:
        agent = agent or make_agent(settings, cfg, Path(tmp))
        baseline = make_baseline(settings, cfg, agent, Path(tmp)) if cfg.baseline else None
        return _run(settings, cfg, agent, interactions, baseline, engine)


def _run(settings: Settings, cfg: SimulateConfig, agent: Any, interactions: Mapping[str, Sequence[str]] | None, baseline: Any = None, engine: Any = None) -> dict[str, Any]:
    from retrieval.collab import leave_one_out, sample_users

    t_start = time.perf_counter()
    env = rep.environment()
    if interactions is None:
        from retrieval.registry import load_interactions

        interactions = load_interactions(settings, cfg.catalog)
    systems = build_systems(agent, cfg.catalog, baseline, returning=cfg.returning)
    items = agent.parts(cfg.catalog).recommender.catalog.items
    histories, targets = leave_one_out(interactions)
    # A returning shopper's history is never shown again, so a target they had bought before is out.
    eligible = [u for u, t in targets.items() if t in items and not (cfg.returning and t in histories[u])]
    users = sample_users(eligible, cfg.users, seed=cfg.seed)
    features = FeatureWords(items)
    new_shopper, phraser = make_shoppers(settings, cfg, items, features, [targets[u] for u in users], engine)
    shoppers = Shoppers(new_shopper, features, items, cfg.max_turns)
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    dialogues: dict[str, list[dict[str, Any]]] = {}
    for system in systems:
        t0 = time.perf_counter()
        played = [shoppers.play(system, user, targets[user], [i for i in histories[user] if i in items] if cfg.returning else ()) for user in tqdm(users, desc=system.label, unit="shopper", disable=not cfg.progress, leave=False)]
        seconds[system.name] = time.perf_counter() - t0
        results[system.name] = {"label": system.label, **summarise(played, cfg.max_turns)}
        dialogues[system.name] = [_transcript(d) for d in played]
    result: dict[str, Any] = {
        "kind": "simulate",
        "config": {
            "catalog": cfg.catalog,
            "catalog_items": len(items),
            "users_requested": cfg.users,
            "users_evaluated": len(users),
            "users_eligible": len(eligible),
            "sampled_users_sha256": rep.ids_hash(users),
            "seed": cfg.seed,
            "max_turns": cfg.max_turns,
            "top_k": TOP_K,
            "shopper": cfg.shopper,
            "returning": cfg.returning,
            "agent_rank_mode": agent.rank_mode,
            "llm": cfg.llm,
            "git": rep.git_state(),
            **{f"env_{k}": v for k, v in env.items()},
        },
        "systems": results,
        "dialogues": dialogues,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "notes": [],
    }
    if phraser is not None:
        result["phrasing"] = phraser.summary()
        phraser.close()
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_simulate_outputs(result, cfg.out)
    return result


def _transcript(d: Dialogue) -> dict[str, Any]:
    return {"user": d.user, "target": d.target, "success_turn": d.success_turn, "turns": [{"shopper": m, "shown": s} for m, s in zip(d.messages, d.shown)], "violations": d.violations, "error": d.error}


# --- outputs -------------------------------------------------------------------------------------------


def write_simulate_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plots = {"success_by_turn": lambda path: plot_success(result, path)}
    result["figures"] = rep.draw_figures(plots, out, result["notes"])
    rep.write_json(result, out)
    (out / rep.REPORT_FILE).write_text(simulate_markdown(result), encoding="utf-8")


def plot_success(result: dict[str, Any], path: Path) -> Path:
    plt = rep._pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for s in result["systems"].values():
        xs = [int(t) for t in s["success_by_turn"]]
        ax.plot(xs, [s["success_by_turn"][t] or 0.0 for t in s["success_by_turn"]], marker="o", linewidth=2, label=s["label"])
    ax.set_xticks(range(1, result["config"]["max_turns"] + 1))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("turn")
    ax.set_ylabel(f"share of shoppers with the target in the top {TOP_K}")
    ax.set_title(f"Simulated shoppers: success by turn ({result['config']['users_evaluated']} users)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summary_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    turns = range(1, result["config"]["max_turns"] + 1)
    header = ["system", *[f"success@{t}" for t in turns], "mean turns", "mean turns (fail = max+1)", "violations", "out-of-catalog", "empty answers", "errors", "p50/turn", "p95/turn", "seconds"]
    rows = []
    for name, s in result["systems"].items():
        by_turn = s["success_by_turn"]
        rows.append([
            s["label"], *[rep.pct(by_turn.get(t, by_turn.get(str(t)))) for t in turns], rep.fmt(s["mean_turns_to_success"], 2), rep.fmt(s.get("mean_turns_all"), 2), s["violations"], s["out_of_catalog"], s["empty_answers"], s["errors"],
            rep.ms(s["latency"]["p50_ms"]), rep.ms(s["latency"]["p95_ms"]), result["seconds"].get(name),
        ])
    return header, rows


def simulate_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    header, rows = summary_rows(result)
    lines = [
        "# Simulated-shopper eval", "",
        f"{cfg['users_evaluated']} of {cfg['users_eligible']} eligible users of `{cfg['catalog']}` ({cfg['catalog_items']} items; seed {cfg['seed']}, hash `{cfg['sampled_users_sha256']}`), "
        f"{'returning shoppers (the agent and the history-only system get all their items but the target)' if cfg.get('returning') else 'new shoppers (no history)'}, "
        f"up to {cfg['max_turns']} shopper turns each; success = the held-out item among the top {cfg['top_k']} shown. Shopper `{cfg['shopper']}`; "
        f"agent rank mode `{cfg['agent_rank_mode']}`. Total {result['total_seconds']} s on {cfg.get('env_cpu_count')} CPU cores.", "",
        rep.md_table(header, rows), "",
        "Mean turns are over the successful conversations; “fail = max+1” counts a shopper who never saw its item as max turns + 1, "
        "so systems with different success rates compare. A violation is a shown item that breaks something the shopper said "
        "(the brand it asked for, a brand or item it rejected, its price bound).", "",
        rep.md_table(["system", "violations by kind", "conversations with a violation", "shown items"],
                     [[s["label"], ", ".join(f"{k} ×{v}" for k, v in s["violations_by_kind"].items()) or "–", s["conversations_with_violations"], s["shown_items"]] for s in result["systems"].values()]), "",
    ]
    if "success_by_turn" in result.get("figures", {}):
        lines += ["![Success by turn](success_by_turn.png)", ""]
    for name, examples in result.get("dialogues", {}).items():
        lines += [f"## Example conversations: {result['systems'][name]['label']}", ""]
        for ex in examples[:3]:
            said = " → ".join(f"“{t['shopper']}”" for t in ex["turns"])
            lines.append(f"- target `{ex['target']}`: {said}; success at turn {ex['success_turn'] or '–'}")
        lines.append("")
    lines += phrasing_markdown(result.get("phrasing"))
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    lines += ["## Configuration", "", rep.md_table(["key", "value"], rep.config_rows(cfg)), ""]
    return "\n".join(lines)


def phrasing_line(p: dict[str, Any]) -> str:
    lat = p["llm_latency_per_turn"]
    batch = p["opening_batch"]
    return (
        f"LLM shopper ({p['engine']} {p['model']}, prompt {p['prompt']}): kept its phrasing for {p['llm_kept']} of {p['messages']} messages ({rep.pct(p['kept_share'])}), "
        f"else the scripted text; openings: {batch['prompts']} prompts in one batch, {batch['seconds']} s; follow-ups: {lat['n']} calls, p50 {rep.ms(lat['p50_ms'])}, p95 {rep.ms(lat['p95_ms'])} per turn"
    )


def phrasing_markdown(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    lines = ["## Shopper phrasing", "", phrasing_line(p) + ".", ""]
    if p["fallbacks_by_reason"]:
        lines += ["Scripted text sent instead, by reason: " + ", ".join(f"{k} ×{v}" for k, v in p["fallbacks_by_reason"].items()) + ".", ""]
    rows = [[e["step"], e["script"], e["llm"] or "–", e["problem"] or "kept"] for e in p["examples"]]
    return lines + [rep.md_table(["step", "scripted", "LLM phrasing", "check"], rows), ""]


# --- CLI -------------------------------------------------------------------------------------------------


def simulate_command(
    ctx: typer.Context,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="A catalog with interactions (the targets are held-out items; default: AISLE_CATALOG).")] = None,
    users: Annotated[int, typer.Option("--users", "-n", min=1, help="Simulated shoppers (seeded sample of users).")] = 20,
    max_turns: Annotated[int, typer.Option("--max-turns", min=1, max=20, help="Shopper turns per conversation.")] = 5,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: AISLE_SEED).")] = None,
    no_categories: Annotated[
        bool, typer.Option("--no-categories", help="Run on <catalog>-nocat: the catalog without categories, built (or updated) in this home by the eval; train its models with aisle train models --catalog <catalog>-nocat.")
    ] = False,
    interactions: Annotated[Optional[Path], typer.Option("--interactions", help="With --no-categories: the variant's histories (JSON {user: [item ids]}) when the catalog has none.")] = None,
    returning: Annotated[bool, typer.Option("--returning", help="Returning shoppers: the agent gets each shopper's history (all their items but the target); adds the history-only baseline.")] = False,
    llm: Annotated[bool, typer.Option("--llm", help="Let the agent re-rank with its LLM (slow on CPU); default rank mode none.")] = False,
    engine: Annotated[Optional[str], typer.Option("--engine", help="LLM engine with --llm: auto | transformers | llamacpp | vllm | openai.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default eval-out/simulate-<timestamp>, git-ignored).")] = None,
    shopper: Annotated[str, typer.Option("--shopper", help="scripted: the script's own words; llm: the same decisions phrased by the LLM engine (--engine; checked, the scripted text when a phrasing fails).")] = "scripted",
) -> None:
    """Simulated shoppers look for their held-out item: retrieval only vs the current agent."""
    from evals.ranking import eval_options

    settings, _prompts = eval_options(ctx, engine, None, ())
    if shopper not in SHOPPERS:
        raise typer.BadParameter(f"unknown shopper {shopper!r}; use {' or '.join(SHOPPERS)}", param_hint="--shopper")
    catalog = catalog or settings.catalog
    if no_categories:
        from evals.variants import without_categories

        catalog = without_categories(settings, catalog, interactions=interactions)
    elif interactions is not None:
        raise typer.BadParameter("--interactions goes with --no-categories (a catalog's own history comes from the registry)", param_hint="--interactions")
    out = out or Path("eval-out") / f"simulate-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = SimulateConfig(catalog=catalog, users=users, max_turns=max_turns, seed=settings.seed if seed is None else seed, llm=llm, shopper=shopper, returning=returning, out=out)
    result = run_simulate_eval(settings, cfg)
    header, rows = summary_rows(result)
    typer.echo(rep.md_table(header, rows))
    if "phrasing" in result:
        typer.echo("\n" + phrasing_line(result["phrasing"]))
    typer.echo(f"\nwrote {out / rep.RESULTS_FILE}, {out / rep.REPORT_FILE} ({result['total_seconds']} s)")


__all__ = ["ScriptedShopper", "Shopper", "SimulateConfig", "System", "Target", "TitleGuard", "TitleLeak", "check_no_title", "run_simulate_eval", "simulate", "simulate_command", "title_leaks"]
