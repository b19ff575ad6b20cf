"""The tables the magics show: ``%mmo_runs`` (the run log, compact) and ``%mmo_models``.

Each returns the full DataFrame (for analysis) with a display of its own: what a
reader needs first, money as the panels say it ("cost n/a", never <NA> or 0),
whole milliseconds, and every block ``mathjax_ignore`` (prices are not LaTeX).
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..core.money import format_usd
from .rendering import FG_DIM, NO_MATH

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MODEL_COLUMNS", "RUN_COLUMNS", "compact_runs", "models_frame", "runs_table"]

RUN_COLUMNS = (
    "time",
    "cell",
    "model",
    "status",
    "ttft_ms",
    "latency_ms",
    "tokens",
    "cost",
    "answer",
)
_ANSWER_KEEP = 40
_MAX_ROWS = 60


def runs_table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The compact view of the run log: time, cell, model, status, timings, tokens, cost, answer.

    ``columns`` picks run-log columns (or these compact ones) by name.
    """
    import pandas as pd

    compact = pd.DataFrame(index=frame.index)
    # The reader's own clock (the log stores UTC); the caption of the HTML table says so.
    local = frame["started_at"].dt.tz_convert(_local_zone())
    compact["time"] = local.dt.strftime("%H:%M:%S")
    compact["cell"] = frame["cell"].astype("string").fillna("")  # no cell: a script's call
    compact["model"] = frame["model"].astype("string")
    compact["status"] = frame["status"].astype("string")
    compact["ttft_ms"] = frame["ttft_ms"].map(_whole)
    compact["latency_ms"] = frame["latency_ms"].map(_whole)
    compact["tokens"] = (
        frame["input_tokens"].astype("string").fillna("?")
        + "→"
        + frame["output_tokens"].astype("string").fillna("?")
    )
    # As the panels say it: "$0.00012", "cost n/a" for unknown (never <NA>, never 0)
    compact["cost"] = frame["cost"].map(lambda c: format_usd(None if _missing(c) else float(c)))
    answer = frame["response"].astype("string").fillna("")
    error = frame["error"].astype("string").fillna("") if "error" in frame else answer
    text = answer.where(answer != "", error)
    compact["answer"] = text.str.replace(r"\s+", " ", regex=True).map(_shorten)
    if columns:
        picked = {}
        for name in columns:
            if name in compact:
                picked[name] = compact[name]
            elif name in frame:
                picked[name] = frame[name]
            else:
                from ..core.errors import ConfigError

                known = ", ".join([*RUN_COLUMNS, *frame.columns])
                raise ConfigError(f"Unknown run-log column {name!r}.", hint=f"Use one of: {known}")
        compact = pd.DataFrame(picked, index=frame.index)
    return compact.reset_index(drop=True)


def compact_runs(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``frame`` itself (every column), shown as the compact ``runs_table``.

    What ``%mmo_runs`` returns: ``df = %mmo_runs`` keeps everything for analysis, while
    the cell's output stays readable (29 columns hid model, status and answer behind "...").
    Anything derived from it (a selection, a groupby) is a plain DataFrame again.
    """
    import pandas as pd

    class RunsFrame(pd.DataFrame):
        _metadata: ClassVar[list[str]] = ["_mmo_columns"]

        @property
        def _constructor(self) -> type[pd.DataFrame]:
            return pd.DataFrame

        def __repr__(self) -> str:
            # Every compact column, however narrow the terminal (these are the ones that
            # matter), in blocks as wide as the terminal, not wrapped mid-row.
            width = shutil.get_terminal_size().columns
            table = _compact(self).to_string(
                max_rows=_MAX_ROWS, show_dimensions=True, line_width=width
            )
            return f"{table}\n{_time_note()}"

        def _repr_html_(self) -> str | None:
            table = _compact(self)._repr_html_()  # type: ignore[operator]
            note = f'<small style="color:{FG_DIM}">{html.escape(_time_note())}</small>'
            return f'<div class="{NO_MATH}">{table}{note}</div>'  # "$0.01 … $0.02": money

    out = RunsFrame(frame)
    object.__setattr__(out, "_mmo_columns", list(columns) if columns else None)
    return out


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return runs_table(pd.DataFrame(frame), getattr(frame, "_mmo_columns", None))


def _time_note() -> str:
    from datetime import datetime

    return f"time: local ({datetime.now().astimezone().strftime('UTC%z')})"


def _local_zone() -> Any:
    from datetime import datetime

    return datetime.now().astimezone().tzinfo


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))  # type: ignore[call-overload]


def _whole(value: object) -> str:
    """A number of milliseconds for display: "412", or "" when there is none."""
    return "" if _missing(value) else f"{float(value):.0f}"  # type: ignore[arg-type]


def _shorten(text: object) -> str:
    s = str(text)
    return s if len(s) <= _ANSWER_KEEP else s[: _ANSWER_KEEP - 1] + "…"


# -- %mmo_models ---------------------------------------------------------------------------------

# What a reader looks for first: can I use it, what do I set if not, what it costs.
MODEL_COLUMNS = (
    "name",
    "available",
    "why_unavailable",
    "usd_per_1m_input",
    "usd_per_1m_output",
    "tier",
    "context_window",
    "host",
    "provider",
    "aliases",
    "model_id",
)


def models_frame(catalogue: Iterable[Any]) -> pd.DataFrame:
    """The catalogue as %mmo_models shows it: useful columns first, and who hosts each model.

    ``provider`` is the wire (Mistral, DeepSeek, Groq and Together speak OpenAI's), so
    ``host`` says where the requests go: the base URL's host, or the provider's own.
    """
    from urllib.parse import urlsplit

    import pandas as pd

    rows = []
    for m in catalogue:
        host = urlsplit(m.base_url).hostname if m.base_url else None
        rows.append({
            "name": m.name, "available": m.available, "why_unavailable": m.unavailable_reason,
            "usd_per_1m_input": None if m.cost_per_1k_input is None else m.cost_per_1k_input * 1000,
            "usd_per_1m_output": (
                None if m.cost_per_1k_output is None else m.cost_per_1k_output * 1000
            ),
            "tier": m.tier, "context_window": m.context_window,
            "host": host or _OWN_HOST.get(m.provider, m.provider), "provider": m.provider,
            "aliases": ", ".join(m.aliases), "model_id": m.model_id,
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(MODEL_COLUMNS)).convert_dtypes()

    class ModelsFrame(pd.DataFrame):
        @property
        def _constructor(self) -> type[pd.DataFrame]:
            return pd.DataFrame

        def __repr__(self) -> str:
            # Every column, however narrow the terminal (pandas hid why_unavailable behind "…").
            width = shutil.get_terminal_size().columns  # wider than this: the columns wrap
            return _models_shown(self).to_string(max_rows=200, index=False, line_width=width)

        def _repr_html_(self) -> str | None:
            table = _models_shown(self).to_html(max_rows=200, index=False)
            return f'<div class="{NO_MATH}" style="overflow-x:auto">{table}</div>'

    return ModelsFrame(frame)


def _models_shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The catalogue as text: no price is "n/a" (unpriced, never 0), nothing else missing is
    blank (never None or <NA>), prices as written (0.15, not 0.150000)."""
    import pandas as pd

    shown = pd.DataFrame(frame).astype(object)
    for column in shown.columns:
        price = column.startswith("usd_per_")
        shown[column] = [
            ("n/a" if price else "") if _missing(v) else (f"{v:g}" if price else v)
            for v in frame[column]
        ]
    return shown


_OWN_HOST = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "embedded": "this machine",
    "function": "this process",
}
