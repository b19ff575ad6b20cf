"""One try at one model: what a response lists in ``attempts`` and what errors carry.

Its own module so that the response types and the error tree can both use it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Attempt", "Status"]

Status = Literal["ok", "error", "cancelled", "timeout"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one model within a call."""

    model: str
    provider: str
    status: Status
    error: str | None = None
    latency_ms: float | None = None
    run_id: str | None = None
