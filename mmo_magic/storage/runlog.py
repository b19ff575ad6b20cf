"""Run records: every attempt at every model, kept in SQLite.

Each try — ok, failed, cancelled, timed out, cached, a judge call or a
pipeline step — becomes one ``RunRecord``. ``RunLog`` writes it to SQLite,
so the log survives a kernel restart, and turns it into a typed pandas
DataFrame or a CSV / Parquet / JSONL file for analysis.

Writes are group commits: ``add`` queues the record, wakes the writer thread
(one for every log of the process) and returns a future that completes when
the transaction holding the record has committed. The orchestrator waits for
it before a call returns, so a returned call is a recorded call even if the
process is killed right after. The writer takes everything queued, commits it
in one transaction and starts again: while one commit runs, the records of
concurrent calls gather for the next, so a busy log batches and an idle one
commits at once. (It used to wait 20 ms for more before each commit: a killed
kernel lost about a third of its recent records. One commit per record, on
the caller's thread, capped the log at ~4,000 records/s.) Every read first
writes what is queued, and so do ``close`` and interpreter exit.

The writer survives anything a record can do: text is made storable on the
way in (lone surrogates replaced), a record SQLite still refuses is dropped
alone with a warning, and a log that cannot be written (a full disk, a
read-only file) keeps its records queued, warns once, and still reads.

The schema is versioned: ``MIGRATIONS`` is an append-only list of SQL
statement groups and ``PRAGMA user_version`` holds how many have run.
Never edit a migration that has shipped; add a new one.

pandas and pyarrow (a dependency) are imported only inside the methods that need them, so
recording calls from a plain script stays cheap.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import default_runlog_path
from ..core.ids import new_id
from ..core.redaction import redactor
from ..core.text import storable
from .sqlite import open_database

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIGRATIONS", "RunLog", "RunLogWarning", "RunRecord"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One attempt at one model. Unknown numbers are None, never 0."""

    run_id: str = field(default_factory=new_id)
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
    # The tools the model called, as JSON in OpenAI's form: [{"id", "type", "function":
    # {"name", "arguments"}}]; None when it called none.
    tool_calls: str | None = None


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
_DATETIME = ("started_at", "finished_at")
_BOOL = ("tokens_estimated", "cached")
# Free text a provider or user supplied: the only places a key could hide.
_REDACTED = ("error", "prompt", "system", "response", "route_reason", "tool_calls")

_TEXT = (
    "run_id", "group_id", "error", "prompt", "system", "response", "route_reason", "tool_calls",
)  # fmt: skip
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


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    if name in _DATETIME or _DTYPES[name] in ("string", "category"):
        return pa.string()
    return {"Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.int8()}[_DTYPES[name]]


@functools.cache
def _arrow_types() -> tuple[Any, dict[Any, Any]]:
    """(the arrow struct type of a row, arrow -> pandas dtypes), built on first use."""
    import pandas as pd
    import pyarrow as pa

    row = pa.struct([(name, _arrow_type(name)) for name in FIELDS])
    dtypes = {
        pa.string(): pd.StringDtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    return row, dtypes


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
    ("ALTER TABLE runs ADD COLUMN tool_calls TEXT",),
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
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Fixed width, so text order is time order (the started_at index relies on it).
    return value.isoformat(timespec="microseconds")


_CATEGORY_COLUMNS = tuple(name for name in FIELDS if _DTYPES.get(name) == "category")
_DATETIME_AT = tuple(FIELDS.index(name) for name in _DATETIME)
_REDACTED_AT = tuple(FIELDS.index(name) for name in _REDACTED)


def _to_row(record: RunRecord, scrub: Callable[[str], str] | None = None) -> list[Any]:
    scrub = scrub or redactor()
    row = [getattr(record, name) for name in FIELDS]
    for i in _DATETIME_AT:
        row[i] = _iso(row[i])
    for i, value in enumerate(row):
        if isinstance(value, str) and not value.isascii():
            row[i] = storable(value)
    for i in _REDACTED_AT:
        if row[i]:
            row[i] = scrub(row[i])
    return row


def _from_row(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(FIELDS, row, strict=True))
    for name in _DATETIME:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _BOOL:
        values[name] = bool(values[name])
    return RunRecord(**values)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    from ..core.errors import ConfigError

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


_Queued = tuple["RunRecord", "concurrent.futures.Future[None]"]


# The log cannot be written now (full, read-only, locked, closed), as opposed to one
# record it refuses.
_UNWRITABLE = (sqlite3.OperationalError, sqlite3.ProgrammingError)


def _settle(batch: list[_Queued]) -> None:
    for _, committed in batch:
        if not committed.done():
            committed.set_result(None)


class RunLogWarning(UserWarning):
    """The run log could not be used as it was (a broken file set aside, records kept queued)."""


def _prepare(conn: sqlite3.Connection, *, path: str, in_memory: bool) -> None:
    if not in_memory:
        # WAL lets readers (another kernel, a DataFrame load) run beside
        # the writer; NORMAL skips an fsync per commit, safe with WAL.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    _migrate(conn, path)


class RunLog:
    """Every run record, persisted in SQLite (batched, see the module docstring).

    ``path`` None uses ``$MMO_RUNLOG`` or ``runs.sqlite3`` in the user data
    directory; ``":memory:"`` keeps the log in memory only. Safe to use from
    several threads: records arrive from the event-loop thread while the
    notebook reads them on the main thread. Every read sees every record
    added before it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = default_runlog_path() if path is None else os.fspath(path)
        in_memory = self.path == ":memory:"
        if not in_memory:
            self.path = str(Path(self.path).expanduser())
        self._lock = threading.Lock()  # the connection; held while a batch is taken and written
        self._queue_lock = threading.Lock()  # _queued
        self._queued: list[_Queued] = []
        self._write_failed = False  # warned about it: warn again only after a write worked
        # Batches open their own transactions; migrations manage theirs.
        self._conn = open_database(
            self.path,
            functools.partial(_prepare, path=self.path, in_memory=in_memory),
            what="run log",
            category=RunLogWarning,
        )

    def __repr__(self) -> str:
        return f"RunLog({self.path!r})"

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: RunRecord) -> concurrent.futures.Future[None]:
        """Store ``record`` (its free text redacted). Re-adding a run_id replaces it.

        The future completes when the record is committed, or when writing failed
        (the record then stays queued for the next try, and a warning says why).
        """
        committed: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._queue_lock:
            self._queued.append((record, committed))
        _writer.wake(self)
        return committed

    def flush(self) -> None:
        """Write every queued record now (reads do this themselves)."""
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        # The caller holds self._lock, so a reader that flushes cannot miss a
        # batch the writer thread has taken but not yet committed.
        with self._queue_lock:
            batch, self._queued = self._queued, []
        if not batch:
            return
        scrub = redactor()
        try:
            self._insert([_to_row(record, scrub) for record, _ in batch])
        except _UNWRITABLE as exc:
            self._keep_queued(batch, exc)
            return
        except Exception:  # one record SQLite refuses must not take the others down
            for i, (record, _) in enumerate(batch):
                try:
                    self._insert([_to_row(record, scrub)])
                except _UNWRITABLE as exc:
                    self._keep_queued(batch[i:], exc)
                    _settle(batch[:i])
                    return
                except Exception as exc:
                    warnings.warn(
                        f"mmo_magic could not save run record {record.run_id} ({exc!r}); "
                        "the others are saved.",
                        RunLogWarning,
                        stacklevel=1,
                    )
        self._write_failed = False
        _settle(batch)

    def _keep_queued(self, batch: list[_Queued], exc: sqlite3.Error) -> None:
        """A full disk, a read-only or locked file, a closed log: keep the records queued."""
        with self._queue_lock:
            self._queued[:0] = batch
        self._warn_once(f"mmo_magic could not write the run log {self.path}: {exc}")
        _settle(batch)  # the callers go on; their records wait here

    def _insert(self, rows: list[list[Any]]) -> None:
        try:
            self._conn.execute("BEGIN")
            self._conn.executemany(_INSERT, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _warn_once(self, message: str) -> None:
        if not self._write_failed:
            self._write_failed = True
            warnings.warn(message, RunLogWarning, stacklevel=1)

    def _write_queued_safely(self) -> None:
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed, nothing left to write
            self.flush()

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
        self.flush()
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
        self.flush()
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
        import pyarrow as pa

        rows = self._select(last, cell, group_id, session_id)
        row_type, pandas_dtypes = _arrow_types()
        # Arrow turns the rows into typed columns in C: 100k records took
        # ~1.2 s as one pandas Series per column from Python lists, ~0.3 s so.
        table = pa.Table.from_struct_array(pa.array(rows, type=row_type))
        columns: dict[str, Any] = {}
        for name, column in zip(FIELDS, table.columns, strict=True):
            if name in _DATETIME:
                # Pinned to microseconds: what we store.
                column = column.cast(pa.timestamp("us", tz="UTC"))
            elif name in _BOOL:
                column = column.cast(pa.bool_())
            elif _DTYPES[name] == "category":
                column = column.dictionary_encode()
            columns[name] = column
        frame = pa.table(columns).to_pandas(types_mapper=pandas_dtypes.get)
        for name in _CATEGORY_COLUMNS:
            # Categories of pandas' "str" dtype even when the column is empty or all
            # missing (arrow gives object then), which is what Parquet reads back.
            categories = frame[name].cat.categories
            if categories.dtype != "str":
                frame[name] = frame[name].cat.set_categories(categories.astype("str"))
        return frame

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write every record to ``path`` as csv, parquet or jsonl (from the suffix by default)."""
        from ..core.errors import ConfigError

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
        self.flush()
        with self._lock:
            self._conn.execute("DELETE FROM runs")

    def close(self) -> None:
        """Write what is queued and close the database; calling it again does nothing."""
        self._write_queued_safely()
        with self._lock:
            self._conn.close()


class _Writer:
    """One daemon thread that writes the queue of every log with records waiting.

    Woken by ``add``, it writes each waiting log's queue in one transaction and
    goes round again while records keep arriving. At exit it writes what is left.
    """

    def __init__(self) -> None:
        self._waiting: set[RunLog] = set()
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.write_all)

    def wake(self, log: RunLog) -> None:
        with self._lock:
            self._waiting.add(log)
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost to a fork
                self._thread = threading.Thread(
                    target=self._run, name="mmo-magic-runlog", daemon=True
                )
                self._thread.start()
        self._woken.set()

    def _run(self) -> None:
        while True:
            self._woken.wait()
            self._woken.clear()
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


_writer = _Writer()


def _json_dict(record: RunRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in FIELDS}
    for name in _DATETIME:
        values[name] = _iso(values[name])
    return values
