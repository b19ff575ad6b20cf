"""Batch evaluation: a table of items × several models, judged, into one DataFrame.

The usual way in is the Orchestrator::

    br = orc.batch(df, models=["a", "b"], prompt="{question}", judges=["j"])
    br.leaderboard()

which builds a ``BatchSpec`` (every option, checked once) and hands this layer
the call engine's part a batch runs on (a ``BatchContext``). The modules:

* ``datasets``: ``load_items`` and the shipped question set (``eval_questions``);
* ``spec``: ``BatchSpec`` and ``BatchContext``;
* ``plan``: items, calls, resume from the run log, the worst-case budget;
* ``run``: the calls and the judging on this process's loop (``scheduler``, ``limits``);
* ``batch``: the entry points ``run_batch``, ``arun_batch``, ``estimate_batch``;
* ``result`` and ``rows``: ``BatchResult`` and its one row type;
* ``progress``: the counts a progress view is shown (``notebook.batch_view`` draws them);
* ``ratings``: Bradley–Terry ratings, win matrices, judges' biases and agreement;
* ``scorers`` and ``scoring``: answers checked by code (exact, numeric, ...), their statistics;
* ``text_progress``: the status block a plain script or terminal shows on stderr;
* ``persist`` and ``report``: ``br.save`` / ``load_batch`` and ``br.to_html``;
* ``ray``: the same batch on Ray workers (``engine="ray"``), imported only then.

This layer sits above ``orchestration`` and never imports the Orchestrator.
"""

from __future__ import annotations

from . import scorers
from .batch import arun_batch, estimate_batch, run_batch
from .datasets import eval_questions, load_items
from .progress import BatchProgress, BatchStats, ModelStats
from .ratings import (
    Comparison,
    Rating,
    bradley_terry,
    bradley_terry_intervals,
    judge_agreement,
    position_bias,
    win_matrix,
)
from .result import BatchResult, load_batch
from .spec import BatchContext, BatchSpec
from .views import set_default_progress

__all__ = [
    "BatchContext",
    "BatchProgress",
    "BatchResult",
    "BatchSpec",
    "BatchStats",
    "Comparison",
    "ModelStats",
    "Rating",
    "arun_batch",
    "bradley_terry",
    "bradley_terry_intervals",
    "estimate_batch",
    "eval_questions",
    "judge_agreement",
    "load_batch",
    "load_items",
    "position_bias",
    "run_batch",
    "scorers",
    "set_default_progress",
    "win_matrix",
]
