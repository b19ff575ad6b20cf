"""The service's request and response bodies (pydantic), and answers shaped into them.

These models are the OpenAPI schema the service publishes (``/openapi.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..core.attempts import Attempt
from ..core.completion import CompletionResponse
from ..routing import ROUTERS

__all__ = [
    "ERROR_RESPONSES",
    "MAX_CHOICES",
    "MAX_MODELS",
    "UNSUPPORTED",
    "AttemptOut",
    "CallDetails",
    "ChatCompletionOut",
    "ChatMessage",
    "ChatMessageOut",
    "ChatRequest",
    "ChoiceOut",
    "CompleteRequest",
    "CompletionOut",
    "ErrorDetail",
    "ErrorOut",
    "ManyOut",
    "ModelOut",
    "ModelsOut",
    "ToolCallOut",
    "UsageOut",
    "VotesOut",
    "attempt_out",
    "completion_out",
    "details_out",
    "finish_reason",
    "summed_usage",
    "tool_calls_out",
    "usage_out",
]

MAX_MODELS = 8  # models (or judges) one request may fan out to
MAX_CHOICES = 8  # n: each choice is a call of its own
# Anthropic's finish reasons, in OpenAI's words.
_FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
}  # fmt: skip


# -- request and response bodies ----------------------------------------------------------


class _Strict(BaseModel):
    # Strict: "5" is not an integer and true is not a number; a client bug gets a 400.
    model_config = ConfigDict(strict=True, extra="forbid")


class CompleteRequest(_Strict):
    """``POST /v1/complete``. ``routing`` defaults to "task_type" when ``task_type`` is
    given, else "specific" when ``model`` is, else "auto"."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "Why is the sky blue?", "routing": "auto"}]}
    )

    prompt: str = Field(min_length=1)
    routing: Literal["auto", "specific", "task_type", "parallel", "race", "consensus"] | None = None
    model: str | None = Field(None, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    models: list[str] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    task_type: str | None = Field(None, description="coding, math, writing... (routing=task_type)")
    route: str | None = Field(
        None, description="the router for routing=auto: " + ", ".join(ROUTERS)
    )
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    system: str | None = None
    judges: list[str] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    strategy: Literal["judge", "majority", "longest"] | None = None


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class AttemptOut(_Out):
    model: str
    provider: str
    status: str
    error: str | None = None
    latency_ms: float | None = None
    run_id: str | None = None


class CallDetails(_Out):
    """What the orchestrator knows about a call beyond its text."""

    provider: str
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost: float | None = Field(None, description="USD; null when unpriced or unknown, never 0")
    route_reason: str | None = None
    attempts: list[AttemptOut] = []
    cached: bool = False
    run_id: str | None = None
    tokens_estimated: bool = False


class CompletionOut(CallDetails):
    content: str
    model: str = Field(description="the model that actually answered")
    input_tokens: int | None = None
    output_tokens: int | None = None
    status: str = "ok"
    error: str | None = None
    finish_reason: str | None = None


class VotesOut(_Out):
    method: str
    winner: str | None = Field(description="the winning candidate's label; null for a tie")
    candidates: dict[str, str] = Field(description="label -> model")
    points: dict[str, dict[str, float]] = Field(description="judge -> label -> points")


class ManyOut(_Out):
    """Several models at once: every model's outcome, and the winner if the mode picks one."""

    routing: Literal["parallel", "race", "consensus"]
    group_id: str
    winner: CompletionOut | None = None
    responses: list[CompletionOut]
    reason: str | None = None
    votes: VotesOut | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str
    arguments: str = Field(description="the arguments as JSON text")


class ToolCallIn(BaseModel):
    """A tool call the assistant made, sent back in the conversation."""

    model_config = ConfigDict(extra="allow", strict=True)
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A message; an assistant's may carry ``tool_calls`` (content null), and a ``tool``
    message answers one call (``tool_call_id``)."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(description="1 to 64 letters, digits, _ or -")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON schema")
    strict: bool | None = None


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str


class NamedToolChoice(BaseModel):
    """The one tool the model must call."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request.

    The sampling parameters go to the model (mapped to its provider's names, or
    refused by a provider that lacks one), and so do ``tools``, ``tool_choice`` and
    ``parallel_tool_calls`` (a model without tool calling refuses them); ``n`` > 1
    makes n calls. Parameters this server cannot honour (``UNSUPPORTED``, ``n`` > 1
    with ``stream``) and unknown fields get a 400 naming them, never a 200 that
    ignored them.
    """

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "examples": [{"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}]
        },
    )
    model: str = Field(min_length=1, description="a name, an alias, 'auto' or 'auto:ROUTER'")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="up to 4 sequences that end the answer")
    seed: int | None = None
    top_p: float | None = Field(None, ge=0, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(None, description="token id -> -100 to 100")
    user: str | None = Field(None, description="an end-user id, passed to the provider")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES, description="choices: n calls")
    response_format: dict[str, Any] | None = Field(
        None, description='{"type": "text" | "json_schema" | "json_object", ...}'
    )
    tools: list[ToolDefinition] | None = Field(None, description="functions the model may call")
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="false: at most one tool call")
    reasoning_effort: str | None = Field(
        None, description="minimal, low, medium or high: for reasoning models (others refuse it)"
    )


# OpenAI parameters outside ChatRequest's fields that this server cannot honour: a request
# setting one (to anything but these "off" values) gets a 400 naming it. Any other field
# outside ChatRequest's is unknown, and refused too: a parameter is never accepted and dropped.
UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "functions": (None, []),  # the legacy form of tools
    "function_call": (None, "none"),
    "logprobs": (None, False),  # no provider's log probabilities reach the unified interface
    "top_logprobs": (None, 0),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "verbosity": (None,),
    "service_tier": (None, "auto"),  # "auto": the provider's default, which is what is sent
    "store": (None, False),  # nothing is kept at a provider for later
    "metadata": (None, {}),
    "prediction": (None,),
    "web_search_options": (None,),
    "moderation": (None,),
    "prompt_cache_key": (None,),
    "prompt_cache_retention": (None,),
    "prompt_cache_options": (None,),
    "safety_identifier": (None,),
}


class FunctionCallOut(_Out):
    name: str
    arguments: str = Field(description="the arguments as JSON text")


class ToolCallOut(_Out):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessageOut(_Out):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(description="null when the model only called tools")
    tool_calls: list[ToolCallOut] | None = None


class ChoiceOut(_Out):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str
    logprobs: None = None


class CompletionTokensDetailsOut(_Out):
    reasoning_tokens: int


class UsageOut(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # OpenAI's place for a reasoning model's thinking tokens (part of completion_tokens).
    completion_tokens_details: CompletionTokensDetailsOut | None = None


class ChatCompletionOut(_Out):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut | None = None
    mmo: CallDetails = Field(description="mmo_magic's details: cost, timing, attempts, run id")


class ModelOut(_Out):
    """An OpenAI model entry, with our catalogue fields beside the standard ones."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    kind: Literal["model", "router"]
    provider: str | None = None
    model_id: str | None = None
    aliases: list[str] = []
    available: bool
    unavailable_reason: str | None = None
    cost_per_1k_input: float | None = None
    cost_per_1k_output: float | None = None
    context_window: int | None = None
    description: str = ""


class ModelsOut(_Out):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    attempts: list[AttemptOut] | None = None


class ErrorOut(_Out):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "A bad request, a missing key, an unknown model"},
    "5XX": {"model": ErrorOut, "description": "Every model failed, or timed out"},
}


# -- shaping answers ---------------------------------------------------------------------------
# ``scrub`` (``scrub.Scrubber``) cleans the errors providers wrote: no upstream address leaves.


_Shaped = TypeVar("_Shaped", AttemptOut, CallDetails, CompletionOut)


def _shaped(kind: type[_Shaped], r: Any, scrub: Callable[[str], str]) -> _Shaped:
    """``r`` (a dataclass) as ``kind``, its errors and its attempts' errors scrubbed.

    Read from its attributes: ``dataclasses.asdict`` deep-copied every field, ~10x the
    time, on every answer the gateway sends.
    """
    out = kind.model_validate(r, from_attributes=True)
    if isinstance(out, AttemptOut | CompletionOut) and out.error:
        out.error = scrub(out.error)
    for attempt in out.attempts if isinstance(out, CallDetails) else ():
        if attempt.error:
            attempt.error = scrub(attempt.error)
    return out


def attempt_out(a: Attempt, scrub: Callable[[str], str]) -> AttemptOut:
    return _shaped(AttemptOut, a, scrub)


def completion_out(r: CompletionResponse, scrub: Callable[[str], str]) -> CompletionOut:
    return _shaped(CompletionOut, r, scrub)


def details_out(r: CompletionResponse, scrub: Callable[[str], str]) -> CallDetails:
    return _shaped(CallDetails, r, scrub)


def usage_out(r: CompletionResponse) -> UsageOut | None:
    if r.input_tokens is None or r.output_tokens is None:
        return None  # unknown is missing, never 0
    details = (
        CompletionTokensDetailsOut(reasoning_tokens=r.reasoning_tokens)
        if r.reasoning_tokens is not None
        else None
    )
    return UsageOut(
        prompt_tokens=r.input_tokens,
        completion_tokens=r.output_tokens,
        total_tokens=r.input_tokens + r.output_tokens,
        completion_tokens_details=details,
    )


def summed_usage(answers: list[CompletionResponse]) -> UsageOut | None:
    """Several choices' usage added up (the prompt counted once per call, as each was
    sent); None when any count is unknown."""
    usages = [usage_out(r) for r in answers]
    if any(u is None for u in usages):
        return None
    known = [u for u in usages if u is not None]
    thinking = [u.completion_tokens_details for u in known]
    reasoning = [d.reasoning_tokens for d in thinking if d is not None]
    return UsageOut(
        prompt_tokens=sum(u.prompt_tokens for u in known),
        completion_tokens=sum(u.completion_tokens for u in known),
        total_tokens=sum(u.total_tokens for u in known),
        completion_tokens_details=(
            CompletionTokensDetailsOut(reasoning_tokens=sum(reasoning))
            if reasoning and len(reasoning) == len(thinking)
            else None
        ),
    )


def finish_reason(r: CompletionResponse) -> str:
    """The answer's finish reason in OpenAI's words ("stop" when the provider gave none)."""
    reason = r.finish_reason or "stop"
    return _FINISH.get(reason, reason)


def tool_calls_out(r: CompletionResponse) -> list[ToolCallOut]:
    """The answer's tool calls in OpenAI's form (empty when it called none)."""
    return [ToolCallOut.model_validate(call.openai()) for call in r.tool_calls]
