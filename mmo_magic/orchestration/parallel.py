"""Several models at once: race (first good answer wins), all, and consensus with judges.

These functions work over a ``Completer`` (the call engine's ``complete``), so
every call of a race, an ``all`` or a judge panel is a run record, and every
response carries the group id they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import html
import operator
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from ..core.attempts import Attempt, Status
from ..core.completion import CompletionRequest, CompletionResponse, Prompt, as_messages
from ..core.errors import AllModelsFailedError, ConfigError, MMOError
from ..core.ids import new_id
from .answers import longest, majority_answer
from .calls import (
    CallContext,
    CallOptions,
    Completer,
    ModelText,
    OnFinish,
    OnRetry,
    model_names,
)
from .judges import (
    METHODS,
    TIE,
    JudgeEvent,
    OnJudge,
    Tally,
    Verdict,
    combine_swap,
    labels,
    orders,
    tally,
    verdict_in_order,
    verdict_schema,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ConsensusResult", "RaceResult", "Settle", "Strategy", "all_models", "consensus", "race",
    "watching_retries",
]  # fmt: skip

STRATEGIES = ("judge", "majority", "longest")
Strategy = str | Callable[[list[CompletionResponse]], "CompletionResponse | int | None"]
# Waits until every run record added so far is committed (the orchestrator flushes its log).
Settle = Callable[[], Awaitable[None]]


@dataclass
class RaceResult:
    """The first successful answer, and what every model did (ok, error, cancelled)."""

    winner: CompletionResponse | None
    responses: list[CompletionResponse]
    group_id: str

    def __str__(self) -> str:
        return self.winner.content if self.winner else ""

    def __repr__(self) -> str:
        return _summary("RaceResult", self.winner, self.responses)

    def _repr_html_(self) -> str:
        return _responses_table(self.responses, self.winner, "race")


@dataclass
class ConsensusResult:
    """The chosen answer, every candidate, and the judges' votes (judge x candidate).

    ``judge_calls`` is how each judge call ended (one per judge and order, as the
    live view showed it): the verdict it gave, or why it gave none, and its latency.
    """

    winner: CompletionResponse | None
    responses: list[CompletionResponse]
    strategy: str
    reason: str
    group_id: str
    votes: Tally | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    judge_errors: dict[str, MMOError] = field(default_factory=dict)
    candidates: dict[str, str] = field(default_factory=dict)  # label -> model
    judge_calls: list[JudgeEvent] = field(default_factory=list)

    def __repr__(self) -> str:
        return _summary("ConsensusResult", self.winner, self.responses)

    def votes_frame(self) -> pd.DataFrame:
        """The votes table as a DataFrame: one row per judge, one column per candidate model."""
        import pandas as pd

        if self.votes is None:
            return pd.DataFrame()
        frame = pd.DataFrame(self.votes.to_rows()).set_index("judge")
        return frame.rename(columns=self.candidates)

    def __str__(self) -> str:
        return self.winner.content if self.winner else ""

    def _repr_html_(self) -> str:
        table = _responses_table(self.responses, self.winner, self.strategy)
        return f"{table}<p>{html.escape(self.reason)}</p>"


# Who hears of retries in the races, fan-outs and consensus run in this context when the
# caller passes no on_retry: a live view around an orchestrator method that has no such
# parameter (the notebook's race panels). Set by ``watching_retries``; an explicit hook wins.
_retry_watcher: contextvars.ContextVar[OnRetry | None] = contextvars.ContextVar(
    "mmo_retry_watcher", default=None
)


@contextlib.contextmanager
def watching_retries(on_retry: OnRetry) -> Iterator[None]:
    """``on_retry(model, delay_s)`` for every race, ``all_models`` and ``consensus`` run inside
    (on the loop: tasks started inside inherit it), unless given one of their own."""
    token = _retry_watcher.set(on_retry)
    try:
        yield
    finally:
        _retry_watcher.reset(token)


# Loop turns a just-started call gets before the next one starts, enough for
# its request to be written (measured: 5 sufficed). Started all at once, the
# calls' set-ups (~2-3 ms of CPU each) interleave and every request, the
# first-listed model's too, reaches the wire late: four models added ~9 ms to
# the winner's time to first token.
_SEND_TURNS = 8


async def _let_it_send() -> None:
    for _ in range(_SEND_TURNS):
        await asyncio.sleep(0)


async def race(
    complete: Completer,
    prompt: Prompt,
    models: Sequence[str],
    *,
    hedge_ms: float | None = None,
    on_text: ModelText | None = None,
    on_result: OnFinish | None = None,
    on_thinking: ModelText | None = None,
    on_retry: OnRetry | None = None,
    settle: Settle | None = None,
    **options: Unpack[CallOptions],
) -> RaceResult:
    """The first *successful* answer wins; losers are cancelled and their streams closed.

    A model that fails does not end the race. With ``hedge_ms``, models start
    one at a time: the next starts when no token has arrived ``hedge_ms``
    after the last start, or at once when a running model fails. ``on_retry(model,
    delay_s)``: a model's attempt failed and it will try again after ``delay_s``. ``settle``
    (when given) is awaited after losers were cancelled, so that their records
    are committed before the race returns, as the winner's is.
    """
    models = model_names(models)  # one model twice would race itself
    on_retry = on_retry or _retry_watcher.get()
    group = new_id()
    last: dict[int, CompletionResponse] = {}
    token_seen = asyncio.Event()
    running: dict[asyncio.Task[CompletionResponse], int] = {}

    def start(i: int) -> None:
        def text(delta: str) -> None:
            token_seen.set()
            if on_text is not None:
                on_text(models[i], delta)

        context = CallContext(
            "race", group, on_text=text, on_finish=_keep(last, i, on_result),
            on_thinking=_for_model(on_thinking, models[i]),
            on_retry=_retry_of(on_retry, models[i]),
        )  # fmt: skip
        running[asyncio.ensure_future(complete(prompt, models[i], options, context))] = i

    started = 0
    for _ in models if hedge_ms is None else models[:1]:
        start(started)
        started += 1
        await _let_it_send()
    winner: CompletionResponse | None = None
    try:
        while running and winner is None:
            hedging = hedge_ms is not None and started < len(models) and not token_seen.is_set()
            done, _ = await asyncio.wait(
                running,
                timeout=hedge_ms / 1000 if hedging and hedge_ms is not None else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:  # the hedge timer fired: nobody has produced a token yet
                start(started)
                started += 1
                continue
            for task in done:
                running.pop(task)
                if task.exception() is None and winner is None:
                    winner = task.result()
            if winner is None and hedge_ms is not None and started < len(models):
                start(started)  # a failure: the next model at once
                started += 1
    finally:
        stopped = set(running.values())
        await _cancel(running)
        if stopped and settle is not None:
            # A cancelled call returns without waiting for its commit (the engine waits only
            # for calls that end): a process killed right after the race returned would lose
            # the losers' records, which rr.responses shows.
            await settle()
    responses = [
        last.get(i) or _not_run(m, group, "an earlier model won") for i, m in enumerate(models)
    ]
    for i in stopped:
        # Stopped mid-call (perhaps waiting to retry after a failed attempt): cancelled.
        responses[i] = dataclasses.replace(
            responses[i], status="cancelled", error="another model answered first"
        )
    result = RaceResult(winner, responses, group)
    if winner is None:
        raise _all_failed(responses, result)
    return result


async def all_models(
    complete: Completer,
    prompt: Prompt,
    models: Sequence[str],
    *,
    on_text: ModelText | None = None,
    on_result: OnFinish | None = None,
    on_thinking: ModelText | None = None,
    on_retry: OnRetry | None = None,
    **options: Unpack[CallOptions],
) -> list[CompletionResponse]:
    """Every model's outcome, in the order given, failures included (never raises for them)."""
    return await _every(
        complete, prompt, models, "all", new_id(), on_text, on_result, options, on_thinking,
        on_retry,
    )  # fmt: skip


async def _every(
    complete: Completer,
    prompt: Prompt,
    models: Sequence[str],
    kind: str,
    group: str,
    on_text: ModelText | None,
    on_result: OnFinish | None,
    options: CallOptions,
    on_thinking: ModelText | None = None,
    on_retry: OnRetry | None = None,
) -> list[CompletionResponse]:
    """``all_models``, recorded as ``kind`` in ``group`` (consensus asks its candidates so)."""
    # The same model twice is allowed: its answers vary, and that may be the point.
    models = model_names(models, unique=False)
    on_retry = on_retry or _retry_watcher.get()
    last: dict[int, CompletionResponse] = {}

    def call(i: int) -> Any:
        context = CallContext(
            kind, group, on_text=None if on_text is None else (lambda t: on_text(models[i], t)),
            on_finish=_keep(last, i, on_result), on_thinking=_for_model(on_thinking, models[i]),
            on_retry=_retry_of(on_retry, models[i]),
        )  # fmt: skip
        return complete(prompt, models[i], options, context)

    tasks = [asyncio.ensure_future(call(i)) for i in range(len(models))]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await _cancel({t: i for i, t in enumerate(tasks) if not t.done()})
    responses = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, CompletionResponse):
            responses.append(outcome)
        elif isinstance(outcome, MMOError):
            responses.append(last.get(i) or _not_run(models[i], group, str(outcome), "error"))
        else:
            raise outcome  # a bug, not a model failure: let it show
    return responses


async def consensus(
    complete: Completer,
    prompt: Prompt,
    models: Sequence[str],
    *,
    judges: Sequence[str] = (),
    strategy: Strategy = "judge",
    swap: bool = True,
    panel: str = "majority",
    criteria: str | None = None,
    on_text: ModelText | None = None,
    on_result: OnFinish | None = None,
    on_judge: OnJudge | None = None,
    on_thinking: ModelText | None = None,
    on_retry: OnRetry | None = None,
    **options: Unpack[CallOptions],
) -> ConsensusResult:
    """Ask every model, then pick one answer by ``strategy``.

    "judge": each judge sees the answers anonymised and fenced, returns a
    strictly parsed verdict (one repair attempt), optionally again in swapped
    order (a verdict that flips is a tie); the panel votes by ``panel``
    ("majority" or "borda"). "majority": the most common normalised answer.
    "longest": the longest answer. A callable gets the ok responses and
    returns the winner (or its index). ``on_judge`` gets a ``JudgeEvent`` on the
    loop thread whenever a judge call is queued, sent, or ends (a live view).
    """
    # Everything about choosing is checked before the candidates are paid for.
    judges = model_names(judges, "judges", allow_empty=True)
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        raise ConfigError(
            f"Unknown consensus strategy {strategy!r}.",
            hint="Use 'judge', 'majority', 'longest' or a function of the responses.",
        )
    if not isinstance(strategy, str) and not callable(strategy):
        raise ConfigError(f"strategy must be a name or a function, got {strategy!r}.")
    if strategy == "judge" and not judges:
        raise ConfigError(
            "strategy='judge' needs judges=[...].", hint="Or use strategy='majority'."
        )
    if panel not in METHODS:
        raise ConfigError(f"Unknown panel {panel!r}.", hint=f"Use one of {', '.join(METHODS)}.")
    group = new_id()
    responses = await _every(
        complete, prompt, models, "consensus", group, on_text, on_result, options, on_thinking,
        on_retry,
    )  # fmt: skip
    ok = [r for r in responses if r.ok]
    if not ok:
        raise _all_failed(responses, None)
    name = strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom")
    result = ConsensusResult(None, responses, name, "", group)
    if strategy == "judge":
        await _judge(complete, prompt, ok, judges, swap, panel, criteria, result, on_judge)
    elif strategy == "majority":
        index, counts = majority_answer([r.content for r in ok])
        result.winner = None if index is None else ok[index]
        result.reason = (
            f"majority of normalised answers: {counts}"
            if index is not None
            else (f"no strict majority among normalised answers: {counts}")
        )
    elif strategy == "longest":
        index = longest([r.content for r in ok])
        result.winner = None if index is None else ok[index]
        result.reason = "the longest answer (length says little about quality: a teaching baseline)"
    else:
        assert callable(strategy)
        result.winner = _strategy_pick(strategy(ok), ok, name)
        result.reason = f"chosen by {name}" if result.winner is not None else f"{name} chose none"
    return result


def _strategy_pick(
    pick: object, ok: list[CompletionResponse], name: str
) -> CompletionResponse | None:
    """What a strategy function returned, as the winner: a response of ``ok``, its index, or
    None; anything else is one ConfigError line (the candidates' answers are in the run log)."""
    if pick is None or (isinstance(pick, CompletionResponse) and pick in ok):
        return pick
    if not isinstance(pick, bool):
        try:
            index = operator.index(pick)  # type: ignore[arg-type]  # int or numpy int (argmax)
        except TypeError:
            pass
        else:
            if -len(ok) <= index < len(ok):
                return ok[index]
    raise ConfigError(
        f"The consensus strategy {name} returned {pick!r}; it must return one of the "
        f"{len(ok)} responses it was given, its index (0-{len(ok) - 1}) or None.",
        hint="The candidates' answers are in the run log (orc.runs).",
    )


async def _judge(
    complete: Completer,
    prompt: Prompt,
    ok: list[CompletionResponse],
    judges: Sequence[str],
    swap: bool,
    panel: str,
    criteria: str | None,
    result: ConsensusResult,
    on_judge: OnJudge | None = None,
) -> None:
    names = labels(len(ok))
    result.candidates = {label: r.model for label, r in zip(names, ok, strict=True)}
    if len(ok) == 1:
        result.winner, result.reason = ok[0], "only one model answered"
        return
    question = prompt if isinstance(prompt, str) else _question_of(prompt)
    answers = [r.content for r in ok]
    calls: dict[tuple[str, bool], JudgeEvent] = {}  # (judge, swapped) -> its latest event

    def tell(event: JudgeEvent) -> None:
        calls[event.judge, event.swapped] = event
        if on_judge is not None:
            on_judge(event)

    async def verdict_of(judge: str, order: list[int], swapped_pass: bool) -> Verdict:
        tell(JudgeEvent(judge, swapped_pass, "pending"))
        started = time.perf_counter()
        role = "judge swapped" if swapped_pass else "judge"
        # The verdict under a schema (structured output), still read strictly and repaired.
        options: CallOptions = {"temperature": 0, "response_format": verdict_schema(names)}
        context = CallContext("judge", result.group_id, step=f"{role} {judge}", repairs_output=True)
        try:
            verdict, shown, repaired = await verdict_in_order(
                complete, question, answers, order, judge, options, context, criteria=criteria
            )
        except MMOError as error:
            latency = (time.perf_counter() - started) * 1000
            tell(JudgeEvent(judge, swapped_pass, "failed", latency_ms=latency, error=str(error)))
            raise
        tell(
            JudgeEvent(
                judge, swapped_pass, "voted", winner=verdict.winner,
                model=result.candidates.get(verdict.winner),
                shown_as=None if shown.winner == TIE else shown.winner,
                latency_ms=(time.perf_counter() - started) * 1000, repaired=repaired,
            )
        )  # fmt: skip
        return verdict

    async def judge_both_ways(judge: str) -> Verdict:
        (order, _), *swap_pass = orders(len(ok), swap)
        try:
            first = await verdict_of(judge, order, False)
        except MMOError:
            if swap_pass:
                why = "its first-order pass gave no verdict"
                tell(JudgeEvent(judge, True, "skipped", error=why))
            raise
        if not swap_pass:
            return first
        second = await verdict_of(judge, swap_pass[0][0], True)
        return combine_swap(first, second)

    for judge in judges:  # every call in sight from the start, in the order of the table
        tell(JudgeEvent(judge, False, "queued"))
        if swap:
            tell(JudgeEvent(judge, True, "queued"))
    outcomes = await asyncio.gather(*(judge_both_ways(j) for j in judges), return_exceptions=True)
    result.judge_calls = list(calls.values())
    for judge, outcome in zip(judges, outcomes, strict=True):
        if isinstance(outcome, Verdict):
            result.verdicts[judge] = outcome
        elif isinstance(outcome, MMOError):
            result.judge_errors[judge] = outcome
        else:
            raise outcome
    if not result.verdicts:
        failures = "; ".join(f"{j}: {e}" for j, e in result.judge_errors.items())
        result.reason = f"no judge gave a usable verdict ({failures})"
        return
    result.votes = tally(result.verdicts, names, method=panel)
    if result.votes.winner == TIE:
        result.reason = f"the judges' {panel} vote is a tie"
        return
    result.winner = ok[names.index(result.votes.winner)]
    result.reason = (
        f"{panel} of {len(result.verdicts)} judge(s)"
        + (" with swap-order checks" if swap else "")
        + f": {result.winner.model}"
    )


def _keep(last: dict[int, CompletionResponse], index: int, then: OnFinish | None) -> OnFinish:
    """An on_finish hook: remember model ``index``'s latest outcome, then tell ``then``."""

    def keep(response: CompletionResponse) -> None:
        last[index] = response
        if then is not None:
            then(response)

    return keep


def _for_model(hook: ModelText | None, model: str) -> Callable[[str], None] | None:
    """``hook(model, text)`` as a one-model ``on_text``-style callback (None stays None)."""
    return None if hook is None else (lambda text: hook(model, text))


def _retry_of(hook: OnRetry | None, model: str) -> OnRetry | None:
    """``hook`` told the model as the caller named it (its panel), not the engine's name for
    the model that failed (a fallback's or a canonical name): like on_text, keyed by caller."""
    return None if hook is None else (lambda _failed, delay_s: hook(model, delay_s))


def _question_of(prompt: Prompt) -> str:
    """The text of the prompt's last user message (a part list's text parts, joined)."""
    return CompletionRequest(as_messages(prompt)).prompt_text


def _not_run(model: str, group: str, why: str, status: Status = "cancelled") -> CompletionResponse:
    return CompletionResponse("", model, "", status=status, error=why, group_id=group)


async def _cancel(tasks: dict[asyncio.Task[CompletionResponse], int]) -> None:
    """Cancel ``tasks`` and wait until their requests are recorded and connections closed."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _all_failed(responses: list[CompletionResponse], result: Any) -> AllModelsFailedError:
    attempts = [
        Attempt(r.model, r.provider, r.status, r.error, r.latency_ms, r.run_id) for r in responses
    ]
    error = AllModelsFailedError(attempts)
    error.result = result  # type: ignore[attr-defined]
    return error


def _summary(
    kind: str, winner: CompletionResponse | None, responses: list[CompletionResponse]
) -> str:
    statuses = ", ".join(f"{r.model}: {r.status}" for r in responses)
    won = winner.model if winner else None
    return f"<{kind} winner={won!r} ({statuses})>"


def _responses_table(
    responses: list[CompletionResponse], winner: CompletionResponse | None, title: str
) -> str:
    rows = []
    for r in responses:
        mark = " 🏆" if r is winner else ""
        detail = r.footer() if r.ok else f"{r.status}: {r.error or ''}"
        rows.append(
            f"<tr><td><b>{html.escape(r.model)}</b>{mark}</td>"
            f"<td><pre style='white-space:pre-wrap'>{html.escape(r.content)}</pre></td>"
            f"<td>{html.escape(detail)}</td></tr>"
        )
    return (
        f"<table><caption>{html.escape(title)}</caption>"
        f"<tr><th>model</th><th>answer</th><th>details</th></tr>{''.join(rows)}</table>"
    )
