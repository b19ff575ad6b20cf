"""The race view's "thinking" phase (issue 25): a reasoning model's panel says thinking, with
its own timer, from its first sign of life until its first visible word; the finished
rendering says how long it thought and how many reasoning tokens it spent."""

from __future__ import annotations

import time

import pytest
from helpers import sim_models
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.notebook import rendering
from mmo_magic.notebook.widgets import RaceView
from mmo_magic.orchestration.calls import CallContext

THINK_MS = 600


@pytest.fixture
def orc(sim, keys):
    oa = sim_models(sim)[0].replace(model_id=f"sim-fast?think_ms={THINK_MS}", reasoning=True)
    models = [oa.replace(name="thinker")]
    models.append(oa.replace(name="quick", model_id="sim-fast", reasoning=False))
    models.append(oa.replace(name="deep", model_id=f"sim-slow?think_ms={THINK_MS}&think=12"))
    with mmo.Orchestrator(models, runlog=":memory:", cache=False) as o:
        o.complete("warm up", model="quick")  # the SDK's first-use set-up is not the model's
        yield o


def wait_for(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_live_panel_badge_says_thinking_with_a_running_timer(orc):
    view = RaceView(["thinker"], title="hi", live=True)
    panel = view._panels["thinker"]

    def hooks(name: str) -> CallContext:
        return CallContext(
            "race",
            on_text=lambda d: view.on_text(name, d),
            on_thinking=lambda d: view.on_thinking(name, d),
            on_finish=lambda r: view.on_finish(r, name),
        )

    # The path a race takes: the engine with a context whose hooks feed the panels.
    complete = orc._engine.complete
    options = {"reasoning_effort": "low"}
    future = mmo.core.loop.background_loop.submit(
        complete("hi", "thinker", options, hooks("thinker"))
    )
    wait_for(lambda: view.state()["thinker"]["status"] == "thinking")
    first = view.state()["thinker"]["thinking_s"]
    assert "thinking" in panel.header.value and view.state()["thinker"]["text"] == ""
    time.sleep(0.35)  # the timer ticks on its own while the model is silent
    state = view.state()["thinker"]
    assert state["status"] == "thinking" and state["text"] == ""
    assert state["thinking_s"] >= first + 0.2
    assert f"thinking {state['thinking_s']:.1f} s" in panel.header.value
    assert "thinking 1" in view.summary.value  # the tally counts the thinking panel
    response = mmo.core.loop.background_loop.wait(future)
    wait_for(lambda: view.state()["thinker"]["status"] == "done")
    state = view.state()["thinker"]
    assert state["text"] == response.content and state["reasoning_tokens"] == 8
    # Thinking ended with the first word: the timer stopped near the sim's silence.
    assert (THINK_MS - 150) / 1000 <= state["thinking_s"] <= (THINK_MS + 400) / 1000
    assert "thinking" not in panel.header.value
    view.close()


def test_a_model_that_does_not_think_never_shows_the_phase(orc):
    view = RaceView(["quick"], live=False, thinkers=[])  # as the magics make it
    seen: list[str] = []

    def text(delta: str) -> None:
        seen.append(view.state()["quick"]["status"])
        view.on_text("quick", delta)

    context = CallContext("race", on_text=text, on_thinking=lambda d: view.on_thinking("quick", d))
    mmo.core.loop.background_loop.run(orc._engine.complete("hi", "quick", {}, context))
    assert "thinking" not in seen and view.state()["quick"]["thinking_s"] is None


def test_a_panel_stopped_while_thinking_is_cancelled_not_left_thinking():
    view = RaceView(["a", "b"], live=False)
    view.on_thinking("a", "")
    view.on_thinking("a", "more thoughts")  # later thinking keeps the one timer
    assert view.state()["a"]["status"] == "thinking"
    assert view.state()["b"]["status"] == "waiting"
    view.finish(None, stopped=True)
    assert view.state()["a"]["status"] == "cancelled" and view.state()["a"]["stopped"]
    assert "thinking" not in rendering.race_text(view.final_state())


def test_finished_race_says_how_long_each_model_thought(orc):
    result = orc.race("hi", ["deep", "thinker"], reasoning_effort="low")
    view = RaceView(["deep", "thinker"], live=False)
    view.finish(result)
    state, html, text = view.state(), rendering.race_html(view.final_state()), None
    text = rendering.race_text(view.final_state())
    for r in result.responses:
        if not r.ok:
            continue  # the loser was cancelled
        thought = r.ttft_ms - r.first_activity_ms
        assert thought >= THINK_MS - 150
        note = f"thought {thought:.0f} ms · {r.reasoning_tokens} reasoning tokens"
        assert note in html and note in text, (note, text)
        assert state[r.model]["reasoning_tokens"] == r.reasoning_tokens


def test_race_magic_passes_reasoning_options_and_prints_the_thinking(orc):
    shell = InteractiveShell.instance()
    mmo.use(orc)
    shell.run_line_magic("load_ext", "mmo_magic")
    try:
        with capture_output() as cap:
            shell.run_line_magic("mmo_race", "--all --reasoning-effort low thinker,deep -o r hi")
        assert cap.stderr == ""
        thinker, deep = shell.user_ns["r"].responses
        assert thinker.ok and deep.ok, (thinker.error, deep.error)
        assert (thinker.reasoning_tokens, deep.reasoning_tokens) == (8, 12)
        # One status line as each starts thinking, not one per tick of the badge's timer.
        lines = cap.stdout.splitlines()
        assert lines.count("  thinker: thinking") == 1 and lines.count("  deep: thinking") == 1
        # The terminal's finished race: how long each thought, and its reasoning tokens.
        for r in (thinker, deep):
            thought = f"thought {r.ttft_ms - r.first_activity_ms:.0f} ms"
            assert f"{thought} · {r.reasoning_tokens} reasoning tokens" in cap.stdout
    finally:
        shell.run_line_magic("unload_ext", "mmo_magic")
        mmo.use(None)
        InteractiveShell.clear_instance()


def test_a_real_race_feeds_the_thinking_phase_of_each_panel(orc):
    """Through ``orc.race`` (the path ``%mmo_race`` takes): each reasoning model's thinking
    reaches its own panel before its first word."""
    view = RaceView(["thinker", "deep"], title="hi", live=True)
    seen: list[str] = []

    def on_thinking(model: str, delta: str) -> None:
        seen.append(model)
        view.on_thinking(model, delta)

    result = orc.race(
        "hi", ["thinker", "deep"], on_text=view.on_text, on_thinking=on_thinking,
        on_result=view.on_finish, reasoning_effort="low",
    )  # fmt: skip
    assert result.winner is not None and result.winner.model == "thinker"
    assert "thinker" in seen and "deep" in seen  # each panel heard its own model think
    assert view.state()["thinker"]["status"] == "done"
