"""A named learned router through the gateway: ``model="auto:NAME"`` with the openai SDK
(answers and streams), and the mmo API's ``/v1/complete``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import KEY, WORLD_PRICES, make_world, serving

import mmo_magic as mmo
from mmo_magic.providers import register_function, unregister_function
from mmo_magic.routing.learned import LearnedRouter, learn


def answer_as(name: str) -> Any:
    return lambda request: f"{name} answers"


@pytest.fixture(scope="module")
def router() -> LearnedRouter:
    return learn(make_world(150, seed=1).evidence()).at(quality=0.95)


@pytest.fixture(scope="module")
def gateway(router: LearnedRouter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway over the synthetic world's models (function models), with the router
    named "mine" in mmo.toml."""
    from mmo_magic.service import create_app

    for name in WORLD_PRICES:
        register_function(f"gateway-{name}", answer_as(name))
    where: Path = tmp_path_factory.mktemp("gateway")
    router.save(where / "mine.json")
    models = "".join(
        f'[models.{name}]\nprovider = "function"\nmodel_id = "gateway-{name}"\n'
        f"cost_per_1k_input = {price}\ncost_per_1k_output = {price}\n"
        for name, price in WORLD_PRICES.items()
    )
    config = where / "mmo.toml"
    config.write_text(
        f'default_model = "large"\n{models}[routing.learned.mine]\npath = "mine.json"\n'
    )
    with (
        mmo.Orchestrator.from_config(config, runlog=":memory:", cache=False) as orc,
        serving(create_app(orc, keys=[KEY])) as url,
    ):
        yield url
    for name in WORLD_PRICES:
        unregister_function(f"gateway-{name}")


def prompts(router: LearnedRouter) -> list[tuple[str, str]]:
    """(prompt, the model the router picks): one per model it picks among new prompts."""
    new = make_world(30, seed=77).prompts
    picked = dict(zip(router.choose(new), new, strict=True))  # the last prompt per model
    assert len(picked) >= 2, "the router should pick more than one model here"
    return [(prompt, model) for model, prompt in picked.items()]


def test_auto_name_routes_through_the_openai_sdk(gateway: str, router: LearnedRouter) -> None:
    async def ask() -> None:
        async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=KEY) as client:
            for prompt, chosen in prompts(router):
                messages: Any = [{"role": "user", "content": prompt}]
                answer = await client.chat.completions.create(model="auto:mine", messages=messages)
                assert answer.model == chosen
                assert answer.choices[0].message.content == f"{chosen} answers"
                details = (answer.model_extra or {}).get("mmo") or {}
                assert "predicted quality" in (details.get("route_reason") or "")
                stream = await client.chat.completions.create(
                    model="auto:mine", messages=messages, stream=True
                )
                text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                assert "".join(text) == f"{chosen} answers"

    asyncio.run(ask())


def test_auto_name_routes_on_the_mmo_api(gateway: str, router: LearnedRouter) -> None:
    import httpx

    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as http:
        for prompt, chosen in prompts(router):
            out = http.post("/v1/complete", json={"prompt": prompt, "model": "auto:mine"})
            assert out.status_code == 200, out.text
            assert out.json()["model"] == chosen
        unknown = http.post("/v1/complete", json={"prompt": "hi", "model": "auto:mien"})
        assert unknown.status_code == 400
        assert "Did you mean 'mine'" in unknown.json()["error"]["message"]
