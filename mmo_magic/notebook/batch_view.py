"""Progress of a batch: an ipywidgets table in a notebook, a text bar in a terminal or script.

Both show, per model (and per judge): done of total, failed, cost so far and
the time left at the model's pace, under a line with the totals and the
worst-case cost. ``auto_progress()`` picks the widget under a kernel whose
frontend shows widgets and the text bar elsewhere; ``install()`` makes it the
default view of ``run_batch`` (``progress=None``).

Threads: ``start``, ``update`` and ``finish`` come from the event-loop
thread and only set widget values or write text; ``close``, called by the
caller's thread once the batch has returned, replaces the live widget with a
static HTML rendering of its final state, so a saved notebook shows it
without a kernel.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from typing import IO, Any

from ..core.money import format_usd
from ..evaluation.progress import BatchStats, ModelStats, set_default_progress

__all__ = ["TextProgress", "WidgetProgress", "auto_progress", "install", "render_text"]

_BAR = 20


def _eta(stats: ModelStats) -> str:
    eta = stats.eta_s
    if eta is None:
        return "eta ?"
    if eta == 0:
        return "done"
    if eta < 60:
        return f"eta {eta:.0f}s"
    minutes, seconds = divmod(int(eta), 60)
    return f"eta {minutes}m{seconds:02d}s"


def _bar(done: int, total: int, width: int = _BAR) -> str:
    filled = width if total == 0 else int(width * done / total)
    return "█" * filled + "·" * (width - filled)


def _header(stats: BatchStats) -> str:
    elapsed = time.perf_counter() - stats.started
    worst = (
        f" · worst case {format_usd(stats.worst_case_cost)}"
        if stats.worst_case_cost is not None
        else ""
    )
    return (
        f"batch {stats.phase}: {stats.done}/{stats.total} · {stats.failed} failed · "
        f"{format_usd(stats.cost)} spent{worst} · {elapsed:.1f}s"
    )


def render_text(stats: BatchStats) -> str:
    """The text view: a totals line, then one bar per model (and judge)."""
    rows = [_header(stats)]
    width = max((len(name) for name in stats.models), default=0)
    for name, m in stats.models.items():
        finished = m.done + m.resumed
        resumed = f" ({m.resumed} from the log)" if m.resumed else ""
        throttled = f" · {m.throttled}× 429" if m.throttled else ""
        rows.append(
            f"  {name.ljust(width)} {_bar(finished, m.total)} {finished}/{m.total}{resumed} · "
            f"{m.failed} failed · {format_usd(m.cost)} · {_eta(m)}{throttled}"
        )
    return "\n".join(rows)


class TextProgress:
    """A text view for terminals and scripts.

    On a terminal the block is redrawn in place (at most ``interval_s`` apart);
    elsewhere (a log file, CI) it is printed every ``quiet_interval_s`` and
    once at the end.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        interval_s: float = 0.2,
        quiet_interval_s: float = 10.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.interval_s = interval_s if self.live else quiet_interval_s
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

    def _draw(self, stats: BatchStats, force: bool = False) -> None:
        with self._lock:
            now = time.perf_counter()
            if not force and now - self._last < self.interval_s:
                return
            self._last = now
            text = render_text(stats)
            if self.live and self._lines:
                # Back to the first line of the previous block, and clear below it.
                self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self.stream.write(text + "\n")
            self.stream.flush()
            self._lines = text.count("\n") + 1


def render_html(stats: BatchStats) -> str:
    """The widget's table as HTML (also the static rendering left in the notebook)."""
    rows = []
    for name, m in stats.models.items():
        finished = m.done + m.resumed
        share = 100 if m.total == 0 else 100 * finished / m.total
        failed_style = " style='color:var(--jp-error-color1, #c00)'" if m.failed else ""
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b></td>"
            "<td style='min-width:8em'><div style='background:var(--jp-layout-color3,#ddd);"
            "height:0.7em'><div style='background:var(--jp-brand-color1,#1976d2);height:0.7em;"
            f"width:{share:.0f}%'></div></div></td>"
            f"<td>{finished}/{m.total}</td><td{failed_style}>{m.failed}</td>"
            f"<td>{m.resumed}</td><td>{html.escape(format_usd(m.cost))}</td>"
            f"<td>{html.escape(_eta(m))}</td><td>{m.throttled or ''}</td></tr>"
        )
    return (
        f"<div style='color:var(--jp-ui-font-color1)'><p>{html.escape(_header(stats))}</p>"
        "<table><tr><th>model</th><th>progress</th><th>done</th><th>failed</th>"
        "<th>from log</th><th>cost</th><th>time left</th><th>429s</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


class _Static:
    """The final state: HTML for notebooks, text for everything else."""

    def __init__(self, stats: BatchStats) -> None:
        self._html = render_html(stats)
        self._text = render_text(stats)

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        return self._text


class WidgetProgress:
    """A live ipywidgets table; displays itself when made (on the caller's thread)."""

    def __init__(self, *, interval_s: float = 0.1) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.widget = widgets.HTML(value="<p>batch starting…</p>")
        self.interval_s = interval_s
        self._last = 0.0
        self._stats: BatchStats | None = None
        self._handle: Any = display(self.widget, display_id=True)

    def start(self, stats: BatchStats) -> None:
        self._stats = stats
        self.widget.value = render_html(stats)

    def update(self, stats: BatchStats) -> None:
        now = time.perf_counter()
        if now - self._last >= self.interval_s:
            self._last = now
            self.widget.value = render_html(stats)

    def finish(self, stats: BatchStats) -> None:
        self._stats = stats
        self.widget.value = render_html(stats)

    def close(self) -> None:
        """Replace the widget with a static rendering of its final state."""
        if self._stats is not None and self._handle is not None:
            self._handle.update(_Static(self._stats))
        self.widget.close()


def _widgets_shown() -> bool:
    """Whether this runs under a kernel (a frontend that may show widgets) with ipywidgets."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def auto_progress() -> TextProgress | WidgetProgress:
    """The widget in a notebook kernel, the text bar anywhere else."""
    return WidgetProgress() if _widgets_shown() else TextProgress()


def install() -> None:
    """Make ``auto_progress`` the view ``run_batch`` uses by default."""
    set_default_progress(auto_progress)
