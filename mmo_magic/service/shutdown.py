"""Stopping gracefully: what each client gets when the service shuts down.

``mmo-serve`` calls ``Drain.begin`` when SIGTERM or SIGINT arrives. From then on:

- a request arriving gets 503 with ``Retry-After`` (uvicorn also stops
  accepting connections and closes idle ones);
- requests in flight get ``grace_s`` to finish; at the end of the grace
  (the *cut*) every call still running is cancelled, and its client gets
  either a 503 with ``Retry-After`` (nothing was sent yet: a request still
  waiting for a model, or behind a concurrency limit), or, for a stream
  already under way, an error event and ``data: [DONE]``.

So a client can always tell a cut answer from a complete one. The cut uses
cancellation, so it costs nothing per token: each call (or stream) registers
its task with ``watch``, and the cut cancels the tasks it knows; ``was_cut``
tells that cancellation from any other (a client leaving, say).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RETRY_AFTER_S", "Drain", "ShuttingDown"]

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # what a refused or cut request is told to wait before trying again


class ShuttingDown(Exception):
    """The service is stopping, and this request's call was cut before anything was sent.

    It becomes a 503 with Retry-After (``errors.shutting_down_response``).
    """


class Drain:
    """The service's shutdown state: draining (refuse new requests), then cut (end the rest)."""

    def __init__(self) -> None:
        self.draining = False
        self.cut = False
        self._watched: set[asyncio.Task[Any]] = set()
        self._cut_tasks: set[asyncio.Task[Any]] = set()

    def begin(self, grace_s: float) -> None:
        """Refuse new requests from now on; cut the calls still running ``grace_s`` from now.

        Call it on the loop serving the requests (uvicorn's).
        """
        if self.draining:
            return
        self.draining = True
        in_flight = len(self._watched)
        logger.info("shutting down: %d call(s) in flight get %.1f s to finish", in_flight, grace_s)
        asyncio.get_running_loop().call_later(max(0.0, grace_s), self._cut_now)

    def _cut_now(self) -> None:
        self.cut = True
        if self._watched:
            logger.warning(
                "shutdown grace over: cutting %d call(s) still running", len(self._watched)
            )
        for task in list(self._watched):
            self._cut_one(task)

    def _cut_one(self, task: asyncio.Task[Any]) -> None:
        if task not in self._cut_tasks and not task.done():
            self._cut_tasks.add(task)
            task.cancel()

    @contextmanager
    def watch(self, task: asyncio.Task[Any] | None = None) -> Iterator[None]:
        """Within this block, the cut cancels ``task`` (default: the current task)."""
        task = task or asyncio.current_task()
        assert task is not None
        self._watched.add(task)
        if self.cut:  # registered after the cut: cut at once
            self._cut_one(task)
        try:
            yield
        finally:
            self._watched.discard(task)

    def was_cut(self, task: asyncio.Task[Any] | None = None) -> bool:
        """Whether the cut cancelled ``task`` (default: the current task); forgets it."""
        task = task or asyncio.current_task()
        if task in self._cut_tasks:
            self._cut_tasks.discard(task)
            return True
        return False
