"""Catalog text is data: at import, strip whatever could act as markup, a link or a hidden
character when the text is shown to a shopper or sent to a bot.

Applied once to every text field an import reads (`catalog.clean_text`, called by
retrieval/feeds/schema.py); the feed file itself is never changed. What goes:
- markdown images (`![..](..)`) entirely, and markdown links (`[text](url)`) down to their text;
- URLs with a scheme or `www.`, and e-mail addresses;
- HTML tags (after entities are decoded, so `&lt;svg onload=..&gt;` goes too);
- invisible format characters (zero-width spaces, bidi overrides, BOM, blank letters); controls
  become spaces (`visible`, also used on shoppers' messages).
Words stay words here: a sentence that tells the reader or a model something is the text
screen's (retrieval/screen.py), which the import runs after this and display runs again.
"""

from __future__ import annotations

import re
import unicodedata

from retrieval.screen import BLANK_LETTERS, invisible

_MD_IMAGE = re.compile(r"!\[[^\]]{0,500}\]\([^)]{0,2000}\)")
_MD_LINK = re.compile(r"\[([^\]]{0,500})\]\([^)]{0,2000}\)")
_URL = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.-]{1,10}://|www\.)[^\s<>\"')\]]+")
_EMAIL = re.compile(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b")
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]{0,2000}>|<\s*[a-zA-Z][^>]*$")
_SPACE = re.compile(r"\s+")


def sanitize(text: str) -> str:
    """`text` with markup, links, e-mail addresses and invisible characters removed, on one line."""
    text = visible(text)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _EMAIL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def visible(text: str) -> str:
    """`text` without format characters (category Cf: U+200B..U+200F, U+2060, U+FEFF, bidi marks,
    soft hyphens) and blank letters; other spaces and controls become a plain space (tab and
    newline stay). Printable text without blank letters is returned as is."""
    if text.isprintable() and BLANK_LETTERS.isdisjoint(text):
        return text
    out = []
    for ch in text:
        if invisible(ch):
            continue
        cat = unicodedata.category(ch)
        out.append(" " if cat in ("Zs", "Zl", "Zp") or (cat == "Cc" and ch not in "\t\n\r") else ch)
    return "".join(out)
