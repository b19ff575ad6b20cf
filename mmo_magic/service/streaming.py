"""The SSE path of ``POST /v1/chat/completions`` with ``stream: true``.

The answer streams through the orchestrator's public async stream,
``Orchestrator.astream``. Failures before the first text are retried and
fail over as for any call, and reach the client as a plain HTTP error; a
call that breaks after text was sent is not retried (the orchestrator's rule
for streams), so no text is ever sent twice: the client gets an error event
instead of ``[DONE]``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ..core.errors import MMOError
from ..orchestration.orchestrator import AsyncCompletionStream, Orchestrator
from ..storage.runlog import new_id
from .disconnect import unless_disconnected
from .errors import mmo_error_response, server_error
from .schemas import details_out, finish_reason, usage_out

__all__ = ["start_stream"]

logger = logging.getLogger(__name__)


async def start_stream(
    request: Request,
    orc: Orchestrator,
    messages: list[dict[str, str]],
    model: str,
    options: dict[str, Any],
    include_usage: bool,
) -> Response:
    """Stream the answer as SSE; a call failing before its first token gets a plain HTTP error."""
    stream = orc.astream(messages, model, **options)
    texts = aiter(stream)
    # Closing the iterator is what cancels the call (and closes the provider's stream).
    assert isinstance(texts, AsyncGenerator), "AsyncCompletionStream iterates as a generator"
    # If the client leaves first, this step is cancelled, and that cancels the call:
    # the iterator's clean-up runs inside it.
    first = await unless_disconnected(request, anext(texts, None))
    return StreamingResponse(
        _chat_stream(stream, texts, first, model, include_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _chat_stream(
    stream: AsyncCompletionStream,
    texts: AsyncGenerator[str, None],
    first: str | None,
    requested: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events, then ``[DONE]``; an error event if it breaks."""
    head = {"id": f"chatcmpl-{new_id()}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": requested}  # fmt: skip
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish: str | None = None, **more: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**head, "choices": [choice], **extra, **more})

    try:
        yield chunk({"role": "assistant", "content": ""})
        text = first
        while text is not None:
            yield chunk({"content": text})
            text = await anext(texts, None)
        response = stream.response
        assert response is not None  # set when the texts run out
        # Content chunks name the model asked for; the answering one is known at the end.
        head["model"] = response.model
        yield chunk({}, finish_reason(response), mmo=details_out(response).model_dump())
        if include_usage:
            usage = usage_out(response)
            yield _sse({**head, "choices": [], "usage": usage and usage.model_dump()})
        yield "data: [DONE]\n\n"
    except MMOError as exc:
        yield f"data: {bytes(mmo_error_response(exc).body).decode()}\n\n"
    except Exception:
        logger.exception("Unhandled error while streaming")
        yield f"data: {bytes(server_error().body).decode()}\n\n"
    finally:
        await texts.aclose()  # a no-op when finished; stops the call when the client left
