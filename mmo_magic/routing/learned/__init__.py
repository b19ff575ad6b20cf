"""A router learned from judged results: which model does well on which prompts, and
what it costs.

Judged evidence (``RoutingEvidence``: prompts, per-model quality in [0, 1] and
cost) goes in; ``learn`` embeds the prompts (``routing.features``), fits a
quality predictor per model (ridge or kNN over the prompt vectors, chosen by
leave-one-out error), and measures the price-aware policy
``argmax_m predicted_quality - knob * price_share`` on held-out folds.
The ``LearnedRouting`` it returns draws the cost-quality curve and hands out a
``LearnedRouter`` at a quality or cost target (``at``). Routers are saved as
plain JSON (``router.save``, ``load_router``).

Modules: ``evidence`` (the input), ``predictors`` (ridge, kNN, sparse prompt
vectors), ``policy`` (choices, knob grid, APGR), ``fitting`` (cross-validation,
the curve, ``at``), ``router`` (the Router and its explanation), ``store``
(the file format). numpy and pandas are imported where used.
"""

from __future__ import annotations

from .evidence import RoutingEvidence
from .fitting import LearnedRouting, learn
from .router import LearnedDecision, LearnedRouter, load_router

__all__ = [
    "LearnedDecision",
    "LearnedRouter",
    "LearnedRouting",
    "RoutingEvidence",
    "learn",
    "load_router",
]
