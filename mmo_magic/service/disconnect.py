"""Noticing that a client went away (or that the service is stopping), and cancelling its call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import nullcontext
from typing import TypeVar

from fastapi import Request
from starlette.types import Receive

from .shutdown import Drain, ShuttingDown

__all__ = ["ClientDisconnected", "drain_of", "unless_disconnected"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away; its call was cancelled (and recorded as cancelled)."""


def drain_of(request: Request) -> Drain | None:
    """The shutdown state of the app serving ``request`` (``create_app`` sets it)."""
    drain = getattr(request.app.state, "drain", None)
    return drain if isinstance(drain, Drain) else None


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has closed the connection (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it if the client goes away first, or at shutdown's cut.

    The cancellation reaches the orchestrator's loop, which closes the
    provider's stream and records the attempt as cancelled. A client that
    left gets ``ClientDisconnected``; a call cut by shutdown, ``ShuttingDown``
    (a 503 with Retry-After: nothing was sent, so the request can be sent again).
    """
    task = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    drain = drain_of(request)
    try:
        with drain.watch(task) if drain is not None else nullcontext():
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # the call's clean-up runs
    cut = drain is not None and drain.was_cut(task)
    if cut and (task.cancelled() or task.exception() is not None):
        raise ShuttingDown
    if task.cancelled():
        raise ClientDisconnected
    return task.result()
