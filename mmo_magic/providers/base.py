"""The one async model interface, and the boundary where SDK errors become MMOErrors.

A client turns a CompletionRequest into a stream: text deltas (``str``), pieces
of tool calls (``ToolCallDelta``) and exactly one final ``StreamEnd``. Every
call streams, even when the user wants the whole answer at once, so every call
has a time to first token and deadlines can watch the bytes arrive. A stream
that ends without a finish reason raises StreamError: a truncated answer is
never reported as success.

The per-chunk path is lean on purpose: clients read the SDK's raw response
lines and decode them with ``json.loads`` rather than building a typed SDK
object per chunk (see DESIGN.md; benchmarks/ measures the difference).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import json.scanner
import math
import time
import urllib.parse
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator
from typing import Any, cast

from ..core.completion import CompletionRequest, StreamEnd, Thinking, ToolCallDelta
from ..core.embeddings import EmbeddingBatch
from ..core.errors import ProviderError, StreamError
from ..core.models import ModelConfig
from ..core.redaction import StreamRedactor, could_be_credential, redact_url, redactor
from ..core.structured import invalid_parameter
from ..core.text import storable
from .direct import aiohttp_cause

__all__ = [
    "ModelClient", "StreamItem", "UsageWarning", "map_sdk_error", "scrub_exception", "sse_batches",
    "stream_items",
]  # fmt: skip

StreamItem = str | ToolCallDelta | Thinking | StreamEnd

# json.loads's own C scanner: (obj, end) of the JSON value at an index.
_scan_json = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))

# No call uses a billion tokens: a count past this is a provider's bug, not usage (and
# past 2**63 it cannot even be stored).
_MAX_TOKENS_REPORTED = 10**9


class UsageWarning(UserWarning):
    """A provider reported token usage that is no token count; it was counted locally."""


def split_base_url(url: str | None) -> tuple[str | None, dict[str, str] | None]:
    """(``url`` without its query, the query as a dict) for an SDK's base_url and default_query.

    A base_url with ``?key=...`` (some gateways take the key so) given whole to an SDK
    builds ``/v1/?key=...chat/completions``: the query must travel on its own.
    """
    if not url or "?" not in url:
        return url, None
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(query="", fragment="").geturl(), query or None


def sendable(value: Any) -> Any:
    """A request body with every lone surrogate replaced (U+FFFD), as output is cleaned.

    ``"a\ud800b"`` is a Python str but no text: the SDKs raise UnicodeEncodeError
    encoding it, and nothing is sent or recorded. Replaced, the call goes out and the
    record shows the same U+FFFD the run log stores. Walks dicts and lists; the
    common all-ASCII body costs one check per string.
    """
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {sendable(k): sendable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sendable(v) for v in value]
    return value


def token_count(value: Any) -> int | None:
    """``value`` as a token count, or None when it is none (text, negative, fractional, huge)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_TOKENS_REPORTED:
        return value
    return None


class ModelClient(abc.ABC):
    """Talks to one model. Subclasses implement ``stream``."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamItem, None]:
        """Yield text deltas and tool-call pieces, then one StreamEnd. Raise ProviderError
        on failure.

        Closing the iterator early (``aclose``, or cancelling the task) must
        close the HTTP response at once.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most clients hold nothing
        """Release connections."""

    async def embed(self, texts: list[str]) -> EmbeddingBatch:
        """A vector per text (one request). Clients of providers without embeddings refuse."""
        raise invalid_parameter(
            "model",
            f"model {self.config.name!r} (provider {self.config.provider}) has no embeddings.",
            hint="Embed with text-embedding-3-small (OpenAI), an OpenAI-compatible server's "
            "embedding model, or smollm2-embed offline.",
        )

    def usage_end(
        self,
        finish_reason: str,
        reported: tuple[Any, Any],
        request: CompletionRequest,
        produced: Collection[str],
        *,
        estimate_missing: bool = True,
    ) -> StreamEnd:
        """The StreamEnd for the (input, output) token counts a provider reported.

        Counts are checked here, at the boundary: a value that is no count (text,
        a fraction, negative, past a billion) is unknown, with a warning, and what
        is unknown is counted locally and marked ``estimated``. A bad count stored
        as it came broke the run log for good, and priced it raised or lowered the
        budget's spend. ``estimate_missing`` False leaves a count that was not
        reported at all unknown (None).
        """
        counts: list[int | None] = []
        bad = [False, False]
        for name, value in zip(("input_tokens", "output_tokens"), reported, strict=True):
            count = token_count(value)
            if count is None and value is not None:
                bad[len(counts)] = True
                shown = repr(value)[:40]
                warnings.warn(
                    f"model {self.config.name!r} ({self.config.provider}) reported "
                    f"{name}={shown}, which is no token count: counted locally instead.",
                    UsageWarning,
                    stacklevel=2,
                )
            counts.append(count)
        wanted = [c is None and (estimate_missing or b) for c, b in zip(counts, bad, strict=True)]
        if not any(wanted):
            return StreamEnd(finish_reason, counts[0], counts[1])
        from ..core.pricing import count_tokens, input_tokens

        model_id = self.config.model_id
        if wanted[0]:  # images and documents included, estimated as the budget does
            counts[0] = input_tokens(request, self.config)
        if wanted[1]:
            counts[1] = count_tokens("".join(produced), model_id)
        return StreamEnd(finish_reason, counts[0], counts[1], estimated=True)

    def answer_guard(self, key: str | None) -> StreamRedactor:
        """A filter for this model's answer text that stars out its own ``key``.

        An upstream that echoes the key it was sent must not show it to the caller or a
        gateway's client (the run log would redact it, but the answer comes first).
        Only a key that could be a credential is matched (see core.redaction).
        """
        return StreamRedactor([key] if key and could_be_credential(key) else [])

    def fail(self, message: str, **kw: Any) -> ProviderError:
        return ProviderError(message, provider=self.config.provider, model=self.config.name, **kw)

    def stream_error(self, message: str, **kw: Any) -> StreamError:
        return StreamError(message, provider=self.config.provider, model=self.config.name, **kw)

    def temperature(self, request: CompletionRequest) -> float | None:
        """The call's temperature, else the model's; None leaves the provider default."""
        return request.temperature if request.temperature is not None else self.config.temperature

    def sampling(self, request: CompletionRequest, supported: Collection[str]) -> dict[str, Any]:
        """``request.sampling`` (the options set, in OpenAI's names and form), or
        InvalidRequestError naming the first one not in ``supported``, before anything is sent.

        An option the provider does not have is refused, never silently left out.
        """
        options = request.sampling
        for name in options:
            if name not in supported:
                have = ", ".join(n for n in CompletionRequest.SAMPLING if n in supported)
                raise invalid_parameter(
                    name,
                    f"{name} is not supported by model {self.config.name!r} "
                    f"(provider {self.config.provider}).",
                    hint=f"Leave {name} out, or use another model. This one takes: "
                    f"{have or 'none of them'}.",
                )
        return options

    def refuse_tools(self, request: CompletionRequest, instead: str) -> None:
        """InvalidRequestError (param "tools") when ``request`` uses tool calling, for a
        provider that has none; ``instead`` says what to use."""
        if request.uses_tools:
            raise invalid_parameter(
                "tools",
                f"tools are not supported by model {self.config.name!r} "
                f"(provider {self.config.provider}): it has no tool calling.",
                hint=instead,
            )

    @contextlib.contextmanager
    def errors_mapped(self) -> Iterator[None]:
        """Re-raise SDK and transport exceptions from the block as MMOErrors."""
        try:
            yield
        except Exception as exc:
            mapped = self.translate(exc)
            if mapped is None:
                raise
            # Python chains ``exc`` as __context__ whatever we do, so scrub it in place.
            raise mapped from scrub_exception(exc)

    def translate(self, exc: Exception) -> BaseException | None:
        """The MMOError for an exception raised while talking to the provider, if ours to map.

        When our task is being cancelled (a deadline, a lost race, the stop
        button), the SDK may surface the cancellation as a connection error;
        it must stay a cancellation so the caller sees what really happened.
        """
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return asyncio.CancelledError()
        names = {cls.__name__ for cls in type(exc).__mro__}
        if "APIError" in names and type(exc).__module__.split(".")[0] in ("openai", "anthropic"):
            return map_sdk_error(exc, self.config)
        if _is_http_error(exc, httpx_kind="TransportError"):
            # Raised while reading the body, where the SDKs do not wrap errors.
            name = type(aiohttp_cause(exc) or exc).__name__
            return self.stream_error(f"the connection broke mid-stream ({name})")
        return None

    def decode(self, data: str) -> dict[str, Any]:
        try:
            # The C scanner on the whole chunk: json.loads's own parse, without its two
            # Python layers (a third of its cost on a small chunk).
            obj, end = _scan_json(data, 0)
            if end != len(data):  # space around it, or more after it: json.loads decides
                raise ValueError
        except (StopIteration, ValueError):
            try:
                obj = json.loads(data)
            except ValueError as exc:
                # Malformed chunks fail the call rather than being skipped: a skipped
                # chunk would silently drop words from an answer reported as complete.
                error = self.stream_error(f"malformed stream chunk {data[:60]!r}")
                raise error from scrub_exception(exc)  # its ``doc`` is the whole chunk
        if not isinstance(obj, dict):
            raise self.stream_error(f"unexpected stream chunk {data[:60]!r}")
        return obj


Event = tuple[str | None, str]  # a Server-Sent Event: its name (None: unnamed) and data


async def sse_batches(batches: AsyncIterator[list[str]]) -> AsyncIterator[list[Event]]:
    """Server-Sent Events from batches of lines: a list of (event name, data) for each
    batch that completes one or more (a batch is what one network read brought).

    Events that arrive together are handed on together, so a burst (a fast or cached
    answer, a proxy that buffers) costs a loop step an event instead of a generator's
    resumption at every layer; events paced by a model's generation come one a batch.
    """
    event: str | None = None
    data: list[str] = []
    async for lines in batches:
        events: list[Event] = []
        for line in lines:
            if not line:
                if data:
                    events.append((event, "\n".join(data)))
                event, data = None, []
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" ") if len(line) > 5 else "")
            elif line.startswith("event:"):
                event = line[6:].strip()
            # comments (":") and other fields (id, retry) carry nothing we use
        if events:
            yield events
    if data:
        yield [(event, "\n".join(data))]


async def stream_items(
    response: Any, read: Callable[[list[Event], list[StreamItem]], bool]
) -> AsyncIterator[StreamItem]:
    """The items a provider's ``read`` makes of an event-stream response, batch by batch.

    ``read(events, items)`` appends the items of events that arrived together and says
    whether the answer is complete (then the rest of the body is read, so the connection
    is reused). A batch's answer text goes on as one piece, what arrived together; the
    items read before a failure are handed on before it, so the attempt keeps them.
    """
    batches = sse_batches(response.aiter_line_batches())
    async for events in batches:
        items: list[StreamItem] = []
        try:
            complete = read(events, items)
        except Exception:
            for item in _text_joined(items):
                yield item
            raise
        for item in _text_joined(items):
            yield item
        if complete:
            await read_to_end(batches)
            return


def _text_joined(items: list[StreamItem]) -> list[StreamItem]:
    """``items`` with each run of text pieces joined into one."""
    joined: list[StreamItem] = []
    text: list[str] = []
    for item in items:
        if isinstance(item, str):
            text.append(item)
            continue
        if text:
            joined.append("".join(text))
            text = []
        joined.append(item)
    if text:
        joined.append("".join(text))
    return joined


# How long a complete answer waits for the rest of its stream ([DONE], end of body).
_TAIL_WAIT_S = 0.25


async def read_to_end(events: AsyncIterator[Any]) -> None:
    """Read what follows a complete answer, so the connection goes back to the pool.

    An HTTP/1.1 connection can be reused only once its response is read to the
    end; closing it early cost a new TCP connection per call. The tail is
    normally already buffered; a server that holds the stream open after the
    usage chunk costs at most _TAIL_WAIT_S, then the connection is dropped.
    """
    # The answer is complete: a tail that breaks only costs the connection.
    try:
        async with asyncio.timeout(_TAIL_WAIT_S):
            async for _event in events:
                pass
    except (TimeoutError, OSError):
        pass
    except Exception as exc:
        if not _is_http_error(exc):
            raise


def _is_http_error(exc: BaseException, httpx_kind: str = "HTTPError") -> bool:
    """An error of the HTTP stack reading an answer: aiohttp's (``DirectPost``'s straight
    route), or httpx's or httpx2's (the openai and anthropic SDKs' own since their 3.x) of
    ``httpx_kind``; each package has its own classes, and none is imported to check."""
    module = type(exc).__module__
    kind = "ClientError" if module.startswith("aiohttp") else httpx_kind
    return module.startswith(("aiohttp", "httpx")) and any(
        cls.__name__ == kind for cls in type(exc).__mro__
    )


def scrub_exception(exc: BaseException) -> BaseException:
    """``exc`` and every exception chained to it, with no key left in args or attributes.

    SDK exceptions carry the request (its Authorization header is the key), the
    response, and a message and body that quote the key when a provider echoes
    it. Texts are redacted; requests, responses and other objects are dropped
    (set to None), since nothing short of dropping them can vouch for them. The
    type and the redacted message stay, for debugging. Returns ``exc``.
    """
    scrub = redactor()
    pending, seen = [exc], set()

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value)
        if value is None or isinstance(value, int | float):
            return value
        if type(value) in (list, tuple):
            return type(value)(clean(v) for v in value)
        if type(value) is dict:
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, BaseException):
            pending.append(value)
            return value
        return None

    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.args = clean(current.args)
        for name, value in list(vars(current).items()):
            with contextlib.suppress(AttributeError, TypeError):  # a read-only attribute
                setattr(current, name, clean(value))
        pending += [c for c in (current.__cause__, current.__context__) if c is not None]
    return exc


def map_sdk_error(exc: BaseException, config: ModelConfig) -> ProviderError:
    """The ProviderError for an ``openai`` or ``anthropic`` SDK exception.

    Both SDKs share one shape (APIStatusError with ``status_code``, ``body``
    and ``response``; APITimeoutError; APIConnectionError), so one mapping
    serves both. It reports what the provider said (status, code,
    ``retry-after``); whether to retry is ``orchestration.reliability``'s call.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}

    def error(message: str, **kw: Any) -> ProviderError:
        return ProviderError(message, provider=config.provider, model=config.name, **kw)

    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        message, code = _error_detail(getattr(exc, "body", None), str(exc))
        hint = _status_hint(status, code, config)
        return error(
            message,
            status=status,
            code=code,
            retry_after_s=_retry_after(getattr(exc, "response", None)),
            hint=hint,
        )
    if "APITimeoutError" in names:
        return error("the request timed out", code="timeout")
    if "APIConnectionError" in names:
        cause = exc.__cause__ or exc.__context__
        detail = f": {type(cause).__name__}" if cause else ""
        where = redact_url(config.base_url) if config.base_url else "the provider"
        return error(f"could not connect to {where}{detail}", code="connection_error")
    return error(f"{type(exc).__name__}: {exc}")


def _error_detail(body: Any, fallback: str) -> tuple[str, str | None]:
    """(message, code) from an error body in OpenAI's or Anthropic's shape."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return fallback, None
    message = str(error.get("message") or fallback)
    code = error.get("code") or error.get("type")
    return message, str(code) if code else None


def _status_hint(status: int, code: str | None, config: ModelConfig) -> str | None:
    if status == 401:
        return f"Check the key in {config.api_key_env or 'the API key variable'}."
    if status == 404:
        return f"Check model_id {config.model_id!r} and base_url."
    if code == "context_length_exceeded":
        return "Shorten the prompt or use a model with a larger context window."
    return None


def _retry_after(response: Any) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms, retry-after), as it said.

    Not capped here: ``RetryPolicy.max_retry_after_s`` decides how long is too long.
    """
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    seconds: float | None = None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            seconds = None
    if seconds is None and (value := headers.get("retry-after")) is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                import email.utils  # here: ~8 ms to import, needed only for a dated Retry-After

                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = None
    if seconds is None:
        return None
    return max(seconds, 0.0)  # a date already past: no wait
