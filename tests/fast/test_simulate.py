"""The simulated-shopper eval: the shopper never gives the title away, and the counts are right."""

from __future__ import annotations

import dataclasses
import json

import pytest

from evals.simulate import (
    FeatureWords,
    ScriptedShopper,
    SimulateConfig,
    System,
    Target,
    TitleLeak,
    check_no_title,
    run_simulate_eval,
    simulate,
    summarise,
    target_view,
    title_leaks,
)
from tests.fast.conftest import SHOP_ROWS, make_catalog

CATALOG = make_catalog(SHOP_ROWS, name="tiny-shop")
ITEMS = CATALOG.items


class Scripted:
    """A system that shows fixed id lists turn by turn and records what it was told."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers = answers
        self.heard: list[str] = []

    def system(self) -> System:
        def start(history=()) -> Scripted:
            return self

        return System("scripted", "Scripted answers", start)

    def say(self, message: str) -> list[str]:
        self.heard.append(message)
        return self.answers[min(len(self.heard), len(self.answers)) - 1]


def target_of(item_id: str) -> Target:
    return FeatureWords(ITEMS).target(ITEMS[item_id])


def play(target_id: str, answers: list[list[str]], max_turns: int = 5):
    fake = Scripted(answers)
    shopper = ScriptedShopper()
    dialogue = simulate(fake.system(), shopper, ITEMS[target_id], target_of(target_id), ITEMS, max_turns)
    return dialogue, fake, shopper


def test_the_shopper_never_sees_or_says_the_title():
    assert "title" not in {f.name for f in dataclasses.fields(Target)}
    for row in SHOP_ROWS:
        target = target_of(row["id"])
        assert row["title"] not in repr(target)
        others = [i for i in ITEMS if i != row["id"]]
        dialogue, fake, _shopper = play(row["id"], [others[k : k + 5] for k in range(0, 15, 3)])
        assert dialogue.success_turn is None
        assert len(fake.heard) == 5
        for message in fake.heard:
            assert not title_leaks(message, row["title"]), message
            assert row["title"].lower() not in message.lower()


def test_the_title_guard_catches_a_four_word_run_and_the_whole_title():
    title = "Fellowes Cross-Cut Paper Shredder, 8 sheet"
    with pytest.raises(TitleLeak):
        check_no_title("I want a cross cut paper shredder", title)
    with pytest.raises(TitleLeak):
        check_no_title("Brother P-touch please", "Brother P-touch")
    assert check_no_title("I'm looking for shredders", title)


def test_success_is_counted_at_the_turn_the_target_is_shown():
    dialogue, fake, _ = play("d2", [["d1", "d3"], ["d4", "d1"], ["d1", "d2", "d3"], ["d2"]])
    assert dialogue.success_turn == 3
    assert len(fake.heard) == 3  # the shopper stops once the target is shown
    summary = summarise([dialogue, play("d2", [["d1"]])[0]], max_turns=5)
    assert summary["success_by_turn"] == {1: 0.0, 2: 0.0, 3: 0.5, 4: 0.5, 5: 0.5}
    assert summary["mean_turns_to_success"] == 3
    assert summary["turns"] == 3 + 5


def test_the_target_below_the_top_five_is_no_success():
    dialogue, _, _ = play("d2", [["s1", "s2", "s3", "s4", "s5", "d2"]], max_turns=2)
    assert dialogue.success_turn is None


def test_a_shown_id_outside_the_catalog_is_counted():
    dialogue, _, _ = play("d2", [["d1", "no-such-item"], ["d2"]])
    assert dialogue.out_of_catalog == ["no-such-item"]
    assert summarise([dialogue], 5)["out_of_catalog"] == 1


def test_an_item_of_a_rejected_brand_is_a_violation():
    """A shopper with no feature to ask for dismisses the list, then names the brand, then rejects
    what breaks it; every later shown item that breaks a stated constraint is a violation."""
    item = ITEMS["d2"]
    target = dataclasses.replace(target_of("d2"), features=())
    fake = Scripted([["d1", "d3"], ["d1", "d3"], ["d4"], ["d4"]])
    shopper = ScriptedShopper()
    dialogue = simulate(fake.system(), shopper, item, target, ITEMS, max_turns=4)
    assert fake.heard[1:] == ["Show me something else.", "I'd prefer something from AmazonBasics.", "I don't like the first one."]
    assert [v["broken"] for v in dialogue.violations] == [["brand"], ["brand", "rejected item"]]
    assert summarise([dialogue], 5)["violations_by_kind"] == {"brand": 2, "rejected item": 1}
    avoid = ScriptedShopper()
    avoid.said.brand = "AmazonBasics"
    assert avoid.react([ITEMS["d2"], ITEMS["d1"]], dataclasses.replace(target, id="other"), 1) == "I don't like the second one."


def test_the_shopper_asks_for_the_targets_facts_and_the_brand_only_after_a_rejection():
    target = target_of("d2")  # AmazonBasics Quiet Paper Shredder, 12 sheet; quiet cross-cut
    assert "quiet" in target.features and "cross-cut" in target.features
    shopper = ScriptedShopper()
    shown = [ITEMS["d1"], ITEMS["d3"]]  # cross-cut Fellowes, strip-cut Aurora: neither says quiet
    assert shopper.react(shown, target, 1) == "One that is quiet, please."  # lacked by both shown
    assert shopper.react(shown, target, 2) == "I don't like the first one."  # d1 lacks what it asked for
    assert shopper.react([ITEMS["d3"], ITEMS["d4"]], target, 3) == "One that is cross-cut, please."
    assert shopper.said.brand == ""  # the brand comes only after rejecting (the feature went first)
    assert shopper.react([ITEMS["d3"], ITEMS["d4"]], target, 4) == "I don't like the first one."
    assert shopper.react([ITEMS["d4"]], target, 5) == "I don't like the first one."
    assert shopper.react([ITEMS["p1"]], target, 6) == "I don't like the first one."
    assert shopper.react([], target, 7) == "I'd prefer something from AmazonBasics."
    from evals.simulate import feature_request

    assert feature_request("12 pack") == "A pack of 12, please."
    assert feature_request("8 sheets") == "One with 8 sheets, please."


def test_first_message_is_the_category_and_cheaper_follows_prices():
    shopper = ScriptedShopper("vague")
    target = target_of("s3")  # Swingline, $6.49
    assert shopper.first_message(target) == "I'm looking for staplers"
    assert shopper.react([ITEMS["s1"], ITEMS["s5"]], target, 1) == "Something cheaper, under $24.50, please."
    assert shopper.said.price_max == 24.50
    assert "cheaper" not in (shopper.react([ITEMS["s1"], ITEMS["s5"]], target, 2) or "")  # the same bound is not asked twice


def test_the_eval_runs_end_to_end_on_the_tiny_shop(tiny_agent, fast_settings, tmp_path):
    agent = tiny_agent(rank_mode="none")
    interactions = {"u1": ["s1", "d2"], "u2": ["p1", "l2"], "u3": ["d1", "s2"], "u4": ["l1", "p3"], "u5": ["s4"]}
    cfg = SimulateConfig(catalog="tiny-shop", users=10, max_turns=3, out=tmp_path / "out", progress=False)
    result = run_simulate_eval(fast_settings, cfg, agent=agent, interactions=interactions)
    assert set(result["systems"]) == {"retrieval", "agent-before", "agent"}
    assert result["config"]["users_evaluated"] == 4  # u5 has nothing to hold out
    for s in result["systems"].values():
        assert s["users"] == 4 and s["errors"] == 0, s["error_examples"]
        assert s["out_of_catalog"] == 0
        assert 0.0 <= s["success_by_turn"][3] <= 1.0
        assert s["latency"]["n"] == s["turns"] > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["kind"] == "simulate"
    assert "Simulated-shopper eval" in (tmp_path / "out" / "report.md").read_text()



def test_the_agent_reads_the_shoppers_phrasings(tiny_agent):
    """Every kind of scripted message sets the constraint it means in the agent's dialogue state
    (else the eval would measure the phrasing, not the agent)."""
    agent = tiny_agent(rank_mode="none")
    session = agent.new_session("tiny-shop")

    def say(message: str):
        return agent.turn(session, message, catalog="tiny-shop")

    first = say(ScriptedShopper("vague").first_message(target_of("d2")))
    assert first.constraints["need"] == "shredders" and len(first.items) >= 2
    assert say("I'd prefer something from AmazonBasics.").constraints["brands"] == ["AmazonBasics"]
    session = agent.new_session("tiny-shop")
    shown = say("I'm looking for shredders").items
    assert say("I don't like the second one.").constraints["rejected"] == [shown[1].id]
    assert say("Not Fellowes, please.").constraints["avoid_brands"] == ["Fellowes"]
    assert say("Something cheaper, under $50.00, please.").constraints["price_max"] == 50.0
    from evals.simulate import feature_request

    state = say(feature_request("quiet")).constraints
    assert state["features"] == ["quiet"] and "quiet" in state["need"] and "shredders" in state["need"]
    state = say(feature_request("12 pack")).constraints
    assert "shredders" in state["need"] and "12 pack" in state["features"] and "pack" not in state["need"]


def test_a_field_that_would_give_the_title_away_is_not_told():
    from retrieval.catalog import Item

    short = Item("x1", "Label Makers", brand="Acme", categories=("Office", "Label Makers"))
    target = target_view(short, ("label", "acme"))
    assert target.categories == ("Office",) and target.brand == "Acme"
    assert target.features == ("label", "acme")  # one word of a two-word title is not the title
    long_brand = Item("x2", "Acme Office Products Group Label Maker", brand="Acme Office Products Group", categories=("Office", "Label Makers"))
    assert target_view(long_brand, ()).brand == ""
    for item in (short, long_brand):
        target = target_view(item, ())
        assert not title_leaks(ScriptedShopper().first_message(target), item.title)


def test_brands_compare_without_marks_and_a_qualifier_category_reads_with_its_parent():
    from evals.simulate import Said
    from retrieval.catalog import Item

    said = Said(brand="Scotch®")
    assert said.broken_by(Item("a", "Tape", brand="Scotch")) == []
    assert said.broken_by(Item("b", "Tape", brand="3M")) == ["brand"]
    assert Said(brand="Epson").broken_by(Item("c", "Ink", brand="EPSON AMERICA, INC.")) == []  # one maker, two spellings
    assert Said(avoid_brands={"Epson"}).broken_by(Item("d", "Ink", brand="Epson America")) == ["rejected brand"]
    assert Said(brand="Epson").broken_by(Item("e", "Ink", brand="")) == ["brand"]
    target = Target("x", ("Office Electronics", "Calculators", "Basic"), "Casio", None, ())
    assert ScriptedShopper("vague").first_message(target) == "I'm looking for basic calculators"


# A shop from another domain, with no categories: groceries and hardware.
OTHER_ROWS = [
    {"id": "g1", "title": "Harvest Farms Organic Rolled Oats, 32 oz", "brand": "Harvest Farms", "price": 5.49, "description": "Whole grain rolled oats, organic."},
    {"id": "g2", "title": "Harvest Farms Steel Cut Oats, 24 oz", "brand": "Harvest Farms", "price": 4.99, "description": "Steel cut oats for a hearty breakfast."},
    {"id": "g3", "title": "Bramble Wildflower Honey, 12 oz Jar", "brand": "Bramble", "price": 7.99, "description": "Raw wildflower honey in a glass jar."},
    {"id": "g4", "title": "Bramble Clover Honey Squeeze Bottle", "brand": "Bramble", "price": 6.49, "description": "Clover honey in a plastic squeeze bottle."},
    {"id": "h1", "title": "Torque 20V Cordless Drill with Battery", "brand": "Torque", "price": 89.0, "description": "A cordless drill, rechargeable battery included."},
    {"id": "h2", "title": "Torque Corded Hammer Drill, 7 Amp", "brand": "Torque", "price": 59.0, "description": "Corded hammer drill for masonry."},
    {"id": "h3", "title": "Nailco Steel Claw Hammer, 16 oz", "brand": "Nailco", "price": 19.99, "description": "Forged steel claw hammer with a rubber grip."},
    {"id": "h4", "title": "Nailco Fiberglass Claw Hammer, 20 oz", "brand": "Nailco", "price": 24.99, "description": "A fiberglass claw hammer."},
]


def test_openings_come_from_the_record_and_name_no_other_domain():
    """On a catalog with no categories, the opening names what the target is (its title's head
    noun), never a word the catalog does not use ("office"), and never the title or brand."""
    from agent.text import content_stems, stems

    catalog = make_catalog(OTHER_ROWS, name="pantry-and-tools")
    items = catalog.items
    words = {w for it in items.values() for w in stems(f"{it.title} {it.description}")}
    template = set(stems("I'm looking for something what do you have"))
    features = FeatureWords(items)
    openings = {}
    for opening in ("vague", "specific", "random"):
        for item_id, item in items.items():
            target = features.target(item)
            message = ScriptedShopper(opening).first_message(target)
            assert not title_leaks(message, item.title) and (not target.brand or target.brand not in message)
            assert set(content_stems(message)) - template <= words, message
            assert "office" not in message.lower()
            openings[(opening, item_id)] = message
    assert openings[("vague", "g1")] == "I'm looking for oats" and openings[("vague", "h3")] == "I'm looking for hammer"
    assert openings[("vague", "g3")] == "I'm looking for honey"
    assert any(openings[("specific", i)] != openings[("vague", i)] for i in items)
    assert len({openings[("random", i)] == openings[("vague", i)] for i in items}) == 2  # both kinds occur


def test_the_simulator_plays_a_catalog_from_another_domain_end_to_end():
    catalog = make_catalog(OTHER_ROWS, name="pantry-and-tools")
    items = catalog.items
    features = FeatureWords(items)
    for item_id in items:
        fake = Scripted([[i for i in items if i != item_id][:5]])
        dialogue = simulate(fake.system(), ScriptedShopper(), items[item_id], features.target(items[item_id]), items, 4)
        assert dialogue.success_turn is None and len(fake.heard) == 4 and all("office" not in m.lower() for m in fake.heard)


def test_returning_shoppers_bring_their_history_to_the_agent_and_the_history_baseline(tiny_agent, fast_settings, tmp_path):
    """--returning: the agent's session holds all the shopper's items but the target, none of them is
    shown again, and the history-only system answers from the history with no words."""
    agent = tiny_agent(rank_mode="none")
    interactions = {"u1": ["s1", "s3", "s2"], "u2": ["p1", "p3", "p2"], "u3": ["d1", "d3", "d2"], "u4": ["l1", "l3", "l2"], "u5": ["s4", "s4"]}
    cfg = SimulateConfig(catalog="tiny-shop", users=10, max_turns=3, returning=True, baseline=False, out=tmp_path / "out", progress=False)
    result = run_simulate_eval(fast_settings, cfg, agent=agent, interactions=interactions)
    assert set(result["systems"]) == {"retrieval", "history", "agent"} and result["config"]["returning"] is True
    assert result["config"]["users_evaluated"] == 4  # u5's target is in its own history: it could never be shown
    for name, dialogues in result["dialogues"].items():
        assert result["systems"][name]["errors"] == 0, result["systems"][name]["error_examples"]
        if name == "retrieval":
            continue
        for d in dialogues:
            past = set(interactions[d["user"]][:-1])
            assert not past & {i for t in d["turns"] for i in t["shown"]}, (name, d)
    history = {d["user"]: d for d in result["dialogues"]["history"]}
    assert history["u1"]["turns"][0]["shown"][0] in {"s2", "s4", "s5"}  # staplers, like the two it bought
    assert "returning shoppers" in (tmp_path / "out" / "report.md").read_text()


def test_a_session_keeps_the_history_it_was_given_and_refuses_unknown_ids(tiny_agent):
    from agent.errors import UnknownItem

    agent = tiny_agent(rank_mode="none")
    session = agent.new_session("tiny-shop", history=["s1", "s3"])
    shown = [i.id for i in agent.turn(session, "I'm looking for staplers").items]
    assert shown and not {"s1", "s3"} & set(shown)
    agent.turn(session, "start over")
    assert agent.session_info(session)["state"]["history"] == ["s1", "s3"]  # a new topic keeps the shopper's past
    with pytest.raises(UnknownItem, match="not in catalog"):
        agent.new_session("tiny-shop", history=["s1", "nope"])
