"""A routed call (``auto:NAME``) stays inside what the client key and ``[server] models``
allow: the router chooses among those models only, its fallbacks too, and the embedded
model only when listed; routers added with ``add_router`` are listed by ``/v1/models``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, USER, Service, serving, sim_models

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.config import ServerSettings
from mmo_magic.routing import RoutingRule, RulesRouter
from mmo_magic.service import create_app
from mmo_magic.storage.keys import SQLiteKeyStore

SMOLLM = "smollm2"  # the embedded model: $0, so the cost router's first choice when reachable


def embedded() -> mmo.ModelConfig:
    (model,) = [m for m in builtin_models() if m.name == SMOLLM]
    return model


@pytest.fixture
def make(sim: Any) -> Iterator[Any]:
    """Start a gateway over the sim models and the embedded one, with a key store; a
    router ``pick`` prefers the embedded model, then ``oa``, whatever the prompt."""
    with contextlib.ExitStack() as stack:

        def start(models: tuple[str, ...] | None = None) -> tuple[Service, SQLiteKeyStore]:
            env = stack.enter_context(pytest.MonkeyPatch.context())
            env.setenv(OPENAI_KEY_ENV, "sk-test-openai-routes-0000")
            env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-routes-000000")
            orc = mmo.Orchestrator(
                [*sim_models(sim), embedded()], default_model="oa", runlog=":memory:", cache=False
            )
            stack.enter_context(orc)
            orc.add_router("pick", RulesRouter([RoutingRule("always", [SMOLLM, "oa"])]))
            store = SQLiteKeyStore(":memory:")
            stack.callback(store.close)
            app = create_app(orc, keys=[KEY], store=store, settings=ServerSettings(models=models))
            return Service(stack.enter_context(serving(app)), orc), store

        yield start


def client(gateway: Service, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def routed(gateway: Service, key: str, model: str) -> str:
    """The model that answered ``model`` (a router) for ``key``."""
    with client(gateway, key) as c:
        answer = c.chat.completions.create(model=model, messages=USER, max_tokens=10)  # type: ignore[arg-type]
    return answer.model


def test_a_key_is_routed_only_to_the_models_it_may_use(make, sim):
    gateway, store = make()
    key = store.add("ann", models=["auto:*", "an"])  # oa, lo and the embedded one are not hers
    for router in ("auto:pick", "auto:cost", "auto:task", "auto"):
        assert routed(gateway, key, router) == "an", router
    with client(gateway, key) as c:  # streamed the same
        stream = c.chat.completions.create(
            model="auto:pick", messages=USER, max_tokens=10, stream=True
        )  # type: ignore[arg-type]
        # The first chunk may carry the name asked for, before the router has chosen.
        assert {chunk.model for chunk in stream} - {"auto:pick", "auto"} == {"an"}
    assert sim.request_count() == 5
    assert not gateway.orc.runs.to_dataframe()["model"].isin(["oa", "lo", SMOLLM]).any()


def test_the_routers_reason_names_no_model_outside_the_keys_list(make):
    gateway, store = make()
    key = store.add("ann", models=["auto:*", "an"])
    with gateway.http(key) as http:
        body = {"model": "auto:pick", "messages": USER, "max_tokens": 10}
        answer = http.post("/v1/chat/completions", json=body).json()
    assert answer["model"] == "an"
    reason = answer["mmo"]["route_reason"]
    assert SMOLLM not in reason and "oa" not in reason.replace("an", "")


def test_a_route_with_no_allowed_model_is_the_404_of_an_unknown_model(make, sim):
    gateway, store = make()
    key = store.add("rex", models=["auto:*", "gpt-9*"])  # routers, but no model it may reach
    with client(gateway, key) as c, pytest.raises(openai.NotFoundError) as refused:
        c.chat.completions.create(model="auto:pick", messages=USER)  # type: ignore[arg-type]
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    for name in ("oa", "an", "lo", SMOLLM):
        assert f"'{name}'" not in error["message"] and f" {name}" not in error["message"]
    assert sim.request_count() == 0


def test_without_the_embedded_model_listed_no_route_reaches_it(make, sim):
    for models in (None, ("o*", "an", "auto:*")):
        gateway, _ = make(models)
        assert routed(gateway, KEY, "auto:cost") != SMOLLM  # $0: the cheapest, if reachable
        assert routed(gateway, KEY, "auto:pick") == "oa"  # its rule names the embedded first
    runs = gateway.orc.runs.to_dataframe()
    assert SMOLLM not in set(runs["model"])


def test_fallbacks_of_a_call_stay_inside_the_allowlist(make, sim):
    gateway, store = make()
    orc = gateway.orc
    dead = orc.catalogue.resolve("oa").replace(
        name="dead", model_id="sim-fast?fail=500", fallbacks=("oa", "an")
    )
    orc.add_model(dead)
    key = store.add("dee", models=["dead", "an"])  # not oa
    with client(gateway, key) as c:
        answer = c.chat.completions.create(model="dead", messages=USER, max_tokens=10)
    assert answer.model == "an"
    tried = list(orc.runs.to_dataframe()["model"])
    assert "oa" not in tried and tried[-1] == "an"


def test_models_lists_added_routers_for_keys_that_may_use_them(make):
    gateway, store = make()
    with gateway.http() as http:
        listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert listed["auto:pick"]["kind"] == "router"
    routers_only = store.add("rho", models=["auto:*", "an"])
    no_routers = store.add("nor", models=["an"])
    with client(gateway, routers_only) as c:
        assert "auto:pick" in {m.id for m in c.models.list()}
    with client(gateway, no_routers) as c:
        assert {m.id for m in c.models.list()} == {"an"}
    assert routed(gateway, routers_only, "auto:pick") == "an"
