"""``[server] models``: what the gateway serves and lists; the embedded model only when listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, USER, Service, serving, sim_models

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.config import ServerSettings
from mmo_magic.service import create_app


def embedded() -> mmo.ModelConfig:
    (model,) = [m for m in builtin_models() if m.name == "smollm2"]
    return model


@pytest.fixture
def make(sim: Any) -> Iterator[Any]:
    import contextlib

    with contextlib.ExitStack() as stack:

        def start(models: tuple[str, ...] | None) -> Service:
            env = stack.enter_context(pytest.MonkeyPatch.context())
            env.setenv(OPENAI_KEY_ENV, "sk-test-openai-served-00000")
            env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-served-0000000")
            orc = mmo.Orchestrator(
                [*sim_models(sim), embedded()], default_model="oa", runlog=":memory:", cache=False
            )
            stack.enter_context(orc)
            app = create_app(orc, keys=[KEY], settings=ServerSettings(models=models))
            return Service(stack.enter_context(serving(app)), orc)

        yield start


def listed(gateway: Service) -> list[str]:
    with gateway.http() as http:
        return [m["id"] for m in http.get("/v1/models").json()["data"]]


def test_without_a_list_everything_but_the_embedded_model_is_served(make, sim):
    gateway = make(None)
    names = listed(gateway)
    assert {"oa", "an", "lo", "auto", "auto:task"} <= set(names) and "smollm2" not in names
    refused = gateway.post("/v1/chat/completions", {"model": "smollm2", "messages": USER})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert sim.request_count() == 0


def test_the_list_chooses_exactly_what_is_served(make, sim):
    gateway = make(("o*", "auto:*"))
    names = listed(gateway)
    assert "oa" in names and "an" not in names and "lo" not in names
    assert {n for n in names if n.startswith("auto")} >= {"auto", "auto:task"}
    assert (
        gateway.post("/v1/chat/completions", {"model": "an", "messages": USER}).status_code == 404
    )
    assert (
        gateway.post("/v1/chat/completions", {"model": "oa", "messages": USER}).status_code == 200
    )
    assert gateway.post("/v1/responses", {"model": "an", "input": "hi"}).status_code == 404
    routed = gateway.post("/v1/chat/completions", {"model": "auto:cost", "messages": USER})
    assert routed.status_code == 200


def test_routers_only_when_listed_and_the_embedded_model_when_named(make):
    gateway = make(("oa", "smollm2"))
    assert sorted(listed(gateway)) == ["oa", "smollm2"]
    for router in ("auto", "auto:task"):
        body = {"model": router, "messages": USER}
        assert gateway.post("/v1/chat/completions", body).status_code == 404
