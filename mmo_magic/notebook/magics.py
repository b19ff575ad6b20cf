"""IPython magics: %%mmo, %mmo_race, %mmo_runs, %mmo_models, %mmo_route, %%mmo_pipeline.

Thin by design: parse the arguments, make one orchestrator call, render.
An MMOError is shown as one line with its hint, never a traceback; bad
arguments are IPython UsageErrors; anything else is a bug and shows its
traceback. The notebook's stop button cancels the call's requests.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import keyword
import queue
import re
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Float, Unicode, observe

from ..core.completion import CompletionResponse, Prompt
from ..core.errors import ConfigError, MMOError
from ..core.loop import background_loop
from ..core.parts import Document, Image, Part
from ..core.templates import Template
from ..orchestration.calls import CallOptions
from ..orchestration.orchestrator import Orchestrator
from ..orchestration.pipeline import Pipeline, PipelineStep
from ..orchestration.session import get_orchestrator
from . import rendering, tables, transforms
from .displays import SHOWN_LIVE, RaceDisplay, formatters
from .thumbnails import media_parts, thumbnails_html, thumbnails_text

__all__ = ["MMOMagics", "load", "parse_pipeline", "unload"]

_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)
_OPTION_VALUE = re.compile(r"""\s*('[^']*'|"[^"]*"|\S+)""")
_STEP = re.compile(r"^\[(?P<name>[A-Za-z_]\w*)\]\s+(?P<model>\S+)(?P<opts>.*)$")
_CURSOR = " ▌"


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
    """``parse_argstring``, then the quotes it keeps around values removed (-s 'Be brief').

    A quote left open is a one-line error (shlex's ValueError was a traceback), and so
    is ``-o NAME`` that is not a Python identifier (it would make a variable no code can
    name)."""
    try:
        args = parse_argstring(magic, line)
    except ValueError as exc:  # shlex: "No closing quotation"
        raise ConfigError(f"{exc} in {line!r}: close the quote, or drop it.") from None
    out = getattr(args, "out", None)
    if (isinstance(out, str) and not _unquote(out).isidentifier()) or keyword.iskeyword(out or ""):
        raise ConfigError(
            f"-o {out} is not a variable name: use letters, digits and _, not starting "
            "with a digit, and not a Python keyword."
        )
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
    # Off unless asked: a re-run cell must call the model again (honest timings, real retries).
    cache = Bool(False, help="Use the response cache (%config MMOMagics.cache = True).").tag(
        config=True
    )
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

    @property
    def live(self) -> bool:
        """Whether displays can update and widgets can show: only with a kernel behind them.

        A terminal (or a plain shell) gets text printed as it arrives instead: there,
        every display update would print the whole display again.
        """
        return getattr(self.ip, "kernel", None) is not None

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
    @argument("--reasoning-effort", default=None, choices=["minimal", "low", "medium", "high"])
    @argument("--thinking-budget", type=int, default=None, metavar="TOKENS")
    @argument("--image", action="append", default=[], metavar="PATH", help="Attach an image.")
    @argument("--file", action="append", default=[], metavar="PATH", help="Attach a PDF.")
    @cell_magic
    @_friendly
    def mmo(self, line: str, cell: str) -> None:
        """Send the cell to a model (or route, race, fan out, or judge)."""
        args = _parse(self.mmo, line)
        prompt = self._prompt(cell, args.no_interpolate, args.image, args.file)
        options = self._options(args)
        many = args.race or args.all_models or args.consensus
        if sum(bool(x) for x in (args.race, args.all_models, args.consensus)) > 1:
            raise ConfigError("Use one of --race, --all and --consensus.")
        if many:
            self._many(prompt, args, options)
            return None
        model, route = self._target(args)
        if media := media_parts(prompt):  # what the prompt carries, kept in the saved notebook
            text = thumbnails_text(media)
            display({"text/plain": text, "text/html": thumbnails_html(media)}, raw=True)
        if self.stream and not args.no_stream and args.format != "json":
            stream = self._stream_live if self.live else self._stream_text
            response = stream(prompt, model, route, options, args.format)
        else:
            response = self.orc.complete(prompt, model, route=route, **options)
            self._show(response.content, args.format)
        self._footer(response)
        if args.format == "code":
            self.ip.set_next_input(_code_of(response.content), replace=False)
        self._store(args.out, response)
        return None

    def _prompt(
        self, cell: str, raw: bool, images: Sequence[str] = (), files: Sequence[str] = ()
    ) -> Prompt:
        """The cell as the prompt: text, or text and parts when it has images or files.

        ``{var}`` holding an image (a Part, a PIL image, a matplotlib figure) becomes a part
        where it stands, not its str(); ``--image``/``--file`` parts follow the text."""
        pieces: list[Any] = [cell]
        if not raw:
            where = "the cell (use --no-interpolate to send braces as written)"
            pieces = _interpolate(cell, self.ip.user_ns, where)
        pieces += [Image(path) for path in images]
        pieces += [Document(path) for path in files]
        pieces = [p for p in pieces if not (isinstance(p, str) and not p.strip())] or [""]
        if len(pieces) == 1 and isinstance(pieces[0], str):
            return pieces[0]
        return pieces

    def _options(self, args: argparse.Namespace) -> CallOptions:
        options: CallOptions = {
            "system": args.system,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "cache": self.cache and not args.no_cache,
        }
        if getattr(args, "budget", None) is not None:
            options["budget"] = args.budget
        for name in ("reasoning_effort", "thinking_budget"):
            if getattr(args, name, None) is not None:
                options[name] = getattr(args, name)
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

    def _stream_live(
        self, prompt: Prompt, model: str | None, route: Any, options: CallOptions, fmt: str
    ) -> CompletionResponse:
        handle = display(_render("…", fmt), raw=True, display_id=True)
        stream = self.orc.stream(prompt, model, route=route, **options)
        text, last = "", 0.0
        try:
            for delta in stream:
                text += delta
                if time.monotonic() - last >= self.refresh_s:
                    handle.update(_render(text + _CURSOR, fmt), raw=True)
                    last = time.monotonic()
        except BaseException:
            # Stopped or failed mid-answer: keep what arrived, without the streaming cursor.
            handle.update(_render(text, fmt), raw=True)
            raise
        assert stream.response is not None
        handle.update(_render(stream.response.content, fmt), raw=True)
        return stream.response

    def _stream_text(
        self, prompt: Prompt, model: str | None, route: Any, options: CallOptions, fmt: str
    ) -> CompletionResponse:
        """A terminal: each delta printed as it arrives (updating a display would reprint it)."""
        stream = self.orc.stream(prompt, model, route=route, **options)
        try:
            for delta in stream:
                print(delta, end="", flush=True)
        finally:
            print(flush=True)
        assert stream.response is not None
        if fmt == "code":
            # The streamed text had the fences; the code alone is what -f code promises.
            print(_code_of(stream.response.content))
        return stream.response

    def _show(self, text: str, fmt: str) -> None:
        if fmt == "json":
            try:
                value = json.loads(_code_of(text))
            except ValueError:
                print("The answer is not valid JSON; showing it as text.", file=sys.stderr)
                fmt = "text"
            else:
                pretty = json.dumps(value, indent=2, ensure_ascii=False)
                display({"application/json": value, "text/plain": pretty}, raw=True)
                return
        display(_render(text, fmt), raw=True)

    def _footer(self, response: CompletionResponse) -> None:
        line = response.footer()
        display({"text/plain": line, "text/html": rendering.footer_html(line)}, raw=True)

    def _store(self, name: str | None, value: Any) -> None:
        if name:
            self.ip.user_ns[name] = value

    def _many(self, prompt: Prompt, args: argparse.Namespace, options: CallOptions) -> Any:
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
    @argument("--reasoning-effort", default=None, choices=["minimal", "low", "medium", "high"])
    @argument("--thinking-budget", type=int, default=None, metavar="TOKENS")
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
        prompt: Prompt,
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

        if len(models) < 1:
            raise ConfigError("Name the models to compare, e.g. sim-fast,sim-slow.")

        def call(view_hooks: dict[str, Any]) -> Coroutine[Any, Any, Any]:
            method: Any = self.orc.arace
            if strategy is not None or all_models:
                method = self.orc.aconsensus if strategy is not None else self.orc.aall
            # The hooks the method takes: on_judge for votes; on_thinking and on_retry (the
            # "thinking" and "retrying" badges) where the orchestrator hands them on.
            taken = inspect.signature(method).parameters
            hooks = {name: hook for name, hook in view_hooks.items() if name in taken}
            if strategy is not None:
                return self.orc.aconsensus(
                    prompt, models, judges=judges or [], strategy=strategy, **hooks, **options
                )
            if all_models:
                return self.orc.aall(prompt, models, **hooks, **options)
            return self.orc.arace(prompt, models, hedge_ms=hedge_ms, **hooks, **options)

        def as_result(value: Any) -> Any:
            if not isinstance(value, list):
                return value
            # --all: every answer, the fastest good one marked as the winner
            ok = [r for r in value if r.ok]
            fastest = min(ok, key=lambda r: r.latency_ms or 0.0) if ok else None
            return RaceResult(fastest, value, value[0].group_id or "")

        show = RaceDisplay(
            self.live, models, _title(prompt), votes=strategy is not None,
            thinkers=self._thinkers(models), media=media_parts(prompt),
        )  # fmt: skip
        result = show.run(call, as_result)
        SHOWN_LIVE[id(result)] = result  # the view already shows it: no Out[] repeats it
        self._store(out, result)
        return result

    def _thinkers(self, models: list[str]) -> set[str]:
        """The models the catalogue marks as reasoning: their panels may show "thinking"."""
        out = set()
        for name in models:
            try:
                if self.orc.catalogue.resolve(name).reasoning:
                    out.add(name)
            except MMOError:
                pass  # an unknown model: the call itself says so, on its panel
        return out

    # -- %mmo_runs, %mmo_models, %mmo_route -------------------------------------

    @magic_arguments()
    @argument("--last", type=int, default=None, help="Only the newest N runs.")
    @argument("--cell", type=int, default=None, help="Only runs from this cell.")
    @argument("--all", dest="all_sessions", action="store_true", help="Earlier sessions too.")
    @argument(
        "--columns",
        default=None,
        metavar="C1,C2",
        help=f"Columns to show (default: {','.join(tables.RUN_COLUMNS)}).",
    )
    @argument("--export", default=None, metavar="PATH", help="Also write .csv/.parquet/.jsonl.")
    @line_magic
    @_friendly
    def mmo_runs(self, line: str) -> Any:
        """This session's runs, newest last, in a compact table; the value keeps every column.

        ``df = %mmo_runs`` is the whole run-log DataFrame (every call, failures
        included); it shows as the compact table. ``--all`` adds earlier sessions.
        """
        args = _parse(self.mmo_runs, line)
        session = None if args.all_sessions else self.orc.session_id
        frame = self.orc.runs.to_dataframe(last=args.last, cell=args.cell, session_id=session)
        if args.export:
            path = self.orc.runs.export(args.export)
            print(f"Exported {len(self.orc.runs)} runs to {path}")
        columns = _models(args.columns) or None
        tables.runs_table(frame.head(0), columns)  # an unknown column fails now, not at display
        return tables.compact_runs(frame, columns)

    @line_magic
    @_friendly
    def mmo_models(self, line: str) -> Any:
        """Models: availability (and the key to set), prices (USD per 1M tokens), tier, host."""
        return tables.models_frame(self.orc.catalogue)

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

    # -- %%mmo_batch --------------------------------------------------------------

    @magic_arguments()
    @argument("--data", required=True, metavar="VAR|PATH", help="a DataFrame or list, or a file")
    @argument("--models", required=True, metavar="M1,M2")
    @argument("--judge", default=None, metavar="J1,J2", help="judges: pairwise, both orders")
    @argument("--grade", action="store_true", help="judges grade each answer 1-10 instead")
    @argument("--criteria", default=None, metavar="TEXT", help="what the judges look for")
    @argument("--reference", default=None, metavar="COLUMN", help="reference answers")
    @argument("--key", default=None, metavar="COLUMN", help="the column naming items (resume)")
    @argument("--limit", type=int, default=None, metavar="N", help="only the first N items")
    @argument("--concurrency", type=int, default=16)
    @argument("--limits", default=None, metavar="VAR|JSON", help="rate limits by model")
    @argument("--budget", type=float, default=None)
    @argument("--allow-unpriced", action="store_true", help="send to unpriced models too")
    @argument("--rerun", choices=["failed", "all"], default=None)
    @argument("-s", "--system", default=None)
    @argument("--temperature", type=float, default=None)
    @argument("--max-tokens", type=int, default=None)
    @argument("--engine", choices=["local", "ray"], default=None, help="ray: spread over Ray")
    @argument("--ray-address", default=None, metavar="ADDRESS", help="a Ray cluster to join")
    @argument("--workers", type=int, default=None, metavar="N", help="Ray workers")
    @argument("-o", "--out", default=None, metavar="VAR")
    @cell_magic
    @_friendly
    def mmo_batch(self, line: str, cell: str) -> Any:
        """Every model on every item of --data; the cell is the prompt template ({column}).

        ``--limits`` names a variable holding a dict or ``Limits`` (or is a JSON object):
        ``{"sim-fast": {"requests_per_minute": 60}}``.
        """
        from ..evaluation import load_items

        args = _parse(self.mmo_batch, line)
        items = load_items(self.ip.user_ns.get(args.data, args.data))
        if args.limit is not None:
            items = items[: args.limit]
        # progress=None: the view (a widget under a kernel) is made only once the batch has
        # been checked, so a refused batch leaves no "batch starting…" widget behind.
        try:
            result = self._batch(items, args, cell)
        except MMOError as exc:
            # The hint speaks the API's keyword; here the same thing is a flag.
            exc.args = (str(exc).replace("allow_unpriced=True", "--allow-unpriced"),)
            raise
        except KeyboardInterrupt as stop:
            # What was answered before the stop, as a stopped race keeps its panels: the
            # batch attaches it to the interrupt as ``result`` (evaluation/batch.py).
            partial = getattr(stop, "result", None)
            if partial is not None:
                self._store(args.out, partial)
            raise
        self._store(args.out, result)
        return result

    def _batch(self, items: Any, args: argparse.Namespace, cell: str) -> Any:
        return self.orc.batch(
            items, _models(args.models), cell.strip(), judges=_models(args.judge) or None,
            judge_mode="grade" if args.grade else "pairwise", criteria=args.criteria,
            reference_column=args.reference, key=args.key, concurrency=args.concurrency,
            limits=self._limits(args.limits), budget=args.budget,
            allow_unpriced=args.allow_unpriced, rerun=args.rerun, system=args.system,
            temperature=args.temperature, max_tokens=args.max_tokens, progress=None,
            engine=args.engine, ray_address=args.ray_address, workers=args.workers,
        )  # fmt: skip

    def _limits(self, value: str | None) -> Any:
        """--limits: a variable of the user's namespace, else a JSON object."""
        if value is None:
            return None
        if value in self.ip.user_ns:
            return self.ip.user_ns[value]
        try:
            limits = json.loads(value)
        except ValueError:
            limits = None
        if not isinstance(limits, dict):
            raise ConfigError(
                f"--limits {value!r} is neither a variable nor a JSON object.",
                hint='Use --limits LIMITS (a dict in a variable) or --limits \'{"m": '
                '{"requests_per_minute": 60}}\'',
            )
        return limits

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
        finished: queue.SimpleQueue[tuple[PipelineStep, CompletionResponse]] = queue.SimpleQueue()

        def show_finished_steps() -> None:
            while not finished.empty():
                step, response = finished.get()
                head = f"**{step.name}** · {rendering.escape_markdown(response.model)}"
                plain = f"[{step.name}] {response.model}\n{response.content}"
                markdown = f"{head}\n\n{rendering.answer_markdown(response.content)}"
                display({"text/markdown": markdown, "text/plain": plain}, raw=True)
                self._footer(response)

        future = background_loop.submit(
            self.orc.arun_pipeline(pipeline, on_step=lambda s, r: finished.put((s, r)), **variables)
        )
        try:  # a stop cancels the step under way (see BackgroundLoop.wait)
            result = background_loop.wait(future, on_tick=show_finished_steps)
        finally:
            show_finished_steps()  # those that ended since the last tick
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


def _render(text: str, fmt: str) -> dict[str, str]:
    """An answer's display bundle; its text/plain is the answer itself, for any frontend."""
    if fmt == "code":
        code = _code_of(text)
        return {"text/markdown": f"```\n{code}\n```", "text/plain": code}
    if fmt == "text":
        return {"text/plain": text, "text/html": rendering.pre_html(text)}
    # Markdown, with each "$" outside code a literal dollar, never math
    return {"text/markdown": rendering.answer_markdown(text), "text/plain": text}


def _code_of(text: str) -> str:
    """The first fenced code block of ``text``, or all of it when there is none."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip("\n")


def _is_image(value: Any) -> bool:
    """A value that ``{var}`` puts in the prompt as a part: a Part, a figure or a PIL image."""
    if isinstance(value, Part):
        return True
    if hasattr(value, "savefig"):  # a matplotlib figure
        return True
    return hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size")


def _interpolate(cell: str, namespace: Any, where: str) -> list[Any]:
    """The rendered cell as text pieces with image variables as parts where they stand."""
    template = Template(cell)
    values: dict[str, Any] = {}
    images: dict[str, Part] = {}
    for name in template.variables:
        if name not in namespace:
            continue  # render names it, with the hint
        value = namespace[name]
        if _is_image(value):
            marker = f"\x00{len(images)}\x00"
            images[marker] = value if isinstance(value, Part) else Image(value)
            values[name] = marker
        else:
            values[name] = value
    text = template.render(values, where=where)
    if not images:
        return [text]
    pieces: list[Any] = []
    for piece in re.split(r"(\x00\d+\x00)", text):
        pieces.append(images.get(piece, piece))
    return pieces


def _title(prompt: Prompt) -> str:
    if not isinstance(prompt, str):
        prompt = " ".join(str(p) for p in prompt if isinstance(p, str))
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= 80 else first[:77] + "…"


def load(shell: Any) -> None:
    """Register the magics and make ``%config MMOMagics`` work."""
    if any(isinstance(c, MMOMagics) for c in shell.configurables):
        return  # already loaded
    magics = MMOMagics(shell=shell, parent=shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    for formatter, module, name, function in formatters(shell):
        formatter.for_type_by_name(module, name, function)
    transforms.install(shell)  # "%mmo_route ... France?" is a prompt, not a help request
    from .batch_view import install

    install()  # batches show a live progress view here


def unload(shell: Any) -> None:
    """Remove the magics and their settings; leave the shell as it was."""
    manager = shell.magics_manager
    for kind, names in MMOMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop("MMOMagics", None)
    shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, MMOMagics)]
    for formatter, module, name, _ in formatters(shell):
        formatter.pop(f"{module}.{name}", None)
    transforms.uninstall(shell)
    from ..evaluation.views import set_default_progress

    set_default_progress(None)
