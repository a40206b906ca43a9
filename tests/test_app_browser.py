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
    hostile.close()


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
            page.fill("#aisle-input textarea", message)
            page.click("#aisle-send")
            before = page.locator("#aisle-chat").inner_text().count(message)
            page.wait_for_function("([m, k]) => document.querySelector('#aisle-chat').innerText.split(m).length - 1 > k", arg=[message, before], timeout=120_000)
            text, last = "", None
            for _ in range(240):  # until the streamed reply stops changing
                page.wait_for_timeout(500)
                text = page.locator("#aisle-chat").inner_text()
                if text == last and not text.rstrip().endswith("…"):
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
