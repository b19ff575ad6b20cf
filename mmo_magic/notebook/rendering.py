"""Every form the magics show results in, in one place: HTML, Markdown and plain text.

Why one module: the live widget, the static HTML left behind when it finishes,
and the terminal's text view must say the same thing (texts, statuses,
metrics, winner, votes). The widget builds its HTML fragments here, and the
static rendering is made of the same fragments.

Colours come from JupyterLab's theme variables (``--jp-*``) with light-theme
fallbacks (nbconvert and viewers without the variables), and text is always
drawn in a content font colour, never white on a fixed colour: a fixed
background under a theme-coloured text is what made the dark theme unreadable.
Status colours are used for borders only, for the same reason.

Answers and reasons are data: HTML is escaped, and every block we emit carries
``mathjax_ignore`` so that prices such as "$0.01 … $0.02" never become LaTeX
(JupyterLab typesets math in HTML outputs too).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.completion import CompletionResponse
from ..core.money import format_usd
from ..core.text import escape_markdown
from .thumbnails import thumbnails_html, thumbnails_text

if TYPE_CHECKING:
    from ..core.parts import Part
    from ..orchestration.judges import JudgeEvent
    from ..orchestration.parallel import ConsensusResult

__all__ = [
    "PanelState",
    "RaceState",
    "Votes",
    "answer_markdown",
    "escape_markdown",
    "footer_html",
    "judge_line",
    "judge_verdict",
    "judging_html",
    "judging_text",
    "race_bundle",
    "race_html",
    "race_text",
    "status_line",
    "votes_of",
    "votes_text",
]

# -- theme ---------------------------------------------------------------------------------------

FG = "var(--jp-content-font-color1, rgba(0,0,0,.87))"
FG_DIM = "var(--jp-content-font-color2, rgba(0,0,0,.6))"  # footers and status lines: >= 4.5:1
BORDER = "var(--jp-border-color1, #bdbdbd)"
HIGHLIGHT_BG = "var(--jp-layout-color2, #eeeeee)"  # under FG text in light and dark alike
ERROR_FG = "var(--jp-error-color1, #d32f2f)"  # 5:1 on white, 5.3:1 on the dark theme's #111
STATUS_COLOURS = {
    "waiting": "var(--jp-border-color1, #9e9e9e)",
    "thinking": "var(--jp-brand-color2, #7b1fa2)",  # a reasoning model before its first word
    "streaming": "var(--jp-brand-color1, #1976d2)",
    "done": "var(--jp-success-color1, #388e3c)",
    "failed": "var(--jp-error-color1, #d32f2f)",
    "retrying": "var(--jp-warn-color0, #e65100)",  # a failed try, waiting to try again
    "cancelled": "var(--jp-warn-color1, #f57c00)",
}
WINNER_BORDER = f"2px solid {STATUS_COLOURS['done']}"
PLAIN_BORDER = f"1px solid {BORDER}"
PRE_STYLE = f"white-space:pre-wrap;word-break:break-word;margin:0;font-size:0.9em;color:{FG}"
NO_MATH = "mathjax_ignore tex2jax_ignore"  # MathJax 3 and 2 class names: leave "$" alone
# A judge call's status: the panel colour that means the same thing.
JUDGE_COLOURS = {
    "queued": STATUS_COLOURS["waiting"],
    "pending": STATUS_COLOURS["streaming"],
    "voted": STATUS_COLOURS["done"],
    "failed": STATUS_COLOURS["failed"],
    "skipped": STATUS_COLOURS["cancelled"],
    "cancelled": STATUS_COLOURS["cancelled"],
}
JUDGE_ENDED = ("voted", "failed", "skipped", "cancelled")
STOPPED = "stopped by you (stop button or Ctrl-C)"
_FAILURE = re.compile(r"^(try \d+: )?(error|timeout):")
_KEEP = 200  # characters of an error shown on a panel: one line, not a traceback
_STATUS_OF = {"ok": "done", "error": "failed", "timeout": "failed", "cancelled": "cancelled"}


def panel_status(response: CompletionResponse) -> str:
    return _STATUS_OF[response.status]


# -- state ---------------------------------------------------------------------------------------


@dataclass
class PanelState:
    """One model's panel as shown: the same for the widget, the static HTML and the text."""

    model: str
    status: str = "waiting"
    text: str = ""
    response: CompletionResponse | None = None
    winner: bool = False
    attempt: int = 0
    failed_tries: list[str] = field(default_factory=list)  # one line per failed earlier try
    stopped: bool = False  # the user pressed stop while this panel was unfinished
    thinking_s: float | None = None  # seconds of thinking so far (the badge's own timer)
    retry_in_s: float | None = None  # "retrying": the wait before the next try (None: it's sent)


@dataclass
class Votes:
    """The judge x candidate table: points per candidate column and each judge's verdict."""

    columns: list[str]
    rows: list[dict[str, Any]]  # {"judge", <column>: points, "verdict": text}
    totals: dict[str, float]
    winner: str | None  # a column, None for a tie
    method: str
    errors: dict[str, str]  # judge -> why it gave no usable verdict


@dataclass
class RaceState:
    title: str
    panels: list[PanelState]
    winner: str | None = None
    reason: str = ""
    votes: Votes | None = None
    show_votes: bool = False
    judging: list[JudgeEvent] = field(default_factory=list)  # each judge call, as last heard
    media: list[Part] = field(default_factory=list)  # the prompt's images and documents


# -- fragments shared by the widget and the static HTML ------------------------------------------


def header_html(p: PanelState) -> str:
    response = p.response
    parts = [f"<b>{html.escape(p.model)}</b>"]
    if response is not None and response.provider == "sim":
        parts.append("<i>(simulated)</i>")
    if response is not None and response.model and response.model != p.model:
        # A fallback answered: say which model the text really came from.
        parts.append(f"→ answered by <b>{html.escape(response.model)}</b>")
    colour = STATUS_COLOURS[p.status]
    parts.append(
        f'<span class="mmo-badge" style="color:{FG};border:1px solid {colour};'
        f"border-left:6px solid {colour};border-radius:4px;padding:0 6px;"
        f'font-size:0.85em">{html.escape(_label(p))}</span>'
    )
    if p.winner:
        parts.append("🏆")
    return f'<span class="{NO_MATH}" style="color:{FG}">{" ".join(parts)}</span>'


def body_html(text: str) -> str:
    return f'<pre class="mmo-text" style="{PRE_STYLE}">{html.escape(text)}</pre>'


def stats_html(p: PanelState) -> str:
    # Failures in the error colour; a cancellation (lost the race, stopped) is no error.
    lines = [
        f'<span style="color:{ERROR_FG if _FAILURE.search(line) else FG_DIM}">'
        f"{html.escape(line)}</span>"
        for line in _problems(p)
    ]
    if p.response is not None:
        lines.append(html.escape(stats_line(p.response)))
    if not lines:
        return ""
    return (
        f'<span class="mmo-stats {NO_MATH}" style="display:block;line-height:1.45;'
        f'font-size:0.85em;color:{FG_DIM}">'
        f"{'<br>'.join(lines)}</span>"
    )


def summary_html(state: RaceState) -> str:
    parts = []
    if state.winner is not None:
        parts.append(f"🏆 <b>{html.escape(state.winner)}</b>")
    elif state.reason:
        parts.append("<b>no winner</b>")
    if state.reason:
        parts.append(html.escape(state.reason))
    parts.append(f'<span style="color:{FG_DIM}">{html.escape(_tally(state.panels))}</span>')
    return f'<span class="mmo-summary {NO_MATH}" style="color:{FG}">{" — ".join(parts)}</span>'


def votes_html(votes: Votes | None) -> str:
    if votes is None:
        return f'<p class="{NO_MATH}" style="color:{FG}"><i>No judge votes.</i></p>'
    cell = f"border:1px solid {BORDER};padding:2px 8px;text-align:center;color:{FG}"
    # The winner's column: bold on the theme's second layout colour, text in the content
    # colour, so it reads in light and dark (a fixed pale green under white text did not).
    win = f"background:{HIGHLIGHT_BG};font-weight:bold;border-color:{STATUS_COLOURS['done']}"

    def td(text: str, column: str | None = None, tag: str = "td") -> str:
        style = f"{cell};{win}" if column is not None and column == votes.winner else cell
        return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

    head = td("judge", tag="th") + "".join(td(c, c, "th") for c in votes.columns)
    head += td("verdict", tag="th")
    body = "".join(
        "<tr>"
        + td(str(row["judge"]))
        + "".join(td(points(row[c]), c) for c in votes.columns)
        + td(str(row["verdict"]))
        + "</tr>"
        for row in votes.rows
    )
    totals = "".join(td(points(votes.totals[c]), c, "th") for c in votes.columns)
    foot = td("total", tag="th") + totals
    foot += td("", tag="th")
    table = (
        f'<table class="mmo-votes {NO_MATH}" style="border-collapse:collapse;margin-top:6px;'
        f'color:{FG}"><caption style="text-align:left;color:{FG}">{html.escape(_caption(votes))}'
        f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"<tfoot><tr>{foot}</tr></tfoot></table>"
    )
    errors = "".join(
        f"<li>{html.escape(judge)}: {html.escape(one_line(error))}</li>"
        for judge, error in votes.errors.items()
    )
    if errors:
        table += f'<div class="{NO_MATH}" style="color:{FG}">Judges without a usable verdict:'
        table += f"<ul>{errors}</ul></div>"
    return table


def judging_html(calls: Sequence[JudgeEvent]) -> str:
    """The judge calls as a table: judge, order, status badge, verdict, latency."""
    if not calls:
        return ""
    cell = f"border:1px solid {BORDER};padding:2px 8px;text-align:left;color:{FG}"

    def badge(status: str) -> str:
        colour = JUDGE_COLOURS[status]
        return (
            f'<span class="mmo-badge" style="color:{FG};border:1px solid {colour};'
            f"border-left:6px solid {colour};border-radius:4px;padding:0 6px;"
            f'font-size:0.85em">{html.escape(status)}</span>'
        )

    head = "".join(
        f'<th style="{cell}">{name}</th>'
        for name in ("judge", "order", "status", "verdict", "latency")
    )
    rows = "".join(
        f'<tr data-judge="{html.escape(c.judge)}" data-order="{c.order.split()[0]}"'
        f' data-status="{c.status}"><td style="{cell}">{html.escape(c.judge)}</td>'
        f'<td style="{cell}">{c.order}</td><td style="{cell}">{badge(c.status)}</td>'
        f'<td style="{cell}">{html.escape(judge_verdict(c))}</td>'
        f'<td style="{cell}">{_judge_latency(c)}</td></tr>'
        for c in calls
    )
    return (
        f'<table class="mmo-judging {NO_MATH}" style="border-collapse:collapse;margin-top:6px;'
        f'color:{FG}"><caption style="text-align:left;color:{FG}">{_judging_caption_html(calls)}'
        "</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def pre_html(text: str) -> str:
    """Plain text that stays plain (no Markdown, HTML or math) in every frontend."""
    return (
        f'<pre class="{NO_MATH}" style="white-space:pre-wrap;color:{FG}">{html.escape(text)}</pre>'
    )


_FENCE_LINE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1", re.DOTALL)
_BARE_DOLLAR = re.compile(r"(?<!\\)\\?\$")  # "$", or "\$" (a model's own escape)


def answer_markdown(text: str) -> str:
    """A model's answer as Markdown in which every ``$`` outside code is a literal dollar.

    JupyterLab (and nbconvert with MathJax) typeset ``$...$`` as math, so "Prices: $5
    and $6" showed as italic "5and6". Both run MathJax with ``processEscapes``, after
    the Markdown is rendered: the HTML must still hold ``\\$`` for MathJax to leave a
    dollar, so the Markdown holds ``\\\\$`` (Markdown turns the escaped backslash into
    one backslash, MathJax turns ``\\$`` into ``$``). A single ``\\$`` was measured in
    JupyterLab 4 to come out of Markdown as a bare ``$`` and be typeset. Code spans and
    fenced blocks are left as written: a backslash there would show.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opening = _FENCE_LINE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            out.append(line)
        elif opening:
            fence = opening.group(1)
            out.append(line)
        else:
            out.append(_escape_outside_spans(line))
    return "".join(out)


def _escape_outside_spans(line: str) -> str:
    pieces, last = [], 0
    for span in _CODE_SPAN.finditer(line):
        pieces.append(_BARE_DOLLAR.sub(r"\\\\$", line[last : span.start()]))
        pieces.append(span.group())
        last = span.end()
    pieces.append(_BARE_DOLLAR.sub(r"\\\\$", line[last:]))
    return "".join(pieces)


def footer_html(line: str) -> str:
    return f'<small class="{NO_MATH}" style="color:{FG_DIM}">{html.escape(line)}</small>'


# -- the static rendering of a finished race -----------------------------------------------------


def race_html(state: RaceState) -> str:
    """The finished race as self-contained HTML: what saved notebooks and nbconvert show."""
    columns = grid_columns(len(state.panels))
    panels = "".join(
        f'<div class="mmo-panel" data-model="{html.escape(p.model)}" data-status="{p.status}"'
        f' style="border:{WINNER_BORDER if p.winner else PLAIN_BORDER};padding:6px;min-width:0">'
        f"<div>{header_html(p)}</div>"
        f'<div style="max-height:360px;overflow:auto">{body_html(p.text)}</div>'
        f"<div>{stats_html(p)}</div></div>"
        for p in state.panels
    )
    title = f"<div><b>{html.escape(state.title)}</b></div>" if state.title else ""
    title += thumbnails_html(state.media)
    votes = votes_html(state.votes) if state.show_votes or state.votes else ""
    return (
        f'<div class="mmo-race {NO_MATH}" style="color:{FG}">{title}'
        f'<div style="display:grid;grid-template-columns:repeat({columns}, minmax(0, 1fr));'
        f'gap:8px;width:100%">{panels}</div><div>{summary_html(state)}</div>'
        f"{judging_html(state.judging)}{votes}</div>"
    )


def race_text(state: RaceState) -> str:
    """The finished race as plain text: each model's status and answer, the winner, the votes."""
    lines = [state.title] if state.title else []
    if state.media:
        lines.append(thumbnails_text(state.media))
    for p in state.panels:
        mark = "  🏆 winner" if p.winner else ""
        lines.append(f"── {p.model} · {_label(p)}{mark}")
        if p.text:
            lines.append(p.text)
        lines.extend(f"   {line}" for line in _problems(p))
        if p.response is not None:
            lines.append(f"   {stats_line(p.response)}")
    lines.append(summary_text(state))
    if state.judging:
        lines.append(judging_text(state.judging))
    if state.votes is not None:
        lines.append(votes_text(state.votes))
    return "\n".join(lines)


def summary_text(state: RaceState) -> str:
    head = f"winner: {state.winner}" if state.winner is not None else "no winner"
    return " — ".join(x for x in (head, state.reason, _tally(state.panels)) if x)


def race_bundle(state: RaceState) -> dict[str, str]:
    return {"text/plain": race_text(state), "text/html": race_html(state)}


def status_line(p: PanelState) -> str:
    """One line for a terminal while the race runs: "  sim-slow  streaming · try 2"."""
    # No running thinking timer: a terminal would print a new line at every tick.
    line = f"  {p.model}: {_label(p, timer=False)}"
    problems = _problems(p)
    if p.status not in ("streaming", "thinking") and problems:
        line += f" ({problems[-1]})"
    elif p.response is not None and p.status == "done":
        line += f" ({stats_line(p.response)})"
    return line


# -- judging -------------------------------------------------------------------------------------


def judge_line(call: JudgeEvent) -> str:
    """One judge call in a line: "fair · swapped order: voted geographer (shown as A) · 4 ms"."""
    verdict = judge_verdict(call)
    if call.status == "voted":
        line = f"{call.judge} · {call.order}: voted {verdict}"
    else:
        line = f"{call.judge} · {call.order}: {call.status}" + (f" ({verdict})" if verdict else "")
    latency = _judge_latency(call)
    return f"{line} · {latency}" if latency else line


def judging_text(calls: Sequence[JudgeEvent]) -> str:
    """The judge calls as text: a caption, then one line per call."""
    return "\n".join([_judging_caption(calls), *(f"  {judge_line(c)}" for c in calls)])


def _judging_caption_html(calls: Sequence[JudgeEvent]) -> str:
    """The caption, each phrase kept on one line: a narrow cell wraps between them only."""
    phrases = _judging_caption(calls).split(" — ")
    return " — ".join(f'<span style="white-space:nowrap">{html.escape(p)}</span>' for p in phrases)


def _judging_caption(calls: Sequence[JudgeEvent]) -> str:
    ended = sum(c.status in JUDGE_ENDED for c in calls)
    swap = " (each judge reads the answers in both orders)" if any(c.swapped for c in calls) else ""
    return f"judging{swap} — {ended} of {len(calls)} judge calls ended"


def judge_verdict(call: JudgeEvent) -> str:
    """What the call decided: the model it picked (and the label it saw), a tie, or why none."""
    from ..orchestration.judges import TIE

    if call.status == "voted":
        if call.winner == TIE:
            text = "tie"
        else:
            text = call.model or call.winner or "?"
            if call.shown_as:
                text += f" (shown as {call.shown_as})"
        return text + (" after a repair" if call.repaired else "")
    if call.status == "failed":
        return f"no usable verdict: {one_line(call.error or 'no reason recorded')}"
    return one_line(call.error or "")


def _judge_latency(call: JudgeEvent) -> str:
    return "" if call.latency_ms is None else f"{call.latency_ms:.0f} ms"


# -- votes ---------------------------------------------------------------------------------------


def votes_of(result: ConsensusResult) -> Votes | None:
    """The votes table of a consensus: a column per candidate model, a row per judge."""
    from ..orchestration.judges import TIE

    tally = result.votes
    errors = {judge: str(error) for judge, error in result.judge_errors.items()}
    if tally is None:
        return Votes([], [], {}, None, "", errors) if errors else None
    names = _vote_columns(tally.labels, result.candidates)
    rows = []
    for judge in tally.judges:
        verdict = result.verdicts.get(judge)
        row: dict[str, Any] = {"judge": judge}
        row.update({names[label]: tally.points[judge][label] for label in tally.labels})
        row["verdict"] = _verdict_text(verdict, names, TIE)
        rows.append(row)
    totals = {names[label]: total for label, total in tally.totals.items()}
    winner = names.get(tally.winner) if tally.winner != TIE else None
    return Votes([names[lb] for lb in tally.labels], rows, totals, winner, tally.method, errors)


def votes_text(votes: Votes) -> str:
    """The votes as an aligned text table (a terminal, or a notebook's text/plain)."""
    header = ["judge", *votes.columns, "verdict"]
    rows = [
        [str(r["judge"]), *(points(r[c]) for c in votes.columns), str(r["verdict"])]
        for r in votes.rows
    ]
    rows.append(["total", *(points(votes.totals[c]) for c in votes.columns), ""])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [_caption(votes)]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    lines.extend(f"{judge}: no usable verdict ({one_line(e)})" for judge, e in votes.errors.items())
    return "\n".join(lines)


def _caption(votes: Votes) -> str:
    outcome = f"winner: {votes.winner}" if votes.winner else "tie"
    return f"judges' votes ({votes.method}) — {outcome}"


def _verdict_text(verdict: Any, names: dict[str, str], tie: str) -> str:
    if verdict is None:
        return ""
    if verdict.winner == tie:
        # Swap-order judging: a verdict that flips with the order is a tie, worth 0 to everyone.
        flipped = "position bias" in verdict.reason or "flipped" in verdict.reason
        return "tie (flipped when swapped)" if flipped else "tie"
    return names.get(verdict.winner, verdict.winner)


def _vote_columns(labels: Sequence[str], candidates: dict[str, str]) -> dict[str, str]:
    """Column name per label: the candidate's model, or "A: model" when a model appears twice."""
    models = [candidates.get(label, label) for label in labels]
    return {
        label: model if models.count(model) == 1 else f"{label}: {model}"
        for label, model in zip(labels, models, strict=True)
    }


# -- small pieces --------------------------------------------------------------------------------


def points(value: object) -> str:
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def grid_columns(n: int) -> int:
    """Grid columns: side by side up to 2, 2x2 for 4, otherwise rows of 3."""
    if n <= 2:
        return max(n, 1)
    return 2 if n == 4 else 3


def stats_line(r: CompletionResponse) -> str:
    parts = []
    if r.ttft_ms is not None:
        parts.append(f"ttft {r.ttft_ms:.0f} ms")
    if r.latency_ms is not None:
        parts.append(f"{r.latency_ms:.0f} ms")
    if (thought := thinking_note(r)) is not None:
        parts.append(thought)
    if r.input_tokens is not None or r.output_tokens is not None:
        approx = "~" if r.tokens_estimated else ""
        n_in = "?" if r.input_tokens is None else f"{approx}{r.input_tokens}"
        n_out = "?" if r.output_tokens is None else f"{approx}{r.output_tokens}"
        parts.append(f"{n_in}→{n_out} tokens")
    if r.cached:
        parts.append("cached")  # served from the response cache: nothing was billed
    else:
        parts.append(format_usd(r.cost))
    return " · ".join(parts)


def thinking_note(r: CompletionResponse) -> str | None:
    """How long a reasoning model thought before its first visible word, and its tokens.

    ``ttft_ms - first_activity_ms``: the first byte of any kind until the first answer word.
    None for a model that did not reason (its first byte and first word are one moment)."""
    if not r.reasoning_tokens and not r.reasoning:
        return None
    parts = []
    if r.ttft_ms is not None and r.first_activity_ms is not None:
        parts.append(f"thought {max(0.0, r.ttft_ms - r.first_activity_ms):.0f} ms")
    if r.reasoning_tokens:
        parts.append(f"{r.reasoning_tokens} reasoning tokens")
    return " · ".join(parts) or "thought"


def one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _KEEP else line[: _KEEP - 1] + "…"


def _label(p: PanelState, *, timer: bool = True) -> str:
    if p.status == "thinking":
        clock = f" {p.thinking_s:.1f} s" if timer and p.thinking_s is not None else ""
        return f"thinking{clock}" + (f" · try {p.attempt}" if p.attempt > 1 else "")
    if p.status == "retrying":
        if p.retry_in_s is not None:  # waiting out the back-off
            return f"retrying in {p.retry_in_s:.1f} s"
        return f"retrying · try {p.attempt + 1}"  # the next try is on its way
    if p.status == "streaming" and p.attempt > 1:
        return f"streaming · try {p.attempt}"
    if p.status == "cancelled" and p.stopped:
        return "stopped"
    return p.status


def _problems(p: PanelState) -> list[str]:
    """Lines about what went wrong: earlier failed tries (retries), then why this one ended."""
    lines = [f"try {i}: {line}" for i, line in enumerate(p.failed_tries, 1)]
    if p.stopped and p.status in ("cancelled", "waiting", "thinking", "streaming", "retrying"):
        lines.append(f"cancelled: {STOPPED}")
    elif p.response is not None and p.response.status != "ok":
        lines.append(_why(p.response))
    return lines


def _why(response: CompletionResponse) -> str:
    return f"{response.status}: {one_line(response.error or 'no reason recorded')}"


def attempt_line(response: CompletionResponse) -> str:
    """How a failed try is remembered on its panel once the next one starts."""
    return _why(response)


def _tally(panels: Iterable[PanelState]) -> str:
    counts = Counter(p.status for p in panels)
    return " · ".join(f"{status} {counts[status]}" for status in STATUS_COLOURS if counts[status])
