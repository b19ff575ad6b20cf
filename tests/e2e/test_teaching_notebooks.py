"""The teaching notebooks (routing, reliability, pipelines, analysis) run offline in a kernel."""

from __future__ import annotations

import re

import nbformat
import pytest
from helpers import NOTEBOOKS, outputs, run_notebook


def output_of(nb: nbformat.NotebookNode, marker: str) -> str:
    """The outputs of the one code cell whose source contains ``marker``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"{len(cells)} code cells contain {marker!r}"
    return outputs(cells[0])


def no_errors(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text = out.get("text", "") if out.get("name") == "stderr" else ""
            # "Unclosed client session": aiohttp's complaint about a session collected open.
            assert "Error" not in text and "Unclosed" not in text, out


@pytest.mark.parametrize(
    "name", ["routing.ipynb", "reliability.ipynb", "pipelines.ipynb", "analysis.ipynb"]
)
def test_notebook_is_saved_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "simulated provider" in first.source
    assert "OPENAI_API_KEY" in first.source and "ANTHROPIC_API_KEY" in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.timeout(300)
def test_routing_notebook_explains_choices_and_calls_nothing(tmp_path):
    nb = run_notebook("routing.ipynb", tmp_path)
    no_errors(nb)
    decision = output_of(nb, "%mmo_route -r task")
    assert "RouteDecision" in decision and "task:coding" in decision
    # The reason quotes the prompt's cue "write <code>": shown as text, never as HTML or math.
    route = next(c for c in nb.cells if "%mmo_route -r task" in c.source).outputs[0].data
    assert "write \\<code\\>" in route["text/markdown"] and "<code>" not in route["text/markdown"]
    # Money reaches the HTML as \$ (MathJax then shows a dollar, never math).
    assert "est. \\~\\\\$0." in route["text/markdown"]
    assert "write <code>" in route["text/plain"]
    money = next(c for c in nb.cells if "misrouted[[" in c.source).outputs[0].data["text/html"]
    assert "$1.10" in money and "mathjax_ignore" in money  # JupyterLab leaves it as money
    assert "OPENAI_API_KEY not set" in decision  # skipped models name the missing variable
    table = output_of(nb, "decisions.pivot")
    assert "task:translation" in table and "complexity:simple" in table
    reasons = output_of(nb, "prompts['proof']")
    assert "complexity complex" in reasons and "task math" in reasons
    auto = output_of(nb, 'model="auto", route="task"')
    assert "answered by: sim-slow" in auto and "task coding" in auto
    assert "task: task translation" in output_of(nb, "%%mmo auto -r task")
    rules = output_of(nb, "for key, text in examples.items()")
    assert re.search(r"sql -> sim-echo\s+rule:sql", rules)
    assert re.search(r"translate -> sim-fast\s+rule:translation", rules)
    assert "rule 'sql'" in output_of(nb, 'examples["sql"]')
    missing = output_of(nb, "TEAM_OPENAI_KEY").splitlines()
    assert missing[0] == "sim-fast"
    assert "team-gpt unavailable (TEAM_OPENAI_KEY not set)" in missing[1]
    assert "fell through to sim-fast" in missing[1]
    assert re.search(
        r"task: accuracy \d+\.\d% on 110 prompts", output_of(nb, "evaluate_router(mmo.TaskRouter()")
    )
    assert "predicted" in output_of(nb, "evaluation.confusion")
    assert "reason" in output_of(nb, "misrouted = ")
    assert re.search(r"complexity: accuracy \d+\.\d%", output_of(nb, "ComplexityRouter()"))
    counts = re.search(
        r"routed 440 times; run log records: (\d+) before, (\d+) after", output_of(nb, "def logged")
    )
    assert counts and counts.group(1) == counts.group(2)


@pytest.mark.timeout(300)
def test_reliability_notebook_shows_the_policy_at_work(tmp_path):
    nb = run_notebook("reliability.ipynb", tmp_path)
    no_errors(nb)
    rate = output_of(nb, '"rate-limited", "fail=429').splitlines()
    assert rate[0].startswith("rate-limited ·")
    assert "1. rate-limited: error" in rate[1] and "HTTP 429" in rate[1]
    assert "2. rate-limited: error" in rate[2]
    assert "3. rate-limited: ok" in rate[3]
    waits = [float(w) for w in re.findall(r"started ([\d.]+) s after", output_of(nb, "itertuples"))]
    assert len(waits) == 2 and all(0.95 <= w < 3 for w in waits)  # Retry-After: 1 honoured
    down = output_of(nb, '"down", "fail=503"').splitlines()
    assert down[0] == "answered by: backup"
    assert [line.split(":")[0].strip() for line in down[1:]] == ["1. down", "2. down", "3. backup"]
    assert output_of(nb, "%%mmo down --fallback sim-fast").splitlines()[-1].startswith("sim-fast ·")
    silent = output_of(nb, '"silent", "fault=hang"').splitlines()
    assert silent[0].startswith("answered by backup after")
    assert "silent: timeout" in silent[1] and "ttft_timeout_s=0.5" in silent[1]
    strict = output_of(nb, '"strict", "fail=content_policy"').splitlines()
    assert strict[0].startswith("ProviderError:") and "content policy" in strict[0]
    assert strict[1] == "status: 400 · retryable: False"
    assert len(strict) == 3 and "1. strict: error" in strict[2]  # one attempt, no fallback
    window = output_of(nb, '"small-window",').splitlines()
    assert window[0] == "answered by: big-window"
    assert "same-window: error skipped: context window not larger" in window[2]
    breaker = output_of(nb, "orc2 = mmo.Orchestrator").splitlines()
    breaker = [line for line in breaker if line.strip()]
    assert "breaker closed" in breaker[0] and "breaker open" in breaker[1]
    assert "wobbly error (skipped)" in breaker[2] and "breaker open" in breaker[2]
    probes = [line for line in output_of(nb, "time.sleep(1.1)").splitlines() if line.strip()]
    assert probes[0] == "after the cooldown: half-open"
    assert "answered by sim-fast" in probes[1] and "breaker open" in probes[1]
    assert "answered by wobbly" in probes[2] and "breaker closed" in probes[2]
    assert "timeout" in output_of(nb, "pd.crosstab")


@pytest.mark.timeout(300)
def test_pipelines_notebook_runs_concurrently_and_keeps_braces(tmp_path):
    nb = run_notebook("pipelines.ipynb", tmp_path)
    no_errors(nb)
    assert "[['research', 'questions'], ['analysis'], ['report']]" in output_of(nb, "waves(")
    assert "research and questions ran concurrently" in output_of(nb, "for b in rows")
    braces = output_of(nb, "braces-bot")
    assert 'research:  Found {"gdp": [1, 2]} -- see {topic} and {{doubled}}.' in braces
    assert 'analysis:  Facts: Found {"gdp": [1, 2]} -- see {topic} and {{doubled}}.' in braces
    missing = output_of(nb, "# no topic=").splitlines()
    assert missing[0].startswith("TemplateError: Template variable {topic} in step 'research'")
    assert missing[1] == "model calls made: 0"
    partial = output_of(nb, "broken-writer").splitlines()
    assert partial[:2] == ["ok: False", "failed step: report"]
    assert "HTTP 500" in partial[2]
    assert partial[3] == "outputs kept: ['analysis', 'questions', 'research']"
    declared = output_of(nb, "%%mmo_pipeline --name research")
    for step in ("**research** · sim-slow", "**questions** · sim-fast", "**report** · sim-echo"):
        assert step in declared
    assert "same report: True" in output_of(nb, "same report")


@pytest.mark.timeout(300)
def test_analysis_notebook_summarises_the_run_log_and_plots(tmp_path):
    nb = run_notebook("analysis.ipynb", tmp_path)
    no_errors(nb)
    workload = output_of(nb, "orc.all(prompt").splitlines()
    assert "patchy:error" in workload[0] and "stuttering:timeout" in workload[0]
    assert "patchy:ok" in workload[-1]
    crosstab = output_of(nb, 'races["group_id"]').split("\n\n")[0].splitlines()
    assert len(crosstab) == 2 + 6  # header lines, then one row per race
    races = [line for line in output_of(nb, "race_entries = [").splitlines() if line.strip()]
    assert [line.split()[1] for line in races] == [
        "quick", "quick", "quick", "steady", "steady", "deliberate",
    ]  # fmt: skip
    assert "overloaded error" in races[-1]
    assert "chosen: astronomer" in output_of(nb, "prefer=moon")
    assert "Float64" in output_of(nb, 'print(len(runs), "records")')
    rates = output_of(nb, "error_rate=")
    assert re.search(r"overloaded\s+1\s+1\s+1\.00", rates)
    assert re.search(r"patchy\s+8\s+3\s+0\.38", rates)
    assert re.search(r"stuttering\s+8\s+2\s+0\.25", rates)
    causes = output_of(nb, "pd.crosstab(failures")
    assert "HTTP 503" in causes and "HTTP 529" in causes and "timeout" in causes
    assert re.search(r"quick\s+3\s+3\s+1\.0", output_of(nb, "win_rates ="))
    log = output_of(nb, "winners from the log")
    assert (
        "winners from the log: ['deliberate', 'quick', 'quick', 'quick', 'steady', 'steady']" in log
    )
    assert (
        "winners collected:    ['deliberate', 'quick', 'quick', 'quick', 'steady', 'steady']" in log
    )
    assert re.search(r"judge\s+2\s", output_of(nb, "verdict.group_id"))
    images = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) == 2  # latency per model, cost per model
