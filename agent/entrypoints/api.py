"""HTTP API for customer-service bots: aisle's own endpoints plus an OpenAI-compatible chat API.

    POST /v1/turn               {session_id?, message, catalog?} -> {session_id, reply, items: [...]}
    POST /v1/sessions           {catalog?} -> {session_id, catalog}
    GET  /v1/sessions/{id}      state, turn log, feedback
    DELETE /v1/sessions/{id}    204; the session, its turns and feedback are gone
    POST /v1/feedback           {session_id, item_id, value: 1 | -1 | "up" | "down"}
    POST /v1/events             {catalog?, events: [{user_id, item_id, timestamp?, event?, value?}]}: history
    POST /v1/chat/completions   OpenAI chat.completion (and `stream: true` as SSE chunks)
    GET  /v1/models             "aisle" (default catalog) and "aisle-<catalog>" per catalog
    GET  /health                liveness (no key needed)
    GET  /ready                 can it serve: session store, index, LLM (200 ready/degraded, 503 not_ready);
                                behind the key when there is one (each part's detail and code),
                                else only the bare status; checked at most every `ready_cache_s`
    GET  /metrics               Prometheus metrics (behind the key)
    GET  /openapi.json          the schema, only with `create_app(docs=True)` and behind the key

Errors are JSON in OpenAI's shape, {"error": {"message", "type", "code"}}, with a 4xx status that
says what to fix: 400 bad JSON, a body that is not UTF-8 (UTF-16 included), text that is not
Unicode, an empty message, an unknown catalog or item; 401 missing or wrong API key; 404 unknown or
expired session, model or path; 405 wrong method; 409 session on another catalog or updated
concurrently, or a catalog without an index; 413 message or body too large; 422 a field missing or
of the wrong JSON type (no coercion), or a NaN / Infinity anywhere in the body; 429 (with
Retry-After) too many requests, the key holds its maximum of live sessions, or this address sent
too many wrong keys (`auth_backoff`: the wait doubles per wrong key; other addresses are not
slowed). A part that cannot serve answers 503 with a code naming it: `vector_store_unavailable`
(damaged index files, Chroma down), `session_store_unavailable`, `catalog_store_unavailable`,
`disk_full` (what was saved is kept). Every check runs before any work: a refused request never
runs a turn or creates a session. A streamed turn that fails after the headers went out reports
the error in-band, as an SSE event in the same shape.

Secrets never leave: passwords in URLs (`http://user:pass@host`), the API key and the LLM key are
masked in error messages, /ready and (with `serve`) every log line.

No Swagger UI or ReDoc: both load scripts from a CDN, which an offline shop server must not do.

Routes are thin: the wire format is in `protocol`, what each route does is in `Serving`. Handlers
are plain `def`s: the agent is CPU-bound and blocking, so FastAPI runs them in its thread pool; the
model itself serialises generation.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.chat.agent import Agent, TurnResult, check_message
from agent.chat.store import SessionRecord
from agent.entrypoints.metrics import ServingMetrics
from agent.entrypoints.protocol import (
    MAX_BODY_BYTES,
    MODEL_PREFIX,
    SESSION_HEADER,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionIn,
    ChatMessageOut,
    ChunkChoice,
    ErrorResponse,
    EventsIn,
    EventsOut,
    FeedbackIn,
    FeedbackOut,
    ModelCard,
    ModelList,
    SessionIn,
    SessionOut,
    TurnIn,
    TurnOut,
    Usage,
    sse_event,
)
from agent.entrypoints.ratelimit import AuthBackoff, RequestLimits, key_id
from agent.entrypoints.readiness import Readiness
from agent.errors import (
    AisleError,
    BadRequest,
    BodyTooLarge,
    CatalogMismatch,
    InvalidField,
    InvalidJSON,
    InvalidText,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnknownCatalog,
    UnknownItem,
)
from agent.faults import translate
from agent.redact import redact, redact_logs
from agent.settings import Settings
from retrieval.index import VectorStoreError

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 413, 422, 429, 503)}


# --- errors: one answer for every failure ------------------------------------------------------------


def error_response(exc: AisleError, headers: dict[str, str] | None = None, *, hide: Callable[[str], str] = redact) -> JSONResponse:
    """The one place an error becomes an HTTP answer: status and body come from the error's type;
    the message passes through `hide` (URL passwords and keys masked)."""
    if isinstance(exc, Unauthorized):
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited):
        headers = {**(headers or {}), "Retry-After": str(int(math.ceil(exc.retry_after_s)))}
    body = exc.to_dict()
    body["error"]["message"] = hide(body["error"]["message"])
    return JSONResponse(body, status_code=exc.status, headers=headers)


def validation_error(exc: RequestValidationError) -> AisleError:
    """A body FastAPI could not parse or validate, as the AisleError that says what to fix."""
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            return InvalidJSON("the request body is not valid JSON; send a JSON object with Content-Type: application/json")
        if e.get("type") == "invalid_text":
            return InvalidText(str(e.get("msg")))
        if e.get("type") == "finite_number":
            return InvalidField(str(e.get("msg")), code="non_finite_number")
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    return InvalidField("; ".join(parts))


def check_key(authorization: str | None, api_key: str | None, *, client: str = "unknown", backoff: AuthBackoff | None = None) -> None:
    """Unauthorized unless `authorization` is "Bearer <api_key>" (any header passes when the server
    has no key). With `backoff`, a client address that sent too many wrong keys is refused (429)
    before its key is even compared."""
    if not api_key:
        return
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key")
    if backoff is not None:
        backoff.check(client)
    if not secrets.compare_digest(authorization[7:].strip().encode(), api_key.encode()):
        if backoff is not None:
            backoff.failed(client)
        raise Unauthorized("wrong API key")
    if backoff is not None:
        backoff.succeeded(client)


def http_error(request: Request, exc: StarletteHTTPException) -> AisleError:
    """Starlette's own errors (no route, wrong method, unreadable body) as AisleErrors."""
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return NotFound(f"no endpoint at {request.url.path}; the API serves /v1/turn, /v1/sessions, /v1/feedback, /v1/events, /v1/chat/completions, /v1/models and /health")
    if exc.status_code == 405:
        return MethodNotAllowed(f"{where} is not allowed; use {(exc.headers or {}).get('Allow', 'another method')}")
    if exc.status_code == 400:
        return InvalidJSON("the request body could not be read; send a UTF-8 JSON object with Content-Type: application/json")
    return BadRequest(f"{where}: {exc.detail}") if exc.status_code < 500 else AisleError(f"{where}: {exc.detail}")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets a 413 before the app sees any of it.

    The bytes are counted as they arrive, so a chunked body with no Content-Length is bounded too;
    the body (at most `limit` bytes) is then handed to the app in one piece."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(f"{declared} bytes", scope, receive, send)
            return
        message, size = await self._read(receive)
        if message is None:
            await self._refuse(f"at least {size} bytes", scope, receive, send)
            return
        pending = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> tuple[Message | None, int]:
        """The body as one message (or the disconnect that cut it short) and the bytes read; no
        message once the body passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message, size
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return None, size
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}, size

    async def _refuse(self, size: str, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = BodyTooLarge(f"request body is {size}; the limit is {self.limit} bytes (send fewer or shorter messages)")
        await error_response(too_large, headers={"Connection": "close"})(scope, receive, send)


class Utf8Body:
    """ASGI middleware: a request body that is not UTF-8 gets a 400 before the app parses it.

    Python's JSON parser reads UTF-16 and UTF-32 bodies too (it guesses the encoding from the
    zero bytes), so without this a UTF-16 body would be served although JSON on the wire is UTF-8
    (RFC 8259). A UTF-8 byte-order mark is tolerated. Runs after BodyLimit, which hands the body
    over in one piece."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = await receive()
        body = message.get("body", b"") if message["type"] == "http.request" else b""
        problem = utf8_problem(body)
        if problem is not None:
            await error_response(InvalidText(f"the request body is not UTF-8 ({problem}); send JSON encoded as UTF-8"))(scope, receive, send)
            return
        pending = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


def utf8_problem(body: bytes) -> str | None:
    """What is wrong with `body` as UTF-8 text, or None when it is UTF-8 (or empty)."""
    if not body:
        return None
    guessed = json.detect_encoding(body)
    if guessed not in ("utf-8", "utf-8-sig"):
        return f"it looks like {guessed.upper()}"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid byte 0x{body[exc.start]:02x} at offset {exc.start}"
    return None


# --- what the routes do --------------------------------------------------------------------------------


class Serving:
    """The work behind each route, every check first: a request that fails one never runs a turn
    and never creates a session."""

    def __init__(self, agent: Agent, limits: RequestLimits | None = None, *, owner: str = "") -> None:
        self.agent = agent
        self.limits = limits
        self.owner = owner  # the server key's fingerprint: sessions it creates count against its cap

    # --- checks ---

    def catalog(self, name: str | None) -> str | None:
        """`name` when it is a catalog this server has (None: the default)."""
        if name is not None and name not in self.agent.catalogs():
            raise UnknownCatalog(f"unknown catalog {name!r}; choose one of: {', '.join(self.agent.catalogs())}")
        return name

    def session(self, session_id: str, catalog: str | None = None, *, named_by: str = "") -> SessionRecord:
        """The session (404 when unknown), which must be on `catalog` when one is given (409)."""
        record = self.agent.store.get(session_id)
        if catalog is not None and catalog != record.catalog:
            raise CatalogMismatch(f"session {session_id} uses catalog {record.catalog!r}, but {named_by or 'the request'} names {catalog!r}; start a new session for {catalog!r}")
        return record

    # --- aisle endpoints ---

    def new_session(self, body: SessionIn | None) -> SessionOut:
        catalog = self.catalog(body.catalog if body else None) or self.agent.default_catalog
        return SessionOut(session_id=self.agent.new_session(catalog, owner=self.owner, history=body.history if body else ()), catalog=catalog)

    def delete_session(self, session_id: str) -> None:
        self.agent.store.delete(session_id)

    def turn(self, body: TurnIn) -> dict[str, Any]:
        text = check_message(body.message)
        catalog = self.catalog(body.catalog)
        session_id = body.session_id
        if session_id is not None:
            self.session(session_id, catalog)
            self.limit_session(session_id)
            return self.agent.turn(session_id, text, catalog=catalog).public()
        session_id = self.new_session_for(catalog)
        try:
            self.limit_session(session_id)
            return self.agent.turn(session_id, text, catalog=catalog).public()
        except BaseException:
            self.discard(session_id)
            raise

    def new_session_for(self, catalog: str | None) -> str:
        """A session for a request's first turn, made only once the catalog can serve it (its index
        opens), so a 409 `catalog_not_indexed` or a 503 leaves no empty session behind."""
        self.agent.parts(catalog or self.agent.default_catalog)
        return self.agent.new_session(catalog, owner=self.owner)

    def discard(self, session_id: str) -> None:
        """Delete a session made for a turn that then failed (best effort: the store may be the
        part that failed)."""
        try:
            self.agent.store.delete(session_id)
        except Exception as exc:
            log.warning("could not delete session %s of a failed first turn: %s", session_id, exc)

    def limit_session(self, session_id: str) -> None:
        if self.limits is not None:
            self.limits.check_session(session_id)

    def feedback(self, body: FeedbackIn) -> FeedbackOut:
        return FeedbackOut.model_validate(self.agent.feedback(body.session_id, body.item_id, body.vote))

    def events(self, body: EventsIn) -> EventsOut:
        """Append events to the catalog's history (all or none: one bad event refuses the batch)."""
        from retrieval.catalog import CatalogError
        from retrieval.feeds.events import Event, parse_timestamp

        catalog = self.catalog(body.catalog) or self.agent.default_catalog
        events = []
        for n, e in enumerate(body.events):
            try:
                ts = parse_timestamp(e.timestamp)
            except ValueError as exc:
                raise InvalidField(f"events[{n}].timestamp: {exc}") from None
            events.append(Event(e.user_id, e.item_id, ts, e.event, e.value))
        try:
            recorded = self.agent.record_events(catalog, events)
        except CatalogError as exc:
            raise UnknownItem(str(exc)) from None
        return EventsOut(catalog=catalog, recorded=recorded)

    # --- OpenAI-compatible endpoints ---

    def model_ids(self) -> list[str]:
        return [MODEL_PREFIX] + [f"{MODEL_PREFIX}-{c}" for c in self.agent.catalogs()]

    def models(self) -> ModelList:
        now = int(time.time())
        return ModelList(data=[ModelCard(id=m, created=now) for m in self.model_ids()])

    def catalog_of(self, model: str) -> str | None:
        """The catalog a model id names (None for plain "aisle"); 404 for any other model."""
        if model == MODEL_PREFIX:
            return None
        name = model.removeprefix(MODEL_PREFIX + "-")
        if name != model and name in self.agent.catalogs():
            return name
        raise NotFound(f"model {model!r} does not exist; GET /v1/models lists: {', '.join(self.model_ids())}", code="model_not_found")

    def chat(self, body: ChatCompletionIn, session_header: str | None) -> tuple[str, ChatCompletion | Iterator[str]]:
        """(session id, the chat.completion or its SSE events): the last user message is the turn."""
        user_messages = [m for m in body.messages if m.role == "user"]
        if not user_messages:
            raise BadRequest("messages has no message with role 'user'; the last user message is the shopper's turn", code="no_user_message")
        text = check_message(user_messages[-1].text())
        catalog = self.catalog_of(body.model)
        session_id = session_header or body.user
        fresh = not session_id
        if session_id:
            self.session(session_id, catalog, named_by=f"model {body.model!r}")
        else:
            session_id = self.new_session_for(catalog)
        self.limit_session(session_id)
        completion_id, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        if body.stream:  # its id is in the headers already when a streamed turn fails
            return session_id, _sse(self.agent, session_id, text, completion_id, created, body.model)
        try:
            result = self.agent.turn(session_id, text)
        except BaseException:
            if fresh:
                self.discard(session_id)
            raise
        prompt_tokens = sum(len(m.text().split()) for m in body.messages)
        completion_tokens = len(result.reply.split())
        return session_id, ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[ChatChoice(message=ChatMessageOut(content=result.reply))],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens),
            aisle=TurnOut.model_validate(result.public()),
        )


def _sse(agent: Agent, session_id: str, text: str, completion_id: str, created: int, model: str) -> Iterator[str]:
    """chat.completion.chunk events: role, content pieces, then finish_reason (+ aisle's turn), then [DONE]."""

    def chunk(delta: dict[str, str], finish: str | None = None, turn: TurnOut | None = None) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice], aisle=turn).sse()

    yield chunk({"role": "assistant", "content": ""})
    try:
        for piece in agent.turn_stream(session_id, text):
            if isinstance(piece, TurnResult):
                yield chunk({}, "stop", TurnOut.model_validate(piece.public()))
            elif piece:
                yield chunk({"content": piece})
    except Exception as exc:  # the headers are sent: report in-band, as OpenAI does
        error = translate(exc, agent.settings.home)
        if error is None:
            log.exception("streamed turn failed")
            error = AisleError("the turn failed on the server; retry, or see the server log", code="turn_failed")
        body = error.to_dict()
        body["error"]["message"] = redact(body["error"]["message"], (agent.settings.llm_api_key,))
        yield sse_event(body)
    yield sse_event("[DONE]")


# --- the app -----------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, agent: Agent | None = None, api_key: str | None = None, docs: bool = False) -> FastAPI:
    """Build the API. `api_key`: when set, every /v1 request, /ready, /metrics (and /openapi.json)
    need `Authorization: Bearer <key>`. `docs`: serve the OpenAPI schema at /openapi.json."""
    agent = agent or Agent(settings)
    limits = RequestLimits(per_key_per_min=settings.rate_key_per_min, per_session_per_min=settings.rate_session_per_min, ready_per_min=settings.rate_ready_per_min)
    backoff = AuthBackoff(free=settings.auth_free_failures, max_s=settings.auth_backoff_max_s)
    serving = Serving(agent, limits, owner=key_id(api_key, None) if api_key else "")
    metrics = ServingMetrics(agent, limits)
    known_secrets = (api_key, settings.llm_api_key)
    readiness = Readiness(agent, cache_s=settings.ready_cache_s, secrets=known_secrets)

    def hide(text: str) -> str:
        return redact(text, known_secrets)

    app = FastAPI(
        title="aisle",
        version="1",
        description="Conversational product recommendations with grounded reasons.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.agent = agent
    app.state.readiness = readiness
    app.add_middleware(Utf8Body)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # added last: runs first

    @app.exception_handler(AisleError)
    def _aisle_error(request: Request, exc: AisleError) -> JSONResponse:
        return error_response(exc, hide=hide)

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc), hide=hide)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(http_error(request, exc), headers=exc.headers, hide=hide)

    def _store_fault(request: Request, exc: Exception) -> JSONResponse:
        """A store or its disk failed (raw, from a library): 503 naming the part."""
        error = translate(exc, settings.home)
        if error is None:
            return _unexpected(request, exc)
        log.warning("%s %s: %s", request.method, request.url.path, error.message)
        return error_response(error, hide=hide)

    # By type, not in the catch-all below: Starlette re-raises what reaches that one.
    for fault in (VectorStoreError, sqlite3.DatabaseError, OSError):
        app.add_exception_handler(fault, _store_fault)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(AisleError("internal error; see the server log"), hide=hide)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def require_key(request: Request, authorization: str | None = Header(None)) -> None:
        try:
            check_key(authorization, api_key, client=client_of(request), backoff=backoff)
        except RateLimited:
            limits.refused["auth"] += 1
            raise

    def limit_key(request: Request, authorization: str | None = Header(None)) -> None:
        """Per-key request limit (per client address when the server has no key)."""
        given = authorization[7:].strip() if api_key and authorization else None
        limits.check_key(key_id(given, client_of(request)))

    auth = [Depends(require_key), Depends(limit_key)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the process answers. Whether it can serve is /ready."""
        return {"status": "ok"}

    @app.get("/ready", dependencies=[Depends(require_key)])
    def ready(request: Request) -> JSONResponse:
        """Can this process serve turns? 200 "ready" or "degraded" (serving, without the LLM), 503
        "not_ready" when it cannot (index, session store or disk failing). With a key, each part's
        status, detail and code; without one, only the status."""
        limits.check_ready(client_of(request))
        report = readiness.report()
        body = readiness.public(report, full=bool(api_key))
        if not report.failing:
            return JSONResponse(body)
        reasons = "; ".join(f"{name}: {report.checks[name]['detail']}" for name in report.failing) if api_key else "a part this server needs is failing"
        error = Unavailable(f"not ready: {reasons}", code="not_ready")
        return JSONResponse({**error.to_dict(), **body}, status_code=error.status)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    if docs:

        @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
        def openapi() -> dict[str, Any]:
            return app.openapi()

    @app.post("/v1/sessions", dependencies=auth, status_code=201)
    def new_session(body: SessionIn | None = None) -> SessionOut:
        return serving.new_session(body)

    @app.get("/v1/sessions/{session_id}", dependencies=auth)
    def get_session(session_id: str) -> dict[str, Any]:
        return agent.session_info(session_id)

    @app.delete("/v1/sessions/{session_id}", dependencies=auth, status_code=204)
    def delete_session(session_id: str) -> Response:
        serving.delete_session(session_id)
        return Response(status_code=204)

    @app.post("/v1/turn", dependencies=auth, response_model=TurnOut)
    def turn(body: TurnIn) -> dict[str, Any]:
        return serving.turn(body)

    @app.post("/v1/feedback", dependencies=auth)
    def feedback(body: FeedbackIn) -> FeedbackOut:
        return serving.feedback(body)

    @app.post("/v1/events", dependencies=auth, status_code=201)
    def events(body: EventsIn) -> EventsOut:
        return serving.events(body)

    @app.get("/v1/models", dependencies=auth)
    def models() -> ModelList:
        return serving.models()

    @app.post("/v1/chat/completions", dependencies=auth, response_model=ChatCompletion, responses={200: {"content": {"text/event-stream": {}}}})
    def chat_completions(body: ChatCompletionIn, x_aisle_session: str | None = Header(None)) -> Any:
        session_id, answer = serving.chat(body, x_aisle_session)
        headers = {SESSION_HEADER: session_id}
        if isinstance(answer, ChatCompletion):
            return JSONResponse(answer.model_dump(), headers=headers)
        return StreamingResponse(answer, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})

    return app


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, warm: bool = True, docs: bool = False) -> None:
    """Run the API with uvicorn (blocking). Loads the default catalog and model first when `warm`."""
    import uvicorn

    # One JSON line per turn on stderr (logger aisle.turns), beside uvicorn's access log.
    turns = logging.getLogger("aisle.turns")
    if not turns.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        turns.addHandler(handler)
        turns.setLevel(logging.INFO)
        turns.propagate = False
    redact_logs((api_key, settings.llm_api_key))
    agent = Agent(settings)
    if warm:
        try:
            agent.warm_up(train_missing=settings.train_missing)
        except Unavailable as exc:  # a store that is down or damaged may come back: serve, not ready
            log.error("serving without a warm start: %s; /ready answers 503 until it is fixed", exc)
    uvicorn.run(create_app(settings, agent=agent, api_key=api_key, docs=docs), host=host, port=port, log_level="info")
