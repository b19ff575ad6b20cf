"""Noticing that a client went away, and cancelling its call when it does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from starlette.types import Receive

__all__ = ["ClientDisconnected", "unless_disconnected"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away; its call was cancelled (and recorded as cancelled)."""


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has closed the connection (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, call: Awaitable[T]) -> T:
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
