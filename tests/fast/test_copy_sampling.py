"""First drafts are sampled, not greedy, and the retry uses another temperature (agent/copy/writer.py).

Greedy decoding made SmolLM2-135M (base and copywriter adapter) repeat itself until the parser found
fewer than two distinct sentences; and the engine re-seeds every sampling call, so a retry at the first
draft's temperature could return the same rejected draft. No model is loaded."""

from __future__ import annotations

import pytest

from agent.copy.writer import DEFAULT_TEMPERATURE, RETRY_TEMPERATURE, STATUS_REGENERATED, Copywriter
from tests.fast.conftest import ScriptedEngine, make_catalog

pytestmark = pytest.mark.fast

CAT = make_catalog([{"id": "a", "title": "Acme Desk Stapler Zed", "brand": "Acme", "categories": "Office > Staplers"}])
GOOD = "Selling point: A desk stapler for everyday use.\nDescription: This desk stapler is easy to use every day. It keeps the desk tidy and neat."
# What greedy decoding gave: the description restates the selling point, then repeats itself.
LOOP = "Selling point: A desk stapler for everyday use.\nDescription: A desk stapler for everyday use. It is a desk stapler. It is a desk stapler."


class TemperatureEngine(ScriptedEngine):
    """Answers by temperature and records the temperature of every batch call."""

    def __init__(self, answers: dict[float, str]):
        super().__init__()
        self.answers = answers
        self.temperatures: list[float] = []

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, banned=None):
        self.temperatures.append(temperature)
        return [self.answers[temperature] for _ in conversations]


def test_first_drafts_are_sampled_and_the_retry_uses_another_temperature():
    assert DEFAULT_TEMPERATURE > 0 and RETRY_TEMPERATURE > 0 and RETRY_TEMPERATURE != DEFAULT_TEMPERATURE
    engine = TemperatureEngine({DEFAULT_TEMPERATURE: LOOP, RETRY_TEMPERATURE: GOOD})
    [result] = Copywriter(engine).write([CAT.items["a"]])
    assert engine.temperatures == [DEFAULT_TEMPERATURE, RETRY_TEMPERATURE]
    assert result.first_format_error and "usable sentence" in result.first_format_error  # the loop is still rejected
    assert result.status == STATUS_REGENERATED and result.copy is not None
    assert result.copy.description == "This desk stapler is easy to use every day. It keeps the desk tidy and neat."


def test_temperatures_can_be_set():
    engine = TemperatureEngine({0.0: GOOD})
    [result] = Copywriter(engine, temperature=0.0).write([CAT.items["a"]])
    assert engine.temperatures == [0.0] and result.usable


# --- parse_copy: a selling point that only repeats the title ---------------------------------------

TITLE = "Paper Mate 70644 Flair Porous Point Stick Pen, Medium, 16-Count"


def test_title_selling_point_is_replaced_by_the_first_description_sentence():
    from agent.copy.writer import parse_copy

    raw = (f"Selling point: {TITLE}.\nDescription: These felt tip pens write with a smooth, even line. "
           "They are easy to hold for long notes. They are a good pick for school and office.")
    copy = parse_copy(raw, title=TITLE)
    assert copy.selling_point == "These felt tip pens write with a smooth, even line."
    assert copy.description == "They are easy to hold for long notes. They are a good pick for school and office."


@pytest.mark.parametrize("description", [
    "These felt tip pens write with a smooth, even line. They are easy to hold for long notes.",  # only 2: nothing to spare
    "These felt tip pens write with a smooth, even line. These felt tip pens write with a smooth, even line. They are easy to hold.",  # repeats
])
def test_title_selling_point_without_enough_description_is_still_rejected(description):
    from agent.copy.writer import CopyFormatError, parse_copy

    with pytest.raises(CopyFormatError, match="only repeats the title"):
        parse_copy(f"Selling point: {TITLE}\nDescription: {description}", title=TITLE)
