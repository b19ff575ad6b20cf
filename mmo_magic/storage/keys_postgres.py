"""``KeyStore`` on Postgres: one database shared by several ``mmo-serve`` processes (or
replicas behind a load balancer), so a key, its revocation and its spend are the same
everywhere. ``[server] keys_db = "postgresql://user@host/db"``; needs ``psycopg``
(``pip install mmo_magic[postgres]``).

A request's worst case is held against its key's budget in one transaction that locks
the key's row (``SELECT ... FOR UPDATE``), so gateways admitting requests at once cannot
together promise more than the budget.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..core.errors import ConfigError
from .keys import _SCHEMA, SQLiteKeyStore

__all__ = ["PostgresKeyStore"]


class PostgresKeyStore(SQLiteKeyStore):
    """The SQLite store's statements on one autocommit Postgres connection behind a lock."""

    _DAY = "to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    _DAY_NUMBER = "CAST(FLOOR(at / 86400) AS INTEGER)"  # Postgres's CAST rounds: floor first

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "A postgresql:// key store needs psycopg: pip install 'psycopg[binary]'."
            ) from exc
        self.path = url
        self._DUPLICATE = (psycopg.errors.UniqueViolation,)
        try:
            self._conn = psycopg.connect(url, autocommit=True)  # type: ignore[assignment]
            for statement in _SCHEMA:
                self._conn.execute(statement.replace(" REAL", " DOUBLE PRECISION"))
            self._conn.execute(self._backfill_days())
        except psycopg.Error as exc:
            raise ConfigError(f"The key store at {_shown(url)} cannot be opened: {exc}.") from exc
        self._lock = threading.Lock()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            cursor = self._conn.execute(sql.replace("?", "%s"), args)
            return cursor.fetchall() if cursor.description is not None else []

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            cursor = self._conn.execute(sql.replace("?", "%s"), args)
            return int(cursor.rowcount)

    @contextlib.contextmanager
    def _transaction(self, name: str) -> Iterator[Callable[..., list[Any]]]:
        """One transaction holding ``name``'s budget: its key row locked until the end."""
        with self._lock, self._conn.transaction():  # type: ignore[attr-defined]

            def run(sql: str, args: Sequence[Any] = ()) -> list[Any]:
                cursor = self._conn.execute(sql.replace("?", "%s"), args)
                return cursor.fetchall() if cursor.description is not None else []

            run("SELECT name FROM client_keys WHERE name = ? FOR UPDATE", (name,))
            yield run


def _shown(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}@{tail}"
