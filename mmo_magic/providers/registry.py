"""Which client class serves which provider name: the one place to add a provider."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..core.errors import ConfigError
from ..core.models import ModelConfig
from .base import ModelClient

__all__ = ["ClientFactory", "make_client", "register_provider"]

ClientFactory = Callable[[ModelConfig], ModelClient]

# provider -> "module:Class" under this package, imported on first use: most sessions
# need one or two providers, and each SDK costs tens of milliseconds to import.
_BUILTIN = {
    "openai": "openai:OpenAIClient",
    "anthropic": "anthropic:AnthropicClient",
    "google": "openai:OpenAIClient",  # Gemini's OpenAI-compatible endpoint
    "local": "openai:LocalClient",
    "sim": "sim:SimClient",
    "embedded": "embedded:EmbeddedClient",
    "function": "function:FunctionClient",
}
_registered: dict[str, ClientFactory] = {}


def register_provider(name: str, factory: ClientFactory) -> None:
    """Serve ``ModelConfig(provider=name, ...)`` with ``factory(config)``."""
    _registered[name] = factory


def make_client(config: ModelConfig) -> ModelClient:
    """The client for ``config.provider``. Raises MissingAPIKeyError when its key is unset."""
    if (factory := _registered.get(config.provider)) is not None:
        return factory(config)
    if config.provider == "local" and not config.base_url:
        raise ConfigError(
            f"Model {config.name!r} (provider local) needs a base_url.",
            hint='For Ollama: base_url = "http://localhost:11434/v1".',
        )
    if (where := _BUILTIN.get(config.provider)) is None:
        raise ConfigError(
            f"Model {config.name!r}: provider {config.provider!r} has no client in this version."
        )
    module, _, name = where.partition(":")
    client_class = getattr(importlib.import_module(f".{module}", __package__), name)
    return client_class(config)
