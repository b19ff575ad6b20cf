"""The shipped notebooks run top to bottom in a real kernel."""

from __future__ import annotations

import nbformat
import pytest
from notebook_helpers import outputs, run_notebook


def embedded_ready() -> bool:
    from mmo_magic.providers.embedded import missing_reason

    return missing_reason() is None


@pytest.mark.timeout(300)
def test_quickstart_runs_offline_and_records_every_call(tmp_path):
    nb = run_notebook("quickstart.ipynb", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {i: outputs(c) for i, c in enumerate(code)}
    assert "Orchestrator" in text[0]
    assert "claude-sonnet-4-5" in text[1] and "gpt-4o" in text[1]
    default = "smollm2" if embedded_ready() else "sim-fast"
    assert f"default {default!r}" in text[0]
    assert text[3].startswith(default) and "ttft" in text[3]  # the footer line
    assert text[4].strip().splitlines()[-1].startswith(default)
    attempts = text[5].splitlines()
    assert attempts[0].startswith("sim-flaky error") and "503" in attempts[0]
    assert attempts[1] == "sim-flaky ok "
    assert text[6].startswith("UnknownModelError:") and "gpt-4o-mini" in text[6]
    runs = text[7]
    for model in (default, "sim-flaky", "gpt-4o-mni"):
        assert model in runs


def widget_values(nb: nbformat.NotebookNode) -> list[str]:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]


@pytest.mark.timeout(300)
def test_race_and_judges_notebook_saves_its_widget_state(tmp_path):
    nb = run_notebook("race_and_judges.ipynb", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {i: outputs(c) for i, c in enumerate(code)}
    assert "sim-slow" in text[1] and "ttft" in text[1]
    assert "keep {this} in braces" in text[3]  # interpolation kept the JSON and {{this}}
    assert "[('sim-fast', 'ok'), ('sim-slow', 'cancelled'), ('sim-flaky', 'cancelled')]" in text[6]
    assert "fair-judge" in text[9] and "biased-judge" in text[9]
    assert "position bias" in text[10] and "(geographer)" in text[10]
    values = widget_values(nb)
    # Each race panel holds its model's final answer; the winner carries the trophy.
    assert any("Paris is the capital of France." in v for v in values)
    assert any("Lyon, I think." in v for v in values)
    assert any("<b>sim-fast</b>" in v and "🏆" in v for v in values)
    assert any("<b>sim-slow</b>" in v and "cancelled" in v for v in values)
    votes = [v for v in values if "votes" in v]
    assert votes and "winner: geographer" in votes[0]


@pytest.mark.timeout(300)
def test_readme_main_job_python_m_mmo_magic_demo(tmp_path):
    """README's first command ends in `python -m mmo_magic demo`: it runs and reports each cell."""
    import subprocess
    import sys

    saved = tmp_path / "quickstart-run.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "mmo_magic", "demo", "--save", str(saved)],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("In  │") >= 6 and "UnknownModelError" in done.stdout
    executed = nbformat.read(saved, as_version=4)
    assert all(c.get("outputs") for c in executed.cells if c.cell_type == "code")


@pytest.mark.timeout(180)
def test_run_records_carry_the_number_shown_beside_their_cell(tmp_path):
    """In a real kernel, each record's ``cell`` is the cell's execution count: sync, async, from a
    worker thread the cell started, and before and after ``%load_ext mmo_magic``."""
    from nbclient import NotebookClient

    cells = {
        "setup": "import threading\nimport mmo_magic as mmo\n"
        "orc = mmo.Orchestrator(mmo.Orchestrator.from_config().catalogue, runlog=':memory:',"
        " cache=False)",
        "sync": "orc.complete('sync', model='sim-fast').status",
        "async": "(await orc.acomplete('async', model='sim-fast')).status",
        "thread": "t = threading.Thread(target=orc.complete, args=('thread',),"
        " kwargs={'model': 'sim-fast'})\nt.start()\nt.join()",
        "load": "%load_ext mmo_magic",
        "after load_ext": "orc.complete('after load_ext', model='sim-fast').status",
        "report": "print({r.prompt: r.cell for r in orc.runs.records()})",
    }
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells.values()]
    nb.cells.insert(2, nbformat.v4.new_code_cell("1 + 1"))  # numbers and positions part ways
    NotebookClient(nb, timeout=120, kernel_name="python3").execute(cwd=str(tmp_path))
    count = {source: c.execution_count for source, c in zip(cells.values(), nb.cells[:2] +
             nb.cells[3:], strict=True)}  # fmt: skip
    recorded = eval(outputs(nb.cells[-1]))
    expected = {name: count[cells[name]] for name in ("sync", "async", "thread", "after load_ext")}
    assert recorded == expected
    assert len(set(expected.values())) == 4
