"""One error model: every failure aisle reports is an `AisleError` subclass that carries its HTTP
status and a stable machine code, so the API, the CLI and the UI turn any of them into the same
answer without reading the message text.

The message always says what was wrong and what to do about it.
"""

from __future__ import annotations


class AisleError(Exception):
    """Base of every error aisle raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The documented error body (OpenAI's shape)."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class BadRequest(AisleError, ValueError):
    """The request cannot be served as given."""

    status, code, type = 400, "bad_request", "invalid_request_error"


class Unauthorized(AisleError):
    status, code, type = 401, "invalid_api_key", "authentication_error"


class NotFound(AisleError, LookupError):
    status, code, type = 404, "not_found", "invalid_request_error"


class MethodNotAllowed(AisleError):
    status, code, type = 405, "method_not_allowed", "invalid_request_error"


class Conflict(AisleError):
    status, code, type = 409, "conflict", "invalid_request_error"


class PayloadTooLarge(BadRequest):
    status, code = 413, "payload_too_large"


class InvalidField(AisleError, ValueError):
    """A field is missing or of the wrong type (the request's schema is not met)."""

    status, code, type = 422, "invalid_request", "invalid_request_error"


class RateLimited(AisleError):
    """Too many requests from one session or key: retry after `retry_after_s` (the Retry-After header)."""

    status, code, type = 429, "rate_limited", "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1.0, float(retry_after_s))


class Unavailable(AisleError):
    """A dependency (LLM server, vector store, session store) cannot serve now."""

    status, code, type = 503, "unavailable", "server_error"


# --- the concrete errors of the HTTP layer ---------------------------------------------------------


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidText(BadRequest):
    """Text that is not Unicode (a lone surrogate): it cannot be stored, searched or sent back."""

    code = "invalid_text"


class BodyTooLarge(PayloadTooLarge):
    code = "body_too_large"


# --- the concrete errors of the chat layer -------------------------------------------------------


class EmptyMessage(BadRequest):
    code = "empty_message"


class MessageTooLong(PayloadTooLarge):
    code = "message_too_long"


class UnknownCatalog(BadRequest):
    code = "unknown_catalog"


class UnknownItem(BadRequest):
    code = "unknown_item"


class CatalogMismatch(Conflict):
    code = "catalog_mismatch"


class TooManySessions(RateLimited):
    """One API key holds as many live sessions as it may (settings.max_sessions_per_key)."""

    code = "too_many_sessions"


class CatalogUnavailable(Unavailable):
    """The catalog's items cannot be read (its feed or data folder is missing or broken)."""

    code = "catalog_unavailable"


class VectorStoreUnavailable(Unavailable):
    """The catalog's vector index cannot be read (damaged index files or database, Chroma server down)."""

    code = "vector_store_unavailable"


class CatalogStoreUnavailable(Unavailable):
    """The catalog registry (home/catalogs.sqlite) cannot be read or written."""

    code = "catalog_store_unavailable"


class DiskFull(Unavailable):
    """A store's disk has no room left: the message names the store; what was saved stays."""

    code = "disk_full"


class NotIndexed(Conflict):
    """The catalog has no search index yet: a request never builds one (that takes minutes)."""

    code = "catalog_not_indexed"
