"""A batch's progress: counts per model, and what a view of them must do (``views``
chooses the view a batch gets)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "BatchProgress",
    "BatchStats",
    "ModelStats",
]


# -- progress ------------------------------------------------------------------------------------


@dataclass
class ModelStats:
    """Running counts of one model's calls (a judge's are under ``"judge <name>"``)."""

    name: str
    total: int = 0  # calls this run will make or take from the log
    done: int = 0  # finished this run, ok or not
    failed: int = 0
    resumed: int = 0  # taken from the run log, not sent
    cost: float = 0.0  # of the priced calls
    unpriced: int = 0  # answered calls whose cost is unknown (shown as missing, never $0)
    throttled: int = 0  # 429 answers
    started: float | None = None  # perf_counter of the first send
    last: float | None = None  # of the last finish

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.resumed, 0)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this model's pace so far; None before the first answer."""
        if self.remaining == 0:
            return 0.0
        if not self.done or self.started is None or self.last is None:
            return None
        return (self.last - self.started) / self.done * self.remaining


@dataclass
class BatchStats:
    """What a progress view shows: per model counts, the worst case, the phase."""

    models: dict[str, ModelStats] = field(default_factory=dict)
    worst_case_cost: float | None = None
    phase: str = "answering"  # then "judging", then "done" (or "stopped")
    started: float = field(default_factory=time.perf_counter)

    def model(self, name: str) -> ModelStats:
        stats = self.models.get(name)
        if stats is None:
            stats = self.models[name] = ModelStats(name)
        return stats

    @property
    def cost(self) -> float:
        return sum(m.cost for m in self.models.values())

    @property
    def unpriced(self) -> int:
        return sum(m.unpriced for m in self.models.values())

    @property
    def done(self) -> int:
        return sum(m.done + m.resumed for m in self.models.values())

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models.values())

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.models.values())


class BatchProgress(Protocol):
    """A live view of a batch; these methods are called on the event loop's thread.

    A view may also have ``close()``: called on the caller's thread once the
    batch has returned or stopped (a widget replaces itself with static HTML).
    """

    def start(self, stats: BatchStats) -> None: ...
    def update(self, stats: BatchStats) -> None: ...
    def finish(self, stats: BatchStats) -> None: ...
