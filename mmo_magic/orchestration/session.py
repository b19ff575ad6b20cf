"""The orchestrator that magics (and anything else wanting a default) share per process."""

from __future__ import annotations

import threading

from .orchestrator import Orchestrator

__all__ = ["get_orchestrator", "use"]

_lock = threading.Lock()
_current: Orchestrator | None = None


def use(orc: Orchestrator | None) -> Orchestrator | None:
    """Make ``orc`` the shared orchestrator (None: build one from config on next use)."""
    global _current
    with _lock:
        _current = orc
    return orc


def get_orchestrator() -> Orchestrator:
    """The shared orchestrator, built with ``Orchestrator.from_config()`` on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Orchestrator.from_config()
        return _current
