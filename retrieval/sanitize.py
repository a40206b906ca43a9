"""Catalog text is data: at import, strip whatever could act as markup, a link or a hidden
character when the text is shown to a shopper or sent to a bot.

Applied once to every text field a loader reads (`catalog.clean_text`); the raw source row stays
in `Item.source`. What goes:
- markdown images (`![..](..)`) entirely, and markdown links (`[text](url)`) down to their text;
- URLs with a scheme or `www.`, and e-mail addresses;
- HTML tags (after entities are decoded, so `&lt;svg onload=..&gt;` goes too);
- control and invisible format characters (zero-width spaces, bidi overrides, BOM).
Words stay words: a sentence that *tells* the reader something is handled where text is shown
(`agent.chat.replies`), not deleted from the record the index embeds.
"""

from __future__ import annotations

import re

_MD_IMAGE = re.compile(r"!\[[^\]]{0,500}\]\([^)]{0,2000}\)")
_MD_LINK = re.compile(r"\[([^\]]{0,500})\]\([^)]{0,2000}\)")
_URL = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.-]{1,10}://|www\.)[^\s<>\"')\]]+")
_EMAIL = re.compile(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b")
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]{0,2000}>|<\s*[a-zA-Z][^>]*$")
# C0/C1 controls, zero-width and bidi format characters, word joiner, BOM.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")


def sanitize(text: str) -> str:
    """`text` with markup, links, e-mail addresses and invisible characters removed, on one line."""
    text = _INVISIBLE.sub("", text)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _EMAIL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()
