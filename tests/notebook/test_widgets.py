"""RaceView: the live race/consensus widget, driven without a kernel (the comm is inert)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

pytest.importorskip("ipywidgets")

from mmo_magic.core.completion import CompletionResponse
from mmo_magic.core.errors import ConfigError
from mmo_magic.notebook.widgets import PUSH_INTERVAL_S, RaceView
from mmo_magic.orchestration.judges import TIE, JudgeEvent, Tally, Verdict
from mmo_magic.orchestration.parallel import ConsensusResult, RaceResult


def response(model: str, content: str = "", **fields: object) -> CompletionResponse:
    base: dict[str, object] = {
        "provider": "openai",
        "input_tokens": 12,
        "output_tokens": 40,
        "latency_ms": 850.0,
        "ttft_ms": 120.0,
        "cost": 0.000123,
    }
    base.update(fields)
    return CompletionResponse(content=content, model=model, **base)  # type: ignore[arg-type]


def panel_parts(view: RaceView, model: str) -> tuple[Any, Any, Any]:
    """(header, body, stats) widgets of ``model``'s panel, found through the public tree."""
    grid = view.widget.children[1]
    box = grid.children[view.models.index(model)]
    header, body, stats = box.children
    return header, body, stats


def test_stream_from_a_thread_then_finish_gives_exact_texts_statuses_and_winner() -> None:
    view = RaceView(["fast", "flaky", "slow", "idle"], title="Why is the sky blue?")
    answer = "Rayleigh scattering: short (blue) wavelengths scatter more. <b>&</b> {x}"
    partial = "Let me th"
    assert view.state()["fast"]["status"] == "waiting"

    def loop_thread() -> None:
        for ch in answer:  # one tiny delta per character, interleaved with other models
            view.on_text("fast", ch)
            if ch == " ":
                view.on_text("slow", "x")
        view.on_finish(response("flaky", "", status="error", error="HTTP 500\ntraceback..."))
        view.on_finish(response("fast", answer))
        for ch in partial:
            view.on_text("slow", ch)

    worker = threading.Thread(target=loop_thread)
    worker.start()
    worker.join()
    assert view.state()["slow"]["status"] == "streaming"

    fast = response("fast", answer)
    flaky = response("flaky", "", status="error", error="HTTP 500\ntraceback...")
    slow = response("slow", "xxxxxxxxxx" + partial, status="cancelled", error="race won")
    view.finish(RaceResult(fast, [fast, flaky, slow], "g1"))  # "idle" has no response

    state = view.state()
    assert state["fast"]["text"] == answer
    assert state["slow"]["text"] == "xxxxxxxxxx" + partial
    assert {m: s["status"] for m, s in state.items()} == {
        "fast": "done",
        "flaky": "failed",
        "slow": "cancelled",
        "idle": "cancelled",
    }
    assert [m for m, s in state.items() if s["winner"]] == ["fast"]
    assert state["fast"]["cost"] == pytest.approx(0.000123)
    assert state["fast"]["ttft_ms"] == 120.0

    header, body, stats = panel_parts(view, "fast")
    assert "🏆" in header.value
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in body.value
    assert "ttft 120 ms" in stats.value and "12→40 tokens" in stats.value
    assert "$0.000123" in stats.value
    flaky_header, _, flaky_stats = panel_parts(view, "flaky")
    assert "🏆" not in flaky_header.value
    assert "error: HTTP 500" in flaky_stats.value
    assert "traceback" not in flaky_stats.value  # one line, not the whole error
    winner_box = view.widget.children[1].children[0]
    loser_box = view.widget.children[1].children[1]
    assert "--jp-success-color1" in winner_box.layout.border  # the theme's colour
    assert "--jp-success-color1" not in loser_box.layout.border
    assert "fast" in view.widget.children[2].value  # the summary names the winner


def test_throttled_deltas_are_buffered_and_the_final_text_is_exact() -> None:
    view = RaceView(["a", "b"])
    _, body, _ = panel_parts(view, "a")
    pushes: list[str] = []
    body.observe(lambda change: pushes.append(change["new"]), names="value")
    deltas = [f"t{i} " for i in range(500)]

    def send() -> None:
        for delta in deltas:
            view.on_text("a", delta)

    worker = threading.Thread(target=send)
    worker.start()
    worker.join()
    # 500 deltas in far less than 500 x 50 ms: most were held back, none was lost.
    assert 1 <= len(pushes) < 50
    final = "".join(deltas)
    view.finish(RaceResult(response("a", final), [response("a", final), response("b", "B")], "g"))
    assert view.state()["a"]["text"] == final
    assert view.state()["b"]["text"] == "B"


def test_held_back_text_is_flushed_when_deltas_stop() -> None:
    """A model that pauses (or stalls) still shows all it sent, within ~50 ms."""
    view = RaceView(["m"])

    async def stream() -> None:  # on the loop thread, as the orchestrator calls it
        for ch in "hello world":
            view.on_text("m", ch)
        await asyncio.sleep(PUSH_INTERVAL_S * 4)

    asyncio.run(stream())
    assert view.state()["m"]["text"] == "hello world"

    view.on_text("m", "!")  # no running loop here: the flush uses a timer thread
    time.sleep(PUSH_INTERVAL_S * 4)
    assert view.state()["m"]["text"] == "hello world!"


def test_status_moves_from_waiting_to_streaming_on_the_first_delta() -> None:
    view = RaceView(["m", "n"])
    header, _, _ = panel_parts(view, "m")
    assert view.state()["m"]["status"] == "waiting"
    assert "waiting" in header.value
    view.on_text("m", "hi")
    assert view.state()["m"]["status"] == "streaming"
    assert "streaming" in header.value
    assert view.state()["m"]["text"] == "hi"  # the first delta shows at once
    assert view.state()["n"]["status"] == "waiting"
    view.on_finish(response("m", "hi"))
    assert view.state()["m"]["status"] == "done"


def test_a_retry_after_a_failed_attempt_restarts_the_text() -> None:
    view = RaceView(["m"])
    view.on_text("m", "partial")
    view.on_finish(response("m", "partial", status="error", error="connection reset"))
    assert view.state()["m"]["status"] == "failed"
    view.on_text("m", "fresh")
    state = view.state()["m"]
    assert (state["text"], state["status"], state["latency_ms"]) == ("fresh", "streaming", None)
    assert "try 2" in panel_parts(view, "m")[0].value


def test_unknown_cost_shows_na_never_zero_and_cached_says_cached() -> None:
    view = RaceView(["unpriced", "cached", "timed-out"])
    unpriced = response("unpriced", "x", cost=None, input_tokens=None, output_tokens=None)
    cached = response("cached", "y", cost=0.0, cached=True)
    late = response("timed-out", "", status="timeout", error="no first token within 5 s")
    view.finish(RaceResult(unpriced, [unpriced, cached, late], "g"))

    stats = {m: panel_parts(view, m)[2].value for m in view.models}
    assert "cost n/a" in stats["unpriced"] and "$0" not in stats["unpriced"]
    assert view.state()["unpriced"]["cost"] is None
    assert "cached" in stats["cached"] and "$0" not in stats["cached"]
    assert view.state()["timed-out"]["status"] == "failed"
    assert "timeout: no first token within 5 s" in stats["timed-out"]


def test_simulated_models_are_labelled() -> None:
    view = RaceView(["sim-fast", "gpt"])
    view.on_finish(response("sim-fast", "ok", provider="sim"))
    view.on_finish(response("gpt", "ok"))
    assert "(simulated)" in panel_parts(view, "sim-fast")[0].value
    assert "(simulated)" not in panel_parts(view, "gpt")[0].value


def test_on_finish_can_name_the_panel_when_a_fallback_answered() -> None:
    view = RaceView(["primary", "other"])
    view.on_text("primary", "from backup")
    view.on_finish(response("backup", "from backup"), model="primary")
    assert view.state()["primary"]["status"] == "done"
    assert "answered by <b>backup</b>" in panel_parts(view, "primary")[0].value
    assert view.state()["other"]["status"] == "waiting"


def test_finish_without_a_result_cancels_what_never_ended_and_keeps_streamed_text() -> None:
    view = RaceView(["a", "b", "c"])
    view.on_text("a", "half an ans")
    view.on_finish(response("b", "done"))
    view.finish(None)
    state = view.state()
    assert state["a"]["status"] == "cancelled" and state["a"]["text"] == "half an ans"
    assert state["b"]["status"] == "done"
    assert state["c"]["status"] == "cancelled"
    assert not any(s["winner"] for s in state.values())
    view.on_text("a", "late")  # a stale delta after finish changes nothing
    assert view.state()["a"]["text"] == "half an ans"


def consensus(tally: Tally | None, winner_index: int | None) -> ConsensusResult:
    responses = [response("gpt", "4"), response("claude", "four"), response("llama", "")]
    responses[2].status, responses[2].error = "error", "boom"
    result = ConsensusResult(
        winner=None if winner_index is None else responses[winner_index],
        responses=responses,
        strategy="judge",
        reason="majority of 3 judge(s): B (claude)" if winner_index == 1 else "a tie",
        group_id="g",
        votes=tally,
        candidates={"A": "gpt", "B": "claude"},
    )
    for judge, row in (tally.points if tally else {}).items():
        top = [label for label, p in row.items() if p == max(row.values()) and p > 0]
        winner = top[0] if len(top) == 1 else TIE
        reason = (
            "" if winner != TIE else "position bias: verdict flipped when the order was swapped"
        )
        result.verdicts[judge] = Verdict(winner, (), reason)
    return result


def test_votes_table_has_a_row_per_judge_and_a_column_per_candidate_model() -> None:
    points = {
        "j1": {"A": 0.0, "B": 1.0},
        "j2": {"A": 0.0, "B": 1.0},
        "j3": {"A": 1.0, "B": 0.0},
    }
    tally = Tally(("j1", "j2", "j3"), ("A", "B"), points, "B", "majority")
    view = RaceView(["gpt", "claude", "llama"], show_votes=True)
    assert view.votes_state() == []
    view.finish(consensus(tally, 1))

    assert view.votes_state() == [
        {"judge": "j1", "gpt": 0.0, "claude": 1.0, "verdict": "claude"},
        {"judge": "j2", "gpt": 0.0, "claude": 1.0, "verdict": "claude"},
        {"judge": "j3", "gpt": 1.0, "claude": 0.0, "verdict": "gpt"},
    ]
    assert [m for m, s in view.state().items() if s["winner"]] == ["claude"]
    assert view.votes in view.widget.children
    table = view.votes.value
    assert "<th" in table and "claude" in table and "winner: claude" in table
    assert "majority of 3 judge(s)" in view.widget.children[2].value


def test_a_tied_vote_has_no_winner() -> None:
    points = {"j1": {"A": 1.0, "B": 0.0}, "j2": {"A": 0.0, "B": 1.0}}
    tally = Tally(("j1", "j2"), ("A", "B"), points, TIE, "majority")
    view = RaceView(["gpt", "claude", "llama"], show_votes=True)
    result = consensus(tally, None)
    view.set_votes(result)
    view.finish(result)

    assert view.votes_state() == [
        {"judge": "j1", "gpt": 1.0, "claude": 0.0, "verdict": "gpt"},
        {"judge": "j2", "gpt": 0.0, "claude": 1.0, "verdict": "claude"},
    ]
    assert not any(s["winner"] for s in view.state().values())
    assert "— tie" in view.votes.value
    assert "no winner" in view.widget.children[2].value
    assert view.state()["llama"]["status"] == "failed"


def test_a_judge_whose_verdict_flipped_shows_a_tie_not_zeros() -> None:
    points = {"fair": {"A": 0.0, "B": 1.0}, "biased": {"A": 0.0, "B": 0.0}}
    tally = Tally(("fair", "biased"), ("A", "B"), points, "B", "majority")
    view = RaceView(["gpt", "claude", "llama"], show_votes=True)
    view.finish(consensus(tally, 1))
    rows = {row["judge"]: row["verdict"] for row in view.votes_state()}
    assert rows == {"fair": "claude", "biased": "tie (flipped when swapped)"}
    assert "tie (flipped when swapped)" in view.votes.value


def test_judge_calls_show_live_from_the_loop_thread_and_end_in_the_result() -> None:
    view = RaceView(["gpt", "claude"], show_votes=True)
    assert view.judging in view.widget.children and view.judging.value == ""
    shown: list[str] = []
    view.judging.observe(lambda change: shown.append(change["new"]), names="value")
    voted = JudgeEvent("j1", False, "voted", winner="B", model="claude", shown_as="B",
                       latency_ms=412.0)  # fmt: skip

    def loop_thread() -> None:
        view.on_judge(JudgeEvent("j1", False, "queued"))
        view.on_judge(JudgeEvent("j1", True, "queued"))
        view.on_judge(JudgeEvent("j1", False, "pending"))
        view.on_judge(voted)
        view.on_judge(JudgeEvent("j1", True, "pending"))

    worker = threading.Thread(target=loop_thread)
    worker.start()
    worker.join()
    assert len(shown) == 5  # every change reached the widget
    assert 'data-order="first" data-status="pending"' in shown[2]
    assert view.judging_state() == [
        {"judge": "j1", "order": "first order", "status": "voted",
         "verdict": "claude (shown as B)", "latency_ms": 412.0},
        {"judge": "j1", "order": "swapped order", "status": "pending", "verdict": "",
         "latency_ms": None},
    ]  # fmt: skip
    assert "1 of 2 judge calls ended" in view.judging.value

    result = consensus(None, None)  # the call ended: its result has the last word
    swapped = JudgeEvent("j1", True, "voted", winner="B", model="claude", shown_as="A")
    result.judge_calls = [voted, swapped]
    view.finish(result)
    assert [row["status"] for row in view.judging_state()] == ["voted", "voted"]
    assert 'data-order="swapped" data-status="voted"' in view.judging.value
    state = view.final_state()
    assert state.judging == [voted, swapped]
    children = list(view.widget.children)
    assert children.index(view.judging) < children.index(view.votes)


def test_judge_calls_unfinished_when_the_call_ends_are_cancelled() -> None:
    view = RaceView(["gpt", "claude"])  # a race view: the judging section appears on demand
    assert view.judging not in view.widget.children
    view.on_judge(JudgeEvent("j", False, "pending"))
    view.on_judge(JudgeEvent("j", True, "queued"))
    assert view.judging in view.widget.children
    view.finish(None, stopped=True)
    assert [row["status"] for row in view.judging_state()] == ["cancelled", "cancelled"]
    assert "2 of 2 judge calls ended" in view.judging.value


def test_stop_says_the_user_stopped_it_and_keeps_a_failed_try_in_sight() -> None:
    view = RaceView(["flaky", "slow", "idle"])
    view.on_text("flaky", "par")
    view.on_finish(response("flaky", "par", status="error", error="HTTP 503 Service Unavailable"))
    view.on_text("flaky", "second try")  # the retry
    view.on_text("slow", "half")
    view.finish(None, stopped=True)
    state = view.final_state()
    panels = {p.model: p for p in state.panels}
    assert panels["flaky"].failed_tries == ["error: HTTP 503 Service Unavailable"]
    for name in ("flaky", "slow", "idle"):
        assert panels[name].status == "cancelled" and panels[name].stopped
        stats = panel_parts(view, name)[2].value
        assert "stopped by you" in stats and "no reason" not in stats
    assert "try 1: error: HTTP 503" in panel_parts(view, "flaky")[2].value
    assert "stopped" in panel_parts(view, "slow")[0].value


def test_layout_columns_and_repeated_models() -> None:
    def columns(n: int) -> str:
        view = RaceView([f"m{i}" for i in range(n)])
        return str(view.widget.children[1].layout.grid_template_columns)

    assert columns(2).startswith("repeat(2,")
    assert columns(3).startswith("repeat(3,")
    assert columns(4).startswith("repeat(2,")
    assert columns(5).startswith("repeat(3,")
    with pytest.raises(ConfigError):
        RaceView(["a", "a"])
    with pytest.raises(ConfigError):
        RaceView([])


def test_importing_mmo_magic_does_not_import_ipywidgets() -> None:
    code = (
        "import sys, mmo_magic\n"
        "heavy = ('ipywidgets', 'IPython', 'mmo_magic.notebook.widgets')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
