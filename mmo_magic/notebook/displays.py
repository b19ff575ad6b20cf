"""How races and routing decisions display: live while they run, static once they end.

``RaceDisplay`` drives one race's view (a widget with a kernel, status lines in a
terminal) and leaves the static rendering behind; the formatter functions give
results their HTML and text/plain forms in IPython. What the HTML and text say
is decided in ``rendering``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any

from IPython.display import display

from ..core.errors import MMOError
from ..core.loop import background_loop
from ..core.money import format_usd
from ..core.parts import Part
from . import rendering

__all__ = ["SHOWN_LIVE", "RaceDisplay", "formatters"]

# The results a live view already shows in full: no Out[] repeats them. Kept by id, so
# results stay plain data.
SHOWN_LIVE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_LIVE_RESULTS = ("mmo_magic.orchestration.parallel", ("RaceResult", "ConsensusResult"))
_ROUTE_DECISION = ("mmo_magic.routing.base", "RouteDecision")


class RaceDisplay:
    """One race, fan-out or consensus, shown while it runs and left behind when it ends.

    With a kernel: the live widget during the run, replaced at the end by a static
    rendering of its final state (HTML and text/plain), so a saved notebook, nbconvert
    or a viewer shows the race without a kernel or saved widget state. In a terminal:
    a status line per model whenever its status changes, a line per judge verdict as
    it arrives, then the texts, the winner and the votes.
    """

    def __init__(
        self,
        live: bool,
        models: list[str],
        title: str,
        *,
        votes: bool,
        thinkers: Collection[str] | None = None,
        media: Sequence[Part] = (),
    ) -> None:
        from .widgets import RaceView

        self.live = live
        self.view = RaceView(
            models, title=title, show_votes=votes, live=live, thinkers=thinkers, media=media
        )
        self.printed: dict[str, str] = {}
        self.handle: Any = None

    def run(
        self, call: Callable[..., Coroutine[Any, Any, Any]], as_result: Callable[..., Any]
    ) -> Any:
        """``call(hooks)`` (the view's callbacks by keyword, see ``RaceView.hooks``) on the
        loop, shown live; ``as_result`` turns its value into the race or consensus result."""
        view = self.view
        if self.live:
            bundle = view.widget._repr_mimebundle_()
            bundle["text/plain"] = f"racing {', '.join(view.models)}…"
            self.handle = display(bundle, raw=True, display_id=True)
        future = background_loop.submit(_watching_retries(view.on_retry, call(view.hooks())))
        # A terminal prints news as it comes; a live widget updates itself.
        on_tick = None if self.live else self._print_status
        try:
            # A stop cancels every request and gives them a moment to close and be recorded.
            result = as_result(background_loop.wait(future, on_tick=on_tick))
        except MMOError as exc:
            self._finish(getattr(exc, "result", None))
            raise
        except KeyboardInterrupt:
            self._finish(None, stopped=True)
            raise
        self._finish(result)
        return result

    def _print_status(self) -> None:
        state = self.view.final_state()
        for panel in state.panels:
            line = rendering.status_line(panel)
            if self.printed.get(panel.model) != line:
                self.printed[panel.model] = line
                print(line, flush=True)
        for call in state.judging:  # each verdict once, when it arrives
            key = f"judge {call.judge} {call.order}"
            if call.status in rendering.JUDGE_ENDED and key not in self.printed:
                self.printed[key] = line = f"  judge {rendering.judge_line(call)}"
                print(line, flush=True)

    def _finish(self, result: Any, *, stopped: bool = False) -> None:
        self.view.finish(result, stopped=stopped)
        state = self.view.final_state()
        if self.live:
            self.handle.update(rendering.race_bundle(state), raw=True)
            self.view.close()  # the static rendering replaces it: no widget state to save
        else:
            print(rendering.race_text(state), flush=True)


async def _watching_retries(
    on_retry: Callable[[str, float], None], call: Coroutine[Any, Any, Any]
) -> Any:
    """``call`` with its races' retries told to ``on_retry`` (the "retrying" badge), also
    through orchestrator methods that take no ``on_retry`` of their own."""
    from ..orchestration.parallel import watching_retries

    with watching_retries(on_retry):
        return await call


def _race_state(result: Any) -> Any:
    """The rendering state of a race or consensus result that no live view showed."""
    from .widgets import RaceView

    models = [r.model for r in result.responses]
    if len(set(models)) != len(models):
        models = [f"{i + 1}. {m}" for i, m in enumerate(models)]
    view = RaceView(models, show_votes=getattr(result, "votes", None) is not None, live=False)
    view.finish(result)
    return view.final_state()


def _race_html(result: Any) -> str | None:
    """A race or consensus result's HTML, unless a live view already shows it."""
    if SHOWN_LIVE.get(id(result)) is result:
        return None
    return rendering.race_html(_race_state(result))


def _race_plain(result: Any, printer: Any, cycle: bool) -> None:
    if SHOWN_LIVE.get(id(result)) is result:
        # The race, its winner and its summary are printed above: Out[] only names the value.
        value: Any = result
        winner = value.winner.model if value.winner is not None else None
        printer.text(f"<{type(value).__name__}: winner {winner}, {len(value.responses)} answers>")
    else:
        printer.text(rendering.race_text(_race_state(result)))


def _race_shown(result: Any) -> None:
    """With a kernel, a result the live view already shows gets no Out[] at all."""
    if SHOWN_LIVE.get(id(result)) is not result:
        display(rendering.race_bundle(_race_state(result)), raw=True)


def _route_plain(decision: Any, printer: Any, cycle: bool) -> None:
    # RouteDecision's own Markdown escapes its text; this is the terminal's form.
    cost = "n/a" if decision.estimated_cost is None else f"~{format_usd(decision.estimated_cost)}"
    printer.text(
        f"RouteDecision: {decision.model} · router {decision.router} · rule {decision.rule}"
        f" · est. {cost}\n{decision.reason}"
    )


def formatters(shell: Any) -> list[tuple[Any, str, str, Any]]:
    """(formatter, module, class name, function): how results display in this shell.

    By name: races and routing are not imported until used.
    """
    formatters = shell.display_formatter.formatters
    module, names = _LIVE_RESULTS
    out: list[tuple[Any, str, str, Any]] = []
    for name in names:
        out.append((formatters["text/html"], module, name, _race_html))
        out.append((formatters["text/plain"], module, name, _race_plain))
        if getattr(shell, "kernel", None) is not None:
            out.append(
                (shell.display_formatter.ipython_display_formatter, module, name, _race_shown)
            )
    route_module, route_name = _ROUTE_DECISION
    out.append((formatters["text/plain"], route_module, route_name, _route_plain))
    return out
