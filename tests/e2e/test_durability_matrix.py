"""The durability matrix (issue 27): every kind of call, killed by SIGKILL the instant it
returns, on a healthy disk, a full disk and a read-only log.

Each cell runs fresh interpreters that make real calls (openai SDK over HTTP to the simulated
provider), print the run_id of every record the result shows (responses, losers, candidates,
steps, batch rows), and SIGKILL themselves right after the last call returns. The parent then
frees the disk (or makes it writable again), opens the log, which takes back what was spilled
to the fallback location, and counts the returned records that are missing: it must be 0
wherever a writable location exists (here the fallback folder always is).

The full disk is a real one: a 256 KB tmpfs, filled to the last byte (needs root; skipped
otherwise: ``RLIMIT_FSIZE`` fails every file alike, so it cannot show the fallback working).
The read-only log is a tmpfs remounted read-only as root, or a chmod'ed folder otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import fill, remount, tiny_filesystem

from mmo_magic.storage.runlog import RunLog

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 3  # fresh interpreters per cell
CALLS = 3  # calls per interpreter, the last one killed at its return
KINDS = ["complete", "stream", "race", "all", "consensus", "pipeline", "batch"]
DISKS = ["healthy", "full disk", "read-only log"]

CHILD = r"""
import dataclasses, os, signal, sys
import mmo_magic as mmo

os.environ["MMO_TEST_OPENAI_KEY"] = "sk-test-openai-000000000000"
base_url, runlog, kind, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def model(name, model_id):
    return mmo.ModelConfig("openai", model_id, name=name, base_url=base_url,
                           api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)


models = [model("a", "sim-fast?tokens=30"), model("b", "sim-fast?tokens=30&ttft_ms=40"),
          model("judge", "sim-fast?reply=judge&prefer=apple")]
orc = mmo.Orchestrator(models, runlog=runlog, cache=False)


def run_ids(obj, depth=0, seen=None):
    # Every run_id the result shows: responses, rows, steps (mmo_magic objects only).
    seen = set() if seen is None else seen
    if depth > 6 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from run_ids(x, depth + 1, seen)
    elif isinstance(obj, dict):
        if isinstance(obj.get("run_id"), str):  # a batch row
            yield obj["run_id"] + ":" + str(obj.get("status", ""))
        for x in obj.values():
            yield from run_ids(x, depth + 1, seen)
    elif type(obj).__module__.startswith("mmo_magic") and not isinstance(obj, mmo.Orchestrator):
        rid = getattr(obj, "run_id", None)
        if isinstance(rid, str):
            yield rid + ":" + str(getattr(obj, "status", ""))
        if dataclasses.is_dataclass(obj):
            values = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        else:
            values = list(getattr(obj, "__dict__", {}).values())
        for x in values:
            yield from run_ids(x, depth + 1, seen)


def once(i):
    prompt = f"{kind} {i}"
    if kind == "complete":
        return orc.complete(prompt, model="a")
    if kind == "stream":
        stream = orc.stream(prompt, model="a")
        for _ in stream:
            pass
        return stream.response
    if kind == "race":
        return orc.race(prompt, models=["a", "b"])
    if kind == "all":
        return orc.all(prompt, models=["a", "b"])
    if kind == "consensus":
        return orc.consensus(prompt, models=["a", "b"], judges=["judge"])
    if kind == "pipeline":
        steps = [mmo.PipelineStep("draft", "a", "Write about {topic}"),
                 mmo.PipelineStep("edit", "b", "Edit: {draft}")]
        return orc.run_pipeline(mmo.Pipeline(steps), topic=prompt)
    if kind == "batch":
        import pandas as pd
        data = pd.DataFrame({"q": [f"{prompt} q{j}" for j in range(4)]})
        return orc.batch(data, models=["a", "b"], prompt="{q}", progress=False)
    raise SystemExit(f"unknown kind {kind}")


for i in range(calls):
    result = once(i)
    ids = sorted(set(run_ids(result)))
    print(" ".join(ids), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@contextmanager
def disk(kind: str, where: Path) -> Iterator[tuple[Path, object]]:
    """(the run log's path, a function that gives the disk back) for each disk condition."""
    if kind == "healthy":
        where.mkdir()
        yield where / "runs.sqlite3", lambda: None
        return
    if kind == "full disk":
        with tiny_filesystem(where, "256k"):
            path = where / "runs.sqlite3"
            RunLog(path).close()
            fill(where)
            yield path, lambda: (where / "filler").unlink()
        return
    # A read-only log: the file and its folder cannot be written.
    if os.geteuid() == 0:
        with tiny_filesystem(where, "2m"):
            path = where / "runs.sqlite3"
            RunLog(path).close()
            remount(where, "ro")
            yield path, lambda: remount(where, "rw")
        return
    where.mkdir()
    path = where / "runs.sqlite3"
    RunLog(path).close()
    for p in (path, where):
        p.chmod(0o555)

    def writable() -> None:
        for p in (where, path):
            p.chmod(0o755)

    yield path, writable


@pytest.mark.timeout(600)
@pytest.mark.parametrize("condition", DISKS)
def test_no_returned_record_is_lost_when_killed_right_after_return(
    sim_server, tmp_path, monkeypatch, condition
):
    fallback = tmp_path / "fallback"
    monkeypatch.setenv("MMO_RUNLOG_FALLBACK", str(fallback))
    table: dict[str, tuple[int, int]] = {}
    for kind in KINDS:
        returned = lost = 0
        for trial in range(TRIALS):
            with disk(condition, tmp_path / f"{kind}-{trial}") as (path, give_back):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, sim_server.openai_base_url, str(path), kind,
                     str(CALLS)],
                    cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ,
                )  # fmt: skip
                assert done.returncode == -9, f"{kind}: {done.stderr[-3000:]}"
                # The condition bit: the log refused, and the records went to the fallback.
                assert (condition == "healthy") != ("RunLogWarning" in done.stderr), done.stderr
                shown = dict(
                    item.split(":") for line in done.stdout.splitlines() for item in line.split()
                )
                give_back()  # type: ignore[operator]
                with RunLog(path) as log:
                    saved = {r.run_id for r in log.records()}
            returned += len(shown)
            lost += len(set(shown) - saved)  # a race's cancelled losers included (issue 27 #3)
        table[kind] = (returned, lost)
    print(f"\n{condition}: " + ", ".join(f"{k} {n - m}/{n}" for k, (n, m) in table.items()))
    assert all(n > 0 for n, _ in table.values()), table
    assert {k: m for k, (_, m) in table.items() if m} == {}, table
    assert not list(fallback.glob("*.sqlite3"))  # every spill taken back
