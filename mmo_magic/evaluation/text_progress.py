"""A batch's progress as text: a status block on stderr, redrawn in place on a terminal.

This is the view ``run_batch`` uses in a plain script or terminal (``progress=None``
and no notebook view registered) whenever stderr is a terminal. It needs nothing
but the standard library, so a script gets it without IPython.

The block is a totals line and one line per model (and judge). On a terminal each
line is cut to the terminal's width (the bar narrows first), so no line wraps and
each redraw goes back over exactly the lines it wrote: one status block stays on
screen. Elsewhere (a log file, CI) the block is printed every ``quiet_interval_s``
and once at the end, with no escape codes.

Money: an unpriced model's cost is unknown, never "$0.00" ("cost n/a", or
"$0.0012 + n/a" when some of its calls were priced).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import IO

from ..core.money import format_usd
from .progress import BatchStats, ModelStats

__all__ = ["TextProgress", "eta_text", "header_text", "render_text", "spent_text"]

_BAR = 20
_MIN_BAR = 5
_ENDED = ("done", "stopped")


def eta_text(stats: ModelStats, phase: str) -> str:
    """``done``, the time left at the model's pace, ``eta ?`` before its first answer, or
    ``stopped`` for a model a stopped batch left unfinished (a stopped batch has no ETA)."""
    if stats.remaining == 0:
        return "done"
    if phase == "stopped":
        return "stopped"
    eta = stats.eta_s
    if eta is None:
        return "eta ?"
    if eta < 1:  # unfinished work is never "0s" away
        return "eta <1s"
    if eta < 60:
        return f"eta {eta:.0f}s"
    minutes, seconds = divmod(int(eta), 60)
    return f"eta {minutes}m{seconds:02d}s"


def spent_text(cost: float, unpriced: int) -> str:
    """USD spent: unknown for unpriced calls (missing, never $0.00)."""
    if not unpriced:
        return format_usd(cost)
    if cost == 0:
        return format_usd(None)
    return f"{format_usd(cost)} + n/a"


def header_text(stats: BatchStats) -> str:
    """The totals line: phase, done of total, failures, money, elapsed time."""
    elapsed = time.perf_counter() - stats.started
    worst = (
        f" · worst case {format_usd(stats.worst_case_cost)}"
        if stats.worst_case_cost is not None
        else ""
    )
    spent = spent_text(stats.cost, stats.unpriced)
    spent = spent if spent == format_usd(None) else f"{spent} spent"  # never "n/a spent"
    return (
        f"batch {stats.phase}: {stats.done}/{stats.total} · {stats.failed} failed · "
        f"{spent}{worst} · {elapsed:.1f}s"
    )


def _bar(done: int, total: int, width: int) -> str:
    filled = width if total == 0 else int(width * done / total)
    return "█" * filled + "·" * (width - filled)


def _fit(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"


def render_text(stats: BatchStats, width: int | None = None) -> str:
    """The text view: a totals line, then one bar per model (and judge).

    ``width``: no line is longer (the bar narrows, then the line is cut with "…").
    """
    rows = [_fit(header_text(stats), width)]
    name_width = max((len(name) for name in stats.models), default=0)
    for name, m in stats.models.items():
        finished = m.done + m.resumed
        resumed = f" ({m.resumed} from the log)" if m.resumed else ""
        throttled = f" · {m.throttled}× 429" if m.throttled else ""
        rest = (
            f" {finished}/{m.total}{resumed} · {m.failed} failed · "
            f"{spent_text(m.cost, m.unpriced)} · {eta_text(m, stats.phase)}{throttled}"
        )
        head = f"  {name.ljust(name_width)} "
        bar = _BAR
        if width is not None:
            bar = max(_MIN_BAR, min(_BAR, width - len(head) - len(rest)))
        rows.append(_fit(head + _bar(finished, m.total, bar) + rest, width))
    return "\n".join(rows)


def terminal_width(stream: IO[str]) -> int:
    """Columns of the terminal ``stream`` writes to (80 when it cannot be told)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((80, 24)).columns


class TextProgress:
    """A text view for terminals and scripts (see the module docstring).

    ``width``: the columns to fit (default: the terminal's, read at each redraw, so a
    resized window is followed). The last column is left free: a line that filled it
    would leave some terminals' cursor on the next line.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        interval_s: float = 0.2,
        quiet_interval_s: float = 10.0,
        width: int | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.interval_s = interval_s if self.live else quiet_interval_s
        self.width = width
        self._lines = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, stats: BatchStats) -> None:
        self._draw(stats, force=True)

    def update(self, stats: BatchStats) -> None:
        self._draw(stats)

    def finish(self, stats: BatchStats) -> None:
        self._draw(stats, force=True)

    def close(self) -> None:
        """Nothing to replace: the text is already final."""

    def _columns(self) -> int | None:
        if not self.live:
            return None  # a log file: whole lines
        return (self.width or terminal_width(self.stream)) - 1

    def _draw(self, stats: BatchStats, force: bool = False) -> None:
        with self._lock:
            now = time.perf_counter()
            if not force and now - self._last < self.interval_s:
                return
            self._last = now
            text = render_text(stats, self._columns())
            if self.live and self._lines:
                # Back to the first line of the previous block, and clear below it.
                self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self.stream.write(text + "\n")
            self.stream.flush()
            self._lines = text.count("\n") + 1


def terminal_progress() -> TextProgress | None:
    """The text view when stderr is a terminal; None otherwise (a pipe, a log, a kernel)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return TextProgress() if isatty is not None and isatty() else None
