"""Reasoning controls: ``reasoning_effort`` and ``thinking_budget``, checked and mapped.

Users give either (not both) on any call. A model the catalogue does not mark as a
reasoning model (``ModelConfig.reasoning``) refuses them by name before sending. Each
wire gets its own form:

- OpenAI Chat Completions (and OpenAI-compatible hosts): ``reasoning_effort``; a
  ``thinking_budget`` is mapped to the effort whose budget it reaches (``effort_for``).
- Anthropic Messages: ``thinking: {"type": "enabled", "budget_tokens": N}``; an effort is
  mapped to a budget (``EFFORT_BUDGETS``). Anthropic's rules are enforced here, before
  sending: a budget of at least 1,024 tokens, ``max_tokens`` larger than the budget,
  temperature unset (or 1), ``top_p`` unset or at least 0.95, no forced tool choice (and
  so no structured output, which Anthropic gets as a forced tool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError
from .structured import invalid_parameter

if TYPE_CHECKING:
    from .completion import CompletionRequest
    from .models import ModelConfig

__all__ = [
    "ANTHROPIC_MIN_BUDGET",
    "EFFORTS",
    "EFFORT_BUDGETS",
    "anthropic_thinking",
    "check_reasoning",
    "checked_budget",
    "checked_effort",
    "effort_for",
    "openai_effort",
]

EFFORTS = ("minimal", "low", "medium", "high")
# The thinking budget an effort stands for on a wire that takes budgets (Anthropic).
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
ANTHROPIC_MIN_BUDGET = 1024


def checked_effort(value: object) -> str | None:
    if value is None:
        return None
    if value not in EFFORTS:
        raise invalid_parameter(
            "reasoning_effort",
            f"reasoning_effort must be one of {', '.join(map(repr, EFFORTS))}, got {value!r:.40}.",
        )
    return str(value)


def checked_budget(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_parameter(
            "thinking_budget",
            f"thinking_budget must be a whole number of tokens >= 1, got {value!r:.40}.",
            hint=f"Anthropic needs at least {ANTHROPIC_MIN_BUDGET}.",
        )
    return value


def effort_for(budget: int) -> str:
    """The effort whose budget ``budget`` reaches (a budget below 1,024 is "minimal")."""
    reached = [e for e in EFFORTS if EFFORT_BUDGETS[e] <= budget]
    return reached[-1] if reached else "minimal"


def check_reasoning(config: ModelConfig, request: CompletionRequest) -> None:
    """InvalidRequestError before sending when reasoning controls go to a model without them,
    or both are given."""
    asked = [n for n in ("reasoning_effort", "thinking_budget") if getattr(request, n) is not None]
    if not asked:
        return
    if len(asked) == 2:
        raise InvalidRequestError(
            "Give reasoning_effort or thinking_budget, not both.",
            hint="reasoning_effort for OpenAI-style models, thinking_budget for a token budget.",
        )
    if not config.reasoning:
        raise invalid_parameter(
            asked[0],
            f"{asked[0]} is not supported by model {config.name!r} (provider "
            f"{config.provider}): the catalogue does not mark it as a reasoning model.",
            hint="Leave it out, use a reasoning model (gpt-5-mini, o4-mini, claude-sonnet-4-5), "
            "or set reasoning = true for this model in mmo.toml.",
        )


def openai_effort(request: CompletionRequest) -> str | None:
    """The ``reasoning_effort`` to send on an OpenAI-style wire (None: none asked)."""
    if request.thinking_budget is not None:
        return effort_for(request.thinking_budget)
    return request.reasoning_effort


def anthropic_thinking(
    config: ModelConfig, request: CompletionRequest, max_tokens: int, temperature: float | None
) -> dict[str, Any] | None:
    """Anthropic's ``thinking`` object, or InvalidRequestError naming the rule a call breaks."""
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        budget = EFFORT_BUDGETS[request.reasoning_effort]
    if budget is None:
        return None
    where = f"model {config.name!r} (provider anthropic)"
    if budget < ANTHROPIC_MIN_BUDGET:
        raise invalid_parameter(
            "thinking_budget",
            f"thinking_budget must be at least {ANTHROPIC_MIN_BUDGET} tokens for {where}, "
            f"got {budget}.",
        )
    if max_tokens <= budget:
        raise invalid_parameter(
            "max_tokens",
            f"max_tokens ({max_tokens}) must be larger than the thinking budget ({budget}) "
            f"for {where}: the budget is part of max_tokens.",
            hint=f"Pass max_tokens={budget + 1024} or more, or a smaller budget.",
        )
    if temperature is not None and temperature != 1:
        raise invalid_parameter(
            "temperature",
            f"temperature {temperature:g} cannot be used with extended thinking on {where}.",
            hint="Leave temperature out (or 1) when thinking.",
        )
    top_p = request.top_p
    if top_p is not None and top_p < 0.95:
        raise invalid_parameter(
            "top_p", f"top_p must be at least 0.95 with extended thinking on {where}."
        )
    choice = request.tool_choice
    if request.response_format is not None or (
        choice is not None and choice.mode not in ("auto", "none")
    ):
        raise invalid_parameter(
            "tool_choice" if request.response_format is None else "response_format",
            f"extended thinking on {where} cannot be combined with a forced tool "
            "(tool_choice required or named, or response_format, which is a forced tool there).",
            hint="Leave the thinking out, or let the model choose (tool_choice='auto').",
        )
    return {"type": "enabled", "budget_tokens": budget}
