"""The magics in terminal IPython (TerminalInteractiveShell): text on stdout, never object reprs.

Cells run through ``run_cell``, so the display hook (Out[]) and the display publisher
print exactly what a terminal user sees; pytest's capsys captures it.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from helpers import sim_models
from IPython.terminal.interactiveshell import TerminalInteractiveShell

import mmo_magic as mmo

OBJECT_REPR = re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>|VBox\(|GridBox\(|HTML\(value=")


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


def says(orc: mmo.Orchestrator, name: str, text: str, **options: str) -> str:
    query = "&".join([f"reply={quote(text)}", *(f"{k}={v}" for k, v in options.items())])
    orc.add_model(orc.catalogue.resolve("oa").replace(name=name, model_id=f"sim-fast?{query}"))
    return name


@pytest.fixture
def term(orc):
    shell = TerminalInteractiveShell.instance()
    mmo.use(orc)
    shell.run_line_magic("load_ext", "mmo_magic")
    yield shell
    shell.run_line_magic("unload_ext", "mmo_magic")
    mmo.use(None)
    TerminalInteractiveShell.clear_instance()


def run(shell, capsys, source: str) -> str:
    capsys.readouterr()
    result = shell.run_cell(source, store_history=True)
    assert result.error_in_exec is None, result.error_in_exec
    captured = capsys.readouterr()
    out = captured.out
    assert "Error" not in captured.err and "Stopped" not in captured.err, captured
    assert not OBJECT_REPR.search(out), out
    return out


def test_mmo_streams_the_answer_as_text(term, orc, capsys):
    says(orc, "teller", "Owls hunt at night and fly silently.", tps="200")
    out = run(term, capsys, "%%mmo teller\nTell me about owls")
    assert "Owls hunt at night and fly silently." in out
    assert "▌" not in out
    footer = out.strip().splitlines()[-1]
    assert footer.startswith("teller") and "ttft" in footer
    out = run(term, capsys, "%%mmo teller --no-stream -f text\nagain")
    assert "Owls hunt at night and fly silently." in out


def test_json_and_code_formats_print_text(term, orc, capsys):
    says(orc, "jsonbot", '{"city": "Paris"}')
    out = run(term, capsys, "%%mmo jsonbot -f json\nas json")
    assert '"city": "Paris"' in out
    says(orc, "coder", "Here:\n```python\nprint(42)\n```")
    out = run(term, capsys, "%%mmo coder -f code --no-stream\ncode")
    assert "print(42)" in out


def test_race_prints_status_lines_each_answer_and_the_winner(term, orc, capsys):
    fast = says(orc, "hare", "The hare answers first.", ttft_ms="400")
    slow = says(orc, "tortoise", "The tortoise is slow.", ttft_ms="3000")
    broken = says(orc, "broken", "never", fail="500")
    out = run(term, capsys, f"%mmo_race {fast},{slow},{broken} -o race Who wins the race")
    race = term.user_ns.get("race")
    assert race is not None, out
    assert race.winner.model == "hare"
    lines = out.splitlines()
    for model in ("hare", "tortoise", "broken"):  # live status lines, as statuses change
        assert any(line.startswith(f"  {model}: ") for line in lines), out
    assert any(line.startswith("  broken: failed") and "HTTP 500" in line for line in lines)
    assert "The hare answers first." in out
    assert "── hare · done  🏆 winner" in out
    assert "── tortoise · cancelled" in out and "another model answered first" in out
    assert "winner: hare" in out
    assert "── broken · failed" in out
    assert out.count("The hare answers first.") == 1  # Out[] does not repeat the race
    # Out[] names the value without printing the summary line again (issue 28 #14).
    assert re.search(r"Out\[\d+\]: <RaceResult: winner hare, 3 answers>", out)
    assert out.count("first successful answer") == 1


def test_judged_race_prints_a_votes_table(term, orc, capsys):
    says(orc, "geographer", "Paris is the capital of France.")
    says(orc, "guesser", "Lyon, I think.")
    orc.add_model(
        orc.catalogue.resolve("oa").replace(
            name="fair", model_id="sim-fast?reply=judge&prefer=paris"
        )
    )
    biased = quote('{"winner":"A","reason":"first"}')
    orc.add_model(
        orc.catalogue.resolve("oa").replace(name="biased", model_id=f"sim-fast?reply={biased}")
    )
    out = run(
        term, capsys, "%%mmo_race guesser,geographer --judge fair,biased\nThe capital of France?"
    )
    assert "Paris is the capital of France." in out and "Lyon, I think." in out
    assert "judges' votes (majority) — winner: geographer" in out
    table = out[out.index("judges' votes") :].splitlines()
    assert re.match(r"judge\s+guesser\s+geographer\s+verdict", table[1])
    assert re.match(r"fair\s+0\s+1\s+geographer", table[2])
    assert re.match(r"biased\s+0\s+0\s+tie \(flipped when swapped\)", table[3])
    assert re.match(r"total\s+0\s+1", table[4])


def test_judge_verdicts_print_as_they_arrive(term, orc, capsys):
    says(orc, "geographer", "Paris is the capital of France.")
    says(orc, "guesser", "Lyon, I think.")
    slow = "sim-fast?reply=judge&prefer=paris&latency_ms=400"  # 400 ms a verdict
    orc.add_model(orc.catalogue.resolve("oa").replace(name="patient", model_id=slow))
    out = run(term, capsys, "%%mmo_race guesser,geographer --judge patient\nThe capital?")
    lines = out.splitlines()
    final = lines.index("── guesser · done")  # the finished race's text starts here
    live = [i for i, line in enumerate(lines) if line.startswith("  judge patient")]
    # The first verdict is printed while the swapped pass still runs, before the final text.
    assert live and live[0] < final, out
    assert re.fullmatch(
        r"  judge patient · first order: voted geographer \(shown as B\) · \d+ ms", lines[live[0]]
    )
    assert len([i for i in live if "first order" in lines[i]]) == 1  # each verdict once
    block = out[out.index("judging (each judge") :]
    assert "  patient · swapped order: voted geographer (shown as A)" in block
    assert block.index("patient · swapped order") < block.index("judges' votes (majority)")


def test_pipeline_prints_each_step(term, capsys):
    cell = (
        "%%mmo_pipeline topic=owls\n"
        "[facts] oa:sim-echo\nFacts about {topic}.\n[summary] oa\nSum {facts}"
    )
    term.run_line_magic("mmo_models", "")  # warm: nothing printed by itself
    orc = mmo.get_orchestrator()
    orc.add_model(orc.catalogue.resolve("oa").replace(name="oa:sim-echo", model_id="sim-echo"))
    out = run(term, capsys, cell)
    assert "[facts] oa:sim-echo\nFacts about owls." in out
    assert "[summary] oa" in out


def test_runs_prints_a_compact_table_of_this_session(term, orc, capsys):
    says(orc, "teller", "A short answer.")
    run(term, capsys, "%%mmo teller\nfirst")
    out = run(term, capsys, "%mmo_runs")
    lines = out.splitlines()
    assert re.fullmatch(r"Out\[\d+\]: ", lines[0])
    header = lines[1]
    for column in ("time", "cell", "model", "status", "ttft_ms", "latency_ms", "tokens", "cost"):
        assert column in header
    assert "teller" in out and "ok" in out and "A short answer." in out
    assert "..." not in header  # no hidden columns
    frame = term.run_line_magic("mmo_runs", "")
    assert {"prompt", "response", "run_id", "group_id"} <= set(frame.columns)  # all kept
    out = run(term, capsys, "%mmo_runs --columns model,prompt")
    assert "first" in out and "latency_ms" not in out


def test_a_response_as_a_cells_value_prints_its_answer_and_footer(term, orc, capsys):
    says(orc, "teller", "Plain answer, $5 and <b>tags</b>.")
    term.user_ns["orc"] = orc
    out = run(term, capsys, "orc.complete('hello', model='teller')")
    assert re.match(r"Out\[\d+\]: \nPlain answer, \$5 and <b>tags</b>\.\n\nteller · ", out)
    assert "CompletionResponse(" not in out
    response = orc.complete("hello", model="teller")
    markdown = response._repr_markdown_()
    assert markdown.startswith("Plain answer, $5 and <b>tags</b>.")  # the answer is Markdown
    assert "\\$0.0" in markdown  # the footer's price is money, not the start of LaTeX


@pytest.mark.parametrize("columns", [80, 170])
def test_models_prints_every_column_at_any_width(term, capsys, monkeypatch, columns):
    """Issue 28 #9: at 170 columns pandas hid why_unavailable and the prices behind "…"."""
    monkeypatch.setenv("COLUMNS", str(columns))
    orc = mmo.Orchestrator.from_config(runlog=":memory:")  # the full catalogue, keys unset
    mmo.use(orc)
    out = run(term, capsys, "%mmo_models")
    for column in ("why_unavailable", "usd_per_1m_input", "usd_per_1m_output", "tier", "host"):
        assert column in out, column
    assert "…" not in out and "..." not in out
    assert "OPENAI_API_KEY not set" in out and "api.mistral.ai" in out
    assert max(len(line) for line in out.splitlines()) <= columns  # wrapped, not cut


def test_a_prompt_ending_in_a_question_mark_is_a_prompt(term, orc, capsys):
    """Issue 28 #3 in terminal IPython: not "Object `France` not found"."""
    says(orc, "teller", "Paris.")
    out = run(term, capsys, "%mmo_route What is the capital of France?")
    assert "not found" not in out and "RouteDecision" in out
    out = run(term, capsys, "%mmo_race teller,oa -o race What is the capital of France?")
    assert "not found" not in out and "winner" in out
    assert term.user_ns["race"].winner is not None
