"""The one background event loop that every async client lives on.

SDK clients hold connection pools bound to the loop they were first used on,
so they must all live on one long-lived loop: a daemon thread runs it, and
sync methods (and magics) submit coroutines to it and wait. This avoids
``asyncio.run`` per call (clients bound to a dead loop break) and any need
for nest_asyncio, and works the same from a plain script, from inside a
running loop (a notebook), and under top-level ``await``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop", "background_loop"]

T = TypeVar("T")
_CANCEL_GRACE_S = 5.0
_POLL_S = 0.1


class BackgroundLoop:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "mmo-magic-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                ready = threading.Event()
                # A fresh loop object: nest_asyncio patches only the loops it is given.
                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (from any thread but the loop's).

        KeyboardInterrupt (a notebook's stop button) cancels the coroutine,
        waits briefly for its cleanup (closing HTTP streams), then propagates.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a sync mmo_magic call was made on its own event loop; await the a-prefixed twin"
            )
        future = self.submit(coro)
        try:
            return wait_interruptibly(future)
        except KeyboardInterrupt:
            future.cancel()
            concurrent.futures.wait([future], timeout=_CANCEL_GRACE_S)
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` from any event loop; it runs on the background loop."""
        if self.in_loop_thread():
            return await coro
        future = self.submit(coro)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise


def wait_interruptibly(future: concurrent.futures.Future[T]) -> T:
    """``future.result()``, waking up often enough to notice Ctrl-C / the stop button.

    A SIGINT may land on another thread; the main thread sees the pending
    KeyboardInterrupt only when it runs Python code again, so never block
    in one long wait.
    """
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except concurrent.futures.TimeoutError:
            continue


def get_interruptibly(items: queue.SimpleQueue[T]) -> T:
    """``items.get()``, in short waits for the same reason as ``wait_interruptibly``."""
    while True:
        try:
            return items.get(timeout=_POLL_S)
        except queue.Empty:
            continue


background_loop = BackgroundLoop()
