"""RunLog: persistence, migrations, typed DataFrames, exports, and no key leaks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mmo_magic.core.errors import ConfigError
from mmo_magic.storage import migrations, runlog
from mmo_magic.storage.runlog import FIELDS, MIGRATIONS, RunLog, RunRecord
from mmo_magic.storage.sqlite import open_database

CANARY = "sk-canary-0123456789abcdef"
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def make(n: int = 0, **kw: object) -> RunRecord:
    values: dict[str, object] = {
        "requested_model": "auto",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "status": "ok",
        "prompt": f"prompt {n}",
        "response": f"answer {n}",
        "started_at": T0 + timedelta(seconds=n),
        "finished_at": T0 + timedelta(seconds=n, milliseconds=250),
        "input_tokens": 10 + n,
        "output_tokens": 20 + n,
        "cost": 0.001 * (n + 1),
        "latency_ms": 250.0,
        "ttft_ms": 40.5,
    }
    values.update(kw)
    return RunRecord(**values)  # type: ignore[arg-type]


def sample() -> list[RunRecord]:
    """A few records covering the awkward values: unpriced, failed, cached, text with commas."""
    records = [
        make(0),
        make(1, cost=None, model="local-llama", provider="local", tokens_estimated=True),
        make(
            2,
            status="error",
            error_type="ProviderError",
            error='429 rate limited, "retry later"\nline two',
            response=None,
            output_tokens=None,
            cost=None,
            finished_at=None,
            attempt=2,
            group_id="g1",
            cell=7,
            session_id="s1",
            temperature=0.3,
            max_tokens=256,
        ),
        make(3, cached=True, cost=0.0, group_id="g1", cell=7, kind="race"),
    ]
    for n, record in enumerate(records):  # fixed ids so two calls give equal records
        record.run_id = f"{n:032x}"
    return records


@pytest.fixture
def log(tmp_path: Path) -> Iterator[RunLog]:
    with RunLog(tmp_path / "runs.sqlite3") as opened:
        yield opened


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


# --- records -------------------------------------------------------------


def test_record_defaults() -> None:
    a = RunRecord(requested_model="auto", status="ok", prompt="hi")
    b = RunRecord(requested_model="auto", status="ok", prompt="hi")
    assert a.run_id != b.run_id and len(a.run_id) == 32
    assert a.started_at.tzinfo is UTC
    assert a.kind == "complete" and a.attempt == 1
    assert a.cost is None and a.cached is False and a.tokens_estimated is False


def test_add_and_records_round_trip(log: RunLog) -> None:
    records = sample()
    for record in reversed(records):  # insertion order must not matter
        log.add(record)
    assert len(log) == 4
    assert log.records() == records  # oldest first, every field intact, datetimes aware


def test_filters_and_last(log: RunLog) -> None:
    for record in sample():
        log.add(record)
    assert [r.prompt for r in log.records(last=2)] == ["prompt 2", "prompt 3"]
    assert log.records(last=0) == []
    assert [r.prompt for r in log.records(cell=7)] == ["prompt 2", "prompt 3"]
    assert [r.prompt for r in log.records(group_id="g1", session_id="s1")] == ["prompt 2"]
    assert [r.prompt for r in log.records(cell=7, last=1)] == ["prompt 3"]
    assert log.records(group_id="nope") == []


def test_readding_a_run_id_replaces_it(log: RunLog) -> None:
    record = make(0, status="error")
    log.add(record)
    record.status = "ok"
    log.add(record)
    assert [r.status for r in log.records()] == ["ok"]


def test_naive_datetime_is_taken_as_utc(log: RunLog) -> None:
    log.add(make(0, started_at=datetime(2025, 1, 1, 9, 30)))
    assert log.records()[0].started_at == datetime(2025, 1, 1, 9, 30, tzinfo=UTC)


def test_clear_and_memory_log() -> None:
    log = RunLog(":memory:")
    assert log.path == ":memory:"
    log.add(make(0))
    assert len(log) == 1
    log.clear()
    assert len(log) == 0 and log.records() == []
    log.close()
    log.close()  # idempotent


# --- paths and persistence ----------------------------------------------------


def test_default_path_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("MMO_RUNLOG", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    with RunLog() as log:
        assert Path(log.path) == tmp_path / "data" / "mmo_magic" / "runs.sqlite3"
        assert Path(log.path).exists()

    monkeypatch.setenv("MMO_RUNLOG", str(tmp_path / "elsewhere" / "log.db"))
    with RunLog() as log:
        assert Path(log.path) == tmp_path / "elsewhere" / "log.db"

    monkeypatch.setenv("MMO_RUNLOG", ":memory:")
    with RunLog() as log:
        assert log.path == ":memory:"


def test_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with RunLog(path) as log:
        for record in sample():
            log.add(record)
    with RunLog(str(path)) as again:
        assert again.records() == sample()


def prompts_after_child(code: str, path: Path) -> list[str]:
    """Run ``code`` in a new interpreter (given the log's path), then read the log it left."""
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)
    with RunLog(path) as log:
        return [r.prompt for r in log.records()]


def test_add_reaches_disk_without_flush_or_close(tmp_path: Path) -> None:
    """The writer thread commits a record on its own: a kernel that dies later keeps it.

    The child watches the file through a second connection (as another kernel
    would) and dies without closing as soon as the record is there.
    """
    path = tmp_path / "runs.sqlite3"
    code = (
        "import os, sqlite3, sys, time\n"
        "from mmo_magic.storage.runlog import RunLog, RunRecord\n"
        "log = RunLog(sys.argv[1])\n"
        "log.add(RunRecord(requested_model='auto', status='ok', prompt='crash'))\n"
        "assert 'pandas' not in sys.modules\n"  # recording never loads pandas
        "watcher = sqlite3.connect(sys.argv[1])\n"
        "deadline = time.monotonic() + 30\n"
        "while not watcher.execute('SELECT COUNT(*) FROM runs').fetchone()[0]:\n"
        "    assert time.monotonic() < deadline, 'the record never reached the file'\n"
        "    time.sleep(0.01)\n"
        "os._exit(0)\n"
    )
    assert prompts_after_child(code, path) == ["crash"]


def test_queued_records_are_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    code = (
        "import sys\n"
        "from mmo_magic.storage.runlog import RunLog, RunRecord\n"
        "log = RunLog(sys.argv[1])\n"
        "for i in range(2000):\n"
        "    log.add(RunRecord(requested_model='m', status='ok', prompt=str(i)))\n"
    )
    assert prompts_after_child(code, path) == [str(i) for i in range(2000)]


def test_file_database_uses_wal(log: RunLog) -> None:
    with sqlite3.connect(log.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_adds(log: RunLog) -> None:
    threads, per_thread = 8, 50
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                log.add(make(i, session_id=f"t{t}"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(w.is_alive() for w in workers):
        log.to_dataframe(last=5)  # reads from the main thread while writers run
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(log) == threads * per_thread
    assert len(log.records(session_id="t3")) == per_thread


# --- migrations ---------------------------------------------------------------


def test_schema_matches_record_fields(log: RunLog) -> None:
    """A new RunRecord field needs a migration adding its column."""
    with sqlite3.connect(log.path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(runs)")}
    assert columns == list(FIELDS)
    assert {"runs_started_at", "runs_cell", "runs_group_id"} <= indexes
    assert user_version(Path(log.path)) == len(MIGRATIONS)


def test_version_0_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    assert user_version(path) == 0
    with RunLog(path) as log:
        log.add(make(0))
        assert len(log) == 1
    assert user_version(path) == len(MIGRATIONS)


def test_v1_database_gets_new_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as conn:  # a log written by the first release
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (run_id, started_at, kind, requested_model, status, prompt)"
            " VALUES ('r1', '2026-01-01T00:00:00.000000+00:00', 'complete', 'm', 'ok', 'hi')"
        )
        conn.execute("PRAGMA user_version = 1")
    with RunLog(path) as log:
        (old,) = log.records()
        assert (old.run_id, old.prompt, old.step) == ("r1", "hi", None)
    assert user_version(path) == len(MIGRATIONS)

    added = ("ALTER TABLE runs ADD COLUMN note TEXT", "CREATE INDEX runs_note ON runs (note)")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, added])
    with RunLog(path) as log:
        assert len(log) == 1
    assert user_version(path) == len(MIGRATIONS) + 1
    with sqlite3.connect(path) as conn:
        assert "note" in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def test_v2_database_gains_the_tool_calls_column(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as conn:  # a log from before tool calling
        for statements in MIGRATIONS[:2]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (run_id, started_at, kind, requested_model, status, prompt, step)"
            " VALUES ('r1', '2026-01-01T00:00:00.000000+00:00', 'complete', 'm', 'ok', 'hi', 's')"
        )
        conn.execute("PRAGMA user_version = 2")
    calls = '[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]'
    with RunLog(path) as log:
        log.add(RunRecord(run_id="r2", requested_model="m", status="ok", prompt="x",
                          tool_calls=calls))  # fmt: skip
        old, new = log.records()
        assert (old.step, old.tool_calls) == ("s", None)
        assert new.tool_calls == calls
        frame = log.to_dataframe()
    assert user_version(path) == len(MIGRATIONS)
    assert str(frame["tool_calls"].dtype) == "string"
    assert frame["tool_calls"].isna().tolist() == [True, False]


def test_tool_call_arguments_are_redacted(tmp_path: Path) -> None:
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    calls = (
        f'[{{"id": "c", "type": "function", "function": {{"name": "f", "arguments": "{key}"}}}}]'
    )
    with RunLog(tmp_path / "r.sqlite3") as log:
        log.add(RunRecord(requested_model="m", status="ok", prompt="x", tool_calls=calls))
        (record,) = log.records()
    assert record.tool_calls is not None and key not in record.tool_calls
    assert '"name": "f"' in record.tool_calls


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v1.sqlite3"
    with RunLog(path) as log:
        log.add(make(0))
    broken = ("ALTER TABLE runs ADD COLUMN half_done TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setenv("MMO_RUNLOG_FALLBACK", str(tmp_path / "fallback"))
    # The calls go on (records to a fallback file); the half-done migration is undone.
    with pytest.warns(runlog.RunLogWarning, match="cannot use the run log .*syntax error"):
        RunLog(path).close()
    assert user_version(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as conn:
        assert "half_done" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def test_newer_database_asks_for_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(ConfigError, match="Upgrade mmo_magic"):
        RunLog(path)


# --- DataFrame ----------------------------------------------------------------


def assert_typed(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(FIELDS)
    for name in ("started_at", "finished_at"):
        assert df[name].dtype.kind == "M" and str(df[name].dt.tz) == "UTC"
    for name in ("input_tokens", "output_tokens", "attempt", "cell", "max_tokens"):
        assert df[name].dtype == "Int64", name
    for name in ("cost", "latency_ms", "ttft_ms", "temperature"):
        assert df[name].dtype == "Float64", name
    for name in ("tokens_estimated", "cached"):
        assert df[name].dtype == "boolean", name
    for name in ("kind", "requested_model", "model", "provider", "status", "error_type"):
        assert isinstance(df[name].dtype, pd.CategoricalDtype), name
    for name in ("run_id", "prompt", "system", "response", "error", "session_id"):
        assert isinstance(df[name].dtype, pd.StringDtype), name


def test_dataframe_types_and_values(log: RunLog) -> None:
    records = sample()
    for record in records:
        log.add(record)
    df = log.to_dataframe()
    assert_typed(df)
    assert len(df) == 4
    assert df["started_at"].iloc[0] == pd.Timestamp(T0)
    assert pd.isna(df["finished_at"].iloc[2])
    # Unpriced stays missing; a free (cached) call stays 0.
    assert df["cost"].isna().tolist() == [False, True, True, False]
    assert df["cost"].iloc[3] == 0.0
    assert df["output_tokens"].isna().tolist() == [False, False, True, False]
    assert df["cached"].tolist() == [False, False, False, True]
    assert pd.isna(df["response"].iloc[2]) and pd.isna(df["system"].iloc[0])
    assert df["run_id"].tolist() == [r.run_id for r in records]
    assert log.to_dataframe(cell=7, last=1)["prompt"].tolist() == ["prompt 3"]


def test_empty_dataframe_has_same_columns_and_dtypes(log: RunLog) -> None:
    empty = log.to_dataframe()
    assert_typed(empty)
    assert len(empty) == 0
    for record in sample():
        log.add(record)
    assert empty.dtypes.astype(str).tolist() == log.to_dataframe().dtypes.astype(str).tolist()


# --- export -------------------------------------------------------------------


def test_export_csv_round_trip(log: RunLog, tmp_path: Path) -> None:
    for record in sample():
        log.add(record)
    out = log.export(tmp_path / "runs.csv")
    assert out == tmp_path / "runs.csv"
    back = pd.read_csv(out, dtype={"run_id": str})
    assert list(back.columns) == list(FIELDS)
    assert back["started_at"].iloc[0] == "2025-03-01T12:00:00.123456+00:00"
    assert back["cost"].isna().tolist() == [False, True, True, False]
    assert back["cost"].iloc[0] == pytest.approx(0.001)
    assert back["error"].iloc[2] == '429 rate limited, "retry later"\nline two'
    assert back["run_id"].tolist() == [r.run_id for r in sample()]
    df = log.to_dataframe()
    for name in ("started_at", "finished_at"):
        parsed = pd.to_datetime(back[name], utc=True, format="ISO8601").dt.as_unit("us")
        pd.testing.assert_series_equal(parsed, df[name])


def test_export_parquet_round_trip(log: RunLog, tmp_path: Path) -> None:
    for record in sample():
        log.add(record)
    out = log.export(tmp_path / "runs.parquet")
    back = pd.read_parquet(out)
    # check_categorical=False: pyarrow reads an all-missing category column (finish_reason)
    # back with object categories; the values and every other dtype must match.
    pd.testing.assert_frame_equal(back, log.to_dataframe(), check_categorical=False)
    assert back["cost"].isna().tolist() == [False, True, True, False]


def test_export_jsonl_round_trip(log: RunLog, tmp_path: Path) -> None:
    for record in sample():
        log.add(record)
    for name in ("runs.jsonl", "runs.json"):
        out = log.export(tmp_path / name)
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 4
        first = json.loads(lines[0])
        assert list(first) == list(FIELDS)
        assert first["started_at"] == "2025-03-01T12:00:00.123456+00:00"
        back = pd.read_json(out, lines=True, dtype=False)
        assert back["cost"].isna().tolist() == [False, True, True, False]
        assert back["cached"].tolist() == [False, False, False, True]


def test_export_format_argument_overrides_suffix(log: RunLog, tmp_path: Path) -> None:
    log.add(make(0))
    out = log.export(tmp_path / "runs.txt", format="csv")
    assert pd.read_csv(out)["prompt"].tolist() == ["prompt 0"]


@pytest.mark.parametrize("name", ["runs.xlsx", "runs"])
def test_export_unknown_format(log: RunLog, tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"csv, parquet and jsonl") as info:
        log.export(tmp_path / name)
    assert "\n" not in str(info.value)


# --- keys never leak ----------------------------------------------------------


def test_canary_key_never_stored_or_exported(
    log: RunLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    log.add(
        make(
            0,
            status="error",
            error=f"401 Incorrect API key provided: {CANARY}",
            prompt=f"my key is {CANARY}",
            system=f"key={CANARY}",
            response=f"echo {CANARY}",
            route_reason=f"because {CANARY}",
        )
    )
    (record,) = log.records()
    assert CANARY not in repr(record)
    assert record.error == "401 Incorrect API key provided: ***"
    assert CANARY not in log.to_dataframe().to_csv()
    for db_file in Path(log.path).parent.glob("runs.sqlite3*"):  # WAL and main file
        assert CANARY.encode() not in db_file.read_bytes(), db_file
    for name in ("runs.csv", "runs.parquet", "runs.jsonl"):
        out = log.export(tmp_path / name)
        assert CANARY.encode() not in out.read_bytes(), name
    assert CANARY not in pd.read_parquet(tmp_path / "runs.parquet").to_csv()


def test_ids_are_unique_hex_and_differ_in_a_forked_child() -> None:
    from mmo_magic.storage.runlog import new_id

    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[:20] != ids[0][:20] and child not in ids


def test_one_writer_thread_serves_every_log() -> None:
    logs = [RunLog(":memory:") for _ in range(20)]
    for i, log in enumerate(logs):
        log.add(make(i))
    writers = [t for t in threading.enumerate() if t.name == "mmo-magic-runlog"]
    assert len(writers) == 1
    assert [len(log) for log in logs] == [1] * 20
    for log in logs:
        log.close()


@pytest.mark.parametrize(
    "damage",
    [b"this is not a database at all " * 200, b"SQLite format 3\x00" + b"\xff" * 3000],
    ids=["garbage", "truncated"],
)
def test_an_unreadable_run_log_is_set_aside_and_a_fresh_one_started(tmp_path, damage):
    path = tmp_path / "runs.sqlite3"
    path.write_bytes(damage)
    with pytest.warns(
        runlog.RunLogWarning, match=r"unreadable.*moved it to runs\.sqlite3\.corrupt-"
    ):
        log = RunLog(path)
    with log:
        log.add(RunRecord(requested_model="m", status="ok", prompt="after the damage"))
        assert [r.prompt for r in log.records()] == ["after the damage"]
    (aside,) = tmp_path.glob("runs.sqlite3.corrupt-*")
    assert aside.read_bytes() == damage  # kept for the user, not deleted


def test_a_locked_run_log_is_left_alone(tmp_path):
    path = tmp_path / "runs.sqlite3"
    RunLog(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-migration, say
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_database(
                str(path), lambda c: c.execute("BEGIN IMMEDIATE"), what="run log",
                category=runlog.RunLogWarning, timeout=0.1,
            )  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
