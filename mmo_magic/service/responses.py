"""``POST /v1/responses``: OpenAI's Responses API over the unified interface.

A request's ``input`` (text, or message, ``function_call`` and
``function_call_output`` items) and ``instructions`` become the
orchestrator's messages; ``tools``, ``tool_choice``, ``text.format``,
``max_output_tokens``, ``temperature``, ``top_p``, ``user`` and
``parallel_tool_calls`` become its options, so any configured model (or
router: ``model="auto:task"``) answers. Not streamed, the answer is a
``response`` object; streamed, it is the typed events the openai SDK reads
(``response.created`` ... ``response.completed``), ending in an ``error``
event when the call breaks.

Every other parameter is refused by name unless it is set to what this
service does anyway (``REFUSED``): ``previous_response_id`` (the service
keeps no conversation state; send the whole input), ``store``, and tools
other than functions. ``reasoning.effort`` goes to a reasoning model (others
refuse it); with ``reasoning.summary`` the thinking a provider returned comes
back as a reasoning item (not streamed); reasoning items sent back are
skipped. Images (``input_image`` with a URL or data URL) and files
(``input_file`` with ``file_data``) go on as content parts; stored file ids
are refused. Unknown fields are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..core.completion import CompletionResponse
from ..core.errors import InvalidRequestError
from ..orchestration.orchestrator import AsyncCompletionStream
from ..storage.runlog import new_id
from .schemas import details_out
from .streaming import sse

__all__ = ["REFUSED", "ResponsesRequest", "ResponsesWire", "request_options", "response_object"]

# Parameters this service cannot honour, and the values that ask for nothing it does not do.
REFUSED: dict[str, tuple[object, ...]] = {
    "previous_response_id": (None,),  # no state kept: send the whole conversation as input
    "conversation": (None,),
    "prompt": (None,),  # a stored prompt template
    "background": (None, False),
    "store": (None, False),  # nothing is kept to be fetched later (the run log is ours)
    "include": (None, []),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "truncation": (None, "disabled"),
    "service_tier": (None, "auto", "default"),
    "metadata": (None, {}),
    "stream_options": (None, {}),
    "prompt_cache_key": (None,),
    "prompt_cache_retention": (None,),
    "safety_identifier": (None,),
    "context_management": (None,),
}


class ResponsesRequest(BaseModel):
    """OpenAI's ``responses.create`` body. Fields outside these are checked against
    ``REFUSED``: honoured as given, or refused by name."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None
    stream: bool = False


def refuse(param: str, what: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(
        f"{what or param} is not supported by this server's Responses API. Leave {param} out.",
        param=param,
    )


def check_refused(extra: dict[str, Any], table: dict[str, tuple[object, ...]], hint: str) -> None:
    """A 400 naming the first field of ``extra`` (unknown fields included) this server
    cannot honour; fields set to an "off" value in ``table`` pass."""
    for name, value in extra.items():
        if name not in table:
            raise InvalidRequestError(f"Unknown parameter {name!r}. {hint}", param=name)
        if value not in table[name]:
            raise InvalidRequestError(
                f"{name} is not supported by this server. Leave {name} out.", param=name
            )


def request_options(
    body: ResponsesRequest,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the orchestrator's messages, its options) for ``body``; refusals as 400s naming the
    parameter."""
    check_refused(
        body.model_extra or {}, REFUSED, "The Responses API parameters this server takes "
        "are in its README (the service section)."
    )  # fmt: skip
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        messages.append({"role": "user", "content": body.input})
    else:
        for i, item in enumerate(body.input):
            _add_item(messages, i, item)
    options: dict[str, Any] = {"max_tokens": body.max_output_tokens}
    for name in ("temperature", "top_p", "user"):
        if (value := getattr(body, name)) is not None:
            options[name] = value
    if body.tools:
        options["tools"] = [_tool(i, t) for i, t in enumerate(body.tools)]
    if body.tool_choice is not None:
        options["tool_choice"] = _tool_choice(body.tool_choice)
    if body.parallel_tool_calls is not None and body.tools:
        options["parallel_tool_calls"] = body.parallel_tool_calls
    if body.reasoning:
        check_refused(
            {k: v for k, v in body.reasoning.items() if k != "effort"},
            {"summary": (None, "auto", "concise", "detailed"), "generate_summary": (None,)},
            "reasoning takes effort and summary.",
        )  # fmt: skip
        if body.reasoning.get("effort") is not None:  # a model that does not reason refuses it
            options["reasoning_effort"] = body.reasoning["effort"]
    if body.text:
        check_refused(
            {k: v for k, v in body.text.items() if k != "format"},
            {"verbosity": (None, "medium")}, "text takes format.",
        )  # fmt: skip
        if (fmt := _response_format(body.text.get("format"))) is not None:
            options["response_format"] = fmt
    return messages, options


def _add_item(messages: list[dict[str, Any]], i: int, item: dict[str, Any]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise InvalidRequestError(f"input[{i}].role {str(role)[:40]!r} is not a role.")
        messages.append(
            {"role": "system" if role == "developer" else role, "content": _text(i, item)}
        )
    elif kind == "function_call":
        function = {"name": item.get("name"), "arguments": item.get("arguments", "{}")}
        call = {
            "id": item.get("call_id") or item.get("id"),
            "type": "function",
            "function": function,
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":  # parallel calls: one message
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str):  # a list of content parts
            output = "".join(p.get("text", "") for p in output or () if isinstance(p, dict))
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output})
    elif kind == "reasoning":
        return  # a summary of the model's earlier thinking: not replayable to another model
    else:
        raise refuse(f"input[{i}]", f"An input item of type {str(kind)[:40]!r}")


def _text(i: int, item: dict[str, Any]) -> str | list[dict[str, Any]]:
    """A message item's content: its text, or OpenAI chat parts when it holds images or
    files (the unified interface reads those as content parts, ``core.parts``)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(part.get("text") or "")
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") not in (None, "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and isinstance(part.get("file_data"), str):
            file = {"file_data": part["file_data"], "filename": part.get("filename")}
            parts.append({"type": "file", "file": file})
        else:  # file ids and image ids name a provider's stored files: none here
            raise refuse(f"input[{i}].content", f"A content part of type {str(kind)[:40]!r}")
    return parts if len(parts) > len(texts) else "".join(texts)


def _tool(i: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise refuse(f"tools[{i}]", f"A tool of type {str(tool.get('type'))[:40]!r}")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any]) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise refuse("tool_choice", f"tool_choice of type {str(choice.get('type'))[:40]!r}")


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise refuse("text.format", f"text.format of type {str(fmt.get('type'))[:40]!r}")


# -- the answer --------------------------------------------------------------------------------


def _usage(r: CompletionResponse) -> dict[str, Any] | None:
    if r.input_tokens is None or r.output_tokens is None:
        return None  # unknown is missing, never 0
    return {
        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
        "total_tokens": r.input_tokens + r.output_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": r.reasoning_tokens or 0},
    }  # fmt: skip


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": content if status == "completed" else []}  # fmt: skip


def _call_items(r: CompletionResponse) -> list[dict[str, Any]]:
    return [
        {"type": "function_call", "id": f"fc_{call.id}", "call_id": call.id, "name": call.name,
         "arguments": call.arguments, "status": "completed"}
        for call in r.tool_calls
    ]  # fmt: skip


def _envelope(response_id: str, body: ResponsesRequest, model: str, status: str) -> dict[str, Any]:
    """The fields of a ``response`` object that do not depend on the answer."""
    return {
        "id": response_id, "object": "response", "created_at": int(time.time()),
        "status": status, "model": model, "output": [], "error": None,
        "incomplete_details": None, "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens, "metadata": {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": body.temperature, "top_p": body.top_p,
        "tool_choice": body.tool_choice or "auto", "tools": body.tools or [],
        "text": body.text or {"format": {"type": "text"}}, "usage": None,
        "previous_response_id": None, "reasoning": body.reasoning, "store": False,
        "truncation": "disabled", "user": body.user,
    }  # fmt: skip


def _finish(out: dict[str, Any], r: CompletionResponse, scrub: Callable[[str], str]) -> None:
    cut = r.finish_reason in ("length", "max_tokens")
    out["status"] = "incomplete" if cut else "completed"
    out["incomplete_details"] = {"reason": "max_output_tokens"} if cut else None
    out["model"] = r.model
    out["usage"] = _usage(r)
    out["mmo"] = details_out(r, scrub).model_dump()


def response_object(
    body: ResponsesRequest, r: CompletionResponse, scrub: Callable[[str], str]
) -> dict[str, Any]:
    """The Responses API's ``response`` for a finished call."""
    out = _envelope(f"resp_{r.run_id or new_id()}", body, r.model, "completed")
    if r.reasoning and body.reasoning and body.reasoning.get("summary"):
        summary = [{"type": "summary_text", "text": r.reasoning}]
        out["output"].append({"type": "reasoning", "id": f"rs_{new_id()}", "summary": summary})
    if r.content or not r.tool_calls:
        out["output"].append(_message_item(f"msg_{new_id()}", r.content))
    out["output"].extend(_call_items(r))
    _finish(out, r, scrub)
    return out


class ResponsesWire:
    """The Responses API's typed stream events (``streaming.StreamWire``)."""

    def __init__(self, body: ResponsesRequest, requested: str, scrub: Callable[[str], str]):
        self.body = body
        self.scrub = scrub
        self.sequence = 0
        self.response = _envelope(f"resp_{new_id()}", body, requested, "in_progress")

    def _event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(payload, kind)

    async def events(
        self, stream: AsyncCompletionStream, texts: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[str]:
        event = self._event
        yield event("response.created", response=dict(self.response))
        yield event("response.in_progress", response=dict(self.response))
        output: list[dict[str, Any]] = []
        if first is not None:  # a message item only when there is text
            item_id, at = f"msg_{new_id()}", len(output)
            where = {"item_id": item_id, "output_index": at, "content_index": 0}
            yield event("response.output_item.added", output_index=at,
                        item=_message_item(item_id, "", "in_progress"))  # fmt: skip
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", **where, part=part)
            pieces = []
            text: str | None = first
            while text is not None:
                pieces.append(text)
                yield event("response.output_text.delta", **where, delta=text, logprobs=[])
                text = await anext(texts, None)
            whole = "".join(pieces)
            yield event("response.output_text.done", **where, text=whole, logprobs=[])
            yield event("response.content_part.done", **where, part={**part, "text": whole})
            item = _message_item(item_id, whole)
            output.append(item)
            yield event("response.output_item.done", output_index=at, item=item)
        r = stream.response
        assert r is not None  # set when the texts run out
        for item in _call_items(r):  # tool calls arrive whole: one delta with every argument
            at = len(output)
            yield event("response.output_item.added", output_index=at,
                        item={**item, "arguments": "", "status": "in_progress"})  # fmt: skip
            where = {"item_id": item["id"], "output_index": at}
            yield event("response.function_call_arguments.delta", **where, delta=item["arguments"])
            yield event("response.function_call_arguments.done", **where,
                        arguments=item["arguments"], name=item["name"])  # fmt: skip
            output.append(item)
            yield event("response.output_item.done", output_index=at, item=item)
        self.response["output"] = output
        _finish(self.response, r, self.scrub)
        yield event(f"response.{self.response['status']}", response=self.response)

    def failed(self, error: JSONResponse) -> str:
        """OpenAI's ``error`` event; its ``error`` field makes the openai SDK raise it."""
        detail = _error_detail(error)
        return self._event(
            "error", code=detail.get("code"), message=detail.get("message"),
            param=detail.get("param"), error=detail,
        )  # fmt: skip


def _error_detail(error: JSONResponse) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(bytes(error.body))["error"]
    return detail
