"""The price-aware policy and the measures of a routing curve, as array functions.

A policy sends item ``i`` to ``argmax_m quality[i, m] - knob * price_share[m]``,
where ``price_share`` is each model's price over the dearest model's, so the
knob is unitless: 0 means "best predicted quality, whatever it costs", and a
large knob means "the cheapest model". Ties go to the cheaper model.
With predicted qualities it is the learned router; with the measured ones, the
oracle.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["apgr", "choices", "knob_grid", "meets", "z_for"]

_TIE = 1e-9


def choices(quality: np.ndarray, price_share: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """The model index (knobs, items) the policy picks at each knob."""
    import numpy as np

    scores = (
        quality[None, :, :] - (np.asarray(knobs)[:, None, None] + _TIE) * price_share[None, None, :]
    )
    return np.asarray(np.argmax(scores, axis=2))


def knob_grid(quality: np.ndarray, price_share: np.ndarray, most: int = 400) -> np.ndarray:
    """Knob values that between them give every distinct policy (at most ``most`` of them).

    An item's choice changes only where two models' lines cross, at
    ``(q_a - q_b) / (p_a - p_b)``; one knob between each pair of neighbouring
    crossings, plus 0 and one past the last, covers every policy.
    """
    import numpy as np

    crossings = []
    for a in range(len(price_share)):
        for b in range(a + 1, len(price_share)):
            gap = price_share[a] - price_share[b]
            if gap != 0:
                crossings.append((quality[:, a] - quality[:, b]) / gap)
    points = np.concatenate(crossings) if crossings else np.zeros(0)
    points = np.unique(points[np.isfinite(points) & (points > 0)])
    if len(points) > most:
        points = np.quantile(points, np.linspace(0, 1, most))
    if len(points) == 0:
        return np.zeros(1)
    middles = (points[:-1] + points[1:]) / 2
    return np.concatenate([[0.0], middles, [points[-1] * 1.5 + 1e-6]])


def z_for(confidence: float) -> float:
    """The one-sided normal quantile for ``confidence`` (0.5 -> 0: the point estimate)."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return NormalDist().inv_cdf(confidence)


def meets(differences: np.ndarray, z: float) -> np.ndarray:
    """Per row of per-item ``differences`` (rows, items): is their mean >= 0 with a margin of
    ``z`` standard errors?

    The standard error is that of the difference between two means over as many items
    (``sd * sqrt(2 / n)``): the held-out one measured here, and the one a new batch of
    prompts of the same size will get. So ``z = 1.645`` asks that a target met on the
    held-out items also holds on such a new batch 95% of the time (under a normal
    approximation), rather than half of the time.
    """
    import numpy as np

    n = differences.shape[1]
    mean = differences.mean(axis=1)
    if z <= 0 or n < 2:
        return np.asarray(mean >= -1e-12)
    se = differences.std(axis=1, ddof=1) * math.sqrt(2.0 / n)
    return np.asarray(mean - z * se >= -1e-12)


def apgr(benefit: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    """Average performance gap recovered (RouteLLM) of routing by ``benefit``.

    Items go to the strong model in decreasing order of ``benefit`` (a
    router's predicted gain, or the measured one for the oracle); at each
    share of calls to it, the performance gap recovered is
    ``(quality - quality_weak) / (quality_strong - quality_weak)``, and APGR is
    its mean over shares from 0 to 1 (the area under that curve). Random
    routing scores 0.5; NaN when the two models score the same overall.
    """
    import numpy as np

    n = len(benefit)
    gap = float(strong.mean() - weak.mean())
    if n == 0 or gap == 0:
        return math.nan
    order = np.argsort(-benefit, kind="stable")
    gains = np.concatenate([[0.0], np.cumsum((strong - weak)[order])]) / n
    recovered = gains / gap
    return float((recovered[:-1] + recovered[1:]).sum() / (2 * n))  # trapezoids
