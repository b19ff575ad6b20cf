"""Text that can be stored, printed and sent (no lone surrogates), and shown literally."""

from __future__ import annotations

import re

__all__ = ["escape_markdown", "storable"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~])")


def storable(text: str) -> str:
    """``text`` with surrogate pairs joined into characters and lone surrogates replaced (U+FFFD).

    A server that streams an emoji as two escaped UTF-16 halves in separate JSON
    chunks leaves each half as a lone surrogate once the chunks are decoded and
    joined; UTF-8 (SQLite, a terminal, a socket) cannot encode those.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def escape_markdown(text: str) -> str:
    """``text`` shown literally in Markdown: no HTML, no code spans, no LaTeX.

    A backslash before each special character is CommonMark's escape. A dollar
    gets two: JupyterLab and nbconvert run MathJax (with ``processEscapes``) on the
    rendered HTML, which must still hold ``\\$`` for MathJax to leave a dollar; a
    single ``\\$`` comes out of Markdown as a bare ``$`` and starts math.
    """
    escaped = _MD_SPECIAL.sub(r"\\\1", text).replace("&", "&amp;")
    return escaped.replace("$", "\\\\$")
