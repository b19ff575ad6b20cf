"""What every router shares: the ``Router`` interface, ``RouteDecision``, the task and
complexity names, and the helpers that pick among a catalogue's models and explain the pick."""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

from ..core.completion import CompletionRequest, Message
from ..core.errors import NoModelAvailableError, UnknownModelError
from ..core.models import Catalogue, ModelConfig
from ..core.money import format_usd
from ..core.pricing import guess_output_tokens, input_tokens
from ..core.text import escape_markdown

__all__ = [
    "COMPLEXITY_LEVELS",
    "ROUTERS",
    "TASKS",
    "TIER_FOR_LEVEL",
    "RouteDecision",
    "Router",
    "only_models",
]

TASKS = (
    "coding",
    "math",
    "reasoning",
    "extraction",
    "writing",
    "roleplay",
    "stem",
    "humanities",
    "translation",
    "summarization",
    "conversation",
)
COMPLEXITY_LEVELS = ("simple", "medium", "complex")
ROUTERS = ("rules", "complexity", "task", "cost")
TIER_FOR_LEVEL = {"simple": 1, "medium": 2, "complex": 3}


# -- decisions ----------------------------------------------------------------


@dataclass(frozen=True)
class RouteDecision:
    """Which model a router chose for one request, and why.

    ``rule`` names the branch that fired ("task:coding", "default"...);
    ``reason`` is one line for people; ``estimated_cost`` is USD for the
    input tokens plus the guessed output, None when the model is unpriced.
    """

    model: str
    router: str
    rule: str
    reason: str
    estimated_cost: float | None
    label: str | None = None
    input_tokens: int | None = None

    def __str__(self) -> str:
        return f"{self.model} ← {self.reason}"

    def _repr_markdown_(self) -> str:
        cost = "n/a" if self.estimated_cost is None else f"~{format_usd(self.estimated_cost)}"
        return (
            f"**{escape_markdown(self.model)}** · router {escape_markdown(self.router)} · "
            f"rule {escape_markdown(self.rule)} · est. {escape_markdown(cost)}\n\n"
            f"{escape_markdown(self.reason)}"
        )


# -- choosing among models ------------------------------------------------------


def _tier(model: ModelConfig) -> int:
    # A model without a tier is assumed small: it never meets a higher requirement by accident.
    return model.tier if model.tier is not None else 1


def _price_key(model: ModelConfig) -> tuple[bool, bool, float]:
    # Real models before simulated ones (a user with keys must never be routed to a
    # simulation just because it is priced low), priced before unpriced, then cheapest.
    price = (model.cost_per_1k_input or 0.0) + (model.cost_per_1k_output or 0.0)
    return (model.provider == "sim", not model.priced, price)


def _max_tokens_bound(request: CompletionRequest) -> int:
    # A token covers at least one UTF-8 byte and a character at most four bytes, so
    # 4 * characters bounds the count without counting.
    return 4 * sum(len(m.content) for m in request.messages) + 64


# The models a route may choose, by name (None: any). Set around one ``route`` call by
# ``only_models``: every router judges its candidates through ``_Trail.fits``, so each one
# (built-in or learned) skips the others as it skips an unavailable model, and still sees
# the whole catalogue (a learned router checks its models are in it).
_ONLY: ContextVar[Callable[[str], bool] | None] = ContextVar("mmo_route_only", default=None)
_NOT_ALLOWED = "not allowed for this call"


@contextlib.contextmanager
def only_models(allowed: Callable[[str], bool] | None) -> Iterator[None]:
    """Routes inside the block choose only models whose name ``allowed`` accepts (a
    gateway's key allowlist, say); None lifts nothing. Skipped models are not named in
    the decision's reason."""
    token = _ONLY.set(allowed)
    try:
        yield
    finally:
        _ONLY.reset(token)


class _Trail:
    """What a router skipped on its way to a choice, for the reason line."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.segments: list[str] = []
        self._fits: dict[str, str | None] = {}
        self._unavailable: dict[tuple[str, str | None, str | None], str | None] = {}
        self._bound = _max_tokens_bound(request)
        self._only = _ONLY.get()

    def fits(self, model: ModelConfig) -> str | None:
        """Why ``model`` can't take this request now, or None when it can."""
        if model.name in self._fits:
            return self._fits[model.name]
        if self._only is not None and not self._only(model.name):
            self._fits[model.name] = _NOT_ALLOWED
            return _NOT_ALLOWED
        # Models with the same provider, key variable and endpoint are available together;
        # asking once per group saves reading the environment for each of ~20 models.
        group = (model.provider, model.api_key_env, model.base_url)
        if group not in self._unavailable:
            self._unavailable[group] = model.unavailable_reason
        why = self._unavailable[group]
        if why is not None:
            why = f"unavailable ({why})"
        elif model.context_window and self._bound > model.context_window:
            needed = input_tokens(self.request, model)
            if needed > model.context_window:
                why = f"too small ({model.context_window:,}-token context < {needed:,} tokens)"
        self._fits[model.name] = why
        return why

    def pick(
        self, names: Sequence[str], catalogue: Catalogue, prefix: str = ""
    ) -> ModelConfig | None:
        """The first of ``names`` that can take the request; notes why others could not."""
        skipped: dict[str, list[str]] = {}
        for name in names:
            try:
                model = catalogue.resolve(name)
            except UnknownModelError:
                skipped.setdefault("not in the catalogue", []).append(name)
                continue
            why = self.fits(model)
            if why is None:
                self.note("", skipped)  # the list still produced a model: no prefix needed
                return model
            skipped.setdefault(why, []).append(model.name)
        self.note(prefix, skipped)
        return None

    def note(self, prefix: str, skipped: Mapping[str, list[str]]) -> None:
        # Models outside the call's allowlist go unnamed: the reason may reach its client.
        skipped = {why: names for why, names in skipped.items() if why != _NOT_ALLOWED}
        if skipped:
            parts = [f"{', '.join(names)} {why}" for why, names in skipped.items()]
            self.segments.append(prefix + "; ".join(parts))

    def add(self, text: str) -> None:
        self.segments.append(text)

    def reason(self, head: str, model: str) -> str:
        """``head → model``, or the skips and "fell through to model" when there were any."""
        if not self.segments:
            return f"{head} → {model}"
        return f"{head}; {'; '.join(self.segments)}, fell through to {model}"


def _by_price(catalogue: Catalogue, min_tier: int = 1) -> list[ModelConfig]:
    """Models with tier >= ``min_tier``, cheapest first (ties keep catalogue order)."""
    return sorted((m for m in catalogue if _tier(m) >= min_tier), key=_price_key)


def _cheapest(catalogue: Catalogue, trail: _Trail, min_tier: int = 1) -> ModelConfig | None:
    """The cheapest model with tier >= ``min_tier`` that can take the request."""
    # Walk in price order and stop at the first fit: checking availability (the
    # environment) of every model would cost more than the rest of routing.
    return next((m for m in _by_price(catalogue, min_tier) if trail.fits(m) is None), None)


def _nothing_available(catalogue: Catalogue) -> NoModelAvailableError:
    only = _ONLY.get()
    allowed = [m for m in catalogue if only is None or only(m.name)]
    missing = sorted({m.unavailable_reason for m in allowed if m.unavailable_reason})
    detail = f" ({', '.join(missing)})" if missing else ""
    return NoModelAvailableError(
        f"No model is available to route to{detail}.",
        hint="Set a provider key (e.g. OPENAI_API_KEY) or add a local or sim model.",
    )


def _as_request(request: CompletionRequest | str) -> CompletionRequest:
    if isinstance(request, str):
        return CompletionRequest(messages=(Message("user", request),))
    return request


@functools.cache
def _builtin_catalogue() -> Catalogue:
    from ..core.catalogue import builtin_models

    return Catalogue.of(builtin_models())


# -- the interface --------------------------------------------------------------


class Router(ABC):
    """Chooses a model for a request from a catalogue, calling no model.

    ``classify`` returns the router's label for a prompt (task or complexity
    level) when it has one; ``classifies`` says whether it does.
    """

    name: ClassVar[str] = "router"
    classifies: ClassVar[bool] = False

    def __init__(self, default: str | None = None) -> None:
        self.default = default

    @abstractmethod
    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        """The model for ``request`` (a prompt string is accepted too).

        ``catalogue`` defaults to the built-in models.
        """

    def classify(self, prompt: str) -> str | None:
        return None

    def explain(self, prompt: str) -> tuple[str | None, str]:
        """The label for ``prompt`` and a one-line reason (used by ``evaluate_router``)."""
        return None, ""

    def _decide(
        self,
        request: CompletionRequest,
        model: ModelConfig,
        rule: str,
        reason: str,
        label: str | None,
        output_tokens: int | None = None,
    ) -> RouteDecision:
        if output_tokens is None:
            output_tokens = guess_output_tokens(request, model, label)
        tokens = input_tokens(request, model)
        return RouteDecision(
            model=model.name,
            router=self.name,
            rule=rule,
            reason=reason,
            estimated_cost=model.cost(tokens, output_tokens),
            label=label,
            input_tokens=tokens,
        )

    def _fall_back(
        self,
        request: CompletionRequest,
        catalogue: Catalogue,
        trail: _Trail,
        head: str,
        label: str | None,
        min_tier: int = 1,
    ) -> RouteDecision:
        """After the router's own candidates: the cheapest model of ``min_tier`` (when
        that is a real need, above 1), then ``default``, then the cheapest available."""
        model = _cheapest(catalogue, trail, min_tier) if min_tier > 1 else None
        if model is not None:
            trail.add(f"cheapest available with tier>={min_tier} is {model.name}")
            rule = f"cheapest-tier>={min_tier}"
            return self._decide(request, model, rule, trail.reason(head, model.name), label)
        if self.default is not None:
            chosen = trail.pick([self.default], catalogue, prefix="default ")
            if chosen is not None:
                reason = trail.reason(head, chosen.name)
                return self._decide(request, chosen, "default", reason, label)
        model = _cheapest(catalogue, trail)
        if model is None:
            raise _nothing_available(catalogue)
        trail.add(f"cheapest available model is {model.name}")
        return self._decide(request, model, "any-available", trail.reason(head, model.name), label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r})"
