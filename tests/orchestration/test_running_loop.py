"""``mmo.use_running_loop()``: calls run on an async program's own loop, not a hop away.

Each scenario runs in a fresh interpreter: which loop the calls run on is a
process-wide choice, and this test session's background loop is long started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PRELUDE = """
import asyncio, json, os, threading
import mmo_magic as mmo
os.environ["K"] = "sim-key"
model = mmo.ModelConfig("openai", "sim-echo", name="oa", base_url={url!r}, api_key_env="K")
orc = mmo.Orchestrator([model], default_model="oa", runlog={runlog!r}, cache=False)
def loop_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("mmo-magic-loop"))
"""


def run(sim, tmp_path, body: str) -> dict:  # type: ignore[no-untyped-def]
    script = PRELUDE.format(url=sim.openai_base_url, runlog=str(tmp_path / "runs.sqlite3"))
    script += textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_calls_run_on_the_adopting_loop_and_return_committed(sim, tmp_path):
    found = run(sim, tmp_path, """
        async def main():
            mmo.use_running_loop()
            mmo.use_running_loop()  # again, on the same loop: nothing changes
            answer = await orc.acomplete("on my loop")
            streamed = "".join([t async for t in orc.astream("streamed here")])
            committed = len(mmo.RunLog(orc.runs.path).records())
            orc.close()  # on the loop's own thread: closes its clients without waiting
            await asyncio.sleep(0.1)
            closing = orc._engine._closing
            closed = closing is not None and closing.done() and closing.exception() is None
            return answer.content, streamed, committed, loop_threads(), closed
        answer, streamed, committed, threads, closed = asyncio.run(main())
        print(json.dumps({"answer": answer, "streamed": streamed, "committed": committed,
                          "threads": threads, "closed": closed}))
    """)  # fmt: skip
    assert found["answer"] == "on my loop"
    assert found["streamed"] == "streamed here"
    assert found["committed"] == 2  # each returned call is already on disk
    assert found["threads"] == []  # no background loop thread was ever started
    assert found["closed"] is True  # orc.close() inside the loop: its clients closed there


def test_a_sync_call_on_the_adopted_loop_is_refused_and_the_program_goes_on(sim, tmp_path):
    found = run(sim, tmp_path, """
        async def main():
            mmo.use_running_loop()
            try:
                orc.complete("blocking the loop")
                refused = ""
            except RuntimeError as exc:
                refused = str(exc)
            # From another thread a sync call still works: it runs on this loop.
            other = await asyncio.to_thread(orc.complete, "from a worker thread")
            return refused, other.content
        refused, other = asyncio.run(main())
        print(json.dumps({"refused": refused, "other": other}))
    """)  # fmt: skip
    assert "await the a-prefixed twin" in found["refused"]
    assert found["other"] == "from a worker thread"


def test_after_the_adopted_loop_ends_calls_go_back_to_a_background_loop(sim, tmp_path):
    found = run(sim, tmp_path, """
        async def first():
            mmo.use_running_loop()
            return (await orc.acomplete("first program")).content
        before = asyncio.run(first())
        after = orc.complete("sync, after it ended").content  # fresh clients, new loop
        async def second():
            awaited = (await orc.acomplete("awaited from a new loop")).content
            try:
                mmo.use_running_loop()
                late = ""
            except RuntimeError as exc:
                late = str(exc)
            return awaited, late
        awaited, late = asyncio.run(second())
        orc.close()
        rows = [r.status for r in mmo.RunLog(orc.runs.path).records()]
        print(json.dumps({"before": before, "after": after, "awaited": awaited, "late": late,
                          "threads": loop_threads(), "rows": rows}))
    """)  # fmt: skip
    assert (found["before"], found["after"], found["awaited"]) == (
        "first program",
        "sync, after it ended",
        "awaited from a new loop",
    )
    assert found["threads"] == ["mmo-magic-loop"]
    assert "adopt this one before the first call" in found["late"]
    assert found["rows"] == ["ok", "ok", "ok"]


def test_use_running_loop_outside_a_loop_says_so():
    import pytest

    import mmo_magic as mmo

    with pytest.raises(RuntimeError, match="no running event loop"):
        mmo.use_running_loop()
