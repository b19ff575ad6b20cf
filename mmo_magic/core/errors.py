"""The one error tree of mmo_magic.

Every failure a user can meet is an ``MMOError``; SDK exceptions are mapped
into it at the client boundary (``raise ... from exc``)::

    MMOError
    ├── ConfigError              bad mmo.toml, wrong types, bad arguments
    │   ├── UnknownModelError    a model name nobody knows (suggests close names)
    │   └── NoModelAvailableError  a router found no model it may use (no key, no local model)
    ├── InvalidRequestError      an empty prompt, a bad parameter value
    ├── MissingAPIKeyError       the key's environment variable is unset
    ├── ProviderError            the provider answered with an error, or never answered
    │   ├── StreamError          the stream was cut, stalled, or malformed
    │   │   └── StructuredOutputError  the answer is not valid JSON for the requested schema
    │   └── CircuitOpenError     not sent: the model kept failing (says when to retry)
    ├── AllModelsFailedError     every model of a call failed (carries every attempt)
    ├── BudgetExceededError      the call would spend more than is left
    ├── TemplateError            a template names a variable that has no value
    └── VerdictError             a judge's reply could not be parsed into a verdict

Messages are one readable line: what is wrong, then what to do. They never
contain an API key (see ``mmo_magic.core.redaction.redact``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attempts import Attempt

__all__ = [
    "AllModelsFailedError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigError",
    "InvalidRequestError",
    "MMOError",
    "MissingAPIKeyError",
    "NoModelAvailableError",
    "ProviderError",
    "StreamError",
    "StructuredOutputError",
    "TemplateError",
    "UnknownModelError",
    "VerdictError",
]


class MMOError(Exception):
    """Base of every mmo_magic error. ``hint`` says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        from .redaction import redact

        self.message = redact(message)
        self.hint = redact(hint) if hint else None
        # Every try made before this error was raised (set by the orchestrator).
        self.attempts: list[Attempt] = []
        super().__init__(self.message if not self.hint else f"{self.message} {self.hint}")


class ConfigError(MMOError):
    """A configuration file, a ModelConfig or an argument is wrong."""


class UnknownModelError(ConfigError):
    """A model name that is neither a configured model nor an alias."""

    def __init__(self, name: str, known: Iterable[str], *, where: str | None = None) -> None:
        self.name = name
        self.suggestions = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.5)
        hint = (
            f"Did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else "List the known models with Orchestrator.models() or %mmo_models."
        )
        place = f" {where}" if where else ""
        super().__init__(f"Unknown model {name!r}{place}.", hint=hint)


class NoModelAvailableError(ConfigError):
    """A router had no model to choose: none has its key set, none is local or simulated."""


class InvalidRequestError(MMOError):
    """The request itself is unusable (an empty prompt, a negative max_tokens...).

    ``param`` names the request parameter at fault, when there is one (the
    service reports it in OpenAI's ``param`` field).
    """

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.param = param


class MissingAPIKeyError(MMOError):
    """The environment variable holding a model's API key is not set."""

    def __init__(self, model: str, env_var: str) -> None:
        self.model = model
        self.env_var = env_var
        super().__init__(
            f"Model {model!r} needs an API key in the environment variable {env_var}, "
            "which is not set.",
            hint=(
                f"Set it in your shell (export {env_var}=...) or in the notebook with "
                f"`import os, getpass; os.environ[{env_var!r}] = getpass.getpass()`."
            ),
        )


class ProviderError(MMOError):
    """A provider failed the call: an HTTP error, a refused connection or a timeout."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retryable: bool = False,
        code: str | None = None,
        retry_after_s: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retryable = retryable
        self.code = code
        self.retry_after_s = retry_after_s
        where = f"{provider} model {model!r}"
        status_part = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{where} failed{status_part}: {message}", hint=hint)


class StreamError(ProviderError):
    """The response stream was truncated, stalled or malformed."""


class CircuitOpenError(ProviderError):
    """Not sent: the model's circuit breaker is open after failures in a row.

    ``retry_after_s`` says when the breaker will let a probe through.
    """

    def __init__(self, *, provider: str, model: str, retry_after_s: float) -> None:
        super().__init__(
            f"not sent: its circuit is open after failures; retry in {retry_after_s:.1f} s",
            provider=provider,
            model=model,
            code="circuit_open",
            retryable=True,
            retry_after_s=retry_after_s,
            hint="Add fallbacks=[...] to use another model meanwhile.",
        )


class AllModelsFailedError(MMOError):
    """Every model tried for one call failed; ``attempts`` holds each try.

    ``errors`` holds the error of each failed attempt when the caller had them
    (a service maps "every model was rate limited" to 429 from them).
    """

    def __init__(self, attempts: Sequence[Attempt], errors: Sequence[MMOError] = ()) -> None:
        tried = "; ".join(f"{a.model}: {a.error or a.status}" for a in attempts)
        super().__init__(
            f"All {len(attempts)} attempts failed ({tried}).",
            hint="See the run log (orc.runs.to_dataframe()) for every attempt.",
        )
        self.attempts = list(attempts)
        self.errors = list(errors)


class BudgetExceededError(MMOError):
    """Sending this call could spend more than the budget has left."""

    def __init__(self, message: str, *, estimate: float | None = None, **kw: Any) -> None:
        self.estimate = estimate
        super().__init__(message, **kw)


class TemplateError(MMOError):
    """A template refers to a variable that has no value."""

    def __init__(self, variable: str, where: str | None = None) -> None:
        self.variable = variable
        place = f" in {where}" if where else ""
        super().__init__(
            f"Template variable {{{variable}}}{place} has no value.",
            hint="Pass it as a keyword argument, or write {{ and }} for literal braces.",
        )


class StructuredOutputError(StreamError):
    """The model's answer is not valid JSON for the requested schema. ``raw`` is its text."""

    def __init__(self, message: str, *, raw: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.raw = raw


_REPLY_KEEP = (
    500  # characters of a bad judge reply kept on the error, enough to see what went wrong
)


class VerdictError(MMOError):
    """A judge's reply could not be parsed into a verdict.

    ``problem`` says what was wrong (it is what ``repair_messages`` tells the
    judge), ``reply`` is the start of the raw reply, ``judge`` names the judge
    when known and ``labels`` are the candidate labels the verdict had to use.
    """

    def __init__(
        self,
        problem: str,
        *,
        reply: str = "",
        judge: str | None = None,
        labels: Sequence[str] = (),
    ) -> None:
        from .redaction import redact

        self.problem = problem
        self.reply = redact(reply if len(reply) <= _REPLY_KEEP else reply[:_REPLY_KEEP] + "…")
        self.judge = judge
        self.labels = tuple(labels)
        who = f"Judge {judge!r}" if judge else "The judge"
        super().__init__(
            f"{who} gave an unusable verdict: {problem}.",
            hint="Ask again with repair_messages(), or use another judge.",
        )
