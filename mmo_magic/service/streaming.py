"""The SSE path of ``POST /v1/chat/completions`` with ``stream: true``.

Text streams as it arrives; tool calls follow it, one ``delta.tool_calls``
chunk per call with its arguments whole, then the finish reason.

The answer streams through the orchestrator's public async stream,
``Orchestrator.astream``. Failures before the first text are retried and
fail over as for any call, and reach the client as a plain HTTP error; a
call that breaks after text was sent is not retried (the orchestrator's rule
for streams), so no text is ever sent twice.

A stream always ends with ``data: [DONE]``, and one that did not finish has
an error event (OpenAI's error shape) just before it: a client can always
tell a cut answer from a complete one. That holds for a stream cut by
shutdown too (``shutdown``): its error is a ``service_unavailable`` with code
``server_shutting_down``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import nullcontext
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ..core.errors import MMOError
from ..orchestration.orchestrator import AsyncCompletionStream, Orchestrator
from ..storage.runlog import new_id
from .disconnect import drain_of, unless_disconnected
from .errors import mmo_error_response, server_error, shutting_down_response
from .schemas import details_out, finish_reason, tool_calls_out, usage_out
from .shutdown import Drain, ShuttingDown

__all__ = ["start_stream"]

logger = logging.getLogger(__name__)

_DONE = "data: [DONE]\n\n"


async def start_stream(
    request: Request,
    orc: Orchestrator,
    messages: list[dict[str, Any]],
    model: str,
    options: dict[str, Any],
    include_usage: bool,
    scrub: Callable[[str], str],
) -> Response:
    """Stream the answer as SSE; a call failing before its first token gets a plain HTTP error."""
    stream = orc.astream(messages, model, **options)
    texts = aiter(stream)
    # Closing the iterator is what cancels the call (and closes the provider's stream).
    assert isinstance(texts, AsyncGenerator), "AsyncCompletionStream iterates as a generator"
    # If the client leaves first, this step is cancelled, and that cancels the call:
    # the iterator's clean-up runs inside it. Shutdown's cut does the same (a 503).
    first = await unless_disconnected(request, anext(texts, None))
    drain = drain_of(request)
    if drain is not None and drain.cut:  # the cut came with the first text: nothing was sent
        await texts.aclose()
        raise ShuttingDown
    return StreamingResponse(
        _chat_stream(stream, texts, first, model, include_usage, scrub, drain),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _error_event(response: Response) -> str:
    return f"data: {bytes(response.body).decode()}\n\n"


async def _chat_stream(
    stream: AsyncCompletionStream,
    texts: AsyncGenerator[str, None],
    first: str | None,
    requested: str,
    include_usage: bool,
    scrub: Callable[[str], str],
    drain: Drain | None,
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events, then ``[DONE]``; an error event first if it
    breaks, or if shutdown cuts it."""
    head = {"id": f"chatcmpl-{new_id()}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": requested}  # fmt: skip
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**head, "choices": [choice], **extra, **more})

    task = asyncio.current_task()
    try:
        if drain is not None and drain.cut:
            raise ShuttingDown
        # While the answer streams, shutdown's cut cancels this task (see except below).
        with drain.watch(task) if drain is not None else nullcontext():
            yield chunk({"role": "assistant", "content": ""})
            text = first
            while text is not None:
                yield chunk({"content": text})
                text = await anext(texts, None)
        response = stream.response
        assert response is not None  # set when the texts run out
        # Content chunks name the model asked for; the answering one is known at the end.
        head["model"] = response.model
        # Tool calls arrive whole with the response: one delta each, arguments complete.
        for index, call in enumerate(tool_calls_out(response)):
            yield chunk({"tool_calls": [{"index": index, **call.model_dump()}]})
        details = details_out(response, scrub).model_dump()
        yield chunk({}, finish_reason(response), mmo=details)
        if include_usage:
            usage = usage_out(response)
            yield _sse({**head, "choices": [], "usage": usage and usage.model_dump()})
        yield _DONE
    except asyncio.CancelledError:
        if task is None or drain is None or not drain.was_cut(task):
            raise  # the client left, or the server is being stopped hard
        task.uncancel()  # cut by shutdown: this task lives on to say so
        yield _error_event(shutting_down_response(started=True))
        yield _DONE
    except ShuttingDown:
        yield _error_event(shutting_down_response(started=True))
        yield _DONE
    except MMOError as exc:
        yield _error_event(mmo_error_response(exc, scrub))
        yield _DONE
    except Exception:
        logger.exception("Unhandled error while streaming")
        yield _error_event(server_error())
        yield _DONE
    finally:
        await texts.aclose()  # a no-op when finished; stops the call when the client left
