"""The orchestration service: an HTTP API over an Orchestrator (``pip install mmo_magic[server]``).

Endpoints::

    POST /v1/complete           the mmo API: one model, a router, or several models at once
                                (parallel, race, consensus)
    POST /v1/chat/completions   OpenAI-compatible, streaming included: any OpenAI client works
    GET  /v1/models             OpenAI's model list; each entry carries our catalogue fields
    GET  /v1/models/{name}      one entry of that list
    GET  /health                liveness; needs no key

Every call goes through the Orchestrator, so routers, retries, fallbacks,
budgets and the run log work as they do in a notebook; the service's calls
are recorded with ``step="service"``. A ``model`` may be a name, an alias,
``auto`` (the default router) or ``auto:ROUTER`` (``auto:task``, ``auto:cost``...).

Security: clients send ``Authorization: Bearer KEY``; keys come from
``MMO_SERVER_KEYS`` (comma-separated) and from the variable ``[server]
keys_env`` names, never from a file. Without keys the service listens on
loopback only. Bodies over ``max_body_bytes`` get 413 before they are parsed,
``max_tokens`` over ``max_tokens_cap`` gets 400, CORS is off unless origins
are configured. Errors have OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, and never carry a traceback or an API key.

Run it with ``mmo-serve`` or ``python -m mmo_magic.server`` (``--help``).
This is the only module that imports FastAPI.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import difflib
import hmac
import ipaddress
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core import __version__
from ..core.completion import CompletionResponse
from ..core.config import ServerSettings, load_settings
from ..core.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    MissingAPIKeyError,
    MMOError,
    NoModelAvailableError,
    ProviderError,
    UnknownModelError,
)
from ..core.redaction import redact, register_secret
from ..orchestration.orchestrator import AUTO, Orchestrator
from ..routing.routers import ROUTERS, ModelRouter, Router, RoutingRule, TaskRouter
from ..storage.runlog import new_id

__all__ = ["create_app", "main"]

logger = logging.getLogger(__name__)

KEYS_ENV = "MMO_SERVER_KEYS"
STEP = "service"  # RunRecord.step of every call the service makes
MAX_MODELS = 8  # models (or judges) one request may fan out to
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
_LOOPBACK_NAMES = frozenset({"localhost"})
# Anthropic's finish reasons, in OpenAI's words.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
T = TypeVar("T")


# -- request and response bodies ----------------------------------------------------------


class _Strict(BaseModel):
    # Strict: "5" is not an integer and true is not a number; a client bug gets a 400.
    model_config = ConfigDict(strict=True, extra="forbid")


class CompleteRequest(_Strict):
    """``POST /v1/complete``. ``routing`` defaults to "task_type" when ``task_type`` is
    given, else "specific" when ``model`` is, else "auto"."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "Why is the sky blue?", "routing": "auto"}]}
    )

    prompt: str = Field(min_length=1)
    routing: Literal["auto", "specific", "task_type", "parallel", "race", "consensus"] | None = None
    model: str | None = Field(None, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    models: list[str] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    task_type: str | None = Field(None, description="coding, math, writing... (routing=task_type)")
    route: str | None = Field(
        None, description="the router for routing=auto: " + ", ".join(ROUTERS)
    )
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    system: str | None = None
    judges: list[str] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    strategy: Literal["judge", "majority", "longest"] | None = None


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class AttemptOut(_Out):
    model: str
    provider: str
    status: str
    error: str | None = None
    latency_ms: float | None = None
    run_id: str | None = None


class CallDetails(_Out):
    """What the orchestrator knows about a call beyond its text."""

    provider: str
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost: float | None = Field(None, description="USD; null when unpriced or unknown, never 0")
    route_reason: str | None = None
    attempts: list[AttemptOut] = []
    cached: bool = False
    run_id: str | None = None
    tokens_estimated: bool = False


class CompletionOut(CallDetails):
    content: str
    model: str = Field(description="the model that actually answered")
    input_tokens: int | None = None
    output_tokens: int | None = None
    status: str = "ok"
    error: str | None = None
    finish_reason: str | None = None


class VotesOut(_Out):
    method: str
    winner: str | None = Field(description="the winning candidate's label; null for a tie")
    candidates: dict[str, str] = Field(description="label -> model")
    points: dict[str, dict[str, float]] = Field(description="judge -> label -> points")


class ManyOut(_Out):
    """Several models at once: every model's outcome, and the winner if the mode picks one."""

    routing: Literal["parallel", "race", "consensus"]
    group_id: str
    winner: CompletionOut | None = None
    responses: list[CompletionOut]
    reason: str | None = None
    votes: VotesOut | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields we do not use are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "examples": [{"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}]
        },
    )
    model: str = Field(min_length=1, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="only one choice is supported")
    tools: list[dict[str, Any]] | None = Field(None, description="not supported: must be empty")


class ChatMessageOut(_Out):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(_Out):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str
    logprobs: None = None


class UsageOut(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(_Out):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut | None = None
    mmo: CallDetails = Field(description="mmo_magic's details: cost, timing, attempts, run id")


class ModelOut(_Out):
    """An OpenAI model entry, with our catalogue fields beside the standard ones."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    kind: Literal["model", "router"]
    provider: str | None = None
    model_id: str | None = None
    aliases: list[str] = []
    available: bool
    unavailable_reason: str | None = None
    cost_per_1k_input: float | None = None
    cost_per_1k_output: float | None = None
    context_window: int | None = None
    description: str = ""


class ModelsOut(_Out):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    attempts: list[AttemptOut] | None = None


class ErrorOut(_Out):
    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "A bad request, a missing key, an unknown model"},
    "5XX": {"model": ErrorOut, "description": "Every model failed, or timed out"},
}


# -- errors ---------------------------------------------------------------------------------


class ClientDisconnected(Exception):
    """The client went away; its call was cancelled (and recorded as cancelled)."""


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    param: str | None = None,
    code: str | None = None,
    attempts: list[AttemptOut] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    detail = ErrorDetail(
        message=redact(message), type=kind, param=param, code=code, attempts=attempts
    )
    # OpenAI's four fields always (null when unknown); attempts only when there were some.
    body = ErrorOut(error=detail).model_dump(
        exclude={"error": {"attempts"}} if not attempts else None
    )
    return JSONResponse(body, status_code=status, headers=headers)


def _classify(exc: MMOError) -> tuple[int, str, str | None, str | None]:
    """(HTTP status, OpenAI error type, code, param) for an orchestrator error."""
    if isinstance(exc, UnknownModelError):
        return 404, "invalid_request_error", "model_not_found", "model"
    if isinstance(exc, MissingAPIKeyError | NoModelAvailableError):
        return 503, "service_unavailable", "model_unavailable", "model"
    if isinstance(exc, BudgetExceededError):
        return 402, "insufficient_quota", "budget_exceeded", None
    if isinstance(exc, InvalidRequestError | ConfigError):
        return 400, "invalid_request_error", None, None
    if isinstance(exc, ProviderError):
        if exc.code == "timeout":
            return 504, "timeout", "timeout", None
        if exc.status == 429:
            return 429, "rate_limit_error", exc.code or "rate_limit_exceeded", None
        if exc.status in (400, 413, 422):  # final: no other model would take this request
            return 400, "invalid_request_error", exc.code, None
        return 502, "upstream_error", exc.code, None
    if isinstance(exc, AllModelsFailedError):
        if exc.attempts and all(a.status == "timeout" for a in exc.attempts):
            return 504, "timeout", "timeout", None
        if exc.errors and all(getattr(e, "status", None) == 429 for e in exc.errors):
            return 429, "rate_limit_error", "rate_limit_exceeded", None  # every model said so
        return 502, "upstream_error", "all_models_failed", None
    return 500, "server_error", None, None


def _mmo_error(exc: MMOError) -> JSONResponse:
    status, kind, code, param = _classify(exc)
    message = str(exc)
    # Hints written for notebook users, rewritten for a client of the service.
    if isinstance(exc, UnknownModelError) and not exc.suggestions:
        message = f"{exc.message} GET /v1/models lists the models."
    if isinstance(exc, MissingAPIKeyError):
        message = (
            f"Model {exc.model!r} is not available on this server: {exc.env_var} is not set "
            "in the server's environment. Pick an available model (GET /v1/models)."
        )
    headers = None
    if isinstance(exc, ProviderError) and exc.status == 429 and exc.retry_after_s is not None:
        headers = {"retry-after": f"{max(1, round(exc.retry_after_s))}"}
    attempts = [_attempt(a) for a in exc.attempts] or None
    return _error(status, message, kind, param=param, code=code, attempts=attempts, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line for the first problem (pydantic's wording), and the parameter at fault."""
    errors = exc.errors()
    first = errors[0]
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(location) or None
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", "decode error")
        return f"The request body is not valid JSON: {reason}.", None
    if param is None and first["type"] in ("missing", "model_type", "model_attributes_type"):
        return "The request body must be a JSON object (Content-Type: application/json).", None
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(location[-1], list(CompleteRequest.model_fields), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        message = f"Unknown field {param!r}.{hint}"
    else:
        message = f"{param or 'body'}: {first['msg']}."
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem(s) in the request.)"
    return message, param


def _install_error_handlers(app: FastAPI) -> None:
    async def on_mmo_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MMOError)
        return _mmo_error(exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return _error(400, message, "invalid_request_error", param=param)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"{exc.detail}: {request.method} {request.url.path}."
        return _error(exc.status_code, message, kind, headers=exc.headers)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening; for the access log

    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.error("Unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "Internal server error; the server logged the details.", "server_error")

    app.add_exception_handler(MMOError, on_mmo_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnected, on_disconnect)
    app.add_exception_handler(Exception, on_bug)


# -- the gate: keys and body size, before FastAPI sees anything ------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class _Gate:
    """Pure ASGI middleware: checks the client's key, then the body size, then lets FastAPI in.

    The given key is compared with ``hmac.compare_digest`` against every key, so
    timing reveals neither which key nor how much of one matched. Without
    keys, only loopback clients are served. A body over the limit is refused
    from its Content-Length, or (chunked) after reading at most the limit.
    """

    def __init__(self, app: ASGIApp, *, keys: Sequence[str], max_body_bytes: int) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None if scope["path"] in PUBLIC_PATHS else self._refusal(scope)
        if refusal is None:
            refusal, receive = await self._limit_body(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        if not self.keys:
            client = scope.get("client")
            if client and _is_loopback(client[0]):
                return None
            return _error(
                403,
                "This server has no client keys, so it serves loopback clients only.",
                "permission_error",
                code="loopback_only",
            )
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        given = token.strip().encode("latin-1")
        matched = False
        for key in self.keys:  # no early exit: every key is compared
            matched |= hmac.compare_digest(given, key)
        if scheme.lower() == "bearer" and given and matched:
            return None
        return _error(
            401,
            f"Missing or invalid API key. Send 'Authorization: Bearer KEY' with a key "
            f"from the server's {KEYS_ENV}.",
            "authentication_error",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )

    async def _limit_body(self, scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
        """(a refusal or None, the ``receive`` to pass on)."""
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                refusal = _error(400, "Content-Length is not a number.", "invalid_request_error")
                return refusal, receive
            return (self._too_large() if int(length) > self.max_body_bytes else None), receive
        if _header(scope, b"transfer-encoding") is None:
            return None, receive  # no body at all
        body = bytearray()
        while True:  # chunked: read at most the limit, then replay what was read
            message = await receive()
            if message["type"] != "http.request":
                return Response(status_code=499), receive  # the client left while sending
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return self._too_large(), receive
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return None, replay

    def _too_large(self) -> Response:
        return _error(
            413,
            f"The request body is larger than this server's limit of {self.max_body_bytes} bytes.",
            "invalid_request_error",
            code="request_too_large",
        )


def _client_keys(settings: ServerSettings) -> tuple[str, ...]:
    """Client keys from ``MMO_SERVER_KEYS`` and the variable ``[server] keys_env`` names."""
    names = [KEYS_ENV, *([settings.keys_env] if settings.keys_env else [])]
    keys = [k.strip() for name in names for k in os.environ.get(name, "").split(",")]
    return tuple(dict.fromkeys(k for k in keys if k))


# -- bridging the orchestrator's loop and the server's ----------------------------------------


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has closed the connection (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it if the client goes away first.

    The cancellation reaches the orchestrator's loop, which closes the
    provider's stream and records the attempt as cancelled.
    """
    task = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected
    return task.result()


_DONE = object()
OnText = Callable[[str], None]


class _Relay:
    """One orchestrator call's text deltas, on the server's loop.

    The orchestrator calls back on its own loop thread; deltas cross over with
    ``call_soon_threadsafe``, in order, and ``_DONE`` follows the last one. A
    streamed call that breaks after text was sent is not retried (the
    orchestrator's rule for ``kind="stream"``), so no text is ever sent twice.
    """

    def __init__(self, start: Callable[[OnText], Coroutine[Any, Any, CompletionResponse]]) -> None:
        here = asyncio.get_running_loop()
        self._items: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            here.call_soon_threadsafe(self._items.put_nowait, item)

        self.task = asyncio.ensure_future(start(put))
        self.task.add_done_callback(lambda _: self._items.put_nowait(_DONE))

    async def next_text(self) -> str | None:
        """The next delta, or None once the call has answered; raises its error."""
        item = await self._items.get()
        if item is _DONE:
            self.task.result()
            return None
        return str(item)

    def result(self) -> CompletionResponse:
        return self.task.result()

    def cancel(self) -> None:
        self.task.cancel()


# -- shaping answers ---------------------------------------------------------------------------


def _attempt(a: Any) -> AttemptOut:
    return AttemptOut.model_validate(dataclasses.asdict(a))


def _completion(r: CompletionResponse) -> CompletionOut:
    return CompletionOut.model_validate(dataclasses.asdict(r))


def _maybe(r: CompletionResponse | None) -> CompletionOut | None:
    return None if r is None else _completion(r)


def _details(r: CompletionResponse) -> CallDetails:
    return CallDetails.model_validate(dataclasses.asdict(r))


def _usage(r: CompletionResponse) -> UsageOut | None:
    if r.input_tokens is None or r.output_tokens is None:
        return None  # unknown is missing, never 0
    return UsageOut(
        prompt_tokens=r.input_tokens,
        completion_tokens=r.output_tokens,
        total_tokens=r.input_tokens + r.output_tokens,
    )


def _finish_reason(r: CompletionResponse) -> str:
    reason = r.finish_reason or "stop"
    return _FINISH.get(reason, reason)


def _target(name: str) -> tuple[str, str | None]:
    """(model, router) for a ``model`` field: a name, ``auto`` or ``auto:ROUTER``."""
    head, colon, router = name.partition(":")
    if colon and head.lower() == AUTO:
        return AUTO, router.strip()
    return name, None


def _task_route(orc: Orchestrator, task: str) -> Router:
    """A router sending every prompt to ``task``'s models (what ``%%mmo -t TASK`` does)."""
    known = TaskRouter(task_models=orc.task_models).task_models
    if task not in known:
        close = difflib.get_close_matches(task, list(known), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known: {', '.join(sorted(known))}."
        raise InvalidRequestError(f"Unknown task_type {task!r}.", hint=hint)
    rule = RoutingRule(name=f"task_type {task}", models=list(known[task]))
    return ModelRouter([rule], default=orc.default_model)


def _check_cap(max_tokens: int | None, cap: int) -> None:
    if max_tokens is not None and max_tokens > cap:
        raise InvalidRequestError(
            f"max_tokens={max_tokens} is over this server's limit of {cap}.",
            hint=f"Ask for at most {cap} tokens.",
        )


def _messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI messages as the orchestrator's: text only; "developer" is a system message."""
    out = []
    for i, m in enumerate(messages):
        if isinstance(m.content, list):
            kinds = {p.type for p in m.content} - {"text"}
            if kinds:
                raise InvalidRequestError(
                    f"messages[{i}] has a {sorted(kinds)[0]!r} part; only text is supported."
                )
            text = "".join(p.text or "" for p in m.content)
        else:
            text = m.content or ""
        out.append({"role": "system" if m.role == "developer" else m.role, "content": text})
    return out


def _model_entries(orc: Orchestrator) -> list[ModelOut]:
    entries = []
    for m in orc.models():
        reason = m.unavailable_reason
        entries.append(
            ModelOut(
                id=m.name, owned_by=m.provider, kind="model", provider=m.provider,
                model_id=m.model_id, aliases=list(m.aliases), available=reason is None,
                unavailable_reason=reason, cost_per_1k_input=m.cost_per_1k_input,
                cost_per_1k_output=m.cost_per_1k_output, context_window=m.context_window,
                description=m.description,
            )
        )  # fmt: skip
    routers = [(AUTO, f"the default router ({orc.default_route}) chooses the model")]
    routers += [(f"{AUTO}:{r}", f"the {r} router chooses the model") for r in ROUTERS]
    entries += [
        ModelOut(id=name, owned_by="mmo_magic", kind="router", available=True, description=text)
        for name, text in routers
    ]
    return entries


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _chat_stream(
    relay: _Relay, first: str | None, requested: str, include_usage: bool
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events, then ``[DONE]``; an error event if it breaks."""
    head = {"id": f"chatcmpl-{new_id()}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": requested}  # fmt: skip
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish: str | None = None, **more: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**head, "choices": [choice], **extra, **more})

    try:
        yield chunk({"role": "assistant", "content": ""})
        text = first
        while text is not None:
            yield chunk({"content": text})
            text = await relay.next_text()
        response = relay.result()
        # Content chunks name the model asked for; the answering one is known at the end.
        head["model"] = response.model
        yield chunk({}, _finish_reason(response), mmo=_details(response).model_dump())
        if include_usage:
            usage = _usage(response)
            yield _sse({**head, "choices": [], "usage": usage and usage.model_dump()})
        yield "data: [DONE]\n\n"
    except MMOError as exc:
        yield f"data: {bytes(_mmo_error(exc).body).decode()}\n\n"
    except Exception:
        logger.exception("Unhandled error while streaming")
        error = _error(500, "Internal server error; the server logged the details.", "server_error")
        yield f"data: {bytes(error.body).decode()}\n\n"
    finally:
        relay.cancel()  # a no-op when finished; stops the call when the client left


# -- the app -------------------------------------------------------------------------------------


def create_app(
    orchestrator: Orchestrator | None = None,
    *,
    keys: Sequence[str] | None = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The service over ``orchestrator`` (default: ``Orchestrator.from_config()``, closed
    on shutdown).

    ``keys``: the client keys; None reads ``MMO_SERVER_KEYS`` and ``settings.keys_env``.
    With no keys only loopback clients are served. ``settings``: body limit,
    max_tokens cap and CORS origins (``[server]`` in mmo.toml).
    """
    settings = settings or ServerSettings()
    owned = orchestrator is None
    orc = orchestrator if orchestrator is not None else Orchestrator.from_config()
    client_keys = tuple(keys) if keys is not None else _client_keys(settings)
    for key in client_keys:  # MMO_SERVER_KEYS holds several: redact each, not just the list
        register_secret(key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            await asyncio.to_thread(orc.close)

    app = FastAPI(
        title="mmo_magic",
        version=__version__,
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        lifespan=lifespan,
        docs_url=None,  # the docs page loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.orchestrator = orc
    _install_error_handlers(app)
    app.add_middleware(_Gate, keys=client_keys, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # added last, so outermost: preflights need no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],  # SDKs in browsers send headers of their own
        )
    _declare_security(app, bool(client_keys))

    @app.get("/health", responses=_ERRORS)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/models", response_model=ModelsOut, responses=_ERRORS)
    async def list_models() -> ModelsOut:
        return ModelsOut(data=_model_entries(orc))

    @app.get("/v1/models/{name:path}", response_model=ModelOut, responses=_ERRORS)
    async def get_model(name: str) -> ModelOut:
        entries = {e.id: e for e in _model_entries(orc)}
        if name not in entries:
            name = orc.catalogue.resolve(name).name  # an alias; unknown names get a 404
        return entries[name]

    @app.post("/v1/complete", response_model=CompletionOut | ManyOut, responses=_ERRORS)
    async def complete(body: CompleteRequest, request: Request) -> CompletionOut | ManyOut:
        _check_cap(body.max_tokens, settings.max_tokens_cap)
        options: dict[str, Any] = {
            "system": body.system, "temperature": body.temperature,
            "max_tokens": body.max_tokens, "step": STEP,
        }  # fmt: skip
        routing = body.routing or (
            "task_type" if body.task_type else "specific" if body.model else "auto"
        )
        if routing in ("parallel", "race", "consensus"):
            return await _unless_disconnected(request, _many(orc, body, routing, options))
        if body.models:
            raise InvalidRequestError(
                f"models is for routing='parallel', 'race' or 'consensus', not {routing!r}.",
                hint="Use model for one model.",
            )
        model, route = _single(orc, body, routing)
        call = orc.acomplete(body.prompt, model, route=route, **options)
        return _completion(await _unless_disconnected(request, call))

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionOut,
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    )
    async def chat_completions(body: ChatRequest, request: Request) -> Response | ChatCompletionOut:
        max_tokens = body.max_completion_tokens or body.max_tokens
        _check_cap(max_tokens, settings.max_tokens_cap)
        if body.tools:
            raise InvalidRequestError("tools are not supported by this server.")
        messages = _messages(body.messages)
        model, route = _target(body.model)
        options: dict[str, Any] = {
            "route": route, "temperature": body.temperature, "max_tokens": max_tokens,
            "step": STEP,
        }  # fmt: skip
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _start_stream(request, orc, messages, model, options, include_usage)
        response = await _unless_disconnected(request, orc.acomplete(messages, model, **options))
        return ChatCompletionOut(
            id=f"chatcmpl-{response.run_id or new_id()}",
            created=int(time.time()),
            model=response.model,
            choices=[
                ChoiceOut(
                    message=ChatMessageOut(content=response.content),
                    finish_reason=_finish_reason(response),
                )
            ],
            usage=_usage(response),
            mmo=_details(response),
        )

    return app


def _single(orc: Orchestrator, body: CompleteRequest, routing: str) -> tuple[str, Any]:
    """(model, route) for the one-model modes of /v1/complete."""
    if routing in ("auto", "task_type") and body.model not in (None, AUTO):
        raise InvalidRequestError(
            f"routing={routing!r} chooses the model, but model={body.model!r} was given.",
            hint="Drop model, or use routing='specific'.",
        )
    if routing == "auto":
        return AUTO, body.route
    if routing == "task_type":
        return AUTO, _task_route(orc, body.task_type) if body.task_type else "task"
    if not body.model:
        raise InvalidRequestError("routing='specific' needs a model.", hint="Set model.")
    model, route = _target(body.model)
    return model, route or body.route


async def _many(
    orc: Orchestrator, body: CompleteRequest, routing: str, options: dict[str, Any]
) -> ManyOut:
    if not body.models:
        raise InvalidRequestError(f"routing={routing!r} needs models=[...].")
    if body.model:
        raise InvalidRequestError(
            f"routing={routing!r} uses models, not model.", hint="Put every model in models."
        )
    for name in [*body.models, *(body.judges or ())]:
        if _target(name)[0] != AUTO:
            orc.catalogue.resolve(name)  # a typo is a 404 with suggestions, not a failed model
    if routing == "parallel":
        group = new_id()
        responses = await orc.aall(body.prompt, body.models, group_id=group, **options)
        return ManyOut(
            routing="parallel", group_id=group, responses=[_completion(r) for r in responses]
        )
    if routing == "race":
        race = await orc.arace(body.prompt, body.models, **options)
        return ManyOut(
            routing="race", group_id=race.group_id, winner=_maybe(race.winner),
            responses=[_completion(r) for r in race.responses],
        )  # fmt: skip
    strategy = body.strategy or ("judge" if body.judges else "majority")
    result = await orc.aconsensus(
        body.prompt, body.models, judges=body.judges or (), strategy=strategy, **options
    )
    votes = None
    if result.votes is not None:
        tally = result.votes
        votes = VotesOut(
            method=tally.method,
            winner=None if tally.winner not in tally.labels else tally.winner,
            candidates=result.candidates,
            points=tally.points,
        )
    return ManyOut(
        routing="consensus", group_id=result.group_id,
        winner=_maybe(result.winner),
        responses=[_completion(r) for r in result.responses], reason=result.reason, votes=votes,
    )  # fmt: skip


async def _start_stream(
    request: Request,
    orc: Orchestrator,
    messages: list[dict[str, str]],
    model: str,
    options: dict[str, Any],
    include_usage: bool,
) -> Response:
    """Stream the answer as SSE; a call failing before its first token gets a plain HTTP error."""
    relay = _Relay(
        lambda on_text: orc.acomplete(messages, model, on_text=on_text, kind="stream", **options)
    )
    try:
        first = await _unless_disconnected(request, relay.next_text())
    except BaseException:
        relay.cancel()
        raise
    return StreamingResponse(
        _chat_stream(relay, first, model, include_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _declare_security(app: FastAPI, keyed: bool) -> None:
    """Say in the OpenAPI schema that every path but the public ones takes a bearer key."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            if keyed:
                schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
                schemes["bearer"] = {"type": "http", "scheme": "bearer"}
                for path, operations in schema["paths"].items():
                    if path not in PUBLIC_PATHS:
                        for operation in operations.values():
                            operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmo-serve",
        description="Serve mmo_magic's orchestrator over HTTP (OpenAI-compatible).",
        epilog=f"Client keys: {KEYS_ENV}=key1,key2 (needed for any host but loopback).",
    )
    parser.add_argument("--host", default=None, help="default: [server] host, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: [server] port, else 8000")
    parser.add_argument("--config", default=None, metavar="PATH", help="an mmo.toml to read")
    parser.add_argument("--runlog", default=None, metavar="PATH", help="the run log's SQLite file")
    parser.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browser calls from ORIGIN (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mmo-serve``: run the service with uvicorn until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(None if args.config is None else [Path(args.config)]).server
    except ConfigError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    settings = dataclasses.replace(
        settings, host=host, port=port, cors_origins=(*settings.cors_origins, *args.cors_origin)
    )
    keys = _client_keys(settings)
    if not keys and not _is_loopback(host):
        print(
            f"mmo-serve: refusing to listen on {host} without client keys: "
            f"set {KEYS_ENV}=key1,key2 (or [server] keys_env), or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    # Our own messages at --log-level; other libraries' (the SDKs log every request) at warning.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("mmo_magic").setLevel(args.log_level.upper())
    try:
        extra = {} if args.runlog is None else {"runlog": args.runlog}
        orc = Orchestrator.from_config(args.config, **extra)
    except MMOError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    access = f"keys required ({len(keys)})" if keys else "no keys: loopback clients only"
    logger.info("serving %r; %s; run log %s", orc, access, orc.runs.path)
    # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises that signal again.
    # SIGTERM then raises KeyboardInterrupt too, so both end here, and the exit is clean.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.run(
            create_app(orc, keys=keys, settings=settings),
            host=host,
            port=port,
            log_level=args.log_level,
            # In-flight requests (streams included) get this long to finish on shutdown.
            timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_s),
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        orc.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
