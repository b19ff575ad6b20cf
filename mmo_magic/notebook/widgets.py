"""Live ipywidgets views of several models answering one prompt.

This is the notebook layer: it may import ipywidgets, and nothing outside the
notebook layer may import it (``import mmo_magic`` never does). Views wrap
results; results never depend on views.

Threads: ``on_text``, ``on_thinking``, ``on_finish``, ``on_retry`` and ``on_judge`` arrive on
the orchestrator's event-loop thread, ``finish`` and ``set_winner`` usually on the main thread.
Each panel guards its state with its own lock, and sets its widget values while holding it, so a
late delta can never overwrite the final text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import threading
import time
from collections.abc import Callable, Collection, Sequence
from types import SimpleNamespace
from typing import Any

from ..core.completion import CompletionResponse
from ..core.errors import ConfigError
from ..core.parts import Part
from ..orchestration.judges import JudgeEvent
from ..orchestration.parallel import ConsensusResult, RaceResult
from . import rendering as r
from .rendering import PanelState, RaceState
from .thumbnails import thumbnails_html

__all__ = ["RaceView"]

# Each text update is a comm message to the browser: at most 20 per second per
# panel, counting a stream's first words and its final exact text (1/0.055 s
# ~ 18, plus those two; benchmarks/widgets.py counts them).
PUSH_INTERVAL_S = 0.055
# The thinking badge's timer: a header update every 0.2 s while a model thinks.
THINKING_TICK_S = 0.2
_UNFINISHED = ("waiting", "thinking", "streaming", "retrying")  # a panel whose call still runs


class _Slot:
    """Holds a widget's value where no frontend shows widgets (a terminal): same code path."""

    def __init__(self) -> None:
        self.value = ""
        self.layout = SimpleNamespace(border="")
        self.children: tuple[Any, ...] = ()


def _html(live: bool, **layout: str) -> Any:
    if not live:
        return _Slot()
    import ipywidgets as widgets

    return widgets.HTML(layout=widgets.Layout(**layout)) if layout else widgets.HTML()


class _Panel:
    """One model's box: header (name, badge), streamed text, stats line."""

    def __init__(self, model: str, live: bool = True) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.parts: list[str] = []  # every delta of the current attempt, pushed or not
        self.pushed = 0  # how many of ``parts`` the widget shows
        self.view = PanelState(model)  # what is shown, rendered by ``rendering``
        self.final = False  # set by finish(): later callbacks are stale and ignored
        self.last_push = 0.0
        self.flush_pending = False
        self.thinking_since: float | None = None  # when this attempt's thinking began
        self.retries = 0  # waits before a retry so far (tells a stale timer from the current)
        self.header = _html(live)
        self.body = _html(live, max_height="360px", overflow="auto")
        self.stats = _html(live)
        self.box: Any = _Slot()
        if live:
            import ipywidgets as widgets

            self.box = widgets.VBox(
                [self.header, self.body, self.stats],
                layout=widgets.Layout(border=r.PLAIN_BORDER, padding="6px", min_width="0"),
            )
        self._render_header()

    @property
    def status(self) -> str:
        return self.view.status

    # -- called with self.lock held -------------------------------------------------------------

    def _push_text(self) -> None:
        self.view.text = "".join(self.parts)
        self.pushed = len(self.parts)
        self.body.value = r.body_html(self.view.text)
        self.last_push = time.monotonic()

    def _new_attempt(self) -> None:
        view = self.view
        if view.status != "waiting":  # a retry or fallback restarts the text
            if view.response is not None and view.response.status != "ok":
                # Keep the failed try in sight: the retry is what a teacher points at.
                view.failed_tries.append(r.attempt_line(view.response))
            self.parts.clear()
            view.response = None
            self._render_stats()
        view.attempt += 1
        view.thinking_s = None
        view.retry_in_s = None
        self.thinking_since = None

    def _tick_thinking(self) -> None:
        if self.thinking_since is not None:
            self.view.thinking_s = time.monotonic() - self.thinking_since

    def _render_header(self) -> None:
        self.header.value = r.header_html(self.view)

    def _render_stats(self) -> None:
        self.stats.value = r.stats_html(self.view)

    # -- entry points ---------------------------------------------------------------------------

    def add_text(self, delta: str) -> tuple[bool, float | None]:
        """Buffer ``delta`` and push it if the last push is old enough.

        Returns whether the status changed, and the delay after which held-back
        text must be flushed (None when nothing is held back or a flush is due).
        """
        with self.lock:
            if self.final:
                return False, None
            view = self.view
            started = view.status != "streaming"
            if started:
                if view.status == "thinking":  # the same attempt: its thinking ends here
                    self._tick_thinking()
                else:
                    self._new_attempt()
                view.status = "streaming"
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

    def start_thinking(self) -> bool:
        """The model shows life before any text (thinking): the badge says so and times it.

        Returns whether the panel just began thinking (the caller starts its timer)."""
        with self.lock:
            if self.final or self.view.status in ("thinking", "streaming"):
                return False
            self._new_attempt()
            self.view.status = "thinking"
            self.thinking_since = time.monotonic()
            self.view.thinking_s = 0.0
            self._render_header()
            return True

    def start_retry(self, delay_s: float) -> int | None:
        """The attempt that just failed will be tried again after ``delay_s``: the badge says
        "retrying in 2.0 s" (not "failed") until the wait is over, then "retrying · try 2"
        until the next try shows life. Returns the wait's number for ``retry_sent``."""
        with self.lock:
            if self.final or self.view.status != "failed":
                return None
            self.view.status = "retrying"
            self.view.retry_in_s = delay_s
            self.retries += 1
            self._render_header()
            return self.retries

    def retry_sent(self, wait: int) -> None:
        """Wait number ``wait`` is over: the next try is on its way."""
        with self.lock:
            if self.final or self.view.status != "retrying" or wait != self.retries:
                return  # it already streams, failed again, or waits anew
            self.view.retry_in_s = None
            self._render_header()

    def tick(self) -> bool:
        """Advance the thinking timer on the badge; False once the panel stopped thinking."""
        with self.lock:
            if self.final or self.view.status != "thinking":
                return False
            self._tick_thinking()
            self._render_header()
            return True

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
            before = self.view.response
            retried = self.view.status == "retrying"  # this attempt is the retry of ``before``
            if (
                before is not None
                and before.status in ("error", "timeout")
                and (retried or (before.status, before.error) != (response.status, response.error))
            ):
                # A retry that ended (failed again, or cancelled by the race's end) before it
                # sent any text: keep the failed try it replaced in sight.
                self.view.failed_tries.append(r.attempt_line(before))
                self.view.attempt += retried
            self.view.retry_in_s = None
            self.view.response = response
            self.view.status = r.panel_status(response)
            self.view.attempt = max(self.view.attempt, 1)
            self.parts = [response.content]  # the attempt's whole text, as recorded
            self._push_text()
            self._render_header()
            self._render_stats()

    def finalize(self, response: CompletionResponse | None, stopped: bool = False) -> None:
        """The final state: the response's exact content, or cancelled if it never ended.

        ``stopped``: the user pressed stop, so an unfinished panel says so, not "cancelled".
        """
        with self.lock:
            view = self.view
            if response is not None:
                before = view.response
                if (
                    before is not None
                    and before.status in ("error", "timeout")
                    and ((before.status, before.error) != (response.status, response.error))
                ):
                    # e.g. a failed try whose retry the race's end cancelled while it waited
                    view.failed_tries.append(r.attempt_line(before))
                view.response = response
                view.status = r.panel_status(response)
                self.parts = [response.content]
            elif view.response is None or view.status in _UNFINISHED:
                if view.status == "retrying" and view.response is not None:
                    view.failed_tries.append(r.attempt_line(view.response))  # the try it waited on
                view.status = "cancelled"  # never started, or still running when the call ended
                view.response = None
            view.stopped = stopped and view.status == "cancelled"
            view.retry_in_s = None
            self.final = True
            self._push_text()
            self._render_header()
            self._render_stats()

    def mark_winner(self, winner: bool) -> None:
        with self.lock:
            self.view.winner = winner
            self.box.layout.border = r.WINNER_BORDER if winner else r.PLAIN_BORDER
            self._render_header()

    def snapshot(self) -> PanelState:
        with self.lock:
            return dataclasses.replace(self.view, failed_tries=list(self.view.failed_tries))

    def state(self) -> dict[str, object]:
        with self.lock:
            v, resp = self.view, self.view.response
            return {
                "text": v.text,
                "status": v.status,
                "winner": v.winner,
                "ttft_ms": resp.ttft_ms if resp else None,
                "latency_ms": resp.latency_ms if resp else None,
                "input_tokens": resp.input_tokens if resp else None,
                "output_tokens": resp.output_tokens if resp else None,
                "cost": resp.cost if resp else None,
                "cached": resp.cached if resp else False,
                "error": resp.error if resp else None,
                "failed_tries": list(v.failed_tries),
                "thinking_s": v.thinking_s,
                "retry_in_s": v.retry_in_s,
                "first_activity_ms": resp.first_activity_ms if resp else None,
                "reasoning_tokens": resp.reasoning_tokens if resp else None,
                "stopped": v.stopped,
            }


class RaceView:
    """A live side-by-side view of ``models`` answering one prompt.

    Display ``view.widget``; feed it ``on_text`` / ``on_finish`` (and ``on_judge``
    while judges vote) while the call runs, then ``finish(result)`` with the
    RaceResult or ConsensusResult.
    ``final_state()`` is what it shows then, for the static rendering.
    """

    def __init__(
        self,
        models: Sequence[str],
        *,
        title: str = "",
        show_votes: bool = False,
        live: bool = True,
        thinkers: Collection[str] | None = None,
        media: Sequence[Part] = (),
    ) -> None:
        names = list(models)
        if not names:
            raise ConfigError("Name at least one model to show.")
        if len(set(names)) != len(names):
            # Deltas arrive keyed by model name only, so two panels of one name would mix.
            raise ConfigError(f"Each model can race once, got {names}.", hint="Drop the repeats.")
        self.models = names
        self._title = title
        self._show_votes = show_votes
        self._panels = {name: _Panel(name, live) for name in names}
        # Models that reason: their first sign of life ("") starts the thinking phase. For
        # the rest it is only a first byte (OpenAI's role chunk); their thinking text, if any
        # ever comes, still does. None: every model.
        self._thinkers = set(names) if thinkers is None else set(thinkers)
        self._lock = threading.Lock()  # guards the summary, the judge calls and the votes
        self._judge_calls: dict[tuple[str, bool], JudgeEvent] = {}  # (judge, swapped) -> latest
        self._winner: str | None = None
        self._reason = ""
        self._votes: r.Votes | None = None
        self.title = _html(live)
        self.title.value = f"<b>{html.escape(title)}</b>" if title else ""
        self._media = list(media)  # the prompt's images and documents, as thumbnails
        self.title.value += thumbnails_html(self._media)
        self.summary = _html(live)
        self.judging = _html(live)  # one row per judge call, filled while the judges work
        self.votes = _html(live)
        self.grid: Any = _Slot()
        self.widget: Any = _Slot()  # ``live=False``: the same state and texts, no ipywidgets
        if live:
            import ipywidgets as widgets

            self.grid = widgets.GridBox(
                [p.box for p in self._panels.values()],
                layout=widgets.Layout(
                    grid_template_columns=f"repeat({r.grid_columns(len(names))}, minmax(0, 1fr))",
                    grid_gap="8px",
                    width="100%",
                ),
            )
            children = [self.title, self.grid, self.summary]
            if show_votes:  # judges may vote: their calls and the votes have their places
                children += [self.judging, self.votes]
            self.widget = widgets.VBox(children)
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

    def on_thinking(self, model: str, delta: str) -> None:
        """Thinking text of ``model`` ("" for a first sign of life): its panel says thinking,
        with a timer, until visible text arrives. The thinking text itself is not shown."""
        panel = self._panels.get(model)
        if panel is None or not (delta or model in self._thinkers) or not panel.start_thinking():
            return
        self._render_summary()

        def tick() -> None:
            if panel.tick():
                _call_later(THINKING_TICK_S, tick)

        _call_later(THINKING_TICK_S, tick)

    def on_retry(self, model: str, delay_s: float) -> None:
        """``model``'s attempt failed and will be tried again in ``delay_s``: its badge says
        "retrying in …" (it said "failed" for the moment between the two callbacks)."""
        panel = self._panels.get(model)
        wait = None if panel is None else panel.start_retry(delay_s)
        if panel is not None and wait is not None:
            self._render_summary()
            _call_later(delay_s, lambda: panel.retry_sent(wait))

    def hooks(self) -> dict[str, Callable[..., None]]:
        """Every loop-thread callback by the keyword an orchestrator call takes it as."""
        return {
            "on_text": self.on_text, "on_result": self.on_finish, "on_judge": self.on_judge,
            "on_thinking": self.on_thinking, "on_retry": self.on_retry,
        }  # fmt: skip

    def on_finish(self, response: CompletionResponse, model: str | None = None) -> None:
        """An attempt ended (ok, failed, timed out or cancelled).

        ``model`` names the panel; without it the panel is ``response.model``'s.
        Pass it when fallbacks or aliases are in play: the response then names
        the model that answered (a canonical name), not the panel's name.
        """
        panel = self._panels.get(model if model is not None else response.model)
        if panel is None:
            return
        panel.end_attempt(response)
        self._render_summary()

    def on_judge(self, event: JudgeEvent) -> None:
        """A judge call was queued, sent, or ended: its row in the judging table changes."""
        with self._lock:
            self._judge_calls[event.judge, event.swapped] = event
            self.judging.value = r.judging_html(list(self._judge_calls.values()))
            self._add_child(self.judging, before=self.votes)

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
        votes = r.votes_of(result)
        with self._lock:
            self._votes = votes
            self._show_votes = True
            self.votes.value = r.votes_html(votes)
            self._add_child(self.votes)
        winner = _panel_model(result, result.winner, self.models)
        self.set_winner(winner, result.reason)

    def finish(
        self, result: RaceResult | ConsensusResult | None = None, *, stopped: bool = False
    ) -> None:
        """Final sync from ``result``: exact texts, statuses, winner; unfinished panels cancelled.

        ``stopped``: the user pressed stop (unfinished panels say so). Call it on
        the main thread once the orchestrator call has returned.
        """
        responses = _by_panel(result.responses, self.models) if result is not None else {}
        for name, panel in self._panels.items():
            panel.finalize(responses.get(name), stopped=stopped)
        self._finish_judging(result.judge_calls if isinstance(result, ConsensusResult) else None)
        if isinstance(result, ConsensusResult) and self._show_votes:
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
            if stopped:
                with self._lock:
                    self._reason = r.STOPPED
            self._render_summary()

    def close(self) -> None:
        """Close every widget of the view (its static rendering has replaced it)."""
        for w in [self.widget, self.title, self.grid, self.summary, self.judging, self.votes]:
            getattr(w, "close", lambda: None)()
        for panel in self._panels.values():
            for w in (panel.box, panel.header, panel.body, panel.stats):
                getattr(w, "close", lambda: None)()

    def final_state(self) -> RaceState:
        """What the view shows, as plain data: rendered statically once the widget is gone."""
        panels = [p.snapshot() for p in self._panels.values()]
        with self._lock:
            return RaceState(
                self._title, panels, self._winner, self._reason, self._votes, self._show_votes,
                list(self._judge_calls.values()), list(self._media),
            )  # fmt: skip

    def state(self) -> dict[str, dict[str, object]]:
        """Per model: text shown, status, winner flag, timings, tokens, cost (None = unknown)."""
        return {name: panel.state() for name, panel in self._panels.items()}

    def votes_state(self) -> list[dict[str, object]]:
        """The votes rows as shown: ``{"judge": name, <model>: points, "verdict": text}``."""
        with self._lock:
            return [dict(row) for row in self._votes.rows] if self._votes else []

    def judging_state(self) -> list[dict[str, object]]:
        """The judge calls as shown: judge, order, status, verdict text and latency."""
        with self._lock:
            calls = list(self._judge_calls.values())
        return [
            {
                "judge": c.judge,
                "order": c.order,
                "status": c.status,
                "verdict": r.judge_verdict(c),
                "latency_ms": c.latency_ms,
            }
            for c in calls
        ]

    # -- helpers --------------------------------------------------------------------------------

    def _add_child(self, child: Any, before: Any = None) -> None:
        """Show ``child`` in the view if it is not there yet (``before`` another child)."""
        if isinstance(self.widget, _Slot) or child in self.widget.children:
            return
        children = list(self.widget.children)
        at = children.index(before) if before in children else len(children)
        self.widget.children = (*children[:at], child, *children[at:])

    def _finish_judging(self, calls: Sequence[JudgeEvent] | None) -> None:
        """The judge calls' final rows: the result's, and whatever never ended is cancelled."""
        with self._lock:
            if calls:
                self._judge_calls = {(c.judge, c.swapped): c for c in calls}
            if not self._judge_calls:
                return
            self._judge_calls = {
                key: c if c.status in r.JUDGE_ENDED else dataclasses.replace(c, status="cancelled")
                for key, c in self._judge_calls.items()
            }
            self.judging.value = r.judging_html(list(self._judge_calls.values()))
            self._add_child(self.judging, before=self.votes)

    def _render_summary(self) -> None:
        panels = [p.snapshot() for p in self._panels.values()]
        with self._lock:
            state = RaceState(self._title, panels, self._winner, self._reason)
            self.summary.value = r.summary_html(state)


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
