"""Which progress view a batch gets: the caller's, else the registered default (the
notebook layer registers its widget), else the text view when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Callable

from .progress import BatchProgress

__all__ = ["ProgressFactory", "default_progress", "set_default_progress"]

ProgressFactory = Callable[[], BatchProgress | None]
_default_progress: ProgressFactory | None = None


def set_default_progress(factory: ProgressFactory | None) -> None:
    """The view ``progress=None`` uses (the notebook layer registers one); None: no view."""
    global _default_progress
    _default_progress = factory


def default_progress() -> BatchProgress | None:
    """A new view from the registered factory (a notebook's), else the text view when
    stderr is a terminal (a plain script or shell), else None."""
    if _default_progress is not None:
        return _default_progress()
    from .text_progress import terminal_progress

    return terminal_progress()
