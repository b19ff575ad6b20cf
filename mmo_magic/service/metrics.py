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
        self._children: dict[tuple[Any, ...], Any] = {}  # (id(metric), *labels) -> its child
        self.breaker = Gauge(
            "mmo_breaker_open", "1 while the model's circuit is open or half-open", ["model"],
            registry=r,
        )  # fmt: skip

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (models and statuses are few)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            if len(self._children) < 4096:
                self._children[key] = child
        return child

    def observe(self, answers: Iterable[CompletionResponse | None]) -> None:
        child = self._child
        for a in answers:
            if a is None:
                continue
            child(self.answers, a.model, a.status).inc()
            if a.latency_ms is not None:
                child(self.answer_seconds, a.model).observe(a.latency_ms / 1000)
            if a.ttft_ms is not None:
                child(self.ttft, a.model).observe(a.ttft_ms / 1000)
            if a.input_tokens is not None:
                child(self.tokens, a.model, "input").inc(a.input_tokens)
            if a.output_tokens is not None:
                child(self.tokens, a.model, "output").inc(a.output_tokens)
            if a.cost is not None:
                child(self.cost, a.model).inc(a.cost)

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
    """Pure ASGI middleware: counts and times each request by its route template.

    Each label set's child metric is looked up once and kept (``labels()`` validates
    and takes a lock on every call).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.paths: frozenset[str] | None = None
        self._in_flight: dict[str, Any] = {}
        self._done: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _finished(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """(the request counter, the request-time histogram) for these labels."""
        found = self._done.get((route, method, status))
        if found is None:
            found = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.seconds.labels(route, method),
            )
            if len(self._done) < 256:  # the method is the client's to choose: bounded
                self._done[(route, method, status)] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == PATH:
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()
        if self.paths is None:  # the app's fixed paths: the route is known before routing
            routes = getattr(scope.get("app"), "routes", ())
            self.paths = frozenset(p for r in routes if "{" not in (p := getattr(r, "path", "{")))
        path = scope["path"] if scope["path"] in self.paths else "other"
        in_flight = self._in_flight.get(path)
        if in_flight is None:
            in_flight = self._in_flight[path] = self.metrics.in_flight.labels(path)
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
            requests, seconds = self._finished(_route_of(scope), scope["method"], status)
            requests.inc()
            seconds.observe(time.perf_counter() - start)


def _route_of(scope: dict[str, Any] | Scope) -> str:
    """The matched route's template, or "other" (raw paths are the client's to choose)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
