"""A Ray worker: an actor with a call engine of its own, running shards of a batch.

Each worker builds its engine from the driver's configuration: the
catalogue's ModelConfigs (which name keys by their environment variable
only), retry and breaker settings. It reads keys from its own environment; no
key is ever in a task's arguments or results. A shard runs through the same
scheduler and judges as a local batch (``ShardBatch`` is a ``run.Batch``);
its records, rows and judgements stream back to the driver as they finish,
redacted here, where the keys are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.errors import MMOError
from ...core.loop import background_loop
from ...core.models import Catalogue, ModelConfig
from ...core.redaction import read_key, redactor
from ...orchestration.budget import Budget
from ...orchestration.engine import CallEngine
from ...orchestration.reliability import CircuitBreaker, RetryPolicy
from ...storage.runlog import RunRecord
from ..limits import Limits, RateLimit
from ..plan import Call, Item
from ..progress import BatchStats, ModelStats
from ..rows import Row
from ..run import Batch
from ..scheduler import Scheduler
from ..spec import BatchSpec
from .limiter import SharedBudget, SharedLimits

if TYPE_CHECKING:
    from ...routing import Router

__all__ = ["SHARDS_PER_WORKER", "BatchWorker", "Report", "Shard", "ShippingLog", "WorkerSetup"]

SHARDS_PER_WORKER = 2  # one draining its last calls while the next starts
_REPORT_EVERY_S = 0.02  # a worker gathers what finished this long into one report


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to build its call engine: configuration, never a key."""

    models: tuple[ModelConfig, ...]
    retry_policy: RetryPolicy
    breaker: tuple[int, float, float, float]  # threshold, cooldown_s, max_cooldown_s, backoff
    max_concurrency_per_provider: int
    provider_concurrency: dict[str, int]
    allow_unpriced: bool
    concurrency: int  # calls in flight on this worker
    limits: dict[str, RateLimit]
    budget: float | None  # what is left of the driver's budget; None: no budget

    @classmethod
    def of(cls, engine: CallEngine, concurrency: int, limits: dict[str, RateLimit]) -> WorkerSetup:
        breaker = engine.breaker
        return cls(
            models=tuple(engine.catalogue),
            retry_policy=engine.retry_policy,
            breaker=(breaker.threshold, breaker.cooldown_s, breaker.max_cooldown_s,
                     breaker.backoff),
            max_concurrency_per_provider=engine.max_concurrency_per_provider,
            provider_concurrency=dict(engine.provider_concurrency),
            allow_unpriced=engine.allow_unpriced,
            concurrency=concurrency,
            limits=limits,
            budget=engine.budget.left,
        )  # fmt: skip

    def engine(self, limiter: Any, holder: str) -> CallEngine:
        """A call engine like the driver's, its records shipped and its budget shared."""
        threshold, cooldown_s, max_cooldown_s, backoff = self.breaker
        default = self.models[0].name if self.models else ""
        budget = Budget(None) if self.budget is None else SharedBudget(self.budget, limiter, holder)
        return CallEngine(
            Catalogue.of(list(self.models)), runs=ShippingLog(), cache=None, budget=budget,
            allow_unpriced=self.allow_unpriced, retry_policy=self.retry_policy,
            breaker=CircuitBreaker(threshold, cooldown_s, max_cooldown_s=max_cooldown_s,
                                   backoff=backoff),
            max_concurrency_per_provider=self.max_concurrency_per_provider,
            provider_concurrency=self.provider_concurrency,
            router=functools.partial(_router, default=default),
            default_model=lambda: default,
            loop=background_loop,
        )  # fmt: skip


def _router(route: str | Router | None, *, default: str) -> Router:
    """A batch names its models, so a worker routes only if a model is "auto"."""
    from ...routing import Router, make_router

    if isinstance(route, Router):
        return route
    return make_router(route or "complexity", default=default)


@dataclass
class Shard:
    """Some items of the batch: every model's answer to each, and their judging."""

    settings: BatchSpec
    items: list[Item]
    rows: dict[tuple[int, str], Row]  # (item, model) already answered
    records: list[RunRecord]  # judge records a judge call may be resumed from


@dataclass
class Report:
    """What a worker sends the driver: everything that finished since its last report."""

    records: list[RunRecord] = field(default_factory=list)
    rows: list[tuple[int, str, Row]] = field(default_factory=list)
    judged: list[dict[str, Any]] = field(default_factory=list)
    # The shard's counts so far, by model: total, done, failed, cost, throttled.
    stats: dict[str, tuple[int, int, int, float, int]] = field(default_factory=dict)
    judge_cost: float = 0.0

    def scrub(self) -> None:
        """Redact free text here, on the worker, which knows its keys (the driver may not)."""
        clean = redactor()
        for record in self.records:
            for name in _RECORD_FIELDS:
                value = getattr(record, name)
                if isinstance(value, str):
                    setattr(record, name, clean(value))
        texts: list[dict[str, Any]] = [*(r for _, _, r in self.rows), *self.judged]  # type: ignore[list-item]
        for row in texts:
            for key, value in row.items():
                if isinstance(value, str):
                    row[key] = clean(value)


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


class Outbox:
    """A shard's results not yet reported: filled on the worker's event loop, read by
    the thread that streams reports to the driver."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._report = Report()
        self._news = False
        self._closed = False
        self.error: BaseException | None = None

    def add_record(self, record: RunRecord) -> None:
        with self._changed:
            self._report.records.append(record)
            self._news = True
            self._changed.notify()

    def add_row(self, item: int, model: str, row: Row) -> None:
        with self._changed:
            self._report.rows.append((item, model, Row(**row)))
            self._news = True
            self._changed.notify()

    def add_judged(self, entry: dict[str, Any]) -> None:
        with self._changed:
            self._report.judged.append(dict(entry))
            self._news = True
            self._changed.notify()

    def set_stats(self, stats: BatchStats, judge_cost: float) -> None:
        counts = {
            m.name: (m.total, m.done, m.failed, m.cost, m.throttled)
            for m in list(stats.models.values())
        }
        with self._changed:
            self._report.stats = counts
            self._report.judge_cost = judge_cost
            self._news = True
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def take(self) -> Report | None:
        """The next report (waiting for one); None once the shard has ended and all is sent."""
        with self._changed:
            self._changed.wait_for(lambda: self._news or self._closed)
            closed = self._closed
        if not closed:
            time.sleep(_REPORT_EVERY_S)  # let what finishes meanwhile join this report
        with self._changed:
            if not self._news:
                return None
            report, self._report, self._news = self._report, Report(), False
            self._report.stats, self._report.judge_cost = report.stats, report.judge_cost
        return report


_shard_outbox: contextvars.ContextVar[Outbox | None] = contextvars.ContextVar(
    "mmo_shard_outbox", default=None
)


class ShippingLog:
    """A worker's record sink: each record goes to its shard's outbox, for the driver's log
    (which resumes; this sink stores nothing and reads back nothing)."""

    def add(self, record: RunRecord) -> concurrent.futures.Future[None]:
        outbox = _shard_outbox.get()
        if outbox is not None:
            outbox.add_record(record)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def flush(self) -> None:
        """Nothing to write: each record went to its outbox as it was added."""

    def records(self, *, group_id: str | None = None) -> list[RunRecord]:
        return []


class ShardBatch(Batch):
    """One shard of a batch, run on a worker; each result goes to the outbox as it ends."""

    def __init__(
        self,
        engine: CallEngine,
        shard: Shard,
        limits: Limits,
        slots: asyncio.Semaphore,
        outbox: Outbox,
    ) -> None:
        super().__init__(
            shard.settings, engine.complete, engine.catalogue, [], shard.items, limits=limits
        )
        self._slots = slots
        self._outbox = outbox
        for call in self.calls:
            call.row = shard.rows.get((call.item.index, call.model))
        log: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for record in shard.records:
            if record.step is not None:
                log[(record.step, record.requested_model)].append(record)
        self.log = log

    def _scheduler(self) -> Scheduler:
        return Scheduler(self.s.concurrency, self.limits, slots=self._slots)

    def _answered(self, call: Call) -> None:
        assert call.row is not None
        self._outbox.add_row(call.item.index, call.model, call.row)

    def _judged(self, entry: dict[str, Any]) -> None:
        super()._judged(entry)
        self._outbox.add_judged(entry)

    def _finished(self, stats: ModelStats, *, ok: bool) -> None:
        super()._finished(stats, ok=ok)
        self._outbox.set_stats(self.stats, self.judge_cost)


async def shipping_to(outbox: Outbox, work: Coroutine[Any, Any, None]) -> None:
    """Run a shard with its records going to ``outbox``; close it once all is recorded."""
    token = _shard_outbox.set(outbox)  # the shard's call tasks inherit it
    try:
        await work
    except asyncio.CancelledError:
        pass  # stopped: the cancelled calls have recorded themselves
    except Exception as exc:
        outbox.error = exc
    finally:
        _shard_outbox.reset(token)
        outbox.close()


class BatchWorker:
    """A Ray actor that runs shards of batches with a call engine of its own."""

    def __init__(self, setup: WorkerSetup, limiter: Any, holder: str) -> None:
        self._engine = setup.engine(limiter, holder)
        self._limits = SharedLimits(limiter, holder, setup.limits)
        self._slots = asyncio.Semaphore(setup.concurrency)  # bound on first use, on the loop
        self._running: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()

    def prepare(self, key_names: list[str], models: list[str]) -> list[str]:
        """Which of these key variables are not set here (names only, never values).

        Also builds the models' clients now, so that importing their SDKs does not
        hold up (and bunch together) the first calls.
        """
        missing = [name for name in key_names if read_key(name) is None]
        for name in models:
            with contextlib.suppress(MMOError):  # a missing key: each call will say so
                self._engine._client(self._engine.catalogue.resolve(name))
        return missing

    def run_shard(self, shard: Shard) -> Iterator[Report]:
        """Reports as the shard's calls finish (a streaming generator), until it ends."""
        outbox = Outbox()
        batch = ShardBatch(self._engine, shard, self._limits, self._slots, outbox)
        future = self._engine.loop.submit(shipping_to(outbox, batch.run(None)))
        with self._lock:
            self._running.add(future)
        try:
            while (report := outbox.take()) is not None:
                report.scrub()
                yield report
        finally:
            with self._lock:
                self._running.discard(future)
            future.cancel()
        if outbox.error is not None:
            raise outbox.error

    def stop(self) -> None:
        """Cancel every shard running here (their cancelled calls are still reported)."""
        with self._lock:
            running = list(self._running)
        for future in running:
            future.cancel()
