"""Client keys with identities, and what each key spent: the gateway's team storage.

A key has a name, the models it may use (globs: ``gpt-*``, ``auto:*``), a
USD budget over a period (a day, a week, a 30-day month, or in total), and
requests and tokens per minute. Keys are stored hashed (SHA-256 of a random
secret of 256 bits: no salt or slow hash is needed for a secret nobody
chose), so the store never holds one in plain text; the secret is shown once,
when the key is made.

``KeyStore`` is the interface the service uses; ``SQLiteKeyStore`` the
embedded default (in the run log's SQLite file, tables of their own). A
shared database (Postgres) for several gateway processes implements the same
interface.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import ConfigError, InvalidRequestError
from .checkpoints import checkpoints, disable_autocheckpoint

__all__ = [
    "KEY_PREFIX",
    "PERIODS",
    "ClientKey",
    "KeyStore",
    "SQLiteKeyStore",
    "hash_key",
    "period_start",
]

KEY_PREFIX = "mmo-"
# Budget periods: seconds each lasts, counted from the start of the current one (UTC).
PERIODS = {"day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400, "total": None}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def period_start(period: str, now: float | None = None) -> float:
    """The epoch second the current ``period`` began (0 for "total")."""
    length = PERIODS[period]
    now = time.time() if now is None else now
    return 0.0 if length is None else now - now % length


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client key's identity and limits (never its secret)."""

    name: str
    models: tuple[str, ...] = ("*",)  # globs over model names and routers ("auto:*")
    budget_usd: float | None = None
    budget_period: str = "month"
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    admin: bool = False
    created_at: float = 0.0
    revoked_at: float | None = None
    hint: str = ""  # the secret's first characters, to tell keys apart in a list

    def allows(self, model: str) -> bool:
        """Whether this key may name ``model`` (a model name, alias or ``auto:ROUTER``)."""
        if model.lower() == "auto":
            return any(fnmatch.fnmatchcase("auto", g) or g == "auto:*" for g in self.models)
        return any(fnmatch.fnmatchcase(model, glob) for glob in self.models)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name, "models": list(self.models), "budget_usd": self.budget_usd,
            "budget_period": self.budget_period, "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute, "admin": self.admin,
            "created_at": self.created_at, "revoked_at": self.revoked_at, "hint": self.hint,
        }  # fmt: skip


class KeyStore(Protocol):
    """Where keys and their spend live; one per deployment, shared by its gateway processes."""

    def add(
        self,
        name: str,
        *,
        models: Sequence[str] = ("*",),
        budget_usd: float | None = None,
        budget_period: str = "month",
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        admin: bool = False,
    ) -> str:
        """Make a key; returns its secret (shown once, stored hashed)."""
        ...

    def find(self, secret: str) -> ClientKey | None:
        """The live (not revoked) key with this secret, or None."""
        ...

    def list_keys(self) -> list[ClientKey]: ...

    def revoke(self, name: str) -> bool:
        """Revoke ``name``'s key; False if there is no live key of that name."""
        ...

    def charge(self, name: str, model: str, usd: float | None, tokens: int) -> None:
        """Add one call's cost and tokens to ``name``'s spend."""
        ...

    def settle(
        self, name: str, charges: Sequence[tuple[str, float | None, int]], holds: Sequence[str]
    ) -> None:
        """Charge a request's calls, each (model, usd, tokens), and end its holds, in one
        transaction: the request's last word on the key."""
        ...

    def spent(self, name: str, since: float) -> float:
        """USD ``name`` spent since the epoch second ``since``."""
        ...

    def hold(self, name: str, usd: float, since: float, budget: float) -> str | None:
        """Hold ``usd`` (a request's worst case) against ``name``'s budget if what it spent
        since ``since``, what is held and ``usd`` fit in ``budget``, atomically across every
        gateway sharing the store; the hold's id, or None when it does not fit."""
        ...

    def release(self, hold: str) -> None:
        """End a hold (its request finished; what it cost is charged)."""
        ...

    def spend(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Spend grouped by key, model and day (UTC): {key, model, day, usd, tokens, requests}."""
        ...

    def close(self) -> None: ...


def check_key_fields(
    name: str, models: Sequence[str], budget_usd: float | None, budget_period: str,
    requests_per_minute: int | None, tokens_per_minute: int | None,
) -> None:  # fmt: skip
    """An InvalidRequestError naming the first bad field of a new key."""
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise InvalidRequestError(
            f"Key name {name[:64]!r} must be 1-64 letters, digits, '-', '_', '.' or '@'.",
            param="name",
        )
    if not models or not all(isinstance(m, str) and m for m in models):
        raise InvalidRequestError("models must be a list of globs, e.g. ['gpt-*', 'auto:*'].",
                                  param="models")  # fmt: skip
    if budget_usd is not None and not budget_usd >= 0:
        raise InvalidRequestError("budget_usd must be a number >= 0.", param="budget_usd")
    if budget_period not in PERIODS:
        raise InvalidRequestError(
            f"budget_period must be one of {', '.join(PERIODS)}.", param="budget_period"
        )
    for field, value in (("requests_per_minute", requests_per_minute),
                         ("tokens_per_minute", tokens_per_minute)):  # fmt: skip
        if value is not None and (isinstance(value, bool) or value < 1):
            raise InvalidRequestError(f"{field} must be a whole number >= 1.", param=field)


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS client_keys (
        name TEXT NOT NULL,
        key_hash TEXT PRIMARY KEY NOT NULL,
        hint TEXT NOT NULL,
        models TEXT NOT NULL,
        budget_usd REAL,
        budget_period TEXT NOT NULL,
        requests_per_minute INTEGER,
        tokens_per_minute INTEGER,
        admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        revoked_at REAL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS client_keys_live ON client_keys (name) "
    "WHERE revoked_at IS NULL",
    """CREATE TABLE IF NOT EXISTS key_spend (
        key TEXT NOT NULL,
        model TEXT NOT NULL,
        at REAL NOT NULL,
        usd REAL,
        tokens INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS key_spend_key_at ON key_spend (key, at)",
    # Each key's spend per UTC day (epoch seconds // 86400), kept as it is charged: a budget
    # check reads at most a period's days, not every charge of the period (it slowed as a
    # busy key's charges grew: 3.5 ms a request at 20,000 charges in a day).
    """CREATE TABLE IF NOT EXISTS key_days (
        key TEXT NOT NULL,
        day INTEGER NOT NULL,
        usd REAL NOT NULL,
        PRIMARY KEY (key, day)
    )""",
    # Worst cases of requests under way, held against their key's budget until they end.
    """CREATE TABLE IF NOT EXISTS key_holds (
        id TEXT PRIMARY KEY NOT NULL,
        key TEXT NOT NULL,
        usd REAL NOT NULL,
        at REAL NOT NULL
    )""",
)
DAY_S = 86_400
HOLD_TTL_S = 600.0  # a hold left by a process that died stops counting after this long
_KEY_COLUMNS = (
    "name, models, budget_usd, budget_period, requests_per_minute, tokens_per_minute, admin, "
    "created_at, revoked_at, hint"
)


@functools.lru_cache(maxsize=256)
def _row_key(row: tuple[Any, ...]) -> ClientKey:
    """The key a row describes; the same row gives the same (frozen) key, made once."""
    name, models, budget, period, rpm, tpm, admin, created, revoked, hint = row
    return ClientKey(
        name=name, models=tuple(json.loads(models)), budget_usd=budget, budget_period=period,
        requests_per_minute=rpm, tokens_per_minute=tpm, admin=bool(admin), created_at=created,
        revoked_at=revoked, hint=hint,
    )  # fmt: skip


_PAGES_A_WRITE = 4  # a hold or a settle: a row or three and their indexes (checkpoints)


class SQLiteKeyStore:
    """``KeyStore`` in one SQLite file (the run log's, by default), WAL mode, one connection
    behind a lock: each operation is one short statement.

    The SQL is plain enough for Postgres too (``keys_postgres.PostgresKeyStore`` changes
    the connection, the placeholders and the day expression)."""

    _DAY = "date(at, 'unixepoch')"  # the UTC day of an epoch second, as YYYY-MM-DD
    _DAY_NUMBER = "CAST(at / 86400 AS INTEGER)"  # days since the epoch (``at`` is never < 0)
    _DUPLICATE: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    _checkpointed: str | None = None  # the file whose commits ``checkpoints`` counts

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 2000")
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
                # WAL with NORMAL: commits survive a crash of the process, not of the OS;
                # a full sync on every hold, charge and release would cap a busy gateway.
                self._conn.execute("PRAGMA synchronous = NORMAL")
                # Holds and charges commit on the gateway's event loop: storage.checkpoints.
                disable_autocheckpoint(self._conn)
                self._checkpointed = str(Path(path).absolute())  # the cwd may change later
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._conn.execute(self._backfill_days())
        except sqlite3.Error as exc:
            raise ConfigError(f"The key store {path!r} cannot be opened: {exc}.") from exc
        self._lock = threading.Lock()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Rows a write changed."""
        with self._lock:
            changed = int(self._conn.execute(sql, args).rowcount)
        self._committed()
        return changed

    def _committed(self) -> None:
        if self._checkpointed is not None:
            checkpoints.committed(self._checkpointed, _PAGES_A_WRITE)

    def add(
        self,
        name: str,
        *,
        models: Sequence[str] = ("*",),
        budget_usd: float | None = None,
        budget_period: str = "month",
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        admin: bool = False,
    ) -> str:
        check_key_fields(
            name, models, budget_usd, budget_period, requests_per_minute, tokens_per_minute
        )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            self._run(
                f"INSERT INTO client_keys (key_hash, {_KEY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (hash_key(secret), name, json.dumps(list(models)), budget_usd, budget_period,
                 requests_per_minute, tokens_per_minute, int(admin), time.time(),
                 secret[: len(KEY_PREFIX) + 4]),
            )  # fmt: skip
        except self._DUPLICATE:
            raise InvalidRequestError(
                f"A live key named {name!r} exists already.",
                hint="Revoke it first, or pick another name.", param="name",
            ) from None  # fmt: skip
        return secret

    def find(self, secret: str) -> ClientKey | None:
        rows = self._run(
            f"SELECT {_KEY_COLUMNS} FROM client_keys WHERE key_hash = ? AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return _row_key(rows[0]) if rows else None

    def list_keys(self) -> list[ClientKey]:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM client_keys ORDER BY created_at")
        return [_row_key(r) for r in rows]

    def revoke(self, name: str) -> bool:
        changed = self._count(
            "UPDATE client_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (time.time(), name),
        )
        return changed > 0

    def _backfill_days(self) -> str:
        """Fills ``key_days`` from ``key_spend`` once, for a store written before it existed."""
        return (
            f"INSERT INTO key_days (key, day, usd) SELECT key, {self._DAY_NUMBER}, "
            "COALESCE(SUM(usd), 0) FROM key_spend WHERE NOT EXISTS (SELECT 1 FROM key_days) "
            f"GROUP BY key, {self._DAY_NUMBER} ON CONFLICT (key, day) DO NOTHING"
        )

    def charge(self, name: str, model: str, usd: float | None, tokens: int) -> None:
        self.settle(name, [(model, usd, tokens)], ())

    def settle(
        self, name: str, charges: Sequence[tuple[str, float | None, int]], holds: Sequence[str]
    ) -> None:
        now = time.time()
        with self._transaction(name) as run:
            for model, usd, tokens in charges:
                run("INSERT INTO key_spend (key, model, at, usd, tokens) VALUES (?, ?, ?, ?, ?)",
                    (name, model, now, usd, tokens))  # fmt: skip
                if usd:
                    run("INSERT INTO key_days (key, day, usd) VALUES (?, ?, ?) "
                        "ON CONFLICT (key, day) DO UPDATE SET usd = key_days.usd + excluded.usd",
                        (name, int(now // DAY_S), usd))  # fmt: skip
            for hold in holds:
                run("DELETE FROM key_holds WHERE id = ?", (hold,))

    def spent(self, name: str, since: float) -> float:
        return self._spent(lambda sql, args=(): self._run(sql, args), name, since)

    @staticmethod
    def _spent(run: Callable[..., list[Any]], name: str, since: float) -> float:
        if since % DAY_S == 0:  # every budget period starts at a UTC midnight
            sql = "SELECT COALESCE(SUM(usd), 0) FROM key_days WHERE key = ? AND day >= ?"
            rows = run(sql, (name, int(since // DAY_S)))
        else:
            sql = "SELECT COALESCE(SUM(usd), 0) FROM key_spend WHERE key = ? AND at >= ?"
            rows = run(sql, (name, since))
        return float(rows[0][0])

    @contextlib.contextmanager
    def _transaction(self, name: str) -> Iterator[Callable[..., list[Any]]]:
        """One transaction holding ``name``'s budget: SQLite locks the file for writing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, args=(): self._conn.execute(sql, args).fetchall()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        self._committed()

    def hold(self, name: str, usd: float, since: float, budget: float) -> str | None:
        now = time.time()
        with self._transaction(name) as run:
            spent = self._spent(run, name, since)
            (held,) = run(
                "SELECT COALESCE(SUM(usd), 0) FROM key_holds WHERE key = ? AND at >= ?",
                (name, now - HOLD_TTL_S),
            )[0]
            if float(spent) + float(held) + usd > budget:
                return None
            hold_id = secrets.token_hex(12)
            run("INSERT INTO key_holds (id, key, usd, at) VALUES (?, ?, ?, ?)",
                (hold_id, name, usd, now))  # fmt: skip
            return hold_id

    def release(self, hold: str) -> None:
        self._count("DELETE FROM key_holds WHERE id = ?", (hold,))

    def spend(self, since: float = 0.0) -> list[dict[str, Any]]:
        rows = self._run(
            f"SELECT key, model, {self._DAY} AS day, SUM(usd), SUM(tokens), COUNT(*) "
            "FROM key_spend WHERE at >= ? GROUP BY key, model, day ORDER BY day, key, model",
            (since,),
        )
        return [
            {"key": k, "model": m, "day": d, "usd": usd, "tokens": t, "requests": n}
            for k, m, d, usd, t, n in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
