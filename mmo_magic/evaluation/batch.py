"""The entry points of a batch: run it here or on Ray, async or not, or price it first.

``run_batch(orc, data, models, prompt, **options)`` (or ``run_batch(orc,
spec)``; ``orc`` may be a ``BatchContext``) loads the spec's items, plans them (``plan``),
and runs the calls on this process's loop (``run``) or, with
``engine="ray"``, on Ray workers (``evaluation.ray``, imported only then).
It returns a ``BatchResult``: one row per (item, model), failures included.
``orc.batch(...)`` is the usual way in: it builds the spec and the context.

Raises BudgetExceededError (nothing sent), TemplateError or ConfigError
before any request; never for a failed call, which is a row.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from .datasets import load_items
from .progress import BatchProgress
from .result import BatchResult
from .run import Batch
from .spec import BatchContext, BatchSpec, RunsBatches, as_spec, context_of
from .views import default_progress

__all__ = ["arun_batch", "estimate_batch", "run_batch"]


def _prepare(context: BatchContext, spec: BatchSpec) -> Batch:
    """Everything before the first request: items, templates, the log, the budget."""
    batch = Batch(spec, context.complete, context.catalogue, load_items(spec.data))
    batch.read_log(context.runs)
    batch.check_budget(batch.resume())
    return batch


def _choose_progress(progress: BatchProgress | bool | None) -> BatchProgress | None:
    if progress is False:
        return None
    if progress is None or progress is True:
        return default_progress()
    return progress


def _running(
    context: BatchContext, batch: Batch, view: BatchProgress | None
) -> Coroutine[Any, Any, None]:
    if not batch.s.on_ray:
        return batch.run(view)
    from .ray.driver import run_on_ray

    return run_on_ray(context, batch, view)


def _close(view: BatchProgress | None) -> None:
    """Let a view replace itself with its final state, on the caller's thread."""
    close = getattr(view, "close", None)
    if close is not None:
        close()


def run_batch(
    on: BatchContext | RunsBatches,
    data: BatchSpec | Any,
    models: Sequence[str] | None = None,
    prompt: str | None = None,
    *,
    progress: BatchProgress | bool | None = None,
    **options: Any,
) -> BatchResult:
    """Ask every model about every item of ``data``; see the module docstring.

    ``data``: the items with ``models``, ``prompt`` (default ``"{question}"``) and
    ``BatchSpec``'s options, or a ``BatchSpec`` alone. ``progress``: a BatchProgress,
    False for none, None for the registered default. The sync twin of ``arun_batch``.
    """
    context = context_of(on)
    batch = _prepare(context, as_spec(data, models, prompt, options))
    view = _choose_progress(progress)
    try:
        context.loop.run(_running(context, batch, view))
    except KeyboardInterrupt as stop:
        # The stop button: the answers so far are a result too (``%%mmo_batch -o`` keeps
        # them, as a stopped race keeps its panels); rows never sent say "not run".
        stop.result = batch.result()  # type: ignore[attr-defined]
        raise
    finally:
        _close(view)  # a widget replaces itself with its final state on the caller's thread
    return batch.result()


async def arun_batch(
    on: BatchContext | RunsBatches,
    data: BatchSpec | Any,
    models: Sequence[str] | None = None,
    prompt: str | None = None,
    *,
    progress: BatchProgress | bool | None = None,
    **options: Any,
) -> BatchResult:
    """Async twin of ``run_batch``; cancelling it stops the batch (answers so far are kept)."""
    context = context_of(on)
    batch = _prepare(context, as_spec(data, models, prompt, options))
    view = _choose_progress(progress)
    try:
        await context.loop.arun(_running(context, batch, view))
    finally:
        _close(view)
    return batch.result()


def estimate_batch(
    on: BatchContext | RunsBatches,
    data: BatchSpec | Any,
    models: Sequence[str] | None = None,
    prompt: str | None = None,
    **options: Any,
) -> dict[str, float | None]:
    """The worst-case USD per model (and ``"judge <name>"``) of what the batch would send now.

    Calls the log already answered are not counted; None: an unpriced model. Sends nothing.
    """
    context = context_of(on)
    spec = as_spec(data, models, prompt, options)
    batch = Batch(spec, context.complete, context.catalogue, load_items(spec.data))
    batch.read_log(context.runs)
    return batch.worst_case(batch.resume())
