"""Keeping API keys out of every message, record, export and log.

Keys are only ever read from the environment, at the moment a client is
built; nothing stores them. ``redact`` is the one scrubber that error
messages and run records go through, in case a provider echoes a key back.

What is matched where (README's reliability section says the same):

- **Free text** (messages, run records, exports, tracebacks): the value of a
  model's key variable (``api_key_env``, ``OPENAI_API_KEY``...) and any
  registered secret, *when it could be a credential*: at least 20 characters,
  or at least 4 mixing two of lowercase, uppercase and digits. ``LOCAL_KEY=ollama``
  is no credential, so "I run ollama" stays as written. Values of other variables
  named like secrets (``*API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``) count
  by the same rule from 8 characters. Provider-shaped keys (``sk-...``) always.
  In any URL: its user:password part, and the values of query parameters named
  like credentials (``key``, ``api_key``, ``token``, ``secret``, ``password``,
  ``sig``...). Credentials found in a model's ``base_url`` (its password and those
  query values) are registered as secrets.
- **URLs and headers we show** (``redact_url``): the user:password part and every
  query value, and any known key exactly, however short.
- **Answers**: a model's own key, by the free-text rule (``StreamRedactor``, which
  also finds a key split across streamed chunks).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterable

__all__ = [
    "StreamRedactor", "could_be_credential", "read_key", "redact", "redact_url", "redactor",
    "register_key_env", "register_secret", "register_url_secrets",
]  # fmt: skip

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
# Any value this long is a credential whatever its characters.
_LONG_KEY_LEN = 20
# user:password@ in a URL, and the value of a query parameter named like a credential.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_\-]*(?:key|token|secret|password|passwd|pwd|auth|signature)"
    r"|sig|code|credential)=)[^&#\s'\"]+"
)
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


def could_be_credential(value: str) -> bool:
    """Whether starring ``value`` out of free text protects anything (see the module docstring).

    A word such as "ollama" or "password" is no credential: starring it out of every
    prompt and answer would rewrite ordinary text and protect nothing.
    """
    if len(value) >= _LONG_KEY_LEN:
        return True
    if len(value) < _MIN_KEY_LEN:
        return False
    kinds = (any(c.islower() for c in value), any(c.isupper() for c in value),
             any(c.isdigit() for c in value))  # fmt: skip
    return sum(kinds) >= 2


def _url_credentials(url: str) -> list[str]:
    """The password and credential-named query values in ``url``."""
    try:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=False)
        password = parts.password
    except ValueError:
        return []
    found = [password] if password else []
    found += [v for k, v in query if _SECRET_QUERY.match(f"?{k}=x")]
    return found


def register_url_secrets(url: str | None) -> None:
    """Register the credentials a URL carries (a ``base_url`` with ``user:pass@`` or ``?key=``)."""
    for value in _url_credentials(url or ""):
        register_secret(value)


def redact_url(url: str) -> str:
    """``url`` as it may be shown: no user:password, every query value and known key starred.

    Exact matching: in a URL, even a short key is a credential.
    """
    if not url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _URL_USERINFO.sub(r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=***" if sep else name
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    shown = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    for value in _secret_values(every=True):
        shown = shown.replace(value, "***")
    return shown


def read_key(env_var: str | None) -> str | None:
    """The key held in ``env_var``, or None when it is unset or blank."""
    if not env_var:
        return None
    register_key_env(env_var)
    value = os.environ.get(env_var, "").strip()
    return value or None


_secret_names: tuple[int, frozenset[str]] = (-1, frozenset())


def _secret_values(*, every: bool = False) -> list[str]:
    """Known secret values, longest first; only those that could be credentials unless
    ``every`` (for URLs and headers, matched exactly)."""
    global _secret_names
    # Scanning every variable name costs ~70 µs; rescan only when variables come or go.
    count, names = _secret_names
    if count != len(os.environ):
        names = frozenset(n for n in os.environ if _SECRET_NAME.search(n))
        _secret_names = (len(os.environ), names)
    values = [v for n in names - _key_envs if len(v := os.environ.get(n, "")) >= _MIN_SECRET_LEN]
    values += [v for n in _key_envs if len(v := os.environ.get(n, "").strip()) >= _MIN_KEY_LEN]
    values.extend(_values)
    if not every:
        values = [v for v in values if could_be_credential(v)]
    # Longest first so a key that contains another is removed whole.
    return sorted(set(values), key=len, reverse=True)


def redactor() -> Callable[[str], str]:
    """A ``redact`` bound to the secrets known now, for scrubbing many texts in one go."""
    values = _secret_values()

    def scrub(text: str) -> str:
        if not text:
            return text
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        # The substring tests are ~50x cheaper than the regexes on text without keys.
        if "sk-" in text:
            text = _KEY_SHAPE.sub("***", text)
        if "://" in text and "@" in text:
            text = _URL_USERINFO.sub(r"\1***@", text)
        if "=" in text:
            text = _SECRET_QUERY.sub(r"\1***", text)
        return text

    return scrub


def redact(text: str) -> str:
    """``text`` with every known secret value and key-shaped string replaced by ``***``."""
    return redactor()(text) if text else text


class StreamRedactor:
    """Stars ``secrets`` out of text that arrives in pieces (streamed deltas), a secret split
    across pieces included: a piece's tail that could begin a secret waits for the next.

    ``feed`` each piece and show what it returns; ``flush`` at the end for what waited.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._held = ""

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def feed(self, text: str) -> str:
        text = self._held + text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        hold = 0
        for secret in self._secrets:
            # The longest tail of text that is the start of a secret (a proper prefix).
            start = max(len(text) - len(secret) + 1, 0)
            while (at := text.find(secret[0], start)) != -1:
                if secret.startswith(text[at:]):
                    hold = max(hold, len(text) - at)
                    break
                start = at + 1
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold] if hold else text

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
