"""The built-in catalogue: current OpenAI and Anthropic chat models, and simulated ones.

Prices are the providers' published list prices in USD for standard
(non-batch, non-cached) tokens, converted to per-1k, as of PRICES_AS_OF.
They were not re-checked online when written (no network here): override any
of them in mmo.toml (``[models.gpt-4o] cost_per_1k_input = ...``).
Tiers: 1 = small and cheap, 2 = mid-range, 3 = frontier.
"""

from __future__ import annotations

from .models import ModelConfig

__all__ = ["DEFAULT_MODEL_PREFERENCE", "PRICES_AS_OF", "builtin_models"]

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
        description=f"SmolLM2-135M-Instruct, embedded (llama.cpp), {profile} profile",
    )


def builtin_models() -> list[ModelConfig]:
    """A fresh list of the built-in models."""
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
        _embedded("smollm2", 0.2, "precise"),
        _embedded("smollm2-creative", 0.9, "creative"),
        _sim("sim-fast", "answers at once", 1),
        _sim("sim-slow", "600 ms to first token, 40 tokens/s", 2),
        _sim("sim-echo", "repeats the prompt back", 1),
        _sim("sim-flaky", "fails its first request with 503", 1),
    ]
