"""The package's errors (``mmo_magic.core.errors``) as HTTP responses in OpenAI's shape.

Every error body is ``{"error": {"message", "type", "param", "code"}}``
(plus ``attempts`` when models were tried), and never carries a traceback,
an API key, an upstream's address or a large echo of the request: messages
go through ``redact`` and ``scrub``, and unexpected exceptions become a
generic 500 whose details stay in the server's log.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..core.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigError,
    InvalidRequestError,
    MissingAPIKeyError,
    MMOError,
    NoModelAvailableError,
    ProviderError,
    UnknownModelError,
)
from ..core.redaction import redact
from .disconnect import ClientDisconnected
from .schemas import AttemptOut, CompleteRequest, ErrorDetail, ErrorOut, attempt_out
from .scrub import ECHO_LIMIT, shorten
from .shutdown import RETRY_AFTER_S, ShuttingDown

__all__ = [
    "ClientLimitError",
    "classify",
    "error_response",
    "install_error_handlers",
    "mmo_error_response",
    "server_error",
    "shutting_down_response",
]

logger = logging.getLogger(__name__)


class ClientLimitError(MMOError):
    """A client key over its budget, or its requests or tokens per minute (a 429)."""

    def __init__(self, message: str, *, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


def error_response(
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
        message=shorten(redact(message)), type=kind, param=param, code=code, attempts=attempts
    )
    # OpenAI's four fields always (null when unknown); attempts only when there were some.
    body = ErrorOut(error=detail).model_dump(
        exclude={"error": {"attempts"}} if not attempts else None
    )
    return JSONResponse(body, status_code=status, headers=headers)


def server_error() -> JSONResponse:
    """The 500 for a bug: its details go to the server's log, never to the client."""
    return error_response(
        500, "Internal server error; the server logged the details.", "server_error"
    )


def shutting_down_response(*, started: bool = False) -> JSONResponse:
    """The 503 for a request refused or cut by shutdown, so it can be sent again.

    ``started``: the error event ending a stream cut by shutdown, not a request refused.
    """
    message = (
        "The server is shutting down: this answer was cut before it finished; send the "
        "request again."
        if started
        else "The server is shutting down and did not answer this request; send it again."
    )
    return error_response(
        503,
        message,
        "service_unavailable",
        code="server_shutting_down",
        headers={"retry-after": str(RETRY_AFTER_S), "connection": "close"},
    )


def classify(exc: MMOError) -> tuple[int, str, str | None, str | None]:
    """(HTTP status, OpenAI error type, code, param) for an orchestrator error."""
    if isinstance(exc, ClientLimitError):
        return 429, "rate_limit_error", exc.code, None
    if isinstance(exc, UnknownModelError):
        return 404, "invalid_request_error", "model_not_found", "model"
    if isinstance(exc, MissingAPIKeyError | NoModelAvailableError):
        return 503, "service_unavailable", "model_unavailable", "model"
    if isinstance(exc, BudgetExceededError):
        return 402, "insufficient_quota", "budget_exceeded", None
    if isinstance(exc, InvalidRequestError | ConfigError):
        # The parameter at fault, when the error names one (InvalidRequestError.param).
        return 400, "invalid_request_error", None, getattr(exc, "param", None)
    if isinstance(exc, CircuitOpenError):  # not sent: the model failed repeatedly just now
        return 503, "service_unavailable", "circuit_open", None
    if isinstance(exc, ProviderError):
        if exc.code == "timeout":
            return 504, "timeout", "timeout", None
        if exc.status == 429:
            return 429, "rate_limit_error", exc.code or "rate_limit_exceeded", None
        if exc.status in (400, 413, 422):  # final: no other model would take this request
            param = "tools" if exc.code == "tools_unsupported" else None
            return 400, "invalid_request_error", exc.code, param
        return 502, "upstream_error", exc.code, None
    if isinstance(exc, AllModelsFailedError):
        if exc.attempts and all(a.status == "timeout" for a in exc.attempts):
            return 504, "timeout", "timeout", None
        if exc.errors and all(getattr(e, "status", None) == 429 for e in exc.errors):
            return 429, "rate_limit_error", "rate_limit_exceeded", None  # every model said so
        return 502, "upstream_error", "all_models_failed", None
    return 500, "server_error", None, None


def mmo_error_response(exc: MMOError, scrub: Callable[[str], str]) -> JSONResponse:
    """``exc`` as its HTTP error; ``scrub`` hides upstream addresses (``scrub.Scrubber``)."""
    status, kind, code, param = classify(exc)
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
    retry_after_s = getattr(exc, "retry_after_s", None)
    says_when = isinstance(exc, CircuitOpenError | ClientLimitError) or (
        getattr(exc, "status", None) == 429
    )
    if says_when and retry_after_s is not None:
        headers = {"retry-after": f"{max(1, math.ceil(retry_after_s))}"}
    attempts = [attempt_out(a, scrub) for a in exc.attempts] or None
    public = scrub(message)
    if public != shorten(message):  # the server's log keeps what the client cannot see
        logger.warning("%s (sent as: %s)", message, public)
    message = public
    return error_response(
        status, message, kind, param=param, code=code, attempts=attempts, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line for the first problem (pydantic's wording), and the parameter at fault."""
    errors = exc.errors()
    first = errors[0]
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(location) or None
    if first["type"] == "string_unicode":  # JSON's "\ud800": valid JSON, but no text
        return (
            f"{param or 'body'}: not valid Unicode text (it has an unpaired surrogate, "
            "such as \\ud800); send the text as UTF-8.",
            param,
        )
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


def install_error_handlers(app: FastAPI, scrub: Callable[[str], str]) -> None:
    async def on_mmo_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MMOError)
        return mmo_error_response(exc, scrub)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return error_response(400, message, "invalid_request_error", param=param)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        path = request.url.path
        path = path if len(path) <= ECHO_LIMIT else f"{path[:ECHO_LIMIT]}…"
        message = f"{exc.detail}: {request.method} {path}."
        return error_response(exc.status_code, message, kind, headers=exc.headers)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening; for the access log

    async def on_shutdown(request: Request, exc: Exception) -> Response:
        return shutting_down_response()

    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.error("Unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return server_error()

    app.add_exception_handler(MMOError, on_mmo_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnected, on_disconnect)
    app.add_exception_handler(ShuttingDown, on_shutdown)
    app.add_exception_handler(Exception, on_bug)
