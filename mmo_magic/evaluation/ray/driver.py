"""Batches on Ray: the items in shards across Ray workers, limits and budget kept global.

``orc.batch(..., engine="ray")`` plans the batch on the driver exactly as a
local batch does (items, templates, the run log, resume, the worst-case
budget check), then sends the work out:

* **Workers** are Ray actors (``worker``), ``cpus_per_worker`` CPUs each
  (default 1; Ray makes it the worker's ``OMP_NUM_THREADS`` unless that is
  set), each with a call engine of its own built from the driver's settings.
  Before anything is sent the driver checks that every key variable set here
  is set on the workers too.
* **Shards.** Items go out in small shards (all models of an item, and its
  judging, in one shard); a worker runs up to ``SHARDS_PER_WORKER`` at once
  under its share of ``concurrency``.
* **Records stream back** as calls finish (a Ray streaming generator): the
  driver adds each run record to its own run log (with the driver's session
  and cell, deduplicated by run_id), fills the row and updates the progress
  view. So a batch started on Ray resumes locally and the other way round.
* **A worker that dies** loses only the calls it had in flight (and any it
  finished in the last ~20 ms, not yet reported): the driver sends what it
  has not received of that shard to another worker, and starts a
  replacement. Workers are started for each batch and stopped after it.
* **Limits and budget are global**: one ``ClusterLimiter`` actor (``limiter``).

Ray depends on the plan (``evaluation.plan``, ``run``) in one direction only:
nothing outside this subpackage imports it but ``evaluation.batch``, and only
for ``engine="ray"``. Ray itself is imported inside functions.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, cast

from ...core.cells import current_cell
from ...core.errors import ConfigError
from ...core.redaction import read_key
from ...orchestration.engine import SESSION_ID
from ...storage.runlog import RunRecord
from ..plan import Item
from ..progress import BatchProgress
from ..rows import Row, not_run_row
from ..run import Batch
from ..spec import BatchContext, BatchSpec
from .limiter import ClusterLimiter, remote_call
from .options import RayOptions, connect
from .worker import SHARDS_PER_WORKER, BatchWorker, Report, Shard, WorkerSetup

__all__ = ["run_on_ray"]

_MAX_SHARD_TRIES = 3  # a shard whose worker died this often is given up (its rows say why)
_STOP_GRACE_S = 3.0  # on stop: how long workers get to send the records of cancelled calls


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
    spread = math.ceil(items / (SHARDS_PER_WORKER * workers))
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


class _RayRun:
    """The driver's side of one batch on Ray: shards out, reports in, the same BatchStats."""

    def __init__(self, context: BatchContext, batch: Batch, options: RayOptions) -> None:
        if context.engine is None:
            raise ConfigError(
                "engine='ray' needs the call engine's settings to build its workers.",
                hint="Run the batch through orc.batch(...).",
            )
        self.batch = batch
        self.options = options
        self.context = context
        self.engine = context.engine
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
            for records in batch.log.values():
                for record in records:
                    if record.step and (key := _item_key_of(record.step, self.item_keys)):
                        self.judge_log[key].append(record)
        self.shards: list[list[Item]] = []
        self.tries: dict[int, int] = defaultdict(int)
        self.workers: list[_Worker] = []
        self.limiter: Any = None
        self.model_names: list[str] = []
        self.names = itertools.count()
        self.token = uuid.uuid4().hex[:8]
        self.started = time.perf_counter()

    # -- planning

    def _plan(self, workers: int, per_worker: int) -> list[list[Item]]:
        s = self.batch.s
        if s.judges:
            items = list(self.batch.items)
        else:
            todo = {c.item.index for c in self.batch.calls if c.row is None}
            items = [item for item in self.batch.items if item.index in todo]
        size = _items_per_shard(len(items), len(s.models), workers, per_worker)
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _shard(self, index: int, settings: BatchSpec) -> Shard | None:
        """Shard ``index`` as it stands now (a retry carries what arrived from the last try)."""
        items = self.shards[index]
        judging = bool(settings.judges)
        rows: dict[tuple[int, str], Row] = {}
        missing = False
        for item in items:
            for model in settings.models:
                row = self.calls[(item.index, model)].row
                if row is None:
                    missing = True
                else:
                    # Without judging the worker needs only to know it is answered.
                    rows[(item.index, model)] = row if judging else cast(Row, {})
        if not missing and not judging:
            return None
        records = [r for item in items for r in self.judge_log.get(item.key, ())]
        return Shard(settings, items, rows, records)

    # -- workers

    def _start_worker(self, setup: WorkerSetup, key_names: list[str]) -> _Worker:
        import ray

        holder = f"w{next(self.names)}"
        actor = ray.remote(BatchWorker).options(
            name=f"mmo-batch-{self.token}-{holder}",
            num_cpus=self.options.cpus_per_worker,
            max_concurrency=2 + SHARDS_PER_WORKER,
        )
        handle = actor.remote(setup, self.limiter, holder)
        ready = asyncio.ensure_future(remote_call(handle.prepare, key_names, self.model_names))
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
        catalogue = self.context.catalogue
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
        configs = [self.context.catalogue.resolve(name) for name in self.model_names]
        return sorted({c.api_key_env for c in configs if c.api_key_env and read_key(c.api_key_env)})

    # -- reports

    def _apply(self, shard: int, report: Report) -> None:
        for record in report.records:
            if record.run_id in self.seen:
                continue
            self.seen.add(record.run_id)
            record.session_id = SESSION_ID
            record.cell = self.cell
            self.context.runs.add(record)
            if record.cost:
                self.engine.budget.settle(None, record.cost)  # the driver's account of spending
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
                    call.row = not_run_row(reason, "error")

    async def _consume(self, worker: _Worker, shard: int, work: Shard) -> None:
        generator = worker.handle.run_shard.options(num_returns="streaming").remote(work)
        async for ref in generator:
            self._apply(shard, await ref)

    # -- the run

    async def run(self) -> None:
        s = self.batch.s
        await asyncio.to_thread(connect, self.options)
        import ray

        cpus = ray.cluster_resources().get("CPU", 1)
        wanted = self.options.workers or max(1, int(cpus // self.options.cpus_per_worker))
        per_worker = math.ceil(s.concurrency / wanted)
        self.shards = self._plan(wanted, per_worker)
        if not self.shards:
            return
        count = min(wanted, len(self.shards))
        per_worker = math.ceil(s.concurrency / count)
        limits = {m: self.batch.limits.limit(m) for m in (*s.models, *s.judges)}
        setup = WorkerSetup.of(self.engine, per_worker, limits)
        # The shards' spec: no items (they travel in the shard), limits and budget are the
        # limiter's, and it runs on the worker's own loop; scorers run on the driver.
        settings = s.replace(
            data=(), limits=None, concurrency=per_worker, budget=None, rerun=None, engine=None,
            ray_address=None, workers=None, cpus_per_worker=None, scorers=(),
        )  # fmt: skip
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
            await asyncio.to_thread(self.context.runs.flush)

    async def _dispatch(
        self, setup: WorkerSetup, settings: BatchSpec, key_names: list[str], replacements: int
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
                while queue and worker.busy < SHARDS_PER_WORKER:
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


async def run_on_ray(context: BatchContext, batch: Batch, progress: BatchProgress | None) -> None:
    """Run ``batch`` (prepared: resumed, budget checked) on Ray; see the module docstring."""
    options = RayOptions.of(batch.s)
    with batch.shown(progress):
        await _RayRun(context, batch, options).run()
