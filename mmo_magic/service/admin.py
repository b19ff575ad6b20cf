"""The admin API: client keys and their spend (``storage.keys``), for administrators only.

Administrators are the server's own keys (``MMO_SERVER_KEYS``, or loopback
clients of a server without keys) and keys made with ``admin``::

    POST   /v1/keys          make a key: {"name", "models", "budget_usd", "budget_period",
                             "requests_per_minute", "tokens_per_minute", "admin"}; the
                             answer holds the key's secret, shown this once
    GET    /v1/keys          every key (never a secret)
    DELETE /v1/keys/{name}   revoke it
    GET    /v1/spend         spend grouped by key, model and day (?since=YYYY-MM-DD)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import InvalidRequestError
from .clients import Clients
from .errors import error_response
from .schemas import ERROR_RESPONSES

__all__ = ["KeyIn", "add_admin_routes"]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    models: list[str] = Field(["*"], description="globs over model names and routers (auto:*)")
    budget_usd: float | None = None
    budget_period: str = "month"
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    admin: bool = False


def add_admin_routes(app: FastAPI, clients: Clients) -> None:
    def refusal(request: Request) -> Any:
        if not clients.is_admin(request):
            return error_response(
                403, "This endpoint is for administrators' keys.", "permission_error",
                code="admin_only",
            )  # fmt: skip
        if clients.store is None:
            return error_response(
                404, "This server keeps no client keys (start it with a key store).",
                "not_found_error", code="no_key_store",
            )  # fmt: skip
        return None

    @app.post("/v1/keys", responses=ERROR_RESPONSES)
    async def add_key(body: KeyIn, request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        assert clients.store is not None
        secret = clients.store.add(**body.model_dump())
        (made,) = [k for k in clients.store.list_keys() if k.name == body.name and not k.revoked_at]
        return {"key": secret, **made.public()}

    @app.get("/v1/keys", responses=ERROR_RESPONSES)
    async def list_keys(request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        assert clients.store is not None
        return {"object": "list", "data": [k.public() for k in clients.store.list_keys()]}

    @app.delete("/v1/keys/{name}", responses=ERROR_RESPONSES)
    async def revoke_key(name: str, request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        assert clients.store is not None
        if not clients.store.revoke(name):
            return error_response(
                404, f"No live key named {name[:64]!r}.", "not_found_error", code="key_not_found"
            )
        return {"name": name, "revoked": True}

    @app.get("/v1/spend", responses=ERROR_RESPONSES)
    async def spend(request: Request, since: str | None = None) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        assert clients.store is not None
        start = 0.0
        if since:
            try:
                start = datetime.fromisoformat(since).replace(tzinfo=UTC).timestamp()
            except ValueError:
                raise InvalidRequestError(
                    f"since={since[:40]!r} is not a date; give YYYY-MM-DD.", param="since"
                ) from None
        return {"object": "list", "data": clients.store.spend(start)}
