"""``TaskRouter``: routes by what the prompt asks for (coding, math, translation...),
scored from the cue tables of ``cues.py``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..core.completion import CompletionRequest
from ..core.errors import ConfigError
from ..core.models import Catalogue
from .base import TASKS, RouteDecision, Router, _as_request, _builtin_catalogue, _Trail
from .cues import (
    _PATTERNS,
    _PATTERNS_BY_FEATURE,
    _PHRASE_STARTS,
    _TOPIC_PHRASES,
    _TOPIC_WORDS,
    _UNGATED,
    _prompt_features,
)

__all__ = ["TaskGuess", "TaskRouter"]


@dataclass(frozen=True)
class TaskGuess:
    """What ``TaskRouter.detect`` found: the task, how sure it is, and the evidence."""

    task: str
    confidence: float
    signals: tuple[str, ...]
    scores: Mapping[str, float]
    fallback: bool = False  # no task scored enough: conversation by default

    def describe(self) -> str:
        if self.fallback:
            return f"task {self.task} (fallback: no strong signal for any task)"
        evidence = ", ".join(self.signals[:4])
        return f"task {self.task} (confidence {self.confidence:.2f}: {evidence})"


class TaskRouter(Router):
    """Routes by what the prompt asks for: coding, math, translation...

    ``detect`` scores every task from weighted cues: explicit asks
    ("translate ... into French", "summarize the following", "write a poem"),
    topic words matched whole, and shapes of text (code fences, stack traces,
    equations, non-Latin scripts). Topic evidence is capped per task so a long
    pasted text cannot outvote the request itself; negative cues handle
    look-alikes ("fix my bike", "python" the snake, "translate to TypeScript").
    A prompt whose best score stays under ``MIN_SCORE`` is ``conversation``.

    ``task_models`` maps tasks to preference lists, merged over ``DEFAULT_TASK_MODELS``.
    """

    name = "task"
    classifies = True

    MIN_SCORE: ClassVar[float] = 2.0
    TOPIC_CAP: ClassVar[float] = 4.0
    # Long prompts: instructions sit at the start or the end, so only those are read.
    HEAD_CHARS: ClassVar[int] = 3000
    TAIL_CHARS: ClassVar[int] = 1000

    # Strong models first where quality matters, cheap ones first where it barely does;
    # the simulated models last so every list works offline.
    DEFAULT_TASK_MODELS: ClassVar[dict[str, list[str]]] = {
        "coding": ["claude-sonnet-4-5", "gpt-5", "gpt-4.1", "claude-opus-4-5", "sim-slow"],
        "math": ["o4-mini", "gpt-5", "o3", "claude-sonnet-4-5", "sim-slow"],
        "reasoning": ["gpt-5", "o3", "claude-opus-4-5", "claude-sonnet-4-5", "sim-slow"],
        "stem": ["gpt-5-mini", "claude-sonnet-4-5", "gpt-4.1", "sim-slow"],
        "humanities": ["claude-sonnet-4-5", "gpt-5-mini", "gpt-4.1", "sim-slow"],
        "writing": ["claude-sonnet-4-5", "gpt-4.1", "gpt-5", "claude-haiku-4-5", "sim-slow"],
        "roleplay": ["claude-haiku-4-5", "gpt-4.1-mini", "claude-sonnet-4-5", "sim-fast"],
        "translation": ["gpt-4.1-mini", "gpt-5-mini", "claude-haiku-4-5", "sim-fast"],
        "summarization": ["gpt-4.1-mini", "gpt-5-mini", "claude-haiku-4-5", "sim-fast"],
        "extraction": ["gpt-5-nano", "gpt-4.1-mini", "claude-haiku-4-5", "sim-fast"],
        "conversation": ["gpt-4o-mini", "gpt-5-nano", "claude-3-5-haiku", "sim-fast"],
    }
    # The tier a catalogue model needs when none of a task's own list is available.
    TASK_TIERS: ClassVar[dict[str, int]] = {"coding": 2, "math": 2, "reasoning": 2}

    def __init__(
        self,
        task_models: Mapping[str, Sequence[str]] | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        unknown = [t for t in task_models or {} if t not in TASKS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], TASKS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Tasks: {', '.join(TASKS)}."
            raise ConfigError(f"task_models names unknown task {unknown[0]!r}.", hint=hint)
        self.task_models = {
            **{t: list(ms) for t, ms in self.DEFAULT_TASK_MODELS.items()},
            **{t: list(ms) for t, ms in (task_models or {}).items()},
        }

    def detect(self, prompt: str) -> TaskGuess:
        """The task of ``prompt`` with a confidence in [0, 1] and the cues that decided it."""
        text = prompt
        if len(text) > self.HEAD_CHARS + self.TAIL_CHARS:
            text = text[: self.HEAD_CHARS] + "\n" + text[-self.TAIL_CHARS :]
        lowered, words, features = _prompt_features(text)
        topic: dict[str, float] = {}
        intent: dict[str, float] = {}
        signals: dict[str, list[tuple[float, str]]] = {}

        def add(task: str, weight: float, signal: str, is_intent: bool) -> None:
            bucket = intent if is_intent or weight < 0 else topic
            bucket[task] = bucket.get(task, 0.0) + weight
            signals.setdefault(task, []).append((weight, signal))

        word_set = set(words)
        # Each term counts once. Sorted so equal-weight signals are listed the same way every run.
        terms = sorted(word_set & _TOPIC_WORDS.keys())
        if not word_set.isdisjoint(_PHRASE_STARTS):  # join words only where a phrase may start
            for i, word in enumerate(words):
                if word in _PHRASE_STARTS:
                    terms += [" ".join(words[i : i + 2]), " ".join(words[i : i + 3])]
        seen: set[str] = set()
        for term in terms:
            cues = _TOPIC_WORDS.get(term) or _TOPIC_PHRASES.get(term)
            if cues and term not in seen:
                seen.add(term)
                for c in cues:
                    add(c.task, c.weight, c.signal, c.intent)
        # Only patterns whose gate is open, plus the ungated ones, in table order.
        candidates = set(_UNGATED)
        for key in features & _PATTERNS_BY_FEATURE.keys():
            candidates.update(_PATTERNS_BY_FEATURE[key])
        for index in sorted(candidates):
            p = _PATTERNS[index]
            if p.hit(text, lowered, features):
                for task, weight in p.effects:
                    add(task, weight, p.signal, p.intent)

        # In TASKS order, so a tie always goes the same way (sets would vary between runs).
        scores = {
            t: min(topic.get(t, 0.0), self.TOPIC_CAP) + intent.get(t, 0.0)
            for t in TASKS
            if t in topic or t in intent
        }
        best = max(scores, key=lambda t: scores[t], default="conversation")
        fallback = scores.get(best, 0.0) < self.MIN_SCORE
        if fallback:
            best = "conversation"
        # Softmax against a baseline for "none of these": a lone weak cue stays unsure.
        exps = {t: math.exp(min(s, 30.0)) for t, s in scores.items() if s > 0}
        baseline = math.exp(self.MIN_SCORE)
        confidence = exps.get(best, baseline) / (sum(exps.values()) + baseline)
        evidence = sorted(signals.get(best, []), key=lambda ws: -ws[0])
        found = tuple(dict.fromkeys(s for w, s in evidence if w > 0))
        return TaskGuess(best, round(confidence, 3), found, scores, fallback)

    def classify(self, prompt: str) -> str:
        return self.detect(prompt).task

    def explain(self, prompt: str) -> tuple[str, str]:
        guess = self.detect(prompt)
        return guess.task, guess.describe()

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        guess = self.detect(request.prompt_text)
        head = guess.describe()
        trail = _Trail(request)
        model = trail.pick(self.task_models.get(guess.task, []), catalogue)
        if model is not None:
            return self._decide(
                request, model, f"task:{guess.task}", trail.reason(head, model.name), guess.task
            )
        tier = self.TASK_TIERS.get(guess.task, 1)
        return self._fall_back(request, catalogue, trail, head, guess.task, tier)

    def __repr__(self) -> str:
        return f"TaskRouter(default={self.default!r})"
