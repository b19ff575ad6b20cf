"""A request's worst-case cost, held against a client key's budget while it runs
(``clients``): its input tokens and its ``max_tokens`` of output on the dearest model it
could reach (the model and its fallbacks; for a router, every model it could choose; for a
name with several deployments, each of them). None when one of those is unpriced: a budget
cannot bound it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core.errors import UnknownModelError
from ..core.models import ModelConfig
from ..orchestration.orchestrator import AUTO, Orchestrator

__all__ = ["sum_or_none", "worst_case"]

PART_TOKENS = 2_000  # an image or document part, counted generously (providers: 85-1,600)
MESSAGE_TOKENS = 8  # a message's own tokens (role, separators), counted generously


def sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _input_tokens(messages: Any) -> int:
    """An upper bound on the input tokens: a token is at least one byte of UTF-8, plus a
    message's overhead. Loose (about 4 bytes a token in English) but cheap, and no
    tokenizer is loaded into the gateway (tiktoken's tables cost ~40 MB)."""
    texts: list[str] = []
    extra = 0
    items = [messages] if isinstance(messages, str) else list(messages or ())
    for m in items:
        content = m.get("content") if isinstance(m, dict) else m
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    extra += PART_TOKENS
    return sum(len(t.encode()) + MESSAGE_TOKENS for t in texts) + extra


def _reachable(
    orc: Orchestrator, served: Callable[[str], bool], deployed: Mapping[str, Any], name: str
) -> list[ModelConfig]:
    """Every model a call naming ``name`` could be answered by."""
    if name.partition(":")[0].lower() == AUTO:
        return [m for m in orc.models() if m.available and served(m.name)]
    names = list(deployed[name]) if name in deployed else [name]
    found: list[ModelConfig] = []
    while names:
        try:
            model = orc.catalogue.resolve(names.pop())
        except UnknownModelError:
            continue
        if model not in found:
            found.append(model)
            names.extend(model.fallbacks)
    return found


def worst_case(
    orc: Orchestrator,
    served: Callable[[str], bool],
    deployed: Mapping[str, Any],
    name: str,
    messages: Any,
    max_tokens: int | None,
) -> float | None:
    """The most a call naming ``name`` could cost, in USD; None if it cannot be bounded.

    ``deployed``: names with several deployments -> their models."""
    reachable = _reachable(orc, served, deployed, name)
    costs: list[float] = []
    for model in reachable:
        output = model.max_tokens if max_tokens is None else max_tokens
        cost = model.cost(_input_tokens(messages), output)
        if cost is None:  # unpriced
            return None
        costs.append(cost)
    return max(costs) if costs else None
