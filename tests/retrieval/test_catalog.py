import json

import pytest

from retrieval.catalog import CatalogError, clean_text
from retrieval.config import RetrievalConfig
from retrieval.registry import Registry, load_catalog, load_interactions


def test_office_2014_counts_match_the_data_readme(office_catalog):
    # README: 2,420 items; title 99.9 %, description 73.6 %, brand 80 %, categories 100 %.
    cat = office_catalog
    assert len(cat) == 2420
    assert cat.report.rejected == []
    # the three items without a title are kept, labelled; one description has a cut-off tag; and the
    # text screen leaves out the feed's own calls to action ("Visit for details.") in 43 descriptions
    screened = [w for w in cat.report.warnings if w.problem.startswith("left out ")]
    assert sorted(w.field for w in cat.report.warnings if w not in screened) == ["description", "title", "title", "title"]
    assert {w.field for w in screened} == {"description"} and len({w.row for w in screened}) == 43
    with_desc = sum(1 for it in cat.items.values() if it.description) / len(cat)
    with_brand = sum(1 for it in cat.items.values() if it.brand and not it.brand_source) / len(cat)
    assert 0.73 <= with_desc <= 0.74
    assert 0.79 <= with_brand <= 0.81  # the feed's brand field
    assert sum(1 for it in cat.items.values() if it.brand_source == "title") == 358  # read off the title at import
    assert all(it.categories for it in cat.items.values())


def test_office_2018_and_shopdial_counts(settings):
    assert len(load_catalog(settings, "amazon-office-2018")) == 3459
    shop = load_catalog(settings, "mg-shopdial")
    assert len(shop) + len(shop.report.rejected) == 57
    assert sum(1 for it in shop.items.values() if it.price is not None) >= 50


def test_interactions_counts(office_interactions):
    assert len(office_interactions) == 4905
    assert sum(len(v) for v in office_interactions.values()) == 53258
    assert min(len(v) for v in office_interactions.values()) >= 5


def test_text_is_cleaned(office_catalog, settings):
    assert not any("&amp;" in it.title for it in office_catalog.items.values())
    assert office_catalog.get("2").title.startswith("AT&T 210")
    items_2018 = load_catalog(settings, "amazon-office-2018").items
    # descriptions there are JSON/Python-encoded lists of strings with inline CSS
    assert not any(it.description[:2] in ('["', "['") for it in items_2018.values())
    assert "{" not in items_2018["0"].description and "headerM" not in items_2018["0"].description


@pytest.mark.parametrize(
    "raw,expected",
    [("AT&amp;amp;T", "AT&T"), ('["a", "b"]', "a b"), ("['x']", "x"), ("<b>bold</b> text", "bold text"), ("['It's broken', 'b']", "It's broken b"), (None, "")],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def _fake_data_dir(tmp_path, items_text: str):
    folder = tmp_path / "data" / "amazon-office-2014"
    folder.mkdir(parents=True)
    (folder / "items.json").write_text(items_text)
    (folder / "interactions.json").write_text("{}")
    return RetrievalConfig(data_dir=tmp_path / "data", home=tmp_path / "home")


def test_corrupted_file_names_file_and_position(tmp_path):
    config = _fake_data_dir(tmp_path, '{"0": {"title": "ok"}, "1": {"title": ')
    with pytest.raises(CatalogError) as err:
        load_catalog(config, "amazon-office-2014")
    message = str(err.value)
    assert "items.json" in message and "line 1" in message and "not valid JSON" in message


def test_bad_rows_are_reported_not_dropped_silently(tmp_path):
    rows = {"0": {"title": "Good pen"}, "1": ["not", "an", "object"], "2": {"title": 42}, "3": {"title": "Stapler", "brand": "Acme"}}
    rows.update({str(i): {"title": f"Pen {i}"} for i in range(4, 60)})
    config = _fake_data_dir(tmp_path, json.dumps(rows))
    cat = load_catalog(config, "amazon-office-2014")
    assert "1" not in cat.items and len(cat) == 59
    assert cat.items["2"].title == "Untitled item 2"  # a number is no title: kept (shoppers bought it), labelled, reported
    assert {(e.row, e.field) for e in cat.report.warnings} == {("2", "title")}
    problems = {(e.row, e.field) for e in cat.report.rejected}
    assert problems == {("1", "*")}
    assert "rejected 1 rows" in cat.report.summary()
    assert all(e.file == "items.json" for e in cat.report.rejected)


def test_builtins_follow_their_files(tmp_path):
    """A built-in entry re-imports when its (read-only) source files change."""
    config = _fake_data_dir(tmp_path, json.dumps({"0": {"title": "Pen"}}))
    assert list(load_catalog(config, "amazon-office-2014").items) == ["0"]
    (tmp_path / "data" / "amazon-office-2014" / "items.json").write_text(json.dumps({"0": {"title": "Pen"}, "1": {"title": "Ink pad"}}))
    assert list(load_catalog(config, "amazon-office-2014").items) == ["0", "1"]


def test_missing_data_dir_and_unknown_catalog(tmp_path):
    config = RetrievalConfig(data_dir=tmp_path / "nope", home=tmp_path / "home")
    with pytest.raises(CatalogError, match="AISLE_DATA_DIR"):
        load_catalog(config, "amazon-office-2014")
    with pytest.raises(CatalogError, match="unknown catalog 'books'"):
        load_catalog(config, "books")
    (tmp_path / "data" / "mg-shopdial" / "items").mkdir(parents=True)
    (tmp_path / "data" / "mg-shopdial" / "items" / "Books_items.json").write_text('[{"name": "A book", "price": "$3"}]')
    config = RetrievalConfig(data_dir=tmp_path / "data", home=tmp_path / "home2")
    with pytest.raises(CatalogError, match="has no interactions"):
        load_interactions(config, "mg-shopdial")
    assert Registry(config).names()[:3] == ["amazon-office-2014", "amazon-office-2018", "mg-shopdial"]
