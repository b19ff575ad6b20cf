"""A retrying model's race panel says it is retrying (issue 28 #6): "retrying in 1.0 s" while it
waits out the back-off, "retrying · try 2" once the retry is sent, then "streaming · try 2" when
its text flows; never "failed" for the whole wait and then "cancelled" as if it had given up.

The retry waits exactly the sim's Retry-After (1 s, no jitter), and the other contestant is
scripted 6 s slow, so which model wins never depends on the machine's speed.
"""

from __future__ import annotations

import inspect
import threading

import pytest
from helpers import magic_shell, sim_models
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionResponse
from mmo_magic.core.loop import background_loop
from mmo_magic.notebook import rendering
from mmo_magic.notebook.widgets import RaceView
from mmo_magic.orchestration import parallel

# One 503 saying "retry after 1 s"; the retry's first word 0.5 s after it is sent, then 20/s.
FLAKY = "sim-fast?fail=503&fail_times=1&retry_after=1&ttft_ms=500&tps=20"
SLOW = "sim-fast?ttft_ms=6000"  # far behind the flaky model's retry (done by ~2.1 s)


@pytest.fixture
def orc(sim, keys):
    oa = sim_models(sim)[0]
    models = [
        oa.replace(name="flaky", model_id=FLAKY, max_retries=2),
        oa.replace(name="slow", model_id=SLOW),
    ]
    with mmo.Orchestrator(models, runlog=":memory:", cache=False) as o:
        yield o


def race_through_engine(orc: mmo.Orchestrator, hooks: dict) -> parallel.RaceResult:
    """``parallel.race`` over the call engine: the path ``orc.arace`` takes (its settle aside)."""
    taken = inspect.signature(parallel.race).parameters
    kwargs = {name: hook for name, hook in hooks.items() if name in taken}
    coro = parallel.race(orc._engine.complete, "Name a colour.", ["flaky", "slow"], **kwargs)
    return background_loop.run(coro)


def test_the_race_tells_when_a_failed_model_will_try_again_and_after_how_long(orc):
    events: list[tuple] = []
    lock = threading.Lock()

    def on_result(response: CompletionResponse) -> None:
        with lock:
            events.append(("ended", response.model, response.status))

    def on_retry(model: str, delay_s: float) -> None:
        with lock:
            events.append(("retry", model, delay_s))

    result = race_through_engine(orc, {"on_result": on_result, "on_retry": on_retry})
    assert result.winner is not None and result.winner.model == "flaky"
    flaky = [e for e in events if e[1] == "flaky"]
    # The failed try ends first, then the race hears it will be retried after Retry-After.
    assert flaky == [("ended", "flaky", "error"), ("retry", "flaky", 1.0), ("ended", "flaky", "ok")]


def test_the_live_badge_says_retrying_then_streaming_try_2(orc):
    view = RaceView(["flaky", "slow"], title="colours", live=True)
    badges: list[str] = []
    lines: list[str] = []
    panel = view._panels["flaky"]

    def seen(change: dict) -> None:  # every value the browser would be sent
        badges.append(change["new"])
        lines.append(rendering.status_line(panel.view))  # the terminal's line, same state

    panel.header.observe(seen, names="value")
    result = race_through_engine(orc, view.hooks())
    view.finish(result)
    labels = [_badge(h) for h in badges]
    assert "retrying in 1.0 s" in labels, labels
    retrying = labels.index("retrying in 1.0 s")
    sent = labels.index("retrying · try 2")  # the wait is over, the retry on its way
    assert retrying < sent < labels.index("streaming · try 2"), labels
    assert labels[-1] == "done", labels
    assert "cancelled" not in labels, labels
    # The terminal says the same, with why the first try failed.
    waiting = [line for line in lines if "retrying" in line]
    assert waiting and waiting[0].startswith("  flaky: retrying in 1.0 s (error:"), lines
    assert "503" in waiting[0]
    state = view.state()["flaky"]
    assert state["status"] == "done" and state["retry_in_s"] is None
    assert len(state["failed_tries"]) == 1 and "503" in state["failed_tries"][0]
    assert view.state()["slow"]["status"] == "cancelled"
    view.close()


def _badge(header_html: str) -> str:
    start = header_html.index('class="mmo-badge"')
    return header_html[header_html.index(">", start) + 1 : header_html.index("</span>", start)]


def _failed(model: str) -> CompletionResponse:
    return CompletionResponse("", model, "sim", status="error", error="HTTP 503 (simulated)")


def test_a_race_that_ends_while_a_model_waits_to_retry_keeps_its_failed_try():
    view = RaceView(["flaky", "quick"], live=False)
    view.on_finish(_failed("flaky"))
    assert view.state()["flaky"]["status"] == "failed"
    view.on_retry("flaky", 2.0)
    assert view.state()["flaky"]["status"] == "retrying"
    assert rendering.status_line(view.final_state().panels[0]) == (
        "  flaky: retrying in 2.0 s (error: HTTP 503 (simulated))"
    )
    assert "retrying 1" in rendering.summary_text(view.final_state())
    quick = CompletionResponse("blue", "quick", "sim")
    lost = CompletionResponse("", "flaky", "sim", status="cancelled", error="another model won")
    view.finish(parallel.RaceResult(quick, [lost, quick], "g"))
    state = view.state()["flaky"]
    assert state["status"] == "cancelled" and state["retry_in_s"] is None
    assert state["failed_tries"] == ["error: HTTP 503 (simulated)"]
    text = rendering.race_text(view.final_state())
    assert "try 1: error: HTTP 503 (simulated)" in text and "retrying" not in text


def test_stopped_while_waiting_to_retry_says_stopped_and_keeps_the_failed_try():
    view = RaceView(["flaky"], live=False)
    view.on_finish(_failed("flaky"))
    view.on_retry("flaky", 2.0)
    view.finish(None, stopped=True)
    state = view.state()["flaky"]
    assert state["status"] == "cancelled" and state["stopped"]
    assert state["failed_tries"] == ["error: HTTP 503 (simulated)"]


def test_a_retry_that_fails_again_counts_both_tries():
    view = RaceView(["flaky"], live=False)
    view.on_finish(_failed("flaky"))
    view.on_retry("flaky", 0.5)
    view.on_finish(_failed("flaky"))  # the same error again, before any text
    state = view.state()["flaky"]
    assert state["status"] == "failed" and state["failed_tries"] == ["error: HTTP 503 (simulated)"]
    assert "try 1: error: HTTP 503" in rendering.race_text(view.final_state())


def test_an_explicit_retry_hook_wins_over_the_watcher(orc, sim):
    heard: list[tuple[str, str, float]] = []

    async def race() -> parallel.RaceResult:
        with parallel.watching_retries(lambda m, d: heard.append(("watcher", m, d))):
            return await parallel.race(
                orc._engine.complete, "hi", ["flaky"],
                on_retry=lambda m, d: heard.append(("own", m, d)),
            )  # fmt: skip

    background_loop.run(race())
    assert heard == [("own", "flaky", 1.0)]
    sim.reset()  # the flaky model fails its next request again
    result = background_loop.run(parallel.race(orc._engine.complete, "hi", ["flaky"]))
    assert len(result.winner.attempts) == 2  # it did retry
    assert heard == [("own", "flaky", 1.0)]  # outside watching_retries: nobody is told


def test_a_retry_hook_for_a_model_not_in_the_race_is_ignored():
    view = RaceView(["a"], live=False)
    view.on_retry("b", 1.0)  # e.g. a fallback's name: the panel is keyed by the caller's name
    view.on_retry("a", 1.0)  # "a" has not failed: nothing to retry on its panel
    assert view.state()["a"]["status"] == "waiting"


# -- through the magics: the terminal's lines and the live widget --------------------------------
# Orchestrator.arace takes no on_retry: the race view hears of retries through
# parallel.watching_retries around the call.


def test_terminal_race_prints_retrying_then_streaming_try_2(orc):
    with magic_shell(orc) as shell, capture_output() as cap:
        shell.run_line_magic("mmo_race", "flaky,slow -o r Name a colour.")
    assert shell.user_ns["r"].winner.model == "flaky", cap.stdout
    lines = cap.stdout.splitlines()
    retrying = [i for i, line in enumerate(lines) if line.startswith("  flaky: retrying in 1.0 s")]
    sent = [i for i, line in enumerate(lines) if line.startswith("  flaky: retrying · try 2")]
    streaming = [i for i, line in enumerate(lines) if line == "  flaky: streaming · try 2"]
    assert retrying and sent and streaming, cap.stdout
    assert retrying[0] < sent[0] < streaming[0], cap.stdout
    assert "503" in lines[retrying[0]]


def test_live_race_magic_widget_says_retrying(orc):
    import ipywidgets

    headers: list[str] = []

    def constructed(widget) -> None:
        if isinstance(widget, ipywidgets.HTML):
            widget.observe(lambda change: headers.append(change["new"]), names="value")

    with magic_shell(orc) as shell:
        shell.kernel = object()  # a kernel's shell: live widgets (the comm is inert)
        shell.run_line_magic("unload_ext", "mmo_magic")
        shell.run_line_magic("load_ext", "mmo_magic")
        ipywidgets.Widget.on_widget_constructed(constructed)
        try:
            with capture_output():
                shell.run_line_magic("mmo_race", "flaky,slow -o r Name a colour.")
        finally:
            ipywidgets.Widget.on_widget_constructed(None)
            del shell.kernel
    flaky = [_badge(h) for h in headers if "mmo-badge" in h and "<b>flaky</b>" in h]
    assert "retrying in 1.0 s" in flaky, flaky
    assert "streaming · try 2" in flaky[flaky.index("retrying in 1.0 s") :], flaky
