"""Live ipywidgets views of several models answering one prompt.

This is the notebook layer: it may import ipywidgets, and nothing outside the
notebook layer may import it (``import mmo_magic`` never does). Views wrap
results; results never depend on views.

Threads: ``on_text`` and ``on_finish`` arrive on the orchestrator's event-loop
thread, ``finish`` and ``set_winner`` usually on the main thread. Each panel
guards its state with its own lock, and sets its widget values while holding
it, so a late delta can never overwrite the final text.
"""

from __future__ import annotations

import asyncio
import html
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import ipywidgets as widgets

from ..core.completion import CompletionResponse
from ..core.errors import ConfigError
from ..orchestration.judges import TIE, Tally
from ..orchestration.parallel import ConsensusResult, RaceResult

__all__ = ["RaceView"]

# Each text update is a comm message to the browser: at most 20 per second per
# panel, counting a stream's first words and its final exact text (1/0.055 s
# ~ 18, plus those two; benchmarks/widgets.py counts them).
PUSH_INTERVAL_S = 0.055
_ERROR_KEEP = 200  # characters of an error shown on a panel: one line, not a traceback

_BADGE_COLOURS = {
    "waiting": "#9e9e9e",
    "streaming": "#1565c0",
    "done": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#ef6c00",
}
_STATUS_OF = {"ok": "done", "error": "failed", "timeout": "failed", "cancelled": "cancelled"}
_WINNER_BORDER = "2px solid #2e7d32"
_PLAIN_BORDER = "1px solid #d0d0d0"
_PRE_STYLE = "white-space:pre-wrap;word-break:break-word;margin:0;font-size:0.9em"


class _Panel:
    """One model's box: header (name, badge), streamed text, stats line."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.parts: list[str] = []  # every delta of the current attempt, pushed or not
        self.shown = ""  # the text the widget shows now
        self.pushed = 0  # how many of ``parts`` it includes
        self.status = "waiting"
        self.attempt = 0
        self.response: CompletionResponse | None = None
        self.winner = False
        self.final = False  # set by finish(): later callbacks are stale and ignored
        self.last_push = 0.0
        self.flush_pending = False
        self.header = widgets.HTML()
        self.body = widgets.HTML(layout=widgets.Layout(max_height="360px", overflow="auto"))
        self.stats = widgets.HTML()
        self.box = widgets.VBox(
            [self.header, self.body, self.stats],
            layout=widgets.Layout(border=_PLAIN_BORDER, padding="6px", min_width="0"),
        )
        self._render_header()

    # -- called with self.lock held -------------------------------------------------------------

    def _push_text(self) -> None:
        self.shown = "".join(self.parts)
        self.pushed = len(self.parts)
        self.body.value = f'<pre style="{_PRE_STYLE}">{html.escape(self.shown)}</pre>'
        self.last_push = time.monotonic()

    def _render_header(self) -> None:
        response = self.response
        parts = [f"<b>{html.escape(self.model)}</b>"]
        if response is not None and response.provider == "sim":
            parts.append("<i>(simulated)</i>")
        if response is not None and response.model and response.model != self.model:
            # A fallback answered: say which model the text really came from.
            parts.append(f"→ answered by <b>{html.escape(response.model)}</b>")
        label = self.status
        if self.status == "streaming" and self.attempt > 1:
            label = f"streaming · try {self.attempt}"
        colour = _BADGE_COLOURS[self.status]
        parts.append(
            f'<span style="background:{colour};color:white;border-radius:8px;'
            f'padding:0 6px;font-size:0.85em">{html.escape(label)}</span>'
        )
        if self.winner:
            parts.append("🏆")
        self.header.value = " ".join(parts)

    def _render_stats(self) -> None:
        response = self.response
        if response is None:
            self.stats.value = ""
            return
        line = html.escape(_stats_line(response))
        if response.status != "ok":
            reason = f"{response.status}: {_one_line(response.error or 'no reason given')}"
            line = f'<span style="color:#c62828">{html.escape(reason)}</span><br>{line}'
        self.stats.value = f'<span style="font-size:0.85em;color:#555">{line}</span>'

    # -- entry points ---------------------------------------------------------------------------

    def add_text(self, delta: str) -> tuple[bool, float | None]:
        """Buffer ``delta`` and push it if the last push is old enough.

        Returns whether the status changed, and the delay after which held-back
        text must be flushed (None when nothing is held back or a flush is due).
        """
        with self.lock:
            if self.final:
                return False, None
            started = self.status != "streaming"
            if started:
                if self.status != "waiting":  # a retry or fallback restarts the text
                    self.parts.clear()
                    self.response = None
                    self._render_stats()
                self.status = "streaming"
                self.attempt += 1
                self._render_header()
            self.parts.append(delta)
            wait = PUSH_INTERVAL_S - (time.monotonic() - self.last_push)
            if wait <= 0 or started:  # a new attempt's first words show at once
                self._push_text()
                return started, None
            if self.flush_pending:
                return started, None
            self.flush_pending = True
            return started, wait

    def flush(self) -> None:
        """Push text that the throttle held back (deltas may stop for a while, e.g. a stall)."""
        with self.lock:
            self.flush_pending = False
            if not self.final and self.pushed != len(self.parts):
                self._push_text()

    def end_attempt(self, response: CompletionResponse) -> None:
        with self.lock:
            if self.final:
                return
            self.response = response
            self.status = _STATUS_OF[response.status]
            self.parts = [response.content]  # the attempt's whole text, as recorded
            self._push_text()
            self._render_header()
            self._render_stats()

    def finalize(self, response: CompletionResponse | None) -> None:
        """The final state: the response's exact content, or cancelled if it never ended."""
        with self.lock:
            if response is not None:
                self.response = response
                self.status = _STATUS_OF[response.status]
                self.parts = [response.content]
            elif self.response is None or self.status in ("waiting", "streaming"):
                self.status = "cancelled"  # never started, or still running when the call ended
            self.final = True
            self._push_text()
            self._render_header()
            self._render_stats()

    def mark_winner(self, winner: bool) -> None:
        with self.lock:
            self.winner = winner
            self.box.layout.border = _WINNER_BORDER if winner else _PLAIN_BORDER
            self._render_header()

    def state(self) -> dict[str, object]:
        with self.lock:
            r = self.response
            return {
                "text": self.shown,
                "status": self.status,
                "winner": self.winner,
                "ttft_ms": r.ttft_ms if r else None,
                "latency_ms": r.latency_ms if r else None,
                "input_tokens": r.input_tokens if r else None,
                "output_tokens": r.output_tokens if r else None,
                "cost": r.cost if r else None,
                "cached": r.cached if r else False,
                "error": r.error if r else None,
            }


class RaceView:
    """A live side-by-side view of ``models`` answering one prompt.

    Display ``view.widget``; feed it ``on_text`` / ``on_finish`` while the call
    runs, then ``finish(result)`` with the RaceResult or ConsensusResult.
    """

    def __init__(self, models: Sequence[str], *, title: str = "", show_votes: bool = False) -> None:
        names = list(models)
        if not names:
            raise ConfigError("Name at least one model to show.")
        if len(set(names)) != len(names):
            # Deltas arrive keyed by model name only, so two panels of one name would mix.
            raise ConfigError(f"Each model can race once, got {names}.", hint="Drop the repeats.")
        self.models = names
        self._panels = {name: _Panel(name) for name in names}
        self._lock = threading.Lock()  # guards the summary and the votes
        self._winner: str | None = None
        self._reason = ""
        self._vote_rows: list[dict[str, object]] = []
        self.title = widgets.HTML(f"<b>{html.escape(title)}</b>" if title else "")
        self.grid = widgets.GridBox(
            [p.box for p in self._panels.values()],
            layout=widgets.Layout(
                grid_template_columns=f"repeat({_columns(len(names))}, minmax(0, 1fr))",
                grid_gap="8px",
                width="100%",
            ),
        )
        self.summary = widgets.HTML()
        self.votes = widgets.HTML()
        children = [self.title, self.grid, self.summary]
        self.widget = widgets.VBox([*children, self.votes] if show_votes else children)
        self._render_summary()

    # -- loop-thread callbacks ----------------------------------------------------------------

    def on_text(self, model: str, delta: str) -> None:
        """One text delta of ``model``: always buffered, shown at most every ~50 ms."""
        panel = self._panels.get(model)
        if panel is None:
            return
        started, flush_in = panel.add_text(delta)
        if flush_in is not None:
            _call_later(flush_in, panel.flush)
        if started:
            self._render_summary()

    def on_finish(self, response: CompletionResponse, model: str | None = None) -> None:
        """An attempt ended (ok, failed, timed out or cancelled).

        ``model`` names the panel; without it the panel is ``response.model``'s.
        Pass it when fallbacks or aliases are in play: the response then names
        the model that answered (a canonical name), not the panel's name.
        """
        panel = self._panel_for(response, model)
        if panel is None:
            return
        panel.end_attempt(response)
        self._render_summary()

    # -- main-thread API ------------------------------------------------------------------------

    def set_winner(self, model: str | None, reason: str = "") -> None:
        """Highlight ``model``'s panel (None: no winner) and say why in the summary."""
        for name, panel in self._panels.items():
            panel.mark_winner(name == model)
        with self._lock:
            self._winner, self._reason = model, reason
        self._render_summary()

    def set_votes(self, result: ConsensusResult) -> None:
        """Show the judge x candidate table, the panel's winner and its reason."""
        rows: list[dict[str, object]] = []
        table = ""
        tally = result.votes
        if tally is not None:
            columns = _vote_columns(tally.labels, result.candidates)
            rows = [
                {"judge": judge, **{columns[lb]: tally.points[judge][lb] for lb in tally.labels}}
                for judge in tally.judges
            ]
            table = _votes_table(rows, [columns[lb] for lb in tally.labels], tally, columns)
        errors = "".join(
            f"<li>{html.escape(judge)}: {html.escape(_one_line(str(error)))}</li>"
            for judge, error in result.judge_errors.items()
        )
        if errors:
            errors = f"<p>Judges without a usable verdict:</p><ul>{errors}</ul>"
        with self._lock:
            self._vote_rows = rows
            self.votes.value = (table or "<p><i>No judge votes.</i></p>") + errors
            if self.votes not in self.widget.children:
                self.widget.children = (*self.widget.children, self.votes)
        winner = _panel_model(result, result.winner, self.models)
        self.set_winner(winner, result.reason)

    def finish(self, result: RaceResult | ConsensusResult | None = None) -> None:
        """Final sync from ``result``: exact texts, statuses, winner; unfinished panels cancelled.

        Call it on the main thread once the orchestrator call has returned.
        """
        responses = _by_panel(result.responses, self.models) if result is not None else {}
        for name, panel in self._panels.items():
            panel.finalize(responses.get(name))
        if isinstance(result, ConsensusResult) and self.votes in self.widget.children:
            self.set_votes(result)
        elif isinstance(result, ConsensusResult):
            self.set_winner(_panel_model(result, result.winner, self.models), result.reason)
        elif isinstance(result, RaceResult):
            reason = "first successful answer"
            if result.winner is not None and result.winner.latency_ms is not None:
                reason += f" ({result.winner.latency_ms:.0f} ms)"
            winner = _panel_model(result, result.winner, self.models)
            self.set_winner(winner, reason if winner else "no model answered")
        else:
            self._render_summary()

    def state(self) -> dict[str, dict[str, object]]:
        """Per model: text shown, status, winner flag, timings, tokens, cost (None = unknown)."""
        return {name: panel.state() for name, panel in self._panels.items()}

    def votes_state(self) -> list[dict[str, object]]:
        """The votes rows as shown: ``{"judge": name, <candidate model>: points, ...}``."""
        with self._lock:
            return [dict(row) for row in self._vote_rows]

    # -- helpers --------------------------------------------------------------------------------

    def _panel_for(self, response: CompletionResponse, model: str | None) -> _Panel | None:
        return self._panels.get(model if model is not None else response.model)

    def _render_summary(self) -> None:
        with self._lock:
            counts = Counter(p.status for p in self._panels.values())
            tally = " · ".join(
                f"{status} {counts[status]}" for status in _BADGE_COLOURS if counts[status]
            )
            parts = []
            if self._winner is not None:
                parts.append(f"🏆 <b>{html.escape(self._winner)}</b>")
            elif self._reason:
                parts.append("<b>no winner</b>")
            if self._reason:
                parts.append(html.escape(self._reason))
            parts.append(f'<span style="color:#555">{tally}</span>')
            self.summary.value = " — ".join(parts)


def _columns(n: int) -> int:
    """Grid columns: side by side up to 2, 2x2 for 4, otherwise rows of 3."""
    if n <= 2:
        return n
    return 2 if n == 4 else 3


def _call_later(delay: float, callback: Callable[[], None]) -> None:
    # On the loop thread, a loop timer costs nothing; elsewhere (tests, scripts) use a thread.
    try:
        asyncio.get_running_loop().call_later(delay, callback)
    except RuntimeError:
        timer = threading.Timer(delay, callback)
        timer.daemon = True
        timer.start()


def _by_panel(
    responses: Sequence[CompletionResponse], models: list[str]
) -> dict[str, CompletionResponse]:
    """Responses keyed by panel: by position when they match the models, else by model name."""
    if len(responses) == len(models):
        return dict(zip(models, responses, strict=True))
    return {r.model: r for r in responses if r.model in models}


def _panel_model(
    result: RaceResult | ConsensusResult, winner: CompletionResponse | None, models: list[str]
) -> str | None:
    """The panel name of ``winner``: its position in the responses, since a fallback renames it."""
    if winner is None:
        return None
    for name, response in _by_panel(result.responses, models).items():
        if response is winner:
            return name
    return winner.model


def _vote_columns(labels: Sequence[str], candidates: dict[str, str]) -> dict[str, str]:
    """Column name per label: the candidate's model, or "A: model" when a model appears twice."""
    models = [candidates.get(label, label) for label in labels]
    return {
        label: model if models.count(model) == 1 else f"{label}: {model}"
        for label, model in zip(labels, models, strict=True)
    }


def _votes_table(
    rows: list[dict[str, object]], columns: list[str], tally: Tally, by_label: dict[str, str]
) -> str:
    winner = by_label.get(tally.winner) if tally.winner != TIE else None
    cell = "border:1px solid #d0d0d0;padding:2px 8px;text-align:center"
    win = "background:#e8f5e9;font-weight:bold"

    def td(text: str, column: str | None = None, tag: str = "td") -> str:
        style = f"{cell};{win}" if column is not None and column == winner else cell
        return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

    head = td("judge", tag="th") + "".join(td(c, c, "th") for c in columns)
    body = "".join(
        "<tr>" + td(str(row["judge"])) + "".join(td(_points(row[c]), c) for c in columns) + "</tr>"
        for row in rows
    )
    totals = tally.totals
    foot = td("total", tag="th") + "".join(
        td(_points(totals[label]), by_label[label], "th") for label in tally.labels
    )
    outcome = f"winner: {winner}" if winner else "tie"
    caption = f"judges' votes ({tally.method}) — {outcome}"
    return (
        f'<table style="border-collapse:collapse;margin-top:6px">'
        f"<caption style='text-align:left'>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody><tfoot><tr>{foot}</tr></tfoot></table>"
    )


def _points(value: object) -> str:
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def _stats_line(r: CompletionResponse) -> str:
    parts = []
    if r.ttft_ms is not None:
        parts.append(f"ttft {r.ttft_ms:.0f} ms")
    if r.latency_ms is not None:
        parts.append(f"{r.latency_ms:.0f} ms")
    if r.input_tokens is not None or r.output_tokens is not None:
        approx = "~" if r.tokens_estimated else ""
        n_in = "?" if r.input_tokens is None else f"{approx}{r.input_tokens}"
        n_out = "?" if r.output_tokens is None else f"{approx}{r.output_tokens}"
        parts.append(f"{n_in}→{n_out} tokens")
    if r.cached:
        parts.append("cached")  # served from the response cache: nothing was billed
    else:
        parts.append("cost n/a" if r.cost is None else f"${r.cost:.6f}")
    return " · ".join(parts)


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _ERROR_KEEP else line[: _ERROR_KEEP - 1] + "…"
