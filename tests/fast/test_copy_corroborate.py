"""Corroboration of copy by similar items' descriptions (agent/copy/corroborate.py) and the writer's
pruning of the sentences it rejects. A gardening catalog: no office word helps. No model is loaded."""

from __future__ import annotations

import pytest

from agent.copy.corroborate import Corroboration
from agent.copy.writer import STATUS_DROPPED, STATUS_OK, Copywriter, copy_evidence, make_record
from tests.fast.conftest import ScriptedEngine, make_catalog

pytestmark = pytest.mark.fast

SHEARS = "Sharp stainless pruning shears for cutting rose stems and small branches in the garden, with a safety lock."
ROWS = [
    {"id": "new", "title": "Verdant Bypass Pruning Shears, Green", "brand": "Verdant", "description": ""},
    {"id": "s1", "title": "Fiskars Pruning Shears", "brand": "Fiskars", "description": SHEARS},
    {"id": "s2", "title": "Corona Bypass Pruning Shears", "brand": "Corona", "description": "Bypass shears that cut branches and stems cleanly; the grip stays comfortable in the garden all day."},
    {"id": "s3", "title": "Felco Pruning Shears No. 2", "brand": "Felco", "description": "Classic shears for vineyard and garden work: cutting stems, branches and vines with a replaceable blade."},
    {"id": "h1", "title": "Garden Hose 50 ft", "brand": "Flexi", "description": "A kink-free hose for watering lawns and flower beds, with a brass fitting that lasts for years."},
]
CAT = make_catalog(ROWS)
ITEM = CAT.items["new"]


def verdicts(*sentences):
    return Corroboration(CAT, neighbours=3, min_support=2).judge(list(sentences), copy_evidence(ITEM), ITEM)


def test_a_purpose_similar_items_describe_is_corroborated():
    (v,) = verdicts("Use them for cutting stems and branches in the garden.")
    assert v.ok and not v.feature


def test_a_purpose_only_one_similar_item_mentions_is_not():
    (v,) = verdicts("Use them for cutting vines.")  # only s3 says vines: below min_support 2
    assert v.unsupported == ("vines",)


def test_a_feature_must_be_in_the_items_own_fields_whatever_similar_items_have():
    ok, invented = verdicts("They come in green.", "They have a safety lock.")
    assert ok.feature and ok.ok
    assert invented.feature and set(invented.unsupported) == {"safety", "lock"}


def test_the_item_never_vouches_for_itself_and_unrelated_items_do_not_count():
    corr = Corroboration(CAT, neighbours=3, min_support=1)
    assert "new" not in corr.similar(ITEM)
    assert "h1" not in corr.similar(ITEM)  # a hose is not like shears
    (v,) = corr.judge(["Great for watering lawns."], copy_evidence(ITEM), ITEM)
    assert not v.ok


def test_without_described_items_only_the_fields_are_corroborated():
    bare = make_catalog([dict(r, description="") for r in ROWS])
    corr = Corroboration(bare)
    assert corr.pool == 0 and corr.similar(ITEM) == []
    plain, added = corr.judge(["Verdant bypass pruning shears in green.", "Use them for cutting stems."], copy_evidence(ITEM), ITEM)
    assert plain.ok and not added.ok
    assert "only 0 described item(s) like this one" in added.problem()  # says why nothing could vouch


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="min_support"):
        Corroboration(CAT, neighbours=2, min_support=3)


class Rows(ScriptedEngine):
    def __init__(self, *rounds):
        super().__init__()
        self.rounds = list(rounds)

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, banned=None):
        return self.rounds.pop(0)


def writer(engine):
    return Copywriter(engine, corroboration=Corroboration(CAT, neighbours=3, min_support=2))


def test_the_writer_keeps_the_corroborated_sentences_and_records_the_pruned_ones():
    raw = ("Selling point: Shears for cutting garden stems.\n"
           "Description: Use them for cutting stems. They cut branches in the garden. They have a safety lock.")
    (result,) = writer(Rows([raw])).write([ITEM])
    assert result.status == STATUS_OK
    assert result.copy.description == "Use them for cutting stems. They cut branches in the garden."
    assert result.pruned == ["They have a safety lock."]
    record = make_record("garden", result, model="m", engine="e", prompt={})
    assert record["grounding"]["pruned_sentences"] == ["They have a safety lock."]
    assert "corroboration" in record["grounding"]["checkers"]


def test_a_draft_whose_selling_point_is_not_corroborated_fails_and_the_retry_avoids_the_words():
    bad = "Selling point: Shears with a built-in sharpener.\nDescription: These pruning shears are from Verdant. Use them for cutting stems."
    engine = Rows([bad], [bad])
    (result,) = writer(engine).write([ITEM])
    assert result.status == STATUS_DROPPED
    assert any("sharpener" in p for p in result.unsupported)
    assert "sharpener" in result.first_unsupported[0].split(":")[0]  # the words come first, quoted, for the retry prompt


def test_what_the_title_says_is_not_included_is_not_a_feature_of_the_item():
    cat = make_catalog([{"id": "k", "title": "Kum Two Hole Pencil Sharpener (extra lids not included)", "brand": "Kum"}])
    item = cat.items["k"]
    claims, honest = Corroboration(cat).judge(["This sharpener has two holes for extra lids.", "Extra lids are not included."], copy_evidence(item), item)
    assert "lids" in claims.unsupported
    assert honest.ok


def test_a_title_colour_read_as_the_material_is_flagged_and_number_words_match_digits():
    cat = make_catalog([{"id": "o", "title": "Mesh Desk Organizer 3 Drawer, Silver", "brand": "EasyPag"}])
    item = cat.items["o"]
    material, drawers, colour = Corroboration(cat).judge(
        ["It is made of silver.", "This mesh organizer has three drawers.", "It comes in silver."], copy_evidence(item), item)
    assert material.unsupported == ("made of silver",)
    assert drawers.ok and colour.ok


def test_a_sentence_that_says_nothing_about_the_item_does_not_count_as_kept_copy():
    nothing, made, shears = verdicts("This is not a product.", "I made it.", "These are pruning shears.")
    assert not nothing.ok and not made.ok and shears.ok
    assert nothing.problem().startswith("says nothing about the item")
    raw = "Selling point: This is not a product.\nDescription: I made it. Use them for cutting stems."
    (result,) = writer(Rows([raw], [raw])).write([ITEM])
    assert result.status == STATUS_DROPPED  # its selling point says nothing
