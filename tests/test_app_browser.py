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
        assert "Looking for" in chat_text and "Running Shoe" in chat_text

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
