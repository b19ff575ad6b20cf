"""The running cell's number under IPython, handed down to the call engine (``core.cells``).

Importing this module installs the reader; the package root imports it, so calls
carry their cell from the first one, with or without ``%load_ext mmo_magic``.
It never imports IPython itself: a plain script pays nothing for it.
"""

from __future__ import annotations

import sys

from ..core.cells import read_cells_with

__all__ = ["running_cell"]


def running_cell() -> int | None:
    """The number the notebook shows beside the running cell; None outside IPython.

    ``shell.execution_count`` is the wrong source: IPython 9 increments it before
    the cell runs and IPython 8 after, so it names this cell on one and the next
    on the other. The cell's own ``ExecutionResult`` carries its number on both;
    the display hook holds it while the cell's code runs. Between cells (a worker
    thread a cell started, still going) it is the last cell that ran.
    """
    ipython = sys.modules.get("IPython")  # loaded only if a shell could be running
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return None
    running = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    result = running if running is not None else getattr(shell, "last_execution_result", None)
    count = getattr(result, "execution_count", None)
    return count if isinstance(count, int) else None


read_cells_with(running_cell)
