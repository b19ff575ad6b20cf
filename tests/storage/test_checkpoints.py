"""WAL checkpoints: never on the thread that commits (the event loop), always on their own.

"In the database file" is read with ``immutable=1``, which ignores the WAL: a row is
there only once a checkpoint has copied it back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import eventually

from mmo_magic.storage import checkpoints as checkpoints_module
from mmo_magic.storage.checkpoints import Checkpoints
from mmo_magic.storage.keys import SQLiteKeyStore, period_start
from mmo_magic.storage.runlog import RunLog, RunRecord

BIG = "x" * 100_000  # 25 pages a record: 60 records are past SQLite's 1,000-page autocheckpoint


def in_database_file(path: Path, table: str) -> int:
    """Rows of ``table`` in the database file itself, the WAL ignored."""
    conn = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # no such table: not even the schema was copied back
        return 0
    finally:
        conn.close()


def record(n: int, response: str = "an answer") -> RunRecord:
    return RunRecord(requested_model="m", model="m", provider="openai", status="ok",
                     prompt=f"prompt {n}", response=response)  # fmt: skip


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Checkpoints:
    """The module's checkpointer, swapped for one whose page limit is the test's."""
    fresh = Checkpoints(pages=10**9)
    for module in ("mmo_magic.storage.runlog", "mmo_magic.storage.keys"):  # their imported name
        monkeypatch.setattr(f"{module}.checkpoints", fresh)
    return fresh


def test_commits_on_the_callers_thread_never_checkpoint(
    tmp_path: Path, counted: Checkpoints
) -> None:
    path = tmp_path / "runs.sqlite3"
    log = RunLog(path)
    for n in range(60):  # each one committed here, as a lone call's record is on the loop
        log.add(record(n, BIG))
        log.flush()
    assert len(log) == 60
    assert in_database_file(path, "runs") == 0  # all 1,500 pages still in the WAL
    log.close()
    assert in_database_file(path, "runs") == 60  # the last connection's close copied them


def test_every_n_pages_a_thread_of_its_own_checkpoints(
    tmp_path: Path, counted: Checkpoints
) -> None:
    counted.pages = 50  # a record is about 5 pages: every 10 records
    path = tmp_path / "runs.sqlite3"
    log = RunLog(path)
    for n in range(25):
        log.add(record(n))
        log.flush()
    # Two checkpoints were due (at 10 and 20 commits): at least 20 rows reach the file.
    eventually(lambda: in_database_file(path, "runs") >= 20, "20 records in the database file")
    assert counted._thread is not None and counted._thread.name == "mmo-magic-checkpoints"
    assert len(log) == 25
    log.close()


def test_a_group_commit_counts_each_of_its_records(tmp_path: Path, counted: Checkpoints) -> None:
    """Under load the writer commits records in groups: the WAL is kept to the page limit,
    not to a number of commits (200 groups of 50 records would be 50,000 pages)."""
    counted.pages = 100  # 20 records
    path = tmp_path / "runs.sqlite3"
    log = RunLog(path)
    with log._lock:  # the writer thread waits: whoever writes next takes all 30 at once
        for n in range(30):
            log.add(record(n))
    log.flush()
    eventually(lambda: in_database_file(path, "runs") == 30, "the group in the database file")
    log.close()


def test_the_key_stores_holds_and_charges_are_checkpointed_off_its_thread(
    tmp_path: Path, counted: Checkpoints
) -> None:
    path = tmp_path / "keys.sqlite3"
    store = SQLiteKeyStore(str(path))
    store.add("team", budget_usd=100.0, budget_period="day")
    since = period_start("day")
    for _ in range(30):  # a hold and a settle (two commits) a request
        hold = store.hold("team", 0.01, since, 100.0)
        assert hold is not None
        store.settle("team", [("gpt-4o-mini", 0.001, 30)], [hold])
    assert in_database_file(path, "key_spend") == 0
    counted.pages = 20  # 4 pages a write
    store.release("no-such-hold")  # one more commit: the count passes the new limit
    eventually(lambda: in_database_file(path, "key_spend") == 30, "30 charges in the file")
    assert store.spent("team", since) == pytest.approx(0.03)
    store.close()


def test_a_checkpoint_of_a_file_gone_creates_nothing(tmp_path: Path) -> None:
    gone = tmp_path / "removed.sqlite3"
    checkpoints_module.checkpoint(str(gone))
    assert not gone.exists()
