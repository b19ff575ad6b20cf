"""``RoutingEvidence``: what a learned router is fit on, as plain data.

The evaluation layer turns a judged batch into this (``mmo_magic.evaluation.learning``);
anything else that has prompts, per-model quality and per-model cost can too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ...core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RoutingEvidence"]

MIN_ITEMS = 10


@dataclass(frozen=True)
class RoutingEvidence:
    """Judged results as plain arrays.

    - ``prompts``: one text per item.
    - ``models``: the candidate models (at least two).
    - ``quality``: (items, models) in [0, 1]; NaN (or None) where not judged.
    - ``cost``: (items, models) USD measured per call; NaN (or None) where unknown.
      None for the whole table: every call is priced by ``prices``.
    - ``prices``: USD per call by model, used where a measured cost is missing
      (for instance from catalogue prices and typical token counts).
    - ``source`` says where the evidence came from; ``date`` when (ISO 8601, default now).
    """

    prompts: Sequence[str]
    models: Sequence[str]
    quality: Any
    cost: Any = None
    prices: Mapping[str, float] | None = None
    source: str = ""
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        import numpy as np

        prompts = [str(p) for p in self.prompts]
        models = [str(m) for m in self.models]
        if len(models) < 2:
            raise ConfigError(f"A learned router needs at least two models, got {models}.")
        if len(set(models)) != len(models):
            raise ConfigError(f"Models are named more than once: {models}.")
        shape = (len(prompts), len(models))
        quality = _table(self.quality, shape, "quality")
        if np.any((quality < 0) | (quality > 1)):
            raise ConfigError(
                "Quality must be in [0, 1].", hint="Scale grades first (1-10 -> (g - 1) / 9)."
            )
        cost = np.full(shape, np.nan) if self.cost is None else _table(self.cost, shape, "cost")
        if np.any(cost < 0):
            raise ConfigError("Costs must be >= 0 USD.")
        prices = {str(k): float(v) for k, v in (self.prices or {}).items()}
        for model, price in prices.items():
            if not math.isfinite(price) or price < 0:
                raise ConfigError(f"The price of {model} must be a finite USD amount >= 0.")
        for j, model in enumerate(models):
            if np.all(np.isnan(cost[:, j])) and model not in prices:
                raise ConfigError(
                    f"No cost is known for {model}: no call was priced and no price was given.",
                    hint="Pass prices={model: usd_per_call} or price the model in the catalogue.",
                )
        if int(np.sum(~np.isnan(quality).any(axis=1))) < MIN_ITEMS:
            raise ConfigError(
                f"A learned router needs at least {MIN_ITEMS} items judged for every model.",
                hint="Judge more items (a few hundred make a useful router).",
            )
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "cost", cost)
        object.__setattr__(self, "prices", prices)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def filled_cost(self) -> np.ndarray:
        """``cost`` with each unknown cell set to the model's price, else its mean measured cost."""
        import numpy as np

        cost = np.array(self.cost, dtype=float)
        for j, price in enumerate(self.per_call_prices):
            cost[np.isnan(cost[:, j]), j] = price
        return cost

    @property
    def per_call_prices(self) -> np.ndarray:
        """USD per call by model: the mean measured cost, else the given price."""
        import numpy as np

        assert self.prices is not None
        out = []
        for j, model in enumerate(self.models):
            measured = self.cost[:, j][~np.isnan(self.cost[:, j])]
            out.append(float(measured.mean()) if len(measured) else self.prices[model])
        return np.array(out)

    def subset(self, models: Sequence[str]) -> RoutingEvidence:
        """The same evidence for some of the models (say the cheapest and the best, for APGR)."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise ConfigError(f"Not among the evidence's models: {unknown}; known: {self.models}.")
        columns = [list(self.models).index(m) for m in models]
        assert self.prices is not None
        return RoutingEvidence(
            self.prompts, list(models), self.quality[:, columns], self.cost[:, columns],
            {m: p for m, p in self.prices.items() if m in models}, self.source, self.date,
        )  # fmt: skip


def _table(values: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    import numpy as np

    try:
        rows = [[math.nan if v is None else float(v) for v in row] for row in values]
        array = np.array(rows, dtype=float) if rows else np.zeros((0, shape[1]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"The {name} table must hold numbers or None: {exc}.") from exc
    if array.shape != shape:
        raise ConfigError(
            f"The {name} table has shape {array.shape}; expected {shape} (items x models)."
        )
    return array
