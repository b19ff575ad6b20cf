"""A model backed by a Python function: the in-process test double.

For tests, benchmarks and teaching, where a real provider would only add a
network and nothing to learn. Register a function under a model id, then name
it like any model::

    register_function("shout", lambda request: request.prompt_text.upper())
    orc = mmo.Orchestrator([mmo.ModelConfig("function", "shout")])
    orc.complete("hello", model="shout").content        # 'HELLO'

The function takes the ``CompletionRequest`` and returns the answer's text, or
yields it in pieces (each piece is one streamed delta); it may be async. It may
yield ``ToolCallDelta``s to call tools (``request.tools``), and may
end with its own ``StreamEnd`` to set the finish reason and token counts;
otherwise the answer finishes with "stop" and whitespace-separated word counts,
marked as estimated. An exception it raises is the call's failure (a
``ProviderError``, unless it raised an ``MMOError`` itself).
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from ..core.completion import CompletionRequest, StreamEnd
from ..core.errors import ConfigError, MMOError
from ..core.models import ModelConfig
from .base import ModelClient, StreamItem

__all__ = ["FunctionClient", "ModelFunction", "register_function", "unregister_function"]

ModelFunction: TypeAlias = Callable[
    [CompletionRequest],
    str | Iterable[StreamItem] | AsyncIterable[StreamItem] | Awaitable[str],
]

_functions: dict[str, ModelFunction] = {}
_functions_lock = threading.Lock()


def register_function(model_id: str, function: ModelFunction) -> None:
    """Answer calls to ``ModelConfig("function", model_id)`` with ``function``."""
    with _functions_lock:
        _functions[model_id] = function


def unregister_function(model_id: str) -> None:
    with _functions_lock:
        _functions.pop(model_id, None)


class FunctionClient(ModelClient):
    """Streams what the registered function returns; no I/O of its own."""

    def __init__(self, config: ModelConfig, function: ModelFunction | None = None) -> None:
        super().__init__(config)
        found = function or _functions.get(config.model_id)
        if found is None:
            known = ", ".join(sorted(_functions)) or "none yet"
            raise ConfigError(
                f"Model {config.name!r}: no function is registered as {config.model_id!r}.",
                hint=f"Call mmo_magic.providers.register_function({config.model_id!r}, fn) "
                f"first (registered: {known}).",
            )
        self.function = found

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamItem, None]:
        words = 0
        produced: list[str] = []
        try:
            async for piece in _pieces(self.function(request)):
                if isinstance(piece, StreamEnd):
                    # A function's counts are checked like a provider's.
                    reported = (piece.input_tokens, piece.output_tokens)
                    end = self.usage_end(
                        piece.finish_reason, reported, request, produced, estimate_missing=False
                    )
                    yield dataclasses.replace(end, estimated=end.estimated or piece.estimated)
                    return
                if isinstance(piece, str):
                    words += len(piece.split())
                    produced.append(piece)
                yield piece
        except MMOError:
            raise
        except Exception as exc:
            raise self.fail(f"{type(exc).__name__}: {exc}") from exc
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        yield StreamEnd("stop", prompt_words, words, estimated=True)


async def _pieces(result: Any) -> AsyncGenerator[StreamItem, None]:
    """What a model function returned, as one async stream of pieces."""
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, str):
        yield result
    elif isinstance(result, AsyncIterable):
        async for piece in result:
            yield piece
    else:
        for piece in result:
            yield piece
