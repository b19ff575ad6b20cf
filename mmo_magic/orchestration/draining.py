"""Draining one attempt's stream: text, tool-call pieces and the end, under the deadlines.

``drain`` reads a client's stream into a ``Progress`` (kept even when the
attempt fails, so its run record shows what came); ``assemble_tool_calls``
turns the streamed pieces of tool calls into whole ``ToolCall``s. The call
engine runs both for every attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.completion import CompletionRequest, StreamEnd, Thinking, ToolCall, ToolCallDelta
from ..core.errors import ProviderError, StructuredOutputError
from ..core.models import ModelConfig
from ..core.text import storable
from ..providers import ModelClient
from .calls import OnText

__all__ = ["Progress", "assemble_tool_calls", "drain"]


@dataclass
class Progress:
    """What one attempt has produced so far: kept even when it fails."""

    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    first_activity_ms: float | None = None  # the first item of any kind, thinking included
    thinking: list[str] = field(default_factory=list)  # thinking text, apart from the answer
    thinking_blocks: list[tuple[str, str]] = field(default_factory=list)  # (text, signature)
    _block_from: int = 0  # where in ``thinking`` the current block began
    end: StreamEnd | None = None
    parsed: Any = None  # structured output: the validated answer
    # Tool calls as they stream: index -> [id, name, argument pieces].
    calls: dict[int, list[Any]] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)  # assembled at the end

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


async def drain(
    client: ModelClient,
    request: CompletionRequest,
    progress: Progress,
    on_text: OnText | None,
    on_thinking: OnText | None = None,
) -> None:
    """Drain ``client.stream`` into ``progress`` under the model's deadlines.

    Deadlines: total (``timeout_s``), time to first token (``ttft_timeout_s``)
    and stall between deltas (``stall_timeout_s``), all on one rescheduled
    timer so the per-chunk cost stays a single heap operation. A reasoning model
    (``ModelConfig.reasoning``) may think in silence before its first visible token:
    its first token has only the total deadline, and pieces of thinking it streams
    count as activity against stalls. ``Thinking`` items go to ``progress.thinking``,
    never to the answer; any first item sets ``first_activity_ms``.
    """
    config = client.config
    loop = asyncio.get_running_loop()
    total_at = loop.time() + config.timeout_s
    watch_gaps = config.ttft_timeout_s is not None or config.stall_timeout_s is not None
    first_gap = None if config.reasoning else config.ttft_timeout_s

    def deadline() -> float:
        gap = first_gap if progress.ttft_ms is None else config.stall_timeout_s
        return total_at if gap is None else min(total_at, loop.time() + gap)

    # A server may stream an emoji as two escaped UTF-16 halves in separate chunks: a
    # trailing high surrogate waits for the next delta, and what cannot pair is replaced,
    # so no caller, terminal or file meets a lone surrogate.
    held = ""
    stream = client.stream(request)
    try:
        async with asyncio.timeout_at(deadline()) as timer:
            async for item in stream:
                if progress.first_activity_ms is None:
                    progress.first_activity_ms = progress.elapsed_ms
                if isinstance(item, str):  # first: text is nearly every item
                    text, held = held + item, ""
                    if text and "\ud800" <= text[-1] <= "\udbff":
                        text, held = text[:-1], text[-1]
                        if not text:
                            continue
                elif isinstance(item, ToolCallDelta):
                    # Tool calls are output too: they count for ttft and against stalls.
                    call = progress.calls.setdefault(item.index, [None, None, []])
                    call[0] = call[0] or item.id
                    call[1] = call[1] or item.name
                    call[2].append(item.arguments)
                    if progress.ttft_ms is None:
                        progress.ttft_ms = progress.elapsed_ms
                    if watch_gaps:
                        timer.reschedule(deadline())
                    continue
                elif isinstance(item, Thinking):
                    if item.text:
                        progress.thinking.append(storable(item.text))
                    if on_thinking is not None and (item.text or len(progress.thinking) == 0):
                        on_thinking(storable(item.text))
                    if item.signature is not None:  # a signed block ends
                        text = "".join(progress.thinking[progress._block_from :])
                        progress.thinking_blocks.append((text, item.signature))
                        progress._block_from = len(progress.thinking)
                    if watch_gaps and progress.ttft_ms is not None:
                        timer.reschedule(deadline())
                    continue
                else:
                    progress.end = item
                    if not held:
                        continue
                    text, held = held, ""  # a half that never got its pair
                text = storable(text)
                if progress.ttft_ms is None:
                    progress.ttft_ms = progress.elapsed_ms
                progress.parts.append(text)
                if on_text is not None:
                    on_text(text)
                if watch_gaps:
                    timer.reschedule(deadline())
    except TimeoutError as exc:
        raise _timeout_error(config, progress, loop.time() >= total_at) from exc
    finally:
        await stream.aclose()


def assemble_tool_calls(progress: Progress, config: ModelConfig) -> None:
    """The streamed tool calls, whole, in ``progress.tool_calls`` (and the finish reason
    "tool_calls" when the answer was not cut short).

    Arguments that are not a JSON object fail the attempt, as invalid structured output
    does: a caller would fail on them anyway, and another try may do better.
    """
    for index in sorted(progress.calls):
        call_id, name, pieces = progress.calls[index]
        arguments = "".join(pieces) or "{}"
        where = {"provider": config.provider, "model": config.name}
        if not name:
            raise StructuredOutputError("a tool call came without a tool name", **where)
        try:
            decoded = json.loads(arguments)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise StructuredOutputError(
                f"the arguments of tool call {name!r} are not a JSON object: {arguments[:80]!r}",
                raw=arguments,
                **where,
            )
        progress.tool_calls.append(ToolCall(call_id or f"call_{index}", name, arguments))
    end = progress.end
    if progress.tool_calls and end is not None and end.finish_reason not in _CUT_SHORT:
        progress.end = dataclasses.replace(end, finish_reason="tool_calls")


# Finish reasons of an answer cut by its token limit (OpenAI's, Anthropic's).
_CUT_SHORT = frozenset({"length", "max_tokens"})


def _timeout_error(config: ModelConfig, progress: Progress, total: bool) -> ProviderError:
    if total:
        what = f"no complete answer within timeout_s={config.timeout_s:g}"
    elif progress.ttft_ms is None:
        what = f"no first token within ttft_timeout_s={config.ttft_timeout_s:g}"
    else:
        what = f"stream stalled: nothing for stall_timeout_s={config.stall_timeout_s:g}"
    return ProviderError(what, provider=config.provider, model=config.name, code="timeout")
