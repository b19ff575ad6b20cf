"""Issue 28 (what a student sees): the magics' fixes, through a real InteractiveShell."""

from __future__ import annotations

import re
from typing import Any

import pytest
from helpers import magic_shell, sim_models
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.notebook import rendering, tables

ITEMS = [
    {"question": "What is two plus two?", "id": "q1"},
    {"question": "Name a prime.", "id": "q2"},
]
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        for base in ("oa", "lo"):
            o.add_model(o.catalogue.resolve(base).replace(name=f"{base}-echo", model_id="sim-echo"))
        yield o


@pytest.fixture
def ip(orc):
    with magic_shell(orc) as shell:
        shell.user_ns["items"] = ITEMS
        yield shell


def _cell(ip: InteractiveShell, source: str) -> Any:
    with capture_output() as cap:
        ip.run_cell(source)
    return cap


# -- 1: "$" in a markdown answer -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "markdown"),
    [
        # Markdown's "\\" leaves one backslash in the HTML, and MathJax's "\$" a dollar.
        ("Prices: $5 and $6", r"Prices: \\$5 and \\$6"),
        (r"already \$5", r"already \\$5"),
        ("in `$x` code and $y", r"in `$x` code and \\$y"),
        ("```\nprint('$5')\n```\nthen $6", "```\nprint('$5')\n```\nthen \\\\$6"),
        ("no dollars", "no dollars"),
    ],
)
def test_answer_markdown_escapes_dollars_outside_code(answer: str, markdown: str) -> None:
    assert rendering.answer_markdown(answer) == markdown


def test_mmo_markdown_answer_keeps_dollars_literal(ip, orc):
    ip.run_line_magic("config", "MMOMagics.stream = False")
    with capture_output() as cap:
        ip.run_cell_magic("mmo", "oa-echo", "Prices: $5 and $6")
    answer = cap.outputs[0].data
    assert answer["text/markdown"] == r"Prices: \\$5 and \\$6"
    assert answer["text/plain"] == "Prices: $5 and $6"  # the text itself is unchanged


# -- 3: a trailing "?" on a line magic -------------------------------------------------------------


def test_trailing_question_mark_reaches_the_line_magics(ip, orc):
    cap = _cell(ip, "d = %mmo_route What is the capital of France?")
    assert "not found" not in cap.stdout + cap.stderr
    assert isinstance(ip.user_ns["d"], mmo.RouteDecision)
    cap = _cell(ip, "%mmo_race oa-echo,lo-echo -o r What is the capital of France?")
    assert "Object `France` not found" not in cap.stdout
    assert ip.user_ns["r"].winner.content == "What is the capital of France?"
    # The magic's own help still works.
    assert "run_line_magic('pinfo', '%mmo_route')" in ip.transform_cell("%mmo_route?\n")
    ip.run_line_magic("unload_ext", "mmo_magic")
    assert "pinfo" in ip.transform_cell("%mmo_route Is it?\n")  # unloaded: IPython's own way
    ip.run_line_magic("load_ext", "mmo_magic")


# -- 2, 7 and issue 24 #8: %%mmo_batch ------------------------------------------------------------


def test_a_refused_batch_leaves_no_widget_behind(ip, orc, monkeypatch):
    from mmo_magic.notebook import batch_view

    monkeypatch.setattr(batch_view, "_widgets_shown", lambda: True)
    for line in (
        "--data items --models oa-echo,nope",  # unknown model
        "--data items --models oa-echo --budget 0.0000001",  # over budget
    ):
        with capture_output() as cap:
            ip.run_cell_magic("mmo_batch", line, "Q: {question}")
        assert cap.stderr, line
        assert not [o for o in cap.outputs if WIDGET in o.data], line
    with capture_output() as cap:
        ip.run_cell_magic("mmo_batch", "--data items --models oa-echo", "Q: {missing}")
    assert "TemplateError" in cap.stderr and not [o for o in cap.outputs if WIDGET in o.data]


def test_batch_takes_the_api_options(ip, orc, sim):
    ip.user_ns["LIMITS"] = {"oa-echo": {"requests_per_minute": 600}}
    with capture_output() as cap:
        ip.run_cell_magic(
            "mmo_batch",
            "--data items --models oa-echo --key id --temperature 0.3 --limits LIMITS -o br",
            "Q: {question}",
        )
    assert "Error" not in cap.stderr, cap.stderr
    br = ip.user_ns["br"]
    assert set(br.to_dataframe()["key"].astype(str)) == {"q1", "q2"}
    assert sim.last_request("sim-echo")["body"]["temperature"] == 0.3  # reached the wire
    with capture_output() as cap:
        ip.run_cell_magic(
            "mmo_batch",
            "--data items --models oa-echo,lo-echo --judge oa-echo --grade"
            " --criteria 'Is it short?' --limits '{\"lo-echo\": {\"requests_per_minute\": 60}}'"
            " -o judged",
            "Q: {question}",
        )
    assert "Error" not in cap.stderr, cap.stderr
    assert len(ip.user_ns["judged"].to_dataframe()) == 4
    assert "Is it short?" in str(sim.last_request("sim-echo")["body"]["messages"])  # the judge's
    ip.user_ns["BAD"] = {"oa-echo": {"requests_per_minute": -1}}
    with capture_output() as cap:  # the limits reach the batch: it checks them
        ip.run_cell_magic("mmo_batch", "--data items --models oa-echo --limits BAD", "{question}")
    assert "requests_per_minute" in cap.stderr, cap.stderr
    with capture_output() as cap:
        ip.run_cell_magic("mmo_batch", "--data items --models oa-echo --limits nope", "{question}")
    assert "--limits 'nope' is neither a variable nor a JSON object" in cap.stderr


def test_unpriced_hint_names_the_flag_and_the_flag_works(ip, orc):
    orc.add_model(orc.catalogue.resolve("oa").replace(
        name="free", model_id="sim-echo", cost_per_1k_input=None, cost_per_1k_output=None
    ))  # fmt: skip
    with capture_output() as cap:
        ip.run_cell_magic("mmo_batch", "--data items --models free --budget 1", "{question}")
    assert "--allow-unpriced" in cap.stderr and "allow_unpriced=True" not in cap.stderr
    with capture_output() as cap:
        ip.run_cell_magic(
            "mmo_batch",
            "--data items --models free --budget 1 --allow-unpriced -o br",
            "{question}",
        )
    assert "Error" not in cap.stderr and len(ip.user_ns["br"].to_dataframe()) == 2


# -- 8, 13: %mmo_runs ------------------------------------------------------------------------------


def test_runs_show_local_time_labelled_and_unknown_cost_as_na(ip, orc):
    from datetime import datetime

    orc.add_model(orc.catalogue.resolve("oa").replace(
        name="free", model_id="sim-echo", cost_per_1k_input=None, cost_per_1k_output=None
    ))  # fmt: skip
    orc.complete("hello", model="oa-echo")
    orc.complete("hello", model="free")
    runs = ip.run_line_magic("mmo_runs", "")
    text, html = repr(runs), runs._repr_html_()
    assert "<NA>" not in text and "<NA>" not in html and "NaN" not in text
    table = tables.runs_table(runs)
    costs = list(table["cost"])
    assert costs[-1] == "cost n/a" and costs[0].startswith("$")
    assert re.fullmatch(r"\d+", table["latency_ms"][0])  # whole milliseconds
    local = runs["started_at"].iloc[0].tz_convert(datetime.now().astimezone().tzinfo)
    assert table["time"][0] == local.strftime("%H:%M:%S")
    assert "time: local (UTC" in text and "time: local (UTC" in html
    assert html.startswith('<div class="mathjax_ignore tex2jax_ignore">')  # costs are money


# -- 9, 20: %mmo_models ----------------------------------------------------------------------------


def test_models_table_puts_useful_columns_first_and_names_the_host(ip, orc):
    models = ip.run_line_magic("mmo_models", "")
    assert list(models.columns[:5]) == [
        "name", "available", "why_unavailable", "usd_per_1m_input", "usd_per_1m_output"
    ]  # fmt: skip
    assert "host" in models.columns and "…" not in repr(models) and "..." not in repr(models)
    full = mmo.Orchestrator.from_config(runlog=":memory:")
    everything = tables.models_frame(full.catalogue)
    hosts = dict(zip(everything["name"], everything["host"], strict=True))
    mistral = next(n for n in hosts if "mistral" in n)
    assert hosts[mistral] == "api.mistral.ai" and hosts["gpt-4o"] == "api.openai.com"
    assert len(everything) == len(full.catalogue)


def test_models_table_says_unpriced_as_n_a_and_leaves_nothing_else_as_none(ip, orc):
    orc.add_model(orc.catalogue.resolve("oa").replace(
        name="free", cost_per_1k_input=None, cost_per_1k_output=None
    ))  # fmt: skip
    models = ip.run_line_magic("mmo_models", "")
    assert models["usd_per_1m_input"].isna().any()  # the value stays missing
    text, html = repr(models), models._repr_html_()
    for shown in (text, html):
        assert "<NA>" not in shown and "None" not in shown and "NaN" not in shown
    free = next(line for line in text.splitlines() if line.split()[0] == "free")
    assert free.split()[2:4] == ["n/a", "n/a"]  # available True, then both prices


# -- 12: the judging caption -----------------------------------------------------------------------


def test_judging_caption_wraps_only_between_phrases() -> None:
    from mmo_magic.orchestration.judges import JudgeEvent

    calls = [JudgeEvent("j", False, "voted", winner="A"), JudgeEvent("j", True, "pending")]
    html = rendering.judging_html(calls)
    caption = re.search(r"<caption[^>]*>(.*?)</caption>", html).group(1)
    assert '<span style="white-space:nowrap">1 of 2 judge calls ended</span>' in caption
    assert 'nowrap">judging (each judge reads the answers in both orders)</span>' in caption


# -- 16: a stopped batch keeps what it has -------------------------------------------------------


def test_a_stopped_batch_sets_out_to_the_partial_result(ip, orc, sim):
    import signal
    import threading
    import time

    orc.add_model(
        orc.catalogue.resolve("oa").replace(name="slow", model_id="sim-fast?ttft_ms=4000")
    )
    ip.user_ns["many"] = [{"question": f"q{i}"} for i in range(6)]
    main = threading.main_thread().ident

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while sim.request_count() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with capture_output() as cap:
        ip.run_cell_magic(
            "mmo_batch", "--data many --models oa-echo,slow --concurrency 2 -o br", "{question}"
        )
    assert "Stopped" in cap.stderr
    frame = ip.user_ns["br"].to_dataframe()
    assert (frame["status"] == "ok").sum() >= 1
    # Its value says what was stopped, not that the unanswered rows failed.
    stopped = int((frame["status"] == "cancelled").sum())
    assert stopped >= 1 and repr(ip.user_ns["br"]).endswith(f", {stopped} stopped>")
    assert " 0 failed" in repr(ip.user_ns["br"])
