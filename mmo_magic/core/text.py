"""Text that can be stored, printed and sent: no lone surrogates."""

from __future__ import annotations

__all__ = ["storable"]


def storable(text: str) -> str:
    """``text`` with surrogate pairs joined into characters and lone surrogates replaced (U+FFFD).

    A server that streams an emoji as two escaped UTF-16 halves in separate JSON
    chunks leaves each half as a lone surrogate once the chunks are decoded and
    joined; UTF-8 (SQLite, a terminal, a socket) cannot encode those.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
