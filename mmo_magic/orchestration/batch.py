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
* **Scale out.** ``engine="ray"`` plans the batch here the same way, then runs
  its calls on Ray workers with limits and budget shared by all of them
  (``ray_engine``); records come back to this process's run log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.completion import CompletionRequest, CompletionResponse, Prompt, as_messages
from ..core.errors import (
    BudgetExceededError,
    ConfigError,
    MMOError,
)
from ..core.models import ModelConfig
from ..core.templates import Template
from .batch_progress import (
    BatchProgress,
    BatchStats,
    ModelStats,
    default_progress,
    set_default_progress,
)
from .batch_result import BatchResult, row_from_error, row_from_record, row_from_response
from .batch_scheduler import Job, Outcome, Scheduler, rate_limited
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
    verdict_schema,
)
from .limits import Gate, Limits
from .parallel import judge_reply

if TYPE_CHECKING:
    import pandas as pd

    from ..storage.runlog import RunRecord
    from .orchestrator import Orchestrator
    from .ray_engine import RayOptions

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
DEFAULT_CONCURRENCY = 16
_GRADE_RUBRIC = (
    "Grade the single candidate on a scale of 1 to 10 (MT-Bench style): 1-2 wrong, harmful "
    "or off-topic; 3-4 mostly wrong; 5-6 partly right or missing important parts; 7-8 right "
    'with minor flaws; 9-10 right, complete and clear. Put the grade in "scores" for A'
)


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

    def __init__(
        self,
        orc: Orchestrator,
        raw: list[dict[str, Any]],
        s: _Settings,
        items: list[_Item] | None = None,
    ) -> None:
        """``items``: already planned (a shard of a batch running on Ray), else planned from raw."""
        self.orc = orc
        self.engine = orc._engine
        self.raw = raw
        self.s = s
        self.configs = {m: self.engine.catalogue.resolve(m) for m in s.models}
        self.judge_configs = {j: self.engine.catalogue.resolve(j) for j in s.judges}
        s.limits.configure({**self.judge_configs, **self.configs})
        self.items = (
            items
            if items is not None
            else _plan_items(raw, s.prompt, s.system, s.key, s.reference_column)
        )
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
                    call.row = row_from_record(record)
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

    def _tokens(self, call: _Call, gate: Gate) -> int | None:
        if not gate.counts_tokens:
            return None
        from ..core.pricing import input_tokens

        config = self.configs[call.model]
        max_tokens = self.s.max_tokens or config.max_tokens
        request = _request(call.item.prompt, call.item.system, max_tokens, self.s.temperature)
        return input_tokens(request, config) + max_tokens

    def answer_job(self, call: _Call, options: CallOptions) -> Job:
        stats = self.stats.model(call.model)
        gate = self.s.limits.gate(call.model)

        async def run(last_try: bool) -> Outcome:
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
                limited, wait = rate_limited(exc)
                call.row = row_from_error(exc, seen)
                if limited and not last_try:
                    return Outcome(True, wait)
                self._finished(stats, ok=False)
                self._answered(call)
                return Outcome()
            call.row = row_from_response(response, seen)
            self._finished(stats, ok=True)
            self._answered(call)
            return Outcome()

        return Job(call.model, run, self._tokens(call, gate))

    def _answered(self, call: _Call) -> None:
        """``call.row`` is final (a Ray worker sends it to the driver here)."""

    def _judged(self, entry: dict[str, Any]) -> None:
        """One pairwise judgement or grade is final."""
        (self.grades if self.s.judge_mode == "grade" else self.judgements).append(entry)

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
        if not need_score:  # a pairwise verdict under a schema where the judge has one
            options["response_format"] = verdict_schema(names)
        context = CallContext(
            "judge", self.group_id, step=step, on_finish=self._judge_cost, repairs_output=True
        )
        try:
            text = await judge_reply(self.engine.complete, messages, judge, options, context)
            try:
                return _parse(text, names, judge, need_score), None
            except VerdictError as error:
                fixed = repair_messages(messages, text, error)
                context = dataclasses.replace(context, step=f"{step} (repair)")
                text = await judge_reply(self.engine.complete, fixed, judge, options, context)
                return _parse(text, names, judge, need_score), None
        except MMOError as exc:
            return None, str(exc)

    def _judge_cost(self, response: CompletionResponse) -> None:
        if response.cost:
            self.judge_cost += response.cost
            self.stats.model(f"judge {response.model}").cost += response.cost

    def judge_jobs(self) -> list[Job]:
        jobs: list[Job] = []
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
    ) -> Job:  # fmt: skip
        text_a, text_b = answers[a]["answer"], answers[b]["answer"]
        criteria = self._criteria(item)
        base = _digest(judge_sig, criteria, text_a, text_b, size=10)
        stats = self.stats.model(f"judge {judge}")
        names = ("A", "B")

        async def run(last_try: bool) -> Outcome:
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

            self._judged({
                "item": item.index, "key": item.key, "judge": judge, "model_a": a, "model_b": b,
                "first": named(first), "swapped": named(swapped),
                "winner": named(combined) if first and swapped else None,
                "reason": combined.reason if combined else None,
                "error": "; ".join(errors) or None,
            })  # fmt: skip
            self._finished(stats, ok=not errors)
            return Outcome()

        return Job(judge, run)

    def _grade_job(
        self, item: _Item, judge: str, judge_sig: str, model: str, row: dict[str, Any]
    ) -> Job:
        criteria = self._criteria(item)
        base = _digest(judge_sig, criteria, row["answer"], size=10)
        stats = self.stats.model(f"judge {judge}")

        async def run(last_try: bool) -> Outcome:
            if stats.started is None:
                stats.started = time.perf_counter()
            messages = judge_messages(item.prompt, [row["answer"]], criteria=criteria)
            step = f"grade|{item.key}|{model}|{base}"
            verdict, error = await self._verdict(judge, messages, ("A",), step, True)
            score = verdict.scores.get("A") if verdict and verdict.scores else None
            self._judged({
                "item": item.index, "key": item.key, "judge": judge, "model": model,
                "score": score, "reason": verdict.reason if verdict else None, "error": error,
            })  # fmt: skip
            self._finished(stats, ok=error is None)
            return Outcome()

        return Job(judge, run)

    # -- all of it

    async def run(self, progress: BatchProgress | None) -> None:
        """Answer, then judge (the log, resume and budget came first: see ``_prepare``)."""
        todo = [c for c in self.calls if c.row is None]
        scheduler = self._scheduler()
        options = self._options()
        with self.shown(progress):
            await scheduler.run(self.answer_job(c, options) for c in todo)
            if self.s.judges:
                self.stats.phase = "judging"
                self._update(force=True)
                await scheduler.run(self.judge_jobs())

    @contextlib.contextmanager
    def shown(self, progress: BatchProgress | None) -> Iterator[None]:
        """Report the run to ``progress`` from start to finish; its phase ends done or stopped
        (the same for this process's loop and for Ray)."""
        self.progress = progress
        if progress is not None:
            progress.start(self.stats)
        try:
            yield
            self.stats.phase = "done"
        except BaseException:
            self.stats.phase = "stopped"
            raise
        finally:
            if progress is not None:
                progress.finish(self.stats)

    def _scheduler(self) -> Scheduler:
        return Scheduler(self.s.concurrency, self.s.limits)

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
        return default_progress()
    return progress


def _ray_options(
    engine: str | None,
    address: str | None,
    workers: int | None,
    cpus_per_worker: int | None,
    cache: bool,
) -> RayOptions | None:
    """The Ray settings for ``engine="ray"``; None for this process's loop (checked first)."""
    from .ray_engine import RayOptions

    return RayOptions.of(
        engine, address=address, workers=workers, cpus_per_worker=cpus_per_worker, cache=cache
    )


def _running(
    batch: _Batch, view: BatchProgress | None, on_ray: RayOptions | None
) -> Coroutine[Any, Any, None]:
    if on_ray is None:
        return batch.run(view)
    from .ray_engine import run_on_ray

    return run_on_ray(batch, view, on_ray)


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
    engine: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int | None = None,
) -> BatchResult:
    """Ask every model about every item of ``data``; see the module docstring.

    ``prompt`` and ``system`` are templates over the item's columns. ``key``
    names a column that identifies items (default: a hash of the rendered
    prompt). ``cache`` is off by default: a batch compares models. ``progress``:
    a BatchProgress, False for none, None for the registered default.

    ``engine="ray"`` runs the calls on Ray workers (see ``ray_engine``):
    ``ray_address`` names a cluster (default: the Ray this process already
    initialised, else a local one), ``workers`` how many (default: one per
    ``cpus_per_worker`` CPUs of the cluster, default 1); ``concurrency`` is then
    shared out among the workers.

    Raises BudgetExceededError (nothing sent), TemplateError or ConfigError
    before any request; never for a failed call, which is a row.
    """
    on_ray = _ray_options(engine, ray_address, workers, cpus_per_worker, cache)
    settings = _settings(
        models, prompt, system, judges, judge_mode, criteria, reference_column, temperature,
        max_tokens, fallbacks, cache, allow_unpriced, concurrency, limits, budget, rerun, key,
    )  # fmt: skip
    batch, _ = _prepare(orc, data, settings)
    view = _choose_progress(progress)
    try:
        orc._loop.run(_running(batch, view, on_ray))
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
    engine: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int | None = None,
) -> BatchResult:
    """Async twin of ``run_batch``; cancelling it stops the batch (answers so far are kept)."""
    on_ray = _ray_options(engine, ray_address, workers, cpus_per_worker, cache)
    settings = _settings(
        models, prompt, system, judges, judge_mode, criteria, reference_column, temperature,
        max_tokens, fallbacks, cache, allow_unpriced, concurrency, limits, budget, rerun, key,
    )  # fmt: skip
    batch, _ = _prepare(orc, data, settings)
    view = _choose_progress(progress)
    try:
        await orc._loop.arun(_running(batch, view, on_ray))
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
