"""Where run records go: the one small interface the call engine and batches write to.

The engine adds a record per attempt; a batch flushes before it reads and, on
resume, reads back one group's records. :class:`~mmo_magic.storage.runlog.RunLog`
(SQLite) satisfies it structurally; so does the Ray workers' shipping log, which
sends each record to the driver instead of storing it.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .runlog import RunRecord

__all__ = ["RecordSink"]


@runtime_checkable
class RecordSink(Protocol):
    """Adds run records, writes them out, and reads a group's records back."""

    def add(self, record: RunRecord) -> concurrent.futures.Future[None]:
        """Take ``record``; the future completes once it is stored (or handed on)."""
        ...

    def flush(self) -> None:
        """Store every record taken so far before returning."""
        ...

    def records(self, *, group_id: str | None = None) -> list[RunRecord]:
        """The stored records of ``group_id`` (every record when None), oldest first."""
        ...
