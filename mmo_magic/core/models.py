"""ModelConfig (what a model is and costs) and the Catalogue that resolves names."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, UnknownModelError
from .redaction import read_key, redact_url, register_url_secrets

__all__ = ["PROVIDERS", "Catalogue", "ModelConfig"]

# "function": a Python function registered in-process (mmo_magic.providers.function).
PROVIDERS = ("openai", "anthropic", "google", "local", "sim", "embedded", "function")
_DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GEMINI_API_KEY",
}
# "google" is Gemini through its OpenAI-compatible endpoint (the same wire as "openai").
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
_DEFAULT_BASE_URL = {"google": GEMINI_BASE_URL}


@dataclass(frozen=True)
class ModelConfig:
    """One model users can call by ``name`` (or an alias).

    Prices are USD per 1,000 tokens; ``None`` means unpriced, and the cost of
    its calls is reported as missing. ``api_key_env`` is the *name* of the
    environment variable holding the key: keys themselves are never stored.
    ``temperature=None`` leaves the provider's default (reasoning models
    accept no other).
    """

    provider: str
    model_id: str
    max_tokens: int = 1024
    temperature: float | None = None
    cost_per_1k_input: float | None = None
    cost_per_1k_output: float | None = None
    name: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    context_window: int | None = None
    timeout_s: float = 120.0
    ttft_timeout_s: float | None = None
    stall_timeout_s: float | None = None
    max_retries: int = 2
    max_concurrency: int | None = None  # calls in flight to this model; None: only the provider's
    # What a batch sends this model at most (a provider's rate limits): see evaluation.limits.
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    fallbacks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    tier: int | None = None
    description: str = ""
    # Whether the model takes images (and documents): None is its provider's default (all
    # but the embedded model); the catalogue marks text-only models False.
    vision: bool | None = None
    # A reasoning model: it takes reasoning_effort / thinking_budget, and may be silent
    # while it thinks (no time-to-first-token deadline before its first visible token).
    reasoning: bool = False
    # An embedding model: orc.embed takes it, and chat calls refuse it.
    embedding: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: defaults derived from other fields are filled here
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"Model {self.name or self.model_id!r}: unknown provider {self.provider!r}.",
                hint=f"Use one of {', '.join(PROVIDERS)}.",
            )
        if not self.model_id:
            raise ConfigError("A model needs a non-empty model_id.")
        if not self.name:
            set_(self, "name", self.model_id)
        if self.api_key_env is None and self.provider in _DEFAULT_KEY_ENV:
            set_(self, "api_key_env", _DEFAULT_KEY_ENV[self.provider])
        if self.base_url is None and self.provider in _DEFAULT_BASE_URL:
            set_(self, "base_url", _DEFAULT_BASE_URL[self.provider])
        # A password or key in the URL (user:pass@host, ?key=...) is a secret from now on.
        register_url_secrets(self.base_url)
        for names in ("fallbacks", "aliases"):
            set_(self, names, _model_names(self.name, names, getattr(self, names)))
        for flag in ("reasoning", "embedding"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"Model {self.name!r}: {flag} must be true or false, "
                                  f"got {getattr(self, flag)!r}.")  # fmt: skip
        if self.vision is not None and not isinstance(self.vision, bool):
            raise ConfigError(f"Model {self.name!r}: vision must be true or false, "
                              f"got {self.vision!r}.")  # fmt: skip
        for field_name, (kind, low, low_allowed, optional) in _NUMBERS.items():
            _check_number(self.name, field_name, getattr(self, field_name), kind, low, low_allowed,
                          optional)  # fmt: skip

    def __repr__(self) -> str:
        # The dataclass repr, with base_url as it may be shown (no user:password or query values).
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "base_url" and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"ModelConfig({', '.join(shown)})"

    @property
    def priced(self) -> bool:
        return self.cost_per_1k_input is not None and self.cost_per_1k_output is not None

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """USD for this usage, or None when unpriced or the usage is unknown."""
        if not self.priced or not _is_count(input_tokens) or not _is_count(output_tokens):
            # Unknown, or no count at all (text, negative: a provider's bug): never a price.
            return None
        assert input_tokens is not None and output_tokens is not None
        assert self.cost_per_1k_input is not None and self.cost_per_1k_output is not None
        return (
            input_tokens * self.cost_per_1k_input + output_tokens * self.cost_per_1k_output
        ) / 1000

    @property
    def sees(self) -> bool:
        """Whether the model takes image and document parts."""
        return self.vision if self.vision is not None else self.provider != "embedded"

    @property
    def needs_key(self) -> bool:
        """Whether calls fail without a key (local servers take one optionally)."""
        return self.provider in _DEFAULT_KEY_ENV

    @property
    def available(self) -> bool:
        """True when a call could be sent now (its key, if it needs one, is set)."""
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        if self.needs_key and read_key(self.api_key_env) is None:
            return f"{self.api_key_env} not set"
        if self.provider == "embedded":
            from .local_model import missing_reason

            return missing_reason()
        return None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# field -> (type, lowest value, whether the lowest value itself is allowed, None allowed)
_NUMBERS: dict[str, tuple[type, float, bool, bool]] = {
    "max_tokens": (int, 1, True, False),
    "temperature": (float, 0, True, True),
    "cost_per_1k_input": (float, 0, True, True),
    "cost_per_1k_output": (float, 0, True, True),
    "context_window": (int, 1, True, True),
    "timeout_s": (float, 0, False, False),
    "ttft_timeout_s": (float, 0, False, True),
    "stall_timeout_s": (float, 0, False, True),
    "max_retries": (int, 0, True, False),
    "max_concurrency": (int, 1, True, True),
    "requests_per_minute": (float, 0, False, True),
    "tokens_per_minute": (float, 0, False, True),
    "tier": (int, 0, True, True),
}


def _check_number(
    model: str, name: str, value: Any, kind: type, low: float, low_allowed: bool, optional: bool
) -> None:
    """A finite number of the right kind at or above its bound (NaN would silently disable it)."""
    if value is None and optional:
        return
    right_kind = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not right_kind or not math.isfinite(value):
        wanted = "a whole number" if kind is int else "a finite number"
        raise ConfigError(f"Model {model!r}: {name} must be {wanted}, got {value!r}.")
    if value < low or (value == low and not low_allowed):
        bound = f">= {low:g}" if low_allowed else f"> {low:g}"
        raise ConfigError(f"Model {model!r}: {name} must be {bound}, got {value!r}.")


def _model_names(model: str, field_name: str, value: Any) -> tuple[str, ...]:
    # A lone string is one name: tuple("fast2") would be five one-letter models.
    names = (value,) if isinstance(value, str) else tuple(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"Model {model!r}: {field_name} must be model names, got {name!r}.",
                hint=f'For example {field_name}=["gpt-4o-mini"].',
            )
    return names


@dataclass
class Catalogue:
    """Models by name, with aliases; resolves what users type."""

    _models: dict[str, ModelConfig] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, models: Iterable[ModelConfig]) -> Catalogue:
        catalogue = cls()
        for m in models:
            catalogue.add(m)
        return catalogue

    def add(self, model: ModelConfig) -> None:
        """Add ``model``, replacing any model of the same name."""
        old = self._models.pop(model.name, None)
        if old is not None:
            for alias in old.aliases:
                self._aliases.pop(alias, None)
        self._models[model.name] = model
        for alias in model.aliases:
            self._aliases[alias] = model.name

    def resolve(self, name: str) -> ModelConfig:
        """The model called ``name`` (or aliased so); UnknownModelError otherwise."""
        model = self._models.get(name) or self._models.get(self._aliases.get(name, ""))
        if model is None:
            lowered = name.lower()
            model = self._models.get(lowered) or self._models.get(self._aliases.get(lowered, ""))
        if model is None and "?" in name:
            model = self._with_options(name)
        if model is None:
            raise UnknownModelError(name, [*self._models, *self._aliases])
        return model

    def _with_options(self, name: str) -> ModelConfig | None:
        """``NAME?options`` for a simulated model NAME: a copy sending the options.

        The simulated provider reads behaviour from the model name it is sent
        (``sim-fast?fail=429``), so the options belong to the model_id.
        """
        base_name, _, options = name.partition("?")
        try:
            base = self.resolve(base_name)
        except UnknownModelError:
            return None
        if base.provider != "sim" or not options:
            return None
        joiner = "&" if "?" in base.model_id else "?"
        return base.replace(name=name, model_id=f"{base.model_id}{joiner}{options}", aliases=())

    def __contains__(self, name: object) -> bool:
        return name in self._models or name in self._aliases

    def __iter__(self) -> Iterator[ModelConfig]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def names(self) -> list[str]:
        return list(self._models)

    def available(self) -> list[ModelConfig]:
        return [m for m in self if m.available]

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per model: what %mmo_models and to_dataframe show."""
        return [
            {
                "name": m.name,
                "provider": m.provider,
                "model_id": m.model_id,
                "available": m.available,
                "why_unavailable": m.unavailable_reason,
                "usd_per_1m_input": None
                if m.cost_per_1k_input is None
                else m.cost_per_1k_input * 1000,
                "usd_per_1m_output": None
                if m.cost_per_1k_output is None
                else m.cost_per_1k_output * 1000,
                "context_window": m.context_window,
                "tier": m.tier,
                "aliases": ", ".join(m.aliases),
            }
            for m in self
        ]

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows()).convert_dtypes()


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
