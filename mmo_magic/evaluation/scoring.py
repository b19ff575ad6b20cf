"""Scores of a batch's answers, their statistics, and what a saved result records.

``score_rows`` runs each scorer over every row once the batch has run (scorers are
code: nothing is sent). ``score_table`` turns the scores into per-model figures:
the mean, a 95% bootstrap interval, how many items the model was scored on, how
many failed answers were left out, and with ``epochs > 1`` the variance of the
model's mean across repeats. The interval resamples items and, within each item,
its repeats, so both sources of noise widen it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .scorers import Scorer

if TYPE_CHECKING:
    from ..core.models import ModelConfig
    from .rows import ItemRow
    from .spec import BatchSpec

__all__ = [
    "ScoreStats",
    "describe",
    "describe_spec",
    "prices_of",
    "score_rows",
    "score_table",
]


def score_rows(
    scorers: Sequence[Scorer], items: Sequence[Mapping[str, Any]], rows: Sequence[ItemRow]
) -> list[dict[str, Any]]:
    """One entry per (row, scorer): item, epoch, model, scorer, score (None: left out),
    and whether the answer had failed."""
    out: list[dict[str, Any]] = []
    for scorer in scorers:
        for row in rows:
            ok = row["status"] == "ok"
            out.append({
                "item": row["item"], "epoch": row.get("epoch", 0), "model": row["model"],
                "scorer": scorer.name, "score": scorer(row["answer"], items[row["item"]], ok),
                "failed": not ok,
            })  # fmt: skip
    return out


def describe(scorers: Sequence[Scorer]) -> list[dict[str, str]]:
    """What a result keeps of its scorers (the functions stay behind): name and failed."""
    return [{"name": s.name, "failed": s.failed} for s in scorers]


def failed_rule(failed: str) -> str:
    return "scored 0" if failed == "zero" else "left out"


@dataclass(frozen=True)
class ScoreStats:
    """One model under one scorer."""

    mean: float
    low: float
    high: float
    items: int  # items with at least one score
    left_out: int  # failed answers not scored (failed="skip")
    epoch_var: float  # variance of the model's mean across repeats (NaN with one)


def score_table(
    scores: Sequence[Mapping[str, Any]], scorer: str, models: Sequence[str], epochs: int,
    *, rounds: int = 500, seed: int | None = 0,
) -> dict[str, ScoreStats]:  # fmt: skip
    """Per model: ``scorer``'s figures over ``scores`` (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, ScoreStats] = {}
    for model in models:
        mine = [s for s in scores if s["scorer"] == scorer and s["model"] == model]
        left_out = sum(1 for s in mine if s["score"] is None and s["failed"])
        items = sorted({int(s["item"]) for s in mine if s["score"] is not None})
        if not items:
            nan = math.nan
            out[model] = ScoreStats(nan, nan, nan, 0, left_out, nan)
            continue
        where = {item: i for i, item in enumerate(items)}
        grid = np.full((len(items), max(epochs, 1)), np.nan)
        for s in mine:
            if s["score"] is not None:
                grid[where[int(s["item"])], int(s["epoch"])] = float(s["score"])
        per_item = np.nanmean(grid, axis=1)
        mean = float(per_item.mean())
        n, e = grid.shape
        picks = rng.integers(0, n, size=(rounds, n))
        repeats = rng.integers(0, e, size=(rounds, n, e))
        drawn = grid[picks[:, :, None], repeats]  # items, then each item's repeats
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                draws = np.nanmean(np.nanmean(drawn, axis=2), axis=1)
                epoch_means = np.nanmean(grid, axis=0)
        draws = draws[np.isfinite(draws)]
        low, high = np.quantile(draws, [0.025, 0.975]) if len(draws) else (math.nan, math.nan)
        finite = epoch_means[np.isfinite(epoch_means)]
        var = float(np.var(finite, ddof=1)) if len(finite) > 1 else math.nan
        out[model] = ScoreStats(mean, float(low), float(high), n, left_out, var)
    return out


def describe_spec(spec: BatchSpec) -> dict[str, Any]:
    """The spec as JSON-able values (the data and the scorers' functions stay behind)."""
    from .limits import Limits

    keep = (
        "models", "prompt", "system", "judges", "judge_mode", "criteria", "reference_column",
        "temperature", "max_tokens", "seed", "top_p", "stop", "frequency_penalty",
        "presence_penalty", "epochs", "fallbacks", "cache", "allow_unpriced", "concurrency",
        "budget", "rerun", "key", "engine", "workers",
    )  # fmt: skip
    out: dict[str, Any] = {}
    for name in keep:
        value = getattr(spec, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    out["scorers"] = describe(spec.scorers)
    limits = Limits.of(spec.limits)
    out["limits"] = {
        m: {k: v for k, v in vars_of(limit).items() if v is not None}
        for m, limit in limits.limits.items()
    }
    return out


def vars_of(limit: Any) -> dict[str, Any]:
    names = ("requests_per_minute", "tokens_per_minute", "max_concurrency")
    return {n: getattr(limit, n) for n in names}


def prices_of(config: ModelConfig) -> dict[str, float | None]:
    """USD per 1k input and output tokens of a model (None: unpriced)."""
    return {
        "cost_per_1k_input": config.cost_per_1k_input,
        "cost_per_1k_output": config.cost_per_1k_output,
    }
