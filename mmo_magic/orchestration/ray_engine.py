"""Batches on Ray: the items in shards across Ray workers, limits and budget kept global.

``run_batch(..., engine="ray")`` plans the batch on the driver exactly as a
local batch does (items, templates, the run log, resume, the worst-case
budget check), then sends the work out:

* **Workers** are Ray actors, ``cpus_per_worker`` CPUs each (default 1; Ray
  makes it the worker's ``OMP_NUM_THREADS`` unless that is set). Each builds
  its own Orchestrator from the driver's configuration: the catalogue's
  ModelConfigs (which name keys by their environment variable only), retry
  and breaker settings. A worker reads keys from its own environment; no key is ever in a
  task's arguments or results, and before anything is sent the driver checks
  that every key variable set here is set on the workers too.
* **Shards.** Items go out in small shards (all models of an item, and its
  judging, in one shard); a worker runs up to ``_SHARDS_PER_WORKER`` at once
  under its share of ``concurrency``, through the same call engine, scheduler
  and judges as a local batch.
* **Records stream back** as calls finish (a Ray streaming generator): the
  driver adds each run record to its own run log (with the driver's session
  and cell, deduplicated by run_id), fills the row and updates the progress
  view. So a batch started on Ray resumes locally and the other way round.
  Free text is redacted on the worker, where the keys are.
* **A worker that dies** loses only the calls it had in flight (and any it
  finished in the last ~20 ms, not yet reported): the driver sends what it
  has not received of that shard to another worker, and starts a
  replacement. Workers are started for each batch and stopped after it.
* **Limits and budget are global.** One ``ClusterLimiter`` actor holds the
  gate of every model that has limits (requests and tokens per minute, calls
  in flight, and its 429 pauses) and what is left of the orchestrator's
  budget. Workers pass its gate before each call and reserve the call's worst
  case before sending, settling the actual cost after, so ten workers share
  one rate limit and spend one budget. (A model with no limits is gated on
  each worker: a 429 pauses it there.)

Ray is imported inside functions only: ``import mmo_magic`` never loads it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import importlib.util
import itertools
import logging
import math
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import BudgetExceededError, ConfigError, MMOError
from ..core.models import ModelConfig
from ..core.redaction import read_key, redactor
from ..storage.runlog import RunLog, RunRecord
from .batch import _Batch, _Call, _Item, _Settings
from .batch_progress import BatchProgress, BatchStats, ModelStats
from .batch_scheduler import Scheduler
from .budget import Budget, Reservation
from .engine import SESSION_ID, current_cell
from .limits import Gate, Limits, ModelGate, RateLimit
from .reliability import RetryPolicy

if TYPE_CHECKING:
    from .orchestrator import Orchestrator

__all__ = ["INSTALL", "BatchWorker", "ClusterLimiter", "RayOptions", "require_ray", "run_on_ray"]

INSTALL = "pip install 'mmo_magic[ray]'"
_LOCAL_OBJECT_STORE = 256 * 1024**2  # a Ray started here: small, so it starts fast
_SHARDS_PER_WORKER = 2  # one draining its last calls while the next starts
_MAX_SHARD_TRIES = 3  # a shard whose worker died this often is given up (its rows say why)
_STOP_GRACE_S = 3.0  # on stop: how long workers get to send the records of cancelled calls
_REPORT_EVERY_S = 0.02  # a worker gathers what finished this long into one report


# -- options --------------------------------------------------------------------------------------


def require_ray() -> None:
    """ConfigError with the install command when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "engine='ray' needs Ray, which is not installed.", hint=f"Install it with: {INSTALL}"
        )


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where a batch runs on Ray: ``address`` (None: the Ray already initialised in this
    process, else ``RAY_ADDRESS``, else a new local one), ``workers`` (None: one per
    ``cpus_per_worker`` CPUs of the cluster)."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: int = 1

    @classmethod
    def of(
        cls,
        engine: str | None,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: int | None = None,
        cache: bool = False,
    ) -> RayOptions | None:
        """The options for ``engine`` (None for a local batch), checked before any work."""
        if engine in (None, "local"):
            given = [
                name
                for name, value in (
                    ("ray_address", address),
                    ("workers", workers),
                    ("cpus_per_worker", cpus_per_worker),
                )
                if value is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} only apply to engine='ray'.",
                    hint="Pass engine='ray' as well, or leave them out.",
                )
            return None
        if engine != "ray":
            raise ConfigError(
                f"Unknown batch engine {engine!r}.",
                hint="Use engine=None (this process's event loop) or engine='ray'.",
            )
        for name, value in (("workers", workers), ("cpus_per_worker", cpus_per_worker)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}.")
        if cache:
            raise ConfigError(
                "The response cache is a file of this machine, which Ray workers cannot share.",
                hint="Run the batch with cache=False (the default), or without engine='ray'.",
            )
        require_ray()
        return cls(address, workers, cpus_per_worker or 1)


def _connect(options: RayOptions) -> None:
    """Use the Ray this process initialised, else connect (or start a local one)."""
    import ray

    if ray.is_initialized():
        return
    local: dict[str, Any] = {}
    if options.address is None and not os.environ.get("RAY_ADDRESS"):
        local = {"include_dashboard": False, "object_store_memory": _LOCAL_OBJECT_STORE}
    ray.init(address=options.address, logging_level=logging.WARNING, **local)


# -- the shared limiter and budget (one actor per batch) ----------------------------------------


@dataclass(frozen=True, slots=True)
class _Held(Reservation):
    """A reservation the limiter knows by ``key`` (so a dead worker's can be settled)."""

    key: int = 0


@dataclass(frozen=True, slots=True)
class _Refused:
    """A BudgetExceededError, as a value: it crosses process boundaries intact."""

    message: str
    hint: str | None
    estimate: float | None


class ClusterLimiter:
    """Every model's gate and the budget, for all the workers of one batch (a Ray actor).

    ``acquire`` waits as a local ``ModelGate`` would (requests and tokens per
    minute, calls in flight, a 429 pause); ``authorize``/``settle`` are the
    orchestrator's ``Budget``. ``holder`` names the worker, so that when one
    dies its calls in flight stop holding slots, and its reservations are
    counted as spent (they may have been billed).
    """

    def __init__(self, limits: dict[str, RateLimit], budget: float | None) -> None:
        self._limits = Limits(limits)
        self._budget = Budget(budget)
        self._slots: dict[tuple[str, str], int] = defaultdict(int)  # (holder, model) -> held
        self._reserved: dict[int, tuple[str, Reservation]] = {}
        self._keys = itertools.count(1)

    async def acquire(self, holder: str, model: str, tokens: int | None) -> None:
        gate = self._limits.gate(model)
        await gate.acquire(tokens)
        if self._limits.limit(model).max_concurrency is not None:
            self._slots[(holder, model)] += 1

    def release(self, holder: str, model: str) -> None:
        if self._slots.get((holder, model), 0) > 0:
            self._slots[(holder, model)] -= 1
            self._limits.gate(model).release()

    async def wait_pause(self, model: str) -> None:
        await self._limits.gate(model).wait_pause()

    def back_off(self, model: str, retry_after_s: float | None) -> float:
        return self._limits.gate(model).back_off(retry_after_s)

    def succeeded(self, model: str) -> None:
        self._limits.gate(model).succeeded()

    def authorize(
        self,
        holder: str,
        model: ModelConfig,
        estimate: float | None,
        call_limit: float | None,
        allow_unpriced: bool,
    ) -> _Held | _Refused | None:
        try:
            reservation = self._budget.authorize(
                model, estimate, call_limit=call_limit, allow_unpriced=allow_unpriced
            )
        except BudgetExceededError as exc:
            return _Refused(exc.message, exc.hint, exc.estimate)
        if reservation is None:
            return None
        held = _Held(reservation.amount, next(self._keys))
        self._reserved[held.key] = (holder, held)
        return held

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        if isinstance(reservation, _Held):
            self._reserved.pop(reservation.key, None)
        self._budget.settle(reservation, cost)

    def forget(self, holder: str) -> None:
        """``holder`` died: free its slots; its reservations count as spent."""
        for (who, model), held in list(self._slots.items()):
            if who == holder:
                for _ in range(held):
                    self._limits.gate(model).release()
                del self._slots[(who, model)]
        for key, (who, reservation) in list(self._reserved.items()):
            if who == holder:
                del self._reserved[key]
                self._budget.settle(reservation, reservation.amount)

    def spent(self) -> float:
        return self._budget.spent


async def _remote(method: Any, *args: Any) -> Any:
    """Await an actor call from the worker's event loop; cancelling it cancels the call."""
    ref = method.remote(*args)
    try:
        return await ref
    except asyncio.CancelledError:
        import ray

        ray.cancel(ref)
        raise


class _SharedGate:
    """A worker's side of a model's gate: the waiting is done by the ClusterLimiter."""

    def __init__(self, limiter: Any, holder: str, model: str, limit: RateLimit) -> None:
        self._limiter = limiter
        self._holder = holder
        self.model = model
        self.limit = limit
        self._paused_until = 0.0  # this worker's idea of the pause (time.monotonic)
        self._backed_off = False

    @property
    def counts_tokens(self) -> bool:
        return self.limit.tokens_per_minute is not None

    @property
    def paused(self) -> bool:
        return self._paused_until > time.monotonic()

    async def acquire(self, tokens: int | None = None) -> None:
        await _remote(self._limiter.acquire, self._holder, self.model, tokens)

    def release(self) -> None:
        if self.limit.max_concurrency is not None:
            self._limiter.release.remote(self._holder, self.model)

    async def wait_pause(self) -> None:
        await _remote(self._limiter.wait_pause, self.model)
        self._paused_until = 0.0

    def back_off(self, retry_after_s: float | None = None) -> float:
        # The limiter keeps the real pause (and the doubling delay); calls from one worker
        # reach it in order, so this worker's next acquire waits for it.
        self._limiter.back_off.remote(self.model, retry_after_s)
        self._backed_off = True
        pause = retry_after_s if retry_after_s is not None else 1.0
        self._paused_until = max(self._paused_until, time.monotonic() + pause)
        return pause

    def succeeded(self) -> None:
        if self._backed_off:  # only a gate that backed off has a delay to reset
            self._backed_off = False
            self._limiter.succeeded.remote(self.model)


class _SharedLimits(Limits):
    """A worker's limits: gates shared with every other worker through the ClusterLimiter.

    A model with no limit set keeps a gate of the worker's own (it only pauses on a
    429): asking the limiter costs a round trip per call, and there is nothing to share.
    """

    def __init__(self, limiter: Any, holder: str, limits: dict[str, RateLimit]) -> None:
        super().__init__(limits)
        self._limiter = limiter
        self._holder = holder

    def gate(self, model: str) -> Gate:
        gate = self._gates.get(model)
        if gate is None:
            limit = self.limit(model)
            if limit == RateLimit():
                gate = ModelGate(limit)
            else:
                gate = _SharedGate(self._limiter, self._holder, model, limit)
            self._gates[model] = gate
        return gate


class _SharedBudget(Budget):
    """A worker's budget: one account for the whole batch, kept by the ClusterLimiter.

    The call engine awaits ``aauthorize`` (the only way it reserves): one round trip
    to the limiter, during which the worker's other calls go on; ``settle`` does not
    wait.
    """

    def __init__(self, limit: float, limiter: Any, holder: str) -> None:
        super().__init__(limit)
        self._limiter = limiter
        self._holder = holder

    async def aauthorize(
        self,
        model: ModelConfig,
        estimate: float | None,
        *,
        call_limit: float | None = None,
        allow_unpriced: bool = False,
    ) -> Reservation | None:
        answer = await self._limiter.authorize.remote(
            self._holder, model, estimate, call_limit, allow_unpriced
        )
        if isinstance(answer, _Refused):
            raise BudgetExceededError(answer.message, estimate=answer.estimate, hint=answer.hint)
        reservation: Reservation | None = answer
        return reservation

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        if reservation is not None or cost:
            self._limiter.settle.remote(reservation, cost)
        if cost:
            self.spent += cost


# -- a worker --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerSetup:
    """What a worker needs to build its Orchestrator: configuration, never a key."""

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
    def of(cls, orc: Orchestrator, concurrency: int, limits: dict[str, RateLimit]) -> _WorkerSetup:
        breaker = orc.breaker
        return cls(
            models=tuple(orc.catalogue),
            retry_policy=orc.retry_policy,
            breaker=(breaker.threshold, breaker.cooldown_s, breaker.max_cooldown_s,
                     breaker.backoff),
            max_concurrency_per_provider=orc.max_concurrency_per_provider,
            provider_concurrency=dict(orc._engine.provider_concurrency),
            allow_unpriced=orc.allow_unpriced,
            concurrency=concurrency,
            limits=limits,
            budget=orc.budget.left,
        )  # fmt: skip

    def orchestrator(self, limiter: Any, holder: str) -> Orchestrator:
        from .orchestrator import Orchestrator
        from .reliability import CircuitBreaker

        threshold, cooldown_s, max_cooldown_s, backoff = self.breaker
        orc = Orchestrator(
            list(self.models), runlog=_ShippingLog(), cache=False,
            allow_unpriced=self.allow_unpriced, retry_policy=self.retry_policy,
            breaker=CircuitBreaker(threshold, cooldown_s, max_cooldown_s=max_cooldown_s,
                                   backoff=backoff),
            max_concurrency_per_provider=self.max_concurrency_per_provider,
            provider_concurrency=self.provider_concurrency,
        )  # fmt: skip
        if self.budget is not None:
            orc._engine.budget = _SharedBudget(self.budget, limiter, holder)
        return orc


@dataclass
class _Shard:
    """Some items of the batch: every model's answer to each, and their judging."""

    settings: _Settings
    items: list[_Item]
    rows: dict[tuple[int, str], dict[str, Any]]  # (item, model) already answered
    records: list[RunRecord]  # judge records a judge call may be resumed from


@dataclass
class _Report:
    """What a worker sends the driver: everything that finished since its last report."""

    records: list[RunRecord] = field(default_factory=list)
    rows: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
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
        for row in (*(r for _, _, r in self.rows), *self.judged):
            for key, value in row.items():
                if isinstance(value, str):
                    row[key] = clean(value)


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


class _Outbox:
    """A shard's results not yet reported: filled on the worker's event loop, read by
    the thread that streams reports to the driver."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._report = _Report()
        self._news = False
        self._closed = False
        self.error: BaseException | None = None

    def add_record(self, record: RunRecord) -> None:
        with self._changed:
            self._report.records.append(record)
            self._news = True
            self._changed.notify()

    def add_row(self, item: int, model: str, row: dict[str, Any]) -> None:
        with self._changed:
            self._report.rows.append((item, model, dict(row)))
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

    def take(self) -> _Report | None:
        """The next report (waiting for one); None once the shard has ended and all is sent."""
        with self._changed:
            self._changed.wait_for(lambda: self._news or self._closed)
            closed = self._closed
        if not closed:
            time.sleep(_REPORT_EVERY_S)  # let what finishes meanwhile join this report
        with self._changed:
            if not self._news:
                return None
            report, self._report, self._news = self._report, _Report(), False
            self._report.stats, self._report.judge_cost = report.stats, report.judge_cost
        return report


_shard_outbox: contextvars.ContextVar[_Outbox | None] = contextvars.ContextVar(
    "mmo_shard_outbox", default=None
)


class _ShippingLog(RunLog):
    """A worker's run log: each record goes to its shard's outbox, for the driver's log."""

    def __init__(self) -> None:
        super().__init__(":memory:")

    def add(self, record: RunRecord) -> concurrent.futures.Future[None]:
        outbox = _shard_outbox.get()
        if outbox is not None:
            outbox.add_record(record)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done


class _ShardBatch(_Batch):
    """One shard of a batch, run on a worker; each result goes to the outbox as it ends."""

    def __init__(
        self,
        orc: Orchestrator,
        shard: _Shard,
        limits: Limits,
        slots: asyncio.Semaphore,
        outbox: _Outbox,
    ) -> None:
        super().__init__(orc, [], dataclasses.replace(shard.settings, limits=limits), shard.items)
        self._slots = slots
        self._outbox = outbox
        for call in self.calls:
            call.row = shard.rows.get((call.item.index, call.model))
        log: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for record in shard.records:
            if record.step is not None:
                log[(record.step, record.requested_model)].append(record)
        self._log = log

    def _scheduler(self) -> Scheduler:
        return Scheduler(self.s.concurrency, self.s.limits, slots=self._slots)

    def _answered(self, call: _Call) -> None:
        assert call.row is not None
        self._outbox.add_row(call.item.index, call.model, call.row)

    def _judged(self, entry: dict[str, Any]) -> None:
        super()._judged(entry)
        self._outbox.add_judged(entry)

    def _finished(self, stats: ModelStats, *, ok: bool) -> None:
        super()._finished(stats, ok=ok)
        self._outbox.set_stats(self.stats, self.judge_cost)


async def _shipping_to(outbox: _Outbox, work: Coroutine[Any, Any, None]) -> None:
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
    """A Ray actor that runs shards of batches with an Orchestrator of its own."""

    def __init__(self, setup: _WorkerSetup, limiter: Any, holder: str) -> None:
        self._orc = setup.orchestrator(limiter, holder)
        self._limits = _SharedLimits(limiter, holder, setup.limits)
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
                self._orc._engine._client(self._orc.catalogue.resolve(name))
        return missing

    def run_shard(self, shard: _Shard) -> Iterator[_Report]:
        """Reports as the shard's calls finish (a streaming generator), until it ends."""
        outbox = _Outbox()
        batch = _ShardBatch(self._orc, shard, self._limits, self._slots, outbox)
        future = self._orc._loop.submit(_shipping_to(outbox, batch.run(None)))
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


# -- the driver ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    handle: Any
    holder: str
    ready: asyncio.Task[list[str]]
    busy: int = 0
    alive: bool = True


def _items_per_shard(items: int, models: int, workers: int, per_worker: int) -> int:
    """Enough calls per shard to keep a worker's slots busy, and shards for every worker."""
    wanted = math.ceil(max(4 * per_worker, 16) / max(models, 1))
    spread = math.ceil(items / (_SHARDS_PER_WORKER * workers))
    return max(1, min(wanted, spread))


def _item_key_of(step: str, keys: set[str] | dict[str, Any]) -> str | None:
    """The item key in a judge call's step (``judge|KEY|...`` or ``grade|KEY|...``)."""
    kind, _, rest = step.partition("|")
    if kind not in ("judge", "grade"):
        return None
    parts = rest.split("|")
    for n in range(1, len(parts) + 1):
        key = "|".join(parts[:n])
        if key in keys:
            return key
    return None


def _died(exc: BaseException) -> bool:
    """Whether ``exc`` says the worker process is gone (not an error of the work)."""
    import ray.exceptions

    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError)


def _lost_row(reason: str) -> dict[str, Any]:
    return {
        "answer": None, "answered_by": None, "status": "error", "error": reason,
        "input_tokens": None, "output_tokens": None, "ttft_ms": None, "latency_ms": None,
        "cost": None, "attempts": 0, "cached": False, "resumed": False, "run_id": None,
    }  # fmt: skip


class _RayRun:
    """The driver's side of one batch on Ray: shards out, reports in, the same BatchStats."""

    def __init__(self, batch: _Batch, options: RayOptions) -> None:
        self.batch = batch
        self.options = options
        self.orc = batch.orc
        self.calls = {(c.item.index, c.model): c for c in batch.calls}
        self.cell = current_cell()
        self.seen: set[str] = set()  # run_ids already in the log
        self.judged: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.snapshots: dict[tuple[int, int], tuple[dict[str, Any], float]] = {}
        self.base = {
            name: (m.done, m.failed, m.cost, m.throttled) for name, m in batch.stats.models.items()
        }
        self.item_keys = {item.key: item for item in batch.items}
        # Judge records a retried shard's judges may be resumed from, by item key.
        self.judge_log: dict[str, list[RunRecord]] = defaultdict(list)
        if batch.s.judges and batch.s.rerun != "all":
            for records in batch._log.values():
                for record in records:
                    if record.step and (key := _item_key_of(record.step, self.item_keys)):
                        self.judge_log[key].append(record)
        self.shards: list[list[_Item]] = []
        self.tries: dict[int, int] = defaultdict(int)
        self.workers: list[_Worker] = []
        self.limiter: Any = None
        self.model_names: list[str] = []
        self.names = itertools.count()
        self.token = uuid.uuid4().hex[:8]
        self.started = time.perf_counter()

    # -- planning

    def _plan(self, workers: int, per_worker: int) -> list[list[_Item]]:
        s = self.batch.s
        if s.judges:
            items = list(self.batch.items)
        else:
            todo = {c.item.index for c in self.batch.calls if c.row is None}
            items = [item for item in self.batch.items if item.index in todo]
        size = _items_per_shard(len(items), len(s.models), workers, per_worker)
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _shard(self, index: int, settings: _Settings) -> _Shard | None:
        """Shard ``index`` as it stands now (a retry carries what arrived from the last try)."""
        items = self.shards[index]
        judging = bool(settings.judges)
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        missing = False
        for item in items:
            for model in settings.models:
                row = self.calls[(item.index, model)].row
                if row is None:
                    missing = True
                else:
                    rows[(item.index, model)] = row if judging else {}
        if not missing and not judging:
            return None
        records = [r for item in items for r in self.judge_log.get(item.key, ())]
        return _Shard(settings, items, rows, records)

    # -- workers

    def _start_worker(self, setup: _WorkerSetup, key_names: list[str]) -> _Worker:
        import ray

        holder = f"w{next(self.names)}"
        actor = ray.remote(BatchWorker).options(
            name=f"mmo-batch-{self.token}-{holder}",
            num_cpus=self.options.cpus_per_worker,
            max_concurrency=2 + _SHARDS_PER_WORKER,
        )
        handle = actor.remote(setup, self.limiter, holder)
        ready = asyncio.ensure_future(_remote(handle.prepare, key_names, self.model_names))
        worker = _Worker(handle, holder, ready)
        self.workers.append(worker)
        return worker

    def _lose(self, worker: _Worker) -> None:
        import ray

        worker.alive = False
        self.limiter.forget.remote(worker.holder)
        ray.kill(worker.handle)

    def _model_names(self) -> list[str]:
        """Every model the batch may call: its models, judges and their fallbacks."""
        catalogue = self.orc.catalogue
        pending = [*self.batch.s.models, *self.batch.s.judges, *(self.batch.s.fallbacks or ())]
        seen: list[str] = []
        while pending:
            name = pending.pop(0)
            if name not in seen:
                seen.append(name)
                pending.extend(catalogue.resolve(name).fallbacks)
        return seen

    def _key_names(self) -> list[str]:
        """Key variables the batch's models name that are set here (the workers need them)."""
        configs = [self.orc.catalogue.resolve(name) for name in self.model_names]
        return sorted({c.api_key_env for c in configs if c.api_key_env and read_key(c.api_key_env)})

    # -- reports

    def _apply(self, shard: int, report: _Report) -> None:
        for record in report.records:
            if record.run_id in self.seen:
                continue
            self.seen.add(record.run_id)
            record.session_id = SESSION_ID
            record.cell = self.cell
            self.orc.runs.add(record)
            if record.cost:
                self.orc.budget.settle(None, record.cost)  # the driver's account of spending
            if record.step and (key := _item_key_of(record.step, self.item_keys)):
                self.judge_log[key].append(record)
        for index, model, row in report.rows:
            call = self.calls[(index, model)]
            if call.row is None:
                call.row = row
        for entry in report.judged:
            pair = (entry.get("model_a"), entry.get("model_b"), entry.get("model"))
            self.judged[(entry["item"], entry["judge"], *pair)] = entry
        self.snapshots[(shard, self.tries[shard])] = (report.stats, report.judge_cost)
        self._count()
        self.batch._update()

    def _count(self) -> None:
        """The driver's BatchStats: what it resumed, plus what every shard reported."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])
        for counts, _ in self.snapshots.values():
            for name, values in counts.items():
                for i, value in enumerate(values):
                    totals[name][i] += value
        now = time.perf_counter()
        answering = set(self.batch.s.models)
        for name, (total, done, failed, cost, throttled) in totals.items():
            stats = self.batch.stats.model(name)
            base_done, base_failed, base_cost, base_throttled = self.base.get(name, (0, 0, 0.0, 0))
            if stats.started is None:
                stats.started = self.started
            if stats.done != base_done + done:
                stats.last = now
            stats.done = base_done + int(done)
            stats.failed = base_failed + int(failed)
            stats.cost = base_cost + cost
            stats.throttled = base_throttled + int(throttled)
            if name not in answering:
                stats.total = int(total)  # judges: known once their shard has answers
        self.batch.judge_cost = sum(cost for _, cost in self.snapshots.values())
        if self.batch.s.judges and all(c.row is not None for c in self.batch.calls):
            self.batch.stats.phase = "judging"

    def _give_up(self, shard: int, error: BaseException) -> None:
        reason = f"not run: the Ray workers running it died {self.tries[shard]} times ({error})"
        for item in self.shards[shard]:
            for model in self.batch.s.models:
                call = self.calls[(item.index, model)]
                if call.row is None:
                    call.row = _lost_row(reason)

    async def _consume(self, worker: _Worker, shard: int, work: _Shard) -> None:
        generator = worker.handle.run_shard.options(num_returns="streaming").remote(work)
        async for ref in generator:
            self._apply(shard, await ref)

    # -- the run

    async def run(self) -> None:
        s = self.batch.s
        await asyncio.to_thread(_connect, self.options)
        import ray

        cpus = ray.cluster_resources().get("CPU", 1)
        wanted = self.options.workers or max(1, int(cpus // self.options.cpus_per_worker))
        per_worker = math.ceil(s.concurrency / wanted)
        self.shards = self._plan(wanted, per_worker)
        if not self.shards:
            return
        count = min(wanted, len(self.shards))
        per_worker = math.ceil(s.concurrency / count)
        limits = {m: s.limits.limit(m) for m in (*s.models, *s.judges)}
        setup = _WorkerSetup.of(self.orc, per_worker, limits)
        settings = dataclasses.replace(
            s, limits=Limits(), concurrency=per_worker, budget=None, rerun=None
        )
        self.limiter = (
            ray.remote(ClusterLimiter)
            .options(num_cpus=0, max_concurrency=10_000, name=f"mmo-batch-{self.token}-limits")
            .remote(limits, setup.budget)
        )
        self.model_names = self._model_names()
        key_names = self._key_names()
        self.batch.stats.phase = f"starting {count} Ray worker{'s' * (count > 1)}"
        self.batch._update(force=True)
        for _ in range(count):
            self._start_worker(setup, key_names)
        try:
            await self._dispatch(setup, settings, key_names, replacements=2 * count)
        except BaseException:
            await self._stop()
            raise
        finally:
            self._finish()
            await asyncio.to_thread(self.orc.runs.flush)

    async def _dispatch(
        self, setup: _WorkerSetup, settings: _Settings, key_names: list[str], replacements: int
    ) -> None:
        queue = deque(range(len(self.shards)))
        self.running: dict[asyncio.Task[None], tuple[_Worker, int]] = {}
        while queue or self.running:
            starting = [w.ready for w in self.workers if w.alive and not w.ready.done()]
            for worker in self.workers:
                if not (worker.alive and worker.ready.done()):
                    continue
                if worker.ready.exception() is not None or worker.ready.result():
                    self._refuse(worker)
                while queue and worker.busy < _SHARDS_PER_WORKER:
                    index = queue.popleft()
                    work = self._shard(index, settings)
                    if work is None:
                        continue
                    if self.batch.stats.phase.startswith("starting"):
                        self.batch.stats.phase = "answering"
                    task = asyncio.ensure_future(self._consume(worker, index, work))
                    self.running[task] = (worker, index)
                    worker.busy += 1
            if not self.running and not starting:
                if queue:  # no worker left to run them
                    for index in queue:
                        self._give_up(index, RuntimeError("no Ray worker left"))
                return
            waiting: list[asyncio.Future[Any]] = [*self.running, *starting]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in self.running.keys() & done:  # else a worker became ready
                worker, index = self.running.pop(task)
                worker.busy -= 1
                error = task.exception()
                if error is None:
                    continue
                if not _died(error):
                    raise error
                self.tries[index] += 1
                if worker.alive:
                    self._lose(worker)
                    if replacements > 0:
                        replacements -= 1
                        self._start_worker(setup, key_names)
                if self.tries[index] < _MAX_SHARD_TRIES:
                    queue.appendleft(index)
                else:
                    self._give_up(index, error)

    def _refuse(self, worker: _Worker) -> None:
        """A worker that could not start, or lacks a key the driver has: a ConfigError."""
        error = worker.ready.exception()
        if error is not None:
            raise ConfigError(
                f"A Ray worker could not start: {error}",
                hint="Check that mmo_magic (and its extras) is installed on the Ray nodes.",
            ) from error
        missing = worker.ready.result()
        raise ConfigError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} set here but not on "
            "the Ray workers, which read keys from their own environment.",
            hint="Set it in the cluster's environment (the cluster config's env, a Kubernetes "
            "Secret for KubeRay, or ray.init(runtime_env={'env_vars': ...}) for a local Ray).",
        )

    async def _stop(self) -> None:
        """Stop every worker, and take the records of its cancelled calls for a while."""
        running = list(getattr(self, "running", {}))
        for worker in self.workers:
            if worker.alive:
                worker.handle.stop.remote()
        if running:
            await asyncio.wait(running, timeout=_STOP_GRACE_S)
        for task in running:
            task.cancel()

    def _finish(self) -> None:
        import ray

        for task in list(getattr(self, "running", {})):
            task.cancel()
        for worker in self.workers:
            worker.ready.cancel()
            if worker.alive:
                worker.alive = False
                ray.kill(worker.handle)
        if self.limiter is not None:
            ray.kill(self.limiter)
        entries = list(self.judged.values())
        if self.batch.s.judge_mode == "grade":
            self.batch.grades = entries
        else:
            self.batch.judgements = entries


async def run_on_ray(batch: _Batch, progress: BatchProgress | None, options: RayOptions) -> None:
    """Run ``batch`` (prepared: resumed, budget checked) on Ray; see the module docstring."""
    with batch.shown(progress):
        await _RayRun(batch, options).run()
