"""The shipped notebooks run top to bottom in a real kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb


def outputs(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


@pytest.mark.timeout(300)
def test_quickstart_runs_offline_and_records_every_call(tmp_path):
    nb = run_notebook("quickstart.ipynb", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {i: outputs(c) for i, c in enumerate(code)}
    assert "Orchestrator" in text[0]
    assert "claude-sonnet-4-5" in text[1] and "gpt-4o" in text[1]
    assert "sim-slow" in text[3] and "ttft" in text[3]  # the footer line
    attempts = text[5].splitlines()
    assert attempts[0].startswith("sim-flaky error") and "503" in attempts[0]
    assert attempts[1] == "sim-flaky ok "
    assert text[6].startswith("UnknownModelError:") and "gpt-4o-mini" in text[6]
    runs = text[7]
    for model in ("sim-slow", "sim-flaky", "gpt-4o-mni"):
        assert model in runs
