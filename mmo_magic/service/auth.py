"""The gate: client keys, loopback-only serving and body size, before FastAPI sees anything.

Clients send ``Authorization: Bearer KEY``; keys come from
``MMO_SERVER_KEYS`` (comma-separated) and from the variable ``[server]
keys_env`` names, never from a file. Without keys the service listens on
loopback only. Bodies over ``max_body_bytes`` get 413 before they are parsed.
``PUBLIC_PATHS`` need no key.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.config import ServerSettings
from .errors import error_response

__all__ = ["KEYS_ENV", "PUBLIC_PATHS", "Gate", "client_keys", "declare_security", "is_loopback"]

KEYS_ENV = "MMO_SERVER_KEYS"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
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


class Gate:
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
            if client and is_loopback(client[0]):
                return None
            return error_response(
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
        return error_response(
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
                refusal = error_response(
                    400, "Content-Length is not a number.", "invalid_request_error"
                )
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
        return error_response(
            413,
            f"The request body is larger than this server's limit of {self.max_body_bytes} bytes.",
            "invalid_request_error",
            code="request_too_large",
        )


def client_keys(settings: ServerSettings) -> tuple[str, ...]:
    """Client keys from ``MMO_SERVER_KEYS`` and the variable ``[server] keys_env`` names."""
    names = [KEYS_ENV, *([settings.keys_env] if settings.keys_env else [])]
    keys = [k.strip() for name in names for k in os.environ.get(name, "").split(",")]
    return tuple(dict.fromkeys(k for k in keys if k))


def declare_security(app: FastAPI, keyed: bool) -> None:
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
