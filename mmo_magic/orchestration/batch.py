"""Batch evaluation: a table of items × several models, judged, into one DataFrame.

``run_batch(orc, data, models, prompt)`` renders ``prompt`` (a safe template,
see ``core.templates``) for every item, asks every model, and returns a
``BatchResult``: one row per (item, model), failures included as rows.

How it runs:

* **Budget first.** With ``budget``, the worst case (each request's input
  tokens plus ``max_tokens`` at the model's prices, judges included) is
  computed before anything is sent; over budget is a BudgetExceededError and
  no request leaves.
* **Resume.** Every answer is recorded under one ``group_id``, a fingerprint
  of the batch's template and parameters, with ``step`` naming the item (a
  hash of its rendered prompt) and the model's settings. Running the same
  batch again reads the run log first and does not send an (item, model)
  that already has an ok answer. By default the calls that never finished
  (not sent, cancelled) are sent; ``rerun="failed"`` also retries the
  failed ones, ``rerun="all"`` sends everything again.
* **Each call is a call.** Every (item, model) goes through the call engine,
  so it retries and fails over like ``orc.complete``; its outcome, ok or not,
  is a row, and one failure never stops the batch.
* **Limits.** ``concurrency`` calls in flight in all; per model
  ``limits={"model": {"requests_per_minute": ..., "tokens_per_minute": ...,
  "max_concurrency": ...}}`` (see ``limits``). A 429 pauses that model only,
  honouring ``Retry-After``, and a call that was still rate limited after its
  retries is queued again (up to ``MAX_REQUEUES`` times).
* **Judging.** ``judges=[...]`` with ``judge_mode="pairwise"`` (every pair
  of models on each item, judged in both orders; a verdict that flips with
  the order is a tie) or ``"grade"`` (a 1–10 rubric, MT-Bench style, with an
  optional ``reference_column``). Judge calls are resumed too.
* **Progress.** ``progress`` gets the running counts (see ``BatchProgress``);
  the notebook layer provides a widget and a terminal bar
  (``mmo_magic.notebook.batch_view``) and may register one as the default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..core.completion import CompletionRequest, CompletionResponse, Prompt, as_messages
from ..core.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ConfigError,
    MMOError,
    ProviderError,
)
from ..core.models import ModelConfig
from ..core.templates import Template
from .calls import CallContext, CallOptions
from .judges import (
    TIE,
    Verdict,
    VerdictError,
    combine_swap,
    judge_messages,
    parse_verdict,
    repair_messages,
    unswap,
)
from .limits import Limits, ModelGate
from .ratings import (
    Comparison,
    bradley_terry_intervals,
    judge_agreement,
    position_bias,
    win_matrix,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..storage.runlog import RunRecord
    from .orchestrator import Orchestrator

__all__ = [
    "BatchProgress",
    "BatchResult",
    "BatchStats",
    "ModelStats",
    "arun_batch",
    "estimate_batch",
    "eval_questions",
    "run_batch",
    "set_default_progress",
]

Rerun = Literal["failed", "all"] | None
JudgeMode = Literal["pairwise", "grade"]
MAX_REQUEUES = 3
DEFAULT_CONCURRENCY = 16
_GRADE_RUBRIC = (
    "Grade the single candidate on a scale of 1 to 10 (MT-Bench style): 1-2 wrong, harmful "
    "or off-topic; 3-4 mostly wrong; 5-6 partly right or missing important parts; 7-8 right "
    'with minor flaws; 9-10 right, complete and clear. Put the grade in "scores" for A'
)


# -- progress ------------------------------------------------------------------------------------


@dataclass
class ModelStats:
    """Running counts of one model's calls (a judge's are under ``"judge <name>"``)."""

    name: str
    total: int = 0  # calls this run will make or take from the log
    done: int = 0  # finished this run, ok or not
    failed: int = 0
    resumed: int = 0  # taken from the run log, not sent
    cost: float = 0.0
    throttled: int = 0  # 429 answers
    started: float | None = None  # perf_counter of the first send
    last: float | None = None  # of the last finish

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.resumed, 0)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this model's pace so far; None before the first answer."""
        if self.remaining == 0:
            return 0.0
        if not self.done or self.started is None or self.last is None:
            return None
        return (self.last - self.started) / self.done * self.remaining


@dataclass
class BatchStats:
    """What a progress view shows: per model counts, the worst case, the phase."""

    models: dict[str, ModelStats] = field(default_factory=dict)
    worst_case_cost: float | None = None
    phase: str = "answering"  # then "judging", then "done" (or "stopped")
    started: float = field(default_factory=time.perf_counter)

    def model(self, name: str) -> ModelStats:
        stats = self.models.get(name)
        if stats is None:
            stats = self.models[name] = ModelStats(name)
        return stats

    @property
    def cost(self) -> float:
        return sum(m.cost for m in self.models.values())

    @property
    def done(self) -> int:
        return sum(m.done + m.resumed for m in self.models.values())

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models.values())

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.models.values())


class BatchProgress(Protocol):
    """A live view of a batch; these methods are called on the event loop's thread.

    A view may also have ``close()``: called on the caller's thread once the
    batch has returned or stopped (a widget replaces itself with static HTML).
    """

    def start(self, stats: BatchStats) -> None: ...
    def update(self, stats: BatchStats) -> None: ...
    def finish(self, stats: BatchStats) -> None: ...


ProgressFactory = Callable[[], BatchProgress | None]
_default_progress: ProgressFactory | None = None


def set_default_progress(factory: ProgressFactory | None) -> None:
    """The view ``progress=None`` uses (the notebook layer registers one); None: no view."""
    global _default_progress
    _default_progress = factory


# -- loading items -------------------------------------------------------------------------------


def load_items(data: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of dicts, or a CSV / JSONL / Parquet path, as a list of dicts."""
    if isinstance(data, str | os.PathLike):
        path = Path(data).expanduser()
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".json"):
            with path.open(encoding="utf-8") as lines:
                items = [json.loads(line) for line in lines if line.strip()]
        elif suffix in (".csv", ".tsv", ".parquet", ".pq"):
            import pandas as pd

            if suffix == ".csv":
                frame = pd.read_csv(path, keep_default_na=False)
            elif suffix == ".tsv":
                frame = pd.read_csv(path, sep="\t", keep_default_na=False)
            else:
                frame = pd.read_parquet(path)
            items = frame.to_dict("records")
        else:
            raise ConfigError(
                f"Cannot read batch data from {path.name!r}.",
                hint="Use a .csv, .jsonl or .parquet file, a DataFrame or a list of dicts.",
            )
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):
        items = data.to_dict("records")
    elif isinstance(data, Iterable) and not isinstance(data, Mapping):
        items = list(data)
    else:
        raise ConfigError(
            f"Batch data must be a DataFrame, a list of dicts or a file path, "
            f"not {type(data).__name__}."
        )
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"Batch item {i} is a {type(item).__name__}, not a dict of columns.")
    return [{str(k): v for k, v in item.items()} for item in items]


def eval_questions() -> pd.DataFrame:
    """The question set shipped for evaluation notebooks: id, task, question, reference.

    30 short items across eight task types (maths, reasoning, facts, code,
    extraction, translation, summaries, writing), written for this project.
    """
    import importlib.resources

    import pandas as pd

    source = importlib.resources.files("mmo_magic") / "data" / "eval_questions.csv"
    with source.open("r", encoding="utf-8") as f:
        return pd.read_csv(f, keep_default_na=False)


# -- the plan ------------------------------------------------------------------------------------


def _digest(*parts: Any, size: int = 12) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    key: str
    prompt: str
    system: str | None
    reference: str | None


@dataclass(slots=True)
class _Call:
    """One (item, model) answer to get, or that the log already has."""

    item: _Item
    model: str
    step: str
    row: dict[str, Any] | None = None  # the outcome


def _model_signature(config: ModelConfig, temperature: float | None, max_tokens: int | None) -> str:
    return _digest(
        config.provider, config.model_id, config.base_url,
        max_tokens or config.max_tokens,
        temperature if temperature is not None else config.temperature,
        size=8,
    )  # fmt: skip


def _plan_items(
    raw: list[dict[str, Any]],
    prompt: str,
    system: str | None,
    key: str | None,
    reference_column: str | None,
) -> list[_Item]:
    template = Template(prompt)
    system_template = Template(system) if system else None
    items: list[_Item] = []
    seen: dict[str, int] = {}
    for i, values in enumerate(raw):
        text = template.render(values, where=f"the batch prompt (item {i})")
        sys_text = (
            system_template.render(values, where=f"the batch system prompt (item {i})")
            if system_template is not None
            else None
        )
        if not text.strip():
            raise ConfigError(f"Batch item {i} renders an empty prompt.")
        if key is not None:
            if key not in values:
                raise ConfigError(f"No column {key!r} for the item key (item {i}).")
            item_key = str(values[key])
            if item_key in seen:
                raise ConfigError(f"Item key {item_key!r} (column {key!r}) is not unique.")
            seen[item_key] = 1
        else:
            base = _digest(text, sys_text)
            seen[base] = seen.get(base, 0) + 1
            item_key = base if seen[base] == 1 else f"{base}#{seen[base]}"
        reference = None
        if reference_column is not None:
            if reference_column not in values:
                raise ConfigError(f"No column {reference_column!r} for reference answers.")
            value = values[reference_column]
            reference = None if value is None or value == "" else str(value)
        items.append(_Item(i, item_key, text, sys_text, reference))
    return items


# -- worst-case cost ----------------------------------------------------------------------------


def _request(
    prompt: Prompt, system: str | None, max_tokens: int, temperature: float | None
) -> CompletionRequest:
    return CompletionRequest(
        as_messages(prompt, system), max_tokens=max_tokens, temperature=temperature
    )


def _worst_case(config: ModelConfig, request: CompletionRequest, max_tokens: int) -> float | None:
    from ..core.pricing import estimate_cost

    return estimate_cost(config, request, max_tokens)


# -- the runner -----------------------------------------------------------------------------------


@dataclass
class _Job:
    """One scheduled unit of work for one model."""

    model: str
    run: Callable[[bool], Coroutine[Any, Any, _Outcome]]  # (last try) -> outcome
    tokens: int | None = None


@dataclass
class _Outcome:
    throttled: bool = False  # still rate limited after the engine's retries: queue again
    retry_after_s: float | None = None


class _Scheduler:
    """Runs jobs with ``concurrency`` in flight overall and each model behind its gate.

    One dispatcher per model waits on that model's gate, so a model that is
    paused or rate limited holds no shared slot and delays no other model.
    """

    def __init__(self, concurrency: int, limits: Limits) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.limits = limits

    async def run(self, jobs: Iterable[_Job]) -> None:
        queues: dict[str, deque[_Job]] = defaultdict(deque)
        for job in jobs:
            queues[job.model].append(job)
        running: set[asyncio.Task[None]] = set()

        async def dispatch(model: str, queue: deque[_Job]) -> None:
            gate = self.limits.gate(model)
            while queue:
                job = queue.popleft()
                await self._enter(gate, job)
                task = asyncio.create_task(self._one(gate, job))
                running.add(task)
                task.add_done_callback(running.discard)

        dispatchers = [asyncio.create_task(dispatch(m, q)) for m, q in queues.items()]
        try:
            await asyncio.gather(*dispatchers)
            while running:
                await asyncio.wait(set(running))
        finally:
            rest = [t for t in (*dispatchers, *running) if not t.done()]
            for task in rest:
                task.cancel()
            if rest:
                await asyncio.gather(*rest, return_exceptions=True)

    async def _enter(self, gate: ModelGate, job: _Job) -> None:
        await gate.acquire(job.tokens)
        try:
            while True:
                await self.slots.acquire()
                if not gate.paused:
                    return
                # A 429 arrived while this call waited for a slot: wait without holding it.
                self.slots.release()
                await gate.wait_pause()
        except BaseException:
            gate.release()
            raise

    def _leave(self, gate: ModelGate) -> None:
        self.slots.release()
        gate.release()

    async def _one(self, gate: ModelGate, job: _Job) -> None:
        inside = True
        try:
            for requeue in range(MAX_REQUEUES + 1):
                outcome = await job.run(requeue == MAX_REQUEUES)
                if not outcome.throttled or requeue == MAX_REQUEUES:
                    if not outcome.throttled:
                        gate.succeeded()
                    return
                gate.back_off(outcome.retry_after_s)
                self._leave(gate)
                inside = False
                await self._enter(gate, job)
                inside = True
        finally:
            if inside:
                self._leave(gate)


def _rate_limited(error: BaseException) -> tuple[bool, float | None]:
    """(whether ``error`` is a 429 in the end, the Retry-After it carried)."""
    if isinstance(error, ProviderError):
        return error.status == 429, error.retry_after_s
    if isinstance(error, AllModelsFailedError) and error.errors:
        limited = [e for e in error.errors if isinstance(e, ProviderError) and e.status == 429]
        if len(limited) == len(error.errors):
            waits = [e.retry_after_s for e in limited if e.retry_after_s is not None]
            return True, min(waits) if waits else None
    return False, None


# -- the batch ------------------------------------------------------------------------------------


@dataclass
class _Settings:
    models: list[str]
    prompt: str
    system: str | None
    judges: list[str]
    judge_mode: JudgeMode
    criteria: str | None
    reference_column: str | None
    temperature: float | None
    max_tokens: int | None
    fallbacks: Sequence[str] | None
    cache: bool
    allow_unpriced: bool
    concurrency: int
    limits: Limits
    budget: float | None
    rerun: Rerun
    key: str | None


class _Batch:
    """One run of a batch on the background loop (state shared with a caller that stops it)."""

    def __init__(self, orc: Orchestrator, raw: list[dict[str, Any]], s: _Settings) -> None:
        self.orc = orc
        self.engine = orc._engine
        self.raw = raw
        self.s = s
        self.configs = {m: self.engine.catalogue.resolve(m) for m in s.models}
        self.judge_configs = {j: self.engine.catalogue.resolve(j) for j in s.judges}
        self.items = _plan_items(raw, s.prompt, s.system, s.key, s.reference_column)
        self.group_id = "batch-" + _digest(
            s.prompt, s.system, s.temperature, s.max_tokens,
            list(s.fallbacks) if s.fallbacks is not None else None, size=16,
        )  # fmt: skip
        self.signatures = {
            m: _model_signature(c, s.temperature, s.max_tokens) for m, c in self.configs.items()
        }
        self.calls = [
            _Call(item, m, f"{item.key}|{self.signatures[m]}")
            for item in self.items
            for m in s.models
        ]
        self.stats = BatchStats()
        self.judgements: list[dict[str, Any]] = []
        self.grades: list[dict[str, Any]] = []
        self.judge_cost = 0.0
        self.progress: BatchProgress | None = None
        self._last_update = 0.0
        self._log: dict[tuple[str, str], list[RunRecord]] = {}

    # -- the log

    def read_log(self) -> None:
        by_step: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for record in self.engine.runs.records(group_id=self.group_id):
            if record.step is not None:
                by_step[(record.step, record.requested_model)].append(record)
        self._log = by_step

    def _logged(self, step: str, model: str) -> tuple[str, RunRecord] | None:
        """("ok" | "failed" | "unfinished", the record that says so), or None if never sent."""
        records = self._log.get((step, model))
        if not records:
            return None
        ok = [r for r in records if r.status == "ok"]
        if ok:
            return "ok", ok[-1]
        last = records[-1]
        return ("unfinished" if last.status == "cancelled" else "failed"), last

    def resume(self) -> list[_Call]:
        """Fill the rows the log already has; return the calls still to send."""
        todo = []
        for call in self.calls:
            found = None if self.s.rerun == "all" else self._logged(call.step, call.model)
            stats = self.stats.model(call.model)
            stats.total += 1
            if found is not None:
                state, record = found
                if state == "ok" or (state == "failed" and self.s.rerun is None):
                    call.row = _row_from_record(record)
                    stats.resumed += 1
                    stats.failed += state == "failed"
                    continue
            todo.append(call)
        return todo

    # -- budget

    def worst_case(self, todo: Sequence[_Call]) -> dict[str, float | None]:
        """USD per model (judges as ``"judge <name>"``) of the worst case; None: unpriced."""
        s = self.s
        out: dict[str, float | None] = {}

        def add(name: str, value: float | None) -> None:
            if name in out and out[name] is None:
                return
            out[name] = None if value is None else (out.get(name) or 0.0) + value

        for call in todo:
            config = self.configs[call.model]
            max_tokens = s.max_tokens or config.max_tokens
            request = _request(call.item.prompt, call.item.system, max_tokens, s.temperature)
            add(call.model, _worst_case(config, request, max_tokens))
        if s.judges:
            for item in self.items:
                if s.judge_mode == "pairwise":
                    shapes: list[tuple[str, ...]] = [
                        *itertools.combinations(s.models, 2),
                        *itertools.combinations(s.models, 2),  # both orders
                    ]
                else:
                    shapes = [(m,) for m in s.models]
                criteria = self._criteria(item)
                for judge, config in self.judge_configs.items():
                    for shape in shapes:
                        # The candidates' own tokens are added below, as their max_tokens.
                        blank = ["" for _ in shape]
                        messages = judge_messages(item.prompt, blank, criteria=criteria, nonce="0")
                        candidate_tokens = sum(
                            s.max_tokens or self.configs[m].max_tokens for m in shape
                        )
                        request = _request(messages, None, config.max_tokens, 0)
                        cost = _worst_case(config, request, config.max_tokens)
                        if cost is not None and config.cost_per_1k_input is not None:
                            cost += candidate_tokens * config.cost_per_1k_input / 1000
                        add(f"judge {judge}", cost)
        return out

    def check_budget(self, todo: Sequence[_Call]) -> None:
        if self.s.budget is None:
            return
        costs = self.worst_case(todo)
        unpriced = [name for name, cost in costs.items() if cost is None]
        if unpriced and not self.s.allow_unpriced:
            raise BudgetExceededError(
                f"Model(s) {', '.join(unpriced)} have no price, so the batch's budget cannot "
                "bound what they cost.",
                hint="Pass allow_unpriced=True to send them anyway, or set their prices.",
            )
        total = sum(c for c in costs.values() if c is not None)
        self.stats.worst_case_cost = total
        if total > self.s.budget:
            parts = ", ".join(f"{n} ${c:.4f}" for n, c in costs.items() if c is not None)
            raise BudgetExceededError(
                f"This batch could cost up to ${total:.4f} ({parts}), over its budget of "
                f"${self.s.budget:.4f}. Nothing was sent.",
                estimate=total,
                hint="Lower max_tokens, use fewer items or models, or raise the budget.",
            )

    # -- answering

    def _options(self) -> CallOptions:
        options: CallOptions = {"cache": self.s.cache}
        if self.s.temperature is not None:
            options["temperature"] = self.s.temperature
        if self.s.max_tokens is not None:
            options["max_tokens"] = self.s.max_tokens
        if self.s.fallbacks is not None:
            options["fallbacks"] = self.s.fallbacks
        if self.s.allow_unpriced:
            options["allow_unpriced"] = True
        return options

    def _tokens(self, call: _Call, gate: ModelGate) -> int | None:
        if not gate.counts_tokens:
            return None
        from ..core.pricing import input_tokens

        config = self.configs[call.model]
        max_tokens = self.s.max_tokens or config.max_tokens
        request = _request(call.item.prompt, call.item.system, max_tokens, self.s.temperature)
        return input_tokens(request, config) + max_tokens

    def answer_job(self, call: _Call, options: CallOptions) -> _Job:
        stats = self.stats.model(call.model)
        gate = self.s.limits.gate(call.model)

        async def run(last_try: bool) -> _Outcome:
            seen: list[CompletionResponse] = []

            def on_finish(response: CompletionResponse) -> None:
                seen.append(response)
                if response.cost:
                    stats.cost += response.cost
                if response.error and "(HTTP 429)" in response.error:
                    stats.throttled += 1

            if stats.started is None:
                stats.started = time.perf_counter()
            context = CallContext("batch", self.group_id, step=call.step, on_finish=on_finish)
            prompt = call.item.prompt
            system_options = dict(options)
            if call.item.system is not None:
                system_options["system"] = call.item.system
            try:
                response = await self.engine.complete(prompt, call.model, system_options, context)  # type: ignore[arg-type]
            except MMOError as exc:
                limited, wait = _rate_limited(exc)
                call.row = _row_from_error(exc, seen)
                if limited and not last_try:
                    return _Outcome(True, wait)
                self._finished(stats, ok=False)
                return _Outcome()
            call.row = _row_from_response(response, seen)
            self._finished(stats, ok=True)
            return _Outcome()

        return _Job(call.model, run, self._tokens(call, gate))

    def _finished(self, stats: ModelStats, *, ok: bool) -> None:
        stats.done += 1
        stats.failed += not ok
        stats.last = time.perf_counter()
        self._update()

    def _update(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if force or now - self._last_update >= 0.1:
            self._last_update = now
            self.progress.update(self.stats)

    # -- judging

    def _criteria(self, item: _Item) -> str | None:
        parts = [_GRADE_RUBRIC] if self.s.judge_mode == "grade" else []
        if item.reference:
            parts.append(
                "A reference answer, written by the person who set the question, is: "
                + json.dumps(item.reference, ensure_ascii=False)
                + " Judge correctness against it"
            )
        if self.s.criteria:
            parts.append(self.s.criteria)
        return ". ".join(p.rstrip(".") for p in parts) or None

    async def _verdict(
        self, judge: str, messages: list[dict[str, str]], names: Sequence[str], step: str,
        need_score: bool,
    ) -> tuple[Verdict | None, str | None]:  # fmt: skip
        """A parsed verdict (one repair), taken from the log when it has one for ``step``."""
        for logged_step in (step, f"{step} (repair)"):
            found = self._logged(logged_step, judge) if self.s.rerun != "all" else None
            if found is not None and found[0] == "ok":
                try:
                    verdict = _parse(found[1].response or "", names, judge, need_score)
                except VerdictError:
                    continue
                return verdict, None
        options: CallOptions = {"temperature": 0, "cache": self.s.cache}
        context = CallContext("judge", self.group_id, step=step, on_finish=self._judge_cost)
        try:
            reply = await self.engine.complete(messages, judge, options, context)
            try:
                return _parse(reply.content, names, judge, need_score), None
            except VerdictError as error:
                fixed = repair_messages(messages, reply.content, error)
                context = dataclasses.replace(context, step=f"{step} (repair)")
                reply = await self.engine.complete(fixed, judge, options, context)
                return _parse(reply.content, names, judge, need_score), None
        except MMOError as exc:
            return None, str(exc)

    def _judge_cost(self, response: CompletionResponse) -> None:
        if response.cost:
            self.judge_cost += response.cost
            self.stats.model(f"judge {response.model}").cost += response.cost

    def judge_jobs(self) -> list[_Job]:
        jobs: list[_Job] = []
        rows_by_item: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for call in self.calls:
            if call.row is not None and call.row["status"] == "ok":
                rows_by_item[call.item.index][call.model] = call.row
        for item in self.items:
            answers = rows_by_item.get(item.index, {})
            ok_models = [m for m in self.s.models if m in answers]
            for judge in self.s.judges:
                judge_sig = _model_signature(self.judge_configs[judge], 0, None)
                if self.s.judge_mode == "pairwise":
                    for a, b in itertools.combinations(ok_models, 2):
                        jobs.append(self._pair_job(item, judge, judge_sig, a, b, answers))
                else:
                    for m in ok_models:
                        jobs.append(self._grade_job(item, judge, judge_sig, m, answers[m]))
        for job in jobs:
            self.stats.model(f"judge {job.model}").total += 1
        return jobs

    def _pair_job(
        self, item: _Item, judge: str, judge_sig: str, a: str, b: str,
        answers: dict[str, dict[str, Any]],
    ) -> _Job:  # fmt: skip
        text_a, text_b = answers[a]["answer"], answers[b]["answer"]
        criteria = self._criteria(item)
        base = _digest(judge_sig, criteria, text_a, text_b, size=10)
        stats = self.stats.model(f"judge {judge}")
        names = ("A", "B")

        async def run(last_try: bool) -> _Outcome:
            if stats.started is None:
                stats.started = time.perf_counter()
            verdicts: dict[str, Verdict | None] = {}
            errors: list[str] = []
            for order_name, order in (("first", [0, 1]), ("swapped", [1, 0])):
                texts = [(text_a, text_b)[i] for i in order]
                messages = judge_messages(item.prompt, texts, criteria=criteria)
                step = f"judge|{item.key}|{a}|{b}|{base}|{order_name}"
                verdict, error = await self._verdict(judge, messages, names, step, False)
                verdicts[order_name] = None if verdict is None else unswap(verdict, order, names)
                if error:
                    errors.append(error)
            first, swapped = verdicts["first"], verdicts["swapped"]
            combined = combine_swap(first, swapped) if first and swapped else (first or swapped)

            def named(v: Verdict | None) -> str | None:
                if v is None:
                    return None
                return TIE if v.winner == TIE else (a if v.winner == "A" else b)

            self.judgements.append({
                "item": item.index, "key": item.key, "judge": judge, "model_a": a, "model_b": b,
                "first": named(first), "swapped": named(swapped),
                "winner": named(combined) if first and swapped else None,
                "reason": combined.reason if combined else None,
                "error": "; ".join(errors) or None,
            })  # fmt: skip
            self._finished(stats, ok=not errors)
            return _Outcome()

        return _Job(judge, run)

    def _grade_job(
        self, item: _Item, judge: str, judge_sig: str, model: str, row: dict[str, Any]
    ) -> _Job:
        criteria = self._criteria(item)
        base = _digest(judge_sig, criteria, row["answer"], size=10)
        stats = self.stats.model(f"judge {judge}")

        async def run(last_try: bool) -> _Outcome:
            if stats.started is None:
                stats.started = time.perf_counter()
            messages = judge_messages(item.prompt, [row["answer"]], criteria=criteria)
            step = f"grade|{item.key}|{model}|{base}"
            verdict, error = await self._verdict(judge, messages, ("A",), step, True)
            score = verdict.scores.get("A") if verdict and verdict.scores else None
            self.grades.append({
                "item": item.index, "key": item.key, "judge": judge, "model": model,
                "score": score, "reason": verdict.reason if verdict else None, "error": error,
            })  # fmt: skip
            self._finished(stats, ok=error is None)
            return _Outcome()

        return _Job(judge, run)

    # -- all of it

    async def run(self, progress: BatchProgress | None) -> None:
        """Answer, then judge (the log, resume and budget came first: see ``_prepare``)."""
        self.progress = progress
        todo = [c for c in self.calls if c.row is None]
        scheduler = _Scheduler(self.s.concurrency, self.s.limits)
        options = self._options()
        if progress is not None:
            progress.start(self.stats)
        try:
            await scheduler.run(self.answer_job(c, options) for c in todo)
            if self.s.judges:
                self.stats.phase = "judging"
                self._update(force=True)
                await scheduler.run(self.judge_jobs())
            self.stats.phase = "done"
        except BaseException:
            self.stats.phase = "stopped"
            raise
        finally:
            if progress is not None:
                progress.finish(self.stats)

    def result(self) -> BatchResult:
        rows = []
        for call in self.calls:
            row = call.row or {
                "status": "cancelled", "error": "not run: the batch was stopped",
                "answer": None, "answered_by": None, "attempts": 0, "resumed": False,
            }  # fmt: skip
            rows.append({"item": call.item.index, "key": call.item.key, "model": call.model, **row})
        return BatchResult(
            items=self.raw, models=list(self.s.models), rows=rows, group_id=self.group_id,
            judges=list(self.s.judges), judge_mode=self.s.judge_mode,
            judgements=self.judgements, grades=self.grades,
            worst_case_cost=self.stats.worst_case_cost, judge_cost=self.judge_cost,
            stats=self.stats,
        )  # fmt: skip


def _parse(text: str, names: Sequence[str], judge: str, need_score: bool) -> Verdict:
    verdict = parse_verdict(text, names, judge=judge)
    if need_score and (not verdict.scores or "A" not in verdict.scores):
        raise VerdictError(
            'the reply gives no score for A in "scores"', reply=text, judge=judge, labels=names
        )
    return verdict


_ROW_FIELDS = (
    "answer", "answered_by", "status", "error", "input_tokens", "output_tokens", "ttft_ms",
    "latency_ms", "cost", "attempts", "cached", "resumed", "run_id",
)  # fmt: skip


def _row_from_response(r: CompletionResponse, seen: list[CompletionResponse]) -> dict[str, Any]:
    costs = [x.cost for x in seen if x.cost is not None]
    return {
        "answer": r.content, "answered_by": r.model, "status": r.status, "error": None,
        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "ttft_ms": r.ttft_ms,
        "latency_ms": r.latency_ms, "cost": sum(costs) if costs else r.cost,
        "attempts": len(r.attempts) or len(seen) or 1, "cached": r.cached, "resumed": False,
        "run_id": r.run_id,
    }  # fmt: skip


def _row_from_error(exc: MMOError, seen: list[CompletionResponse]) -> dict[str, Any]:
    last = seen[-1] if seen else None
    costs = [x.cost for x in seen if x.cost is not None]
    status = last.status if last is not None and last.status != "ok" else "error"
    return {
        "answer": None, "answered_by": None, "status": status, "error": str(exc),
        "input_tokens": None, "output_tokens": None,
        "ttft_ms": last.ttft_ms if last else None, "latency_ms": last.latency_ms if last else None,
        "cost": sum(costs) if costs else None, "attempts": len(exc.attempts) or len(seen),
        "cached": False, "resumed": False, "run_id": last.run_id if last else None,
    }  # fmt: skip


def _row_from_record(r: RunRecord) -> dict[str, Any]:
    ok = r.status == "ok"
    return {
        "answer": r.response if ok else None, "answered_by": r.model if ok else None,
        "status": r.status, "error": r.error, "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens, "ttft_ms": r.ttft_ms, "latency_ms": r.latency_ms,
        "cost": r.cost, "attempts": r.attempt, "cached": r.cached, "resumed": True,
        "run_id": r.run_id,
    }  # fmt: skip


# -- the result -----------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Every (item, model) outcome of a batch, its judgements, and their aggregates."""

    items: list[dict[str, Any]]
    models: list[str]
    rows: list[dict[str, Any]]  # one per (item, model), item-major
    group_id: str
    judges: list[str] = field(default_factory=list)
    judge_mode: str = "pairwise"
    judgements: list[dict[str, Any]] = field(default_factory=list)  # pairwise
    grades: list[dict[str, Any]] = field(default_factory=list)  # grade mode
    worst_case_cost: float | None = None
    judge_cost: float = 0.0
    stats: BatchStats | None = None

    # -- tables

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (item, model): the item's columns, then the answer and its numbers.

        An item column named like a result column is prefixed with ``item_``.
        """
        import pandas as pd

        result_columns = ("item", "key", "model", *_ROW_FIELDS)
        item_frame = pd.DataFrame(self.items)
        item_frame.columns = [f"item_{c}" if c in result_columns else c for c in item_frame.columns]
        rows = pd.DataFrame(self.rows, columns=list(result_columns))
        if len(item_frame.columns):
            frame = pd.concat([item_frame.iloc[rows["item"]].reset_index(drop=True), rows], axis=1)
        else:
            frame = rows
        types = {
            "input_tokens": "Int64", "output_tokens": "Int64", "attempts": "Int64",
            "ttft_ms": "Float64", "latency_ms": "Float64", "cost": "Float64",
            "cached": "boolean", "resumed": "boolean", "answer": "string", "error": "string",
        }  # fmt: skip
        frame = frame.astype(types)
        frame["model"] = pd.Categorical(frame["model"], categories=self.models)
        frame["status"] = frame["status"].astype("category")
        return frame

    def wide(self, values: str = "answer") -> pd.DataFrame:
        """Items × models: each cell is the model's ``values`` (default: the answer)."""
        frame = self.to_dataframe()
        table = frame.pivot(index="item", columns="model", values=values)
        table.columns = list(table.columns)
        return table

    def summary(self) -> pd.DataFrame:
        """Per model: items, ok, failed, cost, latency and time to first token."""
        import pandas as pd

        frame = self.to_dataframe()
        out = []
        for model in self.models:
            rows = frame[frame["model"] == model]
            ok = rows[rows["status"] == "ok"]
            cost = rows["cost"].dropna()
            out.append({
                "model": model, "items": len(rows), "ok": len(ok),
                "failed": int((rows["status"] != "ok").sum()),
                "failure_rate": float((rows["status"] != "ok").mean()) if len(rows) else math.nan,
                "resumed": int(rows["resumed"].sum()),
                "cost": float(cost.sum()) if len(cost) else None,
                "latency_p50_ms": _quantile(ok["latency_ms"], 0.5),
                "latency_p95_ms": _quantile(ok["latency_ms"], 0.95),
                "ttft_p50_ms": _quantile(ok["ttft_ms"], 0.5),
                "output_tokens_mean": _mean(ok["output_tokens"]),
            })  # fmt: skip
        return pd.DataFrame(out).set_index("model")

    @property
    def cost(self) -> float:
        """USD spent on answers and judges (unpriced calls count as nothing)."""
        return sum(r["cost"] or 0.0 for r in self.rows if not r.get("resumed")) + self.judge_cost

    # -- judging

    def comparisons(self) -> list[Comparison]:
        """Every usable pairwise verdict (both orders merged) as a Comparison."""
        out = []
        for j in self.judgements:
            if j["winner"] is None:
                continue
            score = 0.5 if j["winner"] == TIE else 1.0 if j["winner"] == j["model_a"] else 0.0
            out.append(Comparison(j["item"], j["model_a"], j["model_b"], score))
        return out

    def judgements_frame(self) -> pd.DataFrame:
        import pandas as pd

        if self.judge_mode == "grade":
            return pd.DataFrame(self.grades)
        return pd.DataFrame(self.judgements)

    def win_matrix(self) -> pd.DataFrame:
        """Rows beat columns: "wins-ties-losses" of the row model against the column model."""
        import pandas as pd

        matrix = win_matrix(self.comparisons(), self.models)
        return pd.DataFrame(
            {b: {a: ("" if a == b else "-".join(map(str, matrix[a][b]))) for a in self.models}
             for b in self.models}
        ).loc[self.models, self.models]  # fmt: skip

    def bias(self) -> pd.DataFrame:
        """Per judge: pairs judged both ways, flip rate, position-bias rate, first-position rate."""
        import pandas as pd

        stats = position_bias(self.judgements)
        frame = pd.DataFrame.from_dict(stats, orient="index")
        frame.index.name = "judge"
        return frame

    def agreement(self) -> pd.DataFrame:
        """Per pair of judges: the share of comparisons on which they agree."""
        import pandas as pd

        pairs = judge_agreement(self.judgements)
        return pd.DataFrame(
            [{"judge": x, "other": y, "agreement": v} for (x, y), v in pairs.items()]
        )

    def leaderboard(
        self, *, plot: bool = False, rounds: int = 500, seed: int | None = 0
    ) -> pd.DataFrame:
        """Models best first: rating with a 95% bootstrap interval, record, cost.

        Pairwise: Bradley–Terry ratings (Elo scale), wins/ties/losses and
        ``usd_per_point`` (the model's cost over its rating above the lowest
        model's). Grade: the mean grade with a bootstrap interval over items.
        ``plot=True`` also draws the ratings with their intervals (matplotlib).
        """
        import pandas as pd

        summary = self.summary()
        if self.judge_mode == "grade":
            frame = self._grade_board(rounds, seed)
        else:
            ratings = bradley_terry_intervals(
                self.comparisons(), self.models, rounds=rounds, seed=seed
            )
            matrix = win_matrix(self.comparisons(), self.models)
            rows = []
            for r in ratings:
                wins = sum(matrix[r.model][b][0] for b in matrix[r.model])
                ties = sum(matrix[r.model][b][1] for b in matrix[r.model])
                losses = sum(matrix[r.model][b][2] for b in matrix[r.model])
                played = wins + ties + losses
                rows.append({
                    "model": r.model, "rating": r.rating, "ci_low": r.low, "ci_high": r.high,
                    "wins": wins, "ties": ties, "losses": losses,
                    "win_rate": (wins + ties / 2) / played if played else math.nan,
                })  # fmt: skip
            frame = pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()
        if frame.empty:
            frame = pd.DataFrame(index=pd.Index(self.models, name="model"))
        frame = frame.join(summary[["ok", "failed", "cost"]])
        if "rating" in frame:
            low = frame["rating"].min()
            above = frame["rating"] - low
            frame["usd_per_point"] = [
                c / p if c is not None and not pd.isna(c) and p > 0 else math.nan
                for c, p in zip(frame["cost"], above, strict=True)
            ]
        if plot:
            self.plot(frame)
        return frame

    def _grade_board(self, rounds: int, seed: int | None) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(seed)
        rows = []
        for model in self.models:
            by_item: dict[int, list[float]] = defaultdict(list)
            for g in self.grades:
                if g["model"] == model and g["score"] is not None:
                    by_item[g["item"]].append(float(g["score"]))
            means = np.array([sum(v) / len(v) for v in by_item.values()])
            if len(means):
                draws = rng.choice(means, size=(rounds, len(means)), replace=True).mean(axis=1)
                low, high = np.quantile(draws, [0.025, 0.975])
                rows.append({
                    "model": model, "rating": float(means.mean()), "ci_low": float(low),
                    "ci_high": float(high), "graded": len(means),
                })  # fmt: skip
            else:
                rows.append({"model": model, "rating": math.nan, "ci_low": math.nan,
                             "ci_high": math.nan, "graded": 0})  # fmt: skip
        return pd.DataFrame(rows).set_index("model").sort_values("rating", ascending=False)

    def plot(self, board: pd.DataFrame | None = None) -> Any:
        """The ratings with their intervals as a horizontal error-bar chart (matplotlib Axes)."""
        import matplotlib.pyplot as plt

        board = self.leaderboard() if board is None else board
        board = board.iloc[::-1]
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(board)))
        ax.errorbar(
            board["rating"], range(len(board)),
            xerr=[board["rating"] - board["ci_low"], board["ci_high"] - board["rating"]],
            fmt="o", capsize=4,
        )  # fmt: skip
        ax.set_yticks(range(len(board)), list(board.index))
        ax.set_xlabel("mean grade (1-10)" if self.judge_mode == "grade" else "Bradley-Terry rating")
        ax.set_title("Leaderboard (95% bootstrap intervals)")
        fig.tight_layout()
        return ax

    # -- display

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        ok = sum(r["status"] == "ok" for r in self.rows)
        return (
            f"<BatchResult {len(self.items)} items × {len(self.models)} models: "
            f"{ok} ok, {len(self.rows) - ok} failed>"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(repr(self))}</p>" + self.summary()._repr_html_()  # type: ignore[operator]


def _quantile(series: Any, q: float) -> float | None:
    values = series.dropna()
    return float(values.quantile(q)) if len(values) else None


def _mean(series: Any) -> float | None:
    values = series.dropna()
    return float(values.mean()) if len(values) else None


# -- entry points ---------------------------------------------------------------------------------


def _settings(
    models: Sequence[str], prompt: str, system: str | None, judges: Sequence[str] | None,
    judge_mode: str, criteria: str | None, reference_column: str | None,
    temperature: float | None, max_tokens: int | None, fallbacks: Sequence[str] | None,
    cache: bool, allow_unpriced: bool, concurrency: int, limits: Any, budget: float | None,
    rerun: str | None, key: str | None,
) -> _Settings:  # fmt: skip
    if isinstance(models, str) or not models:
        raise ConfigError("Give a list of model names, e.g. models=['gpt-4o-mini', 'haiku'].")
    if len(set(models)) != len(models):
        raise ConfigError("A model is listed twice in models=[...].")
    if judge_mode not in ("pairwise", "grade"):
        raise ConfigError(f"judge_mode must be 'pairwise' or 'grade', not {judge_mode!r}.")
    if rerun not in (None, "failed", "all"):
        raise ConfigError(f"rerun must be None, 'failed' or 'all', not {rerun!r}.")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError(f"concurrency must be a whole number >= 1, got {concurrency!r}.")
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise ConfigError(f"budget must be a finite number >= 0, got {budget!r}.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("The batch prompt must be a non-empty template string.")
    return _Settings(
        models=list(models), prompt=prompt, system=system, judges=list(judges or ()),
        judge_mode=judge_mode,  # type: ignore[arg-type]
        criteria=criteria, reference_column=reference_column, temperature=temperature,
        max_tokens=max_tokens, fallbacks=fallbacks, cache=cache, allow_unpriced=allow_unpriced,
        concurrency=concurrency, limits=Limits.of(limits), budget=budget,
        rerun=rerun,  # type: ignore[arg-type]
        key=key,
    )  # fmt: skip


def _prepare(orc: Orchestrator, data: Any, settings: _Settings) -> tuple[_Batch, list[_Call]]:
    """Everything before the first request: items, templates, the log, the budget."""
    batch = _Batch(orc, load_items(data), settings)
    batch.read_log()
    todo = batch.resume()
    batch.check_budget(todo)
    return batch, todo


def _choose_progress(progress: BatchProgress | bool | None) -> BatchProgress | None:
    if progress is False:
        return None
    if progress is None or progress is True:
        return _default_progress() if _default_progress is not None else None
    return progress


def _close(view: BatchProgress | None) -> None:
    """Let a view replace itself with its final state, on the caller's thread."""
    close = getattr(view, "close", None)
    if close is not None:
        close()


def run_batch(
    orc: Orchestrator,
    data: Any,
    models: Sequence[str],
    prompt: str = "{question}",
    *,
    system: str | None = None,
    judges: Sequence[str] | None = None,
    judge_mode: str = "pairwise",
    criteria: str | None = None,
    reference_column: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    fallbacks: Sequence[str] | None = None,
    cache: bool = False,
    allow_unpriced: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    limits: Limits | Mapping[str, Any] | None = None,
    budget: float | None = None,
    rerun: str | None = None,
    key: str | None = None,
    progress: BatchProgress | bool | None = None,
) -> BatchResult:
    """Ask every model about every item of ``data``; see the module docstring.

    ``prompt`` and ``system`` are templates over the item's columns. ``key``
    names a column that identifies items (default: a hash of the rendered
    prompt). ``cache`` is off by default: a batch compares models. ``progress``:
    a BatchProgress, False for none, None for the registered default.
    Raises BudgetExceededError (nothing sent), TemplateError or ConfigError
    before any request; never for a failed call, which is a row.
    """
    settings = _settings(
        models, prompt, system, judges, judge_mode, criteria, reference_column, temperature,
        max_tokens, fallbacks, cache, allow_unpriced, concurrency, limits, budget, rerun, key,
    )  # fmt: skip
    batch, _ = _prepare(orc, data, settings)
    view = _choose_progress(progress)
    try:
        orc._loop.run(batch.run(view))
    finally:
        _close(view)
    return batch.result()


async def arun_batch(
    orc: Orchestrator,
    data: Any,
    models: Sequence[str],
    prompt: str = "{question}",
    *,
    system: str | None = None,
    judges: Sequence[str] | None = None,
    judge_mode: str = "pairwise",
    criteria: str | None = None,
    reference_column: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    fallbacks: Sequence[str] | None = None,
    cache: bool = False,
    allow_unpriced: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    limits: Limits | Mapping[str, Any] | None = None,
    budget: float | None = None,
    rerun: str | None = None,
    key: str | None = None,
    progress: BatchProgress | bool | None = None,
) -> BatchResult:
    """Async twin of ``run_batch``; cancelling it stops the batch (answers so far are kept)."""
    settings = _settings(
        models, prompt, system, judges, judge_mode, criteria, reference_column, temperature,
        max_tokens, fallbacks, cache, allow_unpriced, concurrency, limits, budget, rerun, key,
    )  # fmt: skip
    batch, _ = _prepare(orc, data, settings)
    view = _choose_progress(progress)
    try:
        await orc._loop.arun(batch.run(view))
    finally:
        _close(view)
    return batch.result()


def estimate_batch(
    orc: Orchestrator,
    data: Any,
    models: Sequence[str],
    prompt: str = "{question}",
    *,
    system: str | None = None,
    judges: Sequence[str] | None = None,
    judge_mode: str = "pairwise",
    max_tokens: int | None = None,
    temperature: float | None = None,
    rerun: str | None = None,
) -> dict[str, float | None]:
    """The worst-case USD per model (and ``"judge <name>"``) of what the batch would send now.

    Calls the log already answered are not counted; None: an unpriced model.
    """
    settings = _settings(
        models, prompt, system, judges, judge_mode, None, None, temperature, max_tokens, None,
        False, True, 1, None, None, rerun, None,
    )  # fmt: skip
    batch = _Batch(orc, load_items(data), settings)
    batch.read_log()
    return batch.worst_case(batch.resume())
