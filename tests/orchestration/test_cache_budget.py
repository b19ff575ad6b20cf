"""The response cache and budgets, counting what reached the simulated provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PRICE_IN, PRICE_OUT, sim_models

import mmo_magic as mmo
from mmo_magic.core.money import format_usd
from mmo_magic.core.pricing import count_message_tokens
from mmo_magic.storage.cache import CachedAnswer, CacheWarning, ResponseCache


@pytest.fixture
def cached_orc(sim, keys, tmp_path):
    with mmo.Orchestrator(
        sim_models(sim), default_model="oa", runlog=":memory:", cache=tmp_path / "cache.sqlite3"
    ) as o:
        yield o


def test_second_identical_call_is_served_from_the_cache(cached_orc, sim):
    first = cached_orc.complete("What is a monad?", model="an")
    second = cached_orc.complete("What is a monad?", model="an")
    assert sim.request_count() == 1
    assert second.cached and not first.cached
    assert second.content == first.content and second.output_tokens == first.output_tokens
    assert second.cost == 0.0 and first.cost > 0
    cached_flags = [r.cached for r in cached_orc.runs.records()]
    assert cached_flags == [False, True]
    assert cached_orc.runs.records()[-1].cost == 0.0


def test_cache_hits_stream_their_text(cached_orc, sim):
    cached_orc.complete("Stream me", model="oa")
    stream = cached_orc.stream("Stream me", model="oa")
    assert "".join(stream) == stream.response.content and stream.response.cached
    assert sim.request_count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"model": "lo"},
        {"temperature": 0.2},
        {"max_tokens": 7},
        {"system": "Be brief"},
        {"prompt": "Other"},
    ],
)
def test_anything_that_changes_the_output_misses(cached_orc, sim, change):
    base = {"prompt": "Same question", "model": "oa"}
    cached_orc.complete(**base)
    cached_orc.complete(**{**base, **change})
    assert sim.request_count() == 2


def test_calls_with_tools_never_come_from_the_cache(cached_orc, sim):
    # The cache key knows neither tools nor tool-call ids: a cached text answer must not
    # stand in for a tool call, nor a call's id be answered twice.
    def weather(city: str) -> str:
        """The weather in a city now."""
        raise AssertionError("the model asks; the test never runs the tool")

    cached_orc.complete("Weather in Oslo?", model="oa")  # cached, without tools
    first = cached_orc.complete("Weather in Oslo?", model="oa", tools=[weather])
    second = cached_orc.complete("Weather in Oslo?", model="oa", tools=[weather])
    assert [r.cached for r in (first, second)] == [False, False]
    assert first.tool_calls and second.tool_calls
    reply = [{"role": "user", "content": "Weather in Oslo?"}, first.message,
             first.tool_calls[0].result("rain")]  # fmt: skip
    for _ in range(2):  # the conversation holds a tool call: answered by the model each time
        assert not cached_orc.complete(reply, model="oa").cached
    assert sim.request_count() == 5


def test_per_call_and_global_opt_out(cached_orc, sim, monkeypatch):
    cached_orc.complete("hello", model="oa")
    cached_orc.complete("hello", model="oa", cache=False)
    assert sim.request_count() == 2
    monkeypatch.setenv("MMO_CACHE", "off")
    assert mmo.Orchestrator(runlog=":memory:").cache is None
    assert mmo.Orchestrator(runlog=":memory:", cache=False).cache is None


def test_failures_are_not_cached(cached_orc, sim):
    name = "oa:flaky"
    cached_orc.add_model(
        cached_orc.catalogue.resolve("oa").replace(name=name, model_id="sim-flaky")
    )
    with pytest.raises(mmo.ProviderError):
        cached_orc.complete("hi", model=name)
    assert cached_orc.complete("hi", model=name).ok  # sim-flaky fails only once
    assert sim.request_count() == 2


def test_cache_survives_a_new_orchestrator(sim, keys, tmp_path):
    path = tmp_path / "c.sqlite3"
    for _ in range(2):
        with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=path) as orc:
            orc.complete("persist me", model="an")
    assert sim.request_count() == 1


def test_corrupted_cache_file_warns_and_starts_fresh(sim, keys, tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(CacheWarning, match="unreadable"):
        cache = ResponseCache(path)
    assert len(cache) == 0
    assert list(tmp_path.glob("c.sqlite3.corrupt-*"))
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=cache) as orc:
        orc.complete("still works", model="oa")
        orc.complete("still works", model="oa")
    assert sim.request_count() == 1


def test_cache_corrupted_while_open_recovers(tmp_path):
    path = tmp_path / "c.sqlite3"
    cache = ResponseCache(path)
    cache.put("k", CachedAnswer("hello", "stop", 1, 1))
    path.write_bytes(b"garbage" * 1000)  # same file, now unreadable
    with pytest.warns(CacheWarning):
        assert cache.get("k") is None
    cache.put("k", CachedAnswer("again", "stop", 1, 1))
    assert cache.get("k").content == "again"


# -- budgets ----------------------------------------------------------------


def worst_case(prompt: str, max_tokens: int, model_id: str = "sim-fast") -> float:
    return (count_message_tokens([prompt], model_id) * PRICE_IN + max_tokens * PRICE_OUT) / 1000


def test_call_over_the_budget_is_refused_before_sending(sim, keys):
    prompt = "Summarise the history of Rome"
    estimate = worst_case(prompt, 1000)
    with mmo.Orchestrator(
        sim_models(sim), runlog=":memory:", cache=False, budget=estimate * 0.9
    ) as orc:
        with pytest.raises(mmo.BudgetExceededError) as info:
            orc.complete(prompt, model="oa", max_tokens=1000)
        assert info.value.estimate == pytest.approx(estimate)
        assert format_usd(estimate) in str(info.value) and "left" in str(info.value)
        assert sim.request_count() == 0
        record = orc.runs.records()[-1]
        assert (record.status, record.error_type, record.model) == (
            "error",
            "BudgetExceededError",
            "oa",
        )
        # A smaller worst case fits.
        r = orc.complete(prompt, model="oa", max_tokens=100)
        assert r.ok and orc.budget.spent == pytest.approx(r.cost)
        assert orc.budget.left == pytest.approx(estimate * 0.9 - r.cost)


def test_spending_accumulates_until_the_budget_is_gone(sim, keys):
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False, budget=0.002) as orc:
        sent = 0
        with pytest.raises(mmo.BudgetExceededError):
            for _ in range(100):
                orc.complete("one more please", model="oa", max_tokens=50)
                sent += 1
        assert 0 < sent < 100 and sim.request_count() == sent
        assert orc.budget.spent <= 0.002


def test_per_call_budget(orc, sim):
    with pytest.raises(mmo.BudgetExceededError, match="over its budget"):
        orc.complete("hello there", model="an", max_tokens=500, budget=0.0001)
    assert sim.request_count() == 0
    assert orc.complete("hello there", model="an", max_tokens=5, budget=0.01).ok


def test_unpriced_models_under_a_budget_need_an_opt_in(sim, keys):
    free = mmo.ModelConfig("sim", "sim-fast", name="free", base_url=sim.openai_base_url)
    with mmo.Orchestrator([free], runlog=":memory:", cache=False, budget=1.0) as orc:
        with pytest.raises(mmo.BudgetExceededError, match="allow_unpriced=True"):
            orc.complete("hi", model="free")
        assert sim.request_count() == 0
        assert orc.complete("hi", model="free", allow_unpriced=True).cost is None
        assert orc.budget.spent == 0


def test_no_budget_means_no_token_counting_and_no_refusal(orc, sim):
    assert orc.budget.limit is None
    assert orc.complete("x " * 50, model="oa", max_tokens=4000).ok


def test_the_default_orchestrator_does_not_cache(sim, keys, monkeypatch, tmp_path):
    """Re-running a cell calls the model again unless the user turned the cache on."""
    monkeypatch.delenv("MMO_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)  # no mmo.toml
    for orc in (
        mmo.Orchestrator(sim_models(sim), runlog=":memory:"),
        mmo.Orchestrator.from_config(runlog=":memory:"),
    ):
        with orc:
            orc.add_model(sim_models(sim)[0])
            assert orc.cache is None
            first, second = (orc.complete("same prompt", model="oa") for _ in range(2))
            assert not first.cached and not second.cached
    assert sim.request_count() == 4


@pytest.mark.parametrize("setting", ["mmo.toml", "MMO_CACHE"])
def test_the_cache_is_turned_on_by_mmo_cache_or_mmo_toml(sim, keys, monkeypatch, tmp_path, setting):
    path = tmp_path / "c.sqlite3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMO_CACHE", str(path))
    if setting == "mmo.toml":
        (tmp_path / "mmo.toml").write_text(f'cache = "{path}"\n')
        monkeypatch.setenv("MMO_CACHE", "off")  # the environment wins over mmo.toml...
        assert mmo.Orchestrator.from_config(runlog=":memory:").cache is None
        monkeypatch.delenv("MMO_CACHE")  # ...and without it, mmo.toml turns the cache on
    with mmo.Orchestrator.from_config(runlog=":memory:") as orc:
        assert orc.cache is not None and Path(orc.cache.path) == path
        orc.add_model(sim_models(sim)[0])
        assert [orc.complete("q", model="oa").cached for _ in range(2)] == [False, True]
    assert sim.request_count() == 1


def test_comparisons_never_take_answers_from_the_cache_unless_asked(cached_orc, sim):
    cached_orc.complete("compare", model="oa")
    cached_orc.complete("compare", model="an")
    assert sim.request_count() == 2
    race = cached_orc.race("compare", models=["oa", "an"])
    every = cached_orc.all("compare", models=["oa", "an"])
    chosen = cached_orc.consensus("compare", ["oa", "an"], strategy="longest")
    assert not any(r.cached for r in [*race.responses, *every, *chosen.responses])
    assert sim.request_count() >= 2 + 1 + 2 + 2
    asked = cached_orc.all("compare", models=["oa", "an"], cache=True)
    assert [r.cached for r in asked] == [True, True]  # and marked as such
    assert cached_orc.race("compare", models=["oa", "an"], cache=True).winner.cached
