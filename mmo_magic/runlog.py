"""Run records: every attempt at every model, kept in SQLite.

Each try — ok, failed, cancelled, timed out, cached, a judge call or a
pipeline step — becomes one ``RunRecord``. ``RunLog`` writes it to SQLite at
once, so the log survives a kernel restart, and turns it into a typed pandas
DataFrame or a CSV / Parquet / JSONL file for analysis.

The schema is versioned: ``MIGRATIONS`` is an append-only list of SQL
statement groups and ``PRAGMA user_version`` holds how many have run.
Never edit a migration that has shipped; add a new one.

pandas and pyarrow are imported only inside the methods that need them, so
recording calls from a plain script stays cheap.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .secrets import redact

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIGRATIONS", "RunLog", "RunRecord"]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One attempt at one model. Unknown numbers are None, never 0."""

    run_id: str = field(default_factory=_new_id)
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    kind: str = "complete"
    group_id: str | None = None
    requested_model: str
    model: str | None = None
    provider: str | None = None
    status: str
    error_type: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    prompt: str
    system: str | None = None
    response: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_estimated: bool = False
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempt: int = 1
    cached: bool = False
    route_reason: str | None = None
    cell: int | None = None
    session_id: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    step: str | None = None  # the pipeline step, or the role of a judge call


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
_DATETIME = ("started_at", "finished_at")
_BOOL = ("tokens_estimated", "cached")
# Free text a provider or user supplied: the only places a key could hide.
_REDACTED = ("error", "prompt", "system", "response", "route_reason")

_TEXT = ("run_id", "group_id", "error", "prompt", "system", "response", "route_reason")
_CATEGORY = ("kind", "requested_model", "model", "provider", "status", "error_type", "step")
# DataFrame dtype of each non-datetime column. Repeated values (model names,
# statuses) are categories; everything else keeps missing values as <NA>.
_DTYPES: dict[str, str] = {
    **dict.fromkeys((*_TEXT, "session_id"), "string"),
    **dict.fromkeys((*_CATEGORY, "finish_reason"), "category"),
    **dict.fromkeys(("input_tokens", "output_tokens", "attempt", "cell", "max_tokens"), "Int64"),
    **dict.fromkeys(("cost", "latency_ms", "ttft_ms", "temperature"), "Float64"),
    **dict.fromkeys(_BOOL, "boolean"),
}

# Append-only. Statements, not scripts: sqlite3's executescript() would commit
# the migration transaction half-way.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            kind TEXT NOT NULL,
            group_id TEXT,
            requested_model TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            status TEXT NOT NULL,
            error_type TEXT,
            error TEXT,
            finish_reason TEXT,
            prompt TEXT NOT NULL,
            system TEXT,
            response TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            latency_ms REAL,
            ttft_ms REAL,
            attempt INTEGER NOT NULL DEFAULT 1,
            cached INTEGER NOT NULL DEFAULT 0,
            route_reason TEXT,
            cell INTEGER,
            session_id TEXT,
            temperature REAL,
            max_tokens INTEGER
        )
        """,
        "CREATE INDEX runs_started_at ON runs (started_at)",
        "CREATE INDEX runs_cell ON runs (cell)",
        "CREATE INDEX runs_group_id ON runs (group_id)",
    ),
    ("ALTER TABLE runs ADD COLUMN step TEXT",),
]

_COLUMNS = ", ".join(FIELDS)
# OR REPLACE: adding a record again (same run_id) updates it instead of failing
# inside the background loop.
_INSERT = f"INSERT OR REPLACE INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # Records are made in UTC; a naive value most likely came from utcnow().
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Fixed width, so text order is time order (the started_at index relies on it).
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _to_row(record: RunRecord) -> list[Any]:
    row = [getattr(record, name) for name in FIELDS]
    for i, name in enumerate(FIELDS):
        if name in _DATETIME:
            row[i] = _iso(row[i])
        elif name in _REDACTED and row[i]:
            row[i] = redact(row[i])
    return row


def _from_row(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(FIELDS, row, strict=True))
    for name in _DATETIME:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _BOOL:
        values[name] = bool(values[name])
    return RunRecord(**values)


def _default_path() -> str:
    env = os.environ.get("MMO_RUNLOG")
    if env:
        return env
    import platformdirs

    return str(Path(platformdirs.user_data_dir("mmo_magic")) / "runs.sqlite3")


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    from .errors import ConfigError

    def version() -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    if version() > len(MIGRATIONS):
        raise ConfigError(
            f"The run log {path} was written by a newer mmo_magic "
            f"(schema {version()}, this version knows {len(MIGRATIONS)}).",
            hint="Upgrade mmo_magic: pip install -U mmo_magic",
        )
    if version() == len(MIGRATIONS):
        return
    # IMMEDIATE takes the write lock now, so two kernels opening an old
    # database at once cannot both apply the same migration.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statements in MIGRATIONS[version() :]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class RunLog:
    """Every run record, persisted in SQLite as soon as it is added.

    ``path`` None uses ``$MMO_RUNLOG`` or ``runs.sqlite3`` in the user data
    directory; ``":memory:"`` keeps the log in memory only. Safe to use from
    several threads: records arrive from the event-loop thread while the
    notebook reads them on the main thread.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = _default_path() if path is None else os.fspath(path)
        in_memory = self.path == ":memory:"
        if not in_memory:
            self.path = str(Path(self.path).expanduser())
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, so add() is one INSERT that is on
        # disk when it returns; migrations manage their own transaction.
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10
        )
        try:
            if not in_memory:
                # WAL lets readers (another kernel, a DataFrame load) run beside
                # the writer; NORMAL skips an fsync per commit, safe with WAL.
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"RunLog({self.path!r})"

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: RunRecord) -> None:
        """Store ``record`` (its free text redacted). Re-adding a run_id replaces it."""
        row = _to_row(record)
        with self._lock:
            self._conn.execute(_INSERT, row)

    def _select(
        self,
        last: int | None,
        cell: int | None,
        group_id: str | None,
        session_id: str | None,
    ) -> list[tuple[Any, ...]]:
        where, params = [], []
        for column, value in (("cell", cell), ("group_id", group_id), ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if last is None:
            sql += " ORDER BY started_at, rowid"
        else:
            # Newest N, then flipped back to oldest first.
            sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
            params.append(max(last, 0))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        if last is not None:
            rows.reverse()
        return rows

    def records(
        self,
        *,
        last: int | None = None,
        cell: int | None = None,
        group_id: str | None = None,
        session_id: str | None = None,
    ) -> list[RunRecord]:
        """Matching records, oldest first; ``last`` keeps only the newest N."""
        return [_from_row(row) for row in self._select(last, cell, group_id, session_id)]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def to_dataframe(
        self,
        *,
        last: int | None = None,
        cell: int | None = None,
        group_id: str | None = None,
        session_id: str | None = None,
    ) -> pd.DataFrame:
        """Matching records as a DataFrame with typed, nullable columns (same when empty)."""
        import pandas as pd

        rows = self._select(last, cell, group_id, session_id)
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) or [()] * len(FIELDS)
        data: dict[str, Any] = {}
        for name, values in zip(FIELDS, columns, strict=True):
            if name in _DATETIME:
                # Pinned to microseconds: what we store, and pandas picks
                # another unit for an empty column.
                data[name] = pd.to_datetime(list(values), utc=True, format="ISO8601").as_unit("us")
            elif _DTYPES[name] == "category":
                # Via "str" so the categories have one dtype even when the column
                # is empty or all missing (else float64 or object), and the same
                # one pandas reads back from Parquet.
                data[name] = pd.Series(list(values), dtype="str").astype("category")
            else:
                data[name] = pd.Series(list(values), dtype=_DTYPES[name])
        return pd.DataFrame(data, columns=list(FIELDS))

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write every record to ``path`` as csv, parquet or jsonl (from the suffix by default)."""
        from .errors import ConfigError

        target = Path(path).expanduser()
        fmt = (format or target.suffix).lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(fmt, fmt)
        if fmt == "jsonl":
            with target.open("w", encoding="utf-8") as out:
                for record in self.records():
                    out.write(json.dumps(_json_dict(record), ensure_ascii=False) + "\n")
        elif fmt == "csv":
            frame = self.to_dataframe()
            for name in _DATETIME:
                frame[name] = frame[name].map(
                    lambda t: t.isoformat(timespec="microseconds"), na_action="ignore"
                )
            frame.to_csv(target, index=False)
        elif fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "Parquet export needs pyarrow.",
                    hint="pip install pyarrow (or mmo_magic[parquet]).",
                ) from None
            self.to_dataframe().to_parquet(target, index=False)
        else:
            raise ConfigError(
                f"Cannot export the run log as {fmt!r}: supported formats are "
                "csv, parquet and jsonl.",
                hint="Give the path a .csv, .parquet or .jsonl suffix, or pass format=.",
            )
        return target

    def clear(self) -> None:
        """Delete every record."""
        with self._lock:
            self._conn.execute("DELETE FROM runs")

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        with self._lock:
            self._conn.close()


def _json_dict(record: RunRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in FIELDS}
    for name in _DATETIME:
        values[name] = _iso(values[name])
    return values
