"""Safe prompt templates: ``{name}`` is replaced by a value, and the value is never re-parsed.

Unlike ``str.format``, a value containing ``{`` or ``}`` (a model's JSON or
code, or a literal ``{topic}``) is inserted verbatim and cannot break or
inject into the template. ``{{`` and ``}}`` write literal braces; any other
brace that does not form ``{identifier}`` is left as it is, so JSON examples
in a prompt need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from .errors import TemplateError

__all__ = ["Template", "render"]

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Template:
    """A parsed template; ``variables`` lists the names it needs, in order of first use."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def _parts(self) -> list[tuple[bool, str]]:
        """(is_variable, literal text or variable name) pieces."""
        parts: list[tuple[bool, str]] = []
        position = 0
        for match in _TOKEN.finditer(self.text):
            if match.start() > position:
                parts.append((False, self.text[position : match.start()]))
            token = match.group(0)
            if match.group(1):
                parts.append((True, match.group(1)))
            else:
                parts.append((False, token[0]))  # {{ -> {, }} -> }
            position = match.end()
        if position < len(self.text):
            parts.append((False, self.text[position:]))
        return parts

    @property
    def variables(self) -> list[str]:
        return list(dict.fromkeys(name for is_var, name in self._parts if is_var))

    def render(self, values: Mapping[str, Any], *, where: str | None = None) -> str:
        """The text with every ``{name}`` replaced by ``str(values[name])``."""
        out = []
        for is_var, piece in self._parts:
            if not is_var:
                out.append(piece)
            elif piece in values:
                out.append(str(values[piece]))
            else:
                raise TemplateError(piece, where)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def render(text: str, values: Mapping[str, Any], *, where: str | None = None) -> str:
    """Render ``text`` as a Template with ``values``."""
    return Template(text).render(values, where=where)
