"""The gate: shutdown, client keys, loopback-only serving, allowed hosts and body size,
before FastAPI sees anything.

Clients send ``Authorization: Bearer KEY`` (or Anthropic's ``x-api-key: KEY``); keys come from
``MMO_SERVER_KEYS`` (comma-separated) and from the variable ``[server]
keys_env`` names, never from a file. ``PUBLIC_PATHS`` need no key; the
OpenAPI schema is not among them (README: "The service").

Without keys the service listens on loopback only, serves loopback clients
only, and answers only requests whose ``Host`` is a loopback name
(``localhost``, ``127.0.0.1``, ``[::1]``, any port) or one of
``allowed_hosts``: a web page that rebinds its own domain name to 127.0.0.1
(DNS rebinding) sends its own name as ``Host``, and is refused. With keys,
``Host`` is checked only when ``allowed_hosts`` is given.

Bodies over ``max_body_bytes`` get 413 before they are parsed. While the
service shuts down (``shutdown.Drain``), every new request gets 503.
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
from ..storage.keys import KeyStore
from ..storage.runlog import client_label
from .errors import error_response, shutting_down_response
from .scrub import ECHO_LIMIT
from .shutdown import Drain

__all__ = [
    "KEYS_ENV",
    "PUBLIC_PATHS",
    "Gate",
    "allowed_host_problem",
    "client_keys",
    "declare_security",
    "is_loopback",
]

KEYS_ENV = "MMO_SERVER_KEYS"
CLIENT_STATE = "client_key"  # the request state's entry for a key with an identity
PUBLIC_PATHS = frozenset({"/health"})
ANY_HOST = "*"  # as an allowed host: any Host at all (behind a proxy that checks it)
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


def _split_host(value: str) -> tuple[str, str | None]:
    """``"Example.com:8000"`` -> ``("example.com", "8000")``; ``"[::1]"`` -> ``("[::1]", None)``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else (rest or None)
    else:
        host, colon, port_text = value.partition(":")
        port = port_text if colon else None
    return host.rstrip("."), port


def allowed_host_problem(entry: str) -> str | None:
    """Why ``entry`` is not an allowed host (``--allowed-host``), or None if it is one."""
    if entry == ANY_HOST:
        return None
    host, port = _split_host(entry)
    if not host or "/" in entry or "@" in entry or any(c.isspace() for c in entry.strip()):
        return f"{entry!r} is not a host name: give a name or address, e.g. example.com"
    if port is not None and not port.isdigit():
        return f"{entry!r} has a bad port: give host or host:port, e.g. example.com:8000"
    return None


def _host_matches(host: str, port: str | None, allowed: tuple[tuple[str, str | None], ...]) -> bool:
    return any(host == a and (a_port is None or a_port == port) for a, a_port in allowed)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class Gate:
    """Pure ASGI middleware: refuses requests while shutting down, checks the client (and
    its ``Host``), its key, then the body size, then lets FastAPI in.

    The given key is compared with ``hmac.compare_digest`` against every key, so
    timing reveals neither which key nor how much of one matched. Without
    keys, only loopback clients naming a loopback or allowed host are served.
    A body over the limit is refused from its Content-Length, or (chunked)
    after reading at most the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[str],
        max_body_bytes: int,
        allowed_hosts: Sequence[str] = (),
        drain: Drain | None = None,
        store: KeyStore | None = None,
        public: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.public = PUBLIC_PATHS | frozenset(public)  # paths that need no key
        self.keys = tuple(k.encode() for k in keys)
        self.store = store  # keys with identities (``clients``), beside the server's keys
        self.max_body_bytes = max_body_bytes
        self.drain = drain
        self.any_host = ANY_HOST in allowed_hosts
        self.allowed_hosts = tuple(_split_host(h) for h in allowed_hosts if h != ANY_HOST)
        # Host must be a loopback name or an allowed one: always without keys, and with
        # keys when allowed hosts are given.
        # With keys (the server's, or live ones in the store at start), every request needs one.
        live = store is not None and any(k.revoked_at is None for k in store.list_keys())
        self.keyed = bool(self.keys) or live
        self.check_host = not self.any_host and (not self.keyed or bool(self.allowed_hosts))
        self._host_ok: dict[str, bool] = {}  # Host header -> allowed; a client sends few

    def _allowed(self, given: str) -> bool:
        ok = self._host_ok.get(given)
        if ok is None:
            host, port = _split_host(given)
            ok = is_loopback(host) or _host_matches(host, port, self.allowed_hosts)
            if len(self._host_ok) >= 256:  # bounded: Host is the client's to choose
                self._host_ok.clear()
            self._host_ok[given] = ok
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal: Response | None = None
        if self.drain is not None and self.drain.draining:
            refusal = shutting_down_response()
        else:
            public = scope["path"] in self.public
            if self.keyed:
                refusal = self._host_refusal(scope)
                if refusal is None and not public:
                    refusal = self._key_refusal(scope)
            else:
                refusal = None if public else self._client_refusal(scope)
                if refusal is None:
                    refusal = self._host_refusal(scope)
        if refusal is None:
            refusal, receive = await self._limit_body(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        identity = scope.get("state", {}).get(CLIENT_STATE)
        if identity is None:
            await self.app(scope, receive, send)
            return
        label = client_label.set(identity.name)  # its run records carry the key's name
        try:
            await self.app(scope, receive, send)
        finally:
            client_label.reset(label)

    def _client_refusal(self, scope: Scope) -> Response | None:
        client = scope.get("client")
        if client and is_loopback(client[0]):
            return None
        return error_response(
            403,
            "This server has no client keys, so it serves loopback clients only.",
            "permission_error",
            code="loopback_only",
        )

    def _host_refusal(self, scope: Scope) -> Response | None:
        if not self.check_host:
            return None
        given = _header(scope, b"host") or ""
        if self._allowed(given):
            return None
        host, _ = _split_host(given)
        shown = given if len(given) <= ECHO_LIMIT else f"{given[:ECHO_LIMIT]}…"
        name = host if len(host) <= ECHO_LIMIT and not allowed_host_problem(host) else "HOST"
        if self.keyed:
            why = "it is not one of this server's allowed hosts"
        else:
            why = (
                "this server has no client keys, so it answers only to localhost, 127.0.0.1 "
                "and [::1] (a guard against DNS rebinding)"
            )
        return error_response(
            403,
            f"Host {shown!r} is not allowed: {why}. To allow it, start mmo-serve with "
            f"--allowed-host {name} (or add it to [server] allowed_hosts in mmo.toml).",
            "permission_error",
            code="host_not_allowed",
        )

    def _key_refusal(self, scope: Scope) -> Response | None:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if not scheme and (api_key := _header(scope, b"x-api-key")) is not None:
            scheme, token = "bearer", api_key  # Anthropic's clients send x-api-key
        given = token.strip().encode("latin-1")
        matched = False
        for key in self.keys:  # no early exit: every key is compared
            matched |= hmac.compare_digest(given, key)
        if scheme.lower() == "bearer" and given and matched:
            return None
        if scheme.lower() == "bearer" and given and self.store is not None:
            # Looked up by its hash: the store never holds a key, and timing shows nothing
            # of one (the lookup is of a SHA-256 digest).
            identity = self.store.find(given.decode("latin-1"))
            if identity is not None:
                scope.setdefault("state", {})[CLIENT_STATE] = identity
                return None
        return error_response(
            401,
            f"Missing or invalid API key. Send 'Authorization: Bearer KEY' (or 'x-api-key: KEY') "
            f"with a key "
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
