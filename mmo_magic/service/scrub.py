"""Text the service sends but did not write (errors from providers, names from requests).

- **Upstream addresses are hidden.** A provider's error may name its base URL
  ("could not connect to http://10.0.0.7:8080/v1"); clients of the service
  must not learn where its upstreams live. ``Scrubber`` rewrites every URL,
  host and ``host:port`` of a configured model's ``base_url`` as
  ``[upstream]``; the server's own log keeps the full message.
- **Echoes are short.** A quoted value over ``ECHO_LIMIT`` characters (a
  100 KB model name, say) is cut to its first ``ECHO_LIMIT`` characters and
  "…", and a whole message to ``MESSAGE_LIMIT``: a request never gets its
  own large input back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ..core.models import ModelConfig

__all__ = ["ECHO_LIMIT", "HIDDEN", "MESSAGE_LIMIT", "Scrubber", "shorten"]

HIDDEN = "[upstream]"
ECHO_LIMIT = 64  # characters of a quoted value a message keeps
MESSAGE_LIMIT = 2000  # characters of a whole message
# A quoted value (as repr writes it) longer than ECHO_LIMIT, standing alone: not a contraction.
_ESCAPED = r"(?:[^{q}\\\n]|\\.)"
_LONG_QUOTED = re.compile(
    "|".join(
        rf"(?<![\w'\"]){q}{_ESCAPED.format(q=q)}{{{ECHO_LIMIT + 1},}}?{q}(?![\w'\"])"
        for q in ("'", '"')
    )
)


def _cut(match: re.Match[str]) -> str:
    quoted = match.group(0)
    kept = quoted[1 : ECHO_LIMIT + 1]
    trailing = len(kept) - len(kept.rstrip("\\"))
    if trailing % 2:  # never end on half an escape
        kept = kept[:-1]
    return f"{quoted[0]}{kept}…{quoted[0]}"


def shorten(text: str) -> str:
    """``text`` with long quoted values cut to ``ECHO_LIMIT`` characters, and at most
    ``MESSAGE_LIMIT`` characters long."""
    if len(text) > ECHO_LIMIT:
        text = _LONG_QUOTED.sub(_cut, text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# What may follow a host in a URL or an address: a port, then a path up to a space, a quote,
# or punctuation ending it ("http://host/v1: refused").
_PATH = r"[^\s'\"<>()\[\]{},;:.]"
_TAIL = rf"(?::\d+)?(?:/(?:{_PATH}|[:.](?={_PATH}))*)?"


# Before a host: a scheme, then user info ("https://user:pw@"); searched backwards from a host
# found, within _HEAD_MAX characters, so that scrubbing stays linear in the text's length.
_HEAD = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?(?:[^\s/@'\"]*@)?\Z", re.IGNORECASE)
_HEAD_MAX = 100


class Scrubber:
    """``scrubber(text)``: ``text`` with the configured models' base URLs and hosts replaced
    by ``[upstream]``, then shortened.

    ``models`` is called for each text (so models added later are covered
    too); a distinct set of base URLs is compiled once.
    """

    def __init__(self, models: Callable[[], Iterable[ModelConfig]]) -> None:
        self._models = models
        self._urls: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def _current(self) -> re.Pattern[str] | None:
        urls = frozenset(m.base_url for m in self._models() if m.base_url)
        if urls != self._urls:
            self._urls, self._pattern = urls, _compile(urls)
        return self._pattern

    def __call__(self, text: str) -> str:
        pattern = self._current()
        return shorten(text if pattern is None else _hide(pattern, text))


def _hide(pattern: re.Pattern[str], text: str) -> str:
    parts, done = [], 0
    for found in pattern.finditer(text):
        start = found.start()
        head = _HEAD.search(text, max(done, start - _HEAD_MAX), start)
        if head is not None:
            start = head.start()
        parts += [text[done:start], HIDDEN]
        done = found.end()
    return "".join([*parts, text[done:]])


def _compile(urls: Iterable[str]) -> re.Pattern[str] | None:
    """A host (as a whole name, not part of a longer one) of ``urls``, with its port and path."""
    hosts: set[str] = set()
    for url in urls:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.hostname
        if host:
            hosts.add(host)
            if ":" in host:  # IPv6: as written in URLs too
                hosts.add(f"[{host}]")
    if not hosts:
        return None
    names = "|".join(re.escape(h) for h in sorted(hosts, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?:{names})(?![\w-]|\.\w)" + _TAIL, re.IGNORECASE)
