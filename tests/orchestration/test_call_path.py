"""The call path between the caller's loop, the background loop and the run log (issue 29).

``BackgroundLoop.arun`` hands a coroutine over and the answer back with one wake-up
each way, and holds the caller until the futures named in ``until`` (a call's record
commits) are done; a lone call writes its own records (``written_here``). A returned
call is still a committed call, concurrent or not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmo_magic.core.loop import BackgroundLoop
from mmo_magic.storage.runlog import RunLog, RunRecord
from mmo_magic.storage.writer import written_here

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop(name="mmo-magic-test-loop")
    yield loop
    loop.loop.call_soon_threadsafe(loop.loop.stop)


async def test_the_caller_resumes_only_once_the_until_futures_are_done(bg):
    commit: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def answer() -> str:
        return "answer"

    waiting = asyncio.ensure_future(bg.arun(answer(), until=[commit]))
    await asyncio.sleep(0.05)  # the answer is long ready; the commit is not
    assert not waiting.done()
    threading.Thread(target=commit.set_result, args=(None,)).start()  # as the writer does
    assert await asyncio.wait_for(waiting, 10) == "answer"


async def test_futures_added_while_the_call_runs_are_waited_for(bg):
    until: list[concurrent.futures.Future[None]] = []
    late: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def answer() -> str:
        until.append(late)  # as the engine appends each record's commit
        return "answer"

    waiting = asyncio.ensure_future(bg.arun(answer(), until=until))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    late.set_result(None)
    assert await asyncio.wait_for(waiting, 10) == "answer"


async def test_an_error_reaches_the_caller_after_the_commit(bg):
    commit: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def fails() -> None:
        raise KeyError("boom")

    waiting = asyncio.ensure_future(bg.arun(fails(), until=[commit]))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    commit.set_result(None)
    with pytest.raises(KeyError, match="boom"):
        await asyncio.wait_for(waiting, 10)


async def test_on_the_background_loop_an_error_also_waits_for_the_commit(bg):
    """A sync call (or a race) runs on the background loop itself: there too a call that
    raises does so with its records committed."""
    commit: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def fails() -> None:
        raise KeyError("boom")

    async def on_the_loop() -> bool:
        raising = asyncio.ensure_future(bg.arun(fails(), until=[commit]))
        await asyncio.sleep(0.05)
        raised_before_the_commit = raising.done()
        commit.set_result(None)
        with pytest.raises(KeyError, match="boom"):
            await raising
        return raised_before_the_commit

    assert await bg.arun(on_the_loop()) is False


async def test_cancelling_the_caller_cancels_the_call_on_the_background_loop(bg):
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(bg.arun(slow()))
    assert await asyncio.to_thread(started.wait, 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.to_thread(cancelled.wait, 10)


async def test_the_call_runs_on_the_background_loop_in_the_callers_context(bg):
    label: contextvars.ContextVar[str] = contextvars.ContextVar("label", default="none")
    label.set("the caller's")

    async def where() -> tuple[str, str]:
        return threading.current_thread().name, label.get()

    assert await bg.arun(where()) == ("mmo-magic-test-loop", "the caller's")


def test_records_added_in_written_here_are_committed_as_it_ends(tmp_path):
    with RunLog(tmp_path / "runs.sqlite3") as log:
        with written_here():
            committed = log.add(RunRecord(requested_model="m", status="ok", prompt="lone"))
            # The writer thread was not woken: nothing commits it before the block ends.
            assert not committed.done()
        assert committed.done()
        with RunLog(tmp_path / "runs.sqlite3") as other:  # on disk, seen from another connection
            assert [r.prompt for r in other.records()] == ["lone"]


def test_a_log_held_by_a_long_read_is_left_to_the_writer_thread(tmp_path):
    """The thread in ``written_here`` (the event loop) never waits for a reader."""
    with RunLog(tmp_path / "runs.sqlite3") as log:
        log._lock.acquire()  # as a DataFrame of a large log holds it while it reads
        try:
            added: list[concurrent.futures.Future[None]] = []

            def lone_call() -> None:
                with written_here():
                    added.append(log.add(RunRecord(requested_model="m", status="ok", prompt="x")))

            caller = threading.Thread(target=lone_call)
            caller.start()
            caller.join(10)
            assert not caller.is_alive()  # it returned while the log was still held
            assert not added[0].done()
        finally:
            log._lock.release()
        added[0].result(timeout=10)  # the writer thread committed it once the read ended
        assert [r.prompt for r in log.records()] == ["x"]


CHILD = """
import asyncio, os, signal, sys
import mmo_magic as mmo
os.environ["MMO_TEST_OPENAI_KEY"] = "sk-test-openai-000000000000"
base_url, runlog, how = sys.argv[1], sys.argv[2], sys.argv[3]
config = mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=base_url,
                         api_key_env="MMO_TEST_OPENAI_KEY", max_retries=0)
orc = mmo.Orchestrator([config], runlog=runlog, cache=False)

async def main():
    if how == "concurrent":  # records share the writer thread's commits
        await asyncio.gather(*(orc.acomplete(f"call {i}", model="oa") for i in range(12)))
    else:  # one after another from the caller's loop: each writes its own
        for i in range(12):
            await orc.acomplete(f"call {i}", model="oa")

asyncio.run(main())
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["concurrent", "one after another"])
def test_every_returned_async_call_is_on_disk_when_the_process_is_killed(sim_server, tmp_path, how):
    lost = []
    for trial in range(4):
        path = tmp_path / f"runs-{trial}.sqlite3"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, sim_server.openai_base_url, str(path), how],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == -9, done.stderr[-2000:]
        with RunLog(path) as log:
            saved = {r.prompt for r in log.records()}
        lost += [f"trial {trial}: call {i}" for i in range(12) if f"call {i}" not in saved]
    assert lost == []
