"""``GET /metrics``: the gateway in Prometheus's text format (``prometheus_client``).

- ``mmo_http_requests_total{route,method,status}`` and
  ``mmo_http_request_seconds{route,method}``: every request, by its route
  template (``/v1/chat/completions``), never by raw path;
- ``mmo_http_in_flight{route}``: requests being answered (streams included);
- ``mmo_answers_total{model,status}``, ``mmo_answer_seconds{model}``,
  ``mmo_time_to_first_token_seconds{model}``, ``mmo_tokens_total{model,kind}``
  and ``mmo_cost_usd_total{model}``: each answer a request got, by the model
  that answered;
- ``mmo_breaker_open{model}``: 1 while a model's circuit is open or half-open.

``[server] metrics``: "admin" (the default: server keys and admin keys only),
"public" (no key) or "off" (404). Each app has its own registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.completion import CompletionResponse
from ..orchestration.orchestrator import Orchestrator

__all__ = ["PATH", "Metrics"]

PATH = "/metrics"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The gateway's metrics in a registry of their own; ``middleware`` counts requests."""

    def __init__(self, orc: Orchestrator) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.orc = orc
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mmo_http_requests", "HTTP requests answered", ["route", "method", "status"],
            registry=r,
        )  # fmt: skip
        self.seconds = Histogram(
            "mmo_http_request_seconds", "Time to answer a request (streams: to their end)",
            ["route", "method"], buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("mmo_http_in_flight", "Requests being answered", ["route"],
                               registry=r)  # fmt: skip
        self.answers = Counter("mmo_answers", "Model answers", ["model", "status"], registry=r)
        self.answer_seconds = Histogram(
            "mmo_answer_seconds", "A model's time to answer", ["model"], buckets=_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "mmo_time_to_first_token_seconds", "A model's time to its first token", ["model"],
            buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("mmo_tokens", "Tokens", ["model", "kind"], registry=r)
        self.cost = Counter("mmo_cost_usd", "USD spent on answers (priced ones)", ["model"],
                            registry=r)  # fmt: skip
        self.breaker = Gauge(
            "mmo_breaker_open", "1 while the model's circuit is open or half-open", ["model"],
            registry=r,
        )  # fmt: skip

    def observe(self, answers: Iterable[CompletionResponse | None]) -> None:
        for a in answers:
            if a is None:
                continue
            self.answers.labels(a.model, a.status).inc()
            if a.latency_ms is not None:
                self.answer_seconds.labels(a.model).observe(a.latency_ms / 1000)
            if a.ttft_ms is not None:
                self.ttft.labels(a.model).observe(a.ttft_ms / 1000)
            if a.input_tokens is not None:
                self.tokens.labels(a.model, "input").inc(a.input_tokens)
            if a.output_tokens is not None:
                self.tokens.labels(a.model, "output").inc(a.output_tokens)
            if a.cost is not None:
                self.cost.labels(a.model).inc(a.cost)

    def observe_embedding(self, model: str, tokens: int | None, cost: float | None) -> None:
        self.answers.labels(model, "ok").inc()
        if tokens is not None:
            self.tokens.labels(model, "input").inc(tokens)
        if cost is not None:
            self.cost.labels(model).inc(cost)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type; breaker states read now."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        breaker = self.orc.breaker
        for m in self.orc.models():
            self.breaker.labels(m.name).set(0 if breaker.state(m.name) == "closed" else 1)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return _Counting(app, self)


class _Counting:
    """Pure ASGI middleware: counts and times each request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.paths: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == PATH:
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()
        if self.paths is None:  # the app's fixed paths: the route is known before routing
            routes = getattr(scope.get("app"), "routes", ())
            self.paths = frozenset(p for r in routes if "{" not in (p := getattr(r, "path", "{")))
        path = scope["path"]
        in_flight = self.metrics.in_flight.labels(path if path in self.paths else "other")
        in_flight.inc()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            in_flight.dec()
            route, method = _route_of(scope), scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.seconds.labels(route, method).observe(time.perf_counter() - start)


def _route_of(scope: dict[str, Any] | Scope) -> str:
    """The matched route's template, or "other" (raw paths are the client's to choose)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
