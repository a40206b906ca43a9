"""The copy parser on repetition, with kept copy of the fine-tuned copywriter from
eval-out/copy-200-drafts3.json (commit 41f4cdc) that the parser let through: a stuttered word keeps
one copy, and a sentence that restates the selling point or an earlier sentence does not count
towards the 2-4 the description needs."""

from __future__ import annotations

import pytest

from agent.copy.writer import CopyFormatError, _clean_sentences, parse_copy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The container is made of a durable, durable, and durable material.", "The container is made of a durable material."),
        ("It features a sturdy frame with a wide, wide window space.", "It features a sturdy frame with a wide window space."),
        ("The UM-120AC Gel Ink Pen is a unique and unique item.", "The UM-120AC Gel Ink Pen is a unique item."),
        ("It delivers high quality, high quality ink to the user.", "It delivers high quality ink to the user."),
        # not a stutter: different words, or a phrase people write
        ("Step by step, page after page, it keeps notes.", "Step by step, page after page, it keeps notes."),
    ],
)
def test_a_stutter_keeps_one_copy(text, expected):
    assert _clean_sentences(text, title="") == [expected]


def test_a_sentence_restating_an_earlier_one_is_dropped():
    text = ("The Casio Scientific Calculator is a great tool for anyone who needs to do calculations. "
            "It is also a great tool for anyone who needs to do calculations. It runs on solar power.")
    assert _clean_sentences(text, title="Casio FX 260 Solar II Scientific Calculator") == [
        "The Casio Scientific Calculator is a great tool for anyone who needs to do calculations.",
        "It runs on solar power.",
    ]


def test_sentences_about_different_things_are_kept():
    text = ("The planner features a 15-month monthly plan. The monthly planner helps you stay organized and prepared for your daily tasks. "
            "It helps you keep track of your schedule and deadlines.")
    assert len(_clean_sentences(text, title="AT-A-GLANCE Monthly Planner")) == 3


@pytest.mark.parametrize(
    ("title", "raw"),
    [
        ("Westcott Wood Yardstick, 36",
         "Selling point: The Wood Yardstick is a great tool for measuring and measuring lengths.\n"
         "Description: The Wood Yardstick is ideal for measuring and measuring lengths. "
         "It is perfect for measuring and measuring lengths at home, school, and the office."),
        ("Rolodex Mesh Collection Jumbo Pencil Cup, Black (62557)",
         "Selling point: Jumbo Jumbo Pencil Cup is a great tool for your school, home and office.\n"
         "Description: The Jumbo Pencil Cup is designed to fit your needs. It is a great tool for your school, home and office."),
        ("Avery Durable View Binder with 1.5 Inch One Touch Ring",
         "Selling point: The Avery Binder with 1.5-Inch One Touch Ring is the perfect binder for any office or school.\n"
         "Description: The Avery Binder with 1.5-Inch One Touch Ring is a great choice for any office or school. "
         "It features a sturdy, durable construction and a clean, polished finish."),
    ],
)
def test_a_description_that_only_restates_the_selling_point_is_a_format_error(title, raw):
    with pytest.raises(CopyFormatError, match="usable sentence"):
        parse_copy(raw, title=title)


def test_a_stuttered_selling_point_is_repaired_and_a_distinct_description_kept():
    raw = ("Selling point: Scotch tape is ideal for mounting and mounting posters.\n"
           "Description: The tape holds on painted walls. It comes off without leaving marks.")
    copy = parse_copy(raw, title="Scotch Removable Mounting Tape")
    assert copy.selling_point == "Scotch tape is ideal for mounting posters."
    assert copy.description == "The tape holds on painted walls. It comes off without leaving marks."


def test_a_selling_point_that_is_the_title_does_not_knock_out_description_sentences():
    """The title-echo path: the point is replaced by the first sentence, so sentences that name the
    product like the title does must still count."""
    title = "Rolodex Jumbo Pencil Cup"
    raw = (f"Selling point: {title}\n"
           "Description: The Rolodex Jumbo Pencil Cup keeps pens on your desk. The Rolodex Jumbo Pencil Cup has a mesh body. "
           "It holds scissors and rulers too.")
    copy = parse_copy(raw, title=title)
    assert copy.selling_point == "The Rolodex Jumbo Pencil Cup keeps pens on your desk."
    assert copy.description.startswith("The Rolodex Jumbo Pencil Cup has a mesh body.")
