"""Spending limits in USD, checked before a call is sent.

A call is authorised against its worst case — its input tokens plus its
``max_tokens`` of output at the model's prices — and that amount is reserved
until the call ends, so concurrent calls (a race, a pipeline wave) cannot
together overspend. When the call ends, the reservation is replaced by what
the usage actually cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..core.errors import BudgetExceededError, ConfigError
from ..core.models import ModelConfig
from ..core.money import format_usd

__all__ = ["Budget", "Reservation", "check_usd"]


def check_usd(value: Any, what: str = "budget") -> float | None:
    """``value`` as a finite USD amount >= 0 (None: no limit), else ConfigError.

    NaN must never pass: every comparison with it is False, so it would
    silently disable the limit.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"{what} must be a finite number of USD, got {value!r}.",
            hint=f"For example {what}=0.50, or None for no limit.",
        )
    if value < 0:
        raise ConfigError(f"{what} cannot be negative, got {value!r}.")
    return float(value)


@dataclass(frozen=True, slots=True)
class Reservation:
    amount: float


class Budget:
    """An orchestrator's budget: ``limit`` USD (None = unlimited), ``spent`` so far."""

    def __init__(self, limit: float | None = None) -> None:
        self.limit = check_usd(limit)
        self.spent = 0.0
        self._reserved = 0.0

    @property
    def left(self) -> float | None:
        return None if self.limit is None else max(self.limit - self.spent - self._reserved, 0.0)

    def authorize(
        self,
        model: ModelConfig,
        estimate: float | None,
        *,
        call_limit: float | None = None,
        allow_unpriced: bool = False,
    ) -> Reservation | None:
        """Reserve ``estimate`` or raise BudgetExceededError; None when no budget applies."""
        if self.limit is None and call_limit is None:
            return None
        if estimate is None:
            if allow_unpriced:
                return None
            raise BudgetExceededError(
                f"Model {model.name!r} has no price, so a budget cannot bound what it costs.",
                hint=(
                    "Pass allow_unpriced=True to send it anyway, or set cost_per_1k_input and "
                    f"cost_per_1k_output for [models.{model.name}] in mmo.toml."
                ),
            )
        if call_limit is not None and estimate > call_limit:
            raise BudgetExceededError(
                f"This call to {model.name!r} could cost up to {format_usd(estimate)}, over its "
                f"budget of {format_usd(call_limit)}.",
                estimate=estimate,
                hint="Lower max_tokens, pick a cheaper model, or raise the budget.",
            )
        left = self.left
        if left is not None and estimate > left:
            raise BudgetExceededError(
                f"This call to {model.name!r} could cost up to {format_usd(estimate)}, but only "
                f"{format_usd(left)} of the {format_usd(self.limit)} budget is left "
                f"({format_usd(self.spent)} spent).",
                estimate=estimate,
                hint="Lower max_tokens, pick a cheaper model, or raise the budget.",
            )
        self._reserved += estimate
        return Reservation(estimate)

    async def aauthorize(
        self,
        model: ModelConfig,
        estimate: float | None,
        *,
        call_limit: float | None = None,
        allow_unpriced: bool = False,
    ) -> Reservation | None:
        """``authorize`` for the call engine, which awaits it: a budget kept elsewhere (a
        Ray actor shared by every worker) answers without blocking the event loop."""
        return self.authorize(model, estimate, call_limit=call_limit, allow_unpriced=allow_unpriced)

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        """Release ``reservation`` and record what the call actually cost."""
        if reservation is not None:
            self._reserved = max(self._reserved - reservation.amount, 0.0)
        # Spend only grows: a negative or non-finite cost (bad usage from a provider) is
        # no spend, and must never give budget back.
        if cost and math.isfinite(cost) and cost > 0:
            self.spent += cost

    def __repr__(self) -> str:
        limit = "unlimited" if self.limit is None else format_usd(self.limit)
        return f"<Budget {limit}, spent {format_usd(self.spent)}>"
