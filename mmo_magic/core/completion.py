"""Provider-neutral request and response types shared by every layer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .attempts import Attempt, Status
from .errors import InvalidRequestError
from .money import format_usd
from .parts import Part, content_parts, is_part_list
from .structured import ResponseFormat, Tool, ToolChoice

__all__ = [
    "CompletionRequest",
    "CompletionResponse",
    "Message",
    "Prompt",
    "StreamEnd",
    "Thinking",
    "ToolCall",
    "ToolCallDelta",
    "as_messages",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: the tool's ``name`` and its ``arguments`` as raw JSON text.

    ``id`` pairs the call with its result: answer it with ``call.result(text)``.
    """

    id: str
    name: str
    arguments: str = "{}"

    @property
    def args(self) -> Any:
        """The arguments decoded (a dict for every call a model made through mmo_magic)."""
        return json.loads(self.arguments or "{}")

    def result(self, content: str) -> Message:
        """The ``tool`` message that answers this call with ``content``."""
        return Message("tool", content, tool_call_id=self.id)

    def openai(self) -> dict[str, Any]:
        """This call in OpenAI's ``tool_calls`` form."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the call at ``index`` gets these fields added.

    ``id`` and ``name`` come once, with the call's first piece; ``arguments`` is
    the next piece of its JSON text.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. An assistant message may carry the ``tool_calls`` it made (its
    ``content`` then often ""); a ``tool`` message is one call's result (``tool_call_id``).

    A message with images or documents has them in ``parts`` (text parts too, in their
    order); ``content`` is then its text parts joined, what routers, judges and the run
    log read. ``Message.of(role, [parts...])`` builds one from a content list.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    parts: tuple[Part, ...] = ()
    # An assistant answer's signed thinking blocks, (text, signature): sent back only where
    # the provider requires it (Anthropic, thinking on, before that answer's tool calls).
    thinking: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, role: Role, content: str | Sequence[Any], where: str = "The prompt") -> Message:
        """A message from text or a content list (strings, Parts, OpenAI part dicts,
        Anthropic blocks)."""
        if isinstance(content, str):
            return cls(role, content)
        parts = content_parts(content, where)
        text = "\n".join(p.text for p in parts if p.kind == "text")
        if all(p.kind == "text" for p in parts):
            return cls(role, text)  # text blocks only: plain text on every wire
        return cls(role, text, parts=parts)


# What users pass as a prompt: a string, chat messages (Message or dicts in OpenAI's form:
# {"role", "content"}, plus "tool_calls" on assistant messages and "tool_call_id" on tool ones;
# a content may be a list of parts), or a list of content parts (text, Image, Document).
Prompt = str | Sequence[Message | Mapping[str, Any] | Part]


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What a client sends: the conversation and the sampling settings.

    None means "not set": the provider's default, and nothing on the wire.
    ``stop``: sequences that end the answer. ``logit_bias``: token id (as a
    string of digits, as on OpenAI's wire) -> bias from -100 to 100. ``user``:
    an end-user id the provider may use for abuse monitoring.
    ``response_format``: the schema of a structured answer (see ``core.structured``).
    """

    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = field(default=None, hash=False)
    user: str | None = None
    # The JSON schema the answer must follow (structured output); None for free text.
    response_format: ResponseFormat | None = None
    # Tool calling: the tools the model may call, and whether or which it must (None: the
    # provider's default, "auto"). ``parallel_tool_calls`` False: at most one call.
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Reasoning models: how hard to think ("minimal" | "low" | "medium" | "high"), or a
    # budget of thinking tokens; each provider maps them (see core.reasoning).
    reasoning_effort: str | None = None
    thinking_budget: int | None = None

    # The sampling options beside temperature and max_tokens, in OpenAI's spelling. Each
    # provider client sends those it has (mapped to its own names) and refuses the others.
    SAMPLING: ClassVar[tuple[str, ...]] = (
        "stop", "seed", "top_p", "frequency_penalty", "presence_penalty", "logit_bias", "user",
    )  # fmt: skip

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling options that are set (see ``SAMPLING``), in OpenAI's form:
        ``stop`` a list, ``logit_bias`` a dict. Empty for most calls."""
        out: dict[str, Any] = {}
        for name in self.SAMPLING:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name == "stop" else value
        if "logit_bias" in out:
            out["logit_bias"] = dict(out["logit_bias"])
        return out

    @property
    def uses_tools(self) -> bool:
        """Tools are offered, or the conversation holds tool calls or their results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def system(self) -> str | None:
        parts = [m.content for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    @property
    def prompt_text(self) -> str:
        """The last user message: what a person would call the prompt."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""


@dataclass(frozen=True, slots=True)
class Thinking:
    """A stream item that is no answer: a piece of the model's thinking (Anthropic thinking
    blocks, ``reasoning_content`` of OpenAI-compatible servers), or "" for a sign of life
    (the first bytes of a response that is still thinking). Kept apart from the answer."""

    text: str = ""
    # Set on the item that closes a signed thinking block (Anthropic's signature_delta): the
    # block's text since the previous one, with this signature, must go back unchanged
    # before the tool calls of that answer in a tool loop.
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a client stream: why it stopped and what it used.

    Token counts are None when the provider reported none and nothing could
    estimate them; ``estimated`` marks counts made locally rather than billed.
    """

    finish_reason: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated: bool = False
    # Of output_tokens, those spent thinking (billed as output); None when not reported.
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class CompletionResponse:
    """One model's answer (or failure) with its usage, timing and cost.

    ``model`` is the model that actually answered. ``cost`` is None when the
    model is unpriced or its usage is unknown: missing, never 0. ``group_id``
    is shared by every call of one race, fan-out, consensus or pipeline (and
    by the attempts of one call): ``runs.records(group_id=...)`` finds them.
    """

    content: str
    model: str
    provider: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    cost: float | None = None
    status: Status = "ok"
    error: str | None = None
    finish_reason: str | None = None
    ttft_ms: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cached: bool = False
    run_id: str | None = None
    route_reason: str | None = None
    tokens_estimated: bool = False
    group_id: str | None = None
    # Structured output: the answer validated (a pydantic instance when a class was given,
    # else the decoded JSON); None for free text and for failures.
    parsed: Any = None
    # The tools the model called (finish_reason "tool_calls"); empty when it answered in text.
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Reasoning models: the thinking text a provider returned (never part of ``content``),
    # the tokens spent thinking (part of output_tokens, billed as output), and when the
    # first bytes of any kind came (``ttft_ms`` is the first visible token).
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    first_activity_ms: float | None = None
    # Signed thinking blocks (text, signature), for ``message`` to carry into a tool loop.
    thinking_blocks: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    @property
    def message(self) -> Message:
        """The answer as the assistant message to add to the conversation (tool calls kept,
        and the signed thinking blocks a provider needs back with them)."""
        return Message("assistant", self.content, tool_calls=tuple(self.tool_calls),
                       thinking=tuple(self.thinking_blocks))  # fmt: skip

    def footer(self) -> str:
        """One line: model, tokens, time to first token, latency, cost."""
        parts = [self.model]
        if self.status != "ok":
            parts.append(f"{self.status}: {self.error}")
        approx = "~" if self.tokens_estimated else ""
        if self.input_tokens is not None and self.output_tokens is not None:
            parts.append(f"{approx}{self.input_tokens}→{approx}{self.output_tokens} tokens")
        if self.reasoning_tokens:
            parts.append(f"{self.reasoning_tokens} thinking")
        if self.ttft_ms is not None:
            parts.append(f"ttft {self.ttft_ms:.0f} ms")
        if self.latency_ms is not None:
            parts.append(f"{self.latency_ms:.0f} ms")
        parts.append(format_usd(self.cost))
        if self.tool_calls:
            parts.append("called " + ", ".join(c.name for c in self.tool_calls))
        if self.cached:
            parts.append("cached")
        if self.route_reason:
            parts.append(self.route_reason)
        return " · ".join(parts)

    def __str__(self) -> str:
        return self.content

    def _repr_markdown_(self) -> str:
        import html

        # The answer is Markdown by design; the footer is data: its "$" is money, not math.
        footer = html.escape(self.footer()).replace("$", "\\$")
        return f"{self.content}\n\n<sub>{footer}</sub>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's text/plain (a terminal's Out[]): the answer and its footer, not every field."""
        printer.text("CompletionResponse(...)" if cycle else f"{self.content}\n\n{self.footer()}")


def as_messages(prompt: Prompt, system: str | None = None) -> tuple[Message, ...]:
    """Normalise a prompt string or a list of chat messages into Messages.

    Dicts are read in OpenAI's form (``content`` may be None beside ``tool_calls``);
    InvalidRequestError names a tool call or tool message that is malformed.
    """
    out: list[Message] = []
    if system:
        out.append(Message("system", system))
    if isinstance(prompt, str):
        out.append(Message("user", prompt))
        return tuple(out)
    if is_part_list(prompt):  # ["What does this show?", mmo.Image(...)]: one user message
        out.append(Message.of("user", prompt))
        return tuple(out)
    for i, m in enumerate(prompt):
        if isinstance(m, Part):  # is_part_list took every list with a Part in it
            raise InvalidRequestError(f"Message {i} is a content part among messages.")
        message = m if isinstance(m, Message) else _message(i, m)
        if message.role == "tool" and not (
            isinstance(message.tool_call_id, str) and message.tool_call_id
        ):
            raise InvalidRequestError(
                f"Message {i} (tool) needs the tool_call_id of the call it answers.",
                hint="Answer a tool call with call.result(text), or give "
                '{"role": "tool", "tool_call_id": call.id, "content": "..."}.',
            )
        out.append(message)
    return tuple(out)


def _message(index: int, m: Mapping[str, Any]) -> Message:
    role = m["role"]
    calls = tuple(_tool_call(index, c) for c in m.get("tool_calls") or ())
    tool_call_id = m.get("tool_call_id")
    if calls and role != "assistant":
        raise InvalidRequestError(f"Message {index} ({role}) has tool_calls; only assistant "
                                  "messages make tool calls.")  # fmt: skip
    content = m.get("content")
    if isinstance(content, list | tuple):
        message = Message.of(role, content, f"Message {index}")
        if message.parts and role != "user":
            raise InvalidRequestError(
                f"Message {index} ({role}) has an image or document; only user messages may.",
                hint="Put images and documents in a user message.",
            )
        return Message(role, message.content, calls, tool_call_id, message.parts)
    return Message(role, "" if content is None else content, calls, tool_call_id)


def _tool_call(index: int, call: object) -> ToolCall:
    """A tool call given as a ToolCall or in OpenAI's form ``{id, type, function: {name,
    arguments}}``."""
    if isinstance(call, ToolCall):
        return call
    function = call.get("function") if isinstance(call, Mapping) else None
    if (
        not isinstance(call, Mapping)
        or not isinstance(call.get("id"), str)
        or not isinstance(function, Mapping)
        or not isinstance(function.get("name"), str)
        or not isinstance(function.get("arguments", ""), str)
    ):
        raise InvalidRequestError(
            f"Message {index} has a malformed tool call {call!r:.80}.",
            hint='Tool calls look like {"id": "call_1", "type": "function", '
            '"function": {"name": "f", "arguments": "{}"}}.',
        )
    return ToolCall(call["id"], function["name"], function.get("arguments") or "{}")
