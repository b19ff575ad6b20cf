"""Anthropic Messages client over the ``anthropic`` SDK's AsyncAnthropic."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from ..core.completion import CompletionRequest, StreamEnd
from ..core.errors import MissingAPIKeyError
from ..core.models import ModelConfig
from ..core.redaction import read_key
from .base import ModelClient, StreamItem, read_to_end, sse_events

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
        self._sdk = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,  # retries are the orchestrator's, so every attempt is recorded
        )

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model_id,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "stream": True,
        }
        if request.system:
            body["system"] = request.system
        if (temperature := self.temperature(request)) is not None:
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
        body = self._body(request)
        with self.errors_mapped():
            # As for OpenAI: the wire-form body skips the SDK's TypedDict transform.
            async with self._sdk.messages.with_streaming_response.create(
                model=body.pop("model"),
                max_tokens=body["max_tokens"],
                messages=(),
                stream=True,
                extra_body=body,
            ) as response:
                events = sse_events(response.iter_lines())
                async for event, data in events:
                    payload = self.decode(data)
                    kind = payload.get("type", event)
                    if kind == "content_block_delta":
                        delta = payload.get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield delta["text"]
                        elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                            yield delta["partial_json"]
                    elif kind == "message_start":
                        usage = (payload.get("message") or {}).get("usage") or {}
                        input_tokens = usage.get("input_tokens", input_tokens)
                        output_tokens = usage.get("output_tokens", output_tokens)
                    elif kind == "message_delta":
                        stop_reason = (payload.get("delta") or {}).get("stop_reason") or stop_reason
                        # output_tokens here is cumulative: replace, never add.
                        output_tokens = (payload.get("usage") or {}).get(
                            "output_tokens", output_tokens
                        )
                        if stop_reason:
                            break  # only message_stop can follow: the answer is complete
                    elif kind == "message_stop":
                        break
                    elif kind == "error":
                        raise self._stream_failure(payload.get("error") or {})
                if stop_reason is not None:
                    await read_to_end(events)
        if stop_reason is None:
            raise self.stream_error("the stream ended without a stop reason (truncated)")
        yield StreamEnd(stop_reason, input_tokens, output_tokens)

    def _stream_failure(self, error: dict[str, Any]) -> Exception:
        kind = str(error.get("type", "error"))
        return self.fail(
            f"{kind}: {error.get('message', 'error event in stream')}",
            status=_STREAM_ERROR_STATUS.get(kind),
            code=kind,
        )

    async def aclose(self) -> None:
        await self._sdk.close()
