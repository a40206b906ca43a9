"""A history that repeats an item (a re-purchase): every consumer counts the item once, at its
latest position, so the held-out item is never in its own history and nothing errors."""

from __future__ import annotations

from retrieval.candidates import Shopper
from retrieval.collab import CooccurrenceRecommender, PopularityRecommender, distinct_history, leave_one_out


def test_distinct_history_keeps_each_item_at_its_latest_position():
    assert distinct_history(["a", "b", "a", "c"]) == ["b", "a", "c"]
    assert distinct_history(["a", "a"]) == ["a"]
    assert distinct_history([]) == []


def test_leave_one_out_never_holds_out_an_item_of_the_history():
    histories, targets = leave_one_out({"u1": ["a", "b", "a"], "u2": ["c", "c"], "u3": ["a", "b", "b", "c"]})
    assert targets == {"u1": "a", "u3": "c"}  # the last item stays the target; u2 has one distinct item
    assert histories == {"u1": ["b"], "u3": ["a", "b"]}
    assert all(targets[u] not in histories[u] for u in targets)


def test_sources_and_shopper_read_a_repeated_item_once():
    train = {"u1": ["a", "b"], "u2": ["b", "c"], "u3": ["a", "c", "d"]}
    cooc = CooccurrenceRecommender(window=None).fit(train)
    assert (cooc.score(["a", "b", "a", "a"]) == cooc.score(["b", "a"])).all()
    assert [i for i, _ in cooc.recommend(["a", "a", "b"], 4)] == [i for i, _ in cooc.recommend(["b", "a"], 4)]
    assert "a" not in {i for i, _ in PopularityRecommender().fit(train).recommend(["a", "a"], 4)}
    # fitting on a history with a repeat equals fitting on the distinct one
    repeated = CooccurrenceRecommender(window=None).fit({"u1": ["a", "b", "a"], "u2": ["b", "c"]}).similarity.toarray()
    assert (repeated == CooccurrenceRecommender(window=None).fit({"u1": ["b", "a"], "u2": ["b", "c"]}).similarity.toarray()).all()
    assert Shopper(history=["s1", "s2", "s1"]).history == ["s2", "s1"]


def test_sequence_models_read_distinct_tokens():
    from retrieval.sasrec import SASRecRecommender

    model = SASRecRecommender(["a", "b", "c"])
    model._set_vocabulary(["a", "b", "c"])
    assert model._tokens(["a", "b", "a", "c", "c"]) == [2, 1, 3]
