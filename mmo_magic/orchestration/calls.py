"""What one model call takes: the user's options, and what the library adds to them.

``CallOptions`` are the options users pass to every method that calls models
(``complete``, ``stream``, ``race``, ``all``, ``consensus``). Those methods take
them as ``**options: Unpack[CallOptions]``, so mypy catches a misspelt option,
and ``check_options`` refuses one at run time, naming the closest option.

``CallContext`` is what the library itself sets and users never pass: how a
call is labelled in the run log and who watches it. ``Completer`` is the one
call signature that races, fan-outs, judges, pipelines and streams work over;
the call engine implements it, and builds each call's request with ``build_request``,
which checks the prompt and its messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from ..core.completion import CompletionRequest, CompletionResponse, Message, Prompt, as_messages
from ..core.errors import InvalidRequestError
from ..core.parts import is_part_list
from ..core.reasoning import checked_budget, checked_effort
from ..core.structured import (
    ResponseFormat,
    Tool,
    ToolChoice,
    invalid_parameter,
    response_format,
    tool_choice,
    tools,
)
from .budget import check_usd

__all__ = [
    "CallContext",
    "CallOptions",
    "Completer",
    "ModelText",
    "OnFinish",
    "OnRetry",
    "OnText",
    "build_request",
    "check_options",
    "checked_values",
    "model_names",
]

OnText = Callable[[str], None]  # one text delta
ModelText = Callable[[str, str], None]  # (model, text delta): several models at once
OnFinish = Callable[[CompletionResponse], None]
OnRetry = Callable[[str, float], None]  # (model, seconds until the next try)


class CallOptions(TypedDict, total=False):
    """The options of one model call, as users pass them.

    ``system``: a system prompt. ``temperature``, ``max_tokens``: override the
    model's. ``fallbacks``: replaces the model's configured fallback chain.
    ``budget``: USD this call may spend. ``allow_unpriced``: send to an
    unpriced model despite a budget. ``cache``: False skips the response cache.

    Sampling, as OpenAI defines them: ``stop`` (a string or a list of strings
    that end the answer), ``seed``, ``top_p`` (0 to 1), ``frequency_penalty``
    and ``presence_penalty`` (-2 to 2), ``logit_bias`` (token id -> -100 to
    100), ``user`` (an end-user id). Each provider gets those it has, under its
    own names; a model whose provider lacks one refuses the call
    (InvalidRequestError) rather than ignoring it.

    ``response_format``: structured output, a JSON schema (a dict) or a pydantic
    model class; the response's ``parsed`` holds the validated answer (an instance
    of the class, else the decoded JSON). Every provider has it, in its own form.

    Tool calling: ``tools``, a list of OpenAI-style function definitions
    (``{"type": "function", "function": {name, description, parameters}}``), pydantic
    model classes or plain functions with type hints; ``tool_choice``: "auto" (the
    default), "none", "required", or a tool's name (OpenAI's dict form too);
    ``parallel_tool_calls``: False for at most one call per answer. The response's
    ``tool_calls`` holds the calls the model made (``finish_reason`` "tool_calls");
    send their results back as ``call.result(text)`` messages after ``response.message``.
    A model whose provider has no tool calling refuses them (InvalidRequestError).

    Reasoning models: ``reasoning_effort`` ("minimal", "low", "medium", "high") or
    ``thinking_budget`` (tokens), one of them; each provider gets its form (OpenAI's
    reasoning_effort, Anthropic's extended thinking, with its rules checked before
    sending), and a model the catalogue does not mark as a reasoning model refuses them.
    The response's ``reasoning`` holds the thinking text a provider returned, and
    ``reasoning_tokens`` the tokens spent thinking (billed as output).

    ``allowed_models``: the only models this call may reach besides the one it names,
    as model names or a predicate on them (a gateway passes its key's allowlist): a
    router chooses among them, and fallbacks outside them are skipped.
    """

    system: str | None
    temperature: float | None
    max_tokens: int | None
    fallbacks: Sequence[str] | None
    budget: float | None
    allow_unpriced: bool | None
    cache: bool
    stop: str | Sequence[str] | None
    seed: int | None
    top_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    logit_bias: Mapping[int, float] | Mapping[str, float] | None
    user: str | None
    response_format: Mapping[str, Any] | type | None
    tools: Sequence[Mapping[str, Any] | type | Callable[..., Any] | Tool] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None
    thinking_budget: int | None
    allowed_models: Callable[[str], bool] | Collection[str] | None


_OPTION_NAMES: frozenset[str] = CallOptions.__optional_keys__
# Other SDKs' names for an option, too far from ours for difflib to suggest it.
_OTHER_SPELLINGS = {
    "stop_sequences": "stop",  # Anthropic
    "max_completion_tokens": "max_tokens",  # OpenAI's newer name
    "max_output_tokens": "max_tokens",  # OpenAI Responses, Gemini
    "random_seed": "seed",  # Mistral
    "functions": "tools",  # OpenAI's legacy name
    "function_call": "tool_choice",
    "thinking": "thinking_budget",  # Anthropic
    "budget_tokens": "thinking_budget",
    "reasoning": "reasoning_effort",  # OpenAI Responses
}


def check_options(options: Mapping[str, object], also: Iterable[str] = ()) -> None:
    """Refuse an option that is not a CallOption, suggesting the closest name.

    ``also`` names the calling method's own keyword parameters, so that a
    misspelling of one of those is suggested too.
    """
    for name in options:
        if name not in _OPTION_NAMES:
            known = sorted({*_OPTION_NAMES, *also})
            close = [_OTHER_SPELLINGS[name]] if name in _OTHER_SPELLINGS else []
            close = close or difflib.get_close_matches(name, known, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Options: {', '.join(known)}."
            raise InvalidRequestError(f"Unknown option {name!r}.", hint=hint)


def allowed_predicate(allowed: Callable[[str], bool] | Collection[str]) -> Callable[[str], bool]:
    """``allowed_models`` as a predicate on model names (a string is one name, not letters)."""
    if callable(allowed):
        return allowed
    if isinstance(allowed, str):
        allowed = (allowed,)
    if not isinstance(allowed, Collection):
        raise InvalidRequestError(
            f"allowed_models must be model names or a function of a name, "
            f"got {type(allowed).__name__}."
        )
    names = frozenset(allowed)
    return names.__contains__


def checked_values(options: CallOptions) -> CallOptions:
    """``options`` with each value checked (InvalidRequestError) and ``fallbacks`` a tuple."""
    out: CallOptions = dict(options)  # type: ignore[assignment]
    system = options.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError(f"system must be a string, got {type(system).__name__}.")
    temperature = options.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2  # False for NaN too
    ):
        raise invalid_parameter(
            "temperature",
            f"temperature must be a number from 0 to 2, got {temperature!r}.",
            hint="Or leave it out for the model's default.",
        )
    max_tokens = options.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise invalid_parameter(
            "max_tokens",
            f"max_tokens must be a whole number >= 1, got {max_tokens!r}.",
            hint="Or leave it out for the model's default.",
        )
    if (fallbacks := options.get("fallbacks")) is not None:
        out["fallbacks"] = model_names(fallbacks, "fallbacks", allow_empty=True)
    if (allowed := options.get("allowed_models")) is not None:
        out["allowed_models"] = allowed_predicate(allowed)
    check_usd(options.get("budget"))
    for flag in ("allow_unpriced", "cache", "parallel_tool_calls"):
        value = options.get(flag)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(f"{flag} must be True or False, got {value!r}.")
    if "stop" in options:
        out["stop"] = _stop(options["stop"])
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise invalid_parameter("seed", f"seed must be a whole number, got {seed!r}.")
    _number(options, "top_p", 0, 1)
    _number(options, "frequency_penalty", -2, 2)
    _number(options, "presence_penalty", -2, 2)
    if (bias := options.get("logit_bias")) is not None:
        out["logit_bias"] = _logit_bias(bias)
    user = options.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid_parameter("user", f"user must be a string, got {type(user).__name__}.")
    if options.get("response_format") is not None:
        out["response_format"] = response_format(options["response_format"])  # type: ignore[typeddict-item]
    offered = tools(options["tools"]) if options.get("tools") is not None else ()
    out["tools"] = offered or None
    if options.get("tool_choice") is not None:
        out["tool_choice"] = tool_choice(options["tool_choice"], offered)  # type: ignore[typeddict-item]
    out["reasoning_effort"] = checked_effort(options.get("reasoning_effort"))
    out["thinking_budget"] = checked_budget(options.get("thinking_budget"))
    return out


def _number(options: Mapping[str, object], name: str, low: float, high: float) -> None:
    value = options.get(name)
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high  # False for NaN too
    ):
        raise invalid_parameter(
            name,
            f"{name} must be a number from {low} to {high}, got {value!r}.",
            hint="Or leave it out for the model's default.",
        )


def _stop(value: object) -> tuple[str, ...] | None:
    """``stop`` as a tuple of strings (a lone string is one sequence); None when empty."""
    sequences = (value,) if isinstance(value, str) else value
    if sequences is None:
        return None
    if not isinstance(sequences, Sequence) or not all(isinstance(s, str) for s in sequences):
        raise invalid_parameter(
            "stop",
            f"stop must be a string or a list of strings, got {value!r:.60}.",
            hint='For example stop=["\\n\\n", "END"].',
        )
    if any(not s for s in sequences):
        raise invalid_parameter("stop", "stop must not contain an empty string.")
    return tuple(sequences) or None


def _logit_bias(value: object) -> dict[str, float]:
    """``logit_bias`` with token ids as strings of digits (OpenAI's wire form)."""
    if not isinstance(value, Mapping):
        raise invalid_parameter(
            "logit_bias",
            f"logit_bias must map token ids to numbers, got {type(value).__name__}.",
            hint="For example logit_bias={50256: -100}.",
        )
    out: dict[str, float] = {}
    for token, bias in value.items():
        if isinstance(token, bool) or not (
            (isinstance(token, int) and token >= 0)
            or (isinstance(token, str) and token.isascii() and token.isdigit())
        ):
            raise invalid_parameter(
                "logit_bias",
                f"logit_bias keys must be token ids (whole numbers >= 0), got {token!r:.40}.",
            )
        if (
            isinstance(bias, bool)
            or not isinstance(bias, int | float)
            or not -100 <= bias <= 100  # False for NaN too
        ):
            raise invalid_parameter(
                "logit_bias",
                f"logit_bias values must be numbers from -100 to 100, got {bias!r:.40} "
                f"for token {token!r:.40}.",
            )
        out[str(int(token))] = bias
    return out


def model_names(
    value: Any, what: str = "models", *, allow_empty: bool = False, unique: bool = True
) -> tuple[str, ...]:
    """Model names as a tuple: a lone string is one name, never a sequence of letters.

    Refuses None, "" and non-strings inside (each would silently mean "the
    default model" further down) and, when ``unique``, a name given twice.
    """
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Sequence | set | frozenset) or (not names and not allow_empty):
        raise InvalidRequestError(
            f"{what} must be a list of model names, got {value!r}.",
            hint=f"For example {what}=['gpt-4o-mini', 'claude-haiku-4-5'].",
        )
    names = tuple(names)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequestError(
                f"{what} must be model names, got {name!r} in {list(names)!r}.",
                hint="Remove it, or write the model's name.",
            )
    if unique and (dupes := sorted({n for n in names if names.count(n) > 1})):
        raise InvalidRequestError(
            f"{what} names {', '.join(map(repr, dupes))} more than once.",
            hint="List each model once.",
        )
    return names


@dataclass(frozen=True, slots=True)
class CallContext:
    """How one call is recorded and watched: set by races, judges, pipelines and streams.

    ``kind``, ``group_id`` and ``step`` label its run records (a new group id
    when None); ``on_text`` gets each text delta and ``on_finish`` each
    attempt's response (ok, failed or cancelled), both on the loop thread.
    """

    kind: str = "complete"
    group_id: str | None = None
    step: str | None = None
    on_text: OnText | None = None
    on_finish: OnFinish | None = None
    # Reasoning models: each piece of thinking text as it streams, and "" for the first sign
    # of life before any text (a race panel's "thinking" phase starts there), on the loop
    # thread. Never answer text: that goes to on_text.
    on_thinking: OnText | None = None
    # A failed attempt that will be tried again: the model and the wait before the next
    # try, on the loop thread, after that attempt's on_finish (a race badge says "retrying").
    on_retry: OnRetry | None = None
    # The caller repairs an answer that breaks its response_format itself (judges ask again,
    # saying what was wrong): such a failure ends the call at once, without a blind retry.
    repairs_output: bool = False


class Completer(Protocol):
    """Completes ``prompt`` with ``model`` (None: the default model) under ``context``."""

    def __call__(
        self, prompt: Prompt, model: str | None, options: CallOptions, context: CallContext, /
    ) -> Coroutine[Any, Any, CompletionResponse]: ...


def build_request(
    prompt: Prompt,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
    *,
    sampling: Mapping[str, Any] | None = None,
    response_format: ResponseFormat | None = None,
    tools: tuple[Tool, ...] = (),
    tool_choice: ToolChoice | None = None,
    parallel_tool_calls: bool | None = None,
    reasoning_effort: str | None = None,
    thinking_budget: int | None = None,
) -> CompletionRequest:
    """The CompletionRequest for a prompt, or InvalidRequestError saying what is wrong with it.

    ``sampling``: ``CompletionRequest.SAMPLING`` options, already checked (``checked_values``).
    """
    if not isinstance(prompt, str | list | tuple):
        raise InvalidRequestError(
            f"A prompt must be a string or a list of messages, not {type(prompt).__name__}."
        )
    if not isinstance(prompt, str) and not is_part_list(prompt):
        for i, message in enumerate(prompt):
            _check_message(i, message)
    messages = as_messages(prompt, system)
    request = CompletionRequest(
        messages,
        max_tokens=max_tokens,
        temperature=temperature,
        response_format=response_format,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        reasoning_effort=reasoning_effort,
        thinking_budget=thinking_budget,
        **(sampling or {}),
    )
    if not request.prompt_text.strip() and not _has_media(request):
        raise InvalidRequestError(
            "The prompt is empty.", hint="Write something for the model to answer."
        )
    if max_tokens is not None and max_tokens <= 0:
        raise InvalidRequestError(f"max_tokens must be > 0, got {max_tokens}.")
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidRequestError(f"temperature must be between 0 and 2, got {temperature}.")
    return request


_ROLES = ("system", "user", "assistant", "tool")


def _check_message(index: int, message: object) -> None:
    """One chat message: a known role and text content (what every provider accepts).

    An assistant message making tool calls may have no content (None), as in OpenAI's form.
    """
    if isinstance(message, Message):
        role, content = message.role, message.content
    elif isinstance(message, Mapping) and "role" in message and "content" in message:
        role, content = message["role"], message["content"]
        if content is None and role == "assistant" and message.get("tool_calls"):
            content = ""
    else:
        raise InvalidRequestError(
            f"Message {index} must be a dict with 'role' and 'content' (or mmo_magic.Message), "
            f"got {message!r:.60}."
        )
    if role not in _ROLES:
        raise InvalidRequestError(
            f"Message {index} has an invalid role {role!r}.",
            hint=f"Use one of {', '.join(_ROLES)}.",
        )
    if not isinstance(content, str | list | tuple):
        raise InvalidRequestError(
            f"Message {index} ({role}) must have text content, got {type(content).__name__}.",
            hint="Pass the content as a string (a user message may be a list of parts).",
        )


def _has_media(request: CompletionRequest) -> bool:
    """The last user message has an image or document (a prompt may be an image alone)."""
    for m in reversed(request.messages):
        if m.role == "user":
            return any(p.kind != "text" for p in m.parts)
    return False
