"""``br.to_html()``: one self-contained HTML page about a batch, readable offline.

The page has no scripts, fonts or links to fetch: styles are inline, the plot is
an inline SVG. It shows the leaderboard with its plot and notes (what was left
out, how failures count), the per-model summary with the scorers' figures, the
judges' statistics (position bias, ties, agreement, wins), the cost, and every
item with the models' answers side by side. Money is never typeset as math: the
page carries ``mathjax_ignore`` for viewers that run MathJax over HTML.
"""

from __future__ import annotations

import html
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.money import format_usd

if TYPE_CHECKING:
    import pandas as pd

    from .result import BatchResult

__all__ = ["report_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
 color:#1f2328;background:#fff;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;
 border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top;
 white-space:nowrap}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.answers td{max-width:28em;white-space:pre-wrap;word-break:break-word}
.failed{color:#b42318}.muted{color:#57606a}.notes li{margin:.15em 0}
svg{width:640px;max-width:100%;height:auto}
"""


def _number(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each figure with its interval in one cell: "0.83 (0.5–1)"; the bounds' columns go."""
    shown = frame.copy()
    pairs = [("rating", "ci_low", "ci_high")] + [
        (c, f"{c}_low", f"{c}_high") for c in frame.columns if f"{c}_low" in frame.columns
    ]
    for value, low, high in pairs:
        if value in shown and low in shown and high in shown:
            shown[value] = [
                f"{_number(v)} ({_number(lo)}–{_number(hi)})" if _number(v) != "–" else "–"
                for v, lo, hi in zip(shown[value], shown[low], shown[high], strict=True)
            ]
            shown = shown.drop(columns=[low, high])
    return shown


def _table(frame: pd.DataFrame, *, index: bool = True) -> str:
    """A DataFrame as an HTML table: numbers rounded for reading, missing as "–"."""
    shown = _intervals(frame)
    if index:
        shown = shown.rename_axis(str(shown.index.name or "")).reset_index()
    shown = shown.astype(object).map(_number)
    return str(shown.to_html(index=False, border=0, escape=True))


def _plot_svg(br: BatchResult, board: pd.DataFrame) -> str:
    if "rating" not in board and not br.scorers:
        return ""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ax = br.plot(board)
    buffer = io.StringIO()
    ax.figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(ax.figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # no XML prolog inside HTML


def _notes(frame: pd.DataFrame) -> str:
    notes = frame.attrs.get("notes") or []
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
    return f"<ul class='notes muted'>{items}</ul>"


def _answers(br: BatchResult) -> str:
    """Every item (first repeat) with each model's answer side by side."""
    by_cell = {(r["item"], r["model"]): r for r in br.rows if r.get("epoch", 0) == 0}
    reference = br.spec.get("reference_column") or (
        "reference" if br.items and "reference" in br.items[0] else None
    )
    heads = ["#", "prompt", *([reference] if reference else []), *br.models]
    rows = []
    for index, item in enumerate(br.items):
        prompt = br.prompts[index] if index < len(br.prompts) else str(item)
        cells = [f"<td class='num'>{index}</td>", f"<td>{html.escape(prompt)}</td>"]
        if reference:
            cells.append(f"<td>{html.escape(str(item.get(reference, '')))}</td>")
        for model in br.models:
            row = by_cell.get((index, model))
            if row is None:
                cells.append("<td class='muted'>–</td>")
            elif row["status"] != "ok":
                error = html.escape(str(row.get("error") or row["status"]))
                cells.append(f"<td class='failed'>[{html.escape(row['status'])}] {error}</td>")
            else:
                cells.append(f"<td>{html.escape(str(row['answer'] or ''))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in heads)
    note = (
        f"<p class='muted'>The first of {br.epochs} answers per (item, model).</p>"
        if br.epochs > 1
        else ""
    )
    return f"{note}<table class='answers'><tr>{head}</tr>{''.join(rows)}</table>"


def _judges(br: BatchResult) -> str:
    if not br.judges:
        return "<p class='muted'>No LLM judges in this batch.</p>"
    parts = [f"<p>Judges: {html.escape(', '.join(br.judges))} ({html.escape(br.judge_mode)})."]
    if br.judge_mode == "pairwise":
        parts.append(
            " Each pair was judged in both orders; a verdict that flips with the order is a "
            "tie. Ties pull Bradley–Terry ratings together: many ties (a noisy or "
            "position-biased judge) compress the ratings and the intervals then miss.</p>"
        )
        bias = br.bias()
        if len(bias):
            parts.append("<h3>Position bias and ties</h3>" + _table(bias))
        agreement = br.agreement()
        parts.append("<h3>Agreement between judges</h3>")
        parts.append(_table(agreement, index=False) if len(agreement) else _notes(agreement))
        parts.append(
            "<h3>Wins (row against column: wins-ties-losses)</h3>" + _table(br.win_matrix())
        )
    else:
        parts.append("</p>")
    return "".join(parts)


def _cost(br: BatchResult) -> str:
    answers = sum(r["cost"] or 0.0 for r in br.rows if not r.get("resumed"))
    unpriced = sum(1 for r in br.rows if r["status"] == "ok" and r["cost"] is None)
    line = (
        f"Answers {format_usd(answers)}, judges {format_usd(br.judge_cost)}, "
        f"total {format_usd(br.cost)} (calls resumed from the run log cost nothing this run)."
    )
    if unpriced:
        line += f" {unpriced} answers came from unpriced models: their cost is unknown, not 0."
    if br.worst_case_cost is not None:
        line += f" The worst case checked before sending was {format_usd(br.worst_case_cost)}."
    return f"<p>{html.escape(line)}</p>"


def report_html(br: BatchResult) -> str:
    """The report page (see the module docstring)."""
    board = br.leaderboard()
    summary = br.summary()
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = (
        f"{len(br.items)} items × {len(br.models)} models"
        + (f" × {br.epochs} repeats" if br.epochs > 1 else "")
        + (f", judged by {', '.join(br.judges)} ({br.judge_mode})" if br.judges else "")
        + (f", scored by {', '.join(s['name'] for s in br.scorers)}" if br.scorers else "")
    )
    svg = _plot_svg(br, board)
    sections = [
        f"<h1>Batch report</h1><p class='muted'>{html.escape(what)}. Made {made}; "
        f"batch {html.escape(br.group_id)}.</p>",
        "<h2>Leaderboard</h2>",
        "<p class='muted'>In brackets: 95% bootstrap intervals over items (and repeats). "
        "<code>_items</code>: the items a model was scored on; <code>_failed</code>: how "
        "its failed answers count.</p>",
        _table(board), _notes(board), f"<div>{svg}</div>" if svg else "",
        "<h2>Per model</h2>", _table(summary), _notes(summary),
        "<h2>Judges</h2>", _judges(br),
        "<h2>Cost</h2>", _cost(br),
        "<h2>Answers</h2>", _answers(br),
    ]  # fmt: skip
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Batch report</title>"
        f"<style>{_STYLE}</style></head>"
        f"<body class='mathjax_ignore tex2jax_ignore'>{''.join(sections)}</body></html>"
    )
