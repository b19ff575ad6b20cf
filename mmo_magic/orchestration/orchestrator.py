"""The Orchestrator: the one object users call, sync or async, on one background loop.

This is the façade: construction, the catalogue and the default model, and
the methods users call. The work of one call is the call engine's
(``engine``); races, fan-outs and judges are ``parallel``'s, pipelines
``pipeline``'s, and streams ``streams``'.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from ..core.catalogue import DEFAULT_MODEL_PREFERENCE
from ..core.completion import CompletionResponse, Prompt
from ..core.errors import ConfigError, UnknownModelError
from ..core.loop import background_loop
from ..core.models import Catalogue, ModelConfig
from ..storage.cache import ResponseCache
from ..storage.runlog import RunLog
from .budget import Budget
from .calls import (
    CallContext,
    CallOptions,
    ModelText,
    OnFinish,
    OnText,
    build_request,
    check_options,
    checked_values,
    model_names,
)
from .engine import AUTO, DEFAULT_CONCURRENCY_PER_PROVIDER, SESSION_ID, CallEngine
from .reliability import CircuitBreaker, RetryPolicy
from .streams import AsyncCompletionStream, CompletionStream, Start

if TYPE_CHECKING:
    from ..core.embeddings import EmbeddingResponse
    from ..evaluation.progress import BatchProgress
    from ..evaluation.result import BatchResult
    from ..evaluation.spec import BatchContext
    from ..routing import RouteDecision, Router
    from .judges import OnJudge
    from .parallel import ConsensusResult, RaceResult, Strategy
    from .pipeline import Pipeline, PipelineResult, PipelineStep

__all__ = ["AUTO", "AsyncCompletionStream", "CompletionStream", "Orchestrator"]

# A named router is typed after "auto:" and -r: one word (as mmo.toml's [routing.learned.NAME]).
_ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Orchestrator:
    """Calls models by name and records every call in ``runs``.

    Every sync method has an ``a``-prefixed async twin; both run the work on
    the one background event loop (see ``mmo_magic.core.loop``).
    """

    def __init__(
        self,
        models: Iterable[ModelConfig] | Catalogue | None = None,
        default_model: str | None = None,
        *,
        runlog: RunLog | str | os.PathLike[str] | None = None,
        cache: ResponseCache | str | os.PathLike[str] | bool | None = None,
        budget: float | None = None,
        allow_unpriced: bool = False,
        default_route: str = "complexity",
        task_models: dict[str, list[str]] | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_concurrency_per_provider: int = DEFAULT_CONCURRENCY_PER_PROVIDER,
        provider_concurrency: Mapping[str, int] | None = None,
    ) -> None:
        """``cache``: True (the default file), False, a path or a ResponseCache; None (the
        default) follows ``MMO_CACHE`` and is off when it is unset: a re-run calls the model.
        ``budget``: USD this orchestrator may spend (None: unlimited)."""
        catalogue = _catalogue_of(models)
        if default_model is not None:
            catalogue.resolve(default_model)  # fail now, not at the first call
        check_fallbacks(catalogue)
        limits = {"max_concurrency_per_provider": max_concurrency_per_provider}
        limits |= {
            f"provider_concurrency[{p!r}]": n for p, n in (provider_concurrency or {}).items()
        }
        for name, limit in limits.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                # 0 would make every call wait for a slot forever.
                raise ConfigError(f"{name} must be a whole number >= 1, got {limit!r}.")
        if not isinstance(runlog, RunLog | str | os.PathLike | None):
            raise ConfigError(
                f"runlog must be a file path, ':memory:' or a RunLog, got {type(runlog).__name__}."
            )
        self._default_model = default_model
        self.default_route = default_route
        self.task_models = task_models
        self._routers: dict[str, Router] = {}  # built-in routers made on first use
        self._named_routers: dict[str, Router] = {}  # add_router's, kept across model changes
        self._loop = background_loop
        self._engine = CallEngine(
            catalogue,
            runs=runlog if isinstance(runlog, RunLog) else RunLog(runlog),
            cache=_make_cache(cache),
            budget=Budget(budget),  # checks the limit
            allow_unpriced=allow_unpriced,
            retry_policy=retry_policy or RetryPolicy(),
            breaker=breaker or CircuitBreaker(),
            max_concurrency_per_provider=max_concurrency_per_provider,
            provider_concurrency=dict(provider_concurrency or {}),
            router=self._router,
            default_model=lambda: self.default_model,
            loop=self._loop,
        )

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
        kwargs.setdefault("cache", settings.cache)  # None: MMO_CACHE decides, else off
        kwargs.setdefault("budget", settings.budget)
        if settings.route is not None:
            kwargs.setdefault("default_route", settings.route)
        kwargs.setdefault("task_models", settings.task_models or None)
        # [breaker] in mmo.toml: CircuitBreaker's arguments (threshold, cooldown_s, ...).
        if breaker := settings.breaker:
            kwargs.setdefault("breaker", CircuitBreaker(**breaker))
        # [concurrency] in mmo.toml: default = calls in flight per provider; PROVIDER = N.
        concurrency = dict(settings.concurrency)
        if "default" in concurrency:
            kwargs.setdefault("max_concurrency_per_provider", concurrency.pop("default"))
        if concurrency:
            kwargs.setdefault("provider_concurrency", concurrency)
        orc = cls(catalogue, default, **kwargs)
        # [routing.learned.NAME] path = ...: named learned routers, loaded (and their models
        # checked against the catalogue) now, so a bad file fails here, not at a call.
        for name, router_path in settings.learned_routers.items():
            from ..routing.learned import load_router

            try:
                orc.add_router(name, load_router(router_path))
            except ConfigError as exc:
                orc.close()
                raise ConfigError(
                    f"{source}: [routing.learned.{name}]: {exc.message}", hint=exc.hint
                ) from exc
        return orc

    @property
    def session_id(self) -> str:
        """Identifies this Python process in the run log (which outlives it)."""
        return SESSION_ID

    # -- what the call engine keeps -------------------------------------------

    @property
    def catalogue(self) -> Catalogue:
        """The models this orchestrator can call, by name and alias."""
        return self._engine.catalogue

    @property
    def runs(self) -> RunLog:
        """Every call made through this orchestrator, failures included."""
        return self._engine.runs

    @property
    def budget(self) -> Budget:
        """What this orchestrator may spend (``budget.limit``) and has spent."""
        return self._engine.budget

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache; None when it is off."""
        return self._engine.cache

    @cache.setter
    def cache(self, cache: ResponseCache | None) -> None:
        self._engine.cache = cache

    @property
    def allow_unpriced(self) -> bool:
        """Whether calls may go to unpriced models under a budget (per call: ``allow_unpriced``)."""
        return self._engine.allow_unpriced

    @allow_unpriced.setter
    def allow_unpriced(self, allow: bool) -> None:
        self._engine.allow_unpriced = allow

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._engine.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._engine.retry_policy = policy

    @property
    def breaker(self) -> CircuitBreaker:
        return self._engine.breaker

    @breaker.setter
    def breaker(self, breaker: CircuitBreaker) -> None:
        self._engine.breaker = breaker

    @property
    def max_concurrency_per_provider(self) -> int:
        return self._engine.max_concurrency_per_provider

    # -- models ---------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The configured default, else the first preferred model that is available."""
        if self._default_model:
            return self._default_model
        for name in DEFAULT_MODEL_PREFERENCE:
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
        """Add ``model``, replacing one of the same name.

        Its fallbacks may name models added after it, so they are checked at its first call.
        """
        self.catalogue.add(model)
        self._engine.forget_client(model.name)
        self._routers.clear()

    # -- completing -----------------------------------------------------------

    def complete(
        self,
        prompt: Prompt,
        model: str | None = None,
        *,
        route: str | Router | None = None,
        on_text: OnText | None = None,
        **options: Unpack[CallOptions],
    ) -> CompletionResponse:
        """The whole answer of ``model`` (default: ``default_model``) to ``prompt``.

        ``model="auto"`` (or ``route=...``) lets a router choose: "complexity",
        "task", "cost", "rules", or a Router. Options: ``system``,
        ``temperature``, ``max_tokens``, ``fallbacks`` (replaces the model's
        fallback chain for this call), ``budget`` (USD for this call),
        ``allow_unpriced``, ``cache`` (False to skip the response cache).
        ``on_text`` is called with each text delta as it arrives, on the loop
        thread. Raises an MMOError on failure; the failed attempt is still in
        ``runs``.
        """
        return self._loop.run(
            self.acomplete(prompt, model, route=route, on_text=on_text, **options)
        )

    async def acomplete(
        self,
        prompt: Prompt,
        model: str | None = None,
        *,
        route: str | Router | None = None,
        on_text: OnText | None = None,
        **options: Unpack[CallOptions],
    ) -> CompletionResponse:
        """Async twin of ``complete``."""
        check_options(options, also=("route", "on_text"))
        context = CallContext(on_text=on_text)
        return await self._engine.complete(prompt, model, options, context, route=route)

    # -- embeddings (issue 25) -------------------------------------------------

    def embed(
        self,
        texts: str | Sequence[str],
        model: str | None = None,
        *,
        batch_size: int = 128,
        budget: float | None = None,
        allow_unpriced: bool | None = None,
    ) -> EmbeddingResponse:
        """Vectors for ``texts`` (a numpy array, one row per text, in ``.vectors``), with
        usage and cost; each batch request is recorded in ``runs`` (kind "embed").

        ``model``: an embedding model (text-embedding-3-small/-large, smollm2-embed offline)
        or any OpenAI-compatible, local or simulated model of this orchestrator; None: the
        first available of text-embedding-3-small and smollm2-embed. Texts go in batches of
        ``batch_size``, sent at once within the model's concurrency limits.
        """
        return self._loop.run(self.aembed(texts, model, batch_size=batch_size, budget=budget,
                                          allow_unpriced=allow_unpriced))  # fmt: skip

    async def aembed(
        self,
        texts: str | Sequence[str],
        model: str | None = None,
        *,
        batch_size: int = 128,
        budget: float | None = None,
        allow_unpriced: bool | None = None,
    ) -> EmbeddingResponse:
        """Async twin of ``embed``."""
        from ..core.embeddings import embedding_texts
        from ..core.errors import MMOError
        from .budget import check_usd
        from .embedding import embed, embedding_model

        try:
            items = embedding_texts(texts)
            check_usd(budget)
            config = embedding_model(self.catalogue, model)
        except MMOError as exc:  # a refused call is still a recorded one
            first = texts if isinstance(texts, str) else ""
            await self._engine._refused(first, model, CallContext(kind="embed"), exc)
            raise
        run = embed(self._engine, config, items, batch_size=batch_size, budget=budget,
                    allow_unpriced=allow_unpriced)  # fmt: skip
        return await self._engine.loop.arun(run)

    def stream(
        self,
        prompt: Prompt,
        model: str | None = None,
        *,
        route: str | Router | None = None,
        **options: Unpack[CallOptions],
    ) -> CompletionStream:
        """Iterate over the answer's text as it arrives; ``.response`` holds the rest at the end.

        Failures before the first text are retried and fail over as in
        ``complete``; a failure after text has been yielded is raised, since
        a retry would repeat text the caller already has.
        """
        return CompletionStream(self._start(prompt, model, route, options), self._loop)

    def astream(
        self,
        prompt: Prompt,
        model: str | None = None,
        *,
        route: str | Router | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncCompletionStream:
        """Async twin of ``stream``: ``async for text in orc.astream(...)``."""
        return AsyncCompletionStream(self._start(prompt, model, route, options))

    def _start(
        self, prompt: Prompt, model: str | None, route: str | Router | None, options: CallOptions
    ) -> Start:
        check_options(options, also=("route",))
        return functools.partial(self._engine.complete, prompt, model, options, route=route)

    # -- several models -------------------------------------------------------

    def race(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        hedge_ms: float | None = None,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> RaceResult:
        """First successful answer wins; see ``orchestration.parallel.race`` (``hedge_ms``).

        ``on_text(model, delta)``, ``on_thinking(model, delta)`` (a reasoning model's
        thinking, "" for a sign of life) and ``on_result(response)`` (each attempt's
        outcome) let a live view follow the race, on the loop thread.
        """
        return self._loop.run(
            self.arace(
                prompt, models, hedge_ms=hedge_ms, on_text=on_text, on_result=on_result,
                on_thinking=on_thinking, **options,
            )
        )  # fmt: skip

    async def arace(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        hedge_ms: float | None = None,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> RaceResult:
        from .parallel import race

        check_options(options, also=("hedge_ms", "on_text", "on_result", "on_thinking"))
        return await self._loop.arun(
            race(
                self._engine.complete, prompt, models, hedge_ms=hedge_ms, on_text=on_text,
                on_result=on_result, on_thinking=on_thinking, settle=self._records_committed,
                **options,
            )
        )  # fmt: skip

    async def _records_committed(self) -> None:
        """Wait until every record added so far is committed (a race's cancelled losers)."""
        await asyncio.to_thread(self.runs.flush)

    def all(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> list[CompletionResponse]:
        """Every model's answer, in order, failures included (status "error").

        The responses share one ``group_id``; ``on_text`` and ``on_result`` as for ``race``.
        """
        return self._loop.run(
            self.aall(
                prompt, models, on_text=on_text, on_result=on_result, on_thinking=on_thinking,
                **options,
            )
        )  # fmt: skip

    async def aall(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> list[CompletionResponse]:
        from .parallel import all_models

        check_options(options, also=("on_text", "on_result", "on_thinking"))
        return await self._loop.arun(
            all_models(
                self._engine.complete, prompt, models, on_text=on_text, on_result=on_result,
                on_thinking=on_thinking, **options,
            )
        )  # fmt: skip

    def consensus(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        judges: Sequence[str] = (),
        strategy: Strategy = "judge",
        swap: bool = True,
        panel: str = "majority",
        criteria: str | None = None,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_judge: OnJudge | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> ConsensusResult:
        """Ask every model and pick one answer: ``judges=[...]``, ``strategy="judge"`` etc.

        See ``orchestration.parallel.consensus``; ``on_text`` and ``on_result`` as for ``race``;
        ``on_judge(event)`` follows each judge call (queued, pending, voted or failed).
        """
        return self._loop.run(
            self.aconsensus(
                prompt, models, judges=judges, strategy=strategy, swap=swap, panel=panel,
                criteria=criteria, on_text=on_text, on_result=on_result, on_judge=on_judge,
                on_thinking=on_thinking, **options,
            )
        )  # fmt: skip

    async def aconsensus(
        self,
        prompt: Prompt,
        models: Sequence[str],
        *,
        judges: Sequence[str] = (),
        strategy: Strategy = "judge",
        swap: bool = True,
        panel: str = "majority",
        criteria: str | None = None,
        on_text: ModelText | None = None,
        on_result: OnFinish | None = None,
        on_judge: OnJudge | None = None,
        on_thinking: ModelText | None = None,
        **options: Unpack[CallOptions],
    ) -> ConsensusResult:
        from .parallel import consensus

        own = ("judges", "strategy", "swap", "panel", "criteria", "on_text", "on_result")
        check_options(options, also=(*own, "on_judge", "on_thinking"))
        self._check_judges(judges)  # before the candidates are paid for
        return await self._loop.arun(
            consensus(
                self._engine.complete, prompt, models, judges=judges, strategy=strategy,
                swap=swap, panel=panel, criteria=criteria, on_text=on_text, on_result=on_result,
                on_judge=on_judge, on_thinking=on_thinking, **options,
            )
        )  # fmt: skip

    def _check_judges(self, judges: Sequence[str]) -> None:
        """Every judge is a model of the catalogue that can be called now (or has fallbacks)."""
        for name in model_names(judges, "judges", allow_empty=True):
            try:
                judge = self.catalogue.resolve(name)
            except UnknownModelError as exc:
                raise UnknownModelError(
                    name, self.catalogue.names(), where="in judges (nothing was sent)"
                ) from exc
            reason = judge.unavailable_reason
            if reason is not None and not judge.fallbacks:
                raise ConfigError(
                    f"Judge {name!r} is unavailable ({reason}); nothing was sent.",
                    hint="Make it available, or pick another judge.",
                )

    # -- routing --------------------------------------------------------------

    def route(
        self, prompt: Prompt, route: str | Router | None = None, **options: Unpack[CallOptions]
    ) -> RouteDecision:
        """Which model ``route`` would choose for ``prompt``, and why. Calls no model."""
        check_options(options)
        options = checked_values(options)
        request = build_request(prompt, options.get("system"), None, options.get("max_tokens"))
        return self._router(route).route(request, self.catalogue)

    @property
    def routers(self) -> dict[str, Router]:
        """The named routers ``add_router`` (or mmo.toml's ``[routing.learned.NAME]``) added."""
        return dict(self._named_routers)

    def add_router(self, name: str, router: Router | str | os.PathLike[str]) -> None:
        """Make ``router`` usable by ``name``: ``route=name``, ``%%mmo auto -r name``,
        ``%mmo_route -r name`` and the gateway's ``model="auto:name"``.

        ``router`` is a Router (a ``LearnedRouter`` from ``lr.at(...)``, say) or the path of
        a file ``router.save`` wrote. A learned router's models must be in the catalogue.
        The name may not be a built-in router's; adding a name again replaces its router.
        """
        from ..routing import ROUTERS, Router
        from ..routing.learned import LearnedRouter, load_router

        if not isinstance(name, str) or not _ROUTER_NAME.fullmatch(name):
            raise ConfigError(
                f"Router name {name!r} is not a name.",
                hint="Use letters, digits, '_', '-' or '.' (it is typed after 'auto:' and -r).",
            )
        if name.lower() in ROUTERS:
            raise ConfigError(
                f"{name!r} is a built-in router's name.",
                hint=f"Pick another name; built-in routers: {', '.join(ROUTERS)}.",
            )
        if isinstance(router, str | os.PathLike):
            router = load_router(Path(router))
        if not isinstance(router, Router):
            raise ConfigError(
                f"add_router takes a Router or a router file's path, got {type(router).__name__}."
            )
        if isinstance(router, LearnedRouter):
            missing = [m for m in router.models if not _in_catalogue(self.catalogue, m)]
            if missing:
                raise ConfigError(
                    f"Router {name!r} was learned on {', '.join(missing)}, "
                    f"which {'is' if len(missing) == 1 else 'are'} not in the catalogue.",
                    hint="Add them under the same names (mmo.toml or add_model), "
                    "or learn a router on the models you have.",
                )
        self._named_routers[name] = router

    def _router(self, route: str | Router | None) -> Router:
        from ..routing import ROUTERS, Router, make_router

        if isinstance(route, Router):
            return route
        name = route or self.default_route
        named = self._named_routers.get(name)
        if named is not None:
            return named
        router = self._routers.get(name)
        if router is None:
            if name.strip().lower() not in ROUTERS:
                known = [*ROUTERS, *self._named_routers]
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
                hint = f"Did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"Unknown router {name!r}.",
                    hint=f"{hint}Routers: {', '.join(known)} (add_router adds one by name).",
                )
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
        """Run ``pipeline`` with template ``variables``; see ``orchestration.pipeline``."""
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

        return await self._loop.arun(
            run_pipeline(pipeline, variables, self._engine.complete, on_step)
        )

    # -- batches --------------------------------------------------------------
    # The one place orchestration/ knows about evaluation/ (a declared exception in the
    # import contracts): these methods hand the evaluation layer the engine's part it runs on.

    def batch(
        self,
        data: Any,
        models: Sequence[str] | None = None,
        prompt: str | None = None,
        *,
        progress: BatchProgress | bool | None = None,
        **options: Any,
    ) -> BatchResult:
        """Every model on every item of ``data``, judged if asked, resumable; a BatchResult.

        ``data`` is the items (a DataFrame, a list of dicts or a file path) with
        ``models``, ``prompt`` (default ``"{question}"``) and the options of
        ``mmo_magic.evaluation.BatchSpec`` (judges, judge_mode, system,
        reference_column, concurrency, limits, budget, rerun, key, ...), or a
        ``BatchSpec`` alone. ``engine="ray"`` spreads the calls over Ray workers
        (``ray_address``, ``workers``). ``progress``: a view, False for none, None for
        the registered default.
        """
        from ..evaluation.batch import run_batch

        return run_batch(self, data, models, prompt, progress=progress, **options)

    async def abatch(
        self,
        data: Any,
        models: Sequence[str] | None = None,
        prompt: str | None = None,
        *,
        progress: BatchProgress | bool | None = None,
        **options: Any,
    ) -> BatchResult:
        """Async twin of ``batch``; cancelling it stops the batch (answers so far are kept)."""
        from ..evaluation.batch import arun_batch

        return await arun_batch(self, data, models, prompt, progress=progress, **options)

    def estimate_batch(
        self, data: Any, models: Sequence[str] | None = None, prompt: str | None = None,
        **options: Any,
    ) -> dict[str, float | None]:  # fmt: skip
        """The worst-case USD per model (and ``"judge <name>"``) of what ``batch`` with the
        same arguments would send now; None: an unpriced model. Sends nothing."""
        from ..evaluation.batch import estimate_batch

        return estimate_batch(self, data, models, prompt, **options)

    def batch_context(self) -> BatchContext:
        """The call engine's part a batch runs on (for ``mmo_magic.evaluation``)."""
        from ..evaluation.spec import BatchContext

        return BatchContext.of(self._engine, self._loop)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close every client's connections and the run log."""
        self._engine.close_clients()
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


def _catalogue_of(models: object) -> Catalogue:
    """The catalogue ``Orchestrator(models)`` means; one ConfigError line for anything else."""
    if models is None:
        from ..core.catalogue import builtin_models

        return Catalogue.of(builtin_models())
    if isinstance(models, Catalogue):
        return models
    if isinstance(models, str | bytes | Mapping) or not isinstance(models, Iterable):
        raise ConfigError(
            f"models must be a list of ModelConfig objects or a Catalogue, got {models!r}.",
            hint=(
                f"For the built-in models with a default: Orchestrator(default_model={models!r})."
                if isinstance(models, str)
                else "For example models=[mmo.ModelConfig('openai', 'gpt-4o-mini')]."
            ),
        )
    listed = list(models)
    for i, model in enumerate(listed):
        if not isinstance(model, ModelConfig):
            raise ConfigError(
                f"models[{i}] is {model!r}, not a ModelConfig.",
                hint="Give mmo.ModelConfig(provider, model_id, ...) objects; a model the "
                "catalogue has already is called by name, it needs no entry.",
            )
    return Catalogue.of(listed)  # empty is allowed: models may be added later


def _in_catalogue(catalogue: Catalogue, name: str) -> bool:
    try:
        catalogue.resolve(name)
    except UnknownModelError:
        return False
    return True


def check_fallbacks(catalogue: Catalogue) -> None:
    """Refuse a configured fallback that names no model, now rather than at every call."""
    for model in catalogue:
        for name in model.fallbacks:
            if name != model.name and name not in catalogue:
                try:
                    catalogue.resolve(name)  # a case variant or a sim model with options
                except UnknownModelError as exc:
                    raise UnknownModelError(
                        name, catalogue.names(), where=f"in the fallbacks of model {model.name!r}"
                    ) from exc


def _make_cache(
    cache: ResponseCache | str | os.PathLike[str] | bool | None,
) -> ResponseCache | None:
    """The cache to use: off unless asked for (the argument, else ``MMO_CACHE``).

    ``MMO_CACHE=off`` turns off even a cache asked for by path or ``True``.
    """
    from ..core.config import cache_from_env

    if isinstance(cache, ResponseCache):
        return cache
    if cache is not None and not isinstance(cache, bool | str | os.PathLike):
        raise ConfigError(
            f"cache must be True, False, a file path or a ResponseCache, got {cache!r}."
        )
    env = cache_from_env()
    setting = env if cache is None or env is False else cache
    if setting is None or setting is False:
        return None
    return ResponseCache(None if setting is True else setting)
