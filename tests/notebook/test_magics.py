"""The magics through a real InteractiveShell, against the simulated provider."""

from __future__ import annotations

import re
import signal
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from helpers import eventually, magic_shell, sim_models
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.storage.cache import ResponseCache


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        for base in ("oa", "an", "lo"):
            for mid in ("sim-echo", "sim-fast?fail=500", "sim-slow?tokens=40&tps=20"):
                o.add_model(o.catalogue.resolve(base).replace(name=f"{base}:{mid}", model_id=mid))
        yield o


@pytest.fixture
def ip(orc):
    with magic_shell(orc) as shell:
        yield shell


@pytest.fixture
def live_ip(ip):
    """The shell as a kernel's: display updates and widgets (a stand-in kernel object).

    ``ip`` alone has no kernel, like terminal IPython: the magics print text there.
    """
    ip.kernel = object()
    ip.run_line_magic("unload_ext", "mmo_magic")
    ip.run_line_magic("load_ext", "mmo_magic")  # formatters for a kernel's shell
    yield ip
    del ip.kernel


def run(ip, magic: str, line: str, cell: str | None = None):
    with capture_output() as cap:
        if cell is None:
            value = ip.run_line_magic(magic, line)
        else:
            value = ip.run_cell_magic(magic, line, cell)
    return value, cap


def texts(cap) -> list[str]:
    """Every displayed output as text (markdown or plain)."""
    out = []
    for o in cap.outputs:
        out.append(o.data.get("text/markdown") or o.data.get("text/plain", ""))
    return out


def test_mmo_streams_the_answer_and_ends_with_a_footer(ip, sim):
    _, cap = run(ip, "mmo", "oa:sim-echo", "Tell me about owls")
    assert cap.stdout == "Tell me about owls\n"  # no kernel: printed as it arrives
    footer = texts(cap)[-1]
    for field in ("oa:sim-echo", "4→4 tokens", "ttft", "ms", "$"):
        assert field in footer
    assert cap.stderr == ""


def test_interpolation_and_literal_braces(ip, sim):
    ip.user_ns["animal"] = "owl"
    cell = 'Describe the {animal}. Keep {{braces}} and JSON {"a": 1} as written.'
    run(ip, "mmo", "oa:sim-echo", cell)
    sent = sim.last_request("sim-echo")["body"]["messages"][-1]["content"]
    assert sent == 'Describe the owl. Keep {braces} and JSON {"a": 1} as written.'
    run(ip, "mmo", "oa:sim-echo --no-interpolate", cell)
    assert sim.last_request("sim-echo")["body"]["messages"][-1]["content"] == cell


def test_missing_variable_is_one_line(ip, sim):
    _, cap = run(ip, "mmo", "oa", "Hello {nobody_defined_this}")
    assert cap.stderr.count("\n") == 1 and "TemplateError" in cap.stderr
    assert "--no-interpolate" in cap.stderr and sim.request_count() == 0


def test_out_variable_and_options_reach_the_wire(ip, sim):
    run(
        ip,
        "mmo",
        "an:sim-echo -o answer -s 'Be terse' --temperature 0.3 --max-tokens 3",
        "a b c d e",
    )
    answer = ip.user_ns["answer"]
    assert isinstance(answer, mmo.CompletionResponse) and answer.content == "a b c"
    body = sim.last_request("sim-echo")["body"]
    assert (body["system"], body["temperature"], body["max_tokens"]) == ("Be terse", 0.3, 3)


def test_with_a_kernel_the_answer_streams_into_one_display(live_ip, orc):
    model = replying(orc, "one two three four five six", tps="40")
    _, cap = run(live_ip, "mmo", model, "count")
    answer = [o for o in cap.outputs if "text/markdown" in o.data]
    assert answer[0].update is False and all(o.update for o in answer[1:])
    assert any(o.data["text/markdown"].endswith("▌") for o in answer)
    final = answer[-1].data
    assert final == {"text/markdown": "one two three four five six",
                     "text/plain": "one two three four five six"}  # fmt: skip
    assert cap.stdout == ""


def test_stop_during_mmo_removes_the_streaming_cursor(live_ip, orc, sim):
    model = replying(orc, " ".join(f"w{i}" for i in range(200)), tps="20")
    orc.complete("warm up", model=model, max_tokens=1)  # the SDK's first use: >1 s when loaded
    main = threading.main_thread().ident
    sent = sim.request_count()

    def interrupt() -> None:
        # Stop once the answer is streaming (200 words at 20/s take 10 s), however slow
        # the machine is to send the request.
        eventually(lambda: sim.request_count() > sent, "the request to reach the sim")
        time.sleep(0.8)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    _, cap = run(live_ip, "mmo", model, "long")
    assert "Stopped" in cap.stderr
    answer = [o.data for o in cap.outputs if "text/markdown" in o.data]
    assert any(d["text/markdown"].endswith("▌") for d in answer)  # it was streaming
    assert (
        answer[-1]["text/markdown"].startswith("w0 w1") and "▌" not in answer[-1]["text/markdown"]
    )


def test_no_stream_shows_one_answer(ip):
    _, cap = run(ip, "mmo", "oa:sim-echo --no-stream -f text", "plain words")
    assert texts(cap) == ["plain words", texts(cap)[-1]]


def replying(orc, text: str, **options: str) -> str:
    """A model (on the simulated provider) that answers ``text``; its name."""
    name = f"says-{len(orc.catalogue)}"
    mid = "&".join([f"sim-fast?reply={quote(text)}", *(f"{k}={v}" for k, v in options.items())])
    orc.add_model(orc.catalogue.resolve("oa").replace(name=name, model_id=mid))
    return name


def test_format_code_offers_the_next_cell(ip, orc, monkeypatch):
    offered = []
    monkeypatch.setattr(ip, "set_next_input", lambda text, replace=False: offered.append(text))
    model = replying(orc, "Here:\n```python\nprint(42)\n```\nDone.")
    _, cap = run(ip, "mmo", f"{model} -f code", "code please")
    assert offered == ["print(42)"]
    assert cap.stdout.endswith("```\nDone.\nprint(42)\n")  # streamed, then the code alone
    _, cap = run(ip, "mmo", f"{model} -f code --no-stream", "code please")
    assert texts(cap)[-2] == "```\nprint(42)\n```"
    assert cap.outputs[-2].data["text/plain"] == "print(42)"


def test_format_json(ip, orc):
    model = replying(orc, '{"city": "Paris", "rank": 1}')
    _, cap = run(ip, "mmo", f"{model} -f json", "as json")
    assert any(o.data.get("application/json") == {"city": "Paris", "rank": 1} for o in cap.outputs)


def test_route_and_task_options(ip, orc):
    _, cap = run(ip, "mmo", "-r task -o r", "Write a Python function that sorts a list")
    assert ip.user_ns["r"].route_reason.startswith("task:")
    assert "task" in texts(cap)[-1]
    run(ip, "mmo", "-t coding -o r2", "hello")
    assert "task coding" in ip.user_ns["r2"].route_reason
    _, cap = run(ip, "mmo", "-t cooking", "hello")
    assert "Unknown task 'cooking'" in cap.stderr
    _, cap = run(ip, "mmo", "-t codng", "hello")
    assert "InvalidRequestError" in cap.stderr and "Did you mean 'coding'?" in cap.stderr


def test_fallback_budget_and_cache_options(ip, orc, sim):
    run(ip, "mmo", "oa:sim-fast?fail=500 --fallback an:sim-echo -o r", "rescue me")
    assert ip.user_ns["r"].model == "an:sim-echo"
    _, cap = run(ip, "mmo", "oa --budget 0.0000001", "too expensive")
    assert "BudgetExceededError" in cap.stderr and cap.stderr[-1] == "\n"
    orc.cache = ResponseCache(":memory:")
    magics = next(c for c in ip.configurables if type(c).__name__ == "MMOMagics")
    assert magics.cache is False
    before = sim.request_count()
    run(ip, "mmo", "lo:sim-echo", "cache me")
    _, cap = run(ip, "mmo", "lo:sim-echo", "cache me")  # the magics' cache is off by default
    assert "cached" not in texts(cap)[-1] and sim.request_count() == before + 2
    ip.run_line_magic("config", "MMOMagics.cache = True")
    run(ip, "mmo", "lo:sim-echo", "cache me")
    _, cap = run(ip, "mmo", "lo:sim-echo", "cache me")
    assert "cached" in texts(cap)[-1]
    before = sim.request_count()
    run(ip, "mmo", "lo:sim-echo --no-cache", "cache me")
    assert sim.request_count() == before + 1


def test_errors_are_one_line_and_the_next_cell_works(ip, orc):
    _, cap = run(ip, "mmo", "gpt-4o-mni", "hi")
    assert cap.stderr.startswith("UnknownModelError") and cap.stderr.count("\n") == 1
    _, cap = run(ip, "mmo", "oa", "   ")
    assert cap.stderr.startswith("InvalidRequestError")
    with pytest.raises(UsageError):
        ip.run_cell_magic("mmo", "oa --temperature hot", "hi")
    with pytest.raises(UsageError):
        ip.run_cell_magic("mmo", "oa -f yaml", "hi")
    _, cap = run(ip, "mmo", "oa:sim-echo", "still fine")
    assert cap.stdout == "still fine\n"
    assert [r.status for r in orc.runs.records()][-3:] == ["error", "error", "ok"]


def test_unexpected_bugs_still_show_a_traceback(ip, orc, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(orc, "complete", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        ip.run_cell_magic("mmo", "oa --no-stream", "hi")


RACE = "oa:sim-fast?fail=500,an:sim-echo,lo:sim-slow?tokens=40&tps=20"


def test_race_magic_shows_panels_and_returns_the_result(live_ip, sim):
    value, cap = run(live_ip, "mmo_race", f"{RACE} Who wins")
    assert isinstance(value, mmo.RaceResult) and value.winner.model == "an:sim-echo"
    assert [r.status for r in value.responses] == ["error", "ok", "cancelled"]
    assert value.winner.content == "Who wins"
    first, last = cap.outputs[0], cap.outputs[-1]
    # During the run: the live widget, with a text form for frontends without widgets.
    assert "application/vnd.jupyter.widget-view+json" in first.data
    assert first.data["text/plain"].startswith("racing oa:sim-fast?fail=500, an:sim-echo")
    # At the end: the same display replaced by a static rendering of the final state.
    assert last.update and last.transient == first.transient
    assert set(last.data) == {"text/plain", "text/html"}
    html, plain = last.data["text/html"], last.data["text/plain"]
    assert 'data-model="an:sim-echo" data-status="done"' in html and "🏆" in html
    assert 'data-model="oa:sim-fast?fail=500" data-status="failed"' in html and "HTTP 500" in html
    assert 'data-model="lo:sim-slow?tokens=40&amp;tps=20" data-status="cancelled"' in html
    assert "── an:sim-echo · done  🏆 winner\nWho wins\n" in plain
    assert "winner: an:sim-echo — first successful answer" in plain
    # The live view already shows the result: no Out[] repeats it under the widget.
    shown, _ = live_ip.display_formatter.format(value)
    assert shown == {}
    # A result no live view showed (made in code, say) displays in full, text and HTML.
    other = mmo.RaceResult(value.winner, value.responses, "g")
    with capture_output() as cap:
        live_ip.display_formatter.format(other)
    assert "data-status" in cap.outputs[0].data["text/html"]
    assert "Who wins" in cap.outputs[0].data["text/plain"]


def test_without_a_kernel_a_race_result_has_a_text_form(ip):
    value, cap = run(ip, "mmo_race", f"{RACE} Who wins")
    assert "── an:sim-echo · done  🏆 winner" in cap.stdout
    shown, _ = ip.display_formatter.format(value)
    # Out[] does not print the summary line a second time (issue 28 #14): it names the value.
    assert shown == {"text/plain": "<RaceResult: winner an:sim-echo, 3 answers>"}
    assert cap.stdout.count("first successful answer") == 1
    other, _ = ip.display_formatter.format(mmo.RaceResult(value.winner, value.responses, "g"))
    assert "── an:sim-echo · done  🏆 winner\nWho wins" in other["text/plain"]
    assert "data-status" in other["text/html"]


def test_race_cell_form_with_judges(ip, orc):
    orc.add_model(
        orc.catalogue.resolve("an").replace(
            name="judge", model_id="sim-fast?reply=judge&prefer=second"
        )
    )
    ip.run_cell_magic("mmo_race", "--judge judge -o res oa:sim-echo,lo", "the second one")
    result = ip.user_ns["res"]
    assert isinstance(result, mmo.ConsensusResult) and result.winner.model == "oa:sim-echo"
    assert result.votes is not None and result.votes.winner == "A"
    assert set(result.candidates.values()) == {"oa:sim-echo", "lo"}


def judging_cast(orc, judge_latency_ms: int = 300) -> None:
    """Two answers (Paris right, Lyon wrong), a slow fair judge and a judge that always says A."""
    for name, mid in {
        "geographer": "sim-fast?reply=Paris+is+the+capital+of+France.",
        "guesser": "sim-fast?reply=Lyon,+I+think.",
        "patient": f"sim-fast?reply=judge&prefer=paris&latency_ms={judge_latency_ms}",
        "biased": "sim-fast?reply=" + quote('{"winner":"A","reason":"first"}'),
    }.items():
        orc.add_model(orc.catalogue.resolve("oa").replace(name=name, model_id=mid))


def test_judged_race_shows_each_judge_call_live_then_in_the_static_rendering(
    live_ip, orc, monkeypatch
):
    from mmo_magic.notebook.widgets import RaceView

    judging_cast(orc)
    seen: list[tuple[Any, list[dict[str, object]], str, bool]] = []
    on_judge = RaceView.on_judge

    def watched(view: RaceView, event: Any) -> None:  # what the widget showed after each event
        on_judge(view, event)
        shown = view.judging in view.widget.children
        seen.append((event, view.judging_state(), view.judging.value, shown))

    monkeypatch.setattr(RaceView, "on_judge", watched)
    result, cap = run(
        live_ip, "mmo_race", "guesser,geographer --judge patient,biased", "Capital of France?"
    )
    assert result.winner.model == "geographer"

    def row(state: list[dict[str, object]], judge: str, order: str) -> dict[str, object]:
        return next(r for r in state if r["judge"] == judge and r["order"] == order)

    # While the patient judge thinks (300 ms a call), its first-order row is pending in the
    # widget, its swapped row queued; then it votes, and its swap pass is pending.
    waiting = [
        (state, html, shown)
        for event, state, html, shown in seen
        if event.judge == "patient" and event.status == "pending" and not event.swapped
    ]
    assert len(waiting) == 1
    state, html, shown = waiting[0]
    assert shown and row(state, "patient", "swapped order")["status"] == "queued"
    assert 'data-judge="patient" data-order="first" data-status="pending"' in html
    voted = [s for e, s, _, _ in seen if e.judge == "patient" and e.status == "voted"]
    first, swapped = voted[0], voted[1]
    assert row(first, "patient", "first order")["verdict"] == "geographer (shown as B)"
    assert row(first, "patient", "first order")["latency_ms"] >= 300
    swap_pending = next(s for e, s, _, _ in seen if e.judge == "patient" and e.swapped
                        and e.status == "pending")  # fmt: skip
    assert row(swap_pending, "patient", "first order")["status"] == "voted"
    assert row(swapped, "patient", "swapped order")["verdict"] == "geographer (shown as A)"
    final = seen[-1][1]
    assert row(final, "biased", "first order")["verdict"] == "guesser (shown as A)"
    assert row(final, "biased", "swapped order")["verdict"] == "geographer (shown as A)"

    # The static rendering left behind: every judge call, then the votes table.
    last = cap.outputs[-1].data
    html, plain = last["text/html"], last["text/plain"]
    assert html.count('data-status="voted"') == 4 and "mmo-votes" in html
    assert html.index("mmo-judging") < html.index("mmo-votes")
    assert "widget-view" not in str(last)
    assert re.search(r"  patient · first order: voted geographer \(shown as B\) · \d+ ms", plain)
    assert "  biased · swapped order: voted geographer (shown as A)" in plain
    assert re.search(r"biased\s+0\s+0\s+tie \(flipped when swapped\)", plain)


def test_a_consensus_result_made_in_code_renders_its_judge_calls(ip, orc):
    judging_cast(orc, judge_latency_ms=0)
    result = orc.consensus("Capital?", ["guesser", "geographer"], judges=["patient", "biased"])
    shown, _ = ip.display_formatter.format(result)
    assert "patient · swapped order: voted geographer (shown as A)" in shown["text/plain"]
    assert shown["text/html"].count('data-status="voted"') == 4


def test_mmo_all_and_consensus_options(ip):
    run(ip, "mmo", "--all oa,an:sim-fast?fail=500 -o every", "hello")
    assert [r.status for r in ip.user_ns["every"].responses] == ["ok", "error"]
    run(ip, "mmo", "--consensus oa,an,lo --strategy longest -o c", "hello")
    assert ip.user_ns["c"].strategy == "longest" and ip.user_ns["c"].winner is not None


def test_runs_models_and_route_magics(ip, orc, sim, tmp_path):
    run(ip, "mmo", "oa:sim-echo", "one")
    run(ip, "mmo", "an:sim-echo", "two")
    frame, _ = run(ip, "mmo_runs", "--last 2")
    assert list(frame["prompt"]) == ["one", "two"]
    target = tmp_path / "runs.csv"
    _, cap = run(ip, "mmo_runs", f"--export {target}")
    assert target.exists() and "Exported" in cap.stdout
    models, _ = run(ip, "mmo_models", "")
    assert {"oa", "an", "lo"} <= set(models["name"])
    before = sim.request_count()
    decision, _ = run(ip, "mmo_route", "-r task Translate 'good morning' into Japanese")
    assert decision.label == "translation" and sim.request_count() == before


def test_runs_default_to_this_session_newest_last_and_all_adds_the_rest(ip, orc):
    from mmo_magic.storage.runlog import RunRecord

    orc.runs.add(
        RunRecord(requested_model="oa", status="ok", prompt="yesterday", session_id="earlier")
    ).result(timeout=5)
    run(ip, "mmo", "oa:sim-echo", "first")
    run(ip, "mmo", "oa:sim-echo", "second")
    frame, _ = run(ip, "mmo_runs", "")
    assert list(frame["prompt"]) == ["first", "second"]  # this session, newest last
    assert "oa:sim-echo" in repr(frame) and "second" in frame._repr_html_()
    everything, _ = run(ip, "mmo_runs", "--all")
    assert list(everything["prompt"]) == ["yesterday", "first", "second"]
    picked, _ = run(ip, "mmo_runs", "--columns model,prompt")
    assert (
        "<th>prompt</th>" in picked._repr_html_()
        and "<th>latency_ms</th>" not in picked._repr_html_()
    )
    _, cap = run(ip, "mmo_runs", "--columns modle")
    assert "Unknown run-log column 'modle'" in cap.stderr


def test_pipeline_magic(ip, sim):
    cell = """
[facts] oa:sim-echo
Facts about {topic}.
[summary] an:sim-echo max_tokens=50
Summary of: {facts}
"""
    _, cap = run(ip, "mmo_pipeline", "topic=owls -o pipe", cell)
    result = ip.user_ns["pipe"]
    assert result.ok and result.outputs["summary"] == "Summary of: Facts about owls."
    shown = [t for t in texts(cap) if t.startswith("**")]
    assert shown[0].startswith("**facts** · oa:sim-echo") and shown[1].startswith("**summary**")
    _, cap = run(ip, "mmo_pipeline", "", "no header here")
    assert "ConfigError" in cap.stderr


def test_config_traitlets_change_the_shared_orchestrator(ip, orc, sim):
    ip.run_line_magic("config", "MMOMagics.default_model = 'an:sim-echo'")
    _, cap = run(ip, "mmo", "", "who answers")
    assert texts(cap)[-1].startswith("an:sim-echo")
    ip.run_line_magic("config", "MMOMagics.budget = 0.5")
    assert orc.budget.limit == 0.5
    ip.run_line_magic("config", "MMOMagics.stream = False")
    _, cap = run(ip, "mmo", "", "no stream")
    assert len(cap.outputs) == 2


def test_unload_leaves_nothing_behind(ip):
    ip.run_line_magic("unload_ext", "mmo_magic")
    for kind in ("line", "cell"):
        assert not [n for n in ip.magics_manager.magics[kind] if n.startswith("mmo")]
    assert not [c for c in ip.configurables if type(c).__name__ == "MMOMagics"]
    html = ip.display_formatter.formatters["text/html"]
    assert not [k for k in html.deferred_printers if k[0].startswith("mmo_magic")]
    assert not [t for t in html.type_printers if t.__module__.startswith("mmo_magic")]
    ip.run_line_magic("load_ext", "mmo_magic")  # and it loads again
    assert "mmo" in ip.magics_manager.magics["cell"]


def test_interrupt_during_a_race_cancels_every_request(ip, orc, sim):
    slow = ["oa:sim-slow?tokens=40&tps=20", "an:sim-slow?tokens=40&tps=20"]
    for name, base in zip(slow, ("oa", "an"), strict=True):
        mid = "sim-fast?ttft_ms=5000"
        orc.add_model(orc.catalogue.resolve(base).replace(name=name, model_id=mid))
    main = threading.main_thread().ident

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while sim.request_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    value, cap = run(ip, "mmo_race", ",".join(slow) + " wait for it")
    assert value is None and "Stopped" in cap.stderr
    # Each panel says the user stopped it, not "cancelled: no reason given".
    for model in slow:
        assert f"── {model} · stopped\n   cancelled: stopped by you" in cap.stdout
    assert "no reason" not in cap.stdout
    deadline = time.monotonic() + 3
    while len(sim.disconnects) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sim.disconnects) == 2
    assert [r.status for r in orc.runs.records()[-2:]] == ["cancelled", "cancelled"]
    _, cap = run(ip, "mmo", "oa:sim-echo", "next cell")
    assert cap.stdout == "next cell\n"


def test_interrupt_during_a_pipeline_cancels_its_request(ip, orc, sim):
    """The stop button during %%mmo_pipeline cancels the step under way (its HTTP stream is
    closed, its record says cancelled) rather than leaving it running in the background."""
    model_id = "sim-fast?fault=hang&hold_s=20"
    orc.add_model(orc.catalogue.resolve("oa").replace(name="oa:hang", model_id=model_id))
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while sim.request_count(model_id) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    started = time.monotonic()
    value, cap = run(ip, "mmo_pipeline", "topic=owls", "[facts] oa:hang\nFacts about {topic}.")
    assert value is None and "Stopped" in cap.stderr
    assert time.monotonic() - started < 10  # not the 20 s the model holds the request
    deadline = time.monotonic() + 3
    while not sim.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [d.phase for d in sim.disconnects] == ["waiting"]
    assert orc.runs.records()[-1].status == "cancelled"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("oa:sim-echo 'unterminated", "No closing quotation"),
        ("oa:sim-echo -o 1bad", "-o 1bad is not a variable name"),
        ("oa:sim-echo -o class", "-o class is not a variable name"),
    ],
)
def test_a_bad_line_is_one_error_line_and_sends_nothing(ip, sim, line, message):
    sent = sum(sim.requests.values())
    value, cap = run(ip, "mmo", line, "hello")
    assert value is None and message in cap.stderr and "Traceback" not in cap.stderr
    assert len(cap.stderr.strip().splitlines()) == 1
    assert "1bad" not in ip.user_ns and sum(sim.requests.values()) == sent
    value, _ = run(ip, "mmo", "oa:sim-echo -o fine", "hello")  # the kernel is still usable
    assert ip.user_ns["fine"].content == "hello"
