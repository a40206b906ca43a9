"""HTTP API for customer-service bots: aisle's own endpoints plus an OpenAI-compatible chat API.

    POST /v1/turn               {session_id?, message, catalog?} -> {session_id, reply, items: [...]}
    POST /v1/sessions           {catalog?} -> {session_id, catalog}
    GET  /v1/sessions/{id}      state, turn log, feedback
    POST /v1/feedback           {session_id, item_id, value: 1 | -1 | "up" | "down"}
    POST /v1/chat/completions   OpenAI chat.completion (and `stream: true` as SSE chunks)
    GET  /v1/models             "aisle" (default catalog) and "aisle-<catalog>" per catalog
    GET  /health                liveness (no key needed)

Errors are JSON in OpenAI's shape, {"error": {"message", "type", "code"}}, with a 4xx status that
says what to fix: 400 bad JSON / empty message, 401 missing or wrong API key, 404 unknown session
or model, 409 session on another catalog or updated concurrently, 413 message or body too large,
422 a field of the wrong type.

Handlers are plain `def`s: the agent is CPU-bound and blocking, so FastAPI runs them in its thread
pool; the model itself serialises generation.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.chat.agent import MAX_MESSAGE_CHARS, Agent, TurnResult, check_message
from agent.recommend.shown import ShownItem
from agent.errors import AisleError, BadRequest, CatalogMismatch, NotFound, PayloadTooLarge, Unauthorized
from agent.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # a chat.completions body carries the whole conversation
SESSION_HEADER = "X-Aisle-Session"
MODEL_PREFIX = "aisle"


def _error(status: int, code: str, message: str, type_: str = "invalid_request_error", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": code}}, status_code=status, headers=headers)


# --- request / response models -----------------------------------------------------------------------


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str | None = Field(None, description="Omit to start a new session; the reply carries its id.")
    message: str = Field(..., description=f"The shopper's message (1..{MAX_MESSAGE_CHARS} characters).")
    catalog: str | None = Field(None, description="Catalog for a new session (default: the server's); must match an existing session's.")


class TurnOut(BaseModel):
    session_id: str
    reply: str
    items: list[ShownItem]
    action: str
    turn_no: int
    catalog: str
    constraints: dict[str, Any]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: str | None = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str
    item_id: str
    value: Literal[1, -1, "up", "down"]


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    """The OpenAI request fields aisle uses; the rest (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL_PREFIX
    messages: list[ChatMessageIn]
    stream: bool = False
    user: str | None = None


# --- the app -----------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, agent: Agent | None = None, api_key: str | None = None) -> FastAPI:
    """Build the API. `api_key`: when set, every /v1 request needs `Authorization: Bearer <key>`."""
    agent = agent or Agent(settings)
    app = FastAPI(title="aisle", version="1", description="Conversational product recommendations with grounded reasons.")
    app.state.agent = agent

    # --- errors ---

    @app.exception_handler(AisleError)
    def _aisle_error(request: Request, exc: AisleError) -> JSONResponse:
        """Every error aisle raises: the status and code come from its type, never its text."""
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, exc.type, headers)

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "invalid_json", "the request body is not valid JSON; send a JSON object with Content-Type: application/json")
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{loc}: {e.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            too_large = PayloadTooLarge(f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}", code="body_too_large")
            return _error(too_large.status, too_large.code, too_large.message, too_large.type)
        return await call_next(request)

    # --- auth ---

    def require_key(authorization: str | None = Header(None)) -> None:
        if not api_key:
            return
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key")
        if not secrets.compare_digest(authorization[7:].strip().encode(), api_key.encode()):
            raise Unauthorized("wrong API key")

    auth = [Depends(require_key)]

    # --- aisle endpoints ---

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "catalogs": agent.catalogs(), "default_catalog": agent.default_catalog}

    @app.post("/v1/sessions", dependencies=auth, status_code=201)
    def new_session(body: SessionIn | None = None) -> dict[str, Any]:
        catalog = (body.catalog if body else None) or agent.default_catalog
        return {"session_id": agent.new_session(catalog), "catalog": catalog}

    @app.get("/v1/sessions/{session_id}", dependencies=auth)
    def get_session(session_id: str) -> dict[str, Any]:
        return agent.session_info(session_id)

    @app.post("/v1/turn", dependencies=auth, response_model=TurnOut)
    def turn(body: TurnIn) -> dict[str, Any]:
        check_message(body.message)
        if body.session_id is not None:
            agent.store.get(body.session_id)  # 404 before any work
        return agent.turn(body.session_id, body.message, catalog=body.catalog).public()

    @app.post("/v1/feedback", dependencies=auth)
    def feedback(body: FeedbackIn) -> dict[str, Any]:
        value = {"up": 1, "down": -1}.get(body.value, body.value)  # type: ignore[arg-type]
        return agent.feedback(body.session_id, body.item_id, int(value))

    # --- OpenAI-compatible endpoints ---

    def model_ids() -> list[str]:
        return [MODEL_PREFIX] + [f"{MODEL_PREFIX}-{c}" for c in agent.catalogs()]

    def catalog_of(model: str) -> str | None:
        if model == MODEL_PREFIX:
            return None
        if model.startswith(MODEL_PREFIX + "-") and model[len(MODEL_PREFIX) + 1 :] in agent.catalogs():
            return model[len(MODEL_PREFIX) + 1 :]
        raise NotFound(code="model_not_found", message=f"model {model!r} does not exist; GET /v1/models lists: {', '.join(model_ids())}")

    @app.get("/v1/models", dependencies=auth)
    def models() -> dict[str, Any]:
        now = int(time.time())
        return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "aisle"} for m in model_ids()]}

    @app.post("/v1/chat/completions", dependencies=auth)
    def chat_completions(body: ChatCompletionIn, x_aisle_session: str | None = Header(None)) -> Any:
        user_messages = [m for m in body.messages if m.role == "user"]
        if not user_messages:
            raise BadRequest(code="no_user_message", message="messages has no message with role 'user'; the last user message is the shopper's turn")
        text = message_text(user_messages[-1].content)
        check_message(text)
        catalog = catalog_of(body.model)
        session_id = x_aisle_session or body.user
        if session_id:
            record = agent.store.get(session_id)
            if catalog is not None and catalog != record.catalog:
                raise CatalogMismatch(f"session {session_id} uses catalog {record.catalog!r}, but model {body.model!r} names {catalog!r}")
        else:
            session_id = agent.new_session(catalog)
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        headers = {SESSION_HEADER: session_id}
        if body.stream:
            return StreamingResponse(
                _sse(agent, session_id, text, completion_id, created, body.model),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )
        result = agent.turn(session_id, text)
        prompt_tokens = sum(len(message_text(m.content).split()) for m in body.messages)
        completion_tokens = len(result.reply.split())
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.reply}, "finish_reason": "stop", "logprobs": None}],
            # Word counts: aisle's reply is mostly a template, not model tokens.
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
            "aisle": result.public(),
        }
        return JSONResponse(payload, headers=headers)

    return app


def message_text(content: str | list[dict[str, Any]] | None) -> str:
    """OpenAI content: a string, or a list of parts of which the text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def _sse(agent: Agent, session_id: str, text: str, completion_id: str, created: int, model: str) -> Iterator[str]:
    """chat.completion.chunk events: role, content pieces, then finish_reason (+ aisle's items), then [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if extra:
            body.update(extra)
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for piece in agent.turn_stream(session_id, text):
            if isinstance(piece, TurnResult):
                yield chunk({}, "stop", {"aisle": piece.public()})
            elif piece:
                yield chunk({"content": piece})
    except Exception as exc:  # headers are sent: report in-band, like OpenAI does
        log.exception("streamed turn failed")
        yield f"data: {json.dumps({'error': {'message': f'turn failed: {exc}', 'type': 'server_error', 'code': 'turn_failed'}})}\n\n"
    yield "data: [DONE]\n\n"


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, warm: bool = True) -> None:
    """Run the API with uvicorn (blocking). Loads the default catalog and model first when `warm`."""
    import uvicorn

    agent = Agent(settings)
    if warm:
        agent.warm_up()
    uvicorn.run(create_app(settings, agent=agent, api_key=api_key), host=host, port=port, log_level="info")
