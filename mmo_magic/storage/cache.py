"""A persistent response cache, so re-running a notebook costs nothing and answers the same.

Keys are a SHA-256 of everything that changes a model's output: provider,
model id, base URL, every message, and the sampling parameters. A cache file
that SQLite cannot read is moved aside with a warning and a fresh cache is
started: a broken cache must never break a call.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.completion import CompletionRequest
from ..core.config import default_cache_path
from ..core.models import ModelConfig
from ..core.redaction import redact
from ..core.text import storable
from .sqlite import IN_MEMORY, is_corrupt, open_database, set_aside

__all__ = ["CacheWarning", "CachedAnswer", "ResponseCache", "cache_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY NOT NULL,
    created_at REAL NOT NULL,
    content TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    tokens_estimated INTEGER NOT NULL
)
"""
_KEY_VERSION = 1  # bump when the key's ingredients change, so old entries stop matching


_BUSY_WAIT_S = 1.0


class CacheWarning(UserWarning):
    """The cache was set aside as corrupt, or cannot be used now and calls go without it."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str
    finish_reason: str
    input_tokens: int | None
    output_tokens: int | None
    tokens_estimated: bool = False


def cache_key(
    config: ModelConfig, request: CompletionRequest, max_tokens: int, temperature: float | None
) -> str:
    """The cache key of sending ``request`` to ``config`` with these effective parameters."""
    ingredients: dict[str, Any] = {
        "v": _KEY_VERSION,
        "provider": config.provider,
        "model_id": config.model_id,
        "base_url": config.base_url,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    blob = json.dumps(ingredients, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _setup(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)
    conn.execute("SELECT COUNT(*) FROM responses").fetchone()  # reads the file: fails if corrupt


class ResponseCache:
    """Answers by cache key, in SQLite (``":memory:"`` for a throwaway cache)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = str(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._warned = False  # about a cache that cannot be used: once is enough
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:  # locked, read-only folder, full disk
            self._cannot_use(exc)

    def _open(self) -> sqlite3.Connection:
        if self.path != IN_MEMORY:
            self.path = str(Path(self.path).expanduser())
        # A cache is worth a short wait only: a call goes without it sooner than
        # wait on another process's lock (the run log waits 10 s).
        return open_database(
            self.path, _setup, what="response cache", category=CacheWarning, timeout=_BUSY_WAIT_S
        )

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[Any] | None:
        """The rows of ``sql``; None when the cache cannot be used now (busy, full, read-only).

        A call never fails because of its cache: it goes without one, after one warning.
        """
        with self._lock:
            if self._conn is None:
                return None
            try:
                try:
                    return self._conn.execute(sql, tuple(params)).fetchall()
                except sqlite3.DatabaseError as exc:  # corrupted while in use
                    if self.path == IN_MEMORY or not is_corrupt(exc):
                        raise
                    self._conn.close()
                    set_aside(self.path, exc, what="response cache", category=CacheWarning)
                    self._conn = self._open()
                    return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                self._cannot_use(exc)
                return None

    def _cannot_use(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"The response cache {self.path} cannot be used now ({exc}); calls go without it.",
                CacheWarning,
                stacklevel=4,
            )

    def get(self, key: str) -> CachedAnswer | None:
        rows = self._run(
            "SELECT content, finish_reason, input_tokens, output_tokens, tokens_estimated"
            " FROM responses WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        content, finish_reason, input_tokens, output_tokens, estimated = rows[0]
        return CachedAnswer(content, finish_reason, input_tokens, output_tokens, bool(estimated))

    def put(self, key: str, answer: CachedAnswer) -> None:
        self._run(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                time.time(),
                redact(storable(answer.content)),
                answer.finish_reason,
                answer.input_tokens,
                answer.output_tokens,
                int(answer.tokens_estimated),
            ),
        )

    def __len__(self) -> int:
        rows = self._run("SELECT COUNT(*) FROM responses")
        return int(rows[0][0]) if rows else 0

    def clear(self) -> None:
        self._run("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __repr__(self) -> str:
        return f"<ResponseCache {self.path} ({len(self)} answers)>"
