"""A batch's tables display rounded, with "—" and a note where a value can't be computed, and
money as the panels write it; the DataFrames themselves keep full precision (issue 28 #13)."""

from __future__ import annotations

import math
import re
from urllib.parse import quote

import pandas as pd
import pytest
from helpers import sim_models

import mmo_magic as mmo
from mmo_magic.evaluation.display import MISSING, format_number


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one block of columns: rows read as one line


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:") as o:
        yield o


@pytest.fixture
def board_and_result(orc):
    good = named(orc, "good", "oa", "Paris is the capital of France.")
    bad = named(orc, "bad", "lo", "Lyon, I think.")
    free = named(orc, "free", "oa", "Paris, surely.", cost_per_1k_input=None,
                 cost_per_1k_output=None)  # fmt: skip
    judge = named(orc, "judge", "an", "judge&prefer=paris")
    items = [{"question": f"Capital of France? ({i})"} for i in range(4)]
    result = orc.batch(items, [good, bad, free], judges=[judge], progress=False)
    return result.leaderboard(), result, (good, bad, free)


def named(orc, name: str, base: str, reply: str, **changes) -> str:
    """A copy of ``base`` that replies ``reply`` (the sim's judge: "judge&prefer=WORD")."""
    reply = reply if reply.startswith("judge&") else quote(reply)
    model = orc.catalogue.resolve(base).replace(name=name, model_id=f"sim-fast?reply={reply}")
    orc.add_model(model.replace(**changes))
    return name


def cells(text: str, row: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.split() and x.split()[0] == row)
    return line.split()[1:]


def test_the_leaderboard_shows_rounded_ratings_and_keeps_full_precision(board_and_result):
    board, _, (good, bad, free) = board_and_result
    assert isinstance(board, pd.DataFrame) and board["rating"].dtype == "float64"
    ratings = board["rating"]
    assert any(not float(r).is_integer() for r in ratings)  # e.g. 1055.839970: not rounded
    text = repr(board)
    columns = text.splitlines()[0].split()
    for model in (good, bad, free):
        shown = dict(zip(columns, cells(text, model), strict=False))
        assert shown["rating"] == f"{board.loc[model, 'rating']:.0f}"
        assert shown["ci_low"] == f"{board.loc[model, 'ci_low']:.0f}"
    assert not re.search(r"(?<![$\d.])\d+\.\d{4,}", text), text  # no 1055.839970 (money aside)


def test_usd_per_point_is_a_dash_with_a_note_never_nan(board_and_result):
    board, _, (_good, _bad, free) = board_and_result
    lowest = board["rating"].idxmin()
    assert math.isnan(board.loc[lowest, "usd_per_point"])  # the value stays NaN
    assert math.isnan(board.loc[free, "usd_per_point"])  # unpriced: no cost to divide
    text, page = repr(board), board._repr_html_()
    assert "NaN" not in text and "NaN" not in page and "<NA>" not in text
    assert cells(text, lowest)[-1] == MISSING
    assert 'usd_per_point "—": not computable for the lowest-rated model' in text
    assert "not computable for the lowest-rated model" in page


def test_money_is_written_as_the_panels_write_it_and_not_typeset(board_and_result):
    board, result, (good, _bad, free) = board_and_result
    assert board.loc[free, "cost"] is None or pd.isna(board.loc[free, "cost"])
    text = repr(board)
    assert "cost n/a" in text  # the unpriced model, as its panel says it
    assert re.search(r"\$0\.0\d+", cells(text, good)[-2]), text
    page = board._repr_html_()
    assert page.startswith('<div class="mathjax_ignore tex2jax_ignore">')
    summary = repr(result.summary())
    assert "cost n/a" in summary and "<NA>" not in summary and "None" not in summary


def test_summary_milliseconds_are_whole_and_selections_display_the_same_way(board_and_result):
    _, result, (good, _bad, _free) = board_and_result
    summary = result.summary()
    p50 = summary.loc[good, "latency_p50_ms"]
    assert isinstance(p50, float)
    text = repr(summary[["items", "latency_p50_ms"]])  # a selection, as the notebook takes it
    assert cells(text, good) == [str(summary.loc[good, "items"]), f"{p50:.0f}"]
    assert "<table" in summary[["cost"]]._repr_html_()


def test_numbers_are_whole_from_100_and_three_significant_digits_below():
    assert format_number(1055.83997) == "1056"
    assert format_number(17068.111611) == "17068"
    assert format_number(0.6666667) == "0.667"
    assert format_number(5.25) == "5.25"
    assert format_number(12.3456) == "12.3"
    assert format_number(0.5) == "0.5" and format_number(0.06) == "0.06"  # no trailing zeros
    assert format_number(3.7, whole=True) == "4"
    assert format_number(float("nan")) == MISSING and format_number(None) == MISSING
    assert format_number(pd.NA) == MISSING and format_number("text") == "text"


def test_in_an_80_column_terminal_no_line_is_wider(board_and_result, monkeypatch):
    board, result, _ = board_and_result
    monkeypatch.setenv("COLUMNS", "80")
    for table in (board, result.summary()):
        lines = repr(table).splitlines()
        assert max(len(line) for line in lines) <= 80, "\n".join(lines)
