"""OpenAI Chat Completions clients: OpenAI itself, and any OpenAI-compatible local server."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import AsyncGenerator
from typing import Any

from ..core.completion import CompletionRequest, Message, Thinking, ToolCallDelta
from ..core.embeddings import EmbeddingBatch
from ..core.errors import MissingAPIKeyError, ProviderError
from ..core.models import ModelConfig
from ..core.parts import openai_part
from ..core.reasoning import openai_effort
from ..core.redaction import read_key, redact_url
from .base import (
    Event,
    ModelClient,
    StreamItem,
    sendable,
    split_base_url,
    stream_items,
    token_count,
)
from .direct import DirectPost, http_client

__all__ = ["LocalClient", "OpenAIClient"]

# Keyless servers still need *some* bearer value for the SDK to build a request.
_NO_KEY = "not-needed"
# OpenAI-compatible hosts whose documentation names only max_tokens (Gemini and Groq
# also take max_completion_tokens; local servers use LocalClient).
_MAX_TOKENS_HOSTS = frozenset(
    {"api.mistral.ai", "api.deepseek.com", "api.together.xyz", "openrouter.ai"}
)


class OpenAIClient(ModelClient):
    """Streams from ``/chat/completions`` with the ``openai`` SDK's AsyncOpenAI."""

    # OpenAI's current models take max_completion_tokens (reasoning models reject
    # max_tokens); OpenAI-compatible servers mostly know only max_tokens.
    max_tokens_param = "max_completion_tokens"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        import openai

        host = urllib.parse.urlsplit(config.base_url or "").hostname or ""
        if host in _MAX_TOKENS_HOSTS:
            self.max_tokens_param = "max_tokens"

        self._key = self._api_key()
        base_url, query = split_base_url(config.base_url)
        self._sdk = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=base_url,
            default_query=query,
            timeout=config.timeout_s,
            max_retries=0,  # retries are the orchestrator's, so every attempt is recorded
            http_client=http_client(openai, config.timeout_s, base_url),
        )
        self._post = DirectPost(self._sdk, "chat/completions", fallback=self._via_create)

    def _via_create(self, body: dict[str, Any]) -> Any:
        """The SDK's streaming ``create`` for a wire-form body (extra_body skips its transform)."""
        rest = dict(body)
        return self._sdk.chat.completions.with_streaming_response.create(
            model=rest.pop("model"), messages=(), stream=True, extra_body=rest
        )

    def _api_key(self) -> str:
        key = read_key(self.config.api_key_env)
        if key is None:
            raise MissingAPIKeyError(self.config.name, self.config.api_key_env or "OPENAI_API_KEY")
        return key

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model_id,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            self.max_tokens_param: request.max_tokens or self.config.max_tokens,
        }
        if (temperature := self.temperature(request)) is not None:
            body["temperature"] = temperature
        # stop, seed, top_p, the penalties, logit_bias, user: OpenAI's own names and form.
        body.update(self.sampling(request, CompletionRequest.SAMPLING))
        if request.response_format is not None:
            # Structured output: OpenAI's json_schema, strict (the schema closed for it).
            body["response_format"] = request.response_format.openai()
        if request.tools:
            body["tools"] = [t.openai() for t in request.tools]
            if request.parallel_tool_calls is not None:  # OpenAI refuses it without tools
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice.openai()
        if (effort := openai_effort(request)) is not None:
            body["reasoning_effort"] = effort  # a thinking_budget mapped to its effort
        return body

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamItem, None]:
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        produced: list[str] = []
        alive = False
        guard = self.answer_guard(self._key)
        body = sendable(self._body(request))  # no lone surrogate: see sendable

        def read(events: list[Event], items: list[StreamItem]) -> bool:
            """The items of events that arrived together; True once the answer is complete."""
            nonlocal finish_reason, usage, alive
            for _event, data in events:
                if data == "[DONE]":
                    return True
                chunk = self.decode(data)
                if not alive:  # the first bytes: a model may think a while after them
                    alive = True
                    items.append(Thinking())
                if "error" in chunk:
                    raise self.stream_error(str(chunk["error"].get("message", chunk["error"])))
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    # OpenAI-compatible servers (vLLM, DeepSeek, Ollama) stream thinking so.
                    thought = delta.get("reasoning_content") or delta.get("reasoning")
                    if thought and isinstance(thought, str):
                        items.append(Thinking(thought))
                    text = delta.get("content")
                    if text and isinstance(text, str):
                        produced.append(text)
                        if shown := guard.feed(text) if guard else text:
                            items.append(shown)
                    for call in delta.get("tool_calls") or ():
                        piece = _tool_call_delta(call)
                        produced.append(piece.arguments)
                        items.append(piece)
                    finish_reason = choice.get("finish_reason") or finish_reason
                if isinstance(chunk.get("usage"), dict) and chunk["usage"]:
                    usage = chunk["usage"]
                    if finish_reason:
                        return True  # usage is the last chunk: the answer is complete
            return False

        with self.errors_mapped():
            # The body is already in wire form: sent with the SDK's HTTP client and
            # headers, past ``create``'s machinery (see providers.direct).
            async with self._post.stream(body) as response:
                async for item in stream_items(response, read):
                    yield item
        if finish_reason is None:
            raise self.stream_error("the stream ended without a finish reason (truncated)")
        if tail := guard.flush():
            yield tail
        # Counts are checked, and what is missing or no count is counted locally.
        reported = (usage or {}).get("prompt_tokens"), (usage or {}).get("completion_tokens")
        end = self.usage_end(finish_reason, reported, request, produced)
        details = (usage or {}).get("completion_tokens_details")
        if isinstance(details, dict) and (thinking := token_count(details.get("reasoning_tokens"))):
            # Part of completion_tokens already, so billed as output once.
            end = dataclasses.replace(end, reasoning_tokens=thinking)
        yield end

    async def aclose(self) -> None:
        await self._sdk.close()

    async def embed(self, texts: list[str]) -> EmbeddingBatch:
        """One ``/embeddings`` request: the vectors in input order, and the reported tokens.

        Read from the raw JSON (floats asked for): the SDK's typed objects cost ~1 ms per
        vector of 1,536 floats for nothing we use.
        """
        with self.errors_mapped():
            response = await self._sdk.embeddings.with_raw_response.create(
                model=self.config.model_id, input=sendable(texts), encoding_format="float"
            )
            obj = json.loads(response.http_response.text)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            got = len(data) if isinstance(data, list) else "no"
            raise self.fail(f"the embeddings answer had {got} vectors for {len(texts)} texts")
        ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        vectors = [d.get("embedding") if isinstance(d, dict) else None for d in ordered]
        if not all(isinstance(v, list) and v for v in vectors):
            raise self.fail("the embeddings answer has a vector that is no list of numbers")
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        return EmbeddingBatch(vectors, token_count(usage.get("prompt_tokens")))  # type: ignore[arg-type]


def _message(m: Message) -> dict[str, Any]:
    """One message in OpenAI's form: tool calls on assistant messages, ids on tool results."""
    if m.tool_calls:
        return {
            "role": m.role,
            "content": m.content or None,
            "tool_calls": [c.openai() for c in m.tool_calls],
        }
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if m.parts:  # images as image_url (a data URL or the URL), PDFs as file inputs
        return {"role": m.role, "content": [openai_part(p) for p in m.parts]}
    return {"role": m.role, "content": m.content}


def _tool_call_delta(call: dict[str, Any]) -> ToolCallDelta:
    """A streamed ``delta.tool_calls`` entry: its index, and id and name on its first piece."""
    function = call.get("function") or {}
    return ToolCallDelta(
        index=int(call.get("index") or 0),
        id=call.get("id") or None,
        name=function.get("name") or None,
        arguments=function.get("arguments") or "",
    )


class LocalClient(OpenAIClient):
    """Any OpenAI-compatible server (Ollama, vLLM, llama.cpp's server) at ``base_url``.

    Structured output goes as OpenAI's ``json_schema`` (which Ollama, vLLM and
    llama.cpp's server accept); a server that refuses it (HTTP 400 naming
    response_format or json_schema) fails with an error saying so. Tools go as
    OpenAI's, and a server without tool calling (HTTP 400 naming tools) fails the
    same way.
    """

    max_tokens_param = "max_tokens"

    def _api_key(self) -> str:
        return read_key(self.config.api_key_env) or _NO_KEY

    @property
    def _url(self) -> str:
        return redact_url(self.config.base_url or "")

    def translate(self, exc: Exception) -> BaseException | None:
        mapped = super().translate(exc)
        if (
            isinstance(mapped, ProviderError)
            and mapped.status in (400, 422)
            and any(w in mapped.message.lower() for w in ("tools", "tool_choice", "tool call"))
        ):
            return self.fail(
                f"tool calling is not supported by the server at {self._url}: {mapped.message}",
                status=mapped.status,
                code="tools_unsupported",
                hint="Leave tools out for this model, or use a server with tool calling "
                "(Ollama, vLLM with --enable-auto-tool-choice, llama.cpp's server with --jinja).",
            )
        if (
            isinstance(mapped, ProviderError)
            and mapped.status in (400, 422)
            and any(w in mapped.message.lower() for w in ("response_format", "json_schema"))
        ):
            return self.fail(
                f"structured output (response_format json_schema) is not supported by the "
                f"server at {self._url}: {mapped.message}",
                status=mapped.status,
                code="structured_output_unsupported",
                hint="Leave response_format out for this model, or use a server that has "
                "json_schema (Ollama, vLLM, llama.cpp's server).",
            )
        return mapped
