"""Anthropic Messages client over the ``anthropic`` SDK's AsyncAnthropic.

Tool calling maps both ways: tools go as ``{name, description, input_schema}``,
tool_choice as ``{"type": "auto" | "any" | "tool" | "none"}``; ``tool_use``
content blocks (their input streamed as ``input_json_delta``) come back as tool
calls; an assistant message's tool calls go as ``tool_use`` blocks and ``tool``
messages as the next user message's ``tool_result`` blocks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from ..core.completion import CompletionRequest, Message, Thinking, ToolCallDelta
from ..core.errors import MissingAPIKeyError
from ..core.models import ModelConfig
from ..core.parts import anthropic_block
from ..core.reasoning import anthropic_thinking
from ..core.redaction import read_key
from ..core.structured import ToolChoice, invalid_parameter
from .base import Event, ModelClient, StreamItem, sendable, split_base_url, stream_items
from .direct import DirectPost, http_client

__all__ = ["AnthropicClient"]

# The HTTP status each in-stream error type stands for (the response itself was a 200),
# as Anthropic documents them; whether to retry is orchestration.reliability's call.
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


# The sampling options Messages has (``CompletionRequest.SAMPLING`` names; see ``_body``).
_SAMPLING = frozenset({"stop", "top_p", "user"})


class AnthropicClient(ModelClient):
    """Streams ``/v1/messages``: system messages go to ``system``, all text blocks are joined."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        import anthropic

        key = read_key(config.api_key_env)
        if key is None:
            raise MissingAPIKeyError(config.name, config.api_key_env or "ANTHROPIC_API_KEY")
        self._key = key
        base_url, query = split_base_url(config.base_url)
        self._sdk = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=base_url,
            default_query=query,
            timeout=config.timeout_s,
            max_retries=0,  # retries are the orchestrator's, so every attempt is recorded
            http_client=http_client(anthropic, config.timeout_s, base_url),
        )
        self._post = DirectPost(self._sdk, "v1/messages", fallback=self._via_create)

    def _via_create(self, body: dict[str, Any]) -> Any:
        """The SDK's streaming ``create`` for a wire-form body (extra_body skips its transform)."""
        rest = dict(body)
        return self._sdk.messages.with_streaming_response.create(
            model=rest.pop("model"), max_tokens=rest["max_tokens"], messages=(), stream=True,
            extra_body=rest,
        )  # fmt: skip

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model_id,
            "messages": _messages(request.messages, thinking=_thinks(request)),
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "stream": True,
        }
        if request.system:
            body["system"] = request.system
        temperature = self.temperature(request)
        # Extended thinking, with Anthropic's rules checked before sending.
        thinking = anthropic_thinking(self.config, request, body["max_tokens"], temperature)
        if thinking is not None:
            body["thinking"] = thinking
        if temperature is not None:
            # anthropic SDK 2.x dropped `temperature` from messages.create's
            # signature; the body goes in extra_body, so it still reaches the wire.
            body["temperature"] = temperature
        # Messages has no seed, penalties or logit_bias: those are refused, unsent.
        sampling = self.sampling(request, _SAMPLING)
        if "stop" in sampling:
            body["stop_sequences"] = sampling["stop"]
        if "top_p" in sampling:
            body["top_p"] = sampling["top_p"]
        if "user" in sampling:
            body["metadata"] = {"user_id": sampling["user"]}
        if request.tools and request.response_format is not None:
            raise invalid_parameter(
                "tools",
                f"model {self.config.name!r} (provider anthropic) cannot take tools and "
                "response_format in one call: its structured output is itself a forced tool.",
                hint="Leave one of them out, or give the answer's shape as one more tool.",
            )
        if request.tools:
            body["tools"] = [t.anthropic() for t in request.tools]
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None and request.tools:
            body["tool_choice"] = choice
        if (fmt := request.response_format) is not None:
            # Structured output as a forced tool: its input is the answer, streamed as
            # input_json_delta and passed on as the text.
            body["tools"] = [
                {
                    "name": fmt.name,
                    "description": "Give the answer as this tool's input.",
                    "input_schema": dict(fmt.schema),
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": fmt.name}
        return body

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamItem, None]:
        input_tokens: int | None = None
        output_tokens: int | None = None
        stop_reason: str | None = None
        called = False
        produced: list[str] = []  # the output, to count tokens when usage is missing or bad
        guard = self.answer_guard(self._key)
        # Content block index -> tool call index, for the tool_use blocks that are calls
        # (not structured output's forced tool, whose input is the answer's text).
        calls: dict[int, int] = {}
        answer_tool = request.response_format.name if request.response_format else None
        body = sendable(self._body(request))  # no lone surrogate: see sendable

        def read(events: list[Event], items: list[StreamItem]) -> bool:
            """The items of events that arrived together; True once the answer is complete."""
            nonlocal input_tokens, output_tokens, stop_reason, called
            for event, data in events:
                payload = self.decode(data)
                kind = payload.get("type", event)
                if kind == "content_block_delta":
                    delta = payload.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        produced.append(delta["text"])
                        if shown := guard.feed(delta["text"]) if guard else delta["text"]:
                            items.append(shown)
                    elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                        items.append(Thinking(delta["thinking"]))  # apart from the answer
                    elif delta.get("type") == "signature_delta" and delta.get("signature"):
                        items.append(Thinking(signature=str(delta["signature"])))
                    elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                        produced.append(delta["partial_json"])
                        if (index := calls.get(payload.get("index", -1))) is not None:
                            items.append(ToolCallDelta(index, arguments=delta["partial_json"]))
                        else:
                            items.append(delta["partial_json"])
                elif kind == "content_block_start":
                    block = payload.get("content_block") or {}
                    if block.get("type") == "tool_use" and block.get("name") != answer_tool:
                        calls[payload.get("index", -1)] = index = len(calls)
                        called = True
                        items.append(
                            ToolCallDelta(index, id=block.get("id"), name=block.get("name"))
                        )
                elif kind == "message_start":
                    items.append(Thinking())  # the first bytes: thinking may follow in silence
                    usage = _dict((payload.get("message") or {}).get("usage"))
                    input_tokens = usage.get("input_tokens", input_tokens)
                    output_tokens = usage.get("output_tokens", output_tokens)
                elif kind == "message_delta":
                    stop_reason = (payload.get("delta") or {}).get("stop_reason") or stop_reason
                    # output_tokens here is cumulative: replace, never add.
                    output_tokens = _dict(payload.get("usage")).get("output_tokens", output_tokens)
                    if stop_reason:
                        return True  # only message_stop can follow: the answer is complete
                elif kind == "message_stop":
                    return True
                elif kind == "error":
                    raise self._stream_failure(payload.get("error") or {})
            return False

        with self.errors_mapped():
            # As for OpenAI: the wire-form body, sent with the SDK's HTTP client and headers
            # past ``create``'s machinery (see providers.direct).
            async with self._post.stream(body) as response:
                async for item in stream_items(response, read):
                    yield item
        if stop_reason is None:
            raise self.stream_error("the stream ended without a stop reason (truncated)")
        if tail := guard.flush():
            yield tail
        if stop_reason == "tool_use" and not called:
            stop_reason = "end_turn"  # structured output's forced tool: the answer is the text
        # Counts are checked, and what is missing or no count is counted locally.
        # Anthropic bills thinking inside output_tokens and reports no separate count: the
        # engine counts the thinking text it returned (after timing the call).
        yield self.usage_end(stop_reason, (input_tokens, output_tokens), request, produced)

    def _stream_failure(self, error: dict[str, Any]) -> Exception:
        kind = str(error.get("type", "error"))
        return self.fail(
            f"{kind}: {error.get('message', 'error event in stream')}",
            status=_STREAM_ERROR_STATUS.get(kind),
            code=kind,
        )

    async def aclose(self) -> None:
        await self._sdk.close()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    """Anthropic's tool_choice: "required" is its "any", a named tool its "tool"."""
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice is not None else "auto"
    out: dict[str, Any] = {"type": {"required": "any"}.get(mode, mode)}
    if choice is not None and choice.name is not None:
        out = {"type": "tool", "name": choice.name}
    if parallel is False and mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _thinks(request: CompletionRequest) -> bool:
    return request.thinking_budget is not None or request.reasoning_effort is not None


def _messages(messages: tuple[Message, ...], *, thinking: bool = False) -> list[dict[str, Any]]:
    """The conversation in Anthropic's form: system messages left out (they go to
    ``system``), tool calls as ``tool_use`` blocks, and tool results, with any user text
    right after them, as one user message of ``tool_result`` blocks. With ``thinking`` on,
    an answer's signed thinking blocks go back before its tool calls, as Anthropic requires."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = [
                {"type": "thinking", "thinking": text, "signature": signature}
                for text, signature in (m.thinking if thinking else ())
            ]
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)}
                for c in m.tool_calls
            ]
            out.append({"role": "assistant", "content": blocks})
            continue
        if m.parts:  # images and documents as their blocks, base64 or URL
            blocks = [anthropic_block(p) for p in m.parts]
            last = out[-1] if out else None
            if last is not None and last["role"] == "user":
                if isinstance(last["content"], str):
                    last["content"] = [{"type": "text", "text": last["content"]}]
                last["content"].extend(blocks)
            else:
                out.append({"role": "user", "content": blocks})
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
        elif m.role == "user" and out and isinstance(out[-1]["content"], list):
            block = {"type": "text", "text": m.content}  # user text after tool results
        else:
            out.append({"role": m.role, "content": m.content})
            continue
        last = out[-1] if out else None
        if last is not None and last["role"] == "user" and isinstance(last["content"], list):
            last["content"].append(block)
        elif last is not None and last["role"] == "user":
            last["content"] = [{"type": "text", "text": last["content"]}, block]
        else:
            out.append({"role": "user", "content": [block]})
    return out


def _arguments(text: str) -> Any:
    """A tool call's arguments as the JSON object Anthropic's ``input`` is."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise invalid_parameter(
            "messages",
            f"a tool call's arguments are not JSON: {text[:60]!r}",
            hint="Send each call's arguments as the model gave them.",
        ) from None
    return value if isinstance(value, dict) else {"value": value}
