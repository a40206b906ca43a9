"""aisle chat UI (Gradio): `python app.py` serves http://127.0.0.1:7860 on the default catalog.

Streaming replies, one card per recommended item (title, brand, category, price, availability, the
shop's image, reason) with thumbs up/down stored in the session store, example prompts, a catalog
selector and "New conversation". The chat says what was searched and what changed and points at the
cards; it does not list the items again (the API and terminal replies do). Works offline: analytics
off, local fonts, no server-side rendering (no Node); the only remote fetch is an item image from
the shop's own feed, sent without a referrer.

Everything shown comes from the catalog or the LLM, so it is untrusted: card fields are HTML-escaped
and chat text is escaped for Markdown and HTML before Gradio renders it.
Stable hooks for tests and custom CSS: #aisle-chat, #aisle-input, #aisle-send, #aisle-new,
#aisle-catalog, cards #aisle-card-N (.aisle-card) with .aisle-title/.aisle-brand/.aisle-category/
.aisle-price/.aisle-availability/.aisle-image/.aisle-reason and buttons #aisle-up-N (.aisle-thumb-up) /
#aisle-down-N (.aisle-thumb-down), and #aisle-status for the last feedback note.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
from collections.abc import Iterator
from typing import Any

from agent.settings import Settings, force_offline

force_offline()  # before gradio is imported: no analytics, no hub

import gradio as gr  # noqa: E402

from agent.chat.agent import Agent, TurnResult  # noqa: E402
from agent.chat.replies import EXAMPLES, ItemLine  # noqa: E402
from agent.chat.store import UnknownSession  # noqa: E402
from agent.errors import AisleError  # noqa: E402
from agent.text import money  # noqa: E402
from retrieval.screen import web_url  # noqa: E402

log = logging.getLogger("aisle.app")

MAX_CARDS = 5
IMAGE_PX = 72  # the card image's fixed size: a slow or odd-shaped image never moves the text
# Gradio ships its 600-weight faces as stubs: SourceSansPro-SemiBold.woff2 maps 55 code points
# (space, A, B, ...) against 1,615 in Regular and Bold (the same for IBM Plex Mono), so a 600-weight
# title drew A and B in Source Sans and every other letter in a system fallback. Declaring only the
# complete Regular and Bold files gives one typeface at every weight (600 resolves to Bold), still
# served locally.
FONT = (gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "system-ui", "sans-serif")
FONT_MONO = (gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700)), "ui-monospace", "Consolas", "monospace")
CSS = """
.aisle-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px !important; }
.aisle-item { display: flex; gap: 10px; align-items: flex-start; }
.aisle-item .aisle-text { flex: 1; min-width: 0; }
.aisle-item .aisle-image { flex: none; object-fit: contain; border-radius: 6px; background: var(--background-fill-secondary); }
.aisle-item .aisle-title { font-weight: 700; font-size: 1.0em; line-height: 1.3; }
.aisle-item .aisle-meta { color: var(--body-text-color-subdued); font-size: 0.88em; margin: 4px 0; }
.aisle-item .aisle-offer { font-size: 0.92em; margin: 2px 0; }
.aisle-item .aisle-price { font-weight: 700; }
.aisle-item .aisle-out-of-stock { color: var(--error-text-color); }
.aisle-item .aisle-reason { font-size: 0.92em; margin: 6px 0 0 0; }
.aisle-item .aisle-vote { font-size: 0.85em; color: var(--color-accent); margin-top: 4px; }
.aisle-item .aisle-flag { font-size: 0.8em; color: var(--body-text-color-subdued); }
.aisle-thumbs button { min-width: 44px !important; }
#aisle-status { min-height: 1.5em; }
""" + f".aisle-item .aisle-image {{ width: {IMAGE_PX}px; height: {IMAGE_PX}px; }}\n"

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_text(text: str) -> str:
    """Untrusted text made inert for Gradio's Markdown renderer: HTML escaped, Markdown syntax escaped
    (so a product title cannot become a link, an image fetched from elsewhere, or a heading)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


class ChatReply:
    """One answer's chat text as the UI shows it: the reply without its item lines (the cards list
    the items, so each is shown once), with one line that points at the cards."""

    def __init__(self) -> None:
        self.lead = ""  # what was searched for, before the items
        self.tail = ""  # notes after the items: what changed, what to try next
        self.items = 0

    def add(self, piece: str) -> None:
        if isinstance(piece, ItemLine):
            self.items += 1
        elif self.items:
            self.tail += piece
        else:
            self.lead += piece

    def text(self) -> str:
        pointer = ""
        if self.items:
            pointer = "The item I found is in “Recommended items”." if self.items == 1 else f"The {self.items} items I found are in “Recommended items”."
        return "\n".join(p for p in (self.lead.strip(), pointer, self.tail.strip()) if p)



def card_html(n: int, item: dict[str, Any], vote: int = 0) -> str:
    """One recommended item as a card. The image is the catalog record's own http(s) image_url
    (screened at import and again here), never a link; the browser sends no referrer with it."""
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    read_off = ' title="read from the product title: the catalog lists no brand"' if item.get("brand_source") == "title" else ""
    meta = [f'<span class="aisle-brand"{read_off}>{e(item["brand"])}</span>' if item.get("brand") else '<span class="aisle-brand aisle-flag">no brand listed</span>']
    if item.get("category"):
        meta.append(f'<span class="aisle-category">{e(item["category"])}</span>')
    attrs = item.get("attributes") or {}
    if attrs:  # plain text, escaped: shown, never rendered (url is not shown at all)
        meta.append(f'<span class="aisle-attributes">{e("; ".join(f"{k}: {v}" for k, v in list(attrs.items())[:4]))}</span>')
    offer = []
    if item.get("price") is not None:
        offer.append(f'<span class="aisle-price">{e(money(item["price"], item.get("currency", "")))}</span>')
    stock = item.get("availability") or ""  # only when the feed states it, as it states it
    if stock:
        offer.append(f'<span class="aisle-availability aisle-{e(stock.replace(" ", "-"))}">{e(stock.capitalize())}</span>')
    image = item.get("image_url") or ""
    img = (
        f'<img class="aisle-image" src="{e(image)}" alt="{e(item["title"])}" width="{IMAGE_PX}" height="{IMAGE_PX}" loading="lazy" referrerpolicy="no-referrer" decoding="async">'
        if web_url(image)
        else ""
    )
    flag = "" if item.get("grounded", True) else ' <span class="aisle-flag">(unverified)</span>'
    voted = {1: '<div class="aisle-vote">✓ Liked (saved)</div>', -1: '<div class="aisle-vote">✓ Hidden: it won\'t be shown again</div>'}.get(vote, "")
    return (
        f'<div class="aisle-item" data-item-id="{e(item["id"])}">{img}<div class="aisle-text">'
        f'<div class="aisle-title">{n}. {e(item["title"])}</div>'
        f'<div class="aisle-meta">{" · ".join(meta)}</div>'
        + (f'<div class="aisle-offer">{" · ".join(offer)}</div>' if offer else "")
        + f'<p class="aisle-reason">{e(item["reason"])}{flag}</p>{voted}</div></div>'
    )


def build_ui(agent: Agent, *, catalog: str | None = None) -> gr.Blocks:
    """The Blocks app over a shared Agent (tests pass their own)."""
    default_catalog = catalog or agent.default_catalog
    catalogs = agent.catalogs()

    with gr.Blocks(title="aisle — shopping assistant", analytics_enabled=False) as demo:
        session = gr.State(None)
        items_state = gr.State([])
        gr.Markdown("## aisle — shopping assistant\nTell me what you need; I recommend items from the catalog and say why each fits.")
        with gr.Row():
            catalog_dd = gr.Dropdown(catalogs, value=default_catalog, label="Catalog", elem_id="aisle-catalog", scale=3)
            new_btn = gr.Button("New conversation", elem_id="aisle-new", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                # A heading, not the Chatbot's own label: that label floats over the message list,
                # so the first line (and every line scrolled up) ran under it.
                gr.Markdown("#### Conversation")
                chat = gr.Chatbot(elem_id="aisle-chat", height=460, label="Conversation", show_label=False, buttons=[], sanitize_html=True)
                with gr.Row():
                    box = gr.Textbox(placeholder="e.g. a heavy duty stapler, not Swingline", show_label=False, elem_id="aisle-input", scale=5, max_length=2000)
                    send = gr.Button("Send", variant="primary", elem_id="aisle-send", scale=1)
                with gr.Row():
                    example_btns = [gr.Button(e, size="sm", elem_classes=["aisle-example"]) for e in EXAMPLES.get(default_catalog, [])[:3]]
            with gr.Column(scale=2):
                gr.Markdown("#### Recommended items")
                status = gr.Markdown("", elem_id="aisle-status")
                cards: list[gr.Column] = []
                bodies: list[gr.HTML] = []
                ups: list[gr.Button] = []
                downs: list[gr.Button] = []
                for i in range(MAX_CARDS):
                    with gr.Column(visible=False, elem_id=f"aisle-card-{i}", elem_classes=["aisle-card"]) as card:
                        bodies.append(gr.HTML("", elem_classes=["aisle-card-body"]))
                        with gr.Row(elem_classes=["aisle-thumbs"]):
                            # Text labels: emoji need an emoji font, which minimal browsers/kiosks lack.
                            ups.append(gr.Button("Like", size="sm", elem_id=f"aisle-up-{i}", elem_classes=["aisle-thumb-up"], min_width=44))
                            downs.append(gr.Button("Not for me", size="sm", elem_id=f"aisle-down-{i}", elem_classes=["aisle-thumb-down"], min_width=44))
                    cards.append(card)

        card_outputs: list[Any] = [*cards, *bodies]

        def card_updates(items: list[dict[str, Any]]) -> list[Any]:
            vis = [gr.update(visible=i < len(items)) for i in range(MAX_CARDS)]
            html_ = [gr.update(value=card_html(i + 1, items[i]) if i < len(items) else "") for i in range(MAX_CARDS)]
            return vis + html_

        def respond(message: str, history: list[dict[str, Any]], sid: str | None, cat: str, items: list[dict[str, Any]]) -> Iterator[list[Any]]:
            history = list(history or [])
            text = (message or "").strip()
            if not text:
                yield [history, "", sid, items, gr.update(), *[gr.update()] * len(card_outputs)]
                return
            history.append({"role": "user", "content": md_text(text)})
            history.append({"role": "assistant", "content": "…"})
            yield [history, "", sid, items, "", *[gr.update()] * len(card_outputs)]
            reply = ChatReply()
            try:
                if sid is None:
                    sid = agent.new_session(cat)
                for piece in agent.turn_stream(sid, text):
                    if isinstance(piece, TurnResult):
                        if piece.action == "recommend" and piece.items:
                            items = [i.to_dict() for i in piece.items]
                            history[-1] = {"role": "assistant", "content": md_text(reply.text())}
                            yield [history, "", sid, items, "", *card_updates(items)]
                            return
                        if piece.action == "reset":
                            items = []
                            history[-1] = {"role": "assistant", "content": md_text(reply.text())}
                            yield [history, "", sid, items, "", *card_updates(items)]
                            return
                    else:
                        reply.add(piece)
                        history[-1] = {"role": "assistant", "content": md_text(reply.text())}
                        yield [history, "", sid, items, gr.update(), *[gr.update()] * len(card_outputs)]
            except UnknownSession:
                sid = None
                history[-1] = {"role": "assistant", "content": "That conversation has expired; I started a new one. Please send your message again."}
            except AisleError as exc:
                history[-1] = {"role": "assistant", "content": md_text(f"⚠️ {exc}")}
            yield [history, "", sid, items, gr.update(), *[gr.update()] * len(card_outputs)]

        chat_inputs = [box, chat, session, catalog_dd, items_state]
        chat_outputs = [chat, box, session, items_state, status, *card_outputs]
        box.submit(respond, chat_inputs, chat_outputs)
        send.click(respond, chat_inputs, chat_outputs)
        for btn in example_btns:
            btn.click(lambda v: v, btn, box).then(respond, chat_inputs, chat_outputs)

        def vote(index: int, value: int) -> Any:
            def handler(sid: str | None, items: list[dict[str, Any]]) -> list[Any]:
                if sid is None or index >= len(items):
                    return [gr.update(), "Nothing to rate yet."]
                item = items[index]
                try:
                    agent.feedback(sid, item["id"], value)
                except AisleError as exc:
                    return [gr.update(), md_text(f"⚠️ {exc}")]
                note = "Saved: you like" if value > 0 else "Saved: I won't show again"
                return [gr.update(value=card_html(index + 1, item, value)), md_text(f"{note} “{item['title'][:60]}”.")]

            return handler

        for i in range(MAX_CARDS):
            ups[i].click(vote(i, 1), [session, items_state], [bodies[i], status])
            downs[i].click(vote(i, -1), [session, items_state], [bodies[i], status])

        def reset(cat: str) -> list[Any]:
            examples = EXAMPLES.get(cat, [])
            ex_updates = [gr.update(value=examples[i], visible=True) if i < len(examples) else gr.update(visible=False) for i in range(len(example_btns))]
            return [[], "", None, [], "", *card_updates([]), *ex_updates]

        reset_outputs = [chat, box, session, items_state, status, *card_outputs, *example_btns]
        new_btn.click(reset, catalog_dd, reset_outputs)
        catalog_dd.change(reset, catalog_dd, reset_outputs)
        # A catalog added with `aisle catalog add` while the app runs shows up on the next page load.
        demo.load(lambda: gr.update(choices=agent.catalogs()), None, catalog_dd)
    return demo


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        theme=gr.themes.Default(font=FONT, font_mono=FONT_MONO),  # local fonts: nothing fetched from a font CDN
        css=CSS,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        show_error=False,
        footer_links=[],
        prevent_thread_lock=not block,
        quiet=not block,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="aisle chat UI (Gradio).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--catalog", default=None, help="Catalog selected at start (default: AISLE_CATALOG or amazon-office-2014).")
    parser.add_argument("--llm-reasons", action="store_true", help="LLM-written reasons (grounding-checked; slower on CPU).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    # The start-up builds the default catalog's index; a shopper picking an unindexed catalog gets
    # "not indexed; run aisle index" instead of a frozen page.
    try:
        agent = Agent(settings, default_catalog=args.catalog, llm_reasons=args.llm_reasons)
        print(f"preparing {agent.default_catalog} (builds the index on first run) and the model…", flush=True)
        agent.warm_up(train_missing=settings.train_missing)
    except AisleError as exc:  # a bad session store, an unreadable catalog: one line, what to do
        raise SystemExit(f"error: {exc}") from None
    launch(build_ui(agent), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
