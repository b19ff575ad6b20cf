"""Scorers: answers checked by code, beside (or instead of) LLM judges.

``scorers=[...]`` on a batch scores every (item, model) answer after the run; the
scores go into ``leaderboard()`` and ``summary()`` with 95% bootstrap intervals
over items, and into ``scores_frame()``. Accuracy needs no LLM grader::

    from mmo_magic.evaluation import scorers
    br = orc.batch(df, models, scorers=[scorers.exact("reference"),
                                        scorers.numeric("reference", tolerance=0.01)])

The built-in scorers, each comparing the answer with an item column (default
``"reference"``): ``exact``, ``normalised`` (case, punctuation, articles and
spacing ignored), ``contains``, ``regex`` (a pattern, or ``{column}`` filled from
the item), ``numeric`` (the last number in the answer within ``tolerance``),
``json_schema`` (the answer is JSON valid under a schema), and ``function``: any
``score(answer, item) -> float | bool`` (a plain function in ``scorers=[...]``
is wrapped as one). A score is a number in [0, 1] for the built-ins (True is 1);
a function's may be any number, or None for "not scored".

**Failed answers** (an error, a timeout, a call the batch never ran) are not
silently dropped: per scorer, ``failed="zero"`` scores them 0 (the default for
every built-in, which are accuracy-style: the user got nothing right) and
``failed="skip"`` leaves them out (the default for ``function``). Every table
says which, and on how many items each model was scored.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..core.errors import ConfigError

__all__ = [
    "Scorer",
    "as_scorer",
    "contains",
    "exact",
    "function",
    "json_schema",
    "normalised",
    "numeric",
    "regex",
]

Failed = Literal["zero", "skip"]
ScoreFn = Callable[[str, Mapping[str, Any]], float | bool | None]


@dataclass(frozen=True)
class Scorer:
    """A named check of one answer: ``score(answer, item)`` -> float or None (not scored).

    ``failed``: what a failed answer scores: ``"zero"`` (counted as 0) or ``"skip"``
    (left out, and counted as left out).
    """

    name: str
    score: ScoreFn
    failed: Failed = "zero"

    def __post_init__(self) -> None:
        if self.failed not in ("zero", "skip"):
            raise ConfigError(f"A scorer's failed= must be 'zero' or 'skip', not {self.failed!r}.")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("A scorer needs a name.")

    def __call__(self, answer: str | None, item: Mapping[str, Any], ok: bool) -> float | None:
        """The score of one row: None when it is left out (a skipped failure, no score)."""
        if not ok or answer is None:
            return 0.0 if self.failed == "zero" else None
        value = self.score(answer, item)
        if value is None:
            return None
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(f"Scorer {self.name!r} returned {value!r}: give a finite number.")
        return number


def _column(item: Mapping[str, Any], column: str, scorer: str) -> str:
    if column not in item:
        raise ConfigError(
            f"Scorer {scorer!r} compares with column {column!r}, which the items lack.",
            hint=f"Add the column, or pass the one that holds the expected answer: "
            f"{scorer}('your_column'). Columns: {', '.join(map(str, item))}.",
        )
    value = item[column]
    return "" if value is None else str(value)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’«»…")


def normalise(text: str) -> str:
    """Lower case, no accents' width forms, no punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact(column: str = "reference", *, name: str | None = None, failed: Failed = "zero") -> Scorer:
    """1 if the answer, stripped of surrounding spaces, equals the column's value exactly."""

    def score(answer: str, item: Mapping[str, Any]) -> float:
        return float(answer.strip() == _column(item, column, "exact").strip())

    return Scorer(name or "exact", score, failed)


def normalised(
    column: str = "reference", *, name: str | None = None, failed: Failed = "zero"
) -> Scorer:
    """1 if the answer equals the column's value once both are ``normalise``\\ d."""

    def score(answer: str, item: Mapping[str, Any]) -> float:
        return float(normalise(answer) == normalise(_column(item, column, "normalised")))

    return Scorer(name or "normalised", score, failed)


def contains(
    column: str = "reference", *, name: str | None = None, failed: Failed = "zero",
    case: bool = False,
) -> Scorer:  # fmt: skip
    """1 if the column's value appears in the answer (ignoring case unless ``case=True``)."""

    def score(answer: str, item: Mapping[str, Any]) -> float:
        wanted = _column(item, column, "contains").strip()
        if not case:
            return float(wanted.casefold() in answer.casefold())
        return float(wanted in answer)

    return Scorer(name or "contains", score, failed)


def regex(
    pattern: str, *, name: str | None = None, failed: Failed = "zero", flags: int = re.IGNORECASE
) -> Scorer:
    """1 if ``pattern`` is found in the answer. ``{column}`` in the pattern is filled with
    the item's value, escaped (``r"\\b{reference}\\b"``); write ``{{`` for a literal brace."""
    names = re.findall(r"(?<!\{)\{(\w+)\}(?!\})", pattern)
    fixed = None if names else re.compile(pattern, flags)

    def score(answer: str, item: Mapping[str, Any]) -> float:
        compiled = fixed
        if compiled is None:
            values = {n: re.escape(_column(item, n, "regex")) for n in names}
            compiled = re.compile(pattern.format(**values), flags)
        return float(compiled.search(answer) is not None)

    try:
        if fixed is None:
            re.compile(re.sub(r"(?<!\{)\{\w+\}(?!\})", "x", pattern).replace("{{", "{"), flags)
    except re.error as exc:
        raise ConfigError(f"Scorer regex {pattern!r} is not a valid pattern: {exc}.") from exc
    return Scorer(name or "regex", score, failed)


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (thousands commas allowed), else None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric(
    column: str = "reference", *, tolerance: float = 1e-6, relative: float = 0.0,
    name: str | None = None, failed: Failed = "zero",
) -> Scorer:  # fmt: skip
    """1 if the last number in the answer is within ``tolerance`` (absolute) or
    ``relative`` (a fraction of the expected value) of the first number in the column;
    an item whose column holds no number is not scored."""
    if tolerance < 0 or relative < 0:
        raise ConfigError("numeric(): tolerance and relative must be >= 0.")

    def score(answer: str, item: Mapping[str, Any]) -> float | None:
        expected_text = _column(item, column, "numeric")
        found = _NUMBER.search(expected_text)
        if found is None:
            return None  # not a numeric item: not scored (the items count says how many)
        expected = float(found.group().replace(",", ""))
        got = last_number(answer)
        if got is None:
            return 0.0
        return float(abs(got - expected) <= max(tolerance, relative * abs(expected)))

    return Scorer(name or "numeric", score, failed)


def json_schema(
    schema: Mapping[str, Any], *, name: str | None = None, failed: Failed = "zero"
) -> Scorer:
    """1 if the answer is JSON (a fenced ```json block is unwrapped) valid under ``schema``."""
    import jsonschema

    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"Scorer json_schema: the schema is not valid: {exc.message}") from exc
    validator = validator_class(schema)

    def score(answer: str, item: Mapping[str, Any]) -> float:
        text = answer.strip()
        fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
        if fenced:
            text = fenced.group(1)
        try:
            value = json.loads(text)
        except ValueError:
            return 0.0
        return float(validator.is_valid(value))

    return Scorer(name or "json_schema", score, failed)


def function(fn: ScoreFn, *, name: str | None = None, failed: Failed = "skip") -> Scorer:
    """Any ``fn(answer, item) -> float | bool | None`` as a scorer (None: not scored)."""
    if not callable(fn):
        raise ConfigError(f"A scorer function must be callable, not {type(fn).__name__}.")
    return Scorer(name or str(getattr(fn, "__name__", "function")), fn, failed)


def as_scorer(value: Scorer | ScoreFn) -> Scorer:
    """``value`` if it is a Scorer; a plain function wrapped with ``function``."""
    if isinstance(value, Scorer):
        return value
    if callable(value):
        return function(value)
    raise ConfigError(
        "scorers=[...] takes Scorers or functions score(answer, item), "
        f"not {type(value).__name__}.",
        hint="For example scorers=[mmo.scorers.exact('reference')].",
    )
