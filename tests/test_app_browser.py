"""The Gradio UI in a real browser: headless Debian chromium via Playwright against the running app.

Sends a message, waits for item cards with reasons, clicks thumbs-up, and checks the vote is in the
session store. Also checks that the page fetched nothing from outside 127.0.0.1 (works offline).
Skipped when /usr/bin/chromium is missing (CI installs it: apt-get install chromium).
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app(settings, shopdial_searcher, tmp_path_factory):
    import app as aisle_app
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    db = tmp_path_factory.mktemp("ui") / "sessions.sqlite"
    agent = Agent(settings, store=SessionStore(db), searchers={"mg-shopdial": shopdial_searcher}, default_catalog="mg-shopdial")
    agent.warm_up()
    demo = aisle_app.build_ui(agent)
    port = _free_port()
    aisle_app.launch(demo, port=port, block=False)
    yield f"http://127.0.0.1:{port}/", db
    demo.close()
    agent.store.close()


def test_untrusted_text_is_escaped():
    """Catalog/LLM text cannot inject HTML into cards, nor links/images/headings into the chat."""
    from app import card_html, md_text

    evil = {"id": 'x"><img src=x onerror=alert(1)>', "title": "<script>alert(1)</script> Pen", "brand": "<b>Acme</b>", "category": "Pens", "price": 3.5, "reason": "![pic](http://evil.example/p.png) [click](http://evil.example)", "grounded": False}
    html_ = card_html(1, evil)
    assert "<script>" not in html_ and "<img" not in html_ and "<b>" not in html_
    assert "&lt;script&gt;" in html_ and "(unverified)" in html_ and 'data-item-id="x&quot;&gt;' in html_
    md = md_text("# Title ![pic](http://evil.example/p.png) <i>x</i> [a](b)")
    assert "![" not in md and "](" not in md and "<i>" not in md and not md.startswith("#")


@needs_chromium
def test_chat_cards_and_thumbs_up(app, tmp_path):
    from playwright.sync_api import sync_playwright

    url, db = app
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None) and not r.url.startswith(("data:", "blob:")) else None)
        # not "networkidle": Gradio keeps a heartbeat event stream open for the page's lifetime
        page.goto(url, wait_until="load", timeout=120_000)
        page.wait_for_selector("#aisle-input textarea", timeout=60_000)
        page.fill("#aisle-input textarea", "running shoes under $70")
        page.click("#aisle-send")
        page.wait_for_selector("#aisle-card-0 .aisle-reason", state="visible", timeout=180_000)

        cards = page.locator(".aisle-card .aisle-item")
        assert cards.count() >= 1
        first = cards.nth(0)
        title = first.locator(".aisle-title").inner_text()
        assert "Running Shoe" in title and first.locator(".aisle-reason").inner_text().strip()
        assert first.locator(".aisle-price").inner_text().startswith("$")
        item_id = first.get_attribute("data-item-id")
        chat_text = page.locator("#aisle-chat").inner_text()
        assert "Looking for" in chat_text and "items I found are in" in chat_text and first.locator(".aisle-title").inner_text().split(". ", 1)[1] not in chat_text

        page.click("#aisle-up-0")
        page.wait_for_function("document.querySelector('#aisle-status') && document.querySelector('#aisle-status').innerText.includes('Saved')", timeout=60_000)
        page.wait_for_selector("#aisle-card-0 .aisle-vote", timeout=30_000)

        shot = tmp_path / "aisle-ui.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, "/tmp/aisle-ui.png")
        browser.close()

    with sqlite3.connect(db) as con:
        votes = con.execute("SELECT item_id, value FROM feedback").fetchall()
    assert votes == [(item_id, 1)]
    assert outside == [], f"the page fetched from outside 127.0.0.1: {outside}"


@pytest.fixture(scope="module")
def office_app(settings, office_searcher, tmp_path_factory):
    """The UI on amazon-office-2014 with the agent's defaults (the shredder conversation of #16)."""
    import app as aisle_app
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    db = tmp_path_factory.mktemp("ui-office") / "sessions.sqlite"
    agent = Agent(settings, store=SessionStore(db), searchers={"amazon-office-2014": office_searcher}, default_catalog="amazon-office-2014")
    agent.warm_up()
    demo = aisle_app.build_ui(agent)
    port = _free_port()
    aisle_app.launch(demo, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    agent.store.close()


@needs_chromium
def test_the_shredder_conversation_reads_like_a_shop_assistant(office_app):
    """#16: "I need a quiet paper shredder for my home office" -> "cheaper, and not Fellowes" ->
    "why the second one?". The quiet shredder comes first with a reason tied to "quiet", no
    Fellowes after the second turn, and the why-answer compares with the other shown items.
    Saves eval-out/screenshots/shredder.png (git-ignored) for the issue's note."""
    from playwright.sync_api import sync_playwright

    from agent.settings import REPO_ROOT

    shot = REPO_ROOT / "eval-out" / "screenshots" / "shredder.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(office_app, wait_until="load", timeout=120_000)
        page.wait_for_selector("#aisle-input textarea", timeout=60_000)

        def say(message: str, marker: str) -> str:
            page.fill("#aisle-input textarea", message)
            page.click("#aisle-send")
            page.wait_for_function(
                "([m, n]) => { const c = document.querySelector('#aisle-chat'); return c && c.innerText.split(m).length > n; }",
                arg=[marker, page.locator("#aisle-chat").inner_text().count(marker)],
                timeout=240_000,
            )
            page.wait_for_timeout(500)  # the last streamed piece
            return page.locator("#aisle-chat").inner_text()

        first = say("I need a quiet paper shredder for my home office", "You can say")
        page.wait_for_selector("#aisle-card-0 .aisle-reason", state="visible", timeout=120_000)
        cards = page.locator(".aisle-card .aisle-item")
        assert cards.count() >= 3
        top_reason = cards.nth(0).locator(".aisle-reason").inner_text()
        assert "quiet" in top_reason.lower(), top_reason  # the quiet one first, and its reason says why
        reasons = [cards.nth(i).locator(".aisle-reason").inner_text().strip() for i in range(cards.count())]
        assert len(set(reasons)) == len(reasons), reasons
        for text in (first, *reasons):
            assert "its title matches" not in text and "Listed under" not in text and "no price listed" not in text

        first_titles = [cards.nth(i).locator(".aisle-title").inner_text() for i in range(cards.count())]
        second = say("cheaper, and not Fellowes", "not Fellowes")
        page.wait_for_function(
            "(old) => { const t = [...document.querySelectorAll('.aisle-card .aisle-item .aisle-title')].map(e => e.innerText); return t.length > 0 && t.join('|') !== old.join('|'); }",
            arg=first_titles,
            timeout=120_000,
        )
        titles = [cards.nth(i).locator(".aisle-title").inner_text() for i in range(cards.count())]
        assert titles and not any("fellowes" in t.lower() for t in titles), titles
        after = second.split("cheaper, and not Fellowes")[-1]
        assert "Fellowes" not in after.split("not Fellowes", 1)[-1], after

        third = say("why the second one?", "Compared with the other")
        why = third.split("why the second one?")[-1]
        assert "#2" in why and "What its record says" in why and "Compared with the other" in why, why
        assert "no price listed" not in why and "category Office Electronics" not in why

        # the whole conversation in one picture: let the chat grow to its content
        page.add_style_tag(content="#aisle-chat, #aisle-chat > div, #aisle-chat .bubble-wrap, #aisle-chat [class*='wrapper'] { height: auto !important; max-height: none !important; overflow: visible !important; }")
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def poisoned_app(tmp_path_factory):
    """The UI on a poisoned catalog that skipped the import screen, with a compromised LLM
    (tests/poisoned.py) writing reasons, the intro and the extraction."""
    import app as aisle_app
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from agent.settings import Settings
    from retrieval.search import open_searcher
    from tests.fast.conftest import share_models
    from tests.fast.test_poisoned_catalog import unscreened_catalog
    from tests.poisoned import HostileLLM

    hostile = HostileLLM()
    home = share_models(tmp_path_factory.mktemp("ui-poisoned"))
    settings = Settings(home=home, chroma_url=None, llm="openai", llm_url=hostile.url, llm_served_model="hostile", llm_timeout_s=10)
    catalog = unscreened_catalog()
    agent = Agent(settings, store=SessionStore(home / "sessions.sqlite"), searchers={catalog.name: open_searcher(settings, catalog=catalog, progress=False)}, default_catalog=catalog.name, llm_reasons=True, llm_intro=True, llm_extract=True)
    demo = aisle_app.build_ui(agent)
    port = _free_port()
    aisle_app.launch(demo, port=port, block=False)
    yield f"http://127.0.0.1:{port}/", hostile
    demo.close()
    agent.store.close()
    hostile.stop()


@needs_chromium
def test_no_payload_is_shown_in_the_browser(poisoned_app):
    """Everything the page shows (chat and cards), as the browser renders it, after a conversation
    over poisoned items with a compromised model: no planted payload, nothing fetched from outside."""
    from playwright.sync_api import sync_playwright

    from tests.poisoned import POISONED_ROWS, payloads

    url, hostile = poisoned_app
    outside: list[str] = []
    seen_ids: set[str] = set()
    shown: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None) and not r.url.startswith(("data:", "blob:")) else None)
        page.goto(url, wait_until="load", timeout=120_000)
        page.wait_for_selector("#aisle-input textarea", timeout=60_000)
        for message in ["a stapler", "why the first?", "a quiet stapler", "tell me about the first one"]:
            before = page.locator("#aisle-chat").inner_text().count(message)  # before sending: the message itself counts
            page.fill("#aisle-input textarea", message)
            page.click("#aisle-send")
            page.wait_for_function("([m, k]) => document.querySelector('#aisle-chat').innerText.split(m).length - 1 > k", arg=[message, before], timeout=120_000)
            text, last, still = "", None, 0
            for _ in range(240):  # until the streamed reply has stopped changing for 3 s (the LLM's calls pause it)
                page.wait_for_timeout(500)
                text = page.locator("#aisle-chat").inner_text()
                still = still + 1 if text == last else 0
                if still >= 6 and not text.rstrip().endswith("…"):
                    break
                last = text
            shown.append(text)
            cards = page.locator(".aisle-card .aisle-item")
            for i in range(cards.count()):
                shown.append(cards.nth(i).inner_text())
                seen_ids.add(cards.nth(i).get_attribute("data-item-id") or "")
        browser.close()
    assert hostile.answers > 0 and seen_ids & {r["id"] for r in POISONED_ROWS}, seen_ids
    leaks = [(found, text[:200]) for text in shown if (found := payloads(text))]
    assert leaks == [], leaks[:3]
    assert outside == [], f"the page fetched from outside 127.0.0.1: {outside}"


# --- products as cards: price, stock, the shop's image; the chat does not list them again -----------


def test_card_shows_the_offer_and_only_the_shops_own_image():
    """Price with its currency, stock as the feed states it, the record's http(s) image as an
    <img> with an escaped src and alt, no referrer, lazy, fixed size; any other image_url is dropped."""
    from app import card_html

    item = {"id": "k1", "title": 'Aurora "Quiet" <Shredder>', "brand": "Aurora", "category": "Shredders", "price": 89.5, "currency": "EUR", "availability": "in stock", "image_url": "http://127.0.0.1:9/k1.png?w=72&h=72", "reason": "Quiet.", "grounded": True}
    card = card_html(1, item)
    assert '<span class="aisle-price">€89.50</span>' in card and ">In stock<" in card
    assert '<img class="aisle-image" src="http://127.0.0.1:9/k1.png?w=72&amp;h=72" alt="Aurora &quot;Quiet&quot; &lt;Shredder&gt;"' in card
    assert 'referrerpolicy="no-referrer"' in card and 'loading="lazy"' in card and 'width="72" height="72"' in card
    assert ">Out of stock<" in card_html(1, {**item, "availability": "out of stock"}) and ">Backorder<" in card_html(1, {**item, "availability": "backorder"})
    assert "aisle-availability" not in card_html(1, {**item, "availability": ""})  # the feed said nothing
    assert money_shown(card_html(1, {**item, "price": 1299.0, "currency": "SEK"})) == "1,299 SEK"
    for bad in ("javascript:alert(1)", "data:image/png;base64,AAAA", 'http://x.example/a.png" onerror="alert(1)', "//x.example/a.png", ""):
        assert "<img" not in card_html(1, {**item, "image_url": bad}), bad


def money_shown(card: str) -> str:
    return card.split('<span class="aisle-price">', 1)[1].split("</span>", 1)[0]


def test_chat_text_leaves_the_items_to_the_cards():
    """The UI's chat text of an answer: what was searched, one line pointing at the cards, the notes;
    the item lines of the reply (which the API and terminal show) are left out."""
    from agent.chat.replies import ItemLine
    from app import ChatReply

    reply = ChatReply()
    for piece in ["Looking for “shredder”.\n", ItemLine("1. Aurora Shredder (Aurora · €89.50)\n   Quiet.\n"), ItemLine("2. Royal Shredder\n   Cheap.\n"), "\n", "You can say “cheaper”."]:
        reply.add(piece)
    assert reply.text() == "Looking for “shredder”.\nThe 2 items I found are in “Recommended items”.\nYou can say “cheaper”."
    plain = ChatReply()
    plain.add("Nothing in the tiny catalog matches that.")
    assert plain.text() == "Nothing in the tiny catalog matches that."


def test_every_theme_font_face_has_the_glyphs_of_plain_text():
    """Each local font face the theme declares draws all of printable ASCII, so no weight mixes
    typefaces within a word (Gradio's SemiBold files hold a few glyphs such as A and B)."""
    fontTools = pytest.importorskip("fontTools.ttLib")
    from gradio.themes.utils.fonts import LocalFont, font_file_path

    from app import FONT, FONT_MONO

    faces = [(f.name, w) for f in (*FONT, *FONT_MONO) if isinstance(f, LocalFont) for w in f.weights]
    assert faces
    text = {ord(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,;:!?$€£%&()-'\""}
    for name, weight in faces:
        path = font_file_path(name, weight)
        missing = text - set(fontTools.TTFont(str(path)).getBestCmap())
        assert not missing, f"{path.name} lacks {''.join(sorted(chr(c) for c in missing))}"


def _png(rgb: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 48), rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_server():
    """A shop's image host on 127.0.0.1: serves small PNGs and records each request's path and Referer."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    images = {f"/img/{k}.png": _png(c) for k, c in (("k1", (200, 60, 60)), ("k2", (60, 160, 80)), ("k3", (60, 90, 200)), ("k5", (0, 0, 0)))}
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Referer")))
            body = images.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png" if body else "text/plain")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/img", seen
    server.shutdown()
    server.server_close()


def priced_rows(base: str) -> list[dict[str, str]]:
    """A shop feed with prices in several currencies, availability and image links (one not http)."""
    office = "Office > Shredders"
    return [
        {"id": "k1", "title": "Aurora Quiet Paper Shredder, 8 Sheet Cross-Cut", "brand": "Aurora", "categories": office, "price": "89.50 EUR", "availability": "in stock", "image_url": f"{base}/k1.png", "description": "A quiet cross-cut shredder for the home office."},
        {"id": "k2", "title": "Bonsaii Strip-Cut Paper Shredder, 6 Sheet", "brand": "Bonsaii", "categories": office, "price": "45 GBP", "availability": "backorder", "image_url": f"{base}/k2.png", "description": "Strip-cut shredder with a 3 gallon bin."},
        {"id": "k3", "title": "AmazonBasics Micro-Cut Paper Shredder, 12 Sheet", "brand": "AmazonBasics", "categories": office, "price": "1299 SEK", "availability": "in stock", "image_url": f"{base}/k3.png", "description": "Micro-cut shredder for documents and cards."},
        {"id": "k4", "title": "Royal Paper Shredder, 10 Sheet", "brand": "Royal", "categories": office, "price": "59.99 USD", "availability": "", "image_url": "javascript:alert(1)", "description": "A paper shredder with an auto start."},
        {"id": "k5", "title": "Fellowes Powershred Paper Shredder, 8 Sheet", "brand": "Fellowes", "categories": office, "price": "99 USD", "availability": "out of stock", "image_url": f"{base}/k5.png", "description": "Cross-cut paper shredder."},
        {"id": "t1", "title": "Swingline Heavy Duty Stapler", "brand": "Swingline", "categories": "Office > Staplers", "price": "39.99 USD", "availability": "in stock", "image_url": f"{base}/t1.png", "description": "A metal stapler."},
        {"id": "t2", "title": "Pilot G2 Gel Pens, Black", "brand": "Pilot", "categories": "Office > Pens", "price": "12.99 USD", "availability": "in stock", "description": "Gel ink pens."},
    ]


@pytest.fixture(scope="module")
def priced_app(tmp_path_factory, image_server):
    """The UI on a shop catalog imported through the real feed import (registry, Chroma, MiniLM),
    whose image links point at the local image server; the scripted engine stands in for the LLM."""
    import json

    import app as aisle_app
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from agent.settings import Settings
    from retrieval.registry import FeedSpec, Registry
    from retrieval.search import open_searcher
    from tests.fast.conftest import ScriptedEngine, share_models

    base, _ = image_server
    tmp = tmp_path_factory.mktemp("ui-priced")
    feed = tmp / "products.jsonl"
    feed.write_text("\n".join(json.dumps(r) for r in priced_rows(base)))
    home = share_models(tmp / "home")
    settings = Settings(home=home, chroma_url=None, llm="transformers")
    report = Registry(settings).add("priced-shop", FeedSpec(str(feed)), progress=False)
    assert report.load.loaded == 7 and [w.field for w in report.load.warnings] == ["image_url"]
    agent = Agent(settings, store=SessionStore(home / "sessions.sqlite"), engine=ScriptedEngine(), searchers={"priced-shop": open_searcher(settings, "priced-shop", progress=False)}, default_catalog="priced-shop", rank_mode="none")
    demo = aisle_app.build_ui(agent)
    port = _free_port()
    aisle_app.launch(demo, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    agent.store.close()


def _boxes_meet(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


@needs_chromium
def test_cards_show_prices_stock_and_images_and_the_chat_does_not_repeat_them(priced_app, image_server, tmp_path):
    """One list of items per answer (the cards), each with its price and currency, stock and the
    shop's image loaded from the shop's host without a referrer; the "Conversation" label covers no
    message; the theme's font faces are the complete ones. Saves ui-products.png (the first answer)
    and ui-products-scrolled.png (the end) in $AISLE_SCREENSHOT_DIR (default: the test's temporary folder)."""
    import os

    from playwright.sync_api import sync_playwright

    base, requests = image_server
    shot_dir = Path(os.environ.get("AISLE_SCREENSHOT_DIR") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(priced_app, wait_until="load", timeout=120_000)
        page.wait_for_selector("#aisle-input textarea", timeout=60_000)

        def say(message: str) -> str:
            """Send a message; wait for its answer to finish; the answer's chat text."""
            before = page.locator("#aisle-chat [data-testid=bot]").count()
            page.fill("#aisle-input textarea", message)
            page.click("#aisle-send")
            page.wait_for_function("n => document.querySelectorAll('#aisle-chat [data-testid=bot]').length > n", arg=before, timeout=120_000)
            page.wait_for_function("() => !document.querySelector('.eta-bar, .progress-text, .generating')", timeout=120_000)
            page.wait_for_timeout(300)
            return page.locator("#aisle-chat [data-testid=bot]").last.inner_text()

        def cards() -> dict[str, dict[str, Any]]:
            return {
                c["id"]: c
                for c in page.evaluate(
                    """() => [...document.querySelectorAll('.aisle-card .aisle-item')].filter(e => e.offsetParent).map(e => {
                        const img = e.querySelector('img.aisle-image'), text = s => (e.querySelector(s) || {}).innerText || null;
                        return {id: e.dataset.itemId, title: text('.aisle-title').replace(/^\\d+\\. /, ''), price: text('.aisle-price'), stock: text('.aisle-availability'),
                                img: img && {src: img.src, complete: img.complete, width: img.naturalWidth, alt: img.alt}};
                    })"""
                )
            }

        answer = say("a paper shredder")
        page.wait_for_selector("#aisle-card-0 .aisle-reason", state="visible", timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('.aisle-card img.aisle-image')].filter(i => i.offsetParent).every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        shown = cards()
        assert set(shown) == {"k1", "k2", "k3", "k4"}, shown  # k5 is out of stock, the others are not shredders
        assert {k: (c["price"], c["stock"]) for k, c in shown.items()} == {"k1": ("€89.50", "In stock"), "k2": ("£45", "Backorder"), "k3": ("1,299 SEK", "In stock"), "k4": ("$59.99", None)}
        for k in ("k1", "k2", "k3"):
            img = shown[k]["img"]
            assert img and img["src"] == f"{base}/{k}.png" and img["width"] == 48 and img["alt"] == shown[k]["title"], img
        assert shown["k4"]["img"] is None  # its feed link was not http(s): dropped at import
        assert "The 4 items I found are in “Recommended items”" in answer, answer
        page_text = page.locator("body").inner_text()
        for c in shown.values():  # once per answer: in its card, not again in the chat
            assert c["title"] not in answer and page_text.count(c["title"]) == 1, c["title"]
        assert {path for path, _ in requests} == {"/img/k1.png", "/img/k2.png", "/img/k3.png"}
        assert all(referer is None for _, referer in requests), requests
        page.screenshot(path=str(shot_dir / "ui-products.png"), full_page=True)

        answer = say("not Aurora")
        page.wait_for_function("() => !document.querySelector('.aisle-card .aisle-item[data-item-id=\"k1\"]') || !document.querySelector('#aisle-card-0').offsetParent || document.querySelector('#aisle-card-0 .aisle-item').dataset.itemId !== 'k1'", timeout=60_000)
        shown = cards()
        assert shown and "k1" not in shown and all(c["title"] not in answer for c in shown.values()), (answer, shown)
        say("why the first?")  # a long answer: the list scrolls under the chat's top edge

        labels = page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter(e => e.childElementCount === 0 && e.innerText && e.innerText.trim() === 'Conversation' && e.offsetParent)
                .map(e => e.getBoundingClientRect().toJSON())"""
        )
        messages = page.evaluate(
            """() => { const box = document.querySelector('#aisle-chat').getBoundingClientRect();
                return [...document.querySelectorAll('#aisle-chat [data-testid=user], #aisle-chat [data-testid=bot]')].map(e => e.getBoundingClientRect())
                    .filter(r => r.bottom > box.top && r.top < box.bottom)  // the visible part: clipped to the chat's box
                    .map(r => ({x: r.x, y: Math.max(r.top, box.top), width: r.width, height: Math.min(r.bottom, box.bottom) - Math.max(r.top, box.top)})); }"""
        )
        assert labels and messages
        assert not [(lab, m) for lab in labels for m in messages if _boxes_meet(lab, m)]
        weights = page.evaluate("() => [...document.fonts].filter(f => f.family.includes('Source Sans Pro')).map(f => f.weight).sort()")
        assert weights == ["400", "700"], weights

        page.screenshot(path=str(shot_dir / "ui-products-scrolled.png"), full_page=True)
        browser.close()
