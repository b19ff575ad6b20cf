"""The static forms of results: text never turns into HTML or math, colours follow the theme."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("IPython")

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionResponse
from mmo_magic.notebook import rendering, tables
from mmo_magic.notebook.rendering import PanelState, RaceState, Votes
from mmo_magic.orchestration.judges import TIE, JudgeEvent


def markdown_to_html(text: str) -> str:
    """What a CommonMark renderer makes of ``text`` (markdown-it, as nbconvert uses)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(text)


def test_escaped_markdown_renders_as_the_same_text() -> None:
    nasty = "write <code>, 'python' $1.10 … $1.00 *not bold* `tick` [link](x) # h _u_ a\\b"
    out = markdown_to_html(rendering.escape_markdown(nasty))
    assert "<code>" not in out and "<em>" not in out and "<a " not in out and "<h1" not in out
    text = re.sub(r"<[^>]+>", "", out).strip()
    import html

    # Each dollar reaches the HTML as \$, which MathJax (processEscapes, as JupyterLab and
    # nbconvert run it after Markdown) shows as a dollar and never as the start of math.
    assert "\\$1.10" in text and "$" not in text.replace("\\$", "")
    assert html.unescape(text).replace("\\$", "$") == nasty


def test_route_decision_markdown_keeps_prompt_text_as_text(sim, keys) -> None:
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "mmo_magic")
        with capture_output():
            decision = shell.run_line_magic(
                "mmo_route", "-r task Write a Python function that merges two sorted lists."
            )
        assert "<code>" in decision.reason  # the cue, quoted as written
        shown, _ = shell.display_formatter.format(decision)
        rendered = markdown_to_html(shown["text/markdown"])
        assert "<code>" not in rendered and "&lt;code&gt;" in rendered
        assert shown["text/plain"].startswith(f"RouteDecision: {decision.model} · router task")
        assert decision.reason in shown["text/plain"]
    finally:
        shell.run_line_magic("unload_ext", "mmo_magic")
        InteractiveShell.clear_instance()


def response(model: str, content: str, **fields: object) -> CompletionResponse:
    values: dict[str, object] = {"provider": "openai", "latency_ms": 12.0, "cost": 0.01}
    values.update(fields)
    return CompletionResponse(content=content, model=model, **values)  # type: ignore[arg-type]


def finished_race() -> RaceState:
    win = PanelState("a", "done", "costs $1 <b>not bold</b>", response("a", "x"), winner=True)
    lost = PanelState(
        "b",
        "cancelled",
        "",
        response("b", "", status="cancelled", error="another model answered first", cost=None),
        failed_tries=["error: HTTP 503"],
    )
    votes = Votes(
        ["a", "b"],
        [{"judge": "j", "a": 1.0, "b": 0.0, "verdict": "a"}],
        {"a": 1.0, "b": 0.0},
        "a",
        "majority",
        {},
    )
    judging = [
        JudgeEvent("j", False, "voted", winner="A", model="a", shown_as="A", latency_ms=5.2),
        JudgeEvent("j", True, "voted", winner="A", model="a", shown_as="B", latency_ms=7.0),
    ]
    return RaceState(
        "Q <i>?</i>", [win, lost], "a", "first successful answer", votes, True, judging
    )


def test_static_html_escapes_text_ignores_math_and_uses_theme_colours() -> None:
    out = rendering.race_html(finished_race())
    assert "&lt;b&gt;not bold&lt;/b&gt;" in out and "<b>not bold</b>" not in out
    assert "Q &lt;i&gt;?&lt;/i&gt;" in out
    assert 'class="mmo-race mathjax_ignore tex2jax_ignore"' in out  # "$1 … $0.01" is money
    # Text colours come from the theme (with fallbacks); no text is drawn in a fixed white.
    colours = re.findall(r"(?<![-\w])color:([^;\"]+)", out)
    assert colours and all(c.startswith("var(--jp-") for c in colours), set(colours)
    backgrounds = re.findall(r"background:([^;\"]+)", out)
    assert backgrounds and all(b.startswith("var(--jp-layout-color") for b in backgrounds)
    assert not re.search(r"color:\s*(white|#fff)", out, re.IGNORECASE)
    assert 'data-model="a" data-status="done"' in out and "🏆" in out
    assert "try 1: error: HTTP 503" in out
    assert 'data-judge="j" data-order="swapped" data-status="voted"' in out
    assert out.index("mmo-judging") < out.index("mmo-votes")  # the calls, then their tally


def test_text_form_has_answers_statuses_winner_and_votes() -> None:
    text = rendering.race_text(finished_race())
    assert text.splitlines()[:3] == [
        "Q <i>?</i>",
        "── a · done  🏆 winner",
        "costs $1 <b>not bold</b>",
    ]
    assert "── b · cancelled\n   try 1: error: HTTP 503\n   cancelled: another model" in text
    assert "winner: a — first successful answer — done 1 · cancelled 1" in text
    assert "judges' votes (majority) — winner: a\njudge  a  b  verdict\nj      1  0  a" in text
    assert (
        "judging (each judge reads the answers in both orders) — 2 of 2 judge calls ended\n"
        "  j · first order: voted a (shown as A) · 5 ms\n"
        "  j · swapped order: voted a (shown as B) · 7 ms\n"
        "judges' votes"
    ) in text


def test_judge_calls_read_as_one_line_each_whatever_their_state() -> None:
    calls = [
        JudgeEvent("slow", False, "pending"),
        JudgeEvent("slow", True, "queued"),
        JudgeEvent("fickle", False, "voted", winner=TIE, latency_ms=30.0),
        JudgeEvent("fixed", False, "voted", winner="B", model="m2", shown_as="B", repaired=True),
        JudgeEvent("down", False, "failed", latency_ms=3.0, error="HTTP 500: boom\ntraceback"),
        JudgeEvent("down", True, "skipped", error="its first-order pass gave no verdict"),
        JudgeEvent("late", False, "cancelled"),
    ]
    assert [rendering.judge_line(c) for c in calls] == [
        "slow · first order: pending",
        "slow · swapped order: queued",
        "fickle · first order: voted tie · 30 ms",
        "fixed · first order: voted m2 (shown as B) after a repair",
        "down · first order: failed (no usable verdict: HTTP 500: boom) · 3 ms",
        "down · swapped order: skipped (its first-order pass gave no verdict)",
        "late · first order: cancelled",
    ]
    assert rendering.judging_text(calls).splitlines()[0] == (
        "judging (each judge reads the answers in both orders) — 5 of 7 judge calls ended"
    )
    out = rendering.judging_html(calls)
    assert out.count("<tr data-judge=") == 7 and "traceback" not in out
    assert 'data-judge="slow" data-order="first" data-status="pending"' in out
    # Status colours draw borders only; text is in the theme's content colour (dark-safe).
    colours = re.findall(r"(?<![-\w])color:([^;\"]+)", out)
    assert colours and all(c.startswith("var(--jp-content-font-color") for c in colours)
    assert "--jp-brand-color1" in out and "--jp-error-color1" in out
    assert rendering.judging_html([]) == ""


def test_runs_table_is_compact_and_the_frame_keeps_every_column(sim, keys) -> None:
    from helpers import sim_models

    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False) as orc:
        orc.complete("hello there", model="oa")
        frame = orc.runs.to_dataframe()
    shown = tables.compact_runs(frame)
    assert list(shown.columns) == list(frame.columns)  # the value keeps everything
    html = shown._repr_html_()
    for column in tables.RUN_COLUMNS:
        assert f"<th>{column}</th>" in html
    assert "<th>prompt</th>" not in html and "run_id" not in repr(shown)
    assert type(shown[["model"]]) is type(frame)  # derived frames are plain DataFrames
    picked = tables.runs_table(frame, ["model", "prompt"])
    assert list(picked.columns) == ["model", "prompt"] and picked["prompt"][0] == "hello there"
    with pytest.raises(mmo.ConfigError, match="Unknown run-log column 'nope'"):
        tables.runs_table(frame, ["nope"])
