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
way in (lone surrogates replaced), numbers that are not numbers become None,
and a record SQLite still refuses is dropped alone with a warning. A log that
cannot be written (a full disk, a read-only or locked file, a path that is a
folder) never stops a call and never waits long on a lock: its records go to a
spill file in another writable place (``storage.spill``), named in one
warning, and move back into the log once it takes writes, or when it is next
opened. A file damaged past the pages read at open is found by the first write
that fails (``PRAGMA quick_check``), set aside like one unreadable at open,
and a fresh file takes its place. Records wait in memory only when no place at
all can be written.

The schema is versioned (``storage.migrations``): an append-only list of SQL
statement groups, and ``PRAGMA user_version`` holds how many have run.

pandas and pyarrow (a dependency) are imported only inside the methods that need them, so
recording calls from a plain script stays cheap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import json
import math
import os
import sqlite3
import threading
import time
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
from .checkpoints import checkpoints, disable_autocheckpoint
from .migrations import MIGRATIONS, migrate
from .spill import Spill, damaged, fix_for, insert_rows, leftover_spills, remove_database
from .sqlite import open_database, set_aside
from .writer import RunLogWarning, Writer

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIGRATIONS", "RunLog", "RunLogWarning", "RunRecord", "client_label"]

# The gateway's client key (its name) on whose behalf calls are made: every RunRecord made
# in this context carries it (``RunRecord.client``). None outside the gateway.
client_label: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mmo_client", default=None
)


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
    # The prompt's images and documents, as JSON: [{"kind", "media_type", "size", "sha256"}]
    # (and "url" for one the provider fetched); never their bytes. None for text.
    parts: str | None = None
    # Reasoning models: tokens spent thinking (part of output_tokens), the thinking text a
    # provider returned (never in ``response``), and the first bytes of any kind.
    reasoning_tokens: int | None = None
    reasoning: str | None = None
    first_activity_ms: float | None = None
    # The gateway's client key (its name) the call was made for; None outside the gateway.
    client: str | None = field(default_factory=client_label.get)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
_DATETIME = ("started_at", "finished_at")
_BOOL = ("tokens_estimated", "cached")
# Free text a provider or user supplied: the only places a key could hide.
_REDACTED = (
    "error", "prompt", "system", "response", "route_reason", "tool_calls", "parts", "reasoning",
)  # fmt: skip

_TEXT = (
    "run_id", "group_id", "error", "prompt", "system", "response", "route_reason", "tool_calls",
    "parts", "reasoning",
)  # fmt: skip
_CATEGORY = (
    "kind", "requested_model", "model", "provider", "status", "error_type", "step", "client",
)  # fmt: skip
# DataFrame dtype of each non-datetime column. Repeated values (model names,
# statuses) are categories; everything else keeps missing values as <NA>.
_DTYPES: dict[str, str] = {
    **dict.fromkeys((*_TEXT, "session_id"), "string"),
    **dict.fromkeys((*_CATEGORY, "finish_reason"), "category"),
    **dict.fromkeys(
        ("input_tokens", "output_tokens", "attempt", "cell", "max_tokens", "reasoning_tokens"),
        "Int64",
    ),
    **dict.fromkeys(
        ("cost", "latency_ms", "ttft_ms", "temperature", "first_activity_ms"), "Float64"
    ),
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


_COLUMNS = ", ".join(FIELDS)


def _read_column(name: str) -> str:
    """The column as SELECT reads it: a number column gives NULL for anything not a number.

    Files written before values were checked may hold text ('x') or a float in an
    INTEGER column; read as they are, one such value broke every DataFrame of the log.
    """
    kind = _DTYPES.get(name)
    if kind == "Int64" or name in _BOOL:
        default = " ELSE 0" if name in _BOOL else " ELSE 1" if name == "attempt" else ""
        return f"CASE WHEN typeof({name}) = 'integer' THEN {name}{default} END AS {name}"
    if kind == "Float64":
        return f"CASE WHEN typeof({name}) IN ('real', 'integer') THEN {name} END AS {name}"
    return name


_READ_COLUMNS = ", ".join(_read_column(name) for name in FIELDS)
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
_ATTEMPT_AT = FIELDS.index("attempt")


_INT_AT = tuple(FIELDS.index(n) for n in FIELDS if _DTYPES.get(n) == "Int64")
_FLOAT_AT = tuple(FIELDS.index(n) for n in FIELDS if _DTYPES.get(n) == "Float64")
_INT64_MAX = 2**63 - 1


def _number(value: Any, whole: bool) -> Any:
    """``value`` if SQLite can store it in its column as the right kind of number, else None.

    The engine and clients check what providers report, but a record is made in
    many places: a string, a float in a count or an int past 64 bits stored here
    would break every later DataFrame of the log (or the write itself).
    """
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if whole:
        return value if isinstance(value, int) and -_INT64_MAX <= value <= _INT64_MAX else None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


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
    for i in _INT_AT:
        row[i] = _number(row[i], whole=True)
    for i in _FLOAT_AT:
        row[i] = _number(row[i], whole=False)
    if row[_ATTEMPT_AT] is None:
        row[_ATTEMPT_AT] = 1
    return row


def _from_row(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(FIELDS, row, strict=True))
    for name in _DATETIME:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _BOOL:
        values[name] = bool(values[name])
    return RunRecord(**values)


_Queued = tuple["RunRecord", "concurrent.futures.Future[None]"]


# The log cannot be written now (full, read-only, locked, closed), as opposed to one
# record it refuses.
_UNWRITABLE = (sqlite3.OperationalError, sqlite3.ProgrammingError)
# How long a write waits for another process's lock before the records go to a spill file.
_BUSY_TIMEOUT_S = 0.25
# How long opening waits for a lock (a migration in another kernel takes milliseconds).
_OPEN_TIMEOUT_S = 2.0
# After a failed write, the log is tried again after this long, doubling to the maximum;
# records go to the spill file meanwhile, so a call never waits on a lock twice running.
_RETRY_S, _MAX_RETRY_S = 1.0, 30.0


def _pages(rows: list[list[Any]]) -> int:
    """About how many pages committing ``rows`` writes: a row's table and index pages, and
    its text's overflow pages (for ``storage.checkpoints``; an over-estimate is harmless)."""
    text = sum(len(value) for row in rows for value in row if isinstance(value, str))
    return 5 * len(rows) + text // 4096


def _settle(batch: list[_Queued]) -> None:
    for _, committed in batch:
        if not committed.done():
            committed.set_result(None)


def _prepare(conn: sqlite3.Connection, *, path: str, in_memory: bool) -> None:
    if not in_memory:
        # WAL lets readers (another kernel, a DataFrame load) run beside
        # the writer; NORMAL skips an fsync per commit, safe with WAL.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        disable_autocheckpoint(conn)  # lone calls commit on the event loop: storage.checkpoints
    migrate(conn, path)


class RunLog:
    """Every run record, persisted in SQLite (batched, see the module docstring).

    ``path`` None uses ``$MMO_RUNLOG`` or ``runs.sqlite3`` in the user data
    directory; ``":memory:"`` keeps the log in memory only. Safe to use from
    several threads: records arrive from the event-loop thread while the
    notebook reads them on the main thread. Every read sees every record
    added before it.

    A log that cannot be opened or written never stops a call: its records go to
    a spill file elsewhere (``storage.spill``), named in one warning, and come back
    into the log once it takes writes, or when it is next opened.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = default_runlog_path() if path is None else os.fspath(path)
        self._in_memory = self.path == ":memory:"
        if not self._in_memory:
            self.path = str(Path(self.path).expanduser())
        self._absolute = str(Path(self.path).absolute())  # for checkpoints: the cwd may change
        self._lock = threading.Lock()  # the connections; held while a batch is taken and written
        self._queue_lock = threading.Lock()  # _queued
        self._queued: list[_Queued] = []
        self._warned: set[str] = set()  # what was warned about: again only after a write worked
        self._closed = False
        self._spill: Spill | None = None
        self._retry_at = 0.0  # monotonic time before which writes skip the log for the spill
        self._retry_s = _RETRY_S
        self._last_error: BaseException | None = None  # why the log could not be written
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            # Not fatal: the calls go on, their records go to a spill file (see _spill_rows),
            # and what the file holds can still be read if it can be opened read-only.
            self._unusable(exc, opening=True)
            self._conn = self._open_read_only()
        else:
            if not self._in_memory:
                self._take_back_leftovers()

    def _open(self) -> sqlite3.Connection:
        conn = open_database(
            self.path,
            functools.partial(_prepare, path=self.path, in_memory=self._in_memory),
            what="run log",
            category=RunLogWarning,
            timeout=_OPEN_TIMEOUT_S,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _open_read_only(self) -> sqlite3.Connection | None:
        if self._in_memory or not Path(self.path).is_file():
            return None
        # immutable: on a read-only disk a WAL file cannot get the -shm file a reader needs.
        for mode in ("mode=ro", "immutable=1"):
            try:
                uri = f"{Path(self.path).absolute().as_uri()}?{mode}"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                conn.execute("SELECT COUNT(*) FROM runs").fetchone()
            except (sqlite3.Error, OSError, ValueError):
                continue
            return conn
        return None

    def __repr__(self) -> str:
        return f"RunLog({self.path!r})"

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: RunRecord) -> concurrent.futures.Future[None]:
        """Store ``record`` (its free text redacted). Re-adding a run_id replaces it.

        The future completes when the record is committed (to the log, or to a spill
        file while the log cannot take it), or when nothing could be written (the
        record then stays queued for the next try, and a warning says why).
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
        if self._closed:
            self._keep_queued(batch, sqlite3.ProgrammingError("the run log is closed"))
            return
        scrub = redactor()
        rows = [_to_row(record, scrub) for record, _ in batch]
        if self._conn is not None and time.monotonic() >= self._retry_at:
            try:
                self._write_to_log(batch, rows)
            except (sqlite3.Error, OSError) as exc:  # full, read-only, locked, or worse
                self._unusable(exc)
            else:
                return
        self._spill_rows(batch, rows)

    def _write_to_log(self, batch: list[_Queued], rows: list[list[Any]]) -> None:
        """Commit ``rows`` to the log file; raise _UNWRITABLE when it cannot take them now."""
        assert self._conn is not None
        try:
            insert_rows(self._conn, _INSERT, rows)
        except _UNWRITABLE:
            raise
        except sqlite3.DatabaseError as exc:
            if not damaged(self._conn):
                self._insert_one_by_one(batch, rows)
                return
            # Damaged past the pages read at open ("database disk image is malformed"):
            # every later write would fail. Set it aside as a file unreadable at open is.
            self._conn.close()
            self._conn = None
            set_aside(self.path, exc, what="run log", category=RunLogWarning)
            self._conn = self._open()
            insert_rows(self._conn, _INSERT, rows)
        except Exception:  # one record SQLite refuses must not take the others down
            self._insert_one_by_one(batch, rows)
            return
        self._committed(batch, rows)

    def _committed(self, batch: list[_Queued], rows: list[list[Any]]) -> None:
        """``rows`` are in the log: count their pages toward a checkpoint, end any outage,
        and tell their callers."""
        if not self._in_memory:
            checkpoints.committed(self._absolute, _pages(rows))
        self._recovered()
        _settle(batch)

    def _insert_one_by_one(self, batch: list[_Queued], rows: list[list[Any]]) -> None:
        assert self._conn is not None
        for (record, _), row in zip(batch, rows, strict=True):
            try:
                insert_rows(self._conn, _INSERT, [row])
            except _UNWRITABLE:
                raise
            except Exception as exc:
                warnings.warn(
                    f"mmo_magic could not save run record {record.run_id} ({exc!r}); "
                    "the others are saved.",
                    RunLogWarning,
                    stacklevel=1,
                )
        self._committed(batch, rows)

    def _recovered(self) -> None:
        """A write to the log worked: move spilled records back, and warn anew next time."""
        self._warned.clear()
        self._retry_s = _RETRY_S
        spill = self._spill
        if spill is None or self._conn is None:
            return
        try:
            if spill.rows:
                moved = spill.conn.execute(f"SELECT {_READ_COLUMNS} FROM runs").fetchall()
                insert_rows(self._conn, _INSERT, [list(row) for row in moved])
        except sqlite3.Error:
            return  # stays in the spill; the next open takes it back
        self._spill = None
        spill.close(remove=True)

    def _unusable(self, exc: BaseException, *, opening: bool = False) -> None:
        """The log cannot be opened or written now: skip it for a while (spilling), warn once."""
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, _MAX_RETRY_S)
        self._last_error = exc
        if opening and not self._in_memory:
            # One warning says it all: the log, why, the fix, and where records go instead.
            self._open_spill()
            where = (
                f"in {self._spill.path}, merged into the run log the next time it opens"
                if self._spill is not None
                else "in memory only: no fallback location could be written either"
            )
            self._warn_once(
                "spill",
                f"mmo_magic cannot use the run log {self.path!r} ({exc}): {fix_for(exc)}. "
                f"This session's records are kept {where}.",
            )

    def _spill_rows(self, batch: list[_Queued], rows: list[list[Any]]) -> None:
        """Commit ``rows`` to the spill file (opened on first need), else keep them queued."""
        if self._in_memory:
            self._keep_queued(batch, self._last_error or OSError("unknown"))
            return
        reason = self._last_error
        if self._spill is None:
            refused = self._open_spill()
            if self._spill is None:
                self._keep_queued(batch, OSError("; ".join(refused)), nowhere=True)
                return
        try:
            insert_rows(self._spill.conn, _INSERT, rows)
        except sqlite3.Error as exc:
            self._keep_queued(batch, exc, nowhere=True)
            return
        self._spill.rows += len(rows)
        why = f" ({reason}: {fix_for(reason)})" if reason is not None else ""
        self._warn_once(
            "spill",
            f"mmo_magic could not write the run log {self.path}{why}; its records are kept "
            f"in {self._spill.path} and go back into the log once it can be written "
            "(or when it is next opened).",
        )
        _settle(batch)

    def _open_spill(self) -> list[str]:
        """Open a spill file unless one is open; return why each place refused."""
        if self._spill is not None:
            return []
        prepare = functools.partial(_prepare, path=self.path, in_memory=False)
        self._spill, refused = Spill.open_for(self.path, prepare)
        return refused

    def _keep_queued(self, batch: list[_Queued], exc: BaseException, nowhere: bool = False) -> None:
        """Nothing could be written (closed log, or every location failed): keep them queued."""
        with self._queue_lock:
            self._queued[:0] = batch
        where = " nor to any fallback location" if nowhere else ""
        self._warn_once(
            "queued",
            f"mmo_magic could not write the run log {self.path}{where}: {exc}. "
            f"Records stay in memory until it can ({fix_for(exc)}); a crash now would lose them.",
        )
        _settle(batch)  # the callers go on; their records wait here

    def _take_back_leftovers(self) -> None:
        """Records other sessions spilled for this log: into the log, and the files deleted."""
        assert self._conn is not None
        for path in leftover_spills(self.path):
            try:
                source = sqlite3.connect(path, isolation_level=None, timeout=1.0)
                try:
                    rows = source.execute(f"SELECT {_READ_COLUMNS} FROM runs").fetchall()
                finally:
                    source.close()
                insert_rows(self._conn, _INSERT, [list(row) for row in rows])
            except sqlite3.Error as exc:
                warnings.warn(
                    f"mmo_magic could not take back the spilled run records in {path} ({exc}); "
                    "the file is left where it is.",
                    RunLogWarning,
                    stacklevel=3,
                )
                continue
            remove_database(path)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
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
        _check_filters(last, cell, group_id, session_id)
        where, params = [], []
        for column, value in (("cell", cell), ("group_id", group_id), ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_READ_COLUMNS} FROM runs"
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
            rows = self._query(sql, params)
        if last is not None:
            rows.reverse()
        return rows

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``sql`` on the log, and on the spill file when records wait there (merged)."""
        rows: list[tuple[Any, ...]] = []
        if self._conn is not None:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # locked for reading: show what we can
                if self._spill is None:
                    raise
                self._warn_once("read", f"mmo_magic could not read the run log {self.path}: {exc}")
        if self._spill is None or not self._spill.rows:
            return rows
        spilled = self._spill.conn.execute(sql, params).fetchall()
        newest_first = " DESC" in sql
        by_id = {row[0]: row for row in rows}
        by_id.update((row[0], row) for row in spilled)  # the spilled copy is the later one
        merged = sorted(by_id.values(), key=lambda row: row[1] or "", reverse=newest_first)
        limit = params[-1] if newest_first else None
        return merged[:limit] if isinstance(limit, int) else merged

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
            if (self._spill is None or not self._spill.rows) and self._conn is not None:
                return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
            return len(self._query("SELECT run_id, started_at FROM runs", ()))  # both, merged

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

        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ConfigError(f"export needs a file path, got {path!r}.")
        if format is not None and not isinstance(format, str):
            raise ConfigError(f"format must be 'csv', 'parquet' or 'jsonl', got {format!r}.")
        target = Path(path).expanduser()
        fmt = (format or target.suffix).lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(fmt, fmt)
        if fmt not in ("jsonl", "csv", "parquet"):
            raise ConfigError(
                f"Cannot export the run log as {fmt!r}: supported formats are "
                "csv, parquet and jsonl.",
                hint="Give the path a .csv, .parquet or .jsonl suffix, or pass format=.",
            )
        if not target.parent.is_dir():
            raise ConfigError(
                f"Cannot export the run log to {target}: the directory {target.parent} "
                "does not exist.",
                hint="Create it first (Path(...).mkdir(parents=True)), or fix the path.",
            )
        try:
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
            else:
                self.to_dataframe().to_parquet(target, index=False)
        except OSError as exc:  # a directory at that path, no permission, a full disk
            raise ConfigError(
                f"Cannot export the run log to {target}: {exc.strerror or exc}.",
                hint="Choose a writable file path.",
            ) from exc
        return target

    def clear(self) -> None:
        """Delete every record."""
        self.flush()
        with self._lock:
            for conn in (self._conn, self._spill.conn if self._spill else None):
                if conn is not None:
                    conn.execute("DELETE FROM runs")

    def close(self) -> None:
        """Write what is queued and close the database; calling it again does nothing."""
        self._write_queued_safely()
        with self._lock:
            self._closed = True
            if self._spill is not None and self._conn is not None:
                self._retry_at = 0.0
                self._recovered()  # a last chance to move spilled records back
            if self._spill is not None:
                # Taken back when the log is next opened (an empty one is just removed).
                self._spill.close(remove=self._spill.rows == 0)
                self._spill = None
            if self._conn is not None:
                self._conn.close()


_writer = Writer()


def _check_filters(last: object, cell: object, group_id: object, session_id: object) -> None:
    """The arguments of ``records``/``to_dataframe``: one ConfigError line for a wrong one."""
    from ..core.errors import ConfigError

    for name, value in (("last", last), ("cell", cell)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(
                f"{name} must be a whole number, got {value!r}.",
                hint="last=10 keeps the newest 10 records; cell=3 those of cell [3].",
            )
    if isinstance(last, int) and last < 0:
        raise ConfigError(f"last must be >= 0, got {last}.", hint="last=10 keeps the newest 10.")
    for name, value in (("group_id", group_id), ("session_id", session_id)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string id, got {value!r}.")


def _json_dict(record: RunRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in FIELDS}
    for name in _DATETIME:
        values[name] = _iso(values[name])
    return values
