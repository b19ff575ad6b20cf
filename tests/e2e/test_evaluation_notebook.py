"""notebooks/evaluation.ipynb runs top to bottom in a real kernel, offline."""

from __future__ import annotations

import re

import pytest
from helpers import outputs, run_notebook


def embedded_ready() -> bool:
    from mmo_magic.providers.embedded import missing_reason

    return missing_reason() is None


def result(cell) -> str:  # type: ignore[no-untyped-def]
    """The plain text of a cell's value (its execute_result), without the progress printed."""
    found = [o for o in cell.outputs if o["output_type"] == "execute_result"]
    return str(found[-1]["data"]["text/plain"]) if found else ""


def table_rows(text: str, names: list[str]) -> dict[str, list[str]]:
    """The cells of the rows of a printed DataFrame whose index is one of ``names``."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in names:
            rows[parts[0]] = parts[1:]
    return rows


@pytest.mark.timeout(600)
def test_the_evaluation_notebook_judges_ranks_and_resumes(tmp_path):
    nb = run_notebook("evaluation.ipynb", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = [outputs(c) for c in code]
    candidates = ["parrot", "babbler"] + (["smollm2"] if embedded_ready() else [])
    assert f"candidates: {', '.join(candidates)}" in text[2]

    # Budget first: refused, and nothing reached the run log.
    assert "refused:" in text[3] and "Nothing was sent" in text[3]
    assert "calls recorded so far: 0" in text[3]

    # The batch: every (question, model) answered; the progress view left its final state.
    n = 16 * len(candidates)
    assert f"batch done: {n}/{n} · 0 failed" in text[4]
    html = [o["data"]["text/html"] for o in code[4].outputs if "text/html" in o.get("data", {})]
    assert any("batch done" in h and "<table>" in h for h in html)
    summary = table_rows(result(code[4]), candidates)
    assert all(summary[m][:3] == ["16", "16", "0"] for m in candidates)

    # Pairwise judging: the random-word model shares nothing with the references: last.
    board = table_rows(result(code[6]), candidates)
    assert sorted(board) == sorted(candidates) and list(board)[-1] == "babbler"
    ratings = [float(board[m][0]) for m in board]
    assert ratings == sorted(ratings, reverse=True)

    # The position-biased judge is exposed by the swap; the content judge is not.
    bias = table_rows(result(code[8]), ["checker", "first-picker"])
    assert bias["first-picker"][1:] == ["1", "1", "1"]  # shown rounded (issue 28 #13)
    assert bias["checker"][1:] == ["0", "0", "0.5"]
    assert any("image/png" in o.get("data", {}) for o in code[10].outputs)

    # Grading: babbler's words never match a reference, so it gets the lowest grade, 1.
    grades = table_rows(result(code[11]), candidates)
    assert float(grades["babbler"][0]) == 1.0
    assert all(float(grades[m][0]) > 1.0 for m in candidates if m != "babbler")

    # Stop, then resume: only what was missing is sent, each pair ok exactly once.
    assert "stopped" in text[12] and "batch stopped:" in text[12]
    found = re.search(r"from the run log: (\d+), sent now: (\d+)", text[13])
    assert found, text[13]
    from_log, sent = map(int, found.groups())
    assert 0 < from_log < 60 and from_log + sent == 60
    assert "statuses: {'ok': 60}" in text[13]
    assert "60 ok answers in the run log for 60 (question, model) pairs; 0 sent twice" in text[14]
