"""``CostOptimizedRouter``: the cheapest available model of at least a tier, under an
optional cap per call, from counted input tokens and a guessed output length."""

from __future__ import annotations

from ..core.completion import CompletionRequest
from ..core.errors import BudgetExceededError, ConfigError
from ..core.models import Catalogue, ModelConfig
from ..core.money import format_usd
from ..core.pricing import guess_output_tokens, input_tokens
from .base import (
    RouteDecision,
    Router,
    _as_request,
    _builtin_catalogue,
    _nothing_available,
    _price_key,
    _tier,
    _Trail,
)
from .task import TaskRouter

__all__ = ["CostOptimizedRouter"]


class CostOptimizedRouter(Router):
    """Routes to the cheapest available model of at least ``min_tier``, under ``max_cost``.

    Input tokens are counted for each candidate with its own tokenizer (exact
    for OpenAI models, an estimate elsewhere). The output is
    ``expected_output_tokens`` when given, else ``guess_output_tokens`` for the
    prompt's task (TaskRouter's classification); either is capped by the
    model's and the request's ``max_tokens``. Unpriced models are skipped
    unless ``allow_unpriced``, and then rank after every priced one. Simulated
    models rank after real ones. If no priced candidate fits ``max_cost``,
    ``BudgetExceededError`` says the cheapest estimate and the cap.
    """

    name = "cost"

    def __init__(
        self,
        min_tier: int = 1,
        max_cost: float | None = None,
        expected_output_tokens: int | None = None,
        *,
        allow_unpriced: bool = False,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        if max_cost is not None and max_cost < 0:
            raise ConfigError(f"max_cost must be >= 0, got {max_cost}.")
        if expected_output_tokens is not None and expected_output_tokens < 0:
            raise ConfigError(f"expected_output_tokens must be >= 0, got {expected_output_tokens}.")
        self.min_tier = min_tier
        self.max_cost = max_cost
        self.expected_output_tokens = expected_output_tokens
        self.allow_unpriced = allow_unpriced
        self._task_router = TaskRouter()

    def _output_tokens(self, request: CompletionRequest, model: ModelConfig, task: str) -> int:
        if self.expected_output_tokens is None:
            return guess_output_tokens(request, model, task)
        caps = [model.max_tokens] + ([request.max_tokens] if request.max_tokens else [])
        return min(self.expected_output_tokens, *caps)

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        trail = _Trail(request)
        task = self._task_router.classify(request.prompt_text)
        usable: list[ModelConfig] = []
        skipped: dict[str, int] = {}
        for m in catalogue:
            if _tier(m) >= self.min_tier:
                why = trail.fits(m)
                if why is None:
                    usable.append(m)
                else:
                    skipped[why] = skipped.get(why, 0) + 1
        priced = [m for m in usable if m.priced]
        unpriced = [m for m in usable if not m.priced]
        notes: list[str] = []
        if skipped:
            notes.append("skipped " + ", ".join(f"{n} {why}" for why, n in skipped.items()))
        if unpriced and not self.allow_unpriced:
            notes.append(f"{len(unpriced)} unpriced skipped (allow_unpriced=False)")

        estimates: list[tuple[tuple[bool, float], ModelConfig, int, int, float]] = []
        for m in priced:
            n_in, n_out = input_tokens(request, m), self._output_tokens(request, m, task)
            cost = m.cost(n_in, n_out)
            assert cost is not None  # priced
            estimates.append(((m.provider == "sim", cost), m, n_in, n_out, cost))
        estimates.sort(key=lambda e: e[0])  # stable: ties keep catalogue order
        within = [e for e in estimates if self.max_cost is None or e[4] <= self.max_cost]
        cap = f" within the {format_usd(self.max_cost)} cap" if self.max_cost is not None else ""
        scope = f"with tier>={self.min_tier}"
        if within:
            _, model, n_in, n_out, cost = within[0]
            over = len(estimates) - len(within)
            if over:
                notes.append(f"{over} over the cap")
            head = (
                f"cheapest of {len(usable)} available models {scope}{cap}: {model.name} "
                f"~{format_usd(cost)} ({n_in:,} in + {n_out:,} out tokens)"
            )
            if len(within) > 1:
                head += f"; next {within[1][1].name} ~{format_usd(within[1][4])}"
            reason = "; ".join([head, *notes])
            return self._decide(
                request, model, f"cheapest-tier>={self.min_tier}", reason, None, n_out
            )
        if estimates:  # priced models exist, but none fits the cap
            _, model, n_in, n_out, cost = estimates[0]
            raise BudgetExceededError(
                f"No available model {scope} fits the {format_usd(self.max_cost)} cap per call: "
                f"the cheapest, {model.name}, would cost ~{format_usd(cost)} "
                f"({n_in:,} in + {n_out:,} out tokens).",
                estimate=cost,
                hint="Raise max_cost, lower min_tier, shorten the prompt or set max_tokens.",
            )
        if unpriced and self.allow_unpriced:
            model = sorted(unpriced, key=_price_key)[0]
            head = f"no priced model {scope} is available; {model.name} is unpriced (allowed)"
            reason = "; ".join([head, *notes])
            return self._decide(request, model, f"unpriced-tier>={self.min_tier}", reason, None)
        head = f"no priced model {scope} is available" + (f" ({'; '.join(notes)})" if notes else "")
        if self.default is not None:
            chosen = trail.pick([self.default], catalogue, prefix="default ")
            if chosen is not None:
                reason = trail.reason(head, chosen.name)
                return self._decide(request, chosen, "default", reason, None)
        if not catalogue.available():
            raise _nothing_available(catalogue)
        raise ConfigError(
            f"Cost routing found {head}.",
            hint="Lower min_tier, pass allow_unpriced=True, or set prices for your models.",
        )

    def __repr__(self) -> str:
        return (
            f"CostOptimizedRouter(min_tier={self.min_tier}, max_cost={self.max_cost}, "
            f"expected_output_tokens={self.expected_output_tokens}, "
            f"allow_unpriced={self.allow_unpriced}, default={self.default!r})"
        )
