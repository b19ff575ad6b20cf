"""A prompt ending in "?" on a line magic is a prompt, not a request for IPython's help.

IPython reads ``%mmo_route What is the capital of France?`` as "help on the object
``France``" (its help transformer looks at the line's end before any magic runs), so
the user saw "Object `France` not found". The supported place to step in is
``shell.input_transformers_cleanup``: those transformers run on the cell's lines
before the help transformer. This one rewrites such a line into the explicit
``get_ipython().run_line_magic(...)`` call that the magic line stands for, so the
prompt reaches the magic verbatim. ``%mmo_route?`` alone still shows the magic's help.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["PROMPT_MAGICS", "install", "keep_question_marks", "uninstall"]

# Line magics whose line ends in free text (the prompt).
PROMPT_MAGICS = ("mmo_route", "mmo_race")

_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<target>[A-Za-z_][\w.]*\s*=\s*)?%(?P<magic>"
    + "|".join(PROMPT_MAGICS)
    + r")[ \t]+(?P<rest>\S.*\?)[ \t]*(?P<newline>\r?\n)?$"
)


def keep_question_marks(lines: list[str]) -> list[str]:
    """Rewrite each ``%mmo_route ...?`` / ``%mmo_race ...?`` line into an explicit call."""
    out = []
    for line in lines:
        match = _LINE.match(line)
        if match is None or line.rstrip().endswith("\\"):  # a continued line: leave it to IPython
            out.append(line)
            continue
        call = f"get_ipython().run_line_magic({match['magic']!r}, {match['rest']!r})"
        out.append(f"{match['indent']}{match['target'] or ''}{call}{match['newline'] or ''}")
    return out


def install(shell: Any) -> None:
    """Run ``keep_question_marks`` before IPython's help transformer (once)."""
    cleanup = shell.input_transformers_cleanup
    if keep_question_marks not in cleanup:
        cleanup.append(keep_question_marks)


def uninstall(shell: Any) -> None:
    cleanup = shell.input_transformers_cleanup
    while keep_question_marks in cleanup:
        cleanup.remove(keep_question_marks)
