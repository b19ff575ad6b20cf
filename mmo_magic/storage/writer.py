"""The one background thread that writes every run log's queued records (group commits).

A caller that knows it is alone (no other call in flight to share a commit with) may
write its records itself instead: ``written_here`` makes the records added inside the
block be written by the calling thread as the block ends, without waking the writer
thread. That saves two thread wake-ups on the path of a lone call (the writer's, then
the caller's once the commit is done), which on a busy machine each wait for a CPU.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["RunLogWarning", "Writer", "daemon_thread", "written_here"]


class RunLogWarning(UserWarning):
    """The run log could not be used as it was (a broken file set aside, records spilled to a
    fallback file or kept in memory)."""


class _Log(Protocol):
    path: str

    def _write_queued_safely(self) -> None: ...


# Per thread: the logs with records added inside a ``written_here`` block, each with the
# writer it would have woken (None outside a block).
_here = threading.local()


@contextlib.contextmanager
def written_here() -> Iterator[None]:
    """Write the records added inside the block in this thread, as it ends (one commit per log).

    For a lone call: it waits for its commit anyway, so writing it here costs the caller
    nothing and saves the hand-off to the writer thread and back. Records of concurrent
    calls belong with the writer thread instead, where they share a commit.
    """
    outer: dict[_Log, Writer] | None = getattr(_here, "logs", None)
    logs: dict[_Log, Writer] = {}
    _here.logs = logs
    try:
        yield
    finally:
        _here.logs = outer
        for log, writer in logs.items():
            if _busy(log):
                # Held by a long read (a DataFrame of the whole log): the writer thread waits
                # for it, not this thread (the event loop every call runs on).
                writer.wake(log)
            else:
                _write(log)


class Writer:
    """One daemon thread that writes the queue of every log with records waiting.

    Woken by ``add``, it writes each waiting log's queue in one transaction and
    goes round again while records keep arriving. At exit it writes what is left.
    """

    def __init__(self) -> None:
        self._waiting: set[_Log] = set()
        self._lock = threading.Lock()
        # Wake-ups. A SimpleQueue, not an Event: put() is one C call, where Event.set takes
        # a Python Condition (its lock, a notify) on the caller's path for every record.
        self._wakes: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        atexit.register(self.write_all)

    def wake(self, log: _Log) -> None:
        here: dict[_Log, Writer] | None = getattr(_here, "logs", None)
        if here is not None:  # inside ``written_here``: this thread writes it
            here[log] = self
            return
        with self._lock:
            self._waiting.add(log)
            self._thread = daemon_thread(self._thread, self._run, "mmo-magic-runlog")
        self._wakes.put(None)

    def _run(self) -> None:
        while True:
            self._wakes.get()
            # Wake-ups that came while the last group was written: one group takes them all.
            while not self._wakes.empty():
                self._wakes.get_nowait()
            self.write_all()

    def write_all(self) -> None:
        with self._lock:
            logs, self._waiting = self._waiting, set()
        for log in logs:
            _write(log)


def daemon_thread(
    thread: threading.Thread | None, target: Callable[[], None], name: str
) -> threading.Thread:
    """``thread`` if it is running, else a new daemon thread running ``target`` (the first
    use, or after a fork, which keeps no thread but the one that forked)."""
    if thread is not None and thread.is_alive():
        return thread
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def _busy(log: _Log) -> bool:
    """Whether ``log``'s connection lock is held now (a RunLog's ``_lock``)."""
    lock = getattr(log, "_lock", None)
    return bool(lock is not None and lock.locked())


def _write(log: _Log) -> None:
    try:
        log._write_queued_safely()
    except Exception as exc:  # the writer must outlive anything one log does
        warnings.warn(
            f"mmo_magic could not write the run log {log.path}: {exc!r}",
            RunLogWarning,
            stacklevel=1,
        )
