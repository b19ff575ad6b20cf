"""How many calls are in flight at once: per provider (high by default) and per model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest
from mmo_magic.core.config import load_settings
from mmo_magic.providers import register_function, unregister_function


class InFlight:
    """A model function that counts how many of its calls run at the same time."""

    def __init__(self) -> None:
        self.now = self.most = 0

    async def __call__(self, request: CompletionRequest) -> AsyncIterator[str]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.2)
            yield "done"
        finally:
            self.now -= 1


@pytest.fixture
def counter() -> Iterator[InFlight]:
    counter = InFlight()
    register_function("counted", counter)
    yield counter
    unregister_function("counted")


def run_at_once(orc: mmo.Orchestrator, calls: int, model: str = "counted") -> None:
    async def many() -> None:
        answers = await asyncio.gather(*(orc.acomplete("x", model=model) for _ in range(calls)))
        assert {a.status for a in answers} == {"ok"}

    asyncio.run(many())


def test_forty_calls_to_one_provider_all_run_at_once_by_default(counter: InFlight) -> None:
    with mmo.Orchestrator(
        [mmo.ModelConfig("function", "counted")], runlog=":memory:", cache=False
    ) as orc:
        run_at_once(orc, 40)
    assert counter.most == 40  # a hidden cap of 8 once queued these in five rounds


def test_a_provider_limit_bounds_its_calls_in_flight(counter: InFlight) -> None:
    with mmo.Orchestrator(
        [mmo.ModelConfig("function", "counted")], runlog=":memory:", cache=False,
        provider_concurrency={"function": 5},
    ) as orc:  # fmt: skip
        run_at_once(orc, 20)
    assert counter.most == 5


def test_a_model_limit_bounds_that_model_only(counter: InFlight) -> None:
    limited = mmo.ModelConfig("function", "counted", name="limited", max_concurrency=3)
    with mmo.Orchestrator([limited], runlog=":memory:", cache=False) as orc:
        run_at_once(orc, 12, model="limited")
    assert counter.most == 3


def test_concurrency_comes_from_mmo_toml(tmp_path) -> None:
    (tmp_path / "mmo.toml").write_text(
        "[concurrency]\ndefault = 7\nopenai = 3\n[models.slowpoke]\nprovider = 'openai'\n"
        "model_id = 'gpt-x'\nmax_concurrency = 2\n"
    )
    with mmo.Orchestrator.from_config(tmp_path / "mmo.toml", runlog=":memory:", cache=False) as orc:
        assert orc.max_concurrency_per_provider == 7
        assert orc.catalogue.resolve("slowpoke").max_concurrency == 2
    (tmp_path / "mmo.toml").write_text("[concurrency]\nopenia = 3\n")
    with pytest.raises(mmo.ConfigError, match="neither 'default' nor a provider") as caught:
        load_settings([tmp_path / "mmo.toml"])
    assert "openai" in (caught.value.hint or "")


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_a_limit_that_would_hang_or_mean_nothing_is_refused(limit: object) -> None:
    with pytest.raises(mmo.ConfigError, match="provider_concurrency"):
        mmo.Orchestrator(runlog=":memory:", provider_concurrency={"openai": limit})  # type: ignore[dict-item]


def test_presets_on_different_hosts_do_not_share_a_provider_slot(counter: InFlight) -> None:
    # Groq and OpenRouter are both provider "openai" (here "function"): each host gets the
    # provider's limit of its own, so one busy service never queues calls to another.
    groq = mmo.ModelConfig(
        "function", "counted", name="groq", base_url="https://api.groq.com/openai/v1"
    )
    router = groq.replace(name="router", base_url="https://openrouter.ai/api/v1")
    same_host = groq.replace(name="groq-too", base_url="https://api.groq.com/openai/v1")
    with mmo.Orchestrator(
        [groq, router, same_host], runlog=":memory:", cache=False,
        provider_concurrency={"function": 2},
    ) as orc:  # fmt: skip

        async def both(*models: str) -> None:
            calls = [orc.acomplete("x", model=m) for m in models for _ in range(4)]
            assert {a.status for a in await asyncio.gather(*calls)} == {"ok"}

        asyncio.run(both("groq", "router"))
        assert counter.most == 4  # 2 at each host
        counter.most = 0
        asyncio.run(both("groq", "groq-too"))
        assert counter.most == 2  # one host: one limit, whichever model name
