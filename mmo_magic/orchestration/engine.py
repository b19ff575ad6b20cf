"""The call engine: one call from prompt to recorded answer.

``CallEngine.complete`` is the one entry point (a ``Completer``): the
Orchestrator's ``complete``, its streams, races, judges and pipelines all
call it. It builds the request (``calls.build_request``), routes, then tries
the model and its fallbacks under the rules of ``reliability``, each attempt
from the cache or within the budget, its stream drained under the model's
deadlines (``draining``), and records every attempt in the run log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..core.attempts import Attempt
from ..core.cells import current_cell
from ..core.completion import CompletionRequest, CompletionResponse, Prompt, StreamEnd
from ..core.errors import (
    AllModelsFailedError,
    CircuitOpenError,
    InvalidRequestError,
    MMOError,
    NoModelAvailableError,
    UnknownModelError,
)
from ..core.ids import new_id
from ..core.loop import BackgroundLoop, background_loop
from ..core.models import Catalogue, ModelConfig
from ..core.parts import check_parts, parts_digest, parts_record
from ..core.reasoning import check_reasoning
from ..core.structured import ResponseFormat, StructuredOutputError, Tool, ToolChoice, parse
from ..providers import ModelClient, make_client
from ..storage.cache import CachedAnswer, ResponseCache, cache_key
from ..storage.runlog import RunRecord
from ..storage.sinks import RecordSink
from ..storage.writer import written_here
from .budget import Budget, Reservation
from .calls import (
    CallContext,
    CallOptions,
    OnFinish,
    OnRetry,
    OnText,
    build_request,
    checked_values,
)
from .draining import Progress, assemble_tool_calls, drain
from .reliability import CircuitBreaker, Failover, Next, RetryPolicy

if TYPE_CHECKING:
    from ..routing import Router

__all__ = ["AUTO", "SESSION_ID", "CallEngine", "recorded_as"]

SESSION_ID = new_id()[:12]
AUTO = "auto"  # the model name that asks a router to choose
# Calls in flight to one provider at one host. High: the providers' rate limits are the
# real bound, and a low cap queues work behind it (8 made 40 calls of 3 s take 15 s through
# the service). Per provider and per model in mmo.toml ([concurrency], max_concurrency).
DEFAULT_CONCURRENCY_PER_PROVIDER = 256

# The ``step`` of the run records of calls that set none (see ``recorded_as``).
_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("mmo_step", default=None)


@contextlib.contextmanager
def recorded_as(step: str) -> Iterator[None]:
    """Record the calls started inside the block with ``step`` (unless they set their own).

    For a front end that labels all its calls, e.g. the HTTP service's "service".
    The label follows the calls onto the background loop: a coroutine submitted
    there runs in a copy of the submitting context.
    """
    token = _step.set(step)
    try:
        yield
    finally:
        _step.reset(token)


_PLAIN = CallContext()  # a call of its own, recorded as "complete", watched by nobody
# Kinds of call that compare models (timing, judging): they skip the cache unless asked.
_COMPARISONS = frozenset({"race", "all", "consensus", "judge"})


@dataclass(frozen=True, slots=True)
class _Call:
    """Everything about one call besides its prompt."""

    requested: str
    route: str | Router | None
    system: str | None
    temperature: float | None
    max_tokens: int | None
    sampling: dict[str, Any]  # CompletionRequest.SAMPLING options that are set
    response_format: ResponseFormat | None
    tools: tuple[Tool, ...]
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None
    thinking_budget: int | None
    budget: float | None
    allow_unpriced: bool
    use_cache: bool
    fallbacks: Sequence[str] | None
    allowed: Callable[[str], bool] | None  # the models besides the named one it may reach
    on_text: OnText | None
    on_finish: OnFinish | None
    on_thinking: OnText | None
    on_retry: OnRetry | None
    kind: str
    group_id: str | None
    step: str | None
    cell: int | None
    repairs_output: bool
    # One per run record of this call: done once the record is committed.
    committed: list[concurrent.futures.Future[None]] = field(default_factory=list)


# Where the engine writes its run records: an Orchestrator's RunLog, a Ray worker's shipping
# log. Generic, so the owner of an engine knows the kind of sink it gave it.
Sink = TypeVar("Sink", bound=RecordSink)


class CallEngine(Generic[Sink]):
    """Runs calls for an Orchestrator, which owns it and hands out its ``complete``.

    ``router`` gives the Router for a ``route`` (None: the default route) and
    ``default_model`` the model to use when a call names none: both stay the
    Orchestrator's, which users configure. ``runs`` takes a record per attempt.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        runs: Sink,
        cache: ResponseCache | None,
        budget: Budget,
        allow_unpriced: bool,
        retry_policy: RetryPolicy,
        breaker: CircuitBreaker,
        max_concurrency_per_provider: int,
        provider_concurrency: dict[str, int],
        router: Callable[[str | Router | None], Router],
        default_model: Callable[[], str],
        loop: BackgroundLoop = background_loop,
    ) -> None:
        self.catalogue = catalogue
        self.runs = runs
        self.cache = cache
        self.budget = budget
        self.allow_unpriced = allow_unpriced
        self.retry_policy = retry_policy
        self.breaker = breaker
        self.max_concurrency_per_provider = max_concurrency_per_provider
        self.provider_concurrency = provider_concurrency
        self.router = router
        self.default_model = default_model
        self.loop = loop
        self.clients: dict[str, ModelClient] = {}
        self._in_flight = 0  # calls between routing and their last record (on the loop)
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._bound_to: asyncio.AbstractEventLoop | None = None  # the clients' and slots' loop
        self._closing: asyncio.Future[Any] | None = None

    async def complete(
        self,
        prompt: Prompt,
        model: str | None,
        options: CallOptions,
        context: CallContext = _PLAIN,
        *,
        route: str | Router | None = None,
    ) -> CompletionResponse:
        """One call, run on the background loop: ``model`` (None: the default), or a router's
        choice when ``model`` is "auto" or a ``route`` is given.

        Arguments are checked first; a refused call is still recorded (status "error").
        The call returns or raises only once its run records are committed: a returned
        call is a recorded call, even if the process dies right after (concurrent calls
        share one commit: see ``storage.runlog``). A cancelled call does not wait: its
        records are queued and written all the same.
        """
        try:
            call = self._call(model, route, options, context)
        except MMOError as exc:
            await self._refused(prompt, model, context, exc)
            raise
        # The caller resumes once the answer is ready and its records are committed, woken
        # once, by whichever comes last: the writer thread wakes it directly when the
        # commit is last (see BackgroundLoop.arun).
        return await self.loop.arun(self._route_and_run(prompt, call), until=call.committed)

    def _call(
        self,
        model: str | None,
        route: str | Router | None,
        options: CallOptions,
        context: CallContext,
    ) -> _Call:
        if model is not None and (not isinstance(model, str) or not model.strip()):
            # "" or a None in a list of models must not quietly mean the default model.
            raise InvalidRequestError(
                f"model must be a model name, got {model!r}.",
                hint="Leave it out for the default model, or pass model='auto' to route.",
            )
        if route is not None and not isinstance(route, str) and not _is_router(route):
            raise InvalidRequestError(
                f"route must be a router name or a Router, got {type(route).__name__}.",
                hint="One of 'complexity', 'task', 'cost', 'rules'.",
            )
        if model is not None and model != AUTO and route is not None:
            raise InvalidRequestError(
                f"Both model={model!r} and route={route!r} were given.",
                hint='Pass a model, or model="auto" with a route.',
            )
        options = checked_values(options)
        allow_unpriced = options.get("allow_unpriced")
        # Comparisons time and judge fresh answers: from the cache only when asked.
        use_cache = options.get("cache", context.kind not in _COMPARISONS)
        sampling = {
            name: value
            for name in CompletionRequest.SAMPLING
            if (value := options.get(name)) is not None
        }
        # The cache key knows the messages, max_tokens and temperature only: an answer
        # cut by ``stop`` or drawn with a ``seed`` must not stand in for another's.
        # (Tool calls are never cached either: see ``_try``.)
        use_cache = use_cache and not sampling
        return _Call(
            requested=model or (AUTO if route is not None else self.default_model()),
            route=route,
            system=options.get("system"),
            temperature=options.get("temperature"),
            max_tokens=options.get("max_tokens"),
            sampling=sampling,
            response_format=options.get("response_format"),  # type: ignore[arg-type]
            tools=tuple(options.get("tools") or ()),  # type: ignore[arg-type]
            tool_choice=options.get("tool_choice"),  # type: ignore[arg-type]
            parallel_tool_calls=options.get("parallel_tool_calls"),
            reasoning_effort=options.get("reasoning_effort"),
            thinking_budget=options.get("thinking_budget"),
            budget=options.get("budget"),
            allow_unpriced=self.allow_unpriced if allow_unpriced is None else allow_unpriced,
            use_cache=use_cache and self.cache is not None,
            fallbacks=options.get("fallbacks"),
            allowed=options.get("allowed_models"),  # type: ignore[arg-type]  # checked_values
            on_text=context.on_text,
            on_finish=context.on_finish,
            on_thinking=context.on_thinking,
            on_retry=context.on_retry,
            kind=context.kind,
            group_id=context.group_id,
            step=context.step or _step.get(),
            cell=current_cell(),
            repairs_output=context.repairs_output,
        )

    async def _refused(
        self, prompt: Prompt, model: object, context: CallContext, error: MMOError
    ) -> None:
        """Record a call refused for its arguments, so the run log shows the attempt."""
        record = RunRecord(
            kind=context.kind, group_id=context.group_id or new_id(), step=context.step,
            requested_model=model if isinstance(model, str) else repr(model),
            prompt=prompt if isinstance(prompt, str) else "", status="error",
            error_type=type(error).__name__, error=str(error), finished_at=datetime.now(UTC),
            cell=current_cell(), session_id=SESSION_ID,
        )  # fmt: skip
        committed = self.runs.add(record)
        if not committed.done():
            await asyncio.wrap_future(committed)

    async def _route_and_run(self, prompt: Prompt, call: _Call) -> CompletionResponse:
        """One call: route, then try the model and its fallbacks under the retry policy."""
        self._in_flight += 1
        try:
            return await self._route_and_run_counted(prompt, call)
        finally:
            self._in_flight -= 1

    async def _route_and_run_counted(self, prompt: Prompt, call: _Call) -> CompletionResponse:
        base = RunRecord(
            kind=call.kind, requested_model=call.requested, prompt="", cell=call.cell,
            session_id=SESSION_ID, temperature=call.temperature, max_tokens=call.max_tokens,
            status="error", group_id=call.group_id or new_id(), step=call.step,
        )  # fmt: skip
        try:
            request = build_request(
                prompt, call.system, call.temperature, call.max_tokens, sampling=call.sampling,
                response_format=call.response_format, tools=call.tools,
                tool_choice=call.tool_choice, parallel_tool_calls=call.parallel_tool_calls,
                reasoning_effort=call.reasoning_effort, thinking_budget=call.thinking_budget,
            )  # fmt: skip
            base.prompt, base.system = request.prompt_text, request.system
            base.parts = parts_record(request.messages)  # kind, type, size, hash: no bytes
            if call.requested == AUTO:
                from ..routing.base import only_models  # loaded with the router just above

                router = self.router(call.route)
                with only_models(call.allowed):
                    decision = router.route(request, self.catalogue)
                base.route_reason = f"{decision.router}: {decision.reason}"
                primary = self.catalogue.resolve(decision.model)
                if call.allowed is not None and not call.allowed(primary.name):
                    # A router that ignores the restriction must not reach past it.
                    raise NoModelAvailableError(
                        "No model this call may use can take it.",
                        hint="Name an allowed model, or widen the allowed models.",
                    )
            else:
                primary = self.catalogue.resolve(call.requested)
            base.model, base.provider = primary.name, primary.provider
            # Fallbacks given with the call are checked now, before anything is sent;
            # configured ones only when reached: a fallback that names no model (added
            # by add_model after the build-time check) must not fail a working primary.
            chain: list[ModelConfig | str] = [primary]
            if call.fallbacks is not None:
                chain += [self.catalogue.resolve(n) for n in call.fallbacks if n != primary.name]
            else:
                chain += [n for n in primary.fallbacks if n != primary.name]
        except MMOError as exc:
            self._finish(call, base, None, Progress(), exc)
            raise
        return await self._run_chain(chain, request, base, call)

    async def _run_chain(
        self,
        chain: list[ModelConfig | str],
        request: CompletionRequest,
        base: RunRecord,
        call: _Call,
    ) -> CompletionResponse:
        attempts: list[Attempt] = []
        errors: list[MMOError] = []
        failover = Failover(self.retry_policy, self.breaker)
        for link in chain:
            try:
                config = self.catalogue.resolve(link) if isinstance(link, str) else link
            except UnknownModelError as exc:
                errors.append(exc)
                attempts.append(Attempt(str(link), "", "error", str(exc)))
                continue
            if link is not chain[0] and call.allowed and not call.allowed(config.name):
                continue  # a fallback outside the call's allowed models: unnamed, not tried
            if (why := failover.skip(config)) is not None:
                attempts.append(_skipped(config, why))
                continue
            retries = 0
            while True:
                record = dataclasses.replace(
                    base, run_id=new_id(), started_at=datetime.now(UTC),
                    attempt=len(errors) + 1, model=config.name, provider=config.provider,
                )  # fmt: skip
                response, error = await self._try(config, request, record, call)
                attempts.append(
                    Attempt(config.name, config.provider, response.status, response.error,
                            response.latency_ms, response.run_id)
                )  # fmt: skip
                if error is None:
                    failover.succeeded(config)
                    response.attempts = attempts
                    return response
                errors.append(error)
                error.attempts = attempts
                if call.repairs_output and isinstance(error, StructuredOutputError):
                    raise error  # the caller asks again, saying what was wrong
                shown = call.kind == "stream" and bool(response.content)
                decision = failover.after_failure(config, error, retries, text_shown=shown)
                if decision.next is Next.STOP:
                    raise error
                if decision.next is Next.RETRY:
                    retries += 1
                    if call.on_retry is not None:
                        call.on_retry(config.name, decision.delay_s)
                    await asyncio.sleep(decision.delay_s)
                    continue
                break
        if not errors and failover.circuit_wait_s is not None:
            # Nothing was sent: say when it is worth asking again (a service's Retry-After).
            first = chain[0]
            assert isinstance(first, ModelConfig)  # the primary is always resolved
            open_error = CircuitOpenError(
                provider=first.provider, model=first.name, retry_after_s=failover.circuit_wait_s
            )
            open_error.attempts = attempts
            self._finish(call, dataclasses.replace(base, run_id=new_id()), first, Progress(),
                         open_error)  # fmt: skip
            raise open_error
        if len({a.model for a in attempts}) <= 1 and errors:
            raise errors[-1]  # one model: its own error says more than a summary
        raise AllModelsFailedError(attempts, errors) from (errors[-1] if errors else None)

    async def _try(
        self, config: ModelConfig, request: CompletionRequest, record: RunRecord, call: _Call
    ) -> tuple[CompletionResponse, MMOError | None]:
        """One attempt at one model: from the cache, or within the budget, recorded either way."""
        max_tokens = call.max_tokens or config.max_tokens
        temperature = call.temperature if call.temperature is not None else config.temperature
        # Tools offered, or a conversation with tool calls in it: the cache key knows
        # neither the tools nor the calls' ids, so a text answer could stand in for a call.
        try:  # what this model cannot take is refused before anything is sent
            if config.embedding:
                raise InvalidRequestError(
                    f"Model {config.name!r} is an embedding model: it does not chat.",
                    hint=f"Use orc.embed(texts, model={config.name!r}), or a chat model here.",
                )
            if record.parts is not None:
                check_parts(config, request.messages)
            check_reasoning(config, request)
        except MMOError as exc:
            return self._finish(call, record, config, Progress(), exc), exc
        cacheable = call.use_cache and not request.uses_tools
        key = cache_key(config, request, max_tokens, temperature) if cacheable else None
        if key is not None and request.response_format is not None:
            # The same prompt under another schema is another question.
            key = hashlib.sha256(f"{key}:{request.response_format.key}".encode()).hexdigest()
        if key is not None and (request.reasoning_effort or request.thinking_budget):
            thinking = f"{request.reasoning_effort}:{request.thinking_budget}"
            key = hashlib.sha256(f"{key}:thinking={thinking}".encode()).hexdigest()
        if key is not None and record.parts is not None:
            # The same words about another image are another question: key on the hashes.
            digest = parts_digest(request.messages)
            key = hashlib.sha256(f"{key}:{digest}".encode()).hexdigest()
        if key is not None and self.cache is not None and (hit := self.cache.get(key)):
            return self._from_cache(record, config, hit, call, request), None
        try:
            reservation = await self._authorize(config, request, max_tokens, call)
        except MMOError as exc:
            return self._finish(call, record, config, Progress(), exc), exc
        try:
            response, error = await self._attempt(config, request, record, call)
        finally:
            self.budget.settle(reservation, record.cost)
        if error is None and key is not None and self.cache is not None:
            self.cache.put(key, CachedAnswer(
                response.content, response.finish_reason or "stop", response.input_tokens,
                response.output_tokens, response.tokens_estimated,
            ))  # fmt: skip
        return response, error

    async def _authorize(
        self, config: ModelConfig, request: CompletionRequest, max_tokens: int, call: _Call
    ) -> Reservation | None:
        if self.budget.limit is None and call.budget is None:
            return None  # no budget: skip counting tokens
        from ..core.pricing import estimate_cost

        estimate = estimate_cost(config, request, max_tokens)
        return await self.budget.aauthorize(
            config, estimate, call_limit=call.budget, allow_unpriced=call.allow_unpriced
        )

    def _from_cache(
        self,
        record: RunRecord,
        config: ModelConfig,
        hit: CachedAnswer,
        call: _Call,
        request: CompletionRequest,
    ) -> CompletionResponse:
        """A cache hit: recorded like any call, with ``cached=True`` and no cost."""
        progress = Progress(parts=[hit.content])
        progress.end = StreamEnd(
            hit.finish_reason, hit.input_tokens, hit.output_tokens, hit.tokens_estimated
        )
        progress.ttft_ms = progress.elapsed_ms
        if request.response_format is not None:
            progress.parsed = parse(request.response_format, hit.content)
        if call.on_text is not None:
            call.on_text(hit.content)
        record.cached = True
        return self._finish(call, record, config, progress, None, cost=0.0)

    async def _attempt(
        self, config: ModelConfig, request: CompletionRequest, record: RunRecord, call: _Call
    ) -> tuple[CompletionResponse, MMOError | None]:
        """One try at one model, recorded whatever happens: (response, error or None)."""
        progress = Progress()
        done = functools.partial(self._finish, call, record, config, progress)
        try:
            client = self._client(config)
            async with self._slots(config):
                # Time the model, not the wait for a slot or the SDK's first-use set-up.
                record.started_at = datetime.now(UTC)
                progress.started = time.perf_counter()
                await drain(client, request, progress, call.on_text, call.on_thinking)
            assemble_tool_calls(progress, config)
            if request.response_format is not None and not progress.tool_calls:
                # Invalid JSON fails the attempt (a StreamError: retried, failed over);
                # the raw text stays in the run record.
                progress.parsed = parse(
                    request.response_format, "".join(progress.parts),
                    provider=config.provider, model=config.name,
                )  # fmt: skip
        except asyncio.CancelledError:
            done(None, status="cancelled")
            raise
        except MMOError as exc:
            return done(exc), exc
        return done(None), None

    @contextlib.asynccontextmanager
    async def _slots(self, config: ModelConfig) -> AsyncIterator[None]:
        """A slot of the model's own limit (``max_concurrency``), then one of its provider's.

        In that order, so a call waiting for its model holds none of the provider's slots.
        A provider's slots are per host: OpenAI-compatible services (Groq, OpenRouter,
        DeepSeek...) all have provider "openai" but each has its own limit, of the size
        configured for the provider (``provider_concurrency``, ``[concurrency]``).
        """
        limit = self.provider_concurrency.get(config.provider, self.max_concurrency_per_provider)
        provider = self._slot(_provider_slot(config), limit)
        if config.max_concurrency is None:
            async with provider:
                yield
        else:
            async with self._slot(f"model:{config.name}", config.max_concurrency), provider:
                yield

    def _slot(self, key: str, limit: int) -> asyncio.Semaphore:
        self._bind_to_running_loop()
        slot = self._semaphores.get(key)
        if slot is None:
            slot = self._semaphores[key] = asyncio.Semaphore(limit)
        return slot

    def _finish(
        self,
        call: _Call,
        record: RunRecord,
        config: ModelConfig | None,
        progress: Progress,
        error: MMOError | None,
        status: str | None = None,
        cost: float | None = None,
    ) -> CompletionResponse:
        """Complete ``record`` from the attempt's progress, store it, and build the response."""
        end = progress.end
        content = "".join(progress.parts)
        input_tokens = end.input_tokens if end else None
        output_tokens = end.output_tokens if end else None
        if cost is None and config is not None:
            cost = config.cost(input_tokens, output_tokens)
            if error is not None and not progress.parts and config.priced:
                cost = 0.0  # nothing was generated, so nothing was billed
        if status is None:
            status = "ok" if error is None else _status_of(error)
        record.finished_at = datetime.now(UTC)
        record.status = status
        record.error_type = type(error).__name__ if error else None
        record.error = str(error) if error else None
        record.response = content
        record.finish_reason = end.finish_reason if end else None
        record.input_tokens, record.output_tokens = input_tokens, output_tokens
        record.tokens_estimated = bool(end and end.estimated)
        record.cost = cost
        record.tool_calls = (
            json.dumps([c.openai() for c in progress.tool_calls], ensure_ascii=False)
            if progress.tool_calls
            else None
        )
        record.latency_ms = progress.elapsed_ms
        record.ttft_ms = progress.ttft_ms
        record.first_activity_ms = progress.first_activity_ms
        record.reasoning_tokens = end.reasoning_tokens if end else None
        reasoning = "".join(progress.thinking) or None
        record.reasoning = reasoning
        if record.reasoning_tokens is None and reasoning and end is not None:
            # Thinking text but no count of it (Anthropic reports none apart from
            # output_tokens): its tokens counted here, after the call was timed.
            from ..core.pricing import count_tokens

            record.reasoning_tokens = count_tokens(reasoning, config.model_id if config else "")
        if self._in_flight <= 1:
            # A lone call: its records are written here, on the loop, now (it waits for the
            # commit anyway), not handed to the writer thread and back: two thread wake-ups
            # fewer (storage.writer). Concurrent calls' records share the writer's commits.
            with written_here():
                call.committed.append(self.runs.add(record))
        else:
            call.committed.append(self.runs.add(record))
        response = CompletionResponse(
            content=content,
            model=config.name if config else record.requested_model,
            provider=config.provider if config else "",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=record.latency_ms,
            cost=cost,
            status=status,  # type: ignore[arg-type]
            error=record.error,
            finish_reason=record.finish_reason,
            ttft_ms=progress.ttft_ms,
            run_id=record.run_id,
            tokens_estimated=record.tokens_estimated,
            cached=record.cached,
            route_reason=record.route_reason,
            group_id=record.group_id,
            parsed=progress.parsed if error is None else None,
            tool_calls=list(progress.tool_calls) if error is None else [],
            reasoning=reasoning,
            thinking_blocks=list(progress.thinking_blocks) if error is None else [],
            reasoning_tokens=record.reasoning_tokens,
            first_activity_ms=progress.first_activity_ms,
        )
        if call.on_finish is not None:
            call.on_finish(response)
        return response

    def _bind_to_running_loop(self) -> None:
        """Clients (their connection pools) and slots belong to one loop. The first call on
        another one (after a loop adopted with ``BackgroundLoop.adopt`` ended) starts both
        afresh: the old loop's went with it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside any loop (a Ray worker checking its keys): nothing to bind
            return
        if loop is not self._bound_to:
            if self._bound_to is not None:  # the previous loop's clients and slots: gone with it
                self.clients, self._semaphores = {}, {}
            self._bound_to = loop

    def _client(self, config: ModelConfig) -> ModelClient:
        self._bind_to_running_loop()
        client = self.clients.get(config.name)
        if client is None or client.config != config:
            client = self.clients[config.name] = make_client(config)
        return client

    def forget_client(self, name: str) -> None:
        """Drop model ``name``'s client (its config changed): the next call builds a new one."""
        self.clients.pop(name, None)

    def close_clients(self) -> None:
        """Close every client's connections."""
        clients, self.clients = list(self.clients.values()), {}

        async def close_all() -> None:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

        if not clients:
            return
        if self.loop.in_loop_thread():  # on an adopted loop (an async program's own): no wait
            self._closing = asyncio.ensure_future(close_all())
        else:
            self.loop.run(close_all())


def _is_router(route: object) -> bool:
    from ..routing import Router  # routing loads on first use (its routers compile patterns)

    return isinstance(route, Router)


def _skipped(config: ModelConfig, why: str) -> Attempt:
    return Attempt(config.name, config.provider, "error", f"skipped: {why}")


def _provider_slot(config: ModelConfig) -> str:
    """The key of the slots a model shares: its provider, at its host (and port; "" for
    the provider's default address)."""
    host = urllib.parse.urlsplit(config.base_url or "").netloc.rpartition("@")[2].lower()
    return f"provider:{config.provider}@{host}"


def _status_of(error: MMOError) -> str:
    return "timeout" if getattr(error, "code", None) == "timeout" else "error"
