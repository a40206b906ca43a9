"""Secrets out of every text aisle shows or logs: a password or token in a URL's user part or
query string, and the API keys it was given. Error messages quote URLs (which LLM server, which
Chroma server), so they pass through here before a client, /ready or a log line sees them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
_QUERY_SECRET = re.compile(r"(?P<name>[?&](?:api[_-]?key|key|token|access_token|password|passwd|secret)=)[^&\s'\"]+", re.IGNORECASE)
_PLACEHOLDERS = {"", "EMPTY"}  # settings.llm_api_key's default is not a secret
_MIN_SECRET = 4  # shorter "secrets" would mask ordinary words


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL credentials (`http://user:pass@host` -> `http://***@host`), secret query
    parameters and each of `secrets` replaced by ***."""
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\g<name>{MASK}", text)
    for secret in secrets:
        if secret and secret not in _PLACEHOLDERS and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, MASK)
    return text


def redact_logs(secrets: Iterable[str | None] = ()) -> None:
    """Redact every log record this process makes from now on (any logger, any handler: the
    message, its arguments and its traceback are formatted and redacted when the record is made)."""
    known = tuple(secrets)
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        make = make.wrapped  # type: ignore[attr-defined]

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        # Arguments are redacted one by one, not merged into the message: some formatters
        # (uvicorn's access log) read them by position.
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, known)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a, known) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v, known) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), known)
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    factory.wrapped = make  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _clean(value: object, secrets: tuple[str | None, ...]) -> object:
    """A log argument with secrets masked; a non-string one becomes its redacted text only when
    masking changes it (an exception or a URL object carrying a password)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (int, float)) or value is None:
        return value
    text = str(value)
    masked = redact(text, secrets)
    return value if masked == text else masked
