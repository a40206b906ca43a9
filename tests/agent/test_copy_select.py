"""`agent.copy.select.FieldSimilarity` with the real MiniLM embedder: among drafts that all pass the
gate, copy about the item's type and features outranks copy that fits any product."""

from __future__ import annotations

from agent.copy.select import FieldSimilarity
from agent.copy.writer import Copy
from retrieval.embed import Embedder
from tests.fast.conftest import make_catalog

CAT = make_catalog([
    {"id": "s", "title": "Swingline Optima Desk Stapler, 25 Sheet Capacity, Silver", "brand": "Swingline", "categories": "Office Products > Staplers"},
    {"id": "p", "title": "Paper Mate Flair Felt Tip Pens, Medium Point, Assorted Colors, 12 Count", "brand": "Paper Mate",
     "categories": "Office Products > Writing > Pens"},
])  # fmt: skip
GENERIC = Copy(description="It is a great choice for any office or home. It is simple to use every day.", selling_point="A handy pick.")
STAPLER = Copy(description="This desk stapler binds a stack of sheets with one press. The Swingline stapler sits on any desk.", selling_point="A desk stapler.")
PENS = Copy(description="These felt tip pens write in many colours. The medium point draws clear lines for notes.", selling_point="Felt tip pens.")


def test_drafts_about_the_item_outrank_generic_and_other_items_copy():
    score = FieldSimilarity(Embedder(backend="torch"))
    s = score(CAT.items["s"], [GENERIC, STAPLER, PENS])
    p = score(CAT.items["p"], [GENERIC, STAPLER, PENS])
    assert s[1] > max(s[0], s[2]) and p[2] > max(p[0], p[1])
    assert all(-1.0 <= x <= 1.0 for x in s + p)
    assert score.embedder.model_id in score.name
