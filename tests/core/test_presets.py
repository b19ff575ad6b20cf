"""Built-in presets for Gemini, OpenAI-compatible hosts and local servers.

Each family is called for real: its catalogue entry with base_url pointed at the
simulated provider's OpenAI wire, through an Orchestrator and the openai SDK.
"""

from __future__ import annotations

import time

import pytest

import mmo_magic as mmo
from mmo_magic.core.catalogue import DEFAULT_MODEL_PREFERENCE, builtin_models
from mmo_magic.core.models import Catalogue, ModelConfig
from mmo_magic.routing.base import ROUTERS

KEY = "sk-preset-test-0123456789abcdef"

# family -> (one preset of it, key variable, base URL)
HOSTED = {
    "gemini": (
        "gemini-2.5-flash",
        "GEMINI_API_KEY",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
    ),
    "openrouter": ("openrouter/gpt-4o-mini", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
    "groq": ("groq/llama-3.3-70b-versatile", "GROQ_API_KEY", "https://api.groq.com/openai/v1"),
    "mistral": ("mistral-small-latest", "MISTRAL_API_KEY", "https://api.mistral.ai/v1"),
    "deepseek": ("deepseek-chat", "DEEPSEEK_API_KEY", "https://api.deepseek.com/v1"),
    "together": ("together/llama-3.3-70b", "TOGETHER_API_KEY", "https://api.together.xyz/v1"),
}
LOCAL = {
    "ollama": ("ollama", "http://localhost:11434/v1"),
    "vllm": ("vllm", "http://localhost:8000/v1"),
    "lmstudio": ("lmstudio", "http://localhost:1234/v1"),
}
KEY_VARS = sorted({var for _, var, _ in HOSTED.values()})


@pytest.fixture
def no_preset_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*KEY_VARS, "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.of(builtin_models())


def presets() -> list[ModelConfig]:
    base_urls = {url for _, _, url in HOSTED.values()} | {url for _, url in LOCAL.values()}
    return [m for m in builtin_models() if m.base_url in base_urls]


def call_through_sim(sim, config: ModelConfig) -> tuple[mmo.CompletionResponse, dict]:
    """Call ``config`` with its base_url pointed at the simulated provider."""
    on_sim = config.replace(base_url=sim.openai_base_url, max_retries=0)
    with mmo.Orchestrator(
        [on_sim], default_model=on_sim.name, runlog=":memory:", cache=False
    ) as orc:
        response = orc.complete("Say hello.", max_tokens=20)
    seen = sim.last_request(config.model_id)
    assert seen is not None, f"the sim saw no request for {config.model_id!r}"
    return response, seen


# -- hosted OpenAI-compatible presets ---------------------------------------------------


@pytest.mark.parametrize("family", HOSTED)
def test_hosted_preset_has_its_host_key_variable_and_description(family, catalogue) -> None:
    name, key_env, base_url = HOSTED[family]
    preset = catalogue.resolve(name)
    provider = "google" if family == "gemini" else "openai"
    assert (preset.provider, preset.api_key_env, preset.base_url) == (provider, key_env, base_url)
    assert base_url in preset.description and key_env in preset.description
    assert preset.tier is not None


@pytest.mark.parametrize("family", HOSTED)
def test_hosted_preset_calls_the_openai_wire_with_its_key_as_bearer(
    family, catalogue, sim, monkeypatch
) -> None:
    name, key_env, _ = HOSTED[family]
    preset = catalogue.resolve(name)
    monkeypatch.setenv(key_env, KEY)
    response, seen = call_through_sim(sim, preset)
    assert response.status == "ok" and response.content
    assert response.model == preset.name
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == preset.model_id
    # The key went as "Authorization: Bearer ..." (the sim redacts its value to ***),
    # not as Anthropic's x-api-key, and nowhere else in the request.
    assert seen["headers"]["authorization"] == "***"
    assert "x-api-key" not in seen["headers"]
    assert KEY not in repr(seen)
    assert (response.cost is not None) == preset.priced


@pytest.mark.parametrize("family", HOSTED)
def test_hosted_preset_without_its_key_is_unavailable_naming_the_variable(
    family, catalogue, no_preset_keys
) -> None:
    name, key_env, _ = HOSTED[family]
    family_models = [m for m in catalogue if m.api_key_env == key_env]
    assert family_models
    for model in family_models:
        assert not model.available
        assert model.unavailable_reason == f"{key_env} not set"
    with (
        mmo.Orchestrator(list(catalogue), runlog=":memory:", cache=False) as orc,
        pytest.raises(mmo.MissingAPIKeyError, match=key_env),
    ):
        orc.complete("hello", model=name)


def test_every_hosted_preset_is_reachable_by_its_typed_names(catalogue) -> None:
    hosted = [m for m in presets() if m.provider in ("openai", "google")]
    assert {m.api_key_env for m in hosted} == set(KEY_VARS)
    for model in hosted:
        for typed in (model.name, *model.aliases):
            assert catalogue.resolve(typed).name == model.name
    assert catalogue.resolve("gemini").name == "gemini-2.5-flash"
    assert catalogue.resolve("deepseek").name == "deepseek-chat"


def test_provider_google_is_gemini_by_default(sim, monkeypatch) -> None:
    # The seed's provider enum names Google: provider="google" needs only a model id.
    config = mmo.ModelConfig("google", "gemini-2.5-flash")
    assert config.api_key_env == "GEMINI_API_KEY"
    assert config.base_url == HOSTED["gemini"][2]
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    response, seen = call_through_sim(sim, config)
    assert response.ok and response.provider == "google"
    assert seen["headers"]["authorization"] == "***"  # the sim saw a key, and keeps it hidden


def test_preset_prices_are_real_or_unpriced_never_zero() -> None:
    for model in presets():
        for price in (model.cost_per_1k_input, model.cost_per_1k_output):
            assert price is None or price > 0, model.name
        assert model.priced or model.cost(1000, 1000) is None


# -- local servers ----------------------------------------------------------------------


@pytest.mark.parametrize("family", LOCAL)
def test_local_preset_needs_no_key_and_calls_the_openai_wire(family, catalogue, sim) -> None:
    name, base_url = LOCAL[family]
    preset = catalogue.resolve(name)
    assert (preset.provider, preset.base_url, preset.api_key_env) == ("local", base_url, None)
    assert not preset.needs_key and not preset.priced
    assert "needs the server running" in preset.description
    response, seen = call_through_sim(sim, preset)
    assert response.status == "ok" and response.content
    assert seen["body"]["model"] == preset.model_id
    assert seen["body"]["max_tokens"] == 20  # OpenAI-compatible servers know max_tokens


def test_local_preset_is_available_only_while_its_server_lists_the_model(catalogue, sim) -> None:
    ollama = catalogue.resolve("ollama")
    served = ollama.replace(base_url=sim.openai_base_url, model_id="sim-fast")
    assert served.available  # the sim lists sim-fast at GET /v1/models
    not_pulled = ollama.replace(base_url=sim.openai_base_url)
    assert not not_pulled.available
    assert f"{ollama.model_id} not served at {sim.openai_base_url}" in (
        not_pulled.unavailable_reason or ""
    )
    down = ollama.replace(base_url="http://127.0.0.1:9/v1")
    assert down.unavailable_reason == "no server running at http://127.0.0.1:9/v1"
    rows = {r["name"]: r for r in Catalogue.of([down]).rows()}
    assert rows["ollama"]["available"] is False
    assert rows["ollama"]["why_unavailable"] == "no server running at http://127.0.0.1:9/v1"


def test_a_stale_server_check_answers_at_once_and_refreshes_in_the_background(
    catalogue, sim, monkeypatch
):
    from mmo_magic.core import catalogue as module

    url = sim.openai_base_url + "/"  # a cache entry of its own
    preset = catalogue.resolve("ollama").replace(base_url=url, model_id="sim-fast")
    stale = (float("-inf"), frozenset[str](), f"no server running at {url}")
    monkeypatch.setitem(module._probes, (url, None), stale)
    assert not preset.available  # the last answer, without waiting for the server
    deadline = time.monotonic() + 3
    while not preset.available:  # the refresh found the sim listing sim-fast
        assert time.monotonic() < deadline, preset.unavailable_reason
        time.sleep(0.01)


def test_a_config_override_of_a_local_preset_keeps_its_server_check(catalogue) -> None:
    from mmo_magic.core.config import model_from_dict

    base = catalogue.resolve("vllm")
    mine = model_from_dict(
        "vllm", {"model_id": "my/model", "base_url": "http://127.0.0.1:9/v1"}, base
    )
    assert mine.model_id == "my/model" and not mine.available


# -- the catalogue, the default model and routers with no keys -------------------------------


def test_models_table_shows_presets_with_why_unavailable(no_preset_keys) -> None:
    pytest.importorskip("pandas")
    with mmo.Orchestrator.from_config(runlog=":memory:", cache=False) as orc:
        df = orc.catalogue.to_dataframe().set_index("name")
    for name, key_env, _ in HOSTED.values():
        assert not df.loc[name, "available"]
        assert df.loc[name, "why_unavailable"] == f"{key_env} not set"
    assert df.loc["gemini-2.5-pro", "context_window"] == 1_048_576
    assert df.loc["gemini-2.5-pro", "usd_per_1m_input"] == pytest.approx(1.25)
    for name, _ in LOCAL.values():
        assert name in df.index


def test_with_no_keys_the_default_model_is_still_embedded_or_simulated(no_preset_keys) -> None:
    preset_names = {m.name for m in presets()}
    assert not preset_names & set(DEFAULT_MODEL_PREFERENCE)
    with mmo.Orchestrator.from_config(runlog=":memory:", cache=False) as orc:
        default = orc.catalogue.resolve(orc.default_model)
    assert default.provider in ("embedded", "sim")


@pytest.mark.parametrize("router", ROUTERS)
def test_routers_never_pick_an_unavailable_preset(router, no_preset_keys) -> None:
    unavailable = {m.name for m in presets() if not m.available}
    with mmo.Orchestrator.from_config(runlog=":memory:", cache=False) as orc:
        for prompt in (
            "hi",
            "Write a Python function that merges two sorted lists.",
            "Prove that there are infinitely many primes, then discuss the history of the proof.",
        ):
            decision = orc.route(prompt, route=router)
            assert decision.model not in unavailable, decision.reason


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("deepseek-chat", "max_tokens"),
        ("mistral-small-latest", "max_tokens"),
        ("together/llama-3.1-8b", "max_tokens"),
        ("openrouter/gpt-4o-mini", "max_tokens"),
        ("gemini-2.5-flash", "max_completion_tokens"),
        ("gpt-4o-mini", "max_completion_tokens"),
    ],
)
def test_each_host_gets_the_max_tokens_field_it_documents(name, field, monkeypatch):
    from mmo_magic.core.catalogue import builtin_models
    from mmo_magic.core.completion import CompletionRequest, Message
    from mmo_magic.providers import make_client

    config = {m.name: m for m in builtin_models()}[name]
    monkeypatch.setenv(config.api_key_env, "sk-test-preset-000000000000")
    body = make_client(config)._body(CompletionRequest((Message("user", "hi"),), max_tokens=9))
    assert body[field] == 9
    assert not ({"max_tokens", "max_completion_tokens"} - {field}) & body.keys()
