"""The rules router: user ``RoutingRule``s tried in priority order (``RulesRouter``),
an example rule set, and ``task_router`` for a fixed task."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.completion import CompletionRequest
from ..core.errors import ConfigError, InvalidRequestError
from ..core.models import Catalogue
from ..core.pricing import input_tokens
from .base import (
    COMPLEXITY_LEVELS,
    TASKS,
    RouteDecision,
    Router,
    _as_request,
    _builtin_catalogue,
    _Trail,
)
from .complexity import ComplexityAssessment, ComplexityRouter
from .task import TaskGuess, TaskRouter

__all__ = ["RoutingRule", "RulesRouter", "seed_rules", "task_router"]


def _as_set(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    values = frozenset([value] if isinstance(value, str) else value)
    for v in values:
        if v not in allowed:
            close = difflib.get_close_matches(v, allowed, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Use one of {', '.join(allowed)}."
            raise ConfigError(f"Unknown {what} {v!r} in a routing rule.", hint=hint)
    return values


@dataclass
class RoutingRule:
    """Send matching prompts to ``models`` (first available wins).

    Every condition given must hold: ``task`` and ``complexity`` (one name or
    several) as classified by TaskRouter and ComplexityRouter, ``min_tokens``
    and ``max_tokens`` on the request's input tokens (counted with o200k_base),
    ``pattern`` (a regex searched case-insensitively in the prompt) and
    ``when`` (any predicate on the request). A rule with no condition always
    matches. Higher ``priority`` is tried first; ties keep declaration order.
    """

    name: str
    models: list[str]
    priority: int = 0
    task: str | list[str] | None = None
    complexity: str | list[str] | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    pattern: str | None = None
    when: Callable[[CompletionRequest], bool] | None = None
    _tasks: frozenset[str] = field(init=False, repr=False, compare=False)
    _levels: frozenset[str] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError(f"Routing rule {self.name!r} lists no models.")
        self.models = [self.models] if isinstance(self.models, str) else list(self.models)
        self._tasks = _as_set(self.task, TASKS, "task")
        self._levels = _as_set(self.complexity, COMPLEXITY_LEVELS, "complexity level")
        try:
            self._regex = re.compile(self.pattern, re.IGNORECASE) if self.pattern else None
        except re.error as exc:
            raise ConfigError(
                f"Routing rule {self.name!r}: bad pattern {self.pattern!r}: {exc}."
            ) from exc


class _Signals:
    """What rules ask about a request, each computed at most once and only when asked."""

    def __init__(self, request: CompletionRequest, router: RulesRouter) -> None:
        self.request = request
        self.prompt = request.prompt_text
        self._router = router
        self._task: TaskGuess | None = None
        self._complexity: ComplexityAssessment | None = None
        self._tokens: int | None = None

    @property
    def task(self) -> TaskGuess:
        if self._task is None:
            self._task = self._router.task_router.detect(self.prompt)
        return self._task

    @property
    def complexity(self) -> ComplexityAssessment:
        if self._complexity is None:
            self._complexity = self._router.complexity_router.assess(self.prompt, self.task.task)
        return self._complexity

    @property
    def tokens(self) -> int:
        if self._tokens is None:
            self._tokens = input_tokens(self.request)
        return self._tokens

    def match(self, rule: RoutingRule) -> list[str] | None:
        """What made ``rule`` match (empty when it has no conditions), or None."""
        matched: list[str] = []
        if rule._tasks:
            if self.task.task not in rule._tasks:
                return None
            evidence = [*self.task.signals[:2], *(repr(t) for t in self.task.terms[:2])]
            why = f", matched: {', '.join(evidence)}" if evidence else ""
            matched.append(f"task={self.task.task} ({self.task.confidence:.2f}){why}")
        if rule._levels:
            if self.complexity.level not in rule._levels:
                return None
            matched.append(f"complexity={self.complexity.level} (score {self.complexity.score})")
        if rule.min_tokens is not None or rule.max_tokens is not None:
            n = self.tokens
            if rule.min_tokens is not None and n < rule.min_tokens:
                return None
            if rule.max_tokens is not None and n > rule.max_tokens:
                return None
            bounds = []
            if rule.min_tokens is not None:
                bounds.append(f">= {rule.min_tokens:,}")
            if rule.max_tokens is not None:
                bounds.append(f"<= {rule.max_tokens:,}")
            matched.append(f"{n:,} tokens {' and '.join(bounds)}")
        if rule._regex is not None:
            found = rule._regex.search(self.prompt)
            if found is None:
                return None
            matched.append(f"pattern matched {found.group(0)[:40]!r}")
        if rule.when is not None:
            if not rule.when(self.request):
                return None
            matched.append(f"when {getattr(rule.when, '__name__', 'predicate')}() is true")
        return matched


class RulesRouter(Router):
    """Routes with user rules: the first matching rule with an available model wins.

    Rules are tried by ``priority`` (higher first), then in the order given.
    A rule that matches but has no available model is skipped and the reason
    says so; when no rule applies, ``default`` is used, and failing that the
    cheapest available model.
    """

    name = "rules"

    def __init__(self, rules: Iterable[RoutingRule] | None = None, default: str | None = None):
        super().__init__(default)
        given = list(rules) if rules is not None else seed_rules()
        # sorted() is stable, so equal priorities keep their declaration order.
        self.rules = sorted(given, key=lambda r: -r.priority)
        self._task_router: TaskRouter | None = None
        self._complexity_router: ComplexityRouter | None = None

    @property
    def task_router(self) -> TaskRouter:
        if self._task_router is None:
            self._task_router = TaskRouter()
        return self._task_router

    @property
    def complexity_router(self) -> ComplexityRouter:
        if self._complexity_router is None:
            self._complexity_router = ComplexityRouter()
        return self._complexity_router

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        signals = _Signals(request, self)
        trail = _Trail(request)
        for rule in self.rules:
            matched = signals.match(rule)
            if matched is None:
                continue
            model = trail.pick(rule.models, catalogue, prefix=f"rule {rule.name!r} matched but ")
            if model is None:
                continue
            why = "; ".join(matched) or "always"
            head = f"rule {rule.name!r} ({why})"
            label = (
                signals.task.task
                if rule._tasks
                else signals.complexity.level
                if rule._levels
                else None
            )
            return self._decide(
                request, model, f"rule:{rule.name}", trail.reason(head, model.name), label
            )
        return self._fall_back(request, catalogue, trail, "no rule applied", None)

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.rules)
        return f"RulesRouter(rules=[{names}], default={self.default!r})"


def seed_rules() -> list[RoutingRule]:
    """An example rule set: long prompts, code, simple questions, and a balanced default."""
    return [
        RoutingRule(
            "long-prompts",
            models=["gpt-4.1", "gpt-5", "claude-sonnet-4-5", "sim-slow"],
            min_tokens=2000,
            priority=30,
        ),
        RoutingRule(
            "coding",
            models=["claude-sonnet-4-5", "gpt-5", "gpt-4.1", "sim-slow"],
            task="coding",
            priority=20,
        ),
        RoutingRule(
            "simple-questions",
            models=["gpt-5-nano", "gpt-4.1-nano", "claude-3-5-haiku", "sim-fast"],
            complexity="simple",
            priority=10,
        ),
        RoutingRule(
            "balanced", models=["gpt-5-mini", "claude-haiku-4-5", "gpt-4.1-mini", "sim-slow"]
        ),
    ]


def task_router(
    task: str,
    *,
    task_models: Mapping[str, Sequence[str]] | None,
    default: str | None,
) -> Router:
    """A rules router sending every prompt to ``task``'s models, first available wins.

    What ``%%mmo -t TASK`` and the service's ``task_type`` field route with.
    ``task_models`` is merged over ``TaskRouter.DEFAULT_TASK_MODELS``, as the
    task router does; ``default`` is the fall-back when none of the task's
    models is available. An unknown ``task`` raises ``InvalidRequestError``
    with the closest known task, or the known ones.
    """
    known = TaskRouter(task_models=task_models).task_models
    if task not in known:
        close = difflib.get_close_matches(task, list(known), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known: {', '.join(sorted(known))}."
        raise InvalidRequestError(f"Unknown task {task!r}.", hint=hint)
    rule = RoutingRule(name=f"task {task}", models=list(known[task]))
    return RulesRouter([rule], default=default)
