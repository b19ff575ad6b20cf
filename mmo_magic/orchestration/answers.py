"""Choosing among short answers without a judge: normalise, then majority or longest.

Consensus strategies "majority" and "longest" (``parallel.consensus``): pure
computation over the answers' text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["longest", "majority_answer", "normalise_answer"]


_ANSWER_PREFIXES = ("the final answer is", "the answer is", "final answer:", "answer:")
# Pairs that may wrap a whole answer; longer markers first so "**" wins over "*".
_WRAPPERS = (
    ("```", "```"),
    ("**", "**"),
    ("__", "__"),
    ("`", "`"),
    ("*", "*"),
    ("_", "_"),
    ('"', '"'),
    ("'", "'"),
    ("“", "”"),
    ("‘", "’"),
    ("«", "»"),
    ("$", "$"),
    ("(", ")"),
    ("[", "]"),
)
_BOXED = re.compile(r"\\boxed\{(.*)\}", re.DOTALL)  # LaTeX \boxed{...}, common in maths answers
# Leading "." or "-" would change a number (".5", "-3"), so fewer characters go at the start.
_LEAD_PUNCT = ",;:!? \t\n"
_TRAIL_PUNCT = ".,;:!? \t\n"
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")


def _unwrap(text: str) -> str:
    for opener, closer in _WRAPPERS:
        inner = text[len(opener) : len(text) - len(closer)]
        if (
            len(text) > len(opener) + len(closer)
            and text.startswith(opener)
            and text.endswith(closer)
            # "(a) + (b)" or "**x** and **y**" are not wrapped as a whole.
            and opener not in inner
            and closer not in inner
        ):
            return inner
    return text


def _canonical_number(token: str) -> str:
    if not _NUMBER.fullmatch(token):
        return token
    from decimal import Decimal

    value = Decimal(token.replace(",", ""))
    if value == 0:
        return "0"  # also folds "-0" and "0.00"
    return format(value.normalize(), "f")


def normalise_answer(text: str) -> str:
    """A short answer reduced to a form where equal answers compare equal.

    "The answer is **42**." and "42" both become "42"; "1,000" and "1000.0" both become "1000".
    """
    answer = text.casefold()
    while True:  # peel layers until nothing changes: "The answer is `"42"`." has several
        before = answer
        answer = " ".join(answer.split())
        answer = answer.lstrip(_LEAD_PUNCT).rstrip(_TRAIL_PUNCT)
        for prefix in _ANSWER_PREFIXES:
            if answer.startswith(prefix):
                answer = answer[len(prefix) :]
                break
        boxed = _BOXED.fullmatch(answer)
        if boxed:
            answer = boxed.group(1)
        answer = _unwrap(answer)
        if answer == before:
            break
    return " ".join(_canonical_number(token) for token in answer.split())


def majority_answer(answers: Sequence[str]) -> tuple[int | None, dict[str, int]]:
    """The index of the first answer of the largest group of equal answers, and the group counts.

    The index is None when no group is strictly largest. Blank answers do not vote.
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for index, answer in enumerate(answers):
        key = normalise_answer(answer)
        if not key:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, index)
    if not counts:
        return None, counts
    best = max(counts.values())
    leaders = [key for key, count in counts.items() if count == best]
    return (first[leaders[0]] if len(leaders) == 1 else None), counts


def longest(answers: Sequence[str]) -> int | None:
    """The index of the longest answer (the first on a tie), or None when there are none.

    This is the naive strategy the project started with, kept to show why judges are needed:
    it rewards padding, not correctness.
    """
    if not answers:
        return None
    return max(range(len(answers)), key=lambda i: len(answers[i]))
