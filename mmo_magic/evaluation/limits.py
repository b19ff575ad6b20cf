"""Per-model rate limits for batches: requests and tokens per minute, calls in flight.

Each model gets a ``ModelGate``: a semaphore for ``max_concurrency``;
``requests_per_minute`` as evenly spaced send times (virtual scheduling, the
GCRA form of a token bucket holding one request: each request takes the next
slot ``60 / rpm`` s after the previous one, or now if that has passed); and
aiolimiter's leaky bucket for ``tokens_per_minute`` (capacity one minute of
tokens; a request takes its input tokens plus ``max_tokens``, as providers
count it).

Why not aiolimiter for requests too: a bucket of capacity one, woken by the
event loop's timer a millisecond or two late each time, loses that lateness
on every request (its level cannot go below empty): measured, 1,200 rpm
came out at 1,137 (5.3 % slow). Slots computed from the previous *slot*, not
from the late wake-up, do not drift; a request that reaches the gate late
(a busy machine) gets up to one interval of credit, so after an idle spell
at most one request goes ahead of the even spacing.

A 429 answer pauses the model's gate (``back_off``): for the ``Retry-After``
the provider sent, else for a doubling delay. Only that model's gate waits;
the other models' work goes on.

Gates are made on, and used from, the background event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

__all__ = ["Gate", "Limits", "ModelGate", "RateLimit"]

_FIRST_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits of one model; None: no limit of that kind."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "max_concurrency"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}.")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}.")
        if self.max_concurrency is not None and not isinstance(self.max_concurrency, int):
            raise ConfigError(
                f"max_concurrency must be a whole number, got {self.max_concurrency!r}."
            )

    @classmethod
    def of(cls, value: RateLimit | Mapping[str, Any]) -> RateLimit:
        if isinstance(value, RateLimit):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"A rate limit is a RateLimit or a dict, not {type(value).__name__}.",
                hint='For example {"requests_per_minute": 60, "max_concurrency": 4}.',
            )
        unknown = set(value) - {"requests_per_minute", "tokens_per_minute", "max_concurrency"}
        if unknown:
            raise ConfigError(
                f"Unknown rate-limit setting(s): {', '.join(sorted(unknown))}.",
                hint="Use requests_per_minute, tokens_per_minute and max_concurrency.",
            )
        return cls(**value)


class Gate(Protocol):
    """What the batch scheduler needs of a model's gate (a ``ModelGate``, or one shared
    by every worker of a Ray batch: ``evaluation.ray.limiter``)."""

    @property
    def counts_tokens(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    async def acquire(self, tokens: int | None = None) -> None: ...
    async def acquire_slot(self) -> None: ...
    async def pace(self, tokens: int | None = None) -> None: ...
    def release(self) -> None: ...
    async def wait_pause(self) -> None: ...
    def back_off(self, retry_after_s: float | None = None) -> float: ...
    def succeeded(self) -> None: ...


class ModelGate:
    """What one model's calls pass before they are sent (see the module docstring)."""

    def __init__(self, limit: RateLimit) -> None:
        from aiolimiter import AsyncLimiter

        self.limit = limit
        self._slots = (
            asyncio.Semaphore(limit.max_concurrency) if limit.max_concurrency is not None else None
        )
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        self._interval_s = 60.0 / rpm if rpm is not None else None
        self._next_slot = 0.0  # loop time of the next free request slot
        self._tokens: AsyncLimiter | None = AsyncLimiter(tpm, 60.0) if tpm is not None else None
        self._paused_until = 0.0
        self._backoff_s = 0.0
        self.throttled = 0  # 429 answers seen

    @property
    def counts_tokens(self) -> bool:
        return self._tokens is not None

    async def acquire(self, tokens: int | None = None) -> None:
        """Wait until a call may be sent: a free slot, the pause over, request and token budget."""
        await self.acquire_slot()
        try:
            await self.pace(tokens)
        except BaseException:
            self.release()
            raise

    async def acquire_slot(self) -> None:
        """Take one of the calls in flight (``max_concurrency``); ``release`` gives it back.

        A job that makes several calls in its slot (a judging: both orders, a repair)
        paces each of them with ``pace``.
        """
        if self._slots is not None:
            await self._slots.acquire()

    async def pace(self, tokens: int | None = None) -> None:
        """Wait until one more request may be sent: the pause over, a request slot of
        ``requests_per_minute`` and ``tokens`` of ``tokens_per_minute``."""
        await self._wait_pause()
        if self._interval_s is not None:
            await self._request_slot(self._interval_s)
        if self._tokens is not None and tokens:
            await self._tokens.acquire(min(float(tokens), self._tokens.max_rate))
        await self._wait_pause()  # a 429 may have arrived while this call waited

    async def _request_slot(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # The first request gets no credit; later ones up to one interval: a request
        # that came late (a busy loop, a descheduled process) lets the next catch up.
        first = self._next_slot == 0.0
        slot = now if first else max(self._next_slot, now - interval_s)
        self._next_slot = slot + interval_s
        if slot > now:
            await asyncio.sleep(slot - now)

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    @property
    def paused(self) -> bool:
        """Whether a 429 has paused this model (until its Retry-After has passed)."""
        return self._paused_until > asyncio.get_running_loop().time()

    async def wait_pause(self) -> None:
        """Return once the model is no longer paused."""
        await self._wait_pause()

    async def _wait_pause(self) -> None:
        loop = asyncio.get_running_loop()
        while (left := self._paused_until - loop.time()) > 0:
            await asyncio.sleep(left)

    def back_off(self, retry_after_s: float | None = None) -> float:
        """A 429: pause this model for ``retry_after_s``, else a doubling delay; returns it."""
        self.throttled += 1
        if retry_after_s is not None:
            pause = max(retry_after_s, 0.0)
        else:
            self._backoff_s = min(_MAX_BACKOFF_S, max(_FIRST_BACKOFF_S, self._backoff_s * 2))
            pause = self._backoff_s
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + pause)
        return pause

    def succeeded(self) -> None:
        self._backoff_s = 0.0


class Limits:
    """Rate limits by model name: ``Limits({"gpt-4o": {"requests_per_minute": 500}})``.

    ``default`` applies to models not named.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit | Mapping[str, Any]] | None = None,
        *,
        default: RateLimit | Mapping[str, Any] | None = None,
    ) -> None:
        self.limits = {name: RateLimit.of(v) for name, v in (limits or {}).items()}
        self.default = RateLimit.of(default) if default is not None else None
        self.configured: dict[str, RateLimit] = {}  # from the models' own settings (mmo.toml)
        self._gates: dict[str, Gate] = {}

    @classmethod
    def of(cls, value: Limits | Mapping[str, Any] | None) -> Limits:
        if isinstance(value, Limits):
            return value
        return cls(value)

    def configure(self, configs: Mapping[str, Any]) -> None:
        """Limits the models set themselves (``requests_per_minute``, ``tokens_per_minute``
        on a ModelConfig or in mmo.toml), for models the call names no limit for."""
        for name, config in configs.items():
            rpm = getattr(config, "requests_per_minute", None)
            tpm = getattr(config, "tokens_per_minute", None)
            if rpm is not None or tpm is not None:
                self.configured[name] = RateLimit(rpm, tpm)

    def limit(self, model: str) -> RateLimit:
        """The limits of ``model``: the call's, else the model's own, else the default."""
        limit = self.limits.get(model) or self.configured.get(model, self.default)
        return limit or RateLimit()

    def gate(self, model: str) -> Gate:
        """The gate of ``model``, made on first use (one with no limits still backs off on 429)."""
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = ModelGate(self.limit(model))
        return gate
