"""IPython magics: %%mmo, %mmo_race, %mmo_runs, %mmo_models, %mmo_route, %%mmo_pipeline.

Thin by design: parse the arguments, make one orchestrator call, render.
An MMOError is shown as one line with its hint, never a traceback; bad
arguments are IPython UsageErrors; anything else is a bug and shows its
traceback. The notebook's stop button cancels the call's requests.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import queue
import re
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import JSON, Markdown, display
from traitlets import Bool, Float, Unicode, observe

from ..core.completion import CompletionResponse
from ..core.errors import ConfigError, MMOError
from ..core.loop import background_loop, wait_interruptibly
from ..core.templates import Template
from ..orchestration.calls import CallOptions
from ..orchestration.orchestrator import Orchestrator
from ..orchestration.pipeline import Pipeline, PipelineStep
from ..orchestration.session import get_orchestrator

__all__ = ["MMOMagics", "load", "parse_pipeline", "unload"]

_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)
_OPTION_VALUE = re.compile(r"""\s*('[^']*'|"[^"]*"|\S+)""")
_STEP = re.compile(r"^\[(?P<name>[A-Za-z_]\w*)\]\s+(?P<model>\S+)(?P<opts>.*)$")
# The results a live view already shows in full: their Out[] is their one-line text
# form, not the same answers again as a table. Kept by id, so results stay plain data.
_SHOWN_LIVE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_LIVE_RESULTS = ("mmo_magic.orchestration.parallel", ("RaceResult", "ConsensusResult"))


def _friendly(method: Callable[..., Any]) -> Callable[..., Any]:
    """Show an MMOError as one line (with its hint) and a stop as a short note."""

    @functools.wraps(method)
    def wrapper(self: MMOMagics, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MMOError as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print("Stopped: in-flight requests were cancelled and recorded.", file=sys.stderr)
        return None

    return wrapper


def _parse(magic: Callable[..., Any], line: str) -> argparse.Namespace:
    """``parse_argstring``, then the quotes it keeps around values removed (-s 'Be brief')."""
    args = parse_argstring(magic, line)
    for name, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, name, _unquote(value))
        elif isinstance(value, list):
            setattr(args, name, [_unquote(v) if isinstance(v, str) else v for v in value])
    return args


def _split_prompt(magic: Callable[..., Any], line: str, positionals: int = 1) -> tuple[str, str]:
    """(options and positionals, the prompt as written) of a line magic.

    The prompt is free text (quotes, braces, dashes), so it is cut from the
    line as written instead of being parsed: what follows the options and
    the ``positionals`` arguments, verbatim.
    """
    parser = magic.parser  # type: ignore[attr-defined]
    takes_value = {
        flag: action.nargs != 0 for action in parser._actions for flag in action.option_strings
    }
    position, seen = 0, 0
    for match in re.finditer(r"\S+", line):
        if match.start() < position:
            continue  # the value of the previous option
        token = match.group()
        flag = token.split("=", 1)[0]
        if flag in takes_value:
            if takes_value[flag] and "=" not in token:
                value = _OPTION_VALUE.match(line, match.end())
                position = value.end() if value else match.end()
            else:
                position = match.end()
        elif seen < positionals:
            seen += 1
            position = match.end()
        else:
            return line[: match.start()], line[match.start() :].strip()
    return line, ""


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _models(value: str | None) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()] if value else []


@magics_class
class MMOMagics(Magics):
    """Multi-model LLM magics. Settings: ``%config MMOMagics.<name> = value``."""

    default_model = Unicode(None, allow_none=True, help="Model for %%mmo without one.").tag(
        config=True
    )
    route = Unicode("complexity", help="Router for model 'auto' or -r without a name.").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers into the cell as they arrive.").tag(config=True)
    judge = Unicode(None, allow_none=True, help="Default judge(s) for --consensus, M1,M2.").tag(
        config=True
    )
    budget = Float(None, allow_none=True, help="USD the shared orchestrator may spend.").tag(
        config=True
    )
    cache = Bool(True, help="Use the response cache.").tag(config=True)
    refresh_s = Float(0.1, help="Seconds between re-renders of a streaming answer.").tag(
        config=True
    )

    @property
    def orc(self) -> Orchestrator:
        return get_orchestrator()

    @property
    def ip(self) -> Any:
        """The shell (always set: the magics are only made by ``load``)."""
        assert self.shell is not None
        return self.shell

    @observe("default_model")
    def _default_model_changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            try:
                self.orc.default_model = change["new"]
            except MMOError as exc:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)

    @observe("budget")
    def _budget_changed(self, change: dict[str, Any]) -> None:
        self.orc.budget.limit = change["new"]

    @observe("route")
    def _route_changed(self, change: dict[str, Any]) -> None:
        self.orc.default_route = change["new"]

    # -- %%mmo ----------------------------------------------------------------

    @magic_arguments()
    @argument("model", nargs="?", default=None, help="Model name or alias; 'auto' routes.")
    @argument("-r", "--route", default=None, help="Router: complexity, task, cost, rules.")
    @argument("-t", "--task", default=None, help="Route as this task (coding, math, ...).")
    @argument("--race", default=None, metavar="M1,M2", help="Race models; first good answer.")
    @argument("--all", dest="all_models", default=None, metavar="M1,M2", help="Ask every model.")
    @argument("--consensus", default=None, metavar="M1,M2", help="Ask every model, pick one.")
    @argument("--judge", default=None, metavar="J1,J2", help="Judges for --consensus.")
    @argument("--strategy", default=None, help="Consensus: judge, majority or longest.")
    @argument("-s", "--system", default=None, help="System prompt.")
    @argument("--temperature", type=float, default=None)
    @argument("--max-tokens", type=int, default=None)
    @argument("--fallback", default=None, metavar="M1,M2", help="Fallback models, in order.")
    @argument("-f", "--format", default="markdown", choices=["markdown", "text", "code", "json"])
    @argument("-o", "--out", default=None, metavar="VAR", help="Store the result in VAR.")
    @argument("--no-stream", action="store_true", help="Show the answer only when complete.")
    @argument("--no-cache", action="store_true", help="Skip the response cache.")
    @argument("--budget", type=float, default=None, help="USD limit for this call.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @cell_magic
    @_friendly
    def mmo(self, line: str, cell: str) -> None:
        """Send the cell to a model (or route, race, fan out, or judge)."""
        args = _parse(self.mmo, line)
        prompt = self._prompt(cell, args.no_interpolate)
        options = self._options(args)
        many = args.race or args.all_models or args.consensus
        if sum(bool(x) for x in (args.race, args.all_models, args.consensus)) > 1:
            raise ConfigError("Use one of --race, --all and --consensus.")
        if many:
            self._many(prompt, args, options)
            return None
        model, route = self._target(args)
        if self.stream and not args.no_stream and args.format != "json":
            response = self._stream(prompt, model, route, options, args.format)
        else:
            response = self.orc.complete(prompt, model, route=route, **options)
            self._show(response.content, args.format)
        self._footer(response)
        if args.format == "code":
            self.ip.set_next_input(_code_of(response.content), replace=False)
        self._store(args.out, response)
        return None

    def _prompt(self, cell: str, raw: bool) -> str:
        if raw:
            return cell
        where = "the cell (use --no-interpolate to send braces as written)"
        return Template(cell).render(self.ip.user_ns, where=where)

    def _options(self, args: argparse.Namespace) -> CallOptions:
        options: CallOptions = {
            "system": args.system,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "cache": self.cache and not args.no_cache,
        }
        if getattr(args, "budget", None) is not None:
            options["budget"] = args.budget
        if getattr(args, "fallback", None):
            options["fallbacks"] = _models(args.fallback)
        return options

    def _target(self, args: argparse.Namespace) -> tuple[str | None, Any]:
        """(model, route) for ``orc.complete`` from MODEL, -r and -t."""
        if args.task:
            from ..routing import task_router

            orc = self.orc
            return "auto", task_router(
                args.task, task_models=orc.task_models, default=orc.default_model
            )
        if args.route or args.model == "auto":
            return "auto", args.route or self.route
        return args.model or self.default_model, None

    def _stream(
        self, prompt: str, model: str | None, route: Any, options: CallOptions, fmt: str
    ) -> CompletionResponse:
        handle = display(Markdown("…"), display_id=True)
        stream = self.orc.stream(prompt, model, route=route, **options)
        text, last = "", 0.0
        for delta in stream:
            text += delta
            if time.monotonic() - last >= self.refresh_s:
                handle.update(_render(text + " ▌", fmt))
                last = time.monotonic()
        assert stream.response is not None
        handle.update(_render(stream.response.content, fmt))
        return stream.response

    def _show(self, text: str, fmt: str) -> None:
        if fmt == "json":
            try:
                display(JSON(json.loads(_code_of(text))))
                return
            except ValueError:
                print("The answer is not valid JSON; showing it as text.", file=sys.stderr)
                fmt = "text"
        display(_render(text, fmt))

    def _footer(self, response: CompletionResponse) -> None:
        line = response.footer()
        display(
            {
                "text/plain": line,
                "text/html": f"<small style='color:#777'>{html.escape(line)}</small>",
            },
            raw=True,
        )

    def _store(self, name: str | None, value: Any) -> None:
        if name:
            self.ip.user_ns[name] = value

    def _many(self, prompt: str, args: argparse.Namespace, options: CallOptions) -> Any:
        if args.race:
            return self._race(prompt, _models(args.race), options, out=args.out)
        if args.all_models:
            return self._race(
                prompt, _models(args.all_models), options, out=args.out, all_models=True
            )
        judges = _models(args.judge or self.judge)
        return self._race(
            prompt, _models(args.consensus), options, out=args.out, judges=judges,
            strategy=args.strategy or ("judge" if judges else "majority"),
        )  # fmt: skip

    # -- %mmo_race --------------------------------------------------------------

    @magic_arguments()
    @argument("--judge", default=None, metavar="J1,J2", help="Judges: consensus by vote.")
    @argument("--all", dest="all_models", action="store_true", help="Let every model finish.")
    @argument("--strategy", default=None, help="With judges: judge, majority or longest.")
    @argument("--hedge-ms", type=float, default=None, help="Start models one by one.")
    @argument("-s", "--system", default=None)
    @argument("--temperature", type=float, default=None)
    @argument("--max-tokens", type=int, default=None)
    @argument("-o", "--out", default=None, metavar="VAR")
    @argument("--no-cache", action="store_true")
    @argument("--no-interpolate", action="store_true")
    @argument("models", help="M1,M2,... the contestants")
    @line_cell_magic
    @_friendly
    def mmo_race(self, line: str, cell: str | None = None) -> Any:
        """Race models on one prompt, side by side; ``--judge`` adds a vote.

        Line form: ``%mmo_race [options] M1,M2 PROMPT`` (options may also
        follow the models); cell form: ``%%mmo_race [options] M1,M2``.
        """
        head, rest = _split_prompt(self.mmo_race, line)
        args = _parse(self.mmo_race, head)
        if cell is None and not rest:
            raise ConfigError("Give a prompt after the models, or use %%mmo_race with a cell.")
        if cell is not None and rest:
            raise ConfigError(f"Unexpected text after the models: {rest[:40]!r}.")
        prompt = self._prompt(cell if cell is not None else rest, args.no_interpolate)
        judges = _models(args.judge)
        return self._race(
            prompt, _models(args.models), self._options(args), out=args.out,
            all_models=args.all_models,
            judges=judges, strategy=args.strategy or ("judge" if judges else None),
            hedge_ms=args.hedge_ms,
        )  # fmt: skip

    def _race(
        self,
        prompt: str,
        models: list[str],
        options: CallOptions,
        *,
        out: str | None = None,
        all_models: bool = False,
        judges: list[str] | None = None,
        strategy: str | None = None,
        hedge_ms: float | None = None,
    ) -> Any:
        from ..orchestration.parallel import RaceResult
        from .widgets import RaceView

        if len(models) < 1:
            raise ConfigError("Name the models to compare, e.g. sim-fast,sim-slow.")
        view = RaceView(models, title=_title(prompt), show_votes=strategy is not None)
        display(view.widget)
        on_text, on_result = view.on_text, view.on_finish
        result: Any = None
        try:
            if strategy is not None:
                result = self.orc.consensus(
                    prompt, models, judges=judges or [], strategy=strategy, on_text=on_text,
                    on_result=on_result, **options,
                )  # fmt: skip
                view.set_votes(result)
            elif all_models:
                responses = self.orc.all(
                    prompt, models, on_text=on_text, on_result=on_result, **options
                )
                ok = [r for r in responses if r.ok]
                fastest = min(ok, key=lambda r: r.latency_ms or 0.0) if ok else None
                result = RaceResult(fastest, responses, responses[0].group_id or "")
            else:
                result = self.orc.race(
                    prompt, models, hedge_ms=hedge_ms, on_text=on_text, on_result=on_result,
                    **options,
                )  # fmt: skip
        except MMOError as exc:
            view.finish(getattr(exc, "result", None))
            raise
        except KeyboardInterrupt:
            view.finish(None)
            raise
        view.finish(result)
        _SHOWN_LIVE[id(result)] = result  # the widget already shows it: keep Out[] to one line
        self._store(out, result)
        return result

    # -- %mmo_runs, %mmo_models, %mmo_route -------------------------------------

    @magic_arguments()
    @argument("--last", type=int, default=None, help="Only the newest N runs.")
    @argument("--cell", type=int, default=None, help="Only runs from this cell.")
    @argument("--export", default=None, metavar="PATH", help="Also write .csv/.parquet/.jsonl.")
    @line_magic
    @_friendly
    def mmo_runs(self, line: str) -> Any:
        """The run log as a DataFrame (every call, failures included)."""
        args = _parse(self.mmo_runs, line)
        frame = self.orc.runs.to_dataframe(last=args.last, cell=args.cell)
        if args.export:
            path = self.orc.runs.export(args.export)
            print(f"Exported {len(self.orc.runs)} runs to {path}")
        return frame

    @line_magic
    @_friendly
    def mmo_models(self, line: str) -> Any:
        """Models with availability, prices (USD per 1M tokens) and context windows."""
        return self.orc.catalogue.to_dataframe()

    @magic_arguments()
    @argument("-r", "--route", default=None, help="Router: complexity, task, cost, rules.")
    @line_cell_magic
    @_friendly
    def mmo_route(self, line: str, cell: str | None = None) -> Any:
        """Explain which model a router would choose, without calling any model."""
        head, rest = _split_prompt(self.mmo_route, line, positionals=0)
        args = _parse(self.mmo_route, head)
        prompt = cell if cell is not None else rest
        return self.orc.route(prompt, args.route or self.route)

    # -- %%mmo_pipeline -----------------------------------------------------------

    @magic_arguments()
    @argument("-o", "--out", default=None, metavar="VAR")
    @argument("--name", default="pipeline")
    @argument("variables", nargs="*", help="name=value template variables")
    @cell_magic
    @_friendly
    def mmo_pipeline(self, line: str, cell: str) -> None:
        """Run the pipeline declared in the cell; each step's output shows as it completes.

        Syntax: a ``[step] model`` line starts a step (``system="..."``,
        ``temperature=...``, ``max_tokens=...`` may follow on that line), and
        the lines below it are the step's prompt template::

            [research] sim-slow
            List the key facts about {topic}.
            [summary] sim-fast max_tokens=200
            Summarise: {research}
        """
        args = _parse(self.mmo_pipeline, line)
        pipeline = parse_pipeline(cell, name=args.name)
        values = dict(self.ip.user_ns)
        for item in args.variables:
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"Pipeline variable {item!r} must be name=value.")
            values[name] = value
        needed = {n for s in pipeline.steps for n in s.inputs}
        variables = {k: v for k, v in values.items() if k in needed}
        shown: queue.SimpleQueue[tuple[PipelineStep, CompletionResponse]] = queue.SimpleQueue()
        future = background_loop.submit(
            self.orc.arun_pipeline(pipeline, on_step=lambda s, r: shown.put((s, r)), **variables)
        )
        while not future.done() or not shown.empty():
            try:
                step, response = shown.get(timeout=0.05)
            except queue.Empty:
                continue
            display(Markdown(f"**{step.name}** · {response.model}\n\n{response.content}"))
            self._footer(response)
        result = wait_interruptibly(future)
        if not result.ok:
            print(f"Step {result.failed_step!r} failed: {result.error}", file=sys.stderr)
        self._store(args.out, result)


def parse_pipeline(text: str, name: str = "pipeline") -> Pipeline:
    """A Pipeline from the ``[step] model`` syntax of %%mmo_pipeline."""
    steps: list[PipelineStep] = []
    header: re.Match[str] | None = None
    body: list[str] = []

    def close() -> None:
        if header is None:
            return
        template = "\n".join(body).strip()
        if not template:
            raise ConfigError(f"Pipeline step [{header['name']}] has no prompt below it.")
        steps.append(
            PipelineStep(header["name"], header["model"], template, **_step_options(header))
        )

    for line in text.splitlines():
        match = _STEP.match(line.strip())
        if match:
            close()
            header, body = match, []
        elif header is None:
            if line.strip():
                raise ConfigError(
                    f"Pipeline text before the first step: {line.strip()[:40]!r}.",
                    hint="Start each step with a line like: [research] sim-slow",
                )
        else:
            body.append(line)
    close()
    if not steps:
        raise ConfigError("The cell declares no pipeline steps.", hint="Start with: [step] model")
    return Pipeline(steps, name=name)


def _step_options(header: re.Match[str]) -> dict[str, Any]:
    import shlex

    options: dict[str, Any] = {}
    for item in shlex.split(header["opts"]):
        key, _, value = item.partition("=")
        if key == "system":
            options["system"] = value
        elif key in ("temperature", "max_tokens"):
            try:
                options[key] = float(value) if key == "temperature" else int(value)
            except ValueError:
                raise ConfigError(f"Step [{header['name']}]: {key} must be a number.") from None
        else:
            raise ConfigError(
                f"Step [{header['name']}]: unknown option {key!r}.",
                hint="Use system=..., temperature=... or max_tokens=...",
            )
    return options


def _render(text: str, fmt: str) -> Any:
    if fmt == "code":
        return Markdown(f"```\n{_code_of(text)}\n```")
    if fmt == "text":
        return _Text(text)
    return Markdown(text)


class _Text:
    """Plain text that stays plain in every front end."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        escaped = html.escape(self.text)
        return {
            "text/plain": self.text,
            "text/html": f"<pre style='white-space:pre-wrap'>{escaped}</pre>",
        }


def _code_of(text: str) -> str:
    """The first fenced code block of ``text``, or all of it when there is none."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip("\n")


def _title(prompt: str) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= 80 else first[:77] + "…"


def _html_unless_shown_live(result: Any) -> str | None:
    """A race or consensus result's HTML, unless a live view already shows it."""
    return None if _SHOWN_LIVE.get(id(result)) is result else result._repr_html_()


def load(shell: Any) -> None:
    """Register the magics and make ``%config MMOMagics`` work."""
    if any(isinstance(c, MMOMagics) for c in shell.configurables):
        return  # already loaded
    magics = MMOMagics(shell=shell, parent=shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    html_formatter = shell.display_formatter.formatters["text/html"]
    module, names = _LIVE_RESULTS
    for name in names:  # by name: races are not imported until one is run
        html_formatter.for_type_by_name(module, name, _html_unless_shown_live)


def unload(shell: Any) -> None:
    """Remove the magics and their settings; leave the shell as it was."""
    manager = shell.magics_manager
    for kind, names in MMOMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop("MMOMagics", None)
    shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, MMOMagics)]
    html_formatter = shell.display_formatter.formatters["text/html"]
    module, names = _LIVE_RESULTS
    for name in names:
        html_formatter.pop(f"{module}.{name}", None)
