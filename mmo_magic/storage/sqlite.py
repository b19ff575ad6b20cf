"""Opening the package's SQLite files: the one place that knows how to set a broken file aside.

The run log and the response cache both live in a user directory that every new
kernel opens. A file SQLite cannot read (garbage bytes, a truncated copy) would
otherwise make every later session fail until the user found and deleted it, so
it is renamed (with its -wal and -shm companions) and a fresh file is started,
with a warning naming both. A locked or read-only file is not broken: those
errors are raised for the caller to explain, and the file is left alone.
"""

from __future__ import annotations

import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["IN_MEMORY", "is_corrupt", "open_database", "set_aside"]

IN_MEMORY = ":memory:"


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is not a database or is malformed (not: locked, read-only, full)."""
    # SQLITE_CORRUPT and SQLITE_NOTADB arrive as DatabaseError itself; locking,
    # permissions and a full disk arrive as its subclass OperationalError.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.OperationalError | sqlite3.IntegrityError | sqlite3.ProgrammingError
    )


def set_aside(path: str, exc: BaseException, *, what: str, category: type[Warning]) -> Path:
    """Rename the broken database at ``path`` and its -wal/-shm files; warn; return the new name."""
    broken = Path(path)
    aside = broken.with_name(f"{broken.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{broken}{suffix}")
        if source.exists():
            source.replace(Path(f"{aside}{suffix}"))
    warnings.warn(
        f"The {what} {broken} was unreadable ({exc}); moved it to {aside.name} "
        f"and started a fresh {what}.",
        category,
        stacklevel=4,
    )
    return aside


def open_database(
    path: str,
    setup: Callable[[sqlite3.Connection], None],
    *,
    what: str,
    category: type[Warning],
    timeout: float = 10.0,
) -> sqlite3.Connection:
    """A connection to ``path`` with ``setup`` run on it (schema, migrations, pragmas).

    ``isolation_level=None``: callers open their own transactions. A corrupt file
    is set aside once and a fresh one started; any other error is raised.
    """
    if path != IN_MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path, setup, timeout)
    except sqlite3.DatabaseError as exc:
        if path == IN_MEMORY or not is_corrupt(exc):
            raise
        set_aside(path, exc, what=what, category=category)
        return _connect(path, setup, timeout)


def _connect(
    path: str, setup: Callable[[sqlite3.Connection], None], timeout: float
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        setup(conn)
    except BaseException:
        conn.close()
        raise
    return conn
