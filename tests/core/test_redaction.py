"""Which values count as secrets, and how short a key may be and still be starred out."""

from __future__ import annotations

import pytest

from mmo_magic.core.redaction import read_key, redact, register_secret


def test_a_short_key_read_for_a_model_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_PROVIDER_KEY", "k3y9x")
    assert read_key("TINY_PROVIDER_KEY") == "k3y9x"
    assert redact("echoed: k3y9x!") == "echoed: ***!"


def test_a_short_registered_secret_is_redacted() -> None:
    register_secret("s3cr")
    assert redact("a s3cr b") == "a *** b"


def test_short_values_of_secret_looking_names_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURE_TOKEN", "on")  # named like a secret, but no model's key
    monkeypatch.setenv("LONGER_API_KEY", "abcdefgh12345")
    assert redact("turn it on; abcdefgh12345") == "turn it on; ***"
