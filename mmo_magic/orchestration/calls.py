"""What one model call takes: the user's options, and what the library adds to them.

``CallOptions`` are the options users pass to every method that calls models
(``complete``, ``stream``, ``race``, ``all``, ``consensus``). Those methods take
them as ``**options: Unpack[CallOptions]``, so mypy catches a misspelt option,
and ``check_options`` refuses one at run time, naming the closest option.

``CallContext`` is what the library itself sets and users never pass: how a
call is labelled in the run log and who watches it. ``Completer`` is the one
call signature that races, fan-outs, judges, pipelines and streams work over;
the call engine implements it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from ..core.completion import CompletionResponse, Prompt
from ..core.errors import InvalidRequestError
from .budget import check_usd

__all__ = [
    "CallContext",
    "CallOptions",
    "Completer",
    "ModelText",
    "OnFinish",
    "OnText",
    "check_options",
    "checked_values",
    "model_names",
]

OnText = Callable[[str], None]  # one text delta
ModelText = Callable[[str, str], None]  # (model, text delta): several models at once
OnFinish = Callable[[CompletionResponse], None]


class CallOptions(TypedDict, total=False):
    """The options of one model call, as users pass them.

    ``system``: a system prompt. ``temperature``, ``max_tokens``: override the
    model's. ``fallbacks``: replaces the model's configured fallback chain.
    ``budget``: USD this call may spend. ``allow_unpriced``: send to an
    unpriced model despite a budget. ``cache``: False skips the response cache.
    """

    system: str | None
    temperature: float | None
    max_tokens: int | None
    fallbacks: Sequence[str] | None
    budget: float | None
    allow_unpriced: bool | None
    cache: bool


_OPTION_NAMES: frozenset[str] = CallOptions.__optional_keys__


def check_options(options: Mapping[str, object], also: Iterable[str] = ()) -> None:
    """Refuse an option that is not a CallOption, suggesting the closest name.

    ``also`` names the calling method's own keyword parameters, so that a
    misspelling of one of those is suggested too.
    """
    for name in options:
        if name not in _OPTION_NAMES:
            known = sorted({*_OPTION_NAMES, *also})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Options: {', '.join(known)}."
            raise InvalidRequestError(f"Unknown option {name!r}.", hint=hint)


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
        raise InvalidRequestError(
            f"temperature must be a number from 0 to 2, got {temperature!r}.",
            hint="Or leave it out for the model's default.",
        )
    max_tokens = options.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InvalidRequestError(
            f"max_tokens must be a whole number >= 1, got {max_tokens!r}.",
            hint="Or leave it out for the model's default.",
        )
    if (fallbacks := options.get("fallbacks")) is not None:
        out["fallbacks"] = model_names(fallbacks, "fallbacks", allow_empty=True)
    check_usd(options.get("budget"))
    for flag in ("allow_unpriced", "cache"):
        value = options.get(flag)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(f"{flag} must be True or False, got {value!r}.")
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


class Completer(Protocol):
    """Completes ``prompt`` with ``model`` (None: the default model) under ``context``."""

    def __call__(
        self, prompt: Prompt, model: str | None, options: CallOptions, context: CallContext, /
    ) -> Coroutine[Any, Any, CompletionResponse]: ...
