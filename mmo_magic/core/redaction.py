"""Keeping API keys out of every message, record, export and log.

Keys are only ever read from the environment, at the moment a client is
built; nothing stores them. ``redact`` is the one scrubber that error
messages and run records go through, in case a provider echoes a key back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

__all__ = ["read_key", "redact", "redactor", "register_key_env", "register_secret"]

# Variables whose values are secrets even if no model names them.
_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)
# Shapes of provider keys, for keys that came from somewhere other than the environment.
_KEY_SHAPE = re.compile(r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{12,})")
# Values of variables that only *look* secret (by name) count from 8 characters: a
# short value such as FEATURE_TOKEN=on would otherwise be starred out of every text.
# Keys we know are keys (a model's api_key_env, registered secrets) count from 4:
# below that, starring every occurrence would wreck ordinary text for no protection.
_MIN_SECRET_LEN = 8
_MIN_KEY_LEN = 4
_key_envs: set[str] = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
# Secrets that are no variable's whole value (one key of a comma-separated list).
_values: set[str] = set()


def register_key_env(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on."""
    _key_envs.add(name)


def register_secret(value: str) -> None:
    """Treat ``value`` itself as a secret from now on (for keys not held whole in a variable)."""
    if len(value) >= _MIN_KEY_LEN:
        _values.add(value)


def read_key(env_var: str | None) -> str | None:
    """The key held in ``env_var``, or None when it is unset or blank."""
    if not env_var:
        return None
    register_key_env(env_var)
    value = os.environ.get(env_var, "").strip()
    return value or None


_secret_names: tuple[int, frozenset[str]] = (-1, frozenset())


def _secret_values() -> list[str]:
    global _secret_names
    # Scanning every variable name costs ~70 µs; rescan only when variables come or go.
    count, names = _secret_names
    if count != len(os.environ):
        names = frozenset(n for n in os.environ if _SECRET_NAME.search(n))
        _secret_names = (len(os.environ), names)
    values = [v for n in names - _key_envs if len(v := os.environ.get(n, "")) >= _MIN_SECRET_LEN]
    values += [v for n in _key_envs if len(v := os.environ.get(n, "").strip()) >= _MIN_KEY_LEN]
    values.extend(_values)
    # Longest first so a key that contains another is removed whole.
    return sorted(values, key=len, reverse=True)


def redactor() -> Callable[[str], str]:
    """A ``redact`` bound to the secrets known now, for scrubbing many texts in one go."""
    values = _secret_values()

    def scrub(text: str) -> str:
        if not text:
            return text
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        # The substring test is ~50x cheaper than the regex on text without keys.
        return _KEY_SHAPE.sub("***", text) if "sk-" in text else text

    return scrub


def redact(text: str) -> str:
    """``text`` with every known secret value and key-shaped string replaced by ``***``."""
    return redactor()(text) if text else text
