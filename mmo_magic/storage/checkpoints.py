"""WAL checkpoints on a thread of their own, never on the commit that happens to cross a limit.

SQLite copies a WAL file's pages back into the database (a checkpoint, with its syncs:
several milliseconds) on the commit that finds the WAL over 1,000 pages
(``wal_autocheckpoint``). The run log's lone calls and the gateway's key store commit
on the event loop, so every few hundred requests one request paid for it, and every
other request on the loop waited: at concurrency 1, a p99 of 6 ms where the median
was 2 ms.

So the connections that commit on the loop turn the automatic checkpoint off
(``disable_autocheckpoint``) and report the pages each commit wrote, as estimated by
the caller (``checkpoints.committed``; SQLite's Python API tells nobody). Once a file
has had ``pages`` of them since its last checkpoint, one daemon thread checkpoints it,
PASSIVE (it waits for nobody, and commits go on beside it), on a short-lived
connection of its own. The last connection to close still checkpoints and removes the
WAL, as before.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from pathlib import Path

from .writer import daemon_thread

__all__ = ["PAGES", "Checkpoints", "checkpoint", "checkpoints", "disable_autocheckpoint"]

# Pages written between checkpoints: SQLite's own default, so the WAL stays as small as
# it did (a lone call's record is about 5 pages: 200 calls).
PAGES = 1000


def disable_autocheckpoint(conn: sqlite3.Connection) -> None:
    """No checkpoint on ``conn``'s commits: ``checkpoints`` does them, off the caller's thread."""
    conn.execute("PRAGMA wal_autocheckpoint = 0")


def checkpoint(path: str) -> None:
    """A PASSIVE checkpoint of the database at ``path``; nothing if it is gone or unusable
    now (the next one tries again; meanwhile the WAL only grows)."""
    try:
        # mode=rw: a file removed meanwhile (a closed log in a temporary folder) is not
        # created again, empty.
        uri = f"{Path(path).absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
    except (sqlite3.Error, OSError, ValueError):
        return
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        pass
    finally:
        conn.close()


class Checkpoints:
    """Counts the pages written to each database file, and checkpoints it every ``pages``."""

    def __init__(self, pages: int = PAGES) -> None:
        self.pages = pages
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._due: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def committed(self, path: str, pages: int) -> None:
        """A commit to ``path`` wrote about ``pages`` pages: cheap, on the committing thread."""
        with self._lock:
            count = self._counts.get(path, 0) + pages
            self._counts[path] = 0 if count >= self.pages else count
            if count < self.pages:
                return
            self._thread = daemon_thread(self._thread, self._run, "mmo-magic-checkpoints")
        self._due.put(path)

    def _run(self) -> None:
        while True:
            path = self._due.get()
            checkpoint(path)


checkpoints = Checkpoints()
