"""The built-in catalogue: current OpenAI and Anthropic chat models, presets for
Gemini and common OpenAI-compatible hosts and local servers, and simulated models.

Prices are the providers' published list prices in USD for standard
(non-batch, non-cached) tokens, converted to per-1k, as of PRICES_AS_OF.
They were not re-checked online when written (no network here): override any
of them in mmo.toml (``[models.gpt-4o] cost_per_1k_input = ...``). Where a
price was not known with confidence it is None (unpriced: cost reported as
missing, never 0), with a comment saying why.
Tiers: 1 = small and cheap, 2 = mid-range, 3 = frontier.

Hosted OpenAI-compatible presets use provider "openai" with the host's
``base_url`` and key variable, so they are unavailable (naming the variable)
until it is set. Local-server presets use provider "local" (no key) and are
available only while a server at their ``base_url`` lists their model.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlsplit

from .models import GEMINI_BASE_URL, ModelConfig
from .redaction import read_key, redact_url

__all__ = [
    "DEFAULT_EMBEDDING_PREFERENCE",
    "DEFAULT_MODEL_PREFERENCE",
    "PRICES_AS_OF",
    "LocalServerModel",
    "builtin_embedding_models",
    "builtin_models",
]

PRICES_AS_OF = "2025-11"

# The default model when the config names none: the first of these that is available
# (its key is set). With no key the embedded model answers for real; the simulated
# provider is the last resort.
DEFAULT_MODEL_PREFERENCE = ("gpt-4o-mini", "claude-haiku-4-5", "smollm2", "sim-fast")


def _per_1m(
    provider: str,
    name: str,
    model_id: str,
    usd_in_1m: float,
    usd_out_1m: float,
    context: int,
    tier: int,
    aliases: tuple[str, ...] = (),
    description: str = "",
) -> ModelConfig:
    return ModelConfig(
        provider=provider,
        model_id=model_id,
        name=name,
        cost_per_1k_input=usd_in_1m / 1000,
        cost_per_1k_output=usd_out_1m / 1000,
        context_window=context,
        tier=tier,
        aliases=aliases,
        description=description,
    )


def _sim(name: str, description: str, tier: int) -> ModelConfig:
    # Priced like a small hosted model so cost columns have something to show.
    return ModelConfig(
        provider="sim",
        model_id=name,
        name=name,
        cost_per_1k_input=0.0005,
        cost_per_1k_output=0.0015,
        context_window=32_000,
        tier=tier,
        description=f"SIMULATED: {description}",
    )


def _embedded(name: str, temperature: float, profile: str) -> ModelConfig:
    # Profiles of one small local model, so races and judges have several local
    # contestants; free to run (cost 0.0, not unpriced).
    return ModelConfig(
        provider="embedded",
        model_id="SmolLM2-135M-Instruct",
        name=name,
        temperature=temperature,
        max_tokens=256,
        cost_per_1k_input=0.0,
        cost_per_1k_output=0.0,
        context_window=2048,
        tier=1,
        vision=False,
        description=f"SmolLM2-135M-Instruct, embedded (llama.cpp), {profile} profile",
    )


# OpenAI-compatible hosts: host -> (who, key variable, base URL).
_HOSTS = {
    "gemini": ("Google Gemini", "GEMINI_API_KEY", GEMINI_BASE_URL),
    "openrouter": ("OpenRouter", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
    "groq": ("Groq", "GROQ_API_KEY", "https://api.groq.com/openai/v1"),
    "mistral": ("Mistral", "MISTRAL_API_KEY", "https://api.mistral.ai/v1"),
    "deepseek": ("DeepSeek", "DEEPSEEK_API_KEY", "https://api.deepseek.com/v1"),
    "together": ("Together AI", "TOGETHER_API_KEY", "https://api.together.xyz/v1"),
}


def _hosted(
    host: str,
    name: str,
    model_id: str,
    usd_in_1m: float | None,
    usd_out_1m: float | None,
    context: int | None,
    tier: int,
    aliases: tuple[str, ...] = (),
) -> ModelConfig:
    """A model on an OpenAI-compatible host at its base URL (provider "openai"; Gemini's
    is "google", the same wire), unavailable until the host's key variable is set. A
    price of None is unpriced."""
    who, key_env, base_url = _HOSTS[host]
    return ModelConfig(
        provider="google" if host == "gemini" else "openai",
        model_id=model_id,
        name=name,
        base_url=base_url,
        api_key_env=key_env,
        cost_per_1k_input=None if usd_in_1m is None else usd_in_1m / 1000,
        cost_per_1k_output=None if usd_out_1m is None else usd_out_1m / 1000,
        context_window=context,
        tier=tier,
        aliases=aliases,
        description=f"{model_id} on {who} (OpenAI-compatible API at {base_url}, key {key_env})",
    )


def _gemini(name: str, usd_in: float, usd_out: float, tier: int, *aliases: str) -> ModelConfig:
    # 1M-token context. 2.5 Pro's prices are for prompts up to 200k tokens (longer
    # prompts cost 2.50 in / 15.00 out per 1M): the catalogue holds one price.
    return _hosted("gemini", name, name, usd_in, usd_out, 1_048_576, tier, aliases)


def _openrouter(
    name: str, model_id: str, usd_in: float | None, usd_out: float | None, context: int | None,
    tier: int, *aliases: str,
) -> ModelConfig:  # fmt: skip
    # OpenRouter's model ids are "vendor/model"; its list prices are the vendor's.
    return _hosted("openrouter", f"openrouter/{name}", model_id, usd_in, usd_out, context, tier,
                   aliases)  # fmt: skip


def _groq(model_id: str, usd_in: float, usd_out: float, tier: int, *aliases: str) -> ModelConfig:
    return _hosted("groq", f"groq/{model_id}", model_id, usd_in, usd_out, 131_072, tier, aliases)


def _mistral(
    model_id: str, usd_in: float | None, usd_out: float | None, context: int | None, tier: int,
    *aliases: str,
) -> ModelConfig:  # fmt: skip
    return _hosted("mistral", model_id, model_id, usd_in, usd_out, context, tier, aliases)


def _deepseek(model_id: str, tier: int, *aliases: str) -> ModelConfig:
    # deepseek-chat and deepseek-reasoner are DeepSeek-V3.2 (non-thinking and thinking
    # modes), priced alike since 2025-09: 0.28 per 1M input (cache miss), 0.42 output.
    return _hosted("deepseek", model_id, model_id, 0.28, 0.42, 128_000, tier, aliases)


def _together(name: str, model_id: str, usd_in: float, usd_out: float, tier: int) -> ModelConfig:
    return _hosted("together", f"together/{name}", model_id, usd_in, usd_out, 131_072, tier)


# -- local OpenAI-compatible servers ----------------------------------------------

_PROBE_TTL_S = 5.0  # after this a server check is refreshed (routers ask on every request)
_PROBE_TIMEOUT_S = 0.3
_probes: dict[tuple[str, str | None], tuple[float, frozenset[str], str | None]] = {}
_probes_lock = threading.Lock()
_refreshing: set[tuple[str, str | None]] = set()


class LocalServerModel(ModelConfig):
    """A preset for a server on this machine (Ollama, vLLM, LM Studio): provider "local".

    It needs no key, but it is *available* only while a server answers at
    ``base_url`` and lists ``model_id`` among its models, so routers and the
    default model never pick a server that is not running (or a model it has
    not pulled). Calling it by name always sends the request.
    """

    @property
    def unavailable_reason(self) -> str | None:
        why = super().unavailable_reason
        if why is not None or not self.base_url:
            return why
        served, error = _served_models(self.base_url, self.api_key_env)
        if error is not None:
            return error
        if self.model_id in served or f"{self.model_id}:latest" in served:  # Ollama's tags
            return None
        listed = ", ".join(sorted(served)[:5]) or "none"
        return f"{self.model_id} not served at {redact_url(self.base_url)} (it serves: {listed})"


def _served_models(base_url: str, key_env: str | None) -> tuple[frozenset[str], str | None]:
    """The model ids ``GET {base_url}/models`` lists, or why it listed none.

    Only the first check of a server waits for it; later ones answer from the
    last result and refresh it in a thread, so routing (on the event loop) and
    a gateway listing its models never stall on a probe.
    """
    key = (base_url, key_env)
    with _probes_lock:
        cached = _probes.get(key)
        stale = cached is not None and time.monotonic() - cached[0] >= _PROBE_TTL_S
        refresh = stale and key not in _refreshing
        if refresh:
            _refreshing.add(key)
    if cached is None:
        served, error = _probe(base_url, key_env)
        _store(key, served, error)
        return served, error
    if refresh:
        threading.Thread(target=_refresh, args=(key,), daemon=True, name="mmo-probe").start()
    return cached[1], cached[2]


def _store(key: tuple[str, str | None], served: frozenset[str], error: str | None) -> None:
    with _probes_lock:
        _probes[key] = (time.monotonic(), served, error)
        _refreshing.discard(key)


def _refresh(key: tuple[str, str | None]) -> None:
    try:
        _store(key, *_probe(*key))
    finally:
        with _probes_lock:
            _refreshing.discard(key)


def _probe(base_url: str, key_env: str | None) -> tuple[frozenset[str], str | None]:
    import urllib.error
    import urllib.request

    parts = urlsplit(base_url)  # a ?key=... stays after the path, not before /models
    url = parts._replace(path=parts.path.rstrip("/") + "/models").geturl()
    if urlsplit(url).scheme not in ("http", "https"):
        return frozenset(), f"no server at {redact_url(base_url)}"
    request = urllib.request.Request(url)
    if (key := read_key(key_env)) is not None:  # a server started with a key (vllm --api-key)
        request.add_header("Authorization", f"Bearer {key}")
    # No proxy: a local server is reached directly, whatever HTTP_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=_PROBE_TIMEOUT_S) as response:
            page = json.loads(response.read(1_000_000))
        ids = frozenset(
            str(m["id"]) for m in page.get("data") or () if isinstance(m, dict) and "id" in m
        )
    except urllib.error.HTTPError as exc:
        # 401: perhaps another service on the port; unknown, so not offered to routers.
        shown = redact_url(base_url)
        return frozenset(), f"server at {shown} answered HTTP {exc.code} to GET /models"
    except (OSError, ValueError, AttributeError, TypeError):
        return frozenset(), f"no server running at {redact_url(base_url)}"
    return ids, None


def _local(server: str, name: str, model_id: str, base_url: str, *aliases: str) -> ModelConfig:
    # Free to run but unpriced (None): what a local model costs is the user's hardware.
    return LocalServerModel(
        provider="local",
        model_id=model_id,
        name=name,
        base_url=base_url,
        aliases=aliases,
        description=(
            f"{server} on this machine at {base_url} (needs the server running; "
            f"model {model_id!r}: override model_id for another model)"
        ),
    )


# The embedding model orc.embed uses when none is named: the first available.
DEFAULT_EMBEDDING_PREFERENCE = ("text-embedding-3-small", "smollm2-embed")


def builtin_embedding_models() -> list[ModelConfig]:
    """Embedding models (``embedding=True``), kept out of the chat catalogue so that no
    router picks one for a chat. Embeddings bill input only (output priced 0.0)."""

    def openai(name: str, usd_in_1m: float, tier: int) -> ModelConfig:
        return ModelConfig("openai", name, name=name, cost_per_1k_input=usd_in_1m / 1000,
                           cost_per_1k_output=0.0, context_window=8191, tier=tier,
                           embedding=True, vision=False)  # fmt: skip

    return [
        openai("text-embedding-3-small", 0.02, 1),
        openai("text-embedding-3-large", 0.13, 2),
        ModelConfig(
            "embedded", "SmolLM2-135M-Instruct", name="smollm2-embed", cost_per_1k_input=0.0,
            cost_per_1k_output=0.0, context_window=2048, tier=1, embedding=True, vision=False,
            description="SmolLM2-135M-Instruct in llama.cpp's embedding mode (mean-pooled, "
            "576 dimensions): offline, for demos and tests more than for retrieval quality",
        ),
    ]  # fmt: skip


# Models that take text only (no images): a prompt with an image refuses before sending.
# The local-server presets are text models as shipped (another model_id may see: set
# vision = true in mmo.toml).
_TEXT_ONLY = frozenset({
    "groq/llama-3.3-70b-versatile", "groq/llama-3.1-8b-instant", "deepseek-chat",
    "deepseek-reasoner", "together/llama-3.3-70b", "together/llama-3.1-8b", "ollama",
    "vllm", "lmstudio", "smollm2", "smollm2-creative",
})  # fmt: skip


# Reasoning models: they take reasoning_effort / thinking_budget (OpenAI's reasoning models
# and Gemini 2.5 take reasoning_effort; Claude 4 models extended thinking).
_REASONING = frozenset({
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini", "claude-opus-4-5",
    "claude-opus-4-1", "claude-sonnet-4-5", "claude-sonnet-4", "claude-haiku-4-5",
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
})  # fmt: skip


def builtin_models() -> list[ModelConfig]:
    """A fresh list of the built-in models."""
    out = []
    for m in _models():
        if m.name in _TEXT_ONLY:
            m = m.replace(vision=False)
        if m.name in _REASONING:
            m = m.replace(reasoning=True)
        out.append(m)
    return out


def _models() -> list[ModelConfig]:
    openai = "openai"
    anthropic = "anthropic"
    return [
        _per_1m(openai, "gpt-5", "gpt-5", 1.25, 10.00, 400_000, 3, ("gpt5",)),
        _per_1m(openai, "gpt-5-mini", "gpt-5-mini", 0.25, 2.00, 400_000, 2, ("gpt5-mini",)),
        _per_1m(openai, "gpt-5-nano", "gpt-5-nano", 0.05, 0.40, 400_000, 1, ("gpt5-nano",)),
        _per_1m(openai, "gpt-4.1", "gpt-4.1", 2.00, 8.00, 1_047_576, 3),
        _per_1m(openai, "gpt-4.1-mini", "gpt-4.1-mini", 0.40, 1.60, 1_047_576, 2),
        _per_1m(openai, "gpt-4.1-nano", "gpt-4.1-nano", 0.10, 0.40, 1_047_576, 1),
        _per_1m(openai, "gpt-4o", "gpt-4o", 2.50, 10.00, 128_000, 3, ("4o",)),
        _per_1m(openai, "gpt-4o-mini", "gpt-4o-mini", 0.15, 0.60, 128_000, 1, ("4o-mini",)),
        _per_1m(openai, "o3", "o3", 2.00, 8.00, 200_000, 3),
        _per_1m(openai, "o4-mini", "o4-mini", 1.10, 4.40, 200_000, 2),
        _per_1m(
            anthropic,
            "claude-opus-4-5",
            "claude-opus-4-5-20251101",
            5.00,
            25.00,
            200_000,
            3,
            ("opus", "claude-opus"),
        ),
        _per_1m(anthropic, "claude-opus-4-1", "claude-opus-4-1-20250805", 15.00, 75.00, 200_000, 3),
        _per_1m(
            anthropic,
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            3.00,
            15.00,
            200_000,
            3,
            ("sonnet", "claude-sonnet"),
        ),
        _per_1m(anthropic, "claude-sonnet-4", "claude-sonnet-4-20250514", 3.00, 15.00, 200_000, 3),
        _per_1m(
            anthropic,
            "claude-haiku-4-5",
            "claude-haiku-4-5-20251001",
            1.00,
            5.00,
            200_000,
            2,
            ("haiku", "claude-haiku"),
        ),
        _per_1m(anthropic, "claude-3-5-haiku", "claude-3-5-haiku-20241022", 0.80, 4.00, 200_000, 1),
        # Google Gemini (OpenAI-compatible endpoint), GEMINI_API_KEY.
        _gemini("gemini-2.5-pro", 1.25, 10.00, 3, "gemini-pro"),
        _gemini("gemini-2.5-flash", 0.30, 2.50, 2, "gemini-flash", "gemini"),
        _gemini("gemini-2.5-flash-lite", 0.10, 0.40, 1, "gemini-flash-lite"),
        # OpenRouter, OPENROUTER_API_KEY: model ids are "vendor/model".
        _openrouter("gpt-4o-mini", "openai/gpt-4o-mini", 0.15, 0.60, 128_000, 1),
        # openrouter/auto picks a model per request: no single price or context window.
        _openrouter("auto", "openrouter/auto", None, None, None, 2),
        # Groq, GROQ_API_KEY.
        _groq("llama-3.3-70b-versatile", 0.59, 0.79, 2, "groq/llama-3.3-70b"),
        _groq("llama-3.1-8b-instant", 0.05, 0.08, 1, "groq/llama-3.1-8b"),
        # Mistral, MISTRAL_API_KEY. mistral-large-latest moves to each new Large release
        # and its price changes with it (2411: 2.00 / 6.00 per 1M): left unpriced.
        _mistral("mistral-large-latest", None, None, None, 3, "mistral-large"),
        _mistral("mistral-small-latest", 0.10, 0.30, 128_000, 1, "mistral-small"),
        # DeepSeek, DEEPSEEK_API_KEY.
        _deepseek("deepseek-chat", 2, "deepseek"),
        _deepseek("deepseek-reasoner", 3),
        # Together AI, TOGETHER_API_KEY.
        _together("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 0.88, 0.88, 2),
        _together("llama-3.1-8b", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", 0.18, 0.18, 1),
        # Local servers (no key; available while the server runs and lists the model).
        _local("Ollama", "ollama", "llama3.2", "http://localhost:11434/v1", "ollama/llama3.2"),
        _local("vLLM", "vllm", "Qwen/Qwen2.5-1.5B-Instruct", "http://localhost:8000/v1"),
        _local(
            "LM Studio",
            "lmstudio",
            "llama-3.2-3b-instruct",
            "http://localhost:1234/v1",
            "lm-studio",
        ),
        _embedded("smollm2", 0.2, "precise"),
        _embedded("smollm2-creative", 0.9, "creative"),
        _sim("sim-fast", "answers at once", 1),
        _sim("sim-slow", "600 ms to first token, 40 tokens/s", 2),
        _sim("sim-echo", "repeats the prompt back", 1),
        _sim("sim-flaky", "fails its first request with 503", 1),
    ]
