"""Routing through the Orchestrator: model="auto", route=..., config, and the run log."""

from __future__ import annotations

import pytest

import mmo_magic as mmo
from mmo_magic.providers.sim import shared_sim_server

CODE_PROMPT = "Write a Python function that reverses a linked list, with type hints."


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mmo.toml"
    path.write_text(
        'default_model = "sim-fast"\ncache = false\n'
        '[routing]\ndefault = "task"\n[routing.tasks]\ncoding = ["gpt-5", "sim-echo"]\n'
    )
    return path


def test_route_explains_without_calling_a_model(config):
    orc = mmo.Orchestrator.from_config(config, runlog=":memory:")
    before = shared_sim_server().request_count()
    decision = orc.route(CODE_PROMPT)
    assert isinstance(decision, mmo.RouteDecision)
    assert (decision.router, decision.label, decision.model) == ("task", "coding", "sim-echo")
    assert "gpt-5 unavailable (OPENAI_API_KEY not set)" in decision.reason
    assert decision.estimated_cost is not None and decision.estimated_cost > 0
    assert shared_sim_server().request_count() == before
    assert len(orc.runs) == 0


def test_auto_model_routes_answers_and_records_the_reason(config):
    orc = mmo.Orchestrator.from_config(config, runlog=":memory:")
    r = orc.complete(CODE_PROMPT, model="auto")
    assert r.model == "sim-echo" and r.content == CODE_PROMPT
    assert r.route_reason.startswith("task: ") and "coding" in r.route_reason
    record = orc.runs.records()[-1]
    assert (record.requested_model, record.model) == ("auto", "sim-echo")
    assert record.route_reason == r.route_reason


@pytest.mark.parametrize("route", ["complexity", "cost", "rules", "task"])
def test_every_router_is_reachable_by_name(route):
    orc = mmo.Orchestrator(runlog=":memory:", cache=False)
    decision = orc.route("Hi! How are you today?", route=route)
    assert decision.router == route
    assert orc.catalogue.resolve(decision.model).available
    r = orc.complete("Hi! How are you today?", route=route)
    assert r.model == decision.model and r.route_reason


def test_a_router_object_can_be_passed(config):
    orc = mmo.Orchestrator.from_config(config, runlog=":memory:")
    router = mmo.CostOptimizedRouter(min_tier=2)
    decision = orc.route("Summarise this paragraph for me.", route=router)
    assert decision.router == "cost" and orc.catalogue.resolve(decision.model).tier >= 2


def test_model_and_route_together_are_refused(config):
    orc = mmo.Orchestrator.from_config(config, runlog=":memory:")
    with pytest.raises(mmo.InvalidRequestError, match="model='sim-fast' and route='task'"):
        orc.complete("hi", model="sim-fast", route="task")


def test_unknown_router_name_suggests(config):
    orc = mmo.Orchestrator.from_config(config, runlog=":memory:")
    with pytest.raises(mmo.ConfigError, match="complexity"):
        orc.complete("hi", model="auto", route="complexty")
    assert orc.runs.records()[-1].status == "error"


def test_bad_routing_config(tmp_path):
    path = tmp_path / "mmo.toml"
    path.write_text("[routing.tasks]\ncoding = 3\n")
    with pytest.raises(mmo.ConfigError, match=r"coding must be a model name or a list"):
        mmo.Orchestrator.from_config(path, runlog=":memory:")
