"""The LLM shopper: the script decides, the LLM phrases, and a phrasing that changes what the
script said (leaks the title, adds a brand, a number or a feature, drops the feature) is replaced
by the scripted text."""

from __future__ import annotations

import re

import pytest

from agent.engines.base import EngineUnavailable
from evals.llm_shopper import LLMShopper, Phraser, prefetch_openings
from evals.simulate import FeatureWords, ScriptedShopper, SimulateConfig, System, TitleGuard, run_simulate_eval, simulate, title_leaks
from tests.fast.conftest import ScriptedEngine, make_catalog

# A hardware shop with no categories: what a shopper asks for comes from the records alone.
HARDWARE_ROWS = [
    {"id": "h1", "title": "Torque 20V Cordless Drill with Battery", "brand": "Torque", "price": 89.0, "description": "A cordless drill, rechargeable battery included."},
    {"id": "h2", "title": "Torque Corded Hammer Drill, 7 Amp", "brand": "Torque", "price": 59.0, "description": "Corded hammer drill for masonry."},
    {"id": "h3", "title": "Nailco Steel Claw Hammer, 16 oz", "brand": "Nailco", "price": 19.99, "description": "Forged steel claw hammer with a rubber grip."},
    {"id": "h4", "title": "Nailco Fiberglass Claw Hammer, 20 oz", "brand": "Nailco", "price": 24.99, "description": "A fiberglass claw hammer."},
    {"id": "h5", "title": "Brickline Steel Framing Hammer", "brand": "Brickline", "price": 29.99, "description": "Steel framing hammer, milled face."},
    {"id": "h6", "title": "Brickline Fiberglass Sledge Hammer", "brand": "Brickline", "price": 39.99, "description": "Fiberglass handle sledge hammer."},
    {"id": "h7", "title": "Brickline Cordless Drill Kit", "brand": "Brickline", "price": 99.0, "description": "Cordless drill with two batteries."},
]
ITEMS = make_catalog(HARDWARE_ROWS, name="hardware").items
FEATURES = FeatureWords(ITEMS)
MESSAGE = re.compile(r"Message: <<<(.*?)>>>")


def scripted_message(messages) -> str:
    return MESSAGE.findall(messages[-1]["content"])[-1]


def faithful(messages) -> str:
    """A well-behaved model: the same content in other words."""
    text = scripted_message(messages)
    rules = [
        (r"I'm looking for (.+)", r"Hi, do you have any \1?"),
        (r"One that is (.+), please\.", r"Got one that's \1? It's for weekend jobs."),
        (r"I don't like the (\w+) one\.", r"Hmm, not the \1 one."),
        (r"I'd prefer something from (.+)\.", r"Anything from \1?"),
        (r"Not (.+), please\.", r"Not \1 though."),
        (r"Something cheaper, under (\$[\d.]+), please\.", r"Anything cheaper, under \1?"),
        (r"Show me something else\.", "Can I see other ones?"),
    ]
    for pattern, repl in rules:
        if re.fullmatch(pattern, text):
            return re.sub(pattern, repl, text)
    return text


class Answers:
    """A system that shows fixed id lists turn by turn and records what it was told."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers, self.heard = answers, []

    def system(self) -> System:
        return System("fixed", "Fixed answers", lambda history=(): self)

    def say(self, message: str) -> list[str]:
        self.heard.append(message)
        return self.answers[min(len(self.heard), len(self.answers)) - 1]


# Shown to a shopper after the steel Nailco hammer h3: every kind of step once, "the second one" once.
ANSWERS = [["h5", "h4"], ["h5"], ["h5", "h4"], ["h4"], ["h6"], ["h6"], ["h6"], ["h3"]]


def play(shopper, target_id: str = "h3", answers=ANSWERS):
    fake = Answers(answers)
    dialogue = simulate(fake.system(), shopper, ITEMS[target_id], FEATURES.target(ITEMS[target_id]), ITEMS, max_turns=8)
    return dialogue, fake.heard


def test_a_faithful_phrasing_is_sent_and_the_decisions_stay_the_scripts():
    engine = ScriptedEngine(text=faithful)
    phraser = Phraser(engine, ITEMS, FEATURES)
    llm = LLMShopper(phraser, opening="specific")
    scripted = ScriptedShopper("specific")
    d_llm, heard = play(llm)
    d_script, script_heard = play(scripted)
    assert heard == [faithful([{"content": f"Message: <<<{m}>>>"}]) for m in script_heard]
    assert len(heard) == len(script_heard) == 8 and not set(heard) & set(script_heard)
    assert d_llm.success_turn == 8
    assert llm.said == scripted.said  # the gold the violation checks use is the script's
    assert d_llm.violations == d_script.violations and d_llm.success_turn == d_script.success_turn
    summary = phraser.summary()
    assert summary["messages"] == summary["llm_kept"] == len(heard) and summary["kept_share"] == 1.0
    target_title = ITEMS["h3"].title
    for _kind, messages in engine.calls:  # the model never sees the target's record
        prompt = " ".join(m["content"] for m in messages)
        assert not title_leaks(prompt, target_title) and "Forged" not in prompt and "19.99" not in prompt


BAD = [
    ("opening", "I'm looking for steel hammer", "Do you have the Nailco Steel Claw Hammer?", "title words"),
    ("opening", "I'm looking for steel hammer", "A steel claw hammer, please.", "title words"),  # "claw": a title word the shopper never said
    ("opening", "I'm looking for steel hammer", "Any steel hammer from Brickline?", "brand"),
    ("opening", "I'm looking for steel hammer", "Show me hammers.", "dropped content"),
    ("opening", "I'm looking for steel hammer", "A steel hammer under $30, please.", "number"),
    ("opening", "I'm looking for steel hammer", "A cheap steel hammer, please.", "price talk"),
    ("opening", "I'm looking for steel hammer", "A cordless steel hammer, please.", "new feature"),
    ("opening", "I'm looking for steel hammer", "", "empty or too long"),
    ("opening", "I'm looking for steel hammer", "A steel hammer that's waterproof?", "copied the example"),
    ("opening", "I'm looking for steel hammer", "I'm looking for a steel hammer. I'm looking for it.", "repetition"),
    ("reject", "I don't like the second one.", "I don't like the first one.", "ordinal"),
    ("reject", "I don't like the second one.", "I like the second one.", "negation"),
    ("brand", "I'd prefer something from Nailco.", "Anything from Nailco or Torque?", "brand"),
    ("brand", "I'd prefer something from Nailco.", "Anything from a good maker?", "dropped content"),
    ("cheaper", "Something cheaper, under $24.99, please.", "Something cheaper, under $20?", "number"),
    ("avoid", "Not Brickline, please.", "Brickline, please.", "negation"),
    ("else", "Show me something else.", "Show me the third one.", "ordinal"),
]


@pytest.mark.parametrize(("step", "script", "llm", "problem"), BAD)
def test_a_phrasing_that_changes_the_content_is_replaced_by_the_scripted_text(step, script, llm, problem):
    engine = ScriptedEngine(text=lambda messages: llm if scripted_message(messages) == script else faithful(messages))
    phraser = Phraser(engine, ITEMS, FEATURES)
    _dialogue, heard = play(LLMShopper(phraser, opening="specific"))
    assert script in heard and llm not in heard
    summary = phraser.summary()
    assert summary["fallbacks_by_reason"] == {problem: 1}
    assert summary["llm_kept"] == summary["messages"] - 1 and 0 < summary["kept_share"] < 1
    assert any(e["problem"] == problem and e["llm"] == llm and e["sent"] == script for e in summary["examples"])


def test_an_engine_error_sends_the_scripted_text_and_counts_it():
    phraser = Phraser(ScriptedEngine(raise_error=EngineUnavailable("down")), ITEMS, FEATURES)
    _dialogue, heard = play(LLMShopper(phraser, opening="specific"))
    _d, script_heard = play(ScriptedShopper("specific"))
    assert heard == script_heard
    assert phraser.summary()["fallbacks_by_reason"] == {"engine error": len(heard)} and phraser.kept == 0


def test_a_run_on_answer_is_cut_to_its_first_sentences():
    from evals.llm_shopper import clean

    assert clean('Shopper: "Any steel hammer? Mine broke. Also I like red. And more."\nAssistant: sure') == "Any steel hammer? Mine broke."


def test_the_phrasing_is_checked_against_the_targets_title_without_the_shopper_reading_it():
    guard = TitleGuard("Nailco Steel Claw Hammer, 16 oz")
    assert guard.leaks("the nailco steel claw hammer please") and not guard.leaks("a steel hammer")
    assert guard.words_beyond("a steel claw hammer", "I'm looking for steel hammer") == ["claw"]
    with pytest.raises(RuntimeError, match="title guard"):
        LLMShopper(Phraser(ScriptedEngine(), ITEMS, FEATURES)).first_message(FEATURES.target(ITEMS["h3"]))


def test_the_openings_are_phrased_in_one_batch():
    engine = ScriptedEngine(text=faithful)
    phraser = Phraser(engine, ITEMS, FEATURES)
    targets = [FEATURES.target(ITEMS[i]) for i in ("h1", "h3", "h5")]
    prefetch_openings(phraser, targets, opening="specific")
    assert [(kind, len(convs)) for kind, convs in engine.calls] == [("batch", 2)]  # h3 and h5 open alike: one prompt
    for target_id in ("h1", "h3", "h5"):
        play(LLMShopper(phraser, opening="specific"), target_id, answers=[[target_id]])  # found at once: only the opening is said
    assert len(engine.calls) == 1 and phraser.summary()["opening_batch"]["prompts"] == 2 and phraser.kept == 3


def test_the_eval_runs_with_the_llm_shopper_and_reports_its_phrasing(tiny_agent, fast_settings, tmp_path):
    engine = ScriptedEngine(text=faithful)
    interactions = {"u1": ["s1", "d2"], "u2": ["p1", "l2"], "u3": ["d1", "s2"], "u4": ["l1", "p3"]}
    cfg = SimulateConfig(catalog="tiny-shop", users=10, max_turns=3, shopper="llm", baseline=False, out=tmp_path / "out", progress=False)
    result = run_simulate_eval(fast_settings, cfg, agent=tiny_agent(rank_mode="none"), interactions=interactions, engine=engine)
    assert engine.calls[0][0] == "batch" and len(engine.calls[0][1]) == 4
    assert [k for k, _ in engine.calls[1:]] == ["chat"] * (len(engine.calls) - 1)
    p = result["phrasing"]
    assert p["messages"] == sum(s["turns"] for s in result["systems"].values()) and p["kept_share"] is not None
    assert p["llm_latency_per_turn"]["n"] == len(engine.calls) - 1
    openings = {name: [d["turns"][0]["shopper"] for d in ds] for name, ds in result["dialogues"].items()}
    assert openings["retrieval"] == openings["agent"] and all(m.startswith("Hi, do you have") for m in openings["agent"])
    assert result["config"]["shopper"] == "llm" and "Shopper phrasing" in (tmp_path / "out" / "report.md").read_text()
