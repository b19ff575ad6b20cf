"""Model clients: one async interface over every provider."""

from __future__ import annotations

from ..core.errors import ConfigError
from ..core.models import ModelConfig
from .base import ModelClient, StreamItem

__all__ = ["ModelClient", "StreamItem", "make_client"]


def make_client(config: ModelConfig) -> ModelClient:
    """The client for ``config.provider``. Raises MissingAPIKeyError when its key is unset."""
    if config.provider == "openai":
        from .openai import OpenAIClient

        return OpenAIClient(config)
    if config.provider == "anthropic":
        from .anthropic import AnthropicClient

        return AnthropicClient(config)
    if config.provider == "local":
        if not config.base_url:
            raise ConfigError(
                f"Model {config.name!r} (provider local) needs a base_url.",
                hint='For Ollama: base_url = "http://localhost:11434/v1".',
            )
        from .openai import LocalClient

        return LocalClient(config)
    if config.provider == "sim":
        from .sim import SimClient

        return SimClient(config)
    if config.provider == "embedded":
        from .embedded import EmbeddedClient

        return EmbeddedClient(config)
    raise ConfigError(
        f"Model {config.name!r}: provider {config.provider!r} has no client in this version."
    )
