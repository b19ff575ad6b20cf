"""Limits and budget shared by every worker of a batch on Ray: one ``ClusterLimiter`` actor.

It holds the gate of every model that has limits (requests and tokens per
minute, calls in flight, and its 429 pauses) and what is left of the
orchestrator's budget. Workers pass its gate before each call and reserve the
call's worst case before sending, settling the actual cost after, so ten
workers share one rate limit and spend one budget. (A model with no limits is
gated on each worker: a 429 pauses it there.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ...core.errors import BudgetExceededError
from ...core.models import ModelConfig
from ...orchestration.budget import Budget, Reservation
from ..limits import Gate, Limits, ModelGate, RateLimit

__all__ = ["ClusterLimiter", "Held", "Refused", "SharedBudget", "SharedLimits", "remote_call"]


@dataclass(frozen=True, slots=True)
class Held(Reservation):
    """A reservation the limiter knows by ``key`` (so a dead worker's can be settled)."""

    key: int = 0


@dataclass(frozen=True, slots=True)
class Refused:
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

    async def acquire_slot(self, holder: str, model: str) -> None:
        await self._limits.gate(model).acquire_slot()
        if self._limits.limit(model).max_concurrency is not None:
            self._slots[(holder, model)] += 1

    async def pace(self, model: str, tokens: int | None) -> None:
        await self._limits.gate(model).pace(tokens)

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
    ) -> Held | Refused | None:
        try:
            reservation = self._budget.authorize(
                model, estimate, call_limit=call_limit, allow_unpriced=allow_unpriced
            )
        except BudgetExceededError as exc:
            return Refused(exc.message, exc.hint, exc.estimate)
        if reservation is None:
            return None
        held = Held(reservation.amount, next(self._keys))
        self._reserved[held.key] = (holder, held)
        return held

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        if isinstance(reservation, Held):
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


async def remote_call(method: Any, *args: Any) -> Any:
    """Await an actor call from the worker's event loop; cancelling it cancels the call."""
    ref = method.remote(*args)
    try:
        return await ref
    except asyncio.CancelledError:
        import ray

        ray.cancel(ref)
        raise


class SharedGate:
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
        await remote_call(self._limiter.acquire, self._holder, self.model, tokens)

    async def acquire_slot(self) -> None:
        if self.limit.max_concurrency is not None:  # else there is no slot to hold
            await remote_call(self._limiter.acquire_slot, self._holder, self.model)

    async def pace(self, tokens: int | None = None) -> None:
        await remote_call(self._limiter.pace, self.model, tokens)

    def release(self) -> None:
        if self.limit.max_concurrency is not None:
            self._limiter.release.remote(self._holder, self.model)

    async def wait_pause(self) -> None:
        await remote_call(self._limiter.wait_pause, self.model)
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


class SharedLimits(Limits):
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
                gate = SharedGate(self._limiter, self._holder, model, limit)
            self._gates[model] = gate
        return gate


class SharedBudget(Budget):
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
        if isinstance(answer, Refused):
            raise BudgetExceededError(answer.message, estimate=answer.estimate, hint=answer.hint)
        reservation: Reservation | None = answer
        return reservation

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        if reservation is not None or cost:
            self._limiter.settle.remote(reservation, cost)
        if cost:
            self.spent += cost
