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
import contextlib
import queue
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = [
    "CANCEL_GRACE_S",
    "BackgroundLoop",
    "background_loop",
    "get_interruptibly",
    "use_running_loop",
]

T = TypeVar("T")
# After a stop: how long cancelled requests get to close their HTTP streams and have their
# run records written before the stop reaches the caller. Normally they take milliseconds.
CANCEL_GRACE_S = 5.0
# How often a waiting thread wakes up, to notice Ctrl-C / the stop button (see ``wait``).
_POLL_S = 0.1


class BackgroundLoop:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "mmo-magic-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._adopted = False  # the loop is a caller's (``adopt``), not our thread's

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.start()

    def start(
        self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    ) -> asyncio.AbstractEventLoop:
        """The running loop, started now if it is not yet, made by ``loop_factory``.

        A server passes uvloop's factory here before anything else uses the loop (a
        notebook never does: nest_asyncio cannot patch uvloop). A loop already running
        is kept as it is.
        """
        with self._lock:
            if self._loop is None or not self._alive(self._loop):
                self._adopted = False
                ready = threading.Event()
                # A fresh loop object: nest_asyncio patches only the loops it is given.
                loop = (loop_factory or asyncio.new_event_loop)()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def adopt(self) -> None:
        """Make the event loop running this the one every call runs on, until it ends.

        For an async program or server whose own loop lives as long as its calls: each
        awaited call then runs where it is awaited, with no hop to the background thread
        and back. Sync methods still work from other threads; on this loop's own thread
        they are refused, as on the background loop's. Once this loop has stopped, calls
        go back to a background thread's loop (clients are made again for it).

        Called before the first call: a background loop already started keeps its work,
        and adopting another then would split the clients and limits between two loops.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is loop:
                return
            if self._loop is not None and self._alive(self._loop):
                raise RuntimeError(
                    "mmo_magic's calls already run on another event loop; adopt this one "
                    "before the first call (at the start of the program or server)"
                )
            self._loop, self._thread, self._adopted = loop, threading.current_thread(), True

    def _alive(self, loop: asyncio.AbstractEventLoop) -> bool:
        # An adopted loop that stopped (``asyncio.run`` returned) runs nothing submitted to it.
        return not loop.is_closed() and (loop.is_running() or not self._adopted)

    def in_loop_thread(self) -> bool:
        loop = self._loop
        return loop is not None and threading.current_thread() is self._thread and self._alive(loop)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and ``wait`` for it (from any thread but the loop's)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a sync mmo_magic call was made on its own event loop; await the a-prefixed twin"
            )
        return self.wait(self.submit(coro))

    def wait(
        self, future: concurrent.futures.Future[T], on_tick: Callable[[], None] | None = None
    ) -> T:
        """``future.result()``, from a thread other than the loop's, in short waits.

        A SIGINT may land on another thread; the main thread sees the pending
        KeyboardInterrupt only when it runs Python code again, so it never blocks in
        one long wait. ``on_tick`` runs after each short wait that found the future
        still running (a terminal view printing news, a magic showing finished steps).

        KeyboardInterrupt (a notebook's stop button), or anything ``on_tick`` raises,
        cancels the future, and with it every request it made (``cancel``), then
        propagates.
        """
        try:
            while True:
                try:
                    return future.result(timeout=_POLL_S)
                except concurrent.futures.TimeoutError:
                    if future.done():
                        raise  # the work's own TimeoutError (the same class), not the poll's
                    if on_tick is not None:
                        on_tick()
        except BaseException:
            if not future.done():
                self.cancel(future)
            raise

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel ``future`` and give its requests ``CANCEL_GRACE_S`` to close and be recorded."""
        future.cancel()
        concurrent.futures.wait([future], timeout=CANCEL_GRACE_S)

    async def arun(
        self,
        coro: Coroutine[Any, Any, T],
        until: Sequence[concurrent.futures.Future[Any]] = (),
    ) -> T:
        """Await ``coro`` from any event loop; it runs on the background loop.

        ``until``: futures the coroutine fills in as it runs (a call's run-record commits)
        that must also be done before the caller resumes, unless the coroutine was
        cancelled. Whichever finishes last wakes the caller's loop directly, once:
        the background loop when the futures are done first, else the thread that
        completes the last of them (the run log's writer).

        One ``call_soon_threadsafe`` each way: no ``concurrent.futures.Future`` and
        ``wrap_future`` chain between the loops (two more locks and callbacks a call).
        """
        if self.in_loop_thread():
            try:
                return await coro
            finally:
                # Answer or error, the caller resumes with its records committed; a
                # cancelled call does not wait (its records are written all the same).
                if not _cancelling():
                    for future in until:
                        if not future.done():
                            await asyncio.wrap_future(future)
        caller = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = caller.create_future()
        started: list[asyncio.Task[T]] = []
        stopped = False  # set by the caller, read by ``start``: a cancel before the start

        def resume(task: asyncio.Task[T]) -> None:  # on the caller's loop
            if waiter.done():
                return
            if task.cancelled():
                waiter.cancel()
            elif (error := task.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(task.result())

        def wake(task: asyncio.Task[T]) -> None:  # any thread
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
                caller.call_soon_threadsafe(resume, task)

        def finished(task: asyncio.Task[T]) -> None:  # on the background loop
            if task.cancelled():
                wake(task)
                return
            task.exception()  # retrieved: it goes to the caller, or the caller has gone
            pending = [f for f in until if not f.done()]
            if not pending:
                wake(task)
                return

            def one_done(_: concurrent.futures.Future[Any]) -> None:  # any thread
                # Two finishing at once may both see all done: ``resume`` runs once.
                if all(f.done() for f in pending):
                    wake(task)

            for future in pending:
                future.add_done_callback(one_done)

        def start() -> None:  # on the background loop, in a copy of the caller's context
            if stopped:
                coro.close()
                return
            task = asyncio.ensure_future(coro)
            task.add_done_callback(finished)
            started.append(task)

        self.loop.call_soon_threadsafe(start)
        try:
            return await waiter
        except asyncio.CancelledError:
            stopped = True
            self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in started])
            raise


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def get_interruptibly(items: queue.SimpleQueue[T]) -> T:
    """``items.get()``, in short waits for the reason given in ``BackgroundLoop.wait``."""
    while True:
        try:
            return items.get(timeout=_POLL_S)
        except queue.Empty:
            continue


background_loop = BackgroundLoop()


def use_running_loop() -> None:
    """Run mmo_magic's calls on the event loop running this, for as long as it runs.

    For an async program or server (``asyncio.run(main())``, a FastAPI app's lifespan):
    call it first, inside the loop. Each ``await orc.acomplete(...)`` then runs on that
    loop, without the two thread wake-ups of a hop to mmo_magic's background loop and
    back. Not for notebooks: a cell's sync calls run on the kernel loop's own thread,
    where they would be refused. Raises RuntimeError outside a running loop, or once
    calls have run on another loop.
    """
    background_loop.adopt()
