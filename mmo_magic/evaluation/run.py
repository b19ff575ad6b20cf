"""A batch's run: every (item, model) call, then the judging, on one event loop.

* **Each call is a call.** Every (item, model) goes through the call engine's
  ``complete``, so it retries and fails over like ``orc.complete``; its
  outcome, ok or not, is a row, and one failure never stops the batch.
* **Limits.** ``concurrency`` calls in flight in all; per model
  ``limits={"model": {"requests_per_minute": ..., "tokens_per_minute": ...,
  "max_concurrency": ...}}`` (see ``limits``). A 429 pauses that model only,
  honouring ``Retry-After``, and a call that was still rate limited after its
  retries is queued again (see ``scheduler``). A call refused by an open
  circuit (nothing sent) waits for the breaker's probe and is asked again: it
  is never an error row of its own. A judge's limits hold for each
  of its calls: both orders of a pair and a repair turn each pass its gate.
* **Judging.** ``judges=[...]`` with ``judge_mode="pairwise"`` (every pair
  of models on each item, judged in both orders; a verdict that flips with
  the order is a tie) or ``"grade"`` (a 1–10 rubric, MT-Bench style, with an
  optional ``reference_column``), through ``orchestration.judges``. Judge
  calls are resumed too.
* **Progress.** ``progress`` gets the running counts (see ``BatchProgress``).

A Ray worker runs its shard with a subclass of ``Batch`` (``evaluation.ray``);
this module never imports Ray code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.completion import CompletionResponse, Prompt
from ..core.errors import MMOError
from ..core.models import Catalogue
from ..orchestration.calls import CallContext, CallOptions, Completer
from ..orchestration.judges import (
    TIE,
    Verdict,
    combine_swap,
    labels,
    orders,
    verdict_in_order,
    verdict_schema,
)
from .limits import Gate, Limits
from .plan import Call, Item, Plan, request_for
from .progress import BatchProgress, ModelStats
from .result import BatchResult
from .rows import ItemRow, Row, not_run_row, row_from_error, row_from_response
from .scheduler import Job, Outcome, Scheduler, circuit_wait, rate_limited
from .scoring import describe, describe_spec, prices_of, score_rows
from .spec import BatchSpec

__all__ = ["Batch"]

TICK_S = 0.5  # a progress view is redrawn at least this often while the batch runs


class Batch(Plan):
    """One run of a batch on the background loop (state shared with a caller that stops it)."""

    def __init__(
        self,
        spec: BatchSpec,
        complete: Completer,
        catalogue: Catalogue,
        raw: list[dict[str, Any]],
        items: list[Item] | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(spec, catalogue, raw, items, limits)
        self.complete = complete
        self._last_update = 0.0

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
        options.update(self.s.sampling())  # type: ignore[typeddict-item]
        return options

    def _tokens(self, call: Call, gate: Gate) -> int | None:
        if not gate.counts_tokens:
            return None
        from ..core.pricing import input_tokens

        config = self.configs[call.model]
        max_tokens = self.s.max_tokens or config.max_tokens
        request = request_for(call.item.prompt, call.item.system, max_tokens, self.s.temperature)
        return input_tokens(request, config) + max_tokens

    def answer_job(self, call: Call, options: CallOptions) -> Job:
        stats = self.stats.model(call.model)
        gate = self.limits.gate(call.model)

        async def run(last_try: bool) -> Outcome:
            seen: list[CompletionResponse] = []

            def on_finish(response: CompletionResponse) -> None:
                seen.append(response)
                if response.cost:
                    stats.cost += response.cost
                elif response.cost is None and not response.error:
                    stats.unpriced += 1
                if response.error and "(HTTP 429)" in response.error:
                    stats.throttled += 1

            if stats.started is None:
                stats.started = time.perf_counter()
            context = CallContext("batch", self.group_id, step=call.step, on_finish=on_finish)
            prompt = call.item.prompt
            system_options = dict(options)
            if call.item.system is not None:
                system_options["system"] = call.item.system
            if self.s.seed is not None:  # each repeat its own seed, the same on a re-run
                system_options["seed"] = self.s.seed + call.epoch
            try:
                response = await self.complete(prompt, call.model, system_options, context)  # type: ignore[arg-type]
            except MMOError as exc:
                refused_for = circuit_wait(exc)
                if refused_for is not None:  # nothing sent: wait for the breaker, ask again
                    return Outcome(retry_after_s=refused_for, refused=True)
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

    def _answered(self, call: Call) -> None:
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

    async def _verdict(
        self, judge: str, question: str, answers: Sequence[str], order: Sequence[int],
        step: str, criteria: str | None, need_score: bool,
    ) -> tuple[Verdict | None, str | None]:  # fmt: skip
        """The verdict (in the answers' labels) or why there is none; from the log when it
        has a usable one for ``step`` (or its repair)."""
        options: CallOptions = {"temperature": 0, "cache": self.s.cache}
        if not need_score:  # a pairwise verdict under a schema where the judge has one
            options["response_format"] = verdict_schema(labels(len(answers)))
        context = CallContext(
            "judge", self.group_id, step=step, on_finish=self._judge_cost, repairs_output=True
        )
        resumed = None if self.s.rerun == "all" else functools.partial(self.logged_reply, judge)
        try:
            verdict, _, _ = await verdict_in_order(
                self._paced(judge), question, answers, order, judge, options, context,
                criteria=criteria, need_scores=need_score,
                replay=resumed,
            )  # fmt: skip
        except MMOError as exc:
            return None, str(exc)
        return verdict, None

    def _paced(self, judge: str) -> Completer:
        """``complete`` for a judge's calls, each passing the judge's gate first: both
        orders and a repair are requests of their own, each counting its tokens (the
        scheduler gave the judging only its slot; a resumed verdict sends nothing)."""
        gate = self.limits.gate(judge)
        config = self.judge_configs[judge]

        async def complete(
            prompt: Prompt, model: str | None, options: CallOptions, context: CallContext, /
        ) -> CompletionResponse:
            tokens = None
            if gate.counts_tokens:
                from ..core.pricing import input_tokens

                max_tokens = options.get("max_tokens") or config.max_tokens
                request = request_for(prompt, None, max_tokens, options.get("temperature"))
                tokens = input_tokens(request, config) + max_tokens
            await gate.pace(tokens)
            return await self.complete(prompt, model, options, context)

        return complete

    def _judge_cost(self, response: CompletionResponse) -> None:
        stats = self.stats.model(f"judge {response.model}")
        if response.cost:
            self.judge_cost += response.cost
            stats.cost += response.cost
        elif response.cost is None and not response.error:
            stats.unpriced += 1

    def judge_jobs(self) -> list[Job]:
        jobs: list[Job] = []
        rows_by_item: dict[tuple[int, int], dict[str, Row]] = defaultdict(dict)
        for call in self.calls:
            if call.row is not None and call.row["status"] == "ok":
                rows_by_item[(call.item.index, call.epoch)][call.model] = call.row
        for item in self.items:
            for epoch in range(self.s.epochs):  # each repeat's answers judged among themselves
                answers = rows_by_item.get((item.index, epoch), {})
                ok_models = [m for m in self.s.models if m in answers]
                for judge in self.s.judges:
                    if self.s.judge_mode == "pairwise":
                        for a, b in itertools.combinations(ok_models, 2):
                            jobs.append(self._pair_job(item, judge, a, b, answers, epoch))
                    else:
                        for m in ok_models:
                            jobs.append(self._grade_job(item, judge, m, answers[m], epoch))
        for job in jobs:
            self.stats.model(f"judge {job.model}").total += 1
        return jobs

    def _pair_job(
        self, item: Item, judge: str, a: str, b: str, answers: dict[str, Row], epoch: int = 0
    ) -> Job:
        text_a, text_b = answers[a]["answer"] or "", answers[b]["answer"] or ""  # ok rows: text
        criteria = self.criteria(item)
        steps = self.pair_steps(item, judge, a, b, text_a, text_b)
        stats = self.stats.model(f"judge {judge}")

        async def run(last_try: bool) -> Outcome:
            if stats.started is None:
                stats.started = time.perf_counter()
            verdicts: dict[bool, Verdict | None] = {}
            errors: list[str] = []
            for (order, swapped_pass), step in zip(orders(2), steps, strict=True):
                verdicts[swapped_pass], error = await self._verdict(
                    judge, item.prompt, (text_a, text_b), order, step, criteria, False
                )
                if error:
                    errors.append(error)
            first, swapped = verdicts[False], verdicts[True]
            combined = combine_swap(first, swapped) if first and swapped else (first or swapped)

            def named(v: Verdict | None) -> str | None:
                if v is None:
                    return None
                return TIE if v.winner == TIE else (a if v.winner == "A" else b)

            self._judged({
                "item": item.index, "key": item.key, "epoch": epoch, "judge": judge,
                "model_a": a, "model_b": b,
                "first": named(first), "swapped": named(swapped),
                "winner": named(combined) if first and swapped else None,
                "reason": combined.reason if combined else None,
                "error": "; ".join(errors) or None,
            })  # fmt: skip
            self._finished(stats, ok=not errors)
            return Outcome()

        return Job(judge, run, paces_itself=True)

    def _grade_job(self, item: Item, judge: str, model: str, row: Row, epoch: int = 0) -> Job:
        criteria = self.criteria(item)
        step = self.grade_step(item, judge, model, row["answer"] or "")
        stats = self.stats.model(f"judge {judge}")

        async def run(last_try: bool) -> Outcome:
            if stats.started is None:
                stats.started = time.perf_counter()
            verdict, error = await self._verdict(
                judge, item.prompt, [row["answer"] or ""], [0], step, criteria, True
            )
            score = verdict.scores.get("A") if verdict and verdict.scores else None
            self._judged({
                "item": item.index, "key": item.key, "epoch": epoch, "judge": judge,
                "model": model,
                "score": score, "reason": verdict.reason if verdict else None, "error": error,
            })  # fmt: skip
            self._finished(stats, ok=error is None)
            return Outcome()

        return Job(judge, run, paces_itself=True)

    # -- all of it

    async def run(self, progress: BatchProgress | None) -> None:
        """Answer, then judge (the log, resume and budget came first: see ``_prepare``)."""
        todo = [c for c in self.calls if c.row is None]
        scheduler = self._scheduler()
        options = self._options()
        with self.shown(progress):
            await scheduler.run(self.answer_job(c, options) for c in todo)
            if self.s.judges:
                jobs = self.judge_jobs()  # first: the judges' rows show their totals at once
                self.stats.phase = "judging"
                self._update(force=True)
                await scheduler.run(jobs)

    @contextlib.contextmanager
    def shown(self, progress: BatchProgress | None) -> Iterator[None]:
        """Report the run to ``progress`` from start to finish; its phase ends done or stopped
        (the same for this process's loop and for Ray)."""
        self.progress = progress
        ticking = None
        if progress is not None:
            progress.start(self.stats)
            ticking = asyncio.get_running_loop().create_task(self._tick())
        try:
            yield
            self.stats.phase = "done"
        except BaseException:
            self.stats.phase = "stopped"
            raise
        finally:
            if ticking is not None:
                ticking.cancel()
            if progress is not None:
                progress.finish(self.stats)

    async def _tick(self) -> None:
        """Redraw now and then, so the clock moves while a slow call (a judge's) runs."""
        while True:
            await asyncio.sleep(TICK_S)
            self._update(force=True)

    def _scheduler(self) -> Scheduler:
        return Scheduler(self.s.concurrency, self.limits)

    def result(self) -> BatchResult:
        rows: list[ItemRow] = []
        for call in self.calls:
            outcome = call.row or not_run_row("not run: the batch was stopped")
            rows.append(
                ItemRow(item=call.item.index, key=call.item.key, model=call.model,
                        epoch=call.epoch, **outcome)
            )  # fmt: skip
        scorers = list(self.s.scorers)
        return BatchResult(
            items=self.raw, models=list(self.s.models), rows=rows, group_id=self.group_id,
            judges=list(self.s.judges), judge_mode=self.s.judge_mode,
            judgements=self.judgements, grades=self.grades,
            worst_case_cost=self.stats.worst_case_cost, judge_cost=self.judge_cost,
            stats=self.stats, prompts=[item.prompt for item in self.items],
            scores=score_rows(scorers, self.raw, rows), scorers=describe(scorers),
            epochs=self.s.epochs, spec=describe_spec(self.s),
            prices={m: prices_of(c) for m, c in {**self.configs, **self.judge_configs}.items()},
        )  # fmt: skip
