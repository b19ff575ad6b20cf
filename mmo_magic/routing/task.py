"""``TaskRouter``: routes by what the prompt asks for (coding, math, translation...).

A learned classifier (``task_model.py``: a linear model over hashed word n-grams,
trained on the shipped labelled prompts from several sources) and the cue tables of
``cues.py`` vote together: the cue scores are added to the model's scores, so an
explicit ask ("translate ... into French") or an unmistakable shape (a stack trace)
weighs in even where the model has seen nothing like the prompt. Between stem and
humanities, the classifier's topic split (a model of content words only) shares out what
the word model gave the two, with their cues. The decision names the words that pushed
the models and the cues that fired."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

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

if TYPE_CHECKING:
    from .task_model import Example, TaskClassifier

_Signals = list[tuple[float, str]]  # (weight, cue) pairs for one task

__all__ = ["TaskGuess", "TaskRouter"]


@dataclass(frozen=True)
class TaskGuess:
    """What ``TaskRouter.detect`` found: the task, how sure it is, and the evidence.

    ``signals`` are the cues that fired for the task, ``terms`` the prompt's words
    that pushed the learned model towards it, ``scores`` each task's probability
    (or cue score, for a router with ``learned=False``). ``fallback`` is True when
    the router is not sure enough to route on ``task``.
    """

    task: str
    confidence: float
    signals: tuple[str, ...]
    scores: Mapping[str, float]
    fallback: bool = False
    terms: tuple[str, ...] = ()
    runner_up: str | None = None

    def describe(self) -> str:
        evidence = []
        if self.terms:
            evidence.append("words " + ", ".join(repr(t) for t in self.terms))
        if self.signals:
            evidence.append("cues " + ", ".join(self.signals[:3]))
        if self.fallback:
            # No evidence for it, or only against it (a cue that lowers conversation).
            if not self.terms and self.scores.get(self.task, 0.0) <= 0.0:
                return f"task {self.task} (fallback: no strong signal for any task)"
            close = ""
            if self.runner_up is not None:
                close = f", {self.runner_up} {self.scores.get(self.runner_up, 0.0):.2f}"
            return f"task {self.task}? low confidence {self.confidence:.2f}{close}"
        detail = "; ".join(evidence) if evidence else "no cue fired"
        return f"task {self.task} (confidence {self.confidence:.2f}: {detail})"


class TaskRouter(Router):
    """Routes by what the prompt asks for: coding, math, translation...

    ``detect`` adds two kinds of evidence. The learned classifier (``classifier``,
    by default the one trained on the shipped prompts) scores every task from the
    prompt's words. The cues score explicit asks ("translate ... into French",
    "summarize the following", "write a poem"), topic words matched whole, and
    shapes of text (code fences, stack traces, equations, non-Latin scripts); topic
    evidence is capped per task so a long pasted text cannot outvote the request,
    and negative cues handle look-alikes ("fix my bike", "python" the snake).
    Cue scores are added to the model's scores (``CUE_WEIGHT`` each, capped at
    ``CUE_CAP``) and a softmax gives each task's probability; the classifier's topic
    split, with the stem and humanities cues, then divides those two tasks' share.

    A task whose probability is under ``MIN_CONFIDENCE`` is a low-confidence guess:
    the router then sends the prompt to ``default`` when one is set (the reason says
    so), and otherwise to the guessed task's models, saying it is a guess.

    ``learned=False`` uses the cues alone, as before the classifier existed: a
    prompt whose best cue score stays under ``MIN_SCORE`` is ``conversation``.
    ``task_models`` maps tasks to preference lists, merged over ``DEFAULT_TASK_MODELS``.
    """

    name = "task"
    classifies = True

    MIN_SCORE: ClassVar[float] = 2.0
    TOPIC_CAP: ClassVar[float] = 4.0
    # Below 1 since round five: with more data the learned models carry more of the
    # decision (cross-source 85.3% at 0.7 against 85.0% at 1.0 on round two's sources).
    CUE_WEIGHT: ClassVar[float] = 0.7
    CUE_CAP: ClassVar[float] = 8.0
    MIN_CONFIDENCE: ClassVar[float] = 0.4
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
        *,
        learned: bool = True,
        classifier: TaskClassifier | None = None,
    ) -> None:
        super().__init__(default)
        self.learned = learned
        self._classifier = classifier
        unknown = [t for t in task_models or {} if t not in TASKS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], TASKS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Tasks: {', '.join(TASKS)}."
            raise ConfigError(f"task_models names unknown task {unknown[0]!r}.", hint=hint)
        self.task_models = {
            **{t: list(ms) for t, ms in self.DEFAULT_TASK_MODELS.items()},
            **{t: list(ms) for t, ms in (task_models or {}).items()},
        }

    @property
    def classifier(self) -> TaskClassifier:
        """The learned model (the shipped one unless another was given); loads numpy."""
        if self._classifier is None:
            from .task_model import shipped_classifier

            self._classifier = shipped_classifier()
        return self._classifier

    def detect(self, prompt: str) -> TaskGuess:
        """The task of ``prompt`` with a confidence in [0, 1] and the evidence that decided it."""
        text = prompt
        if len(text) > self.HEAD_CHARS + self.TAIL_CHARS:
            text = text[: self.HEAD_CHARS] + "\n" + text[-self.TAIL_CHARS :]
        scores, signals = self._cue_scores(text)
        if not self.learned:
            return self._from_cues(scores, signals)
        return self._from_model(text, scores, signals)

    def _from_model(
        self, text: str, cue_scores: Mapping[str, float], signals: Mapping[str, _Signals]
    ) -> TaskGuess:
        model = self.classifier
        raw = model.scores([text])[0]
        logits = [float(v) for v in raw]

        def cue(task: str) -> float:
            return self.CUE_WEIGHT * min(cue_scores.get(task, 0.0), self.CUE_CAP)

        for task in cue_scores:
            if task in model.tasks:
                logits[model.tasks.index(task)] += cue(task)
        probabilities = dict(zip(model.tasks, _softmax(logits), strict=True))
        split = model.topic
        if split is not None:
            # Stem or humanities: the content-word model, with those tasks' cues, shares
            # out what the main model gave them together.
            scores = split.scores([text])[0]
            shares = _softmax([float(v) + cue(t) for v, t in zip(scores, split.tasks, strict=True)])
            mass = sum(probabilities[t] for t in split.tasks)
            for t, share in zip(split.tasks, shares, strict=True):
                probabilities[t] = mass * share
        ranked = sorted(probabilities, key=lambda t: -probabilities[t])
        best, runner_up = ranked[0], ranked[1]
        confidence = probabilities[best]
        terms = model.top_terms(text, best, 3)
        if split is not None and best in split.tasks:
            terms = list(dict.fromkeys(split.top_terms(text, best, 3) + terms))[:3]
        return TaskGuess(
            best,
            round(confidence, 3),
            _fired(signals, best),
            {t: round(probabilities[t], 3) for t in ranked if probabilities[t] >= 0.005},
            fallback=confidence < self.MIN_CONFIDENCE,
            terms=tuple(terms),
            runner_up=runner_up,
        )

    def _from_cues(
        self, scores: Mapping[str, float], signals: Mapping[str, list[tuple[float, str]]]
    ) -> TaskGuess:
        best = max(scores, key=lambda t: scores[t], default="conversation")
        fallback = scores.get(best, 0.0) < self.MIN_SCORE
        if fallback:
            best = "conversation"
        # Softmax against a baseline for "none of these": a lone weak cue stays unsure.
        exps = {t: math.exp(min(s, 30.0)) for t, s in scores.items() if s > 0}
        baseline = math.exp(self.MIN_SCORE)
        confidence = exps.get(best, baseline) / (sum(exps.values()) + baseline)
        return TaskGuess(best, round(confidence, 3), _fired(signals, best), scores, fallback)

    def _cue_scores(self, text: str) -> tuple[dict[str, float], dict[str, list[tuple[float, str]]]]:
        """Each task's cue score (tasks with no cue left out) and the cues behind it."""
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
        return scores, signals

    def examples(self, prompt: str, k: int = 3) -> list[Example]:
        """The ``k`` shipped labelled prompts most like ``prompt`` (cosine over the
        classifier's n-grams), with their task and source: evidence to read beside a
        decision. The first call indexes the shipped prompts (a second or two)."""
        from .task_model import shipped_examples

        return shipped_examples().nearest(prompt, k)

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
        if guess.fallback and self.learned:
            if self.default is not None:
                chosen = trail.pick([self.default], catalogue, prefix="default ")
                if chosen is not None:
                    reason = f"{head}: fallback to the default model → {chosen.name}"
                    rule = "low-confidence:default"
                    return self._decide(request, chosen, rule, reason, guess.task)
            head += ": routed on this guess (no default model to fall back to)"
        model = trail.pick(self.task_models.get(guess.task, []), catalogue)
        if model is not None:
            return self._decide(
                request, model, f"task:{guess.task}", trail.reason(head, model.name), guess.task
            )
        tier = self.TASK_TIERS.get(guess.task, 1)
        return self._fall_back(request, catalogue, trail, head, guess.task, tier)

    def __repr__(self) -> str:
        return f"TaskRouter(default={self.default!r}, learned={self.learned})"


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _fired(signals: Mapping[str, list[tuple[float, str]]], task: str) -> tuple[str, ...]:
    """The positive cues for ``task``, strongest first, each once."""
    evidence = sorted(signals.get(task, []), key=lambda ws: -ws[0])
    return tuple(dict.fromkeys(s for w, s in evidence if w > 0))
