"""The run log under broken disks (issue 27): damage found late, a log unusable at start-up,
a full disk then a crash, a lock held by another process, bad numbers already stored."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from helpers import fill, remount, tiny_filesystem

import mmo_magic as mmo
from mmo_magic.storage.runlog import RunLog, RunLogWarning, RunRecord

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spill files go under the test's own folder, not the user's cache."""
    where = tmp_path / "fallback"
    monkeypatch.setenv("MMO_RUNLOG_FALLBACK", str(where))
    return where


def record(prompt: str) -> RunRecord:
    return RunRecord(requested_model="m", status="ok", prompt=prompt, response="r")


def runlog_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RunLogWarning)]


# -- defect 2: damage past the first pages -------------------------------------------------------


def test_damage_past_the_first_pages_is_set_aside_at_the_first_failed_write(tmp_path):
    path = tmp_path / "runs.sqlite3"
    with RunLog(path) as log:
        for i in range(300):
            log.add(record(f"old {i} " + "x" * 200))
        log.flush()
    with path.open("r+b") as f:  # 4 KB of noise at 20 KB: the header and schema still read
        f.seek(20_000)
        f.write(random.Random(27).randbytes(4096))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = RunLog(path)  # opens: the damage is past what opening reads
        with log:
            for i in range(5):
                log.add(record(f"new {i}")).result(10)
            prompts = [r.prompt for r in log.records()]
            frame = log.to_dataframe()
    messages = runlog_warnings(caught)
    assert len(messages) == 1, messages
    assert "moved it to runs.sqlite3.corrupt-" in messages[0]
    assert "others are saved" not in messages[0]
    assert prompts == [f"new {i}" for i in range(5)] and len(frame) == 5
    assert len(list(tmp_path.glob("runs.sqlite3.corrupt-*"))) == 1


# -- defect 4: a run log unusable at start-up ----------------------------------------------------


def _unusable(kind: str, tmp_path: Path) -> str:
    if kind == "a folder":
        (tmp_path / "a-folder").mkdir()
        return str(tmp_path / "a-folder")
    if kind == "empty":
        return ""
    if kind == "missing parent is a file":
        (tmp_path / "plain-file").write_text("x")
        return str(tmp_path / "plain-file" / "runs.sqlite3")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["a folder", "empty", "missing parent is a file"])
def test_an_unusable_run_log_at_start_up_warns_once_and_calls_go_on(
    sim, keys, tmp_path, monkeypatch, kind
):
    monkeypatch.chdir(tmp_path)
    path = _unusable(kind, tmp_path)
    config = mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=sim.openai_base_url,
                             api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mmo.Orchestrator([config], runlog=path, cache=False) as orc:
            answers = [orc.complete(f"call {i}", model="oa") for i in range(3)]
            saved = [r.prompt for r in orc.runs.records()]
    assert all(a.status == "ok" for a in answers)
    assert saved == ["call 0", "call 1", "call 2"]
    messages = runlog_warnings(caught)
    assert messages and "cannot use the run log" in messages[0]
    assert repr(str(Path(path).expanduser()) if path else path)[1:-1] in messages[0]
    assert "MMO_RUNLOG" in messages[0]  # the fix
    assert len(messages) <= 2  # that one, and the one naming the fallback file


def test_a_log_locked_at_start_up_still_opens_for_reading_and_spills(tmp_path):
    path = tmp_path / "runs.sqlite3"
    with RunLog(path) as log:
        log.add(record("before")).result(10)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # a rollback-journal exclusive lock: no WAL
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.warns(RunLogWarning, match="cannot use the run log .*locked"):
            log = RunLog(path)
        log.add(record("during")).result(10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    log.close()
    with RunLog(path) as log:  # the next open takes the spilled record back
        assert sorted(r.prompt for r in log.records()) == ["before", "during"]


# -- defect 5: a full disk, then a crash ---------------------------------------------------------

FULL_DISK_CHILD = """
import os, signal, sys, warnings
import mmo_magic as mmo
os.environ["MMO_TEST_OPENAI_KEY"] = "sk-test-openai-000000000000"
base_url, runlog = sys.argv[1], sys.argv[2]
config = mmo.ModelConfig("openai", "sim-fast?tokens=200", name="oa", base_url=base_url,
                         api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    orc = mmo.Orchestrator([config], runlog=runlog, cache=False)
    for i in range(50):
        assert orc.complete(f"call {i}", model="oa").status == "ok"
for w in caught:
    print("WARNING", w.message, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_full_disk_then_a_crash_loses_no_answered_call(sim_server, tmp_path, fallback):
    disk = tmp_path / "disk"
    with tiny_filesystem(disk, "256k"):
        path = disk / "runs.sqlite3"
        RunLog(path).close()
        fill(disk)
        done = subprocess.run(
            [sys.executable, "-c", FULL_DISK_CHILD, sim_server.openai_base_url, str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        warned = [line for line in done.stdout.splitlines() if line.startswith("WARNING")]
        assert len(warned) == 1 and "full" in warned[0] and str(fallback) in warned[0], warned
        (disk / "filler").unlink()  # the user frees some space
        with RunLog(path) as log:
            saved = {r.prompt for r in log.records()}
        assert saved == {f"call {i}" for i in range(50)}
        assert not list(fallback.glob("*.sqlite3"))  # taken back, then deleted


def test_spilled_records_go_back_into_the_log_once_it_can_be_written(tmp_path):
    disk = tmp_path / "disk"
    with tiny_filesystem(disk, "256k"):
        path = disk / "runs.sqlite3"
        with pytest.warns(RunLogWarning, match="full"):
            log = RunLog(path)
            fill(disk)
            for i in range(20):
                log.add(record(f"while full {i} " + "y" * 2000)).result(10)
        assert len(log) == 20  # reads show the spilled records too
        remount(disk, "size=10m")
        time.sleep(1.1)  # past the retry delay
        log.add(record("after")).result(10)
        assert log._spill is None  # moved back
        log.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 21


def test_a_read_only_log_reads_what_it_has_and_spills_the_rest(tmp_path):
    disk = tmp_path / "disk"
    with tiny_filesystem(disk, "1m"):
        path = disk / "runs.sqlite3"
        with RunLog(path) as log:
            log.add(record("old")).result(10)
        remount(disk, "ro")
        with pytest.warns(RunLogWarning, match="cannot use the run log"):
            log = RunLog(path)
        with log:
            log.add(record("new")).result(10)
            assert sorted(r.prompt for r in log.records()) == ["new", "old"]
        remount(disk, "rw")
        with RunLog(path) as log:
            assert sorted(r.prompt for r in log.records()) == ["new", "old"]


# -- defect 6: a lock held by another process ----------------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_a_locked_log_does_not_block_calls(sim, keys, tmp_path):
    path = tmp_path / "runs.sqlite3"
    config = mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=sim.openai_base_url,
                             api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)  # fmt: skip
    with mmo.Orchestrator([config], runlog=path, cache=False) as orc:
        orc.complete("before", model="oa")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "6"],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.warns(RunLogWarning, match="locked"):
                times = []
                for i in range(10):
                    started = time.perf_counter()
                    orc.complete(f"locked {i}", model="oa")
                    times.append(time.perf_counter() - started)
            assert max(times) < 1.0, times  # was 10.1 s each
            assert sum(times) < 2.0, times
            assert len(orc.runs) == 11  # every record readable meanwhile
        finally:
            holder.wait(30)
        time.sleep(1.1)
        orc.complete("after", model="oa")
    with RunLog(path) as log:
        assert len(log) == 12


# -- defect 1, the reading half: bad numbers already stored --------------------------------------


def test_bad_numbers_already_stored_read_as_missing(tmp_path):
    path = tmp_path / "runs.sqlite3"
    with RunLog(path) as log:
        log.add(record("fine")).result(10)
        log.add(record("bad")).result(10)
    with sqlite3.connect(path) as conn:  # as an older version stored them
        conn.execute(
            "UPDATE runs SET output_tokens = 'x', input_tokens = 1.5, cost = 'y', "
            "attempt = 'z' WHERE prompt = 'bad'"
        )
    with RunLog(path) as log:
        frame = log.to_dataframe()
        bad = frame[frame.prompt == "bad"].iloc[0]
        assert bad.output_tokens is pd_na() and bad.input_tokens is pd_na()
        assert bad.cost is pd_na() and bad.attempt == 1
        log.export(tmp_path / "runs.parquet")
        log.export(tmp_path / "runs.csv")


def test_bad_numbers_are_not_stored(tmp_path):
    with RunLog(tmp_path / "runs.sqlite3") as log:
        log.add(RunRecord(requested_model="m", status="ok", prompt="p", output_tokens="x",  # type: ignore[arg-type]
                          input_tokens=10**20, cost=float("nan"))).result(10)  # fmt: skip
        (saved,) = log.records()
    assert saved.output_tokens is None and saved.input_tokens is None and saved.cost is None


def pd_na() -> object:
    import pandas as pd

    return pd.NA
