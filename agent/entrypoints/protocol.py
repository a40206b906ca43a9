"""The HTTP API's wire format: the request bodies aisle reads and the response bodies it writes.

Request bodies are strict: a field of the wrong JSON type is refused (`"stream": "yes"`, `"value":
true`, a number for a string), never coerced, and every string in a body must be Unicode text (a
lone surrogate such as "\\ud800" is refused before anything else runs: it cannot be stored,
searched or sent back). So are NaN and Infinity anywhere in a body: Python's JSON parser reads
them, but they are not JSON, and a NaN rating or timestamp would poison what is computed from it.
The body itself must be UTF-8 (api.Utf8Body; Python would otherwise read UTF-16 too). The shopper's text loses its invisible characters (zero-width spaces and
joiners, byte-order marks, bidi marks) on the way in, so a message of nothing else counts as empty.

Responses follow OpenAI's shapes for /v1/chat/completions and /v1/models, and carry aisle's own turn
(`TurnOut`: the reply and the items, each with its reason) under "aisle".
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from agent.chat.agent import MAX_MESSAGE_CHARS
from agent.recommend.shown import ShownItem
from agent.text import visible

MAX_BODY_BYTES = 256 * 1024  # a chat.completions body carries the whole conversation
SESSION_HEADER = "X-Aisle-Session"
MODEL_PREFIX = "aisle"
VOTES = {"up": 1, "down": -1, 1: 1, -1: -1}


# --- text ---------------------------------------------------------------------------------------------


def lone_surrogate_at(data: Any) -> str | None:
    """Where the first string (value or key) holding a lone surrogate is in a parsed JSON body, as a
    dotted path ("messages.0.content", "body" for the body itself); None when all text is Unicode."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _is_unicode(value):
            return ".".join(path) or "body"
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not _is_unicode(key):
                    return ".".join(path) or "body"
                stack.append(((*path, str(key)), item))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), item) for i, item in enumerate(value))
    return None


def non_finite_at(data: Any) -> str | None:
    """Where the first NaN or Infinity is in a parsed JSON body, as a dotted path; None when every
    number is finite."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return ".".join(path) or "body"
        if isinstance(value, dict):
            stack.extend(((*path, str(key)), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), item) for i, item in enumerate(value))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _vote(value: Any) -> Any:
    # A JSON `true` equals 1 and `1.0` equals 1 in Python: only the four documented values count.
    if type(value) not in (int, str) or value not in VOTES:
        raise PydanticCustomError("vote", 'value must be 1 or "up" (thumbs up), -1 or "down" (thumbs down)')
    return value


ShopperText = Annotated[str, AfterValidator(visible)]
Vote = Annotated[Literal[1, -1, "up", "down"], BeforeValidator(_vote)]


# --- requests -------------------------------------------------------------------------------------------


class _Part(BaseModel):
    """A nested object of a request body: strict JSON types."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Body(_Part):
    """A whole request body: strict JSON types, and Unicode text only (checked before the fields)."""

    @model_validator(mode="before")
    @classmethod
    def _unicode_only(cls, data: Any) -> Any:
        where = lone_surrogate_at(data)
        if where is not None:
            raise PydanticCustomError(
                "invalid_text",
                "{where} is not valid Unicode text (it holds a lone surrogate such as \\ud800); send UTF-8 text",
                {"where": where},
            )
        where = non_finite_at(data)
        if where is not None:
            raise PydanticCustomError(
                "finite_number",
                "{where} is NaN or Infinity, which JSON does not allow; send a finite number (or leave the field out)",
                {"where": where},
            )
        return data


class TurnIn(_Body):
    session_id: str | None = Field(None, description="Omit to start a new session; the reply carries its id.")
    message: ShopperText = Field(..., description=f"The shopper's message (1..{MAX_MESSAGE_CHARS} visible characters).")
    catalog: str | None = Field(None, description="Catalog for a new session (default: the server's); must match an existing session's.")


class SessionIn(_Body):
    catalog: str | None = Field(None, description="The session's catalog (default: the server's); GET /v1/models lists them.")
    history: list[str] = Field(default_factory=list, max_length=200, description="Item ids this shopper bought before, oldest first: they rank what the conversation finds.")


class FeedbackIn(_Body):
    session_id: str
    item_id: str
    value: Vote = Field(..., description='1 or "up" (thumbs up), -1 or "down" (thumbs down).')

    @property
    def vote(self) -> int:
        return VOTES[self.value]


class ContentPart(_Part):
    """One part of an OpenAI message's content; only "text" parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: ShopperText | None = None


class ChatMessageIn(_Part):
    model_config = ConfigDict(extra="allow")
    role: str
    content: ShopperText | list[ContentPart] | None = None

    def text(self) -> str:
        """OpenAI content: a string, or a list of parts of which the text parts count."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(p.text or "" for p in self.content if p.type == "text")


class ChatCompletionIn(_Body):
    """The OpenAI request fields aisle uses; the rest (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(MODEL_PREFIX, description=f"'{MODEL_PREFIX}' (the session's or the default catalog) or '{MODEL_PREFIX}-<catalog>'.")
    messages: list[ChatMessageIn] = Field(..., description="The conversation; the last 'user' message is the shopper's turn.")
    stream: bool = False
    user: str | None = Field(None, description=f"A session id to continue (like the {SESSION_HEADER} header).")


# --- responses -----------------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    message: str
    type: str
    code: str


class EventIn(_Part):
    """One interaction; the schema of `aisle catalog add --interactions` rows."""

    user_id: str = Field(..., min_length=1, max_length=256)
    item_id: str = Field(..., min_length=1, max_length=256, description="An id of the catalog's items.")
    timestamp: float | str | None = Field(None, description="Epoch seconds or ISO 8601; histories are ordered by it when every event of a user has one.")
    event: Literal["view", "click", "cart", "purchase", "rating"] = "purchase"
    value: float | None = Field(None, description="A rating or a quantity, when the event has one.")


class EventsIn(_Body):
    catalog: str | None = Field(None, description="The catalog the items belong to (default: the server's).")
    events: list[EventIn] = Field(..., min_length=1, max_length=1000, description="1..1000 events, appended in this order.")


class EventsOut(BaseModel):
    catalog: str
    recorded: int


class ErrorResponse(BaseModel):
    """Every error's body (OpenAI's shape); built from an `AisleError` by `AisleError.to_dict`."""

    error: ErrorInfo


class TurnOut(BaseModel):
    session_id: str
    reply: str
    items: list[ShownItem]
    action: str
    turn_no: int
    catalog: str
    constraints: dict[str, Any]


class SessionOut(BaseModel):
    session_id: str
    catalog: str


class FeedbackOut(BaseModel):
    session_id: str
    item_id: str
    value: Literal[1, -1]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aisle"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str = "stop"
    logprobs: None = None


class Usage(BaseModel):
    """Word counts: aisle's reply is mostly a template, not model tokens."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage
    aisle: TurnOut


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str]
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    aisle: TurnOut | None = Field(None, description="The whole turn, on the last chunk only.")

    def sse(self) -> str:
        return sse_event(self.model_dump(exclude={"aisle"} if self.aisle is None else None))


def sse_event(data: dict[str, Any] | str) -> str:
    """One server-sent event: a JSON body (a chunk or an error) or the closing "[DONE]"."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
