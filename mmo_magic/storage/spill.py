"""Fallback files for run records the run log cannot write now (a full disk, a read-only or
locked file, a path that is no file at all).

A returned call is a recorded call: while the run log cannot take a record, the
record goes to a *spill file* in another writable place instead of waiting in
memory, where a crash would lose it. The places tried, in order:

1. ``$MMO_RUNLOG_FALLBACK`` (a directory), when set;
2. the user cache directory (``platformdirs.user_cache_dir("mmo_magic")/runlog-spill``);
3. the temporary directory (``tempfile.gettempdir()/mmo_magic-runlog-spill-<uid>``).

A spill file is an SQLite file with the run log's own schema, named after the
log it stands in for (a hash of its absolute path) and the process writing it:
``<hash>-<pid>-<token>.sqlite3``. Its records go back into the run log as soon as
the log takes writes again, and otherwise the next time any process opens that
log (a spill whose process is still alive is left to that process).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "Spill", "damaged", "fallback_dirs", "fix_for", "insert_rows", "leftover_spills",
    "remove_database",
]  # fmt: skip

_SUFFIX = ".sqlite3"
_open_here: set[str] = set()  # spill files this process is writing now
_open_lock = threading.Lock()


def fallback_dirs() -> list[Path]:
    """Where spill files go, most preferred first (see the module docstring)."""
    dirs = []
    if explicit := os.environ.get("MMO_RUNLOG_FALLBACK"):
        dirs.append(Path(explicit).expanduser())
    try:
        import platformdirs

        dirs.append(Path(platformdirs.user_cache_dir("mmo_magic")) / "runlog-spill")
    except Exception:  # no home directory: the temp directory still works
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    dirs.append(Path(tempfile.gettempdir()) / f"mmo_magic-runlog-spill-{uid}")
    return dirs


def _stem(log_path: str) -> str:
    """The part of a spill file's name that says which run log it stands in for."""
    return hashlib.sha256(os.path.abspath(log_path).encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def leftover_spills(log_path: str) -> list[Path]:
    """Spill files of the run log at ``log_path`` that nobody is writing now, oldest first."""
    stem = _stem(log_path)
    found: list[Path] = []
    for directory in fallback_dirs():
        with contextlib.suppress(OSError):
            for path in directory.glob(f"{stem}-*{_SUFFIX}"):
                pid_text = path.name.split("-")[1]
                with _open_lock:
                    in_use_here = str(path) in _open_here
                if in_use_here or (
                    pid_text.isdigit() and int(pid_text) != os.getpid() and _alive(int(pid_text))
                ):
                    continue
                found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0.0)


def remove_database(path: Path) -> None:
    """Delete an SQLite file and its -wal / -shm companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").unlink()


class Spill:
    """One open spill file: the records a run log could not write, in its own schema."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.rows = 0  # records written here and not yet moved back

    @classmethod
    def open_for(
        cls, log_path: str, setup: Callable[[sqlite3.Connection], None]
    ) -> tuple[Spill | None, list[str]]:
        """A new spill file for ``log_path`` in the first place that takes one.

        Returns (the spill or None, why each place refused).
        """
        name = f"{_stem(log_path)}-{os.getpid()}-{os.urandom(4).hex()}{_SUFFIX}"
        refused: list[str] = []
        for directory in fallback_dirs():
            path = directory / name
            try:
                directory.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    path, check_same_thread=False, isolation_level=None, timeout=1.0
                )
                try:
                    setup(conn)
                except BaseException:
                    conn.close()
                    raise
            except (OSError, sqlite3.Error) as exc:
                refused.append(f"{directory}: {exc}")
                remove_database(path)
                continue
            with _open_lock:
                _open_here.add(str(path))
            return cls(path, conn), refused
        return None, refused

    def close(self, *, remove: bool) -> None:
        """Close the file; ``remove`` deletes it (its records are safe elsewhere)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        with _open_lock:
            _open_here.discard(str(self.path))
        if remove:
            remove_database(self.path)


def fix_for(exc: BaseException) -> str:
    """What the user can do about a run log that cannot be opened or written."""
    text = str(exc).lower()
    if "full" in text or "no space" in text:
        return "free some disk space"
    if "readonly" in text or "read-only" in text or "permission" in text:
        return "make the file and its folder writable, or point MMO_RUNLOG / runlog= elsewhere"
    if "locked" in text or "busy" in text:
        return "another process holds the file's lock: close it (a database browser, say)"
    if "closed" in text:
        return "the log was closed: add records before closing it"
    return "point MMO_RUNLOG / runlog= at a writable file (not a folder)"


def insert_rows(conn: sqlite3.Connection, sql: str, rows: list[list[Any]]) -> None:
    """Run ``sql`` for every row in one transaction (rolled back whole on failure)."""
    try:
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def damaged(conn: sqlite3.Connection) -> bool:
    """Whether SQLite's own check finds the open file damaged (run after a failed write)."""
    try:
        result = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:
        return False  # locked or unreadable now: not evidence of damage
    except sqlite3.DatabaseError:
        return True
    return result != [("ok",)]
