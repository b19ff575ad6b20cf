"""Streams of one answer's text: what ``Orchestrator.stream`` and ``astream`` return.

Each runs one call of the engine with an ``on_text`` hook that feeds the
caller's loop, recorded with kind "stream" (after the first text, a failure
is raised rather than retried: see ``reliability``).
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from ..core.completion import CompletionResponse
from ..core.loop import BackgroundLoop, get_interruptibly
from .calls import CallContext, OnText

__all__ = ["AsyncCompletionStream", "CompletionStream"]

# Starts the streamed call: the engine's ``complete`` with everything but its context.
Start = Callable[[CallContext], Coroutine[Any, Any, CompletionResponse]]

_DONE = object()


def _streaming(on_text: OnText) -> CallContext:
    return CallContext(kind="stream", on_text=on_text)


class CompletionStream:
    """Text deltas as they arrive; after the loop, ``response`` is the CompletionResponse
    (with the answer's ``tool_calls``, which arrive whole with it, not as text).

    Breaking out of the loop, or KeyboardInterrupt, cancels the request and
    closes its HTTP stream.
    """

    def __init__(self, start: Start, loop: BackgroundLoop) -> None:
        self._start, self._loop = start, loop
        self.response: CompletionResponse | None = None

    def __iter__(self) -> Iterator[str]:
        deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()
        future = self._loop.submit(self._start(_streaming(deltas.put)))
        future.add_done_callback(lambda _: deltas.put(_DONE))
        try:
            while (item := get_interruptibly(deltas)) is not _DONE:
                yield item
        finally:
            if not future.done():  # the caller broke out of the loop, or pressed stop
                self._loop.cancel(future)
        self.response = self._loop.wait(future)

    @property
    def text(self) -> str:
        return self.response.content if self.response else ""


class AsyncCompletionStream:
    """Async twin of CompletionStream: ``async for text in orc.astream(...)``."""

    def __init__(self, start: Start) -> None:
        self._start = start
        self.response: CompletionResponse | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        caller = asyncio.get_running_loop()
        deltas: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            caller.call_soon_threadsafe(deltas.put_nowait, item)

        future = asyncio.ensure_future(self._start(_streaming(put)))
        future.add_done_callback(lambda _: deltas.put_nowait(_DONE))
        try:
            while (item := await deltas.get()) is not _DONE:
                yield item
            self.response = await future
        finally:
            if not future.done():
                future.cancel()
