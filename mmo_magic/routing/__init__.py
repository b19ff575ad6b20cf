"""Routers: choose a model for a prompt without calling any model, and say why.

Four routers share one interface, ``Router.route(request, catalogue) -> RouteDecision``:

- ``TaskRouter`` ("task") classifies what the prompt asks for (coding, math,
  translation...) with a learned classifier plus weighted cues (a second, topic
  model over content words splits science from humanities), and sends each task
  to a preference list; an unsure guess falls back to the default model.
- ``ComplexityRouter`` ("complexity") scores how demanding the prompt is and
  picks the cheapest model of a tier that can handle it.
- ``RulesRouter`` ("rules") applies user
  ``RoutingRule``s in priority order; ``task_router`` builds one that sends
  every prompt to one task's models.
- ``CostOptimizedRouter`` ("cost") counts tokens and picks the cheapest model
  of at least a given tier, under an optional cap per call.

Routers only choose *available* models (``ModelConfig.available``: the key
is set). When a preferred model is unavailable they try the next one and the
reason says so, naming the model and what is missing. Only when no model at
all is available do they raise ``ConfigError``.

Costs in decisions are estimates: input tokens are counted with
``mmo_magic.core.pricing`` (exact for OpenAI models, an estimate elsewhere) and the
output length is guessed by ``guess_output_tokens``.

Fall-through order: a router's own candidates first (a task's or rule's
preference list, the cheapest model of the needed tier), then ``default``
(the orchestrator passes its default model), then the cheapest available
model. Simulated (sim-*) models are chosen only when no real model qualifies,
so routing works offline without ever preferring a simulation to a real model.

Routing must stay cheap enough to run before every call: the task classifier
reads the ~100 weight rows a prompt's hashed n-grams touch, the cues are a word
lookup plus regular expressions indexed by the words and characters they need
(a prompt visits only the few that can match), and token counts are cached per
text and vocabulary. numpy loads with the first task decision, not on import.
``evaluate_router`` measures a classifier against labelled prompts
(``load_routing_prompts`` ships a labelled set); it imports pandas lazily.

Modules: ``base`` (the interface, decisions, shared helpers), ``cues`` (the task
cue tables), ``features`` (text representations for learned routing),
``task_model`` (the learned task classifier, its data and its cross-source
evaluation), ``task``, ``complexity``, ``rules``, ``cost`` (one router each),
``learned`` (routers learned from judged results) and ``evaluation``. Imports
only the core.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import ConfigError
from .base import COMPLEXITY_LEVELS, ROUTERS, TASKS, TIER_FOR_LEVEL, RouteDecision, Router
from .complexity import ComplexityAssessment, ComplexityRouter
from .cost import CostOptimizedRouter
from .evaluation import RouterEvaluation, evaluate_router, load_routing_prompts
from .rules import RoutingRule, RulesRouter, seed_rules, task_router
from .task import TaskGuess, TaskRouter

__all__ = [
    "COMPLEXITY_LEVELS",
    "ROUTERS",
    "TASKS",
    "TIER_FOR_LEVEL",
    "ComplexityAssessment",
    "ComplexityRouter",
    "CostOptimizedRouter",
    "RouteDecision",
    "Router",
    "RouterEvaluation",
    "RoutingRule",
    "RulesRouter",
    "TaskGuess",
    "TaskRouter",
    "evaluate_router",
    "load_routing_prompts",
    "make_router",
    "seed_rules",
    "task_router",
]


def make_router(
    name: str,
    *,
    default: str | None = None,
    task_models: Mapping[str, Sequence[str]] | None = None,
    **options: Any,
) -> Router:
    """The router called ``name`` ("rules", "complexity", "task" or "cost").

    ``options`` go to its constructor (``rules=`` for "rules", ``models=`` for
    "complexity", ``min_tier=``/``max_cost=``... for "cost"); ``task_models``
    is used by the task router only, so callers may always pass it.
    """
    key = name.strip().lower()
    try:
        if key == "rules":
            return RulesRouter(options.pop("rules", None), default=default, **options)
        if key == "complexity":
            return ComplexityRouter(default=default, **options)
        if key == "task":
            return TaskRouter(task_models=task_models, default=default, **options)
        if key == "cost":
            return CostOptimizedRouter(default=default, **options)
    except TypeError as exc:  # an option the router does not take
        raise ConfigError(f"Bad option for the {key!r} router: {exc}.") from exc
    close = difflib.get_close_matches(key, ROUTERS, n=1, cutoff=0.4)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"Unknown router {name!r}.", hint=f"{hint}Routers: {', '.join(ROUTERS)}.")
