"""The Orchestrator: the one object users call, sync or async, on one background loop."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import queue
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.completion import (
    Attempt,
    CompletionRequest,
    CompletionResponse,
    Message,
    StreamEnd,
    as_messages,
)
from ..core.errors import AllModelsFailedError, InvalidRequestError, MMOError, ProviderError
from ..core.loop import background_loop, get_interruptibly
from ..core.models import Catalogue, ModelConfig
from ..providers import ModelClient, make_client
from ..storage.cache import CachedAnswer, ResponseCache, cache_key
from ..storage.runlog import RunLog, RunRecord, new_id
from .budget import Budget, Reservation
from .reliability import CircuitBreaker, Next, RetryPolicy, next_step

if TYPE_CHECKING:
    from ..routing.routers import RouteDecision, Router
    from .parallel import ConsensusResult, RaceResult
    from .pipeline import Pipeline, PipelineResult, PipelineStep

__all__ = ["CompletionStream", "Orchestrator"]

Prompt = str | Sequence[Message | dict[str, str]]
OnText = Callable[[str], None]
SESSION_ID = new_id()[:12]
AUTO = "auto"  # the model name that asks a router to choose
# Preferred defaults when the config names none: the first whose key is set.
# With no key the embedded model answers for real; the simulated provider is the last resort.
_DEFAULT_PREFERENCE = ("gpt-4o-mini", "claude-haiku-4-5", "smollm2", "sim-fast")


def current_cell() -> int | None:
    """The number the notebook shows beside the running cell, under IPython (never imports it).

    ``shell.execution_count`` is the wrong source: IPython 9 increments it before
    the cell runs and IPython 8 after, so it names this cell on one and the next
    on the other. The cell's own ``ExecutionResult`` carries its number on both;
    the display hook holds it while the cell's code runs. Between cells (a worker
    thread a cell started, still going) it is the last cell that ran.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return None
    running = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    result = running if running is not None else getattr(shell, "last_execution_result", None)
    count = getattr(result, "execution_count", None)
    return count if isinstance(count, int) else None


@dataclass
class _Progress:
    """What one attempt has produced so far: kept even when it fails."""

    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    end: StreamEnd | None = None

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


class Orchestrator:
    """Calls models by name and records every call in ``runs``.

    Every sync method has an ``a``-prefixed async twin; both run the work on
    the one background event loop (see ``mmo_magic.loop``).
    """

    def __init__(
        self,
        models: Iterable[ModelConfig] | Catalogue | None = None,
        default_model: str | None = None,
        *,
        runlog: RunLog | str | os.PathLike[str] | None = None,
        cache: ResponseCache | str | os.PathLike[str] | bool = True,
        budget: float | None = None,
        allow_unpriced: bool = False,
        default_route: str = "complexity",
        task_models: dict[str, list[str]] | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_concurrency_per_provider: int = 8,
    ) -> None:
        """``cache``: True (the default file), False, a path or a ResponseCache.
        ``budget``: USD this orchestrator may spend (None: unlimited)."""
        if models is None:
            from ..core.catalogue import builtin_models

            models = builtin_models()
        self.catalogue = models if isinstance(models, Catalogue) else Catalogue.of(models)
        self.runs = runlog if isinstance(runlog, RunLog) else RunLog(runlog)
        self.cache = _make_cache(cache)
        self.budget = Budget(budget)
        self.allow_unpriced = allow_unpriced
        self.default_route = default_route
        self.task_models = task_models
        self.retry_policy = retry_policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.max_concurrency_per_provider = max_concurrency_per_provider
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._routers: dict[str, Router] = {}
        self._clients: dict[str, ModelClient] = {}
        self._loop = background_loop
        if default_model is not None:
            self.catalogue.resolve(default_model)  # fail now, not at the first call
        self._default_model = default_model

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Orchestrator:
        """Built-in catalogue + mmo.toml (working directory, then user config) + environment.

        ``MMO_DEFAULT_MODEL`` overrides the configured default model.
        """
        from ..core.catalogue import builtin_models
        from ..core.config import load_settings, model_from_dict

        settings = load_settings(None if path is None else [Path(path)])
        catalogue = Catalogue.of(builtin_models())
        source = ", ".join(str(p) for p in settings.sources) or "config"
        for name, fields in settings.models.items():
            base = catalogue.resolve(name) if name in catalogue else None
            catalogue.add(model_from_dict(name, fields, base, source=source))
        default = os.environ.get("MMO_DEFAULT_MODEL") or settings.default_model
        kwargs.setdefault("runlog", settings.runlog)
        if settings.cache is not None:
            kwargs.setdefault("cache", settings.cache)
        kwargs.setdefault("budget", settings.budget)
        if settings.route is not None:
            kwargs.setdefault("default_route", settings.route)
        kwargs.setdefault("task_models", settings.task_models or None)
        return cls(catalogue, default, **kwargs)

    @property
    def session_id(self) -> str:
        """Identifies this Python process in the run log (which outlives it)."""
        return SESSION_ID

    # -- models ---------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The configured default, else the first preferred model that is available."""
        if self._default_model:
            return self._default_model
        for name in _DEFAULT_PREFERENCE:
            if name in self.catalogue and self.catalogue.resolve(name).available:
                return name
        return next(iter(self.catalogue)).name

    @default_model.setter
    def default_model(self, name: str | None) -> None:
        if name is not None:
            self.catalogue.resolve(name)
        self._default_model = name
        self._routers.clear()  # routers fall back to the default model

    def models(self) -> list[ModelConfig]:
        return list(self.catalogue)

    def add_model(self, model: ModelConfig) -> None:
        self.catalogue.add(model)
        self._clients.pop(model.name, None)
        self._routers.clear()

    # -- completing -----------------------------------------------------------

    def complete(
        self, prompt: Prompt, model: str | None = None, **options: Any
    ) -> CompletionResponse:
        """The whole answer of ``model`` (default: ``default_model``) to ``prompt``.

        ``model="auto"`` (or ``route=...``) lets a router choose: "complexity",
        "task", "cost", "rules", or a Router. Options: ``system``,
        ``temperature``, ``max_tokens``, ``budget`` (USD for this call),
        ``allow_unpriced``, ``cache`` (False to skip the response cache).
        Raises an MMOError on failure; the failed attempt is still in ``runs``.
        """
        return self._loop.run(self.acomplete(prompt, model, **options))

    async def acomplete(
        self,
        prompt: Prompt,
        model: str | None = None,
        *,
        route: str | Router | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        budget: float | None = None,
        allow_unpriced: bool | None = None,
        cache: bool = True,
        fallbacks: Sequence[str] | None = None,
        on_text: OnText | None = None,
        on_finish: Callable[[CompletionResponse], None] | None = None,
        kind: str = "complete",
        group_id: str | None = None,
        step: str | None = None,
    ) -> CompletionResponse:
        """Async twin of ``complete``.

        ``fallbacks`` replaces the model's configured fallback chain for this
        call. ``on_text`` is called per text delta and ``on_finish`` with each
        attempt's response (ok, failed or cancelled), both on the loop thread.
        """
        if model is not None and model != AUTO and route is not None:
            raise InvalidRequestError(
                f"Both model={model!r} and route={route!r} were given.",
                hint='Pass a model, or model="auto" with a route.',
            )
        call = _Call(
            requested=model or (AUTO if route is not None else self.default_model),
            route=route,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            budget=budget,
            allow_unpriced=self.allow_unpriced if allow_unpriced is None else allow_unpriced,
            use_cache=cache and self.cache is not None,
            fallbacks=fallbacks,
            on_text=on_text,
            on_finish=on_finish,
            kind=kind,
            group_id=group_id,
            step=step,
            cell=current_cell(),
        )
        return await self._loop.arun(self._complete(prompt, call))

    def stream(self, prompt: Prompt, model: str | None = None, **options: Any) -> CompletionStream:
        """Iterate over the answer's text as it arrives; ``.response`` holds the rest at the end.

        Failures before the first text are retried and fail over as in
        ``complete``; a failure after text has been yielded is raised, since
        a retry would repeat text the caller already has.
        """
        return CompletionStream(self, prompt, model, options)

    def astream(
        self, prompt: Prompt, model: str | None = None, **options: Any
    ) -> AsyncCompletionStream:
        """Async twin of ``stream``: ``async for text in orc.astream(...)``."""
        return AsyncCompletionStream(self, prompt, model, options)

    # -- several models -------------------------------------------------------

    def race(self, prompt: Prompt, models: Sequence[str], **options: Any) -> RaceResult:
        """First successful answer wins; see ``mmo_magic.parallel.race`` (``hedge_ms``)."""
        return self._loop.run(self.arace(prompt, models, **options))

    async def arace(self, prompt: Prompt, models: Sequence[str], **options: Any) -> RaceResult:
        from .parallel import race

        return await self._loop.arun(race(self, prompt, models, **options))

    def all(
        self, prompt: Prompt, models: Sequence[str], **options: Any
    ) -> list[CompletionResponse]:
        """Every model's answer, in order, failures included (status "error")."""
        return self._loop.run(self.aall(prompt, models, **options))

    async def aall(
        self, prompt: Prompt, models: Sequence[str], **options: Any
    ) -> list[CompletionResponse]:
        from .parallel import all_models

        return await self._loop.arun(all_models(self, prompt, models, **options))

    def consensus(self, prompt: Prompt, models: Sequence[str], **options: Any) -> ConsensusResult:
        """Ask every model and pick one answer: ``judges=[...]``, ``strategy="judge"`` etc."""
        return self._loop.run(self.aconsensus(prompt, models, **options))

    async def aconsensus(
        self, prompt: Prompt, models: Sequence[str], **options: Any
    ) -> ConsensusResult:
        from .parallel import consensus

        return await self._loop.arun(consensus(self, prompt, models, **options))

    # -- routing --------------------------------------------------------------

    def route(
        self, prompt: Prompt, route: str | Router | None = None, **options: Any
    ) -> RouteDecision:
        """Which model ``route`` would choose for ``prompt``, and why. Calls no model."""
        request = _build_request(prompt, options.get("system"), None, options.get("max_tokens"))
        return self._router(route).route(request, self.catalogue)

    async def aroute(
        self, prompt: Prompt, route: str | Router | None = None, **options: Any
    ) -> RouteDecision:
        """Async twin of ``route`` (routing is pure computation; nothing is awaited)."""
        return self.route(prompt, route, **options)

    def _router(self, route: str | Router | None) -> Router:
        from ..routing.routers import Router, make_router

        if isinstance(route, Router):
            return route
        name = route or self.default_route
        router = self._routers.get(name)
        if router is None:
            router = self._routers[name] = make_router(
                name, default=self.default_model, task_models=self.task_models
            )
        return router

    # -- pipelines ------------------------------------------------------------

    def run_pipeline(
        self,
        pipeline: Pipeline,
        *,
        on_step: Callable[[PipelineStep, CompletionResponse], None] | None = None,
        **variables: Any,
    ) -> PipelineResult:
        """Run ``pipeline`` with template ``variables``; see ``mmo_magic.pipeline``."""
        return self._loop.run(self.arun_pipeline(pipeline, on_step=on_step, **variables))

    async def arun_pipeline(
        self,
        pipeline: Pipeline,
        *,
        on_step: Callable[[PipelineStep, CompletionResponse], None] | None = None,
        **variables: Any,
    ) -> PipelineResult:
        """Async twin of ``run_pipeline``."""
        from .pipeline import run_pipeline

        async def call(
            step: PipelineStep, prompt: str, system: str | None, group_id: str
        ) -> CompletionResponse:
            return await self.acomplete(
                prompt, step.model, system=system, temperature=step.temperature,
                max_tokens=step.max_tokens, kind="pipeline_step", group_id=group_id, step=step.name,
            )  # fmt: skip

        return await self._loop.arun(run_pipeline(pipeline, variables, call, on_step))

    # -- one call -------------------------------------------------------------

    async def _complete(self, prompt: Prompt, call: _Call) -> CompletionResponse:
        """One call: route, then try the model and its fallbacks under the retry policy."""
        base = RunRecord(
            kind=call.kind, requested_model=call.requested, prompt="", cell=call.cell,
            session_id=SESSION_ID, temperature=call.temperature, max_tokens=call.max_tokens,
            status="error", group_id=call.group_id or new_id(), step=call.step,
        )  # fmt: skip
        try:
            request = _build_request(prompt, call.system, call.temperature, call.max_tokens)
            base.prompt, base.system = request.prompt_text, request.system
            if call.requested == AUTO:
                decision = self._router(call.route).route(request, self.catalogue)
                base.route_reason = f"{decision.router}: {decision.reason}"
                primary = self.catalogue.resolve(decision.model)
            else:
                primary = self.catalogue.resolve(call.requested)
            base.model, base.provider = primary.name, primary.provider
            names = primary.fallbacks if call.fallbacks is None else call.fallbacks
            chain = [primary, *(self.catalogue.resolve(n) for n in names if n != primary.name)]
        except MMOError as exc:
            self._finish(base, None, _Progress(), exc, on_finish=call.on_finish)
            raise
        return await self._run_chain(chain, request, base, call)

    async def _run_chain(
        self, chain: list[ModelConfig], request: CompletionRequest, base: RunRecord, call: _Call
    ) -> CompletionResponse:
        attempts: list[Attempt] = []
        errors: list[MMOError] = []
        overflowed: int | None = None  # the context window a prompt was too long for
        for config in chain:
            if overflowed is not None and (config.context_window or 0) <= overflowed:
                attempts.append(_skipped(config, "context window not larger"))
                continue
            if not self.breaker.allow(config.name):
                attempts.append(_skipped(config, "circuit open"))
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
                    self.breaker.record_success(config.name)
                    response.attempts = attempts
                    return response
                errors.append(error)
                error.attempts = attempts
                step = next_step(error)
                if step in (Next.RETRY, Next.FAILOVER) and isinstance(error, ProviderError):
                    self.breaker.record_failure(config.name)
                if step is Next.STOP or (call.kind == "stream" and response.content):
                    # A stream's caller has shown the text so far and cannot take it back:
                    # a retry or fallback would append a second answer to the first.
                    raise error
                if step is Next.RETRY and retries < config.max_retries:
                    assert isinstance(error, ProviderError)
                    delay = self.retry_policy.delay(retries + 1, error)
                    if delay is not None and self.breaker.allow(config.name):
                        retries += 1
                        await asyncio.sleep(delay)
                        continue
                if step is Next.LARGER_CONTEXT:
                    overflowed = config.context_window or 0
                break
        if len({a.model for a in attempts}) <= 1 and errors:
            raise errors[-1]  # one model: its own error says more than a summary
        raise AllModelsFailedError(attempts, errors) from (errors[-1] if errors else None)

    async def _try(
        self, config: ModelConfig, request: CompletionRequest, record: RunRecord, call: _Call
    ) -> tuple[CompletionResponse, MMOError | None]:
        """One attempt at one model: from the cache, or within the budget, recorded either way."""
        max_tokens = call.max_tokens or config.max_tokens
        temperature = call.temperature if call.temperature is not None else config.temperature
        key = cache_key(config, request, max_tokens, temperature) if call.use_cache else None
        if key is not None and self.cache is not None and (hit := self.cache.get(key)):
            return self._from_cache(record, config, hit, call), None
        try:
            reservation = self._authorize(config, request, max_tokens, call)
        except MMOError as exc:
            return self._finish(record, config, _Progress(), exc, on_finish=call.on_finish), exc
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

    def _authorize(
        self, config: ModelConfig, request: CompletionRequest, max_tokens: int, call: _Call
    ) -> Reservation | None:
        if self.budget.limit is None and call.budget is None:
            return None  # no budget: skip counting tokens
        from ..routing.routers import estimate_cost

        estimate = estimate_cost(config, request, max_tokens)
        return self.budget.authorize(
            config, estimate, call_limit=call.budget, allow_unpriced=call.allow_unpriced
        )

    def _from_cache(
        self, record: RunRecord, config: ModelConfig, hit: CachedAnswer, call: _Call
    ) -> CompletionResponse:
        """A cache hit: recorded like any call, with ``cached=True`` and no cost."""
        progress = _Progress(parts=[hit.content])
        progress.end = StreamEnd(
            hit.finish_reason, hit.input_tokens, hit.output_tokens, hit.tokens_estimated
        )
        progress.ttft_ms = progress.elapsed_ms
        if call.on_text is not None:
            call.on_text(hit.content)
        record.cached = True
        return self._finish(record, config, progress, None, cost=0.0, on_finish=call.on_finish)

    async def _attempt(
        self, config: ModelConfig, request: CompletionRequest, record: RunRecord, call: _Call
    ) -> tuple[CompletionResponse, MMOError | None]:
        """One try at one model, recorded whatever happens: (response, error or None)."""
        progress = _Progress()
        done = functools.partial(self._finish, record, config, progress, on_finish=call.on_finish)
        try:
            client = self._client(config)
            async with self._provider_slot(config.provider):
                # Time the model, not the wait for a slot or the SDK's first-use set-up.
                record.started_at = datetime.now(UTC)
                progress.started = time.perf_counter()
                await _consume(client, request, progress, call.on_text)
        except asyncio.CancelledError:
            done(None, status="cancelled")
            raise
        except MMOError as exc:
            return done(exc), exc
        return done(None), None

    def _provider_slot(self, provider: str) -> asyncio.Semaphore:
        """Bounds the calls in flight to one provider (``max_concurrency_per_provider``)."""
        slot = self._slots.get(provider)
        if slot is None:
            slot = self._slots[provider] = asyncio.Semaphore(self.max_concurrency_per_provider)
        return slot

    def _finish(
        self,
        record: RunRecord,
        config: ModelConfig | None,
        progress: _Progress,
        error: MMOError | None,
        status: str | None = None,
        cost: float | None = None,
        on_finish: Callable[[CompletionResponse], None] | None = None,
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
        record.latency_ms = progress.elapsed_ms
        record.ttft_ms = progress.ttft_ms
        self.runs.add(record)
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
        )
        if on_finish is not None:
            on_finish(response)
        return response

    def _client(self, config: ModelConfig) -> ModelClient:
        client = self._clients.get(config.name)
        if client is None or client.config != config:
            client = self._clients[config.name] = make_client(config)
        return client

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close every client's connections and the run log."""
        clients, self._clients = list(self._clients.values()), {}

        async def close_all() -> None:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

        if clients:
            self._loop.run(close_all())
        self.runs.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        models, available = len(self.catalogue), len(self.catalogue.available())
        return (
            f"<Orchestrator {models} models ({available} available), "
            f"default {self.default_model!r}>"
        )


@dataclass(frozen=True, slots=True)
class _Call:
    """Everything about one call besides its prompt."""

    requested: str
    route: str | Router | None
    system: str | None
    temperature: float | None
    max_tokens: int | None
    budget: float | None
    allow_unpriced: bool
    use_cache: bool
    fallbacks: Sequence[str] | None
    on_text: OnText | None
    on_finish: Callable[[CompletionResponse], None] | None
    kind: str
    group_id: str | None
    step: str | None
    cell: int | None


def _make_cache(cache: ResponseCache | str | os.PathLike[str] | bool) -> ResponseCache | None:
    if isinstance(cache, ResponseCache):
        return cache
    if cache is False or os.environ.get("MMO_CACHE", "").lower() in ("off", "0", "false"):
        return None
    return ResponseCache(None if cache is True else cache)


def _skipped(config: ModelConfig, why: str) -> Attempt:
    return Attempt(config.name, config.provider, "error", f"skipped: {why}")


def _build_request(
    prompt: Prompt, system: str | None, temperature: float | None, max_tokens: int | None
) -> CompletionRequest:
    if not isinstance(prompt, str | list | tuple):
        raise InvalidRequestError(
            f"A prompt must be a string or a list of messages, not {type(prompt).__name__}."
        )
    try:
        messages = as_messages(prompt, system)
    except (KeyError, TypeError) as exc:
        raise InvalidRequestError(
            "Messages must be dicts with 'role' and 'content' (or mmo_magic.Message)."
        ) from exc
    request = CompletionRequest(messages, max_tokens=max_tokens, temperature=temperature)
    if not request.prompt_text.strip():
        raise InvalidRequestError(
            "The prompt is empty.", hint="Write something for the model to answer."
        )
    if max_tokens is not None and max_tokens <= 0:
        raise InvalidRequestError(f"max_tokens must be > 0, got {max_tokens}.")
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidRequestError(f"temperature must be between 0 and 2, got {temperature}.")
    return request


async def _consume(
    client: ModelClient, request: CompletionRequest, progress: _Progress, on_text: OnText | None
) -> None:
    """Drain ``client.stream`` into ``progress`` under the model's deadlines.

    Deadlines: total (``timeout_s``), time to first token (``ttft_timeout_s``)
    and stall between deltas (``stall_timeout_s``), all on one rescheduled
    timer so the per-chunk cost stays a single heap operation.
    """
    config = client.config
    loop = asyncio.get_running_loop()
    total_at = loop.time() + config.timeout_s
    watch_gaps = config.ttft_timeout_s is not None or config.stall_timeout_s is not None

    def deadline() -> float:
        gap = config.ttft_timeout_s if progress.ttft_ms is None else config.stall_timeout_s
        return total_at if gap is None else min(total_at, loop.time() + gap)

    stream = client.stream(request)
    try:
        async with asyncio.timeout_at(deadline()) as timer:
            async for item in stream:
                if isinstance(item, StreamEnd):
                    progress.end = item
                    continue
                if progress.ttft_ms is None:
                    progress.ttft_ms = progress.elapsed_ms
                progress.parts.append(item)
                if on_text is not None:
                    on_text(item)
                if watch_gaps:
                    timer.reschedule(deadline())
    except TimeoutError as exc:
        raise _timeout_error(config, progress, loop.time() >= total_at) from exc
    finally:
        await stream.aclose()


def _timeout_error(config: ModelConfig, progress: _Progress, total: bool) -> ProviderError:
    if total:
        what = f"no complete answer within timeout_s={config.timeout_s:g}"
    elif progress.ttft_ms is None:
        what = f"no first token within ttft_timeout_s={config.ttft_timeout_s:g}"
    else:
        what = f"stream stalled: nothing for stall_timeout_s={config.stall_timeout_s:g}"
    return ProviderError(
        what, provider=config.provider, model=config.name, retryable=True, code="timeout"
    )


def _status_of(error: MMOError) -> str:
    return "timeout" if getattr(error, "code", None) == "timeout" else "error"


_DONE = object()


class CompletionStream:
    """Text deltas as they arrive; after the loop, ``response`` is the CompletionResponse.

    Breaking out of the loop, or KeyboardInterrupt, cancels the request and
    closes its HTTP stream.
    """

    def __init__(
        self, orc: Orchestrator, prompt: Prompt, model: str | None, options: dict[str, Any]
    ) -> None:
        self._orc, self._prompt, self._model, self._options = orc, prompt, model, options
        self.response: CompletionResponse | None = None

    def __iter__(self) -> Iterator[str]:
        deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()
        coro = self._orc.acomplete(
            self._prompt, self._model, on_text=deltas.put, kind="stream", **self._options
        )
        future = self._orc._loop.submit(coro)
        future.add_done_callback(lambda _: deltas.put(_DONE))
        try:
            while (item := get_interruptibly(deltas)) is not _DONE:
                yield item
            self.response = future.result()
        finally:
            if not future.done():
                future.cancel()
                import concurrent.futures

                concurrent.futures.wait([future], timeout=5)

    @property
    def text(self) -> str:
        return self.response.content if self.response else ""


class AsyncCompletionStream:
    """Async twin of CompletionStream: ``async for text in orc.astream(...)``."""

    def __init__(
        self, orc: Orchestrator, prompt: Prompt, model: str | None, options: dict[str, Any]
    ) -> None:
        self._orc, self._prompt, self._model, self._options = orc, prompt, model, options
        self.response: CompletionResponse | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        caller = asyncio.get_running_loop()
        deltas: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            caller.call_soon_threadsafe(deltas.put_nowait, item)

        coro = self._orc.acomplete(
            self._prompt, self._model, on_text=put, kind="stream", **self._options
        )
        future = asyncio.ensure_future(coro)
        future.add_done_callback(lambda _: deltas.put_nowait(_DONE))
        try:
            while (item := await deltas.get()) is not _DONE:
                yield item
            self.response = await future
        finally:
            if not future.done():
                future.cancel()
