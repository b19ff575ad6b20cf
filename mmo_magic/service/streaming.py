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
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import nullcontext
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..core.completion import CompletionResponse
from ..core.errors import MMOError
from ..orchestration.orchestrator import AsyncCompletionStream, Orchestrator
from ..storage.runlog import new_id
from .bodies import dumps
from .disconnect import drain_of, unless_disconnected
from .errors import mmo_error_response, server_error, shutting_down_response
from .schemas import details_out, finish_reason, tool_calls_out, usage_out
from .shutdown import Drain, ShuttingDown

__all__ = ["ChatWire", "StreamWire", "sse", "start_stream"]

logger = logging.getLogger(__name__)

_DONE = "data: [DONE]\n\n"


async def start_stream(
    request: Request,
    orc: Orchestrator,
    messages: list[dict[str, Any]],
    model: str,
    options: dict[str, Any],
    wire: StreamWire,
    on_done: Callable[[CompletionResponse | None], None] | None = None,
) -> Response:
    """Stream the answer as SSE in ``wire``'s events; a call failing before its first token
    gets a plain HTTP error. ``on_done`` gets the response when the stream ends (None if it
    broke), to charge it to a client key."""
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
        _coalesced(_guarded(wire, stream, texts, first, drain, on_done)),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


class StreamWire(Protocol):
    """One wire's SSE events: the answer's, and the ending of a stream that broke."""

    scrub: Callable[[str], str]  # hides upstream addresses in errors (``scrub.Scrubber``)

    def events(
        self, stream: AsyncCompletionStream, texts: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[str]:
        """Every event of a stream that finishes; ``first`` is the first text (None: none)."""
        ...

    def failed(self, error: JSONResponse) -> str:
        """The events ending a stream that broke with ``error`` (OpenAI's error shape)."""
        ...


def sse(payload: dict[str, Any], event: str | None = None) -> str:
    """One SSE event; ``event`` names it (the Responses and Messages wires name theirs)."""
    data = f"data: {dumps(payload).decode()}\n\n"
    return data if event is None else f"event: {event}\n{data}"


async def _guarded(
    wire: StreamWire,
    stream: AsyncCompletionStream,
    texts: AsyncGenerator[str, None],
    first: str | None,
    drain: Drain | None,
    on_done: Callable[[CompletionResponse | None], None] | None = None,
) -> AsyncIterator[str]:
    """``wire``'s events, ended by its error events if the call breaks or shutdown cuts it."""
    task = asyncio.current_task()
    try:
        if drain is not None and drain.cut:
            raise ShuttingDown
        # While the answer streams, shutdown's cut cancels this task (see except below).
        with drain.watch(task) if drain is not None else nullcontext():
            async for event in wire.events(stream, texts, first):
                yield event
    except asyncio.CancelledError:
        if task is None or drain is None or not drain.was_cut(task):
            raise  # the client left, or the server is being stopped hard
        task.uncancel()  # cut by shutdown: this task lives on to say so
        yield wire.failed(shutting_down_response(started=True))
    except ShuttingDown:
        yield wire.failed(shutting_down_response(started=True))
    except MMOError as exc:
        yield wire.failed(mmo_error_response(exc, wire.scrub))
    except Exception:
        logger.exception("Unhandled error while streaming")
        yield wire.failed(server_error())
    finally:
        await texts.aclose()  # a no-op when finished; stops the call when the client left
        if on_done is not None:
            on_done(stream.response)


async def _coalesced(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events``, those made while the previous ones were being sent joined into one write.

    A task makes the events; this generator sends what has piled up each time it
    runs. Text that comes token by token still goes out token by token; text that
    is already there (an upstream that answered at once, a stream's first events,
    its last ones) goes out in one write instead of one system call and one pass
    through the ASGI stack per event. The events themselves are unchanged.
    """
    made: list[str] = []
    ready = asyncio.Event()

    async def make() -> None:
        try:
            async for event in events:
                made.append(event)
                ready.set()
        finally:
            ready.set()

    maker = asyncio.ensure_future(make())
    try:
        while not maker.done() or made:
            await ready.wait()
            ready.clear()
            if made:
                joined = "".join(made)
                made.clear()
                yield joined
        maker.result()  # an error the events did not turn into their own ending
    finally:
        if not maker.done():  # the client left: stop making (this closes the call)
            maker.cancel()
            await asyncio.gather(maker, return_exceptions=True)


class ChatWire:
    """OpenAI ``chat.completion.chunk`` events, then ``[DONE]``; an error event before
    ``[DONE]`` when it breaks."""

    def __init__(self, requested: str, include_usage: bool, scrub: Callable[[str], str]) -> None:
        self.requested = requested
        self.include_usage = include_usage
        self.scrub = scrub

    async def events(
        self, stream: AsyncCompletionStream, texts: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[str]:
        head = {"id": f"chatcmpl-{new_id()}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.requested}  # fmt: skip
        extra = {"usage": None} if self.include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return sse({**head, "choices": [choice], **extra, **more})

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
        details = details_out(response, self.scrub).model_dump()
        yield chunk({}, finish_reason(response), mmo=details)
        if self.include_usage:
            usage = usage_out(response)
            yield sse({**head, "choices": [], "usage": usage and usage.model_dump()})
        yield _DONE

    def failed(self, error: JSONResponse) -> str:
        return f"data: {bytes(error.body).decode()}\n\n{_DONE}"
