"""A returned call is a recorded call: killed processes, poison records, a full disk.

The children are real interpreters making real calls (openai SDK over HTTP to
the simulated provider); they die by SIGKILL or ``os._exit`` the instant their
last call returns, as a notebook kernel does when it runs out of memory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mmo_magic as mmo
from mmo_magic.storage.runlog import RunLog, RunLogWarning, RunRecord

ROOT = Path(__file__).resolve().parents[2]
CALLS = 20
TRIALS = 12  # per way of dying; each trial is a fresh interpreter

CHILD = """
import os, signal, sys
import mmo_magic as mmo
os.environ["MMO_TEST_OPENAI_KEY"] = "sk-test-openai-000000000000"
base_url, runlog, calls, death = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
config = mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=base_url,
                         api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)
orc = mmo.Orchestrator([config], runlog=runlog, cache=False)
for i in range(calls):
    orc.complete(f"call {i}", model="oa")
if death == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(0)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("death", ["sigkill", "os._exit"])
def test_every_returned_call_is_on_disk_when_the_process_dies(sim_server, tmp_path, death):
    lost = []
    for trial in range(TRIALS):
        path = tmp_path / f"runs-{trial}.sqlite3"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, sim_server.openai_base_url, str(path), str(CALLS), death],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        expected_code = -9 if death == "sigkill" else 0
        assert done.returncode == expected_code, done.stderr[-2000:]
        with RunLog(path) as log:
            saved = {r.prompt for r in log.records()}
        lost += [f"trial {trial}: call {i}" for i in range(CALLS) if f"call {i}" not in saved]
    assert lost == [], f"{len(lost)} of {TRIALS * CALLS} returned calls lost"


def test_a_record_with_a_lone_surrogate_is_saved_and_so_are_the_rest(tmp_path):
    halves = "\ud83d" + "\ude00"  # an emoji streamed as two escaped UTF-16 halves
    with RunLog(tmp_path / "runs.sqlite3") as log:
        log.add(RunRecord(requested_model="m", status="ok", prompt="before"))
        log.add(RunRecord(requested_model="m", status="ok", prompt="smile", response=halves))
        log.add(RunRecord(requested_model="m", status="ok", prompt="lone", response="a\ud83dz"))
        for i in range(5):
            log.add(RunRecord(requested_model="m", status="ok", prompt=f"after {i}")).result(10)
        records = {r.prompt: r.response for r in log.records()}
        assert len(log) == 8 and len(log.to_dataframe()) == 8
    assert records["smile"] == "😀"  # the halves are joined into the character
    assert records["lone"] == "a\ufffdz"  # a half on its own cannot be saved: replaced
    assert {f"after {i}" for i in range(5)} <= set(records)


FULL_DISK_CHILD = """
import resource, signal, sys, warnings
from mmo_magic.storage.runlog import RunLog, RunRecord, RunLogWarning
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
log = RunLog(sys.argv[1])
for i in range(10):
    log.add(RunRecord(requested_model="m", status="ok", prompt=f"saved {i}")).result(10)
size = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, size[1]))  # the disk is now full
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(50):
        log.add(RunRecord(requested_model="m", status="ok", prompt=f"big {i}",
                          response="x" * 100_000)).result(10)
    prompts = [r.prompt for r in log.records()]
mine = [w for w in caught if issubclass(w.category, RunLogWarning)]
print(len(mine), sum(p.startswith("saved") for p in prompts), len(prompts))
for w in mine:
    print(str(w.message).replace(chr(10), " "))
"""


def test_every_location_full_warns_twice_and_reads_still_work(tmp_path, monkeypatch):
    """RLIMIT_FSIZE fails every file of the process past 600 KB: the log, then the spill file
    (the fallback location, which takes records until it too is full)."""
    monkeypatch.setenv("MMO_RUNLOG_FALLBACK", str(tmp_path / "fallback"))
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path / "runs.sqlite3")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    counts, *messages = done.stdout.splitlines()
    warned, saved, readable = map(int, counts.split())
    assert warned == 2, done.stdout  # one when the log fills, one when the fallback does
    assert saved == 10 and readable > 10  # what was saved still reads, spilled records too
    assert "could not write the run log" in messages[0] and "full" in messages[0]
    assert "fallback" in messages[0]  # names where the records went
    assert "nor to any fallback location" in messages[1]


def test_a_write_failure_never_blocks_the_caller(tmp_path):
    log = RunLog(tmp_path / "runs.sqlite3")
    log.close()  # every later write fails
    with pytest.warns(RunLogWarning, match="could not write the run log .*closed"):
        log.add(RunRecord(requested_model="m", status="ok", prompt="late")).result(10)


def test_an_emoji_streamed_in_two_halves_is_one_character_everywhere(tmp_path):
    """A server that escapes an emoji as UTF-16 halves in separate chunks (a model function
    stands in for it): the deltas, the answer, the cache and the run log all get the emoji;
    a half that never pairs is replaced; every later call is saved too."""
    from mmo_magic.providers import register_function, unregister_function

    register_function("halves", lambda request: ["smile ", "\ud83d", "\ude00", " and ", "\ud83d"])
    try:
        config = mmo.ModelConfig("function", "halves")
        cache = tmp_path / "responses.sqlite3"
        with mmo.Orchestrator([config], runlog=tmp_path / "runs.sqlite3", cache=cache) as orc:
            deltas = list(orc.stream("x", model="halves"))
            answer = orc.complete("x", model="halves")
            for i in range(5):
                orc.complete(f"after {i}", model="halves")
            saved = orc.runs.records()
        assert deltas == ["smile ", "😀", " and ", "\ufffd"]
        assert answer.content == "smile 😀 and \ufffd"
        print(answer)  # a terminal can show it: no lone surrogate left
        assert answer.cached  # stored in the cache and read back whole
        assert len(saved) == 7 and saved[0].response == "smile 😀 and \ufffd"
    finally:
        unregister_function("halves")
