"""The one background thread that writes every run log's queued records (group commits)."""

from __future__ import annotations

import atexit
import queue
import threading
import warnings
from typing import Protocol

__all__ = ["RunLogWarning", "Writer"]


class RunLogWarning(UserWarning):
    """The run log could not be used as it was (a broken file set aside, records spilled to a
    fallback file or kept in memory)."""


class _Log(Protocol):
    path: str

    def _write_queued_safely(self) -> None: ...


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
        with self._lock:
            self._waiting.add(log)
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost to a fork
                self._thread = threading.Thread(
                    target=self._run, name="mmo-magic-runlog", daemon=True
                )
                self._thread.start()
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
            try:
                log._write_queued_safely()
            except Exception as exc:  # the thread must outlive anything one log does
                warnings.warn(
                    f"mmo_magic could not write the run log {log.path}: {exc!r}",
                    RunLogWarning,
                    stacklevel=1,
                )
