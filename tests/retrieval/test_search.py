import random

import pytest

from retrieval.search import SearchFilters


def test_brand_filter_only_returns_that_brand(office_searcher):
    hits = office_searcher.search("pens", 20, filters=SearchFilters(brands=("bic",)))
    assert len(hits) == 20
    assert {h.item.brand.casefold() for h in hits} == {"bic"}


def test_excluded_brand_never_appears(office_searcher):
    unfiltered = office_searcher.search("black ink cartridge", 20)
    assert any(h.item.brand == "HP" for h in unfiltered)  # the filter has something to remove
    hits = office_searcher.search("black ink cartridge", 20, filters=SearchFilters(exclude_brands=("HP",)))
    assert len(hits) == 20 and all(h.item.brand.casefold() != "hp" for h in hits)


def test_category_filter_matches_any_level(office_searcher):
    leaf = office_searcher.search("stapler", 10, filters=SearchFilters(categories=("Heavy-Duty Staplers",)))
    assert leaf and all("heavy-duty staplers" in {c.casefold() for c in h.item.categories} for h in leaf)
    top = office_searcher.search("phone", 10, filters=SearchFilters(categories=("office electronics",)))
    assert len(top) == 10 and all(h.item.categories[0] == "Office Electronics" for h in top)


def test_excluded_ids_never_come_back(office_searcher):
    first = [h.item.id for h in office_searcher.search("stapler", 10)]
    again = [h.item.id for h in office_searcher.search("stapler", 10, exclude_ids=first[:5])]
    assert len(again) == 10 and not set(first[:5]) & set(again)


def test_price_range_on_a_priced_catalog(shopdial_searcher):
    f = SearchFilters(price_min=10, price_max=30)
    hits = shopdial_searcher.search("gift", 50, filters=f)
    expected = {i for i, it in shopdial_searcher.catalog.items.items() if it.price is not None and 10 <= it.price <= 30}
    assert hits and {h.item.id for h in hits} <= expected
    assert all(10 <= h.item.price <= 30 for h in hits)
    assert len(hits) == len(expected)  # every matching item is reachable through the filter


@pytest.mark.parametrize(
    "filters",
    [
        SearchFilters(brands=("bic", "pilot")),  # selective: exact scoring over the allowed items
        SearchFilters(categories=("Writing & Correction Supplies",)),
        SearchFilters(exclude_brands=("HP",)),  # broad: HNSW + post-filter
    ],
    ids=["brands", "category", "exclude-brand"],
)
def test_dense_filter_paths_agree_with_chroma_where(office_searcher, filters):
    """The fast filtered dense side returns what Chroma's own metadata filter returns."""
    for query in ("blue gel pens", "ink cartridge", "stapler for the office"):
        vec = office_searcher.embedder.encode_one(query)
        ours = office_searcher.dense(vec, 20, filters)
        ref = office_searcher.dense_chroma_where(vec, 20, filters)
        assert ours and all(filters.matches(office_searcher.catalog.items[i]) for i, _ in ours)
        assert [i for i, _ in ours[:10]] == [i for i, _ in ref[:10]], query
        assert ours[0][1] == pytest.approx(ref[0][1], abs=1e-4)


def test_price_filter_drops_items_with_unknown_price(office_searcher):
    assert office_searcher.search("pens", 10, filters=SearchFilters(price_max=100)) == []


def test_bad_filters_and_queries():
    with pytest.raises(ValueError, match="price_min"):
        SearchFilters(price_min=50, price_max=10)


def test_empty_query_is_a_clear_error(office_searcher):
    with pytest.raises(ValueError, match="empty query"):
        office_searcher.search("   ")


def test_model_number_found_through_bm25(office_searcher):
    item = next(it for it in office_searcher.catalog.items.values() if "GSM609" in it.title)
    hits = office_searcher.search("GSM609", 5)
    assert hits[0].item.id == item.id and hits[0].lexical_rank == 1


def test_title_query_finds_the_held_out_item_at_rank_1(office_searcher, office_interactions):
    """Indexing sanity: the users' last (held-out) items, searched by their own title."""
    targets = sorted({seq[-1] for seq in office_interactions.values()})
    targets = [t for t in targets if not office_searcher.catalog.items[t].title.startswith("Untitled item")]
    random.Random(0).shuffle(targets)
    sample = targets[:600]
    at_1 = sum(office_searcher.search(office_searcher.catalog.items[t].title, 1)[0].item.id == t for t in sample)
    assert at_1 / len(sample) >= 0.95, f"rank-1 rate {at_1 / len(sample):.3f}"


def test_similar_to_a_history_that_repeats_an_item(office_searcher, office_interactions):
    """A re-purchase names an item twice; Chroma refuses a request with a repeated id, so the
    searcher asks for each item once: the answer is that of the distinct history."""
    user = next(u for u, seq in sorted(office_interactions.items()) if len(set(seq)) >= 3)
    a, b, c = office_interactions[user][:3]
    repeated = office_searcher.similar([a, b, a, c, a], 10)
    distinct = office_searcher.similar([b, c, a], 10)
    assert len(repeated) == 10 and not {a, b, c} & {h.item.id for h in repeated}
    assert [(h.item.id, h.dense_score) for h in repeated] == [(h.item.id, h.dense_score) for h in distinct]
    assert office_searcher.index.embeddings([a, a]).keys() == {a}
