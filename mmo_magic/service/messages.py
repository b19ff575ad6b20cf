"""``POST /v1/messages``: Anthropic's Messages API over the unified interface.

Any configured model answers an Anthropic client (an OpenAI model as well as
a Claude one), and routers too (``model="auto:task"``). ``system``, text,
``tool_use`` and ``tool_result`` blocks, ``tools``, ``tool_choice``,
``stop_sequences``, ``max_tokens``, ``temperature``, ``top_p``,
``thinking`` (a budget for a reasoning model) and ``metadata.user_id``
become the orchestrator's messages and options.
Streamed, the events are the ones the anthropic SDK reads
(``message_start``, ``content_block_start/delta/stop``, ``message_delta``,
``message_stop``), ending in an ``error`` event when the call breaks.

Image and document blocks in user messages go on as content parts
(``core.parts``: a model that cannot see refuses them). Refused by name
(400): ``thinking`` of a type other than enabled/disabled,
``top_k`` (not in the unified interface), tools other than custom ones, and
unknown fields. Errors on this path have Anthropic's shape
(``AnthropicErrors``), and ``x-api-key`` is accepted as well as a bearer key
(``auth.Gate``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.completion import CompletionResponse
from ..core.errors import InvalidRequestError
from ..orchestration.orchestrator import AsyncCompletionStream
from ..storage.runlog import new_id
from .responses import check_refused
from .schemas import details_out
from .streaming import sse

__all__ = ["PATH", "AnthropicErrors", "MessagesRequest", "MessagesWire", "message_object"]

PATH = "/v1/messages"
REFUSED: dict[str, tuple[object, ...]] = {
    "top_k": (None,),  # not in the unified interface
    "service_tier": (None, "auto", "standard_only"),
    "container": (None,),
    "mcp_servers": (None, []),
    "context_management": (None,),
}
# Our finish reasons (OpenAI's or Anthropic's words) as Anthropic's stop reasons.
_STOP = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "content_filter": "refusal", "end_turn": "end_turn", "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence", "tool_use": "tool_use", "refusal": "refusal",
}  # fmt: skip
# HTTP status -> Anthropic's error type.
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error",
}  # fmt: skip


class MessagesRequest(BaseModel):
    """Anthropic's ``messages.create`` body; other fields are checked against ``REFUSED``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    stream: bool = False


def _refuse(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{what} is not supported by this server's Messages API. Leave {param} out.", param=param
    )


def request_options(body: MessagesRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the orchestrator's messages, its options) for ``body``."""
    check_refused(
        body.model_extra or {}, REFUSED,
        "The Messages API parameters this server takes are in its README (the service section).",
    )  # fmt: skip
    messages: list[dict[str, Any]] = []
    if body.system:
        system = body.system
        text = system if isinstance(system, str) else _texts("system", system)
        messages.append({"role": "system", "content": text})
    for i, message in enumerate(body.messages):
        _add_message(messages, i, message)
    options: dict[str, Any] = {"max_tokens": body.max_tokens}
    for name in ("temperature", "top_p"):
        if (value := getattr(body, name)) is not None:
            options[name] = value
    if body.stop_sequences:
        options["stop"] = body.stop_sequences
    if body.metadata:
        check_refused(
            {k: v for k, v in body.metadata.items() if k != "user_id"},
            {},
            "metadata takes user_id.",
        )
        if body.metadata.get("user_id") is not None:
            options["user"] = body.metadata["user_id"]
    if body.thinking and body.thinking.get("type") != "disabled":
        if body.thinking.get("type") != "enabled":
            raise _refuse("thinking", f"thinking of type {str(body.thinking.get('type'))[:40]!r}")
        # The core checks Anthropic's rules, and a model that does not reason refuses it.
        options["thinking_budget"] = body.thinking.get("budget_tokens")
    if body.tools:
        options["tools"] = [_tool(i, t) for i, t in enumerate(body.tools)]
    if body.tool_choice is not None:
        choice, parallel = _tool_choice(body.tool_choice)
        if choice is not None:
            options["tool_choice"] = choice
        if parallel is False and body.tools:
            options["parallel_tool_calls"] = False
    return messages, options


def _texts(where: str, blocks: list[dict[str, Any]]) -> str:
    out = []
    for j, block in enumerate(blocks):
        if block.get("type") != "text":
            raise _refuse(f"{where}[{j}]", f"A {str(block.get('type'))[:40]!r} block")
        out.append(block.get("text") or "")
    return "".join(out)


def _add_message(messages: list[dict[str, Any]], i: int, message: dict[str, Any]) -> None:
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequestError(
            f"messages[{i}].role must be 'user' or 'assistant', not {str(role)[:40]!r}.",
            param=f"messages[{i}].role",
        )
    content = message.get("content")
    if isinstance(content, str):
        messages.append({"role": role, "content": content})
        return
    texts: list[str] = []
    parts: list[dict[str, Any]] = []  # text, image and document blocks, in order
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content or ()):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            texts.append(block.get("text") or "")
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind in ("image", "document") and role == "user":
            # The unified interface reads Anthropic's blocks as content parts (core.parts).
            parts.append({k: v for k, v in block.items() if k != "cache_control"})
        elif kind == "tool_use" and role == "assistant":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind == "tool_result" and role == "user":
            result = block.get("content")
            if isinstance(result, list):
                result = _texts(f"{where}.content", result)
            if block.get("is_error"):
                result = f"Error: {result or ''}"
            messages.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": result or ""}
            )
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # the model's own earlier reasoning: context only, never sent back as text
        else:
            raise _refuse(where, f"A {str(kind)[:40]!r} block")
    if len(parts) > len(texts):  # images or documents: the parts as they came
        messages.append({"role": role, "content": parts})
    elif texts or calls:
        out: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if calls:
            out["tool_calls"] = calls
        messages.append(out)


def _tool(i: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        raise _refuse(f"tools[{i}]", f"A tool of type {str(tool.get('type'))[:40]!r}")
    function = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    """(the tool choice in OpenAI's form or None, parallel tool calls or None)."""
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    raise _refuse("tool_choice", f"tool_choice of type {str(kind)[:40]!r}")


# -- the answer --------------------------------------------------------------------------------


def _stop_reason(r: CompletionResponse) -> str:
    if r.tool_calls:
        return "tool_use"
    return _STOP.get(r.finish_reason or "stop", "end_turn")


def _usage(r: CompletionResponse) -> dict[str, int]:
    # Anthropic's usage fields are required: an unknown count is sent as 0 here, and the
    # mmo details (tokens_estimated, the run record) say what was known.
    return {"input_tokens": r.input_tokens or 0, "output_tokens": r.output_tokens or 0}


def _tool_blocks(r: CompletionResponse) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.args}
        for call in r.tool_calls
    ]


def message_object(r: CompletionResponse, scrub: Callable[[str], str]) -> dict[str, Any]:
    """Anthropic's ``message`` for a finished call."""
    content = [{"type": "text", "text": r.content}] if r.content or not r.tool_calls else []
    if r.reasoning:  # the thinking a provider returned, first, as Anthropic puts it
        content.insert(0, {"type": "thinking", "thinking": r.reasoning, "signature": ""})
    return {
        "id": f"msg_{r.run_id or new_id()}", "type": "message", "role": "assistant",
        "model": r.model, "content": [*content, *_tool_blocks(r)],
        "stop_reason": _stop_reason(r), "stop_sequence": None, "usage": _usage(r),
        "mmo": details_out(r, scrub).model_dump(),
    }  # fmt: skip


class MessagesWire:
    """Anthropic's stream events (``streaming.StreamWire``)."""

    def __init__(self, requested: str, scrub: Callable[[str], str]) -> None:
        self.requested = requested
        self.scrub = scrub

    async def events(
        self, stream: AsyncCompletionStream, texts: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[str]:
        def event(kind: str, **fields: Any) -> str:
            return sse({"type": kind, **fields}, kind)

        usage = {"input_tokens": 0, "output_tokens": 0}  # known at the end (message_delta)
        start: dict[str, Any] = {
            "id": f"msg_{new_id()}", "type": "message", "role": "assistant",
            "model": self.requested, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": usage,
        }  # fmt: skip
        yield event("message_start", message=start)
        index = 0
        if first is not None:  # a text block only when there is text
            yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            text: str | None = first
            while text is not None:
                yield event("content_block_delta", index=0,
                            delta={"type": "text_delta", "text": text})  # fmt: skip
                text = await anext(texts, None)
            yield event("content_block_stop", index=0)
            index = 1
        r = stream.response
        assert r is not None  # set when the texts run out
        for block in _tool_blocks(r):  # tool calls arrive whole: one delta with the input
            yield event("content_block_start", index=index, content_block={**block, "input": {}})
            partial = json.dumps(block["input"], separators=(",", ":"))
            yield event("content_block_delta", index=index,
                        delta={"type": "input_json_delta", "partial_json": partial})  # fmt: skip
            yield event("content_block_stop", index=index)
            index += 1
        yield event(
            "message_delta", delta={"stop_reason": _stop_reason(r), "stop_sequence": None},
            usage=_usage(r), mmo=details_out(r, self.scrub).model_dump(),
        )  # fmt: skip
        yield event("message_stop")

    def failed(self, error: JSONResponse) -> str:
        status, body = error.status_code, json.loads(bytes(error.body))
        return sse(anthropic_error(status, body), "error")


def anthropic_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped error body in Anthropic's shape."""
    error = body.get("error")
    detail: dict[str, Any] = error if isinstance(error, dict) else {}
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": detail.get("message", "")}}


class AnthropicErrors:
    """ASGI middleware: an error answered on ``PATH`` gets Anthropic's body shape,
    ``{"type": "error", "error": {"type", "message"}}``, the gate's refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PATH):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is whole
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            raw = b"".join(chunks)
            try:
                body = json.dumps(anthropic_error(start["status"], json.loads(raw))).encode()
            except ValueError:
                body = raw  # not JSON (a 499 for a client that left): as it was
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)
