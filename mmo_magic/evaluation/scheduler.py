"""Running a batch's calls: one dispatcher per model under its limits, 429s paused per model."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from ..core.errors import (
    AllModelsFailedError,
    CircuitOpenError,
    ProviderError,
)
from .limits import Gate, Limits

__all__ = ["MAX_REQUEUES", "Job", "Outcome", "Scheduler", "circuit_wait", "rate_limited"]

MAX_REQUEUES = 3  # times a rate-limited call goes back in its model's queue
# The shortest wait of a call refused by an open circuit ("retry in 0.0 s": another
# call holds the breaker's probe), so refused calls do not spin while it is out.
MIN_CIRCUIT_WAIT_S = 0.25


# -- the runner -----------------------------------------------------------------------------------


@dataclass
class Job:
    """One scheduled unit of work for one model."""

    model: str
    run: Callable[[bool], Coroutine[Any, Any, Outcome]]  # (last try) -> outcome
    tokens: int | None = None
    # The job passes the gate's pacing for each call it makes (``Gate.pace``); the
    # scheduler gives it only a slot (a judging: both orders and a repair are calls).
    paces_itself: bool = False


@dataclass
class Outcome:
    throttled: bool = False  # still rate limited after the engine's retries: queue again
    retry_after_s: float | None = None
    # Not sent: the model's circuit is open. The call waits for the breaker and is asked
    # again; this never counts toward MAX_REQUEUES (each probe the breaker lets through
    # is a real request, so an outage still ends every call, ok or failed).
    refused: bool = False


class Scheduler:
    """Runs jobs with ``concurrency`` in flight overall and each model behind its gate.

    One dispatcher per model waits on that model's gate, so a model that is
    paused or rate limited holds no shared slot and delays no other model.
    """

    def __init__(
        self, concurrency: int, limits: Limits, slots: asyncio.Semaphore | None = None
    ) -> None:
        """``slots``: share the calls in flight with other schedulers (a Ray worker's shards)."""
        self.slots = slots if slots is not None else asyncio.Semaphore(concurrency)
        self.limits = limits

    async def run(self, jobs: Iterable[Job]) -> None:
        queues: dict[str, deque[Job]] = defaultdict(deque)
        for job in jobs:
            queues[job.model].append(job)
        running: set[asyncio.Task[None]] = set()

        async def dispatch(model: str, queue: deque[Job]) -> None:
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

    async def _enter(self, gate: Gate, job: Job) -> None:
        if job.paces_itself:
            await gate.acquire_slot()
        else:
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

    def _leave(self, gate: Gate) -> None:
        self.slots.release()
        gate.release()

    async def _one(self, gate: Gate, job: Job) -> None:
        inside = True
        requeues = 0
        try:
            while True:
                outcome = await job.run(requeues == MAX_REQUEUES)
                if outcome.refused:
                    self._leave(gate)
                    inside = False
                    await asyncio.sleep(max(outcome.retry_after_s or 0.0, MIN_CIRCUIT_WAIT_S))
                elif not outcome.throttled or requeues == MAX_REQUEUES:
                    if not outcome.throttled:
                        gate.succeeded()
                    return
                else:
                    requeues += 1
                    gate.back_off(outcome.retry_after_s)
                    self._leave(gate)
                    inside = False
                await self._enter(gate, job)
                inside = True
        finally:
            if inside:
                self._leave(gate)


def circuit_wait(error: BaseException) -> float | None:
    """Seconds until the breaker lets a probe in, if ``error`` is only an open circuit
    (nothing was sent); None for any other error."""
    if isinstance(error, CircuitOpenError):
        return error.retry_after_s or 0.0
    return None


def rate_limited(error: BaseException) -> tuple[bool, float | None]:
    """(whether ``error`` is a 429 in the end, the Retry-After it carried)."""
    if isinstance(error, ProviderError):
        return error.status == 429, error.retry_after_s
    if isinstance(error, AllModelsFailedError) and error.errors:
        limited = [e for e in error.errors if isinstance(e, ProviderError) and e.status == 429]
        if len(limited) == len(error.errors):
            waits = [e.retry_after_s for e in limited if e.retry_after_s is not None]
            return True, min(waits) if waits else None
    return False, None
