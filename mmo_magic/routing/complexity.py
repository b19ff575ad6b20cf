"""``ComplexityRouter``: routes by how demanding the prompt is (simple, medium, complex)
to the cheapest model of the tier that level needs; the terms it counts are here too."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..core.completion import CompletionRequest
from ..core.errors import ConfigError
from ..core.models import Catalogue
from .base import (
    COMPLEXITY_LEVELS,
    TIER_FOR_LEVEL,
    RouteDecision,
    Router,
    _as_request,
    _builtin_catalogue,
    _by_price,
    _cheapest,
    _nothing_available,
    _tier,
    _Trail,
)
from .cues import _WORD_RE
from .task import TaskRouter

__all__ = ["ComplexityAssessment", "ComplexityRouter"]


@dataclass(frozen=True)
class ComplexityAssessment:
    """What ``ComplexityRouter.assess`` found: the level, its score and the top signals."""

    level: str
    score: float
    signals: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        top = sorted(self.signals, key=lambda s: -abs(s[1]))[:4]
        listed = ", ".join(f"{name} {points:+.1f}" for name, points in top) or "no signals"
        return f"complexity {self.level} (score {self.score:.1f}: {listed})"


# Terms the complexity score counts, by kind; several words make a phrase. Counting them in
# one pass over the prompt's words is much faster than one regex per kind.
_CX_TERMS: dict[str, list[str]] = {}


def _cx(kind: str, terms: str) -> None:
    for term in terms.split("|"):
        _CX_TERMS.setdefault(" ".join(_WORD_RE.findall(term)), []).append(kind)


_cx(
    "demanding",
    "step by step|compare|contrast|prove|derive|design a|design an|design the|architect"
    "|architecture|analyse|analyze|evaluate|trade off|trade offs|tradeoffs|pros and cons|justify"
    "|critique|discuss|implement|optimise|optimize|weigh up|weigh the|weighing|in detail"
    "|comprehensive|structure it|with reference to|reason through|recommendation"
    "|explain how each|deduced|deduce|plan|set up|show that|show how|lay out",
)
_cx(
    "produce",
    "write|implement|build|create|draft|compose|design|refactor|review|edit|translate|convert"
    "|simulate|act as|play|pretend|imagine|be my|be the|let's",
)
_cx(
    "short",
    "haiku|slogan|slogans|tagline|taglines|tweet|limerick|one sentence|one line|in a word"
    "|yes or no|briefly|quick|quickly|tl dr|tldr|in plain language|in simple terms",
)
_cx(
    "ask",
    "explain|describe|compare|list|write|show|give|discuss|state|solve|derive|use|apply|address"
    "|include|introduce|end|keep|push back|summarize|summarise|lay out|say|flag|structure"
    "|evaluate|weigh|determine|compute|ask|answer|start|respond|return|draft|highlight|note"
    "|reason|identify|set up|then",
)
_cx(
    "constraint",
    "must|without|at least|at most|no more than|exactly|within|keep|keeping|only|never|each"
    "|every|including|preserving|following|no matter",
)
_cx("sequencing", "then|after that|finally|as well as|at the end")
_cx(
    "math",
    "integral|derivative|eigenvalue|eigenvalues|eigenvector|eigenvectors|theorem|converge"
    "|converges|convergent|induction|proof|prove|related rates|matrix|matrices|irrational"
    "|determinant|integer solutions",
)
_CX_PHRASE_STARTS = frozenset(term.split()[0] for term in _CX_TERMS if " " in term)
_EXPLAIN = re.compile(
    r"\W*(?:explain|describe|how (?:do|does|did|can|could)|why (?:do|does|did|is|are|was|were)"
    r"|what (?:were|are) the (?:main |major |key )?(?:causes|themes|differences|arguments|reasons"
    r"|mechanisms)|what is the difference|what role|what (?:was|were) the|what could)\b"
)
_SIMPLE_OPENING = re.compile(
    r"\W*(?:hi|hello|hey|thanks|thank you|what is|what's|who is|who was|when did|where is"
    r"|define|translate|how do you say|is it|is a|which|why is the sky|what does|what causes"
    r"|can you recommend|tell me a)\b"
)
_LIST_LINE = re.compile(r"\s*(?:[-*•]|\d+[.)])\s+\S")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_MATH_SYMBOL = re.compile(r"[∫∑√π≤≥∞∂]|\^\d")
# Where pasted material starts: after "...:" and a new line or an opening quote, or a fence.
_MATERIAL = re.compile(r"[:?.]\s*\n|[:?.]\s*['\"“‘]|```|\n\n|\n(?=\w+:)")
_SCHEMA_FIELD = re.compile(r"\{[^{}\n]{0,80}\}")
# How demanding each task usually is, as a prior: a proof needs more than a greeting.
_TASK_PRIOR = {"coding": 1.0, "math": 1.0, "reasoning": 1.0, "stem": 0.5, "humanities": 0.5}


# (at least, points) steps for the length of the ask in words and of pasted material.
_ASK_WORDS = ((12, 0.5), (20, 1.0), (30, 1.5), (45, 2.0))
_MATERIAL_TOKENS = ((300, 0.5), (1500, 1.0), (5000, 2.0))


def _points(value: float, steps: Sequence[tuple[float, float]]) -> float:
    """The points of the highest step ``value`` reaches (0 below the first)."""
    got = 0.0
    for at_least, points in steps:
        if value >= at_least:
            got = points
    return got


def _count_terms(words: list[str]) -> dict[str, list[str]]:
    """The complexity terms in ``words``, by kind (each occurrence)."""
    found: dict[str, list[str]] = {}
    for i, word in enumerate(words):
        terms = [word]
        if word in _CX_PHRASE_STARTS:
            terms += [" ".join(words[i : i + n]) for n in (2, 3, 4)]
        for term in terms:
            for kind in _CX_TERMS.get(term, ()):
                found.setdefault(kind, []).append(term)
    return found


def _split_material(prompt: str) -> tuple[str, str]:
    """The instruction and the material pasted after it (text to work on, code...)."""
    found = _MATERIAL.search(prompt)
    if found is None or found.start() < 8:
        return prompt, ""
    return prompt[: found.start()], prompt[found.start() :]


class ComplexityRouter(Router):
    """Routes by how demanding the prompt is: ``simple``, ``medium`` or ``complex``.

    ``assess`` adds up points from the length of the ask (the words before any
    pasted text or code) and, far less, of that material; multi-step asks
    ("step by step", "compare", "prove", "design"), the number of requests,
    constraints, enumerations, sentences, questions and list lines; code, math
    notation and long technical words; the task (coding, math and reasoning
    weigh more); minus points for short forms (a haiku, a tweet) and one-line
    everyday questions. Below ``SIMPLE_BELOW`` is simple, from ``COMPLEX_FROM``
    on complex; both were tuned on the train split of ``load_routing_prompts``.

    Each level needs a tier (simple 1, medium 2, complex 3) and the cheapest
    available model of at least that tier wins (by price per 1k input + output);
    when no model reaches it, the highest-tier available one, and the reason
    says so. ``models`` replaces that choice per level with preference lists.
    """

    name = "complexity"
    classifies = True

    SIMPLE_BELOW: ClassVar[float] = 1.0
    COMPLEX_FROM: ClassVar[float] = 4.0

    def __init__(
        self,
        models: Mapping[str, Sequence[str]] | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        unknown = [level for level in models or {} if level not in COMPLEXITY_LEVELS]
        if unknown:
            raise ConfigError(
                f"ComplexityRouter models name unknown level {unknown[0]!r}.",
                hint=f"Levels: {', '.join(COMPLEXITY_LEVELS)}.",
            )
        self.models = {level: list(names) for level, names in (models or {}).items()}
        self._task_router = TaskRouter()

    def assess(self, prompt: str, task: str | None = None) -> ComplexityAssessment:
        """The complexity level of ``prompt`` with its score and the signals behind it.

        ``task`` (as TaskRouter classifies it) is computed when not given.
        """
        signals: list[tuple[str, float]] = []

        def add(name: str, points: float) -> None:
            if points:
                signals.append((name, points))

        # Length of the *ask* is what makes a prompt demanding; pasted material (a text
        # to summarise, code to explain) counts, but far less.
        instruction, material = _split_material(prompt)
        lowered = instruction.lower()
        words = _WORD_RE.findall(lowered)
        n_words = len(instruction.split())
        add(f"{n_words}-word ask", _points(n_words, _ASK_WORDS))
        # About four characters a token: a signal, not a count. A long prompt with no
        # visible instruction/material split counts its bulk as material.
        material_tokens = (len(material) if material else max(0, len(instruction) - 1200)) // 4
        add(f"~{material_tokens}-token material", _points(material_tokens, _MATERIAL_TOKENS))
        terms = _count_terms(words)
        demanding = list(dict.fromkeys(terms.get("demanding", [])))
        if demanding:
            add("asks to " + "/".join(demanding[:3]), min(3.0, 1.25 * len(demanding)))
        add("asks for an explanation", 1.0 if _EXPLAIN.match(lowered) else 0.0)
        add("asks to produce", 0.5 if "produce" in terms else 0.0)
        asks = len(terms.get("ask", [])) + len(terms.get("sequencing", []))
        add(f"{asks} requests", 1.0 if asks >= 4 else 0.5 if asks >= 3 else 0.0)
        constraints = len(terms.get("constraint", []))
        add(f"{constraints} constraints", min(1.0, 0.5 * constraints))
        fields = len(_SCHEMA_FIELD.findall(instruction)) if "{" in instruction else 0
        commas = instruction.count(",") + fields
        add(f"{commas}-part enumeration", 1.0 if commas >= 5 else 0.5 if commas >= 3 else 0.0)
        sentences = len(_SENTENCE_END.findall(instruction))
        add(f"{sentences} sentences", 0.5 if sentences >= 3 else 0.0)
        questions = instruction.count("?")
        add(f"{questions} questions", 0.5 if questions >= 2 else 0.0)
        list_lines = sum(1 for line in instruction.splitlines() if _LIST_LINE.match(line))
        add(f"{list_lines} list lines", 1.0 if list_lines >= 3 else 0.0)
        add("code", 0.5 if "```" in prompt else 0.0)
        math_notation = "math" in terms or _MATH_SYMBOL.search(prompt) is not None
        add("math notation", 1.0 if math_notation else 0.0)
        long_words = sum(1 for w in words if len(w) >= 12)
        add("technical words", 0.5 if long_words >= 2 else 0.0)
        if task is None:
            task = self._task_router.classify(prompt)
        add(f"{task} task", _TASK_PRIOR.get(task, 0.0))
        add("short form", -1.0 if "short" in terms else 0.0)
        if n_words < 12 and _SIMPLE_OPENING.match(lowered):
            add("short everyday question", -1.0)
        score = sum(points for _, points in signals)
        if score < self.SIMPLE_BELOW:
            level = "simple"
        elif score < self.COMPLEX_FROM:
            level = "medium"
        else:
            level = "complex"
        return ComplexityAssessment(level, round(score, 2), tuple(signals))

    def classify(self, prompt: str) -> str:
        return self.assess(prompt).level

    def explain(self, prompt: str) -> tuple[str, str]:
        found = self.assess(prompt)
        return found.level, found.describe()

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        found = self.assess(request.prompt_text)
        level, tier = found.level, TIER_FOR_LEVEL[found.level]
        head = found.describe()
        trail = _Trail(request)
        rule = f"complexity:{level}"
        if level in self.models:
            model = trail.pick(self.models[level], catalogue)
            if model is not None:
                return self._decide(request, model, rule, trail.reason(head, model.name), level)
        model = _cheapest(catalogue, trail, tier)
        if model is not None:
            head = f"{head}; cheapest available with tier>={tier}"
            return self._decide(request, model, rule, trail.reason(head, model.name), level)
        usable = [m for m in _by_price(catalogue) if trail.fits(m) is None]
        if not usable:
            raise _nothing_available(catalogue)
        best = max(_tier(m) for m in usable)
        model = next(m for m in usable if _tier(m) == best)  # cheapest of the best tier
        trail.add(f"no available model has tier>={tier}; highest available is tier {best}")
        return self._decide(
            request, model, f"{rule}/highest-tier", trail.reason(head, model.name), level
        )

    def __repr__(self) -> str:
        return f"ComplexityRouter(models={self.models!r}, default={self.default!r})"
