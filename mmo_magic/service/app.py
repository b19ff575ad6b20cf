"""The orchestration service: an HTTP API over an Orchestrator (``pip install mmo_magic[server]``).

Endpoints::

    POST /v1/complete           the mmo API: one model, a router, or several models at once
                                (parallel, race, consensus)
    POST /v1/chat/completions   OpenAI-compatible, streaming included: any OpenAI client works
    POST /v1/responses          OpenAI's Responses API (``responses``)
    POST /v1/messages           Anthropic's Messages API, for any model (``messages``)
    POST /v1/completions        legacy text completions, mapped to chat (``legacy``)
    POST /v1/embeddings         OpenAI embeddings (``embeddings``)
    GET  /v1/models             OpenAI's model list; each entry carries our catalogue fields
    GET  /v1/models/{name}      one entry of that list
    /v1/keys, /v1/spend         the admin API: client keys and spend (``admin``)
    GET  /metrics               Prometheus metrics (``metrics``)
    GET  /health                liveness (HEAD too); needs no key

Every call goes through the Orchestrator, so routers, retries, fallbacks,
budgets and the run log work as they do in a notebook; the service's calls
are recorded with ``step="service"``. A ``model`` may be a name, an alias,
``auto`` (the default router) or ``auto:ROUTER`` (``auto:task``, ``auto:cost``...).
OpenAI's ``stop``, ``seed``, ``top_p``, penalties, ``logit_bias`` and ``user`` reach
the model under its provider's names, or get a 400 from a provider that lacks one;
``response_format`` (json_schema, json_object) reaches every provider in its own form, and
so do ``tools``, ``tool_choice`` and ``parallel_tool_calls`` (answers carry
``message.tool_calls``, streamed as ``delta.tool_calls``; ``tool`` messages and assistant
messages with tool calls are accepted); a model without tool calling refuses tools with a
400. ``n`` > 1 makes n calls. Parameters not supported (``logprobs``...) and unknown
fields get a 400 naming them: a parameter is never accepted and dropped.

Security (``auth``): a bearer key, or loopback clients naming a loopback
host only (``allowed_hosts`` adds hosts). ``max_tokens`` over
``max_tokens_cap`` gets 400, CORS is off unless origins are configured.
Errors (``errors``) have OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, and never carry a traceback, an API key or an
upstream's address (``scrub``). Shutdown (``shutdown``) lets calls in flight
finish within the grace, then ends the rest in a way a client can tell.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import __version__
from ..core.completion import CompletionRequest, CompletionResponse
from ..core.config import ServerSettings
from ..core.errors import InvalidRequestError, UnknownModelError
from ..core.redaction import register_secret
from ..orchestration.engine import recorded_as
from ..orchestration.orchestrator import AUTO, Orchestrator
from ..routing import ROUTERS, task_router
from ..storage.keys import KeyStore
from ..storage.runlog import new_id
from .admin import add_admin_routes
from .auth import Gate, client_keys, declare_security
from .bodies import json_response
from .clients import Clients, client_of
from .costs import sum_or_none, worst_case
from .deployments import Deployments
from .disconnect import unless_disconnected
from .embeddings import EmbeddingsRequest, embedding_texts, embeddings_object
from .errors import error_response, install_error_handlers
from .legacy import LegacyRequest, LegacyWire, legacy_object
from .legacy import request_options as legacy_options
from .messages import AnthropicErrors, MessagesRequest, MessagesWire, message_object
from .messages import request_options as messages_options
from .metrics import PATH as METRICS_PATH
from .metrics import Metrics
from .responses import ResponsesRequest, ResponsesWire, request_options, response_object
from .schemas import (
    ERROR_RESPONSES,
    UNSUPPORTED,
    ChatCompletionOut,
    ChatMessage,
    ChatMessageOut,
    ChatRequest,
    ChoiceOut,
    CompleteRequest,
    CompletionOut,
    ManyOut,
    ModelOut,
    ModelsOut,
    VotesOut,
    completion_out,
    details_out,
    finish_reason,
    summed_usage,
    tool_calls_out,
)
from .scrub import Scrubber
from .shutdown import Drain
from .streaming import ChatWire, start_stream

__all__ = ["create_app"]

STEP = "service"  # RunRecord.step of every call the service makes
_PART_TYPES = frozenset({"image_url", "file"})  # content parts besides text (core.parts)
EMBEDDED = "embedded"  # the provider of models run inside this process (llama.cpp)
DEPLOYED = "deployments"  # request state: the deployments a request was sent to


class _PerRequest:
    """ASGI middleware, one layer for what every request needs around it:

    - every call it makes is recorded with ``step=STEP`` (a context variable, so the
      label follows its calls onto the orchestrator's loop, streams and fan-outs
      included);
    - its deployments (``deployments``) stay counted in flight, and its budget holds
      (``clients``) held, until its response is sent, a stream's last event included.
    """

    def __init__(self, app: ASGIApp, app_state: Any) -> None:
        self.app = app
        self.app_state = app_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with recorded_as(STEP):
                await self.app(scope, receive, send)
        finally:
            deployments = getattr(self.app_state, "deployments", None)
            for chosen in scope.get("state", {}).get(DEPLOYED, ()):
                if deployments is not None:
                    deployments.finished(chosen)
            clients = getattr(self.app_state, "clients", None)
            if clients is not None:
                clients.release(scope)  # the request's budget holds, its answers charged


# -- the app -------------------------------------------------------------------------------------


def create_app(
    orchestrator: Orchestrator | None = None,
    *,
    keys: Sequence[str] | None = None,
    settings: ServerSettings | None = None,
    store: KeyStore | None = None,
) -> FastAPI:
    """The service over ``orchestrator`` (default: ``Orchestrator.from_config()``, closed
    on shutdown).

    ``keys``: the client keys; None reads ``MMO_SERVER_KEYS`` and ``settings.keys_env``.
    With no keys only loopback clients naming a loopback host (or one of
    ``settings.allowed_hosts``) are served. ``settings``: body limit,
    max_tokens cap, allowed hosts and CORS origins (``[server]`` in mmo.toml).

    ``app.state.drain`` (``shutdown.Drain``) is the shutdown state: a server
    calls ``drain.begin(grace_s)`` when it starts stopping (``mmo-serve`` does).
    """
    settings = settings or ServerSettings()
    owned = orchestrator is None
    orc = orchestrator if orchestrator is not None else Orchestrator.from_config()
    accepted = tuple(keys) if keys is not None else client_keys(settings)
    for key in accepted:  # MMO_SERVER_KEYS holds several: redact each, not just the list
        register_secret(key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            await asyncio.to_thread(orc.close)

    app = FastAPI(
        title="mmo_magic",
        version=__version__,
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        lifespan=lifespan,
        docs_url=None,  # the docs page loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    drain = Drain()
    scrub = Scrubber(orc.models)
    app.state.orchestrator = orc
    app.state.drain = drain
    install_error_handlers(app, scrub)
    app.add_middleware(_PerRequest, app_state=app.state)
    app.add_middleware(
        Gate, keys=accepted, max_body_bytes=settings.max_body_bytes, store=store,
        public=(METRICS_PATH,) if settings.metrics == "public" else (),
        allowed_hosts=settings.allowed_hosts, drain=drain,
    )  # fmt: skip
    app.add_middleware(AnthropicErrors)  # outside the gate: its refusals are reshaped too
    if settings.cors_origins:  # added last, so outermost: preflights need no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],  # SDKs in browsers send headers of their own
        )
    declare_security(app, bool(accepted) or store is not None)
    clients = Clients(store)
    app.state.clients = clients
    metrics = Metrics(orc) if settings.metrics != "off" else None
    if metrics is not None:
        app.add_middleware(metrics.middleware)

        @app.get(METRICS_PATH, include_in_schema=False)
        async def scrape(request: Request) -> Response:
            if settings.metrics == "admin" and not clients.is_admin(request):
                return error_response(
                    403, "Metrics are for administrators' keys ([server] metrics).",
                    "permission_error", code="admin_only",
                )  # fmt: skip
            body, kind = metrics.render()
            return Response(body, media_type=kind)

    add_admin_routes(app, clients)

    def served(name: str) -> bool:
        """Whether this server serves ``name`` (a model, an alias or a router)."""
        deployments = app.state.deployments
        if _target(name)[0] == AUTO or (deployments is not None and name in deployments):
            canonical = name.lower() if _target(name)[0] == AUTO else name
            if settings.models is None:
                return True
        else:
            try:
                model = orc.catalogue.resolve(name)
            except UnknownModelError:
                return True  # unknown: the call's own 404, with suggestions
            if settings.models is None:
                # The embedded model loads llama.cpp into the gateway: served only if listed.
                return model.provider != EMBEDDED
            canonical = model.name
        globs = settings.models
        return any(fnmatch.fnmatchcase(n, g) for g in globs for n in (name, canonical)) or (
            canonical == AUTO and "auto:*" in globs
        )

    app.state.deployments = Deployments(orc, settings.deployments) if settings.deployments else None

    def reload_server(new: ServerSettings) -> None:
        """Take ``new``'s models allowlist, deployments and max_tokens cap (SIGHUP); the
        rest of [server] (address, keys variable, body limit, metrics) needs a restart."""
        old = app.state.deployments
        deployments = Deployments(orc, new.deployments) if new.deployments else None
        if deployments is not None and old is not None:
            deployments.in_flight = old.in_flight  # requests under way finish counted
        settings.models, settings.deployments = new.models, new.deployments
        settings.max_tokens_cap = new.max_tokens_cap
        app.state.deployments = deployments

    app.state.reload_server = reload_server

    def entries() -> list[ModelOut]:
        """Every model and router, and each name with several deployments."""
        found = _model_entries(orc)
        deployments = app.state.deployments
        if deployments is not None:
            by_name = {e.id: e for e in found}
            for name, members in deployments.table.items():
                first = by_name[members[0]]
                found.append(first.model_copy(update={
                    "id": name, "aliases": [], "model_id": None,
                    "available": any(by_name[m].available for m in members),
                    "description": f"{len(members)} deployments: {', '.join(members)}",
                }))  # fmt: skip
        return found

    def target(request: Request, name: str) -> tuple[str, str | None, dict[str, Any]]:
        """(model, router, options) for a ``model`` field; a name with several deployments
        becomes the least busy one, the others its fallbacks (counted until the response
        is sent, streams included: ``_PerRequest``)."""
        model, route = _target(name)
        deployments = app.state.deployments
        if deployments is None or model not in deployments:
            return model, route, {"allowed_models": reachable(request, name)}
        chosen, fallbacks = deployments.choose(model)
        deployments.started(chosen)
        request.scope.setdefault("state", {}).setdefault(DEPLOYED, []).append(chosen)
        allowed = reachable(request, name, (chosen, *fallbacks))
        return chosen, route, {"fallbacks": fallbacks, "allowed_models": allowed}

    def reachable(request: Request, name: str, also: Sequence[str] = ()) -> Callable[[str], bool]:
        """What a call for ``name`` may reach besides it (a router's choice, fallbacks): the
        models this server serves and the request's key allows, and ``also`` (a name's
        deployments). A route with none of them is the 404 of a model outside the key's
        allowlist, naming only what the key may use."""
        key = client_of(request)
        extra = frozenset(also)

        def allowed(model: str) -> bool:
            return model in extra or (served(model) and (key is None or key.allows(model)))

        if _target(name)[0] == AUTO and not any(
            allowed(m.name) for m in orc.catalogue if not m.embedding
        ):
            raise UnknownModelError(name, [k for k in known() if key is None or key.allows(k)])
        return allowed

    def known() -> list[str]:
        return [e.id for e in entries() if served(e.id)]

    def admit(
        request: Request, *models: str, messages: Any = (), max_tokens: int | None = None,
        n: int = 1,
    ) -> None:  # fmt: skip
        def cost() -> float | None:
            deployed = app.state.deployments.table if app.state.deployments else {}
            total = sum_or_none(
                worst_case(orc, served, deployed, m, messages, max_tokens) for m in models
            )
            return None if total is None else n * total

        clients.admit(request, models, known, served, cost)

    def answered(request: Request, answers: Sequence[CompletionResponse | None]) -> None:
        """Charge the answers to the request's key, and count them."""
        clients.charge(request, answers)
        if metrics is not None:
            metrics.observe(answers)

    def charged(request: Request) -> Callable[[CompletionResponse | None], None]:
        return lambda r: answered(request, [r])

    @app.get("/health", responses=ERROR_RESPONSES)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # HEAD: GET's status and headers, no body (load balancers and uptime checks use it).
    app.head("/health", include_in_schema=False)(health)

    @app.get("/v1/models", response_model=ModelsOut, responses=ERROR_RESPONSES)
    async def list_models(request: Request) -> ModelsOut:
        found = [e for e in entries() if served(e.id)]
        allowed = clients.visible(request, [e.id for e in found])
        return ModelsOut(data=[e for e in found if e.id in allowed])

    @app.get("/v1/models/{name:path}", response_model=ModelOut, responses=ERROR_RESPONSES)
    async def get_model(name: str, request: Request) -> ModelOut:
        admit(request, name)  # a model outside the key's allowlist is unknown to it
        by_id = {e.id: e for e in entries()}
        if name not in by_id:
            name = orc.catalogue.resolve(name).name  # an alias; unknown names get a 404
        return by_id[name]

    @app.post("/v1/complete", response_model=CompletionOut | ManyOut, responses=ERROR_RESPONSES)
    async def complete(body: CompleteRequest, request: Request) -> Response:
        await _check_unicode(request)  # a lone surrogate is a 400 naming its place, as for chat
        _check_cap(body.max_tokens, settings.max_tokens_cap)
        options: dict[str, Any] = {
            "system": body.system, "temperature": body.temperature, "max_tokens": body.max_tokens,
        }  # fmt: skip
        routing = body.routing or (
            "task_type" if body.task_type else "specific" if body.model else "auto"
        )
        if routing in ("parallel", "race", "consensus"):
            admit(
            request, *(body.models or ()), *(body.judges or ()), messages=body.prompt,
            max_tokens=body.max_tokens,
        )  # fmt: skip
            options["allowed_models"] = reachable(request, "")  # the models' fallbacks
            many, answers = await unless_disconnected(
                request, _many(orc, body, routing, options, scrub)
            )
            answered(request, answers)  # judges' calls are not charged (README)
            return json_response(many)
        if body.models:
            raise InvalidRequestError(
                f"models is for routing='parallel', 'race' or 'consensus', not {routing!r}.",
                hint="Use model for one model.",
            )
        model, route = _single(orc, body, routing)
        named = body.model or (f"{AUTO}:{route}" if isinstance(route, str) else AUTO)
        admit(request, named, messages=body.prompt, max_tokens=body.max_tokens)
        options["allowed_models"] = reachable(request, named)
        call = orc.acomplete(body.prompt, model, route=route, **options)
        answer = await unless_disconnected(request, call)
        answered(request, [answer])
        return json_response(completion_out(answer, scrub))

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionOut,
        responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
    )
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        max_tokens = body.max_completion_tokens or body.max_tokens
        _check_cap(max_tokens, settings.max_tokens_cap)
        if (refused := _unsupported(body)) is not None:
            return refused
        await _check_unicode(request)
        messages = _messages(body.messages)
        admit(request, body.model, messages=messages, max_tokens=max_tokens, n=body.n or 1)
        model, route, deployed = target(request, body.model)
        options: dict[str, Any] = {
            "route": route, "temperature": body.temperature, "max_tokens": max_tokens,
            **deployed,
        }  # fmt: skip
        # stop, seed, top_p, the penalties, logit_bias, user: each reaches the model, mapped
        # to its provider's names, or the provider refuses it (a 400): never dropped.
        for name in CompletionRequest.SAMPLING:
            if (value := getattr(body, name)) is not None:
                options[name] = value
        # Structured output: each model gets it in its provider's form (see core.structured).
        if body.response_format is not None and body.response_format.get("type") != "text":
            options["response_format"] = body.response_format
        # Tool calling, in OpenAI's form: the core reads it as given.
        if body.tools:
            options["tools"] = [t.model_dump(exclude_none=True) for t in body.tools]
        if body.tool_choice is not None:
            choice = body.tool_choice
            options["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
        if body.parallel_tool_calls is not None and body.tools:
            options["parallel_tool_calls"] = body.parallel_tool_calls
        if body.reasoning_effort is not None:  # a model that does not reason refuses it
            options["reasoning_effort"] = body.reasoning_effort
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            wire = ChatWire(model, include_usage, scrub)
            return await start_stream(
                request, orc, messages, model, options, wire, charged(request)
            )
        answers = await unless_disconnected(
            request, _choices(orc, messages, model, body.n, options)
        )
        answered(request, answers)
        response = answers[0]
        out = ChatCompletionOut(
            id=f"chatcmpl-{response.run_id or new_id()}",
            created=int(time.time()),
            model=response.model,
            choices=[
                ChoiceOut(
                    index=i,
                    message=ChatMessageOut(
                        # OpenAI's form: content null beside tool calls when there is no text.
                        content=answer.content or (None if answer.tool_calls else ""),
                        tool_calls=tool_calls_out(answer) or None,
                    ),
                    finish_reason=finish_reason(answer),
                )
                for i, answer in enumerate(answers)
            ],
            usage=summed_usage(answers),
            mmo=details_out(response, scrub),
        )
        return json_response(out)

    @app.post(
        "/v1/responses",
        responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
    )
    async def responses(body: ResponsesRequest, request: Request) -> Any:
        _check_cap(body.max_output_tokens, settings.max_tokens_cap)
        await _check_unicode(request)
        messages, options = request_options(body)
        admit(request, body.model, messages=messages, max_tokens=options.get("max_tokens"))
        model, route, deployed = target(request, body.model)
        options.update(route=route, **deployed)
        if body.stream:
            wire = ResponsesWire(body, body.model, scrub)
            return await start_stream(
                request, orc, messages, model, options, wire, charged(request)
            )
        response = await unless_disconnected(request, orc.acomplete(messages, model, **options))
        answered(request, [response])
        return json_response(response_object(body, response, scrub))

    @app.post(
        "/v1/completions",
        responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
    )
    async def completions(body: LegacyRequest, request: Request) -> Any:
        _check_cap(body.max_tokens, settings.max_tokens_cap)
        await _check_unicode(request)
        messages, options = legacy_options(body)
        admit(request, body.model, messages=messages, max_tokens=body.max_tokens, n=body.n or 1)
        model, route, deployed = target(request, body.model)
        options.update(route=route, **deployed)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.get("include_usage"))
            wire = LegacyWire(body.model, usage, scrub)
            return await start_stream(
                request, orc, messages, model, options, wire, charged(request)
            )
        answers = await unless_disconnected(
            request, _choices(orc, messages, model, body.n, options)
        )
        answered(request, answers)
        return json_response(legacy_object(answers, scrub))

    @app.post("/v1/embeddings", responses=ERROR_RESPONSES)
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Any:
        await _check_unicode(request)
        texts = embedding_texts(body)
        admit(request, body.model, messages=texts, max_tokens=0)
        result = await unless_disconnected(request, orc.aembed(texts, body.model))
        clients.charge_usage(request, result.model, result.cost, result.input_tokens or 0)
        if metrics is not None:
            metrics.observe_embedding(result.model, result.input_tokens, result.cost)
        return embeddings_object(result, body.encoding_format)

    @app.post(
        "/v1/messages",
        responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
    )
    async def messages(body: MessagesRequest, request: Request) -> Any:
        _check_cap(body.max_tokens, settings.max_tokens_cap)
        await _check_unicode(request)
        messages, options = messages_options(body)
        admit(request, body.model, messages=messages, max_tokens=body.max_tokens)
        model, route, deployed = target(request, body.model)
        options.update(route=route, **deployed)
        if body.stream:
            wire = MessagesWire(body.model, scrub)
            return await start_stream(
                request, orc, messages, model, options, wire, charged(request)
            )
        response = await unless_disconnected(request, orc.acomplete(messages, model, **options))
        answered(request, [response])
        return json_response(message_object(response, scrub))

    return app


async def _choices(
    orc: Orchestrator,
    messages: list[dict[str, Any]],
    model: str,
    n: int | None,
    options: dict[str, Any],
) -> list[CompletionResponse]:
    """``n`` answers: no provider's ``n`` is in the unified interface, so n calls, none
    answered from the cache (it would repeat one answer n times)."""
    if not n or n == 1:
        return [await orc.acomplete(messages, model, **options)]
    calls = [orc.acomplete(messages, model, cache=False, **options) for _ in range(n)]
    return list(await asyncio.gather(*calls))


def _single(orc: Orchestrator, body: CompleteRequest, routing: str) -> tuple[str, Any]:
    """(model, route) for the one-model modes of /v1/complete."""
    if routing in ("auto", "task_type") and body.model not in (None, AUTO):
        raise InvalidRequestError(
            f"routing={routing!r} chooses the model, but model={body.model!r} was given.",
            hint="Drop model, or use routing='specific'.",
        )
    if routing == "auto":
        return AUTO, body.route
    if routing == "task_type":
        if not body.task_type:
            return AUTO, "task"  # the task router detects the task from the prompt
        return AUTO, task_router(
            body.task_type, task_models=orc.task_models, default=orc.default_model
        )
    if not body.model:
        raise InvalidRequestError("routing='specific' needs a model.", hint="Set model.")
    model, route = _target(body.model)
    return model, route or body.route


async def _many(
    orc: Orchestrator,
    body: CompleteRequest,
    routing: str,
    options: dict[str, Any],
    scrub: Scrubber,
) -> tuple[ManyOut, list[CompletionResponse]]:
    """The answer, and every model's response (to charge to a client key)."""
    if not body.models:
        raise InvalidRequestError(f"routing={routing!r} needs models=[...].")
    if body.model:
        raise InvalidRequestError(
            f"routing={routing!r} uses models, not model.", hint="Put every model in models."
        )
    for name in [*body.models, *(body.judges or ())]:
        if _target(name)[0] != AUTO:
            orc.catalogue.resolve(name)  # a typo is a 404 with suggestions, not a failed model
    if routing == "parallel":
        responses = await orc.aall(body.prompt, body.models, **options)
        group = responses[0].group_id  # the fan-out's: every response carries it
        assert group is not None
        return ManyOut(
            routing="parallel", group_id=group,
            responses=[completion_out(r, scrub) for r in responses],
        ), list(responses)  # fmt: skip
    if routing == "race":
        race = await orc.arace(body.prompt, body.models, **options)
        return ManyOut(
            routing="race", group_id=race.group_id, winner=_maybe(race.winner, scrub),
            responses=[completion_out(r, scrub) for r in race.responses],
        ), list(race.responses)  # fmt: skip
    strategy = body.strategy or ("judge" if body.judges else "majority")
    result = await orc.aconsensus(
        body.prompt, body.models, judges=body.judges or (), strategy=strategy, **options
    )
    votes = None
    if result.votes is not None:
        tally = result.votes
        votes = VotesOut(
            method=tally.method,
            winner=None if tally.winner not in tally.labels else tally.winner,
            candidates=result.candidates,
            points=tally.points,
        )
    return ManyOut(
        routing="consensus", group_id=result.group_id,
        winner=_maybe(result.winner, scrub),
        responses=[completion_out(r, scrub) for r in result.responses], reason=result.reason,
        votes=votes,
    ), list(result.responses)  # fmt: skip


def _target(name: str) -> tuple[str, str | None]:
    """(model, router) for a ``model`` field: a name, ``auto`` or ``auto:ROUTER``."""
    head, colon, router = name.partition(":")
    if colon and head.lower() == AUTO:
        return AUTO, router.strip()
    return name, None


def _unsupported(body: ChatRequest) -> Response | None:
    """The 400 for a parameter this server cannot honour, or an unknown one, naming it; None
    if none is set.

    Accepting it would return an answer that silently ignored it: free text for a
    JSON schema, no log probabilities for ``logprobs``.
    """
    name: str | None = None
    code = "unsupported_parameter"
    if body.n is not None and body.n > 1 and body.stream:
        name, what = "n", f"n={body.n} with stream=true (several choices are not streamed)"
    elif body.response_format is not None and body.response_format.get("type") not in (
        "text", "json_schema", "json_object",
    ):  # fmt: skip
        kind = body.response_format.get("type")
        name, what = "response_format", f"response_format of type {str(kind)[:40]!r}"
    else:
        for field, value in (body.model_extra or {}).items():
            if field not in UNSUPPORTED:
                shown = field if len(field) <= 60 else f"{field[:60]}…"
                return error_response(
                    400,
                    f"Unknown parameter {shown!r}: this server does not know it, and would not "
                    "honour it. Leave it out.",
                    "invalid_request_error", param=shown, code="unknown_parameter",
                )  # fmt: skip
            if value not in UNSUPPORTED[field]:
                name, what = field, field
                break
    if name is None:
        return None
    return error_response(
        400,
        f"{what} is not supported by this server yet. Leave {name} out.",
        "invalid_request_error",
        param=name,
        code=code,
    )


def _check_cap(max_tokens: int | None, cap: int) -> None:
    if max_tokens is not None and max_tokens > cap:
        raise InvalidRequestError(
            f"max_tokens={max_tokens} is over this server's limit of {cap}.",
            hint=f"Ask for at most {cap} tokens.",
        )


# A JSON escape of a UTF-16 surrogate: only a body with one can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def _check_unicode(request: Request) -> None:
    """A 400 for a string holding a lone surrogate (JSON's ``"\\ud800"``) anywhere in the body.

    Valid JSON, but not text: no provider can be sent it. The body is read
    once by FastAPI (``request.json()`` returns its copy); only a body with a
    surrogate escape is searched.
    """
    if not _SURROGATE_ESCAPE.search(await request.body()):
        return
    todo: deque[tuple[tuple[str | int, ...], Any]] = deque([((), await request.json())])
    while todo:  # breadth-first, without recursion: nesting depth is the client's choice
        path, value = todo.popleft()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                error = {"type": "string_unicode", "loc": ("body", *path), "msg": "", "input": None}
                raise RequestValidationError([error]) from None
        elif isinstance(value, dict):
            todo.extend(((*path, key), key) for key in value)  # a key is text too
            todo.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            todo.extend(((*path, i), item) for i, item in enumerate(value))


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI messages as the orchestrator's: text, or text, image and file parts;
    "developer" is a system message; tool calls and tool results kept."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        content: str | list[dict[str, Any]]
        if isinstance(m.content, list):
            kinds = {p.type for p in m.content} - {"text"}
            if kinds - _PART_TYPES:
                raise InvalidRequestError(
                    f"messages[{i}] has a {sorted(kinds - _PART_TYPES)[0]!r} part; text, "
                    "image_url and file parts are supported.", param=f"messages[{i}].content",
                )  # fmt: skip
            if kinds:  # images or files: the parts as they came (core.parts reads them)
                content = [p.model_dump(exclude_none=True) for p in m.content]
            else:
                content = "".join(p.text or "" for p in m.content)
        else:
            content = m.content or ""
        message: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role, "content": content,
        }  # fmt: skip
        if m.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        out.append(message)
    return out


def _model_entries(orc: Orchestrator) -> list[ModelOut]:
    entries = []
    for m in orc.models():
        reason = m.unavailable_reason
        entries.append(
            ModelOut(
                id=m.name, owned_by=m.provider, kind="model", provider=m.provider,
                model_id=m.model_id, aliases=list(m.aliases), available=reason is None,
                unavailable_reason=reason, cost_per_1k_input=m.cost_per_1k_input,
                cost_per_1k_output=m.cost_per_1k_output, context_window=m.context_window,
                description=m.description,
            )
        )  # fmt: skip
    routers = [(AUTO, f"the default router ({orc.default_route}) chooses the model")]
    routers += [(f"{AUTO}:{r}", f"the {r} router chooses the model") for r in ROUTERS]
    routers += [(f"{AUTO}:{r}", f"the {r!r} router (add_router) chooses") for r in orc.routers]
    entries += [
        ModelOut(id=name, owned_by="mmo_magic", kind="router", available=True, description=text)
        for name, text in routers
    ]
    return entries


def _maybe(r: CompletionResponse | None, scrub: Scrubber) -> CompletionOut | None:
    return None if r is None else completion_out(r, scrub)
