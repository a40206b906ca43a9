"""Bringing a shop's own catalog: feeds built in the test, imported through the real registry
(SQLite), with no model. Counts, the bad-row report, presets, diffs, events, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from retrieval.catalog import CatalogError
from retrieval.config import RetrievalConfig
from retrieval.feeds.events import parse_timestamp
from retrieval.feeds.schema import parse_money
from retrieval.registry import FeedSpec, ImportRefused, Registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(RetrievalConfig(data_dir=tmp_path / "data", home=tmp_path / "home"))


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


FOREIGN_CSV = """Product Name,SKU Code,Maker,Cost,Section,Colour,Blurb
Blue Gel Pen,P-1,Inkly,2.50,Office > Pens,blue,Smooth gel ink.
Red Stapler,S-9,Swingline,15.99,Office > Staplers,red,Staples 20 sheets.
A5 Notebook,N-3,Papero,7.00,Office > Paper,,Dotted pages.
"""


def test_csv_with_foreign_column_names_and_a_map(registry, tmp_path):
    spec = FeedSpec(write(tmp_path / "shop.csv", FOREIGN_CSV), map=["id=SKU Code", "title=Product Name", "brand=Maker", "price=Cost", "categories=Section", "description=Blurb"], currency="EUR")
    report = registry.add("shop", spec, progress=False)
    assert (report.load.loaded, len(report.load.rejected), report.added) == (3, 0, 3)
    cat = registry.load("shop")
    pen = cat.items["P-1"]
    assert (pen.title, pen.brand, pen.price, pen.currency, pen.categories) == ("Blue Gel Pen", "Inkly", 2.5, "EUR", ("Office", "Pens"))
    assert dict(pen.attributes) == {"colour": "blue"}  # a known attribute column, found without --map
    assert "Colour: blue" in pen.text()  # attributes are embedded and BM25-indexed
    assert cat.items["N-3"].attributes == ()
    assert "shop" in registry.names()


def test_map_naming_a_missing_column_says_which_columns_exist(registry, tmp_path):
    spec = FeedSpec(write(tmp_path / "shop.csv", FOREIGN_CSV), map=["title=Name", "id=SKU Code"])
    with pytest.raises(CatalogError, match=r"no column 'Name'.*Product Name"):
        registry.add("shop", spec, progress=False)
    assert "shop" not in registry.names()
    with pytest.raises(CatalogError, match="unknown field 'colour'"):
        registry.add("shop", FeedSpec(str(tmp_path / "shop.csv"), map=["colour=Colour"]), progress=False)


MERCHANT_TSV = (
    "id\ttitle\tdescription\tlink\timage_link\tprice\tbrand\tproduct_type\tgoogle_product_category\tavailability\tcolor\tsize\n"
    "A1\tRed Stapler\t<p>A sturdy stapler.</p>\thttps://shop.example/a1\thttps://shop.example/a1.jpg\t15.99 USD\tSwingline\tOffice > Staplers\t2986\tin_stock\tred\t\n"
    "A2\tBlack Stapler\tCompact.\thttps://shop.example/a2\tjavascript:alert(1)\t9.50 USD\tSwingline\t\tOffice Supplies > Staplers\tout_of_stock\tblack\t\n"
    "A3\tDesk Tray\tStackable.\thttps://shop.example/a3\t\t12,50 EUR\tAcme\tOffice > Trays\t\tpreorder\t\tA4\n"
)


def test_google_merchant_tsv(registry, tmp_path):
    report = registry.add("gm", FeedSpec(write(tmp_path / "products.tsv", MERCHANT_TSV), preset="google-merchant"), progress=False)
    cat = registry.load("gm")
    assert report.load.loaded == 3 and not report.load.rejected
    assert (cat.items["A3"].price, cat.items["A3"].currency, cat.items["A3"].available) == (12.5, "EUR", True)  # decimal comma; preorder sells
    a1, a2 = cat.items["A1"], cat.items["A2"]
    assert (a1.price, a1.currency, a1.url, a1.image_url, a1.categories, a1.description) == (15.99, "USD", "https://shop.example/a1", "https://shop.example/a1.jpg", ("Office", "Staplers"), "A sturdy stapler.")
    assert a2.categories == ("Office Supplies", "Staplers")  # text google_product_category when product_type is empty
    assert not a2.available and a1.available
    assert a2.image_url == "" and any(w.field == "image_url" for w in report.load.warnings)  # never a javascript: URL
    assert dict(a1.attributes) == {"colour": "red"}


def test_availability_is_shown_only_as_the_feed_states_it(registry, tmp_path):
    """Stock reaches the shown item (and the UI's card) only from a feed that states it, as it states
    it (a backorder is not "in stock"); a feed without the column says nothing."""
    from agent.recommend.shown import ShownItem

    registry.add("gm", FeedSpec(write(tmp_path / "products.tsv", MERCHANT_TSV), preset="google-merchant"), progress=False)
    registry.add("shop", FeedSpec(write(tmp_path / "shop.csv", FOREIGN_CSV), map=["id=SKU Code", "title=Product Name", "price=Cost"]), progress=False)
    gm, shop = registry.load("gm"), registry.load("shop")  # read back from the stored records
    shown = lambda item: ShownItem.of(item, reason="", grounded=True, reason_source="", score=0.0).to_dict()["availability"]  # noqa: E731
    assert [shown(gm.items[i]) for i in ("A1", "A2", "A3")] == ["in stock", "out of stock", "preorder"]
    assert shown(shop.items["P-1"]) == "" and shop.items["P-1"].available


def test_google_merchant_xml(registry, tmp_path):
    xml = """<?xml version="1.0"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel><title>Shop</title>
<item><g:id>X1</g:id><title>Glue Stick</title><description>Washable glue.</description><link>https://shop.example/x1</link>
<g:price>1.99 GBP</g:price><g:brand>Pritt</g:brand><g:product_type>Office &gt; Glue</g:product_type><g:availability>in stock</g:availability></item>
<item><g:id>X2</g:id><title>Tape</title><g:price>3.00 GBP</g:price><g:availability>out of stock</g:availability></item>
</channel></rss>"""
    registry.add("gmx", FeedSpec(write(tmp_path / "feed.xml", xml), preset="google-merchant"), progress=False)
    cat = registry.load("gmx")
    assert cat.items["X1"].categories == ("Office", "Glue") and cat.items["X1"].currency == "GBP"
    assert not cat.items["X2"].available


SHOPIFY_CSV = """Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Option1 Name,Option1 Value,Variant Price,Variant Inventory Tracker,Variant Inventory Qty,Variant Inventory Policy,Image Src,Status
gel-pen,Gel Pen,<p>Smooth <b>gel</b> ink.</p>,Inkly,Office Supplies > Pens,Pens,"gel, blue",Pack,Single,2.50,shopify,10,deny,https://cdn.example.com/pen.jpg,active
gel-pen,,,,,,,,Pack of 10,19.00,shopify,0,deny,,
gel-pen,,,,,,,,,,,,,https://cdn.example.com/pen-2.jpg,
notebook,A5 Notebook,Dotted pages,Papero,,Notebooks,,Title,Default Title,7.99,shopify,0,deny,,active
mug,Mug,Big mug,Acme,,Kitchen,,Title,Default Title,9.00,shopify,0,continue,,active
draft,Draft thing,Not live,Acme,,Misc,,Title,Default Title,1.00,,,,,draft
"""


def test_shopify_variants_fold_into_their_product(registry, tmp_path):
    report = registry.add("sh", FeedSpec(write(tmp_path / "products_export.csv", SHOPIFY_CSV), preset="shopify", currency="CAD"), progress=False)
    cat = registry.load("sh")
    assert report.load.loaded == 4 and not report.load.rejected  # 6 data rows, 4 products
    pen = cat.items["gel-pen"]
    assert (pen.title, pen.brand, pen.price, pen.currency, pen.description) == ("Gel Pen", "Inkly", 2.5, "CAD", "Smooth gel ink.")
    assert dict(pen.attributes) == {"pack": "Single, Pack of 10", "tags": "gel, blue"}
    assert pen.available  # one variant in stock
    assert pen.categories == ("Office Supplies", "Pens")
    assert cat.items["notebook"].categories == ("Notebooks",)  # the Type when there is no category
    assert not cat.items["notebook"].available  # no stock, overselling denied
    assert cat.items["mug"].available  # no stock, but "continue selling"
    assert not cat.items["draft"].available  # not active in the shop


def test_jsonl_bad_rows_are_each_reported_and_a_bad_feed_is_refused_whole(registry, tmp_path):
    rows = [
        json.dumps({"id": "1", "title": "Good pen", "price": 3}),
        json.dumps({"title": "No id"}),
        json.dumps({"id": "1", "title": "Duplicate"}),
        json.dumps({"id": "3", "title": "Weird money", "price": "3 ZZZ"}),
        json.dumps({"id": "4", "title": "Broken", "description": "<p>ok</p><b class='x"}),
        "{not json",
        json.dumps({"id": "6", "title": "Bad currency", "price": 5, "currency": "XYZ"}),
        json.dumps({"id": "7", "title": "Stock?", "availability": "maybe"}),
    ]
    path = tmp_path / "items.jsonl"
    write(path, "\n".join(rows) + "\n")
    with pytest.raises(ImportRefused) as refused:
        registry.add("bad", FeedSpec(str(path)), progress=False)
    report = refused.value.report
    problems = {(e.row, e.field): e.problem for e in report.load.rejected}
    assert set(problems) == {("2", "id"), ("3", "id"), ("4", "price"), ("6", "*"), ("7", "currency"), ("8", "availability")}
    assert "missing id" in problems[("2", "id")]
    assert "duplicate id '1' (first at row 1)" in problems[("3", "id")]
    assert "unknown currency" in problems[("4", "price")] and "unknown currency" in problems[("7", "currency")]
    [broken] = report.load.warnings  # broken markup costs the markup, not the row
    assert (broken.row, broken.field) == ("5", "description") and "broken HTML" in broken.problem and "<b class='x" in broken.problem
    assert all(e.file == "items.jsonl" for e in report.load.rejected)
    assert "6 of 8 rows are bad" in str(refused.value) and "nothing was imported" in str(refused.value)
    assert str(report.report_file) in str(refused.value)
    assert "bad" not in registry.names()
    rows = list(csv.DictReader(report.report_file.open()))  # every rejected row and warning, not just the first few
    assert [(r["kind"], r["record"], r["row"]) for r in rows] == [*(("rejected", "item", n) for n in "234678"), ("warning", "item", "5")]
    # The same feed with a looser limit imports the good rows and still reports the rest.
    ok = registry.add("bad", FeedSpec(str(path), max_bad_share=0.9), progress=False)
    assert ok.load.loaded == 2 and len(ok.load.rejected) == 6 and list(registry.load("bad").items) == ["1", "4"]
    assert registry.load("bad").items["4"].description == "ok"


def test_non_utf8_bytes_are_reported_by_row_and_field(registry, tmp_path):
    data = "id,title\n1,Caf\xe9 mug\n2,Tea cup\n".encode("latin-1")
    report = registry.add("enc", FeedSpec(write(tmp_path / "latin.csv", data), max_bad_share=0.5), progress=False)
    [err] = report.load.rejected
    assert (err.row, err.field) == ("2", "title") and "not UTF-8" in err.problem and "0xE9" in err.problem
    assert list(registry.load("enc").items) == ["2"]


def test_parquet_feed(registry, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b"], "name": ["Pen", "Ink"], "price": [1.5, 4.0], "attributes": [json.dumps({"colour": "black"}), None]})
    pq.write_table(table, tmp_path / "items.parquet")
    registry.add("pq", FeedSpec(str(tmp_path / "items.parquet")), progress=False)
    cat = registry.load("pq")
    assert cat.items["a"].title == "Pen" and cat.items["a"].attribute("colour") == "black" and cat.items["b"].price == 4.0


def test_update_is_a_diff_and_a_refused_update_changes_nothing(registry, tmp_path):
    v1 = [{"id": "1", "title": "Pen", "price": 2}, {"id": "2", "title": "Ink", "price": 5}, {"id": "3", "title": "Pad", "description": "Lined", "price": 3}]
    path = tmp_path / "v1.jsonl"
    write(path, "\n".join(map(json.dumps, v1)))
    registry.add("s", FeedSpec(str(path)), progress=False)
    version = registry.version("s")
    v2 = [
        {"id": "1", "title": "Pen", "price": 1.5},  # price change
        {"id": "3", "title": "Pad", "description": "Lined", "price": 3, "availability": "out of stock"},
        {"id": "4", "title": "Eraser"},  # new, no description: cold
    ]
    write(tmp_path / "v2.jsonl", "\n".join(map(json.dumps, v2)))
    report = registry.update("s", items=str(tmp_path / "v2.jsonl"), progress=False)
    assert (report.added, report.changed, report.removed, report.unchanged, report.out_of_stock) == (1, 2, 1, 0, 1)
    assert report.cold == ["4"] and "aisle describe --catalog s --only-missing" in report.summary()
    cat = registry.load("s")
    assert set(cat.items) == {"1", "3", "4"} and cat.items["1"].price == 1.5
    assert not cat.recommendable("3") and cat.recommendable("4") and not cat.recommendable("2")
    assert registry.version("s") > version
    # A broken new version is refused whole: the catalog stays exactly as it was.
    write(tmp_path / "v3.jsonl", '{"id": "9"}\n{"title": "x"}\n')
    before = registry.load("s").items
    with pytest.raises(ImportRefused):
        registry.update("s", items=str(tmp_path / "v3.jsonl"), progress=False)
    assert registry.load("s").items == before
    # check reports, changes nothing
    write(tmp_path / "v4.jsonl", json.dumps({"id": "5", "title": "Ruler"}))
    dry = registry.check("s", items=str(tmp_path / "v4.jsonl"))
    assert (dry.added, dry.removed, dry.applied) == (1, 3, False)
    assert set(registry.load("s").items) == {"1", "3", "4"}


def test_interactions_ordered_by_timestamp_else_file_order_and_events_append(registry, tmp_path):
    write(tmp_path / "items.csv", "id,title\na,Pen\nb,Ink\nc,Pad\n")
    events = "user_id,item_id,timestamp,event\nu1,b,2024-05-02T10:00:00Z,purchase\nu1,a,2024-05-01T10:00:00Z,view\nu2,c,,cart\nu2,a,,purchase\nu3,zz,,purchase\n"
    report = registry.add("h", FeedSpec(str(tmp_path / "items.csv"), interactions=write(tmp_path / "events.csv", events), max_bad_share=0.5), progress=False)
    assert report.events == 4 and [e.field for e in report.events_rejected] == ["item_id"]
    assert registry.interactions("h") == {"u1": ["a", "b"], "u2": ["c", "a"]}
    from retrieval.feeds.events import Event

    assert registry.append_events("h", [Event("u2", "b"), Event("u4", "c", 1.0, "view")]) == 2
    assert registry.interactions("h")["u2"] == ["c", "a", "b"] and registry.interactions("h")["u4"] == ["c"]
    with pytest.raises(CatalogError, match="unknown item id"):
        registry.append_events("h", [Event("u1", "nope")])
    assert "nope" not in sum(registry.interactions("h").values(), [])
    # A new history file replaces the file's events and keeps what arrived through the API.
    registry.update("h", interactions=write(tmp_path / "events2.jsonl", json.dumps({"user": "u9", "item": "a"})), progress=False)
    assert registry.interactions("h") == {"u2": ["b"], "u4": ["c"], "u9": ["a"]}


def test_research_format_history_and_no_history(registry, tmp_path):
    write(tmp_path / "items.json", json.dumps({"1": {"title": "Pen"}, "2": {"title": "Ink"}}))
    registry.add("r", FeedSpec(str(tmp_path / "items.json"), interactions=write(tmp_path / "seq.json", json.dumps({"7": [2, 1]}))), progress=False)
    assert registry.interactions("r") == {"7": ["2", "1"]}
    registry.add("nohist", FeedSpec(str(tmp_path / "items.json")), progress=False)
    with pytest.raises(CatalogError, match="has no interactions"):
        registry.interactions("nohist")


def test_names_unknown_catalogs_and_removal(registry, tmp_path):
    assert registry.names()[:3] == ["amazon-office-2014", "amazon-office-2018", "mg-shopdial"]  # built-ins are entries
    with pytest.raises(CatalogError, match="catalog name"):
        registry.add("Bad Name", FeedSpec("x.csv"))
    with pytest.raises(CatalogError, match="unknown preset"):
        registry.add("x", FeedSpec("x.csv", preset="woo"))
    with pytest.raises(CatalogError, match="file not found"):
        registry.add("x", FeedSpec(str(tmp_path / "missing.csv")))
    with pytest.raises(CatalogError, match="unknown catalog 'nope'"):
        registry.load("nope")
    with pytest.raises(CatalogError, match="AISLE_DATA_DIR"):
        registry.load("amazon-office-2014")  # the data folder of this registry does not exist
    write(tmp_path / "i.csv", "id,title\n1,Pen\n")
    registry.add("gone", FeedSpec(str(tmp_path / "i.csv")), progress=False)
    with pytest.raises(CatalogError, match="exists"):
        registry.add("gone", FeedSpec(str(tmp_path / "i.csv")), progress=False)
    registry.remove("gone")
    assert "gone" not in registry.names()


@pytest.mark.parametrize(
    "raw,expected",
    [(15.99, (15.99, "")), ("15.99 USD", (15.99, "USD")), ("$1,299.50", (1299.5, "USD")), ("EUR 3", (3.0, "EUR")), ("€2.5", (2.5, "EUR")), ("7", (7.0, "")), ("12,50 EUR", (12.5, "EUR")), ("1,299", (1299.0, ""))],
)
def test_parse_money(raw, expected):
    assert parse_money(raw) == expected


@pytest.mark.parametrize("raw", ["free", "3 ZZZ", "-2", "1 USD EUR", True, "call us", "12,5,0", "1.2.3"])
def test_parse_money_refuses(raw):
    with pytest.raises(ValueError):
        parse_money(raw)


def test_parse_timestamp():
    assert parse_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert parse_timestamp(1_700_000_000_000) == 1_700_000_000.0  # milliseconds
    assert parse_timestamp("") is None
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_timestamp("yesterday")


def test_a_rejected_row_is_never_imported(registry, tmp_path):
    """A row the report calls rejected is not in the catalog, not even without the bad field;
    with Shopify's variant rows, one unreadable variant price rejects its whole product."""
    report = registry.add("plain", FeedSpec(write(tmp_path / "plain.csv", "id,title,price\n1,Pen,abc\n2,Ink,3\n3,Pad,2\n"), max_bad_share=0.5), progress=False)
    assert [(e.row, e.field) for e in report.load.rejected] == [("2", "price")]
    assert set(registry.load("plain").items) == {"2", "3"}
    shopify = SHOPIFY_CSV.replace("gel-pen,,,,,,,,Pack of 10,19.00", "gel-pen,,,,,,,,Pack of 10,abc")
    report = registry.add("sh", FeedSpec(write(tmp_path / "products_export.csv", shopify), preset="shopify", max_bad_share=0.5), progress=False)
    [err] = report.load.rejected
    assert (err.row, err.field) == ("2", "Variant Price") and "'abc' (row 3)" in err.problem and "not imported" in err.problem
    assert set(registry.load("sh").items) == {"notebook", "mug", "draft"}
    assert report.load.loaded == 3 and report.added == 3


def test_broken_markup_costs_the_markup_not_the_item_or_its_history(registry, tmp_path):
    """An Amazon item whose description holds a stray `<li`: imported without the tag, with a
    warning; the words after the tag stay, and its purchase events are kept."""
    items = {
        "1": {"title": "Gel Pen", "description": "Smooth ink. <li Quick drying and a soft grip."},
        "2": {"title": "Notebook", "description": "<p>Dotted pages.</p><b class='x"},
        "3": {"title": "Stapler", "description": "<ul><li>Metal</li></ul>"},
    }
    history = {"u1": ["3", "1"], "u2": ["1", "2"], "u3": ["2", "1"]}
    spec = FeedSpec(write(tmp_path / "items.json", json.dumps(items)), preset="amazon-reviews", interactions=write(tmp_path / "seq.json", json.dumps(history)))
    report = registry.add("amz", spec, progress=False)
    cat = registry.load("amz")
    assert set(cat.items) == {"1", "2", "3"} and not report.load.rejected
    assert cat.items["1"].description == "Smooth ink. Quick drying and a soft grip."
    assert cat.items["2"].description == "Dotted pages."
    assert [(w.row, w.field) for w in report.load.warnings] == [("1", "description"), ("2", "description")]
    assert "'<li'" in report.load.warnings[0].problem and "the text kept" in report.load.warnings[0].problem
    assert (report.events, report.events_rejected, report.events_warnings) == (6, [], [])
    assert registry.interactions("amz") == history  # the held-out (last) items are those of the file
    assert "warnings (imported" in report.summary() and "warning: items.json: row 1: field 'description'" in report.summary()


def test_events_of_a_rejected_item_say_why_and_a_changed_held_out_item_is_a_warning(registry, tmp_path):
    items = write(tmp_path / "items.csv", "id,title,price\na,Pen,1\nb,Ink,2\nc,Pad,abc\nd,Ruler,1\n")
    events = "user_id,item_id,timestamp\nu1,a,1\nu1,c,2\nu2,c,1\nu2,b,2\nu3,c,5\nu4,d,1\nu4,a,2\n"
    report = registry.add("h", FeedSpec(items, interactions=write(tmp_path / "events.csv", events), max_bad_share=0.5), progress=False)
    assert [e.row for e in report.events_rejected] == ["3", "4", "6"]
    assert all("item 'c' was rejected (row 4, field 'price': unparseable price 'abc'" in e.problem for e in report.events_rejected)
    warned = {w.problem.split("'")[1]: w.problem for w in report.events_warnings}
    assert set(warned) == {"u1", "u3"}  # u2's last item is unchanged; u4 lost nothing
    assert "held-out (last) item is now 'a'" in warned["u1"] and "no history" in warned["u3"]
    assert registry.interactions("h") == {"u1": ["a"], "u2": ["b"], "u4": ["d", "a"]}
    rows = list(csv.DictReader(report.report_file.open()))
    assert [(r["kind"], r["record"]) for r in rows] == [("rejected", "item"), *[("rejected", "event")] * 3, *[("warning", "event")] * 2]
    assert "held-out (last) item is now 'a'" in report.summary()
    # without timestamps the file order decides which item is last
    report = registry.update("h", interactions=write(tmp_path / "events.jsonl", '{"user": "u5", "item": "b"}\n{"user": "u5", "item": "c"}\n{"user": "u6", "item": "c"}\n{"user": "u6", "item": "b"}\n'), progress=False)
    assert [w.problem for w in report.events_warnings] == ["user 'u5': their last item 'c' was rejected; their held-out (last) item is now 'b'"]


def test_every_import_keeps_its_own_report(registry, tmp_path):
    """Reports are numbered files per catalog: a later import, even a refused one, never
    overwrites an earlier report."""
    v1 = write(tmp_path / "v1.csv", "id,title,price,image_url\n1,Pen,2,ftp://x/pen.jpg\n2,Ink,3,\n")
    first = registry.add("s", FeedSpec(v1), progress=False)
    kept = first.report_file.read_text()
    assert "warning,item,v1.csv,2,image_url" in kept and str(first.report_file) in first.summary()
    with pytest.raises(ImportRefused) as refused:
        registry.update("s", items=write(tmp_path / "v2.csv", "id,title,price\n1,Pen,abc\n2,Ink,free\n"), progress=False)
    checked = registry.check("s", items=v1)
    applied = registry.update("s", items=v1, progress=False)
    files = [first.report_file, refused.value.report.report_file, checked.report_file, applied.report_file]
    assert len(set(files)) == 4 and all(f.parent == first.report_file.parent for f in files)
    assert [f.name.split("-")[0] for f in files] == ["0001", "0002", "0003", "0004"]
    assert [f.stem.rsplit("-", 1)[1] for f in files] == ["applied", "refused", "check", "applied"]
    assert first.report_file.read_text() == kept
    assert "rejected,item,v2.csv,2,price" in files[1].read_text()
    assert set(registry.load("s").items) == {"1", "2"}
