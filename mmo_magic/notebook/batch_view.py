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
import time
from typing import Any

from ..evaluation.progress import BatchStats
from ..evaluation.text_progress import (
    TextProgress,
    eta_text,
    header_text,
    render_text,
    spent_text,
)
from ..evaluation.views import set_default_progress

__all__ = ["TextProgress", "WidgetProgress", "auto_progress", "install", "render_text"]

# MathJax 3 and 2 class names: money such as "$0.01 spent · worst case $0.02" is text,
# never LaTeX (JupyterLab and nbconvert typeset "$...$" otherwise).
_NO_MATH = "mathjax_ignore tex2jax_ignore"
_CELL = "padding:0.15em 0.6em"  # the live table's cells, as the finished view's


def render_html(stats: BatchStats) -> str:
    """The widget's table as HTML (also the static rendering left in the notebook)."""
    rows = []
    td = f"<td style='{_CELL}'>"
    for name, m in stats.models.items():
        finished = m.done + m.resumed
        share = 100 if m.total == 0 else 100 * finished / m.total
        failed = f"{_CELL};color:var(--jp-error-color1, #c00)" if m.failed else _CELL
        rows.append(
            f"<tr>{td}<b>{html.escape(name)}</b></td>"
            f"<td style='{_CELL};min-width:8em'><div style='background:"
            "var(--jp-layout-color3,#ddd);height:0.7em'><div style='background:"
            f"var(--jp-brand-color1,#1976d2);height:0.7em;width:{share:.0f}%'></div></div></td>"
            f"{td}{finished}/{m.total}</td><td style='{failed}'>{m.failed}</td>"
            f"{td}{m.resumed}</td>{td}{html.escape(spent_text(m.cost, m.unpriced))}</td>"
            f"{td}{html.escape(eta_text(m, stats.phase))}</td>{td}{m.throttled or ''}</td></tr>"
        )
    th = f"<th style='{_CELL}'>"
    heads = "".join(f"{th}{h}</th>" for h in _HEADS)
    return (
        f"<div class='{_NO_MATH}' style='color:var(--jp-ui-font-color1)'>"
        f"<p>{html.escape(header_text(stats))}</p>"
        f"<table><tr>{heads}</tr>{''.join(rows)}</table></div>"
    )


# "HTTP 429": the rate-limit answers a model got (a bare "429s" read as "time left 429s").
_HEADS = ("model", "progress", "done", "failed", "from log", "cost", "time left", "HTTP 429")


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
