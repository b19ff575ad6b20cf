"""Several deployments of one model name: load split by least in flight, failover between
deployments before other models, a circuit breaker per deployment."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, USER, Service, serving, sim_models

import mmo_magic as mmo
from mmo_magic.core.config import ServerSettings, load_settings
from mmo_magic.service import create_app

SLOW_A, SLOW_B = "sim-fast?ttft_ms=300", "sim-fast?ttft_ms=301"  # two upstreams, told apart


@pytest.fixture
def gateway(sim: Any) -> Iterator[Service]:
    def deployment(name: str, model_id: str) -> mmo.ModelConfig:
        return mmo.ModelConfig("openai", model_id, name=name, base_url=sim.openai_base_url,
                               api_key_env=OPENAI_KEY_ENV, max_retries=0)  # fmt: skip

    with pytest.MonkeyPatch.context() as env:
        env.setenv(OPENAI_KEY_ENV, "sk-test-openai-deploy-00000")
        env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-deploy-0000000")
        models = [*sim_models(sim), deployment("big-east", SLOW_A), deployment("big-west", SLOW_B)]
        orc = mmo.Orchestrator(models, default_model="oa", runlog=":memory:", cache=False)
        settings = ServerSettings(deployments={"big": ("big-east", "big-west")})
        with orc, serving(create_app(orc, keys=[KEY], settings=settings)) as url:
            yield Service(url, orc)


async def burst(gateway: Service, n: int, model: str = "big") -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30
    ) as http:
        body = {"model": model, "messages": USER}
        return await asyncio.gather(
            *[http.post("/v1/chat/completions", json=body) for _ in range(n)]
        )


async def test_two_deployments_split_the_load(gateway, sim):
    answers = await burst(gateway, 10)
    assert all(r.status_code == 200 for r in answers)
    assert sim.request_count(SLOW_A) == sim.request_count(SLOW_B) == 5
    assert {r.json()["model"] for r in answers} == {"big-east", "big-west"}
    assert gateway.orc.breaker.state("big-east") == "closed"


async def test_a_dead_deployment_fails_over_and_its_breaker_opens(gateway, sim):
    dead = gateway.orc.catalogue.resolve("big-east").replace(model_id="sim-fast?fail=500")
    gateway.orc.add_model(dead)
    for _ in range(3):
        answers = await burst(gateway, 4)
        assert all(r.status_code == 200 for r in answers)  # failed over to the live one
        assert {r.json()["model"] for r in answers} == {"big-west"}
    assert gateway.orc.breaker.state("big-east") == "open"
    sent_to_dead = sim.request_count("sim-fast?fail=500")
    assert 0 < sent_to_dead <= 6
    assert all(r.status_code == 200 for r in await burst(gateway, 4))
    assert sim.request_count("sim-fast?fail=500") == sent_to_dead  # its circuit is open
    assert gateway.orc.breaker.state("big-west") == "closed"


def test_the_name_is_listed_and_deployments_are_configured_in_mmo_toml(gateway, tmp_path):
    with gateway.http() as http:
        entry = http.get("/v1/models/big").json()
    assert entry["id"] == "big" and "big-east, big-west" in entry["description"]
    config = tmp_path / "mmo.toml"
    config.write_text(textwrap.dedent("""
        [server.deployments]
        big = ["big-east", "big-west"]
    """))  # fmt: skip
    assert load_settings([config]).server.deployments == {"big": ("big-east", "big-west")}
    config.write_text('[server.deployments]\nbig = "big-east"\n')
    with pytest.raises(mmo.ConfigError, match="deployments"):
        load_settings([config])


def test_the_least_busy_deployment_is_chosen_then_ties_alternate(gateway):
    from mmo_magic.service.deployments import Deployments

    d = Deployments(gateway.orc, {"big": ["big-east", "big-west"]})
    d.started("big-east")
    assert [d.choose("big")[0] for _ in range(3)] == ["big-west"] * 3
    assert d.choose("big")[1] == ("big-east",)  # the other deployment is the fallback
    d.finished("big-east")
    assert {d.choose("big")[0] for _ in range(2)} == {"big-east", "big-west"}
    with pytest.raises(mmo.ConfigError):
        Deployments(gateway.orc, {"x": ["no-such-model"]})
