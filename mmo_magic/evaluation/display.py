"""How a batch's tables look in a notebook or terminal, while their values keep full precision.

``leaderboard()``, ``summary()``, ``bias()`` and ``agreement()`` return a ``ResultFrame``: a
plain DataFrame for analysis (1055.839970 stays 1055.839970), whose HTML and text forms are a
formatted copy: ratings and milliseconds whole, rates to three significant digits, money as
the panels write it ("$0.000871", "cost n/a"), and "—" where a value can't be computed, with
a note under the table saying why. The HTML is ``mathjax_ignore``: "$0.01 … $0.02" is money,
not LaTeX.

Imports pandas at module load: imported only where a table is made.
"""

from __future__ import annotations

import html
import math
import shutil
import textwrap
from collections.abc import Callable

import pandas as pd

from ..core.money import format_usd

__all__ = ["MISSING", "ResultFrame", "format_number", "shown"]

MISSING = "—"  # a value that can't be computed (the notes say why), never a made-up number
_NO_MATH = "mathjax_ignore tex2jax_ignore"  # MathJax 3 and 2 class names
# Why a column has "—", said once under the table when it does.
_WHY_MISSING = {
    "usd_per_point": (
        'usd_per_point "—": not computable for the lowest-rated model (the baseline, 0 points '
        "above itself) or an unpriced one (no cost to divide)"
    ),
}


class ResultFrame(pd.DataFrame):
    """A DataFrame of results that displays rounded; selections of it display the same way."""

    @property
    def _constructor(self) -> Callable[..., ResultFrame]:
        return ResultFrame

    def formatted(self) -> pd.DataFrame:
        """The table as shown: every value a string, full precision left to the frame itself."""
        shown = pd.DataFrame(self).astype(object).copy()
        for i, column in enumerate(shown.columns):
            form = _number_form(str(column))
            shown.iloc[:, i] = [form(value) for value in self.iloc[:, i]]
        return shown

    def notes(self) -> list[str]:
        """The frame's own notes (``attrs["notes"]``), then why any "—" is there."""
        notes = [str(n) for n in self.attrs.get("notes", [])]
        for column, why in _WHY_MISSING.items():
            if column in self.columns and self[column].isna().any():
                notes.append(why)
        return notes

    def __repr__(self) -> str:
        # Every column, in blocks as wide as the terminal (a row is not wrapped mid-line).
        width = shutil.get_terminal_size().columns
        table = self.formatted().to_string(
            max_rows=60, show_dimensions=len(self) > 60, line_width=width
        )
        notes = [textwrap.fill(note, width, subsequent_indent="  ") for note in self.notes()]
        return "\n".join([table, *notes])

    def _repr_html_(self) -> str | None:
        table = self.formatted().to_html(max_rows=60)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes())
        notes = f'<ul style="font-size:0.85em;margin:4px 0">{notes}</ul>' if notes else ""
        return f'<div class="{_NO_MATH}">{table}{notes}</div>'


def shown(frame: pd.DataFrame) -> ResultFrame:
    """``frame`` (its values, index and notes unchanged) displayed as a ``ResultFrame``."""
    out = ResultFrame(frame)
    out.attrs = dict(frame.attrs)
    return out


def format_number(value: object, *, whole: bool = False) -> str:
    """A number for people: whole when ``whole`` or at least 100 (1056), else at most three
    significant digits (0.667, 5.25, 12.5, 0.06); a missing one is "—", anything else as it is."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool | str) or not _is_number(value):
        return str(value)
    number = float(value)  # type: ignore[arg-type]  # Python, numpy and pandas scalars
    if whole or abs(number) >= 100 or number.is_integer():
        return f"{number:.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(number))))
    return f"{number:.{digits}f}".rstrip("0").rstrip(".")  # 0.5, 0.06: no trailing zeros


def _number_form(column: str) -> Callable[[object], str]:
    if column == "cost":  # unknown money is "cost n/a", as the panels say it
        return lambda value: format_usd(None if _missing(value) else float(value))  # type: ignore[arg-type]
    if column == "usd_per_point":  # can't be computed: "—", and a note says why
        return lambda value: MISSING if _missing(value) else format_usd(float(value))  # type: ignore[arg-type]
    whole = column.endswith("_ms") or "_ms_" in column  # milliseconds: whole
    return lambda value: format_number(value, whole=whole)


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False  # a list or array in a cell: shown as it is
