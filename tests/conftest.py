"""Shared fixtures: orchestrators wired to the simulated provider (fixture ``sim``).

Helpers that test modules import by name live in ``helpers.py``, not here.

The ``sim`` and ``sim_server`` fixtures come from mmo_magic's pytest plugin
(mmo_magic.sim.pytest_plugin, registered as an entry point).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import (
    ANTHROPIC_KEY_ENV,
    OPENAI_KEY_ENV,
    SIM_ANTHROPIC_KEY,
    SIM_OPENAI_KEY,
    sim_models,
)

import mmo_magic as mmo


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Never touch the user's run log, config or real keys."""
    saved = dict(os.environ)
    os.environ["MMO_RUNLOG"] = str(tmp_path_factory.mktemp("runlog") / "runs.sqlite3")
    os.environ["MMO_CACHE"] = str(tmp_path_factory.mktemp("cache") / "responses.sqlite3")
    # Where records go while a run log can't be written: never the user's cache dir.
    os.environ["MMO_RUNLOG_FALLBACK"] = str(tmp_path_factory.mktemp("runlog-fallback"))
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


@pytest.fixture
def orc(sim, keys) -> Iterator[mmo.Orchestrator]:  # type: ignore[no-untyped-def]
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


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
