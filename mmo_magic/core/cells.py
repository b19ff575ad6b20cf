"""Which notebook cell a call comes from, as its front end says: the run records' ``cell``.

The call engine records ``current_cell()`` with every call and knows nothing of
IPython: the notebook layer installs the reader (``notebook.cells``, when the
package is imported), and without one (a plain script, the service) calls come
from no cell. A reader rather than a value set per cell, because a worker thread
that a cell starts must still see that cell, and threads inherit no context.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["current_cell", "read_cells_with"]

CellReader = Callable[[], int | None]


def _no_cell() -> int | None:
    return None


_reader: CellReader = _no_cell


def read_cells_with(reader: CellReader | None) -> None:
    """Make ``reader`` the source of the running cell's number (None: calls have no cell)."""
    global _reader
    _reader = reader or _no_cell


def current_cell() -> int | None:
    """The number the notebook shows beside the cell the caller runs in; None outside one."""
    return _reader()
