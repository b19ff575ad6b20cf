"""``GET /metrics``: scraped with prometheus_client's own parser; counters match what was sent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, USER, Service, serving, sim_models
from prometheus_client.parser import text_string_to_metric_families

import mmo_magic as mmo
from mmo_magic.core.config import ServerSettings
from mmo_magic.service import create_app
from mmo_magic.storage.keys import SQLiteKeyStore


@pytest.fixture
def make(sim: Any) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:

        def start(metrics: str = "admin", store: SQLiteKeyStore | None = None) -> Service:
            env = stack.enter_context(pytest.MonkeyPatch.context())
            env.setenv(OPENAI_KEY_ENV, "sk-test-openai-metrics-0000")
            env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-metrics-000000")
            orc = mmo.Orchestrator(
                sim_models(sim), default_model="oa", runlog=":memory:", cache=False
            )
            stack.enter_context(orc)
            settings = ServerSettings(metrics=metrics)
            app = create_app(orc, keys=[KEY], settings=settings, store=store)
            return Service(stack.enter_context(serving(app)), orc)

        yield start


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_counters_match_the_requests_sent(make):
    gateway = make()
    usage = {"oa": 0, "an": 0}
    with gateway.http() as http:
        for model, times in (("oa", 3), ("an", 2)):
            for _ in range(times):
                r = http.post("/v1/chat/completions", json={"model": model, "messages": USER})
                usage[model] += r.json()["usage"]["completion_tokens"]
        http.post("/v1/responses", json={"model": "oa", "input": "hi"})
        http.post("/v1/chat/completions", json={"model": "nope", "messages": USER})
        text = http.get("/metrics").text
    found = samples(text)
    chat = {"route": "/v1/chat/completions", "method": "POST"}
    assert value(found, "mmo_http_requests_total", **chat, status="200") == 5
    assert value(found, "mmo_http_requests_total", **chat, status="404") == 1
    assert value(found, "mmo_http_requests_total", route="/v1/responses", method="POST",
                 status="200") == 1  # fmt: skip
    assert value(found, "mmo_http_request_seconds_count", **chat) == 6
    assert value(found, "mmo_answers_total", model="oa", status="ok") == 4
    assert value(found, "mmo_answers_total", model="an", status="ok") == 2
    assert value(found, "mmo_tokens_total", model="an", kind="output") == usage["an"]
    assert value(found, "mmo_cost_usd_total", model="oa") > 0
    assert value(found, "mmo_time_to_first_token_seconds_count", model="oa") == 4
    assert value(found, "mmo_http_in_flight", route="/v1/chat/completions") == 0
    assert value(found, "mmo_breaker_open", model="oa") == 0
    assert ("mmo_breaker_open", frozenset({("model", "lo")})) in found


def test_metrics_are_for_admins_by_default(make):
    store = SQLiteKeyStore(":memory:")
    member = store.add("member")
    gateway = make(store=store)
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    with gateway.http(member) as http:
        assert http.get("/metrics").status_code == 403
    with gateway.http() as http:
        assert http.get("/metrics").status_code == 200


def test_public_and_off(make):
    assert httpx.get(f"{make('public').url}/metrics").status_code == 200
    with make("off").http() as http:
        assert http.get("/metrics").status_code == 404


def test_in_flight_counts_a_stream_under_way(make):
    gateway = make()
    slow = gateway.model("sim-fast?ttft_ms=50&tps=10&tokens=10")
    body = {"model": slow, "messages": USER, "stream": True}
    with gateway.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        assert '"role":"assistant"' in next(lines)
        during = samples(http.get("/metrics").text)
        list(lines)
    after = samples(gateway.http().get("/metrics").text)
    assert value(during, "mmo_http_in_flight", route="/v1/chat/completions") == 1
    assert value(after, "mmo_http_in_flight", route="/v1/chat/completions") == 0
    assert value(after, "mmo_answers_total", model=slow, status="ok") == 1
