"""The one retry, fallback and circuit-breaker policy.

What happens after a failed attempt is decided here and only here, so every
call behaves the same and every attempt lands in the run log. Clients report
what the provider said (HTTP status, error code, ``retry-after`` as sent);
these rules decide what it means:

- retry the same model only when a retry can succeed (408, 409, 429, 5xx,
  529, connection errors, broken streams), with exponential backoff and full
  jitter, honouring ``retry-after`` / ``retry-after-ms`` up to a cap
  (``RetryPolicy.max_retry_after_s``, the only one);
- a timeout (a silent or stalled provider) fails over at once: retrying the
  same route would only wait again;
- ``context_length_exceeded`` fails over to the next model in the chain with
  a larger context window;
- an unusable model (401, 403, 404, no key) fails over to the next model;
- any other 4xx (a content-policy refusal, a bad request) is final: another
  model would refuse the same request, so the provider's reason propagates;
- a model that keeps failing is skipped for a cooldown by its circuit
  breaker, then probed once, and used again when the probe succeeds; probes
  go on at most ``max_cooldown_s`` (5 s) apart however long the outage;
- a 429 is back-pressure, not an outage: it is retried after ``retry-after``
  but never counts toward the breaker;
- a stream that has already shown text is neither retried nor failed over:
  the caller cannot take the text back, and a second answer would follow it.

The breaker counts every failed attempt but a 429, retries included: a
``threshold`` below ``max_retries + 1`` opens it in the middle of a call's retries.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from enum import Enum

from ..core.errors import ConfigError, MissingAPIKeyError, MMOError, ProviderError, StreamError
from ..core.models import ModelConfig

__all__ = [
    "CircuitBreaker",
    "Decision",
    "Failover",
    "Next",
    "RetryPolicy",
    "next_step",
    "retryable",
]

_RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx, 529 "overloaded" included
_RETRYABLE_CODES = frozenset({"timeout", "connection_error"})
_UNUSABLE_STATUS = frozenset({401, 403, 404})


class Next(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"  # the same model again, after a delay
    FAILOVER = "failover"  # the next model of the chain
    LARGER_CONTEXT = "larger_context"  # the next model with a larger context window
    STOP = "stop"  # give up: the error is the answer


def retryable(error: ProviderError) -> bool:
    """Whether sending the same request again can succeed.

    By HTTP status when there is one; without one, a broken stream, a timeout
    or a failed connection can, and so can an error its client marked retryable.
    """
    if error.status is not None:
        return error.status in _RETRYABLE_STATUS or error.status >= 500
    return isinstance(error, StreamError) or error.code in _RETRYABLE_CODES or error.retryable


def next_step(error: MMOError) -> Next:
    """What to do after ``error``, before counting retries and breakers (see ``Failover``)."""
    if isinstance(error, MissingAPIKeyError):
        return Next.FAILOVER
    if not isinstance(error, ProviderError):
        return Next.STOP
    if error.code == "timeout":
        return Next.FAILOVER
    if error.code == "context_length_exceeded" or "prompt is too long" in error.message:
        return Next.LARGER_CONTEXT
    if retryable(error):
        return Next.RETRY
    if error.status in _UNUSABLE_STATUS:
        return Next.FAILOVER
    return Next.STOP


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before retrying: ``base_delay_s * 2**(n-1)``, jittered, capped.

    A provider's ``retry-after`` replaces the backoff but is capped at
    ``max_retry_after_s``: a provider asking for minutes is failed over instead.
    """

    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 20.0

    def delay(
        self, retry: int, error: ProviderError, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None: do not retry."""
        if error.retry_after_s is not None:
            if error.retry_after_s > self.max_retry_after_s:
                return None
            return error.retry_after_s
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        # Full jitter: clients that failed together do not retry together.
        return (rng or random).uniform(ceiling / 2, ceiling)


class CircuitBreaker:
    """Per-model breaker: ``threshold`` failures in a row open it for a cooldown.

    Once the cooldown has passed, one probe is let through (half-open); its
    success closes the breaker, its failure opens it again for a cooldown
    ``backoff`` times longer, up to ``max_cooldown_s``. That cap is the probe
    interval however long the outage: a model that comes back is used again at
    most ``max_cooldown_s`` (default 5 s) after it does. (It used to grow to 60 s:
    after a 70 s outage a recovered model was refused for 54.6 s more.) A probe
    still in flight after ``max_cooldown_s`` (a hanging upstream) lets another in.

    Only outages count: a 429 is back-pressure, not a failure, so it never opens
    the breaker (``record_backpressure``); the retry policy waits it out.
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 1.0,
        *,
        max_cooldown_s: float = 5.0,
        backoff: float = 2.0,
    ) -> None:
        _check_setting("threshold", threshold, 1, whole=True)
        _check_setting("cooldown_s", cooldown_s, 0)
        _check_setting("max_cooldown_s", max_cooldown_s, cooldown_s)
        _check_setting("backoff", backoff, 1)
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.backoff = backoff
        self._failures: dict[str, int] = {}
        self._opened_at: dict[str, float] = {}
        self._cooldown: dict[str, float] = {}  # the current cooldown of each open model
        self._probing: dict[str, float] = {}  # model -> when its probe was let through

    def state(self, model: str) -> str:
        """ "closed", "open" or "half-open"."""
        opened = self._opened_at.get(model)
        if opened is None:
            return "closed"
        return "half-open" if self.retry_after_s(model) == 0 else "open"

    def retry_after_s(self, model: str) -> float:
        """Seconds until ``model`` will be probed again (0: now, or it is closed)."""
        opened = self._opened_at.get(model)
        if opened is None:
            return 0.0
        return max(opened + self._cooldown[model] - time.monotonic(), 0.0)

    def allow(self, model: str) -> bool:
        """Whether to send to ``model`` now (claims the single probe when half-open)."""
        state = self.state(model)
        if state == "closed":
            return True
        probe = self._probing.get(model)
        if state == "half-open" and (
            probe is None or time.monotonic() - probe >= self.max_cooldown_s
        ):
            self._probing[model] = time.monotonic()
            return True
        return False

    def record_success(self, model: str) -> None:
        self._failures.pop(model, None)
        self._opened_at.pop(model, None)
        self._cooldown.pop(model, None)
        self._probing.pop(model, None)

    def record_failure(self, model: str) -> None:
        count = self._failures.get(model, 0) + 1
        self._failures[model] = count
        if model in self._probing:  # the probe failed: wait longer before the next
            previous = self._cooldown.get(model, self.cooldown_s)
            self._cooldown[model] = min(previous * self.backoff, self.max_cooldown_s)
            self._opened_at[model] = time.monotonic()
        elif count >= self.threshold and model not in self._opened_at:
            self._cooldown[model] = self.cooldown_s
            self._opened_at[model] = time.monotonic()
        self._probing.pop(model, None)

    def record_backpressure(self, model: str) -> None:
        """A 429: the model is up but busy. Not a failure; a probe that met it ends
        without a verdict, so the next request may probe again."""
        self._probing.pop(model, None)

    def reset(self) -> None:
        self._failures.clear()
        self._opened_at.clear()
        self._cooldown.clear()
        self._probing.clear()


def _check_setting(name: str, value: float, low: float, *, whole: bool = False) -> None:
    kind = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ConfigError(f"CircuitBreaker {name} must be a finite number, got {value!r}.")
    if value < low:
        raise ConfigError(f"CircuitBreaker {name} must be >= {low:g}, got {value!r}.")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: ``next``, and for a retry how long to wait first."""

    next: Next
    delay_s: float = 0.0


class Failover:
    """These rules applied to one call's chain of models (the model, then its fallbacks).

    The engine asks ``skip`` before trying a model, and ``after_failure`` after
    each failed attempt; it reports successes with ``succeeded``.
    """

    def __init__(self, policy: RetryPolicy, breaker: CircuitBreaker) -> None:
        self.policy = policy
        self.breaker = breaker
        self.overflowed: int | None = None  # the context window a prompt was too long for
        self.circuit_wait_s: float | None = None  # the soonest an open circuit lets a probe in

    def skip(self, config: ModelConfig) -> str | None:
        """Why ``config`` is not worth trying now (None: try it)."""
        if self.overflowed is not None and (config.context_window or 0) <= self.overflowed:
            return "context window not larger"
        if not self.breaker.allow(config.name):
            wait = self.breaker.retry_after_s(config.name)
            self.circuit_wait_s = min(wait, self.circuit_wait_s or wait)
            return f"circuit open, retry in {wait:.1f} s"
        return None

    def succeeded(self, config: ModelConfig) -> None:
        self.breaker.record_success(config.name)

    def after_failure(
        self, config: ModelConfig, error: MMOError, retries: int, *, text_shown: bool = False
    ) -> Decision:
        """RETRY (after ``delay_s``), FAILOVER to the next model, or STOP and raise ``error``.

        ``retries``: how many times this model was already retried in this call.
        ``text_shown``: the caller has already shown some of this attempt's text.
        A ProviderError's ``retryable`` is set to this policy's answer.
        """
        if isinstance(error, ProviderError):
            error.retryable = retryable(error)
        step = next_step(error)
        if isinstance(error, ProviderError) and error.status == 429:
            self.breaker.record_backpressure(config.name)  # busy, not down: never opens it
        elif step in (Next.RETRY, Next.FAILOVER) and isinstance(error, ProviderError):
            self.breaker.record_failure(config.name)
        if step is Next.STOP or text_shown:
            # A stream's caller has shown the text so far and cannot take it back:
            # a retry or fallback would append a second answer to the first.
            return Decision(Next.STOP)
        if step is Next.RETRY and retries < config.max_retries:
            assert isinstance(error, ProviderError)
            delay = self.policy.delay(retries + 1, error)
            if delay is not None and self.breaker.allow(config.name):
                return Decision(Next.RETRY, delay)
        if step is Next.LARGER_CONTEXT:
            self.overflowed = config.context_window or 0
        return Decision(Next.FAILOVER)
