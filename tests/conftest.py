"""Shared fixtures: orchestrators wired to the simulated provider (fixture ``sim``).

The ``sim`` and ``sim_server`` fixtures come from mmo_magic's pytest plugin
(mmo_magic.sim.pytest_plugin, registered as an entry point).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

import mmo_magic as mmo

OPENAI_KEY_ENV = "MMO_TEST_OPENAI_KEY"
ANTHROPIC_KEY_ENV = "MMO_TEST_ANTHROPIC_KEY"
PRICE_IN, PRICE_OUT = 0.002, 0.006  # USD per 1k tokens for the test models


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Never touch the user's run log, config or real keys."""
    saved = dict(os.environ)
    os.environ["MMO_RUNLOG"] = str(tmp_path_factory.mktemp("runlog") / "runs.sqlite3")
    os.environ["MMO_CACHE"] = str(tmp_path_factory.mktemp("cache") / "responses.sqlite3")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MMO_CONFIG", "MMO_DEFAULT_MODEL"):
        os.environ.pop(name, None)
    os.chdir(tmp_path_factory.mktemp("cwd"))  # no stray mmo.toml
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        OPENAI_KEY_ENV: "sk-test-openai-000000000000",
        ANTHROPIC_KEY_ENV: "sk-ant-test-0000000000000",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def sim_models(sim, *, priced: bool = True) -> list[mmo.ModelConfig]:  # type: ignore[no-untyped-def]
    """Three ways to reach the simulated provider: openai and anthropic SDKs, and a local server."""
    prices: dict = (
        {"cost_per_1k_input": PRICE_IN, "cost_per_1k_output": PRICE_OUT} if priced else {}
    )
    prices["max_retries"] = 0  # the reliability tests turn retries on where they test them
    return [
        mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=sim.openai_base_url,
                        api_key_env=OPENAI_KEY_ENV, **prices),
        mmo.ModelConfig("anthropic", "sim-fast", name="an", base_url=sim.anthropic_base_url,
                        api_key_env=ANTHROPIC_KEY_ENV, **prices),
        mmo.ModelConfig("local", "sim-fast", name="lo", base_url=sim.openai_base_url, **prices),
    ]  # fmt: skip


@pytest.fixture
def orc(sim, keys) -> Iterator[mmo.Orchestrator]:  # type: ignore[no-untyped-def]
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


# The raw SDKs pointed at the simulated provider (tests of its wire formats). The keys
# are fake but recognisable, so tests can check they never come back in errors or logs.
SIM_OPENAI_KEY = "sk-secret-1"
SIM_ANTHROPIC_KEY = "sk-ant-secret-2"


@pytest.fixture
def oa(sim) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    import openai

    with openai.OpenAI(base_url=sim.openai_base_url, api_key=SIM_OPENAI_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def an(sim) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    import anthropic

    with anthropic.Anthropic(
        base_url=sim.anthropic_base_url, api_key=SIM_ANTHROPIC_KEY, max_retries=0
    ) as c:
        yield c


def with_model_id(orc: mmo.Orchestrator, name: str, model_id: str, **changes) -> str:  # type: ignore[no-untyped-def]
    """Register a copy of model ``name`` sending ``model_id`` (sim options); return its name."""
    new_name = f"{name}:{model_id}"
    orc.add_model(orc.catalogue.resolve(name).replace(name=new_name, model_id=model_id, **changes))
    return new_name
