"""The two wire formats the simulated provider speaks, as bytes and dicts.

Nothing here does I/O or waits: ``server.py`` decides *when* each frame goes
out; this module decides *what* each provider's JSON looks like.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import BadRequest
from .tools import (
    anthropic_tool_choice,
    anthropic_tools,
    instance_of,
    openai_tool_choice,
    openai_tools,
    tool_to_call,
)

__all__ = [
    "ANTHROPIC", "OPENAI", "BadRequest", "Call", "Frame", "Reply", "Wire", "count_words",
    "embedding_body", "embedding_request", "instance_of",
]  # fmt: skip


@dataclass(frozen=True)
class Call:
    """The parts of a generation request the simulation cares about."""

    model: str  # exactly as sent, options included
    stream: bool
    include_usage: bool  # OpenAI stream_options.include_usage
    input_tokens: int
    last_user: str
    max_tokens: int | None
    # The JSON schema the reply must satisfy: structured output's, or the arguments' of the
    # tool the reply calls (``tool``; for Anthropic's structured output, its forced tool).
    schema: dict[str, Any] | None = None
    tool: str | None = None
    tools_offered: bool = False  # the request had tools (whether or not the reply calls one)
    tool_result: str | None = None  # the text of the tool results the conversation ends with
    turn: int = 0  # messages in the conversation: tool call ids are derived from it
    # The output token count to report instead of the true one (hostile-usage tests): any
    # JSON value, "x" or -5 included; None reports the truth.
    reported_output: Any = None
    # The images and documents the request carried, as (kind, media type, bytes or None
    # for a URL), validated as the real APIs do (see ``media``).
    media: tuple[tuple[str, str, int | None], ...] = ()
    # Reasoning asked for: OpenAI's reasoning_effort, or Anthropic's thinking budget.
    reasoning_effort: str | None = None
    thinking_budget: int | None = None

    @property
    def thinks(self) -> bool:
        return self.reasoning_effort is not None or self.thinking_budget is not None

    def output_tokens(self, reply: Reply) -> Any:
        # Thinking is output, billed as such (OpenAI and Anthropic both count it in).
        if self.reported_output is None:
            return len(reply.words) + len(reply.thinking)
        return self.reported_output

    @property
    def tool_call_id(self) -> str:
        """The id of the reply's tool call: the same for the same tool at the same turn."""
        return f"{zlib.crc32(f'{self.tool}:{self.turn}'.encode()):08x}"


@dataclass(frozen=True)
class Reply:
    words: list[str]
    truncated: bool  # cut short by max_tokens
    thinking: tuple[str, ...] = ()  # the words of its thinking, when reasoning was asked for
    think_s: float = 0  # silent thinking before the first visible word

    @property
    def pieces(self) -> list[str]:
        # One piece per word; later words carry their leading space (or their
        # own whitespace, for literal replies with newlines), so the pieces
        # (streamed deltas, or blocks) concatenate to the content exactly.
        return [w if i == 0 or w[:1].isspace() else f" {w}" for i, w in enumerate(self.words)]

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Frame:
    """One HTTP chunk of an SSE stream."""

    data: bytes
    token: bool = False  # carries one output word (paced by ttft/tps, counted by cut/stall)
    tail: bool = False  # finish reason / usage / end marker: withheld by cut and stall
    delay_s: float = 0  # a silent pause before it (a model thinking)


def count_words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


# -- images and documents ----------------------------------------------------------------------

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MAGIC = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8",
          "application/pdf": b"%PDF-"}  # fmt: skip
_MB = 1024 * 1024
# Per-part size limits (decoded bytes) as the providers document them.
_LIMITS = {"openai": {"image": 20 * _MB, "document": 32 * _MB},
           "anthropic": {"image": 5 * _MB, "document": 32 * _MB}}  # fmt: skip
# Input tokens the simulation counts per part (a token is a word elsewhere): fixed, so
# tests can tell what usage a request with images reports.
IMAGE_TOKENS = 85
DOCUMENT_TOKENS = 500
Media = tuple[str, str, int | None]


def _decoded(data: object, what: str) -> bytes:
    import binascii

    if not isinstance(data, str):
        raise BadRequest(f"{what}: base64 data must be a string")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what}: the data is not valid base64") from None


def _checked(wire: str, kind: str, media_type: object, raw: bytes, what: str) -> Media:
    """(kind, media type, size) of a part's bytes, or BadRequest as the provider would say."""
    allowed = IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if media_type not in allowed:
        raise BadRequest(f"{what}: media type {media_type!r} is not one of {', '.join(allowed)}")
    magic = _MAGIC.get(str(media_type))
    webp = raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
    if (magic is not None and not raw.startswith(magic)) or (
        media_type == "image/webp" and not webp
    ):
        raise BadRequest(f"{what}: the data does not match the media type {media_type}")
    limit = _LIMITS[wire][kind]
    if len(raw) > limit:
        raise BadRequest(f"{what}: {len(raw)} bytes exceeds the {limit // _MB} MB maximum")
    return kind, str(media_type), len(raw)


def _openai_media(messages: list[dict[str, Any]]) -> tuple[Media, ...]:
    out: list[Media] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            what = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":
                spec = part.get("image_url")
                url = spec.get("url") if isinstance(spec, dict) else None
                if not isinstance(url, str):
                    raise BadRequest(f"{what}: image_url.url is required")
                if url.startswith(("http://", "https://")):
                    out.append(("image", "url", None))
                    continue
                head, sep, data = url.partition(";base64,")
                if not head.startswith("data:") or not sep:
                    raise BadRequest(f"{what}: image_url.url must be an http(s) or base64 data URL")
                out.append(_checked("openai", "image", head[5:], _decoded(data, what), what))
            elif kind == "file":
                spec = part.get("file")
                file_data = spec.get("file_data") if isinstance(spec, dict) else None
                if not isinstance(file_data, str):
                    raise BadRequest(f"{what}: file.file_data (or file_id) is required")
                head, sep, data = file_data.partition(";base64,")
                if not head.startswith("data:") or not sep:
                    raise BadRequest(f"{what}: file.file_data must be a base64 data URL")
                out.append(_checked("openai", "document", head[5:], _decoded(data, what), what))
            elif kind not in ("text", None) or not isinstance(part, dict):
                raise BadRequest(f"{what}: unknown content part type {kind!r}")
    return tuple(out)


def _anthropic_media(messages: list[dict[str, Any]]) -> tuple[Media, ...]:
    out: list[Media] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in ("image", "document"):
                continue
            what = f"messages.{i}.content.{j}.{kind}.source"
            source = block.get("source")
            if not isinstance(source, dict):
                raise BadRequest(f"{what}: Field required")
            if source.get("type") == "url" and isinstance(source.get("url"), str):
                out.append((kind, "url", None))
            elif source.get("type") == "base64":
                raw = _decoded(source.get("data"), what)
                out.append(_checked("anthropic", kind, source.get("media_type"), raw, what))
            else:
                raise BadRequest(f"{what}: source type must be 'base64' or 'url'")
    return tuple(out)


def media_tokens(media: tuple[Media, ...]) -> int:
    return sum(IMAGE_TOKENS if kind == "image" else DOCUMENT_TOKENS for kind, _, _ in media)


def describe_media(media: tuple[Media, ...]) -> str:
    """What the simulation can tell about the parts it got: their count, types and sizes."""
    if not media:
        return "I received no images or documents (simulated)."
    seen = [f"{kind} {mtype}" + (f" {size} bytes" if size is not None else "")
            for kind, mtype, size in media]  # fmt: skip
    return f"I received {len(media)} part(s): {'; '.join(seen)} (simulated: sizes only)."


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a list of objects")
    return messages


def _common(body: object) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required")
    return body, model, _messages(body)


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


# kind -> HTTP status; "bad_request" carries its own message (e.g. unknown option).
STATUS = {
    "429": 429,
    "500": 500,
    "503": 503,
    "529": 529,
    "401": 401,
    "400": 400,
    "context_length": 400,
    "content_policy": 400,
    "bad_request": 400,
    "not_found": 404,
}


class Wire:
    """Shared shape of the two providers; subclasses fill in the JSON."""

    name = ""

    def parse(self, body: object) -> Call:
        raise NotImplementedError

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def body(self, call: Call, reply: Reply, *, finish: bool, usage: bool, blocks: int) -> bytes:
        raise NotImplementedError

    def frames(
        self, call: Call, reply: Reply, *, finish: bool, done: bool, usage: bool, blocks: int
    ) -> list[Frame]:
        raise NotImplementedError

    malformed = b""  # one SSE event whose data is not valid JSON

    def error(
        self, kind: str, call: Call | None, detail: str = "", key: str | None = None
    ) -> tuple[int, bytes]:
        """(status, JSON body) for a scripted failure or a request problem.

        `key`, if given, is quoted in the message, as careless providers do.
        """
        tokens = call.input_tokens if call else 0
        messages = {
            "429": "Rate limit reached for requests (simulated).",
            "500": "The server had an error while processing your request (simulated).",
            "503": "The server is temporarily unavailable (simulated).",
            "529": "Overloaded (simulated).",
            "401": "Invalid API key provided (simulated).",
            "400": "Bad request (simulated).",
            "context_length": self.context_message(tokens),
            "content_policy": "Request rejected by the content policy (simulated).",
        }
        message = detail or messages.get(kind, "Error (simulated).")
        if key is not None:
            message += f" API key sent: {key}"
        return STATUS[kind], _dumps(self.error_body(kind, message)).encode()

    def context_message(self, tokens: int) -> str:
        raise NotImplementedError


class _OpenAI(Wire):
    name = "openai"
    malformed = b'data: {"choices": [\n\n'

    _TYPES: ClassVar[dict[str, tuple[str, str | None]]] = {  # kind -> (type, code)
        "429": ("requests", "rate_limit_exceeded"),
        "500": ("server_error", None),
        "503": ("server_error", None),
        "529": ("server_error", "overloaded"),
        "401": ("invalid_request_error", "invalid_api_key"),
        "context_length": ("invalid_request_error", "context_length_exceeded"),
        "content_policy": ("invalid_request_error", "content_policy_violation"),
        "not_found": ("invalid_request_error", "not_found"),
    }

    def context_message(self, tokens: int) -> str:
        return (
            f"This model's maximum context length is {max(0, tokens - 1)} tokens, "
            f"but your messages resulted in {tokens} tokens (simulated)."
        )

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        type_, code = self._TYPES.get(kind, ("invalid_request_error", None))
        return {"error": {"message": message, "type": type_, "param": None, "code": code}}

    def parse(self, body: object) -> Call:
        body, model, messages = _common(body)
        options = body.get("stream_options") or {}
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        tools = openai_tools(body.get("tools"))
        mode, forced = openai_tool_choice(body.get("tool_choice"))
        called = [
            str(c["function"].get("name"))
            for m in messages
            for c in (m["tool_calls"] if isinstance(m.get("tool_calls"), list) else ())
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        ]
        results: list[str] = []
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            results.insert(0, _text_of(m.get("content")))
        tool, schema = tool_to_call(tools, mode, forced, called, ended_with_result=bool(results))
        media = _openai_media(messages)
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in EFFORTS:
            raise BadRequest(
                f"Invalid value for 'reasoning_effort': {effort!r}. Supported values are: "
                + ", ".join(map(repr, EFFORTS))
            )
        return Call(
            reasoning_effort=effort,
            model=model,
            stream=bool(body.get("stream")),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            input_tokens=sum(count_words(_text_of(m.get("content"))) for m in messages)
            + media_tokens(media),
            media=media,
            last_user=_last_user(messages),
            max_tokens=limit if isinstance(limit, int) else None,
            schema=schema if tool else _openai_schema(body.get("response_format")),
            tool=tool,
            tools_offered=bool(tools),
            tool_result=" ".join(results) if results else None,
            turn=len(messages),
        )

    @staticmethod
    def _usage(call: Call, reply: Reply) -> dict[str, Any]:
        out = call.output_tokens(reply)
        total = call.input_tokens + out if isinstance(out, int) else out
        usage = {"prompt_tokens": call.input_tokens, "completion_tokens": out,
                 "total_tokens": total}  # fmt: skip
        if call.thinks:  # reasoning tokens: part of completion_tokens, as OpenAI reports them
            usage["completion_tokens_details"] = {"reasoning_tokens": len(reply.thinking)}
        return usage

    @staticmethod
    def _finish(reply: Reply, call: Call) -> str:
        return "length" if reply.truncated else "tool_calls" if call.tool else "stop"

    def body(self, call: Call, reply: Reply, *, finish: bool, usage: bool, blocks: int) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if call.tool:
            function = {"name": call.tool, "arguments": reply.text}
            message["content"] = None
            message["tool_calls"] = [
                {"id": f"call_sim_{call.tool_call_id}", "type": "function", "function": function}
            ]
        obj: dict[str, Any] = {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self._finish(reply, call) if finish else None,
                    "logprobs": None,
                }
            ],
        }
        if usage:
            obj["usage"] = self._usage(call, reply)
        return _dumps(obj).encode()

    def frames(
        self, call: Call, reply: Reply, *, finish: bool, done: bool, usage: bool, blocks: int
    ) -> list[Frame]:
        chunk_id = f"chatcmpl-sim-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            obj = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": call.model,
                "choices": choices,
                **extra,
            }
            return f"data: {_dumps(obj)}\n\n".encode()

        def delta(d: dict[str, Any], reason: str | None = None) -> bytes:
            return event([{"index": 0, "delta": d, "finish_reason": reason, "logprobs": None}])

        pieces = reply.pieces
        if call.tool:  # a tool call: its name first, then its arguments a word at a time
            opening = {"index": 0, "id": f"call_sim_{call.tool_call_id}", "type": "function",
                       "function": {"name": call.tool, "arguments": ""}}  # fmt: skip
            role = delta({"role": "assistant", "content": None, "tool_calls": [opening]})

            def piece(p: str) -> bytes:
                return delta({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
        else:
            role = delta({"role": "assistant", "content": ""})

            def piece(p: str) -> bytes:
                return delta({"content": p})

        if not pieces:
            frames = [Frame(role)]
        elif call.thinks:
            # The first bytes at once, then silence while it thinks (Chat Completions
            # streams no thinking), then the answer.
            frames = [Frame(role), Frame(piece(pieces[0]), token=True, delay_s=reply.think_s)]
            frames += [Frame(piece(p), token=True) for p in pieces[1:]]
        else:
            # The role chunk travels with the first word, so a client timing its
            # first chunk measures the scripted time to first token.
            frames = [Frame(role + piece(pieces[0]), token=True)]
            frames += [Frame(piece(p), token=True) for p in pieces[1:]]
        if finish:
            frames.append(Frame(delta({}, self._finish(reply, call)), tail=True))
        if usage and call.include_usage:
            frames.append(Frame(event([], usage=self._usage(call, reply)), tail=True))
        if done:
            frames.append(Frame(b"data: [DONE]\n\n", tail=True))
        return frames


class _Anthropic(Wire):
    name = "anthropic"
    malformed = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'

    _TYPES: ClassVar[dict[str, str]] = {
        "429": "rate_limit_error",
        "500": "api_error",
        "503": "api_error",
        "529": "overloaded_error",
        "401": "authentication_error",
        "not_found": "not_found_error",
    }

    def context_message(self, tokens: int) -> str:
        return f"prompt is too long: {tokens} tokens > {max(0, tokens - 1)} maximum (simulated)"

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        type_ = self._TYPES.get(kind, "invalid_request_error")
        return {"type": "error", "error": {"type": type_, "message": message}}

    def parse(self, body: object) -> Call:
        body, model, messages = _common(body)
        limit = body.get("max_tokens")
        words = count_words(_text_of(body.get("system")))
        words += sum(count_words(_text_of(m.get("content"))) for m in messages)
        tools = anthropic_tools(body.get("tools"))
        mode, forced = anthropic_tool_choice(body.get("tool_choice"))
        blocks = [
            b for m in messages if isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict)
        ]  # fmt: skip
        called = [str(b.get("name")) for b in blocks if b.get("type") == "tool_use"]
        last = messages[-1].get("content") if messages else None
        results = [
            _text_of(b.get("content")) for b in (last if isinstance(last, list) else ())
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]  # fmt: skip
        tool, schema = tool_to_call(tools, mode, forced, called, ended_with_result=bool(results))
        media = _anthropic_media(messages)
        budget = _anthropic_thinking(body, limit)
        if budget is not None:
            _check_thinking_blocks(messages)
        return Call(
            thinking_budget=budget,
            model=model,
            stream=bool(body.get("stream")),
            include_usage=True,
            input_tokens=words + media_tokens(media),
            media=media,
            last_user=_last_user(messages),
            max_tokens=limit if isinstance(limit, int) else None,
            schema=schema,
            tool=tool,
            tools_offered=bool(tools),
            tool_result=" ".join(results) if results else None,
            turn=len(messages),
        )

    @staticmethod
    def _blocks(reply: Reply, blocks: int) -> list[list[str]]:
        """Split the pieces into at most `blocks` contiguous, near-equal groups."""
        pieces = reply.pieces
        count = max(1, min(blocks, len(pieces)))
        size, extra = divmod(len(pieces), count)
        groups, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            groups.append(pieces[start:end])
            start = end
        return [g for g in groups if g]

    @staticmethod
    def _stop(reply: Reply, call: Call | None = None) -> str:
        if reply.truncated:
            return "max_tokens"
        return "tool_use" if call is not None and call.tool else "end_turn"

    def _message(self, call: Call, content: list[dict[str, Any]], stop: str | None) -> dict:
        return {
            "id": f"msg_sim_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
        }

    def body(self, call: Call, reply: Reply, *, finish: bool, usage: bool, blocks: int) -> bytes:
        content: list[dict[str, Any]]
        if call.tool:
            try:
                given: Any = json.loads(reply.text)
            except ValueError:
                given = {}
            content = [
                {"type": "tool_use", "id": f"toolu_sim_{call.tool_call_id}", "name": call.tool,
                 "input": given}
            ]  # fmt: skip
        else:
            content = [{"type": "text", "text": "".join(g)} for g in self._blocks(reply, blocks)]
        if reply.thinking:
            content.insert(0, {"type": "thinking", "thinking": " ".join(reply.thinking),
                               "signature": _SIGNATURE})  # fmt: skip
        obj = self._message(call, content, self._stop(reply, call) if finish else None)
        obj["usage"] = {
            "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens(reply),
        }
        return _dumps(obj).encode()

    def frames(
        self, call: Call, reply: Reply, *, finish: bool, done: bool, usage: bool, blocks: int
    ) -> list[Frame]:
        def event(name: str, obj: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {_dumps({'type': name, **obj})}\n\n".encode()

        start = self._message(call, [], None)
        start["usage"] = {"input_tokens": call.input_tokens, "output_tokens": 1}
        frames = [Frame(event("message_start", {"message": start}) + event("ping", {}))]
        groups = [reply.pieces] if call.tool and reply.pieces else self._blocks(reply, blocks)
        first = 0
        if reply.thinking:  # a thinking block first, streamed a word at a time, then signed
            opening = event("content_block_start", {"index": 0, "content_block": {
                "type": "thinking", "thinking": "", "signature": ""}})  # fmt: skip
            for i, word in enumerate(reply.thinking):
                d = {"type": "thinking_delta", "thinking": word if i == 0 else f" {word}"}
                data = event("content_block_delta", {"index": 0, "delta": d})
                frames.append(Frame(opening + data if i == 0 else data))
            signature = {"type": "signature_delta", "signature": _SIGNATURE}
            frames.append(Frame(event("content_block_delta", {"index": 0, "delta": signature})))
            frames.append(Frame(event("content_block_stop", {"index": 0})))
            first = 1
        for index, group in enumerate(groups, start=first):
            block: dict[str, Any] = {"type": "text", "text": ""}
            if call.tool:  # the forced tool's input, streamed as partial JSON
                block = {"type": "tool_use", "id": f"toolu_sim_{call.tool_call_id}",
                         "name": call.tool, "input": {}}  # fmt: skip
            opening = event("content_block_start", {"index": index, "content_block": block})
            for i, piece in enumerate(group):
                d = (
                    {"type": "input_json_delta", "partial_json": piece}
                    if call.tool
                    else {"type": "text_delta", "text": piece}
                )
                data = event("content_block_delta", {"index": index, "delta": d})
                pause = reply.think_s if index == first and i == 0 and reply.thinking else 0
                frames.append(Frame(opening + data if i == 0 else data, token=True, delay_s=pause))
            frames.append(Frame(event("content_block_stop", {"index": index})))
        stop = self._stop(reply, call) if finish else None
        delta = {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": call.output_tokens(reply)},
        }
        frames.append(Frame(event("message_delta", delta), tail=True))
        if done:
            frames.append(Frame(event("message_stop", {}), tail=True))
        return frames


EFFORTS = ("minimal", "low", "medium", "high")
_SIGNATURE = "c2ltdWxhdGVkLXNpZ25hdHVyZQ=="  # a thinking block's signature (simulated)


def _anthropic_thinking(body: dict[str, Any], max_tokens: object) -> int | None:
    """The thinking budget of a Messages request, checked by Anthropic's rules."""
    thinking = body.get("thinking")
    if thinking is None or (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        return None
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        raise BadRequest("thinking: type must be 'enabled' or 'disabled'")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise BadRequest("thinking.enabled.budget_tokens: Input should be greater than or "
                         "equal to 1024")  # fmt: skip
    if not isinstance(max_tokens, int) or max_tokens <= budget:
        raise BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    if body.get("temperature", 1) != 1:
        raise BadRequest("`temperature` may only be set to 1 when thinking is enabled")
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and top_p < 0.95:
        raise BadRequest("`top_p` must be greater than or equal to 0.95 when thinking is enabled")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
    return budget


def _check_thinking_blocks(messages: list[dict[str, Any]]) -> None:
    """With thinking on, the last assistant turn that called tools must start with the signed
    thinking block it came with, its signature intact (as Anthropic requires)."""
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not turns:
        return
    i, last = turns[-1]
    content = last.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    if not any(b.get("type") == "tool_use" for b in blocks):
        return
    if blocks[0].get("type") not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` "
            "message must start with a thinking block"
        )
    if blocks[0].get("type") == "thinking" and blocks[0].get("signature") != _SIGNATURE:
        raise BadRequest(f"messages.{i}.content.0: Invalid `signature` in `thinking` block")


def _openai_schema(value: object) -> dict[str, Any] | None:
    """The schema of an OpenAI ``response_format`` (json_schema, or json_object: any object)."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return {"type": "object"}
    spec = value.get("json_schema")
    if value.get("type") != "json_schema" or not isinstance(spec, dict):
        return None
    schema = spec.get("schema")
    return schema if isinstance(schema, dict) else {"type": "object"}


# -- embeddings (OpenAI's /v1/embeddings) ------------------------------------------------------

_MAX_INPUTS = 2048  # OpenAI's limit of inputs per request


def embedding_request(body: object) -> tuple[list[str], int, str]:
    """(texts, dimensions, encoding format) of an embeddings request, or BadRequest."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("'model' is required")
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("'input' must be a string or a non-empty array of strings")
    if len(texts) > _MAX_INPUTS:
        raise BadRequest(f"'input' has {len(texts)} items; at most {_MAX_INPUTS} per request")
    if any(not t for t in texts):
        raise BadRequest("'input' cannot contain an empty string")
    dimensions = body.get("dimensions", 64)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise BadRequest("'dimensions' must be a positive integer")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'")
    return texts, min(dimensions, 4096), str(encoding)


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector of hashed words: texts that share words point the same way."""
    vector = [0.0] * dimensions
    for word in text.lower().split():
        h = zlib.crc32(word.strip(".,;:!?\"'()").encode())
        vector[h % dimensions] += 1.0 if h & 0x80000000 else -1.0
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def embedding_body(model: str, texts: list[str], dimensions: int, encoding: str) -> bytes:
    import base64
    import struct

    data = []
    for i, text in enumerate(texts):
        vector: Any = embedding_vector(text, dimensions)
        if encoding == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = sum(count_words(t) for t in texts)
    obj = {"object": "list", "data": data, "model": model,
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
    return _dumps(obj).encode()


OPENAI: Wire = _OpenAI()
ANTHROPIC: Wire = _Anthropic()
