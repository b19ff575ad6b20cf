"""Aggregates of pairwise judgements: tallies, Bradley–Terry ratings, judges' biases.

Pure computation over plain rows, no I/O. A *comparison* is one judge's
final verdict (both orders merged) on two models' answers to one item:
``Comparison(item, model_a, model_b, score)`` with ``score`` 1 when
``model_a`` won, 0 when ``model_b`` won and 0.5 for a tie.

Bradley–Terry: each model has a strength ``p``; ``a`` beats ``b`` with
probability ``p_a / (p_a + p_b)``. Strengths are fitted by Hunter's MM
algorithm (ties count half a win to each side) with a weak prior (half a win
and half a loss against a reference model of strength 1), so a model that
won every comparison still gets a finite rating. Ratings are on the Elo
scale: ``1000 + 400 * log10(p)`` with the geometric mean strength at 1000.
Confidence intervals come from a bootstrap over *items* (an item's
comparisons are resampled together, since they share the item's
difficulty).

A judge's *position bias* shows in swap-order judging: a verdict that
changes when the two answers trade places followed the position, not the
answers (see ``judges.combine_swap``).

numpy is imported inside the functions that need it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Comparison",
    "Rating",
    "bradley_terry",
    "bradley_terry_intervals",
    "judge_agreement",
    "position_bias",
    "win_matrix",
]

TIE = "tie"
_PRIOR = 0.5


@dataclass(frozen=True, slots=True)
class Comparison:
    """One verdict on two models' answers to one item; ``score`` is model_a's (1, 0.5, 0)."""

    item: Hashable
    model_a: str
    model_b: str
    score: float


@dataclass(frozen=True, slots=True)
class Rating:
    """A model's Bradley–Terry rating (Elo scale) with a bootstrap interval."""

    model: str
    rating: float
    low: float
    high: float


def win_matrix(
    comparisons: Iterable[Comparison], models: Sequence[str]
) -> dict[str, dict[str, tuple[int, int, int]]]:
    """``matrix[a][b] = (wins, ties, losses)`` of ``a`` against ``b``."""
    counts: dict[str, dict[str, list[int]]] = {
        a: {b: [0, 0, 0] for b in models if b != a} for a in models
    }
    for c in comparisons:
        if c.model_a not in counts or c.model_b not in counts[c.model_a]:
            continue
        column = 0 if c.score == 1 else 1 if c.score == 0.5 else 2
        counts[c.model_a][c.model_b][column] += 1
        counts[c.model_b][c.model_a][2 - column] += 1
    return {a: {b: (w, t, lo) for b, (w, t, lo) in row.items()} for a, row in counts.items()}


def _wins_array(comparisons: Iterable[Comparison], index: Mapping[str, int]) -> Any:
    import numpy as np

    wins = np.zeros((len(index), len(index)))
    for c in comparisons:
        a, b = index.get(c.model_a), index.get(c.model_b)
        if a is None or b is None or a == b:
            continue
        wins[a, b] += c.score
        wins[b, a] += 1 - c.score
    return wins


def _fit(wins: Any, iterations: int = 500, tolerance: float = 1e-10) -> Any:
    """Strengths (geometric mean 1) from ``wins[i, j]``, by MM iterations with the prior."""
    import numpy as np

    k = wins.shape[0]
    games = wins + wins.T
    won = wins.sum(axis=1) + _PRIOR
    p = np.ones(k)
    for _ in range(iterations):
        pair = p[:, None] + p[None, :]
        np.fill_diagonal(pair, 1.0)
        denominator = (games / pair).sum(axis=1) + 2 * _PRIOR / (p + 1.0)
        new = won / denominator
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < tolerance:
            return new
        p = new
    return p


def _elo(strengths: Any) -> Any:
    import numpy as np

    return 1000.0 + 400.0 * np.log10(strengths)


def bradley_terry(comparisons: Iterable[Comparison], models: Sequence[str]) -> dict[str, float]:
    """Each model's Bradley–Terry rating on the Elo scale (1000 = the geometric mean)."""
    if not models:
        return {}
    index = {m: i for i, m in enumerate(models)}
    ratings = _elo(_fit(_wins_array(comparisons, index)))
    return {m: float(ratings[i]) for m, i in index.items()}


def bradley_terry_intervals(
    comparisons: Sequence[Comparison],
    models: Sequence[str],
    *,
    rounds: int = 500,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> list[Rating]:
    """Ratings with bootstrap intervals (items resampled with replacement), best first."""
    import numpy as np

    if not models:
        return []
    index = {m: i for i, m in enumerate(models)}
    point = _elo(_fit(_wins_array(comparisons, index)))
    by_item: dict[Hashable, list[Comparison]] = defaultdict(list)
    for c in comparisons:
        by_item[c.item].append(c)
    low = high = point
    if by_item and rounds > 0:
        per_item = np.stack([_wins_array(cs, index) for cs in by_item.values()])
        rng = np.random.default_rng(seed)
        n = len(per_item)
        samples = np.empty((rounds, len(models)))
        for r in range(rounds):
            draws = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            samples[r] = _elo(_fit(np.tensordot(draws, per_item, axes=1), iterations=200))
        alpha = (1 - confidence) / 2
        low = np.quantile(samples, alpha, axis=0)
        high = np.quantile(samples, 1 - alpha, axis=0)
    out = [
        Rating(m, float(point[i]), float(min(low[i], point[i])), float(max(high[i], point[i])))
        for m, i in index.items()
    ]
    return sorted(out, key=lambda r: -r.rating)


def position_bias(judgements: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per judge: how its verdicts depend on the order the answers were shown in.

    Each judgement is a mapping with ``judge``, ``model_a``, ``model_b`` and the
    winner (a model name, "tie", or None when unusable) in the original order
    (``first``: model_a shown first) and the swapped one (``swapped``).

    Returns per judge: ``pairs`` judged in both orders, ``flip_rate`` (share
    whose winner changed with the order: a tie in one order and a win in the
    other, or two different winners), ``position_bias_rate`` (share whose two
    verdicts both picked the same *position*, so named opposite models), and
    ``first_position_rate`` (share of decisive verdicts that chose the answer
    shown first: 0.5 for a judge that ignores the order).
    """
    stats: dict[str, dict[str, float]] = defaultdict(
        lambda: {"pairs": 0, "flips": 0, "position": 0, "decisive": 0, "first_won": 0}
    )
    for j in judgements:
        first, swapped = j.get("first"), j.get("swapped")
        s = stats[str(j["judge"])]
        a, b = j["model_a"], j["model_b"]
        for winner, shown_first in ((first, a), (swapped, b)):
            if winner not in (None, TIE):
                s["decisive"] += 1
                s["first_won"] += winner == shown_first
        if first is None or swapped is None:
            continue
        s["pairs"] += 1
        s["flips"] += first != swapped
        s["position"] += TIE not in (first, swapped) and first != swapped
    out = {}
    for judge, s in stats.items():
        out[judge] = {
            "pairs": s["pairs"],
            "flip_rate": s["flips"] / s["pairs"] if s["pairs"] else math.nan,
            "position_bias_rate": s["position"] / s["pairs"] if s["pairs"] else math.nan,
            "first_position_rate": s["first_won"] / s["decisive"] if s["decisive"] else math.nan,
        }
    return out


def judge_agreement(judgements: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Per pair of judges: the share of comparisons both settled on which their verdicts agree.

    A judgement's verdict is its ``winner`` (both orders merged; None when unusable).
    """
    verdicts: dict[tuple[Any, str, str], dict[str, str]] = defaultdict(dict)
    for j in judgements:
        if j.get("winner") is not None:
            verdicts[(j["item"], j["model_a"], j["model_b"])][str(j["judge"])] = j["winner"]
    judges = sorted({judge for v in verdicts.values() for judge in v})
    out: dict[tuple[str, str], float] = {}
    for x, y in itertools.combinations(judges, 2):
        both = [v for v in verdicts.values() if x in v and y in v]
        out[(x, y)] = sum(v[x] == v[y] for v in both) / len(both) if both else math.nan
    return out
