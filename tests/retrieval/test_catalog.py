import json

import pytest

from retrieval.catalog import CatalogError, clean_text, load_catalog, load_interactions, parse_price


def test_office_2014_counts_match_the_data_readme(office_catalog):
    # README: 2,420 items; title 99.9 %, description 73.6 %, brand 80 %, categories 100 %.
    cat = office_catalog
    assert len(cat) == 2420
    assert cat.report.rejected == []
    assert len(cat.report.warnings) == 3  # the three items without a title are kept, labelled
    with_desc = sum(1 for it in cat.items.values() if it.description) / len(cat)
    with_brand = sum(1 for it in cat.items.values() if it.brand) / len(cat)
    assert 0.73 <= with_desc <= 0.74
    assert 0.79 <= with_brand <= 0.81
    assert all(it.categories for it in cat.items.values())


def test_office_2018_and_shopdial_counts(settings):
    assert len(load_catalog("amazon-office-2018", settings.data_dir)) == 3459
    shop = load_catalog("mg-shopdial", settings.data_dir)
    assert len(shop) + len(shop.report.rejected) == 57
    assert sum(1 for it in shop.items.values() if it.price is not None) >= 50


def test_interactions_counts(office_interactions):
    assert len(office_interactions) == 4905
    assert sum(len(v) for v in office_interactions.values()) == 53258
    assert min(len(v) for v in office_interactions.values()) >= 5


def test_text_is_cleaned(office_catalog, settings):
    assert not any("&amp;" in it.title for it in office_catalog.items.values())
    assert office_catalog.get("2").title.startswith("AT&T 210")
    items_2018 = load_catalog("amazon-office-2018", settings.data_dir).items
    # descriptions there are JSON/Python-encoded lists of strings with inline CSS
    assert not any(it.description[:2] in ('["', "['") for it in items_2018.values())
    assert "{" not in items_2018["0"].description and "headerM" not in items_2018["0"].description


@pytest.mark.parametrize(
    "raw,expected",
    [("AT&amp;amp;T", "AT&T"), ('["a", "b"]', "a b"), ("['x']", "x"), ("<b>bold</b> text", "bold text"), ("['It's broken', 'b']", "It's broken b"), (None, "")],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_parse_price():
    assert parse_price("$1,299.50") == 1299.5
    assert parse_price("") is None
    with pytest.raises(ValueError):
        parse_price("call us")


def _fake_data_dir(tmp_path, items_text: str):
    folder = tmp_path / "amazon-office-2014"
    folder.mkdir(parents=True)
    (folder / "items.json").write_text(items_text)
    return tmp_path


def test_corrupted_file_names_file_and_position(tmp_path):
    data = _fake_data_dir(tmp_path, '{"0": {"title": "ok"}, "1": {"title": ')
    with pytest.raises(CatalogError) as err:
        load_catalog("amazon-office-2014", data)
    message = str(err.value)
    assert "items.json" in message and "line 1" in message and "not valid JSON" in message


def test_bad_rows_are_reported_not_dropped_silently(tmp_path):
    rows = {"0": {"title": "Good pen"}, "1": ["not", "an", "object"], "2": {"title": 42}, "3": {"title": "Stapler", "brand": "Acme"}}
    data = _fake_data_dir(tmp_path, json.dumps(rows))
    cat = load_catalog("amazon-office-2014", data)
    assert set(cat.items) == {"0", "3"}
    problems = {(e.row, e.field) for e in cat.report.rejected}
    assert problems == {("1", "*"), ("2", "title")}
    assert "rejected 2" in cat.report.summary()
    assert all(e.file == "items.json" for e in cat.report.rejected)


def test_missing_data_dir_and_unknown_catalog(tmp_path):
    with pytest.raises(CatalogError, match="AISLE_DATA_DIR"):
        load_catalog("amazon-office-2014", tmp_path / "nope")
    with pytest.raises(CatalogError, match="choose one of"):
        load_catalog("books", tmp_path)
    with pytest.raises(CatalogError, match="no interaction file"):
        load_interactions("mg-shopdial", tmp_path)
