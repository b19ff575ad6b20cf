"""A batch's row: how one (item, model) call ended, made by one constructor everywhere.

A row is a plain dict (a ``TypedDict``), so that it pickles to and from Ray
workers and goes into a DataFrame as it is. ``row()`` makes every row: from a
response, an error, a run record read back on resume, a call a dead Ray
worker lost, a call the batch never ran.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from ..core.completion import CompletionResponse
    from ..core.errors import MMOError
    from ..storage.runlog import RunRecord

__all__ = [
    "ROW_FIELDS",
    "ItemRow",
    "Row",
    "not_run_row",
    "row",
    "row_from_error",
    "row_from_record",
    "row_from_response",
]


class Row(TypedDict):
    """How one call of a batch ended; failures are rows too."""

    answer: str | None
    answered_by: str | None  # the model that answered (a fallback's name when it did)
    status: str  # "ok" | "error" | "cancelled" | "timeout"
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float | None
    latency_ms: float | None
    cost: float | None
    attempts: int
    cached: bool
    resumed: bool  # taken from the run log, not sent this time
    run_id: str | None


class ItemRow(Row):
    """A row of ``BatchResult.rows``: which item (its index and key) and which model."""

    item: int
    key: str
    model: str
    epoch: int  # which repeat of the (item, model) pair (0 without ``epochs=``)


ROW_FIELDS = tuple(Row.__annotations__)


def row(
    status: str,
    *,
    answer: str | None = None,
    answered_by: str | None = None,
    error: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    ttft_ms: float | None = None,
    latency_ms: float | None = None,
    cost: float | None = None,
    attempts: int = 0,
    cached: bool = False,
    resumed: bool = False,
    run_id: str | None = None,
) -> Row:
    """The one constructor of a row: every field present, unknown ones None."""
    return Row(
        answer=answer, answered_by=answered_by, status=status, error=error,
        input_tokens=input_tokens, output_tokens=output_tokens, ttft_ms=ttft_ms,
        latency_ms=latency_ms, cost=cost, attempts=attempts, cached=cached, resumed=resumed,
        run_id=run_id,
    )  # fmt: skip


def row_from_response(r: CompletionResponse, seen: list[CompletionResponse]) -> Row:
    """An answer; ``seen``: every attempt's outcome (their costs add up)."""
    costs = [x.cost for x in seen if x.cost is not None]
    return row(
        r.status, answer=r.content, answered_by=r.model, input_tokens=r.input_tokens,
        output_tokens=r.output_tokens, ttft_ms=r.ttft_ms, latency_ms=r.latency_ms,
        cost=sum(costs) if costs else r.cost, attempts=len(r.attempts) or len(seen) or 1,
        cached=r.cached, run_id=r.run_id,
    )  # fmt: skip


def row_from_error(exc: MMOError, seen: list[CompletionResponse]) -> Row:
    """A call that failed after its retries and fallbacks."""
    last = seen[-1] if seen else None
    costs = [x.cost for x in seen if x.cost is not None]
    return row(
        last.status if last is not None and last.status != "ok" else "error", error=str(exc),
        ttft_ms=last.ttft_ms if last else None, latency_ms=last.latency_ms if last else None,
        cost=sum(costs) if costs else None, attempts=len(exc.attempts) or len(seen),
        run_id=last.run_id if last else None,
    )  # fmt: skip


def row_from_record(r: RunRecord) -> Row:
    """A call the run log already has (resume)."""
    ok = r.status == "ok"
    return row(
        r.status, answer=r.response if ok else None, answered_by=r.model if ok else None,
        error=r.error, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
        ttft_ms=r.ttft_ms, latency_ms=r.latency_ms, cost=r.cost, attempts=r.attempt,
        cached=r.cached, resumed=True, run_id=r.run_id,
    )  # fmt: skip


def not_run_row(reason: str, status: str = "cancelled") -> Row:
    """A call that was never answered: the batch stopped, or its Ray workers died."""
    return row(status, error=reason)
