"""The learned task classifier behind ``TaskRouter``: a linear model over a text
representation (``features.py``), trained on the shipped labelled prompts.

- ``read_task_prompts`` / ``load_task_prompts`` read ``data/task_prompts.csv``: each
  prompt with its task, the source it came from, that source's licence and where in
  the source it is.
- ``train_task_classifier`` fits multinomial logistic regression (softmax, L2,
  tasks weighted to balance) with numpy in a couple of seconds, and a second, binary
  model that splits stem from humanities on content words alone (``TopicSplit``):
  which of the two a knowledge question belongs to is a matter of its subject, and
  the main model's word features also carry how the question is phrased, which
  differs by source more than by subject.
- ``TaskClassifier`` predicts task probabilities, names the words that pushed a
  prompt towards a task, and saves to / loads from a plain ``.npz`` (arrays and a
  JSON header; loading never unpickles).
- ``cross_source_evaluation`` trains without one source and tests on it, for each
  source in turn: the honest estimate of accuracy on prompts written elsewhere.

The shipped weights (``data/task_model.npz``) come from ``train_task_classifier``
on the whole shipped set; ``shipped_classifier`` loads them once. numpy is imported
only when a function here runs.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from .base import TASKS
from .features import HashedNgrams, Representation, get_representation

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "BENCHMARK_TASKS",
    "Example",
    "ExampleIndex",
    "LabelledPrompt",
    "SourceScore",
    "TaskClassifier",
    "TopicSplit",
    "cross_source_evaluation",
    "load_task_prompts",
    "read_task_prompts",
    "shipped_classifier",
    "shipped_examples",
    "train_task_classifier",
]

DATA_FILE = "data/task_prompts.csv"
REPRESENTATION = "words"
# Checked by cross-source evaluation: 30 to 120 steps score within 0.2 points of each
# other; a stronger penalty (1e-3) loses 1.6 points. A weaker one scores better on
# knowledge questions with round five's data (3e-5: +0.3 on round two's sources, +0.8 on
# round three's) but makes a prompt with no evidence confident ("hmm": humanities 0.44,
# over MIN_CONFIDENCE, against 0.30), so it is not kept.
L2, STEPS, LEARNING_RATE = 1e-4, 60, 0.5
# A task's share of the loss grows as (its prompts) ** (1 - BALANCE); 1 weighs every task
# the same. Round two measured 0.5 across held-out sources: +0.8 points on the eight
# benchmark categories (TruthfulQA +7.5, as "conversation" shrinks), but conversation's
# own recall fell from 57% to 48% and "Summarize this code: ..." turned to coding. Kept at 1.
BALANCE = 1.0
MODEL_FILE = "data/task_model.npz"
FORMAT = "mmo-task-classifier/2"
OLD_FORMATS = ("mmo-task-classifier/1",)  # no topic split: read as such
# The tasks the topic model splits, and the representation it reads.
SPLIT_TASKS = ("stem", "humanities")
TOPIC_REPRESENTATION = "topic"
# The eight categories external benchmarks of chat prompts use; the other three router
# tasks (translation, summarization, conversation) are the router's own.
BENCHMARK_TASKS = (
    "coding",
    "math",
    "reasoning",
    "extraction",
    "writing",
    "roleplay",
    "stem",
    "humanities",
)


# Words too common to explain a decision, even when the model leans on them.
_FILLER = frozenset(
    [
        "the",
        "and",
        "for",
        "you",
        "are",
        "what",
        "how",
        "can",
        "this",
        "that",
        "with",
        "from",
        "your",
        "into",
        "about",
        "was",
        "were",
        "has",
        "have",
        "its",
        "our",
        "their",
        "his",
        "her",
        "who",
        "why",
        "when",
        "which",
        "where",
        "does",
        "did",
        "will",
        "would",
        "should",
        "could",
    ]
)


@dataclass(frozen=True)
class LabelledPrompt:
    """One training prompt: its task, its source and that source's licence."""

    prompt: str
    task: str
    source: str
    licence: str
    origin: str


def read_task_prompts() -> list[LabelledPrompt]:
    """The shipped labelled prompts (no pandas needed)."""
    with resources.files("mmo_magic").joinpath(DATA_FILE).open(encoding="utf-8") as f:
        return [LabelledPrompt(**row) for row in csv.DictReader(f)]


def load_task_prompts() -> pd.DataFrame:
    """The shipped labelled prompts as a DataFrame: prompt, task, source, licence, origin."""
    import pandas as pd

    rows = read_task_prompts()
    columns = ["prompt", "task", "source", "licence", "origin"]
    return pd.DataFrame([[getattr(r, c) for c in columns] for r in rows], columns=columns)


# -- the model ------------------------------------------------------------------


class _LinearScores:
    """``scores = X @ weights + bias`` over a representation, one column per task; for one
    prompt over hashed n-grams, only the weight rows it touches are gathered."""

    tasks: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    representation: Representation
    _last: tuple[str, tuple[dict[int, float], list[tuple[str, int, float]]]] | None = None

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Raw linear scores, shape ``(len(texts), len(tasks))``."""
        import numpy as np

        if isinstance(self.representation, HashedNgrams) and len(texts) == 1:
            # One prompt (routing): gather the ~100 weight rows it touches, not all 16k.
            row, _ = self._analyse(texts[0])
            if not row:
                return self.bias[None, :].copy()
            index = np.fromiter(row.keys(), dtype=np.intp, count=len(row))
            values = np.fromiter(row.values(), dtype=np.float32, count=len(row))
            return (values @ self.weights[index] + self.bias)[None, :]
        return self.representation.transform(texts) @ self.weights + self.bias

    def _analyse(self, text: str) -> tuple[dict[int, float], list[tuple[str, int, float]]]:
        # Routing asks for the scores and then the terms of the same prompt: analyse once.
        last = self._last  # one read: another thread may replace it meanwhile
        if last is None or last[0] != text:
            assert isinstance(self.representation, HashedNgrams)
            last = self._last = (text, self.representation.analyse(text))
        return last[1]


class TopicSplit(_LinearScores):
    """A linear model over content words that shares out, among a few tasks (stem and
    humanities), the probability the main model gave them together:
    ``scores = X @ weights + bias``, one column per task of ``tasks``."""

    def __init__(
        self,
        tasks: Sequence[str],
        weights: np.ndarray,
        bias: np.ndarray,
        representation: Representation,
    ) -> None:
        import numpy as np

        self.tasks = tuple(tasks)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.representation = representation
        k = len(self.tasks)
        if self.weights.shape != (representation.dim, k) or self.bias.shape != (k,):
            raise ConfigError(f"Topic split weights have shape {self.weights.shape}.")
        self._last: tuple[str, tuple[dict[int, float], list[tuple[str, int, float]]]] | None = None

    def apply(self, probabilities: np.ndarray, scores: np.ndarray, tasks: Sequence[str]) -> None:
        """Re-split, in place, the probability these tasks share (rows of
        ``probabilities`` over ``tasks``) by this model's ``scores`` for them."""
        import numpy as np

        columns = [list(tasks).index(t) for t in self.tasks]
        share = _softmax(np.asarray(scores, dtype=np.float64))
        mass = probabilities[:, columns].sum(axis=1, keepdims=True)
        probabilities[:, columns] = mass * share

    def top_terms(self, text: str, task: str, n: int = 3) -> list[str]:
        """The content words of ``text`` that pushed it most towards ``task`` (of these)."""
        if not isinstance(self.representation, HashedNgrams) or task not in self.tasks:
            return []
        column = self.tasks.index(task)
        margin = self.weights[:, column] - self.weights.mean(axis=1)
        _, terms = self._analyse(text)
        pushes = [(value * float(margin[bucket]), gram) for gram, bucket, value in terms]
        return [gram for push, gram in sorted(pushes, reverse=True)[:n] if push > 0]


class TaskClassifier(_LinearScores):
    """Softmax regression over a representation: ``scores = X @ weights + bias``."""

    def __init__(
        self,
        tasks: Sequence[str],
        weights: np.ndarray,
        bias: np.ndarray,
        representation: Representation,
        info: Mapping[str, Any] | None = None,
        topic: TopicSplit | None = None,
    ) -> None:
        import numpy as np

        self.tasks = tuple(tasks)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.representation = representation
        self.info = dict(info or {})
        self.topic = topic if topic is not None and set(topic.tasks) <= set(self.tasks) else None
        self._last: tuple[str, tuple[dict[int, float], list[tuple[str, int, float]]]] | None = None
        expected = (representation.dim, len(self.tasks))
        if self.weights.shape != expected or self.bias.shape != (len(self.tasks),):
            raise ConfigError(
                f"Task classifier weights have shape {self.weights.shape}, expected {expected}."
            )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Each task's probability; with a topic split, stem and humanities share what
        the main model gives them as the topic model says."""
        probabilities = _softmax(self.scores(texts))
        if self.topic is not None:
            self.topic.apply(probabilities, self.topic.scores(texts), self.tasks)
        return probabilities

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.tasks[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def top_terms(self, text: str, task: str, n: int = 3) -> list[str]:
        """The words and word pairs of ``text`` that pushed it most towards ``task``.

        Measured against the average task, so words every task shares don't count;
        punctuation and words of one or two letters are left out (they decide little
        and explain nothing). Empty when the representation has no readable features.
        """
        if not isinstance(self.representation, HashedNgrams) or task not in self.tasks:
            return []
        margin = self._margins[:, self.tasks.index(task)]
        _, terms = self._analyse(text)
        pushes = [
            (value * float(margin[bucket]), gram)
            for gram, bucket, value in terms
            if len(gram) > 2 and any(c.isalpha() for c in gram) and gram not in _FILLER
        ]
        return [gram for push, gram in sorted(pushes, reverse=True)[:n] if push > 0]

    @functools.cached_property
    def _margins(self) -> np.ndarray:
        return self.weights - self.weights.mean(axis=1, keepdims=True)

    # -- persistence: arrays plus a JSON header, never pickle --

    def save(self, path: str | Path) -> None:
        import numpy as np

        header = {
            "format": FORMAT,
            "tasks": list(self.tasks),
            "representation": self.representation.name,
            "representation_version": self.representation.version,
            "info": self.info,
        }
        arrays: dict[str, Any] = {
            "header": np.array(json.dumps(header, sort_keys=True)),
            "weights": self.weights.astype(np.float16),
            "bias": self.bias,
        }
        if self.topic is not None:
            header["topic"] = {
                "tasks": list(self.topic.tasks),
                "representation": self.topic.representation.name,
                "representation_version": self.topic.representation.version,
            }
            arrays["header"] = np.array(json.dumps(header, sort_keys=True))
            arrays["topic_weights"] = self.topic.weights.astype(np.float16)
            arrays["topic_bias"] = self.topic.bias
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> TaskClassifier:
        """A classifier saved by ``save``; a foreign or mismatched file is refused clearly."""
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                formats = (FORMAT, *OLD_FORMATS)
                if not isinstance(header, dict) or header.get("format") not in formats:
                    found = header.get("format") if isinstance(header, dict) else None
                    raise ConfigError(f"{path} has format {found!r}, expected {FORMAT!r}.")
                weights, bias = data["weights"], data["bias"]
                split = header.get("topic")
                if split is not None:
                    topic_arrays = data["topic_weights"], data["topic_bias"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"{path} is not a task classifier file ({exc}).",
                hint="Save one with TaskClassifier.save().",
            ) from exc
        rep = _representation(path, header)
        topic = None
        if split is not None:
            topic = TopicSplit(split["tasks"], *topic_arrays, _representation(path, split))
        return cls(header["tasks"], weights, bias, rep, header.get("info"), topic)

    def __repr__(self) -> str:
        return f"TaskClassifier({len(self.tasks)} tasks, {self.representation.version})"


def _representation(path: str | Path, header: Mapping[str, Any]) -> Representation:
    rep = get_representation(header["representation"])
    if rep.version != header["representation_version"]:
        raise ConfigError(
            f"{path} was trained on representation {header['representation_version']!r}, "
            f"but this version of mmo_magic has {rep.version!r}.",
            hint="Retrain it with train_task_classifier().",
        )
    return rep


def _softmax(z: np.ndarray) -> np.ndarray:
    import numpy as np

    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_task_classifier(
    prompts: Sequence[str],
    labels: Sequence[str],
    *,
    representation: Representation | None = None,
    sources: Sequence[str] | None = None,
    tasks: Sequence[str] = TASKS,
    l2: float = L2,
    steps: int = STEPS,
    learning_rate: float = LEARNING_RATE,
    balance: float = BALANCE,
    topic: bool = True,
    info: Mapping[str, Any] | None = None,
) -> TaskClassifier:
    """Fit softmax regression on ``prompts`` labelled with ``labels`` (full-batch Adam).

    Each task weighs the same in the loss however many prompts it has (``balance=1``;
    0 weighs every prompt the same, values between interpolate), so a large source of
    one task (thousands of maths word problems) does not drown the rest; with
    ``sources`` (one per prompt), each source also weighs the same within a task.
    The representation defaults to ``"words"``.

    ``topic`` (when both stem and humanities prompts are present) also fits the
    ``TopicSplit`` over content words on those prompts alone.
    """
    rep = representation or get_representation(REPRESENTATION)
    unknown = sorted(set(labels) - set(tasks))
    if unknown:
        raise ConfigError(f"Unknown task label {unknown[0]!r}.", hint=f"Tasks: {', '.join(tasks)}.")
    x = _Sparse.of(rep, prompts)
    y = [list(tasks).index(label) for label in labels]
    w, b = _fit(x, y, len(tasks), l2, steps, learning_rate, groups=sources, balance=balance)
    meta = {"prompts": len(prompts), "l2": l2, "steps": steps, "balance": balance, **(info or {})}
    split = None
    if topic and set(SPLIT_TASKS) <= set(labels) and set(SPLIT_TASKS) <= set(tasks):
        keep = [i for i, label in enumerate(labels) if label in SPLIT_TASKS]
        topic_rep = get_representation(TOPIC_REPRESENTATION)
        split = _fit_topic(
            _Sparse.of(topic_rep, [prompts[i] for i in keep]),
            [labels[i] for i in keep],
            [sources[i] for i in keep] if sources is not None else None,
            topic_rep,
        )
    return TaskClassifier(tasks, w, b, rep, meta, split)


def _fit_topic(
    matrix: _Sparse,
    labels: Sequence[str],
    groups: Sequence[str] | None,
    representation: Representation,
) -> TopicSplit:
    """The stem/humanities split, fit on prompts of those two tasks only (same penalty
    and steps as the main model; each source weighs the same within a task)."""
    y = [SPLIT_TASKS.index(label) for label in labels]
    w, b = _fit(matrix, y, len(SPLIT_TASKS), L2, STEPS, LEARNING_RATE, groups=groups)
    return TopicSplit(SPLIT_TASKS, w, b, representation)


def _fit(
    x: _Sparse,
    labels: Sequence[int],
    k: int,
    l2: float,
    steps: int,
    learning_rate: float,
    groups: Sequence[str] | None = None,
    balance: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    y = np.asarray(labels)
    n = len(y)
    counts = np.bincount(y, minlength=k).astype(np.float32)
    present = counts > 0
    # Each task's share of the loss grows as count ** (1 - balance): 1 weighs every task
    # the same, 0 every prompt the same.
    share = np.where(present, np.maximum(counts, 1.0) ** (1.0 - balance), 0.0)
    share = share / share.sum()
    if groups is None:
        sample_weight = (share[y] / counts[y]).astype(np.float32)[:, None]
    else:
        # Within a task each source weighs the same.
        pairs = list(zip(groups, y.tolist(), strict=True))
        size = Counter(pairs)
        per_task = Counter(t for _, t in size)
        weight = [share[t] / (per_task[t] * size[(g, t)]) for g, t in pairs]
        sample_weight = np.array(weight, dtype=np.float32)[:, None]
    onehot = np.zeros((n, k), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    w = np.zeros((x.shape[1], k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    b[~present] = -30.0  # a task with no examples is never predicted
    params = [w, b]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        g = (_softmax(x.dot(w) + b) - onehot) * sample_weight
        grads = [x.tdot(g) + l2 * w, g.sum(axis=0)]
        grads[1][~present] = 0.0
        for p, grad, (m, v) in zip(params, grads, moments, strict=True):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            p -= learning_rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
    return w, b


class _Sparse:
    """A mostly-zero matrix kept as its non-zeros: training touches ~2% of the entries."""

    def __init__(self, dense: np.ndarray) -> None:
        import numpy as np

        rows, cols = np.nonzero(dense)
        self._build(dense.shape, rows, cols, dense[rows, cols])

    @classmethod
    def of(cls, representation: Representation, texts: Sequence[str]) -> _Sparse:
        """``texts`` transformed, without the dense matrix where the representation
        can give one text's non-zeros (a dense matrix of a few thousand prompts is
        hundreds of megabytes)."""
        if not isinstance(representation, HashedNgrams):
            return cls(representation.transform(texts))
        return cls.stack([_row(representation, text) for text in texts], representation.dim)

    @classmethod
    def stack(cls, rows: Sequence[tuple[np.ndarray, np.ndarray]], dim: int) -> _Sparse:
        """A matrix from each row's (sorted columns, values)."""
        import numpy as np

        lengths = [len(c) for c, _ in rows]
        row_index = np.repeat(np.arange(len(rows)), lengths)
        cols = np.concatenate([c for c, _ in rows]) if rows else np.zeros(0, dtype=np.intp)
        values = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, dtype=np.float32)
        matrix = cls.__new__(cls)
        matrix._build((len(rows), dim), row_index, cols, values)
        return matrix

    def _build(
        self, shape: tuple[int, ...], rows: np.ndarray, cols: np.ndarray, values: np.ndarray
    ) -> None:
        import numpy as np

        self.shape = shape
        self.values = values
        self.rows = rows
        # Sorted by column once, so the transposed product is one reduceat per call.
        order = np.argsort(cols, kind="stable")
        self.t_rows, self.t_values = rows[order], self.values[order]
        self.t_cols, self.t_starts = np.unique(cols[order], return_index=True)
        self.r_starts = np.searchsorted(rows, np.arange(self.shape[0]))
        self.r_has = np.bincount(rows, minlength=self.shape[0]) > 0
        self.cols = cols

    def dot(self, w: np.ndarray) -> np.ndarray:
        """``X @ w``."""
        import numpy as np

        out = np.zeros((self.shape[0], w.shape[1]), dtype=np.float32)
        if len(self.values):
            sums = np.add.reduceat(w[self.cols] * self.values[:, None], self.r_starts[self.r_has])
            out[self.r_has] = sums
        return out

    def tdot(self, g: np.ndarray) -> np.ndarray:
        """``X.T @ g``."""
        import numpy as np

        out = np.zeros((self.shape[1], g.shape[1]), dtype=np.float32)
        if len(self.values):
            products = g[self.t_rows] * self.t_values[:, None]
            out[self.t_cols] = np.add.reduceat(products, self.t_starts)
        return out


def _row(representation: HashedNgrams, text: str) -> tuple[np.ndarray, np.ndarray]:
    """One text's non-zero columns (sorted) and values, L2-normalised as ``transform``
    gives them."""
    import numpy as np

    row = representation.sparse(text)
    cols = np.array(sorted(row), dtype=np.intp)
    values = np.array([row[c] for c in cols], dtype=np.float32)
    norm = np.linalg.norm(values)
    return cols, values / norm if norm > 0 else values


def _rows(representation: Representation, texts: Sequence[str]) -> list[tuple[Any, Any]]:
    """Every text's non-zeros, to stack any subset of them into a ``_Sparse``."""
    import numpy as np

    if isinstance(representation, HashedNgrams):
        return [_row(representation, text) for text in texts]
    dense = representation.transform(texts)
    return [(np.flatnonzero(r), r[np.flatnonzero(r)]) for r in dense]


def train_shipped(path: str | Path | None = None) -> TaskClassifier:
    """Train on every shipped prompt and save (default: over the shipped weights)."""
    import datetime

    data = read_task_prompts()
    model = train_task_classifier(
        [d.prompt for d in data],
        [d.task for d in data],
        sources=[d.source for d in data],
        info={
            "sources": sorted({d.source for d in data}),
            "trained": datetime.date.today().isoformat(),
        },
    )
    if path is None:
        path = Path(str(resources.files("mmo_magic").joinpath(MODEL_FILE)))
    model.save(path)
    return model


@functools.cache
def shipped_classifier() -> TaskClassifier:
    """The classifier trained on the shipped prompts (loaded once, about 10 ms)."""
    with resources.as_file(resources.files("mmo_magic").joinpath(MODEL_FILE)) as path:
        return TaskClassifier.load(path)


# -- evaluation -------------------------------------------------------------------


@dataclass(frozen=True)
class SourceScore:
    """Accuracy on one held-out source, counting only prompts of ``tasks``."""

    source: str
    accuracy: float
    prompts: int
    tasks: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}: {self.accuracy:.1%} of {self.prompts} ({', '.join(self.tasks)})"


def cross_source_evaluation(
    data: Sequence[LabelledPrompt],
    *,
    tasks: Sequence[str] = BENCHMARK_TASKS,
    predict: Any = None,
    by_source: bool = True,
    **train_options: Any,
) -> list[SourceScore]:
    """For each source: train on all the others, test on its prompts of ``tasks``.

    ``predict(model, prompts) -> labels`` replaces ``model.predict`` (to test a
    combination with the cues, say). A source with no prompt of ``tasks`` is skipped.
    """
    import numpy as np

    options = {
        "l2": L2,
        "steps": STEPS,
        "learning_rate": LEARNING_RATE,
        "balance": BALANCE,
        **train_options,
    }
    rep = options.pop("representation", None) or get_representation(REPRESENTATION)
    topic = options.pop("topic", True)
    all_tasks = TASKS
    # Each prompt's non-zeros once; each fold stacks the rows it trains on.
    rows = _rows(rep, [d.prompt for d in data])
    labels = np.array([all_tasks.index(d.task) for d in data])
    sources = np.array([d.source for d in data])
    split_rows = np.isin(labels, [all_tasks.index(t) for t in SPLIT_TASKS])
    if topic:
        topic_rep = get_representation(TOPIC_REPRESENTATION)
        topic_rows = _rows(topic_rep, [d.prompt for d in data])
    scores = []
    for source in sorted(set(sources)):
        test = (sources == source) & np.isin(labels, [all_tasks.index(t) for t in tasks])
        if not test.any():
            continue
        train = sources != source
        groups = sources[train].tolist() if by_source else None
        x = _Sparse.stack([rows[i] for i in np.flatnonzero(train)], rep.dim)
        w, b = _fit(x, labels[train], len(all_tasks), groups=groups, **options)
        split = None
        if topic:
            fit_rows = train & split_rows
            split = _fit_topic(
                _Sparse.stack([topic_rows[i] for i in np.flatnonzero(fit_rows)], topic_rep.dim),
                [all_tasks[i] for i in labels[fit_rows]],
                sources[fit_rows].tolist() if by_source else None,
                topic_rep,
            )
        model = TaskClassifier(all_tasks, w, b, rep, topic=split)
        prompts = [d.prompt for d, t in zip(data, test, strict=True) if t]
        predicted = predict(model, prompts) if predict else model.predict(prompts)
        truth = [all_tasks[i] for i in labels[test]]
        hits = sum(p == t for p, t in zip(predicted, truth, strict=True))
        scores.append(SourceScore(source, hits / len(truth), len(truth), tuple(sorted(set(truth)))))
    return scores


def mean_accuracy(scores: Sequence[SourceScore]) -> float:
    """Prompt-weighted accuracy over held-out sources."""
    total = sum(s.prompts for s in scores)
    return math.fsum(s.accuracy * s.prompts for s in scores) / total if total else float("nan")


# -- nearest labelled examples ------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A shipped labelled prompt close to the one being routed (cosine similarity)."""

    prompt: str
    task: str
    source: str
    similarity: float


class ExampleIndex:
    """The shipped prompts as sparse vectors, for nearest-example evidence.

    Built on first use (vectorising every shipped prompt takes a second or two), then
    a lookup reads only the columns the query's n-grams touch.
    """

    def __init__(self, data: Sequence[LabelledPrompt], representation: Representation) -> None:
        self.data = list(data)
        self.representation = representation
        self.matrix = _Sparse.of(representation, [d.prompt for d in self.data])

    def nearest(self, text: str, k: int = 3) -> list[Example]:
        import numpy as np

        query = self.representation.transform([text])[0]
        buckets = np.flatnonzero(query)
        m = self.matrix
        where = np.searchsorted(m.t_cols, buckets)
        clipped = np.minimum(where, len(m.t_cols) - 1)
        found = (where < len(m.t_cols)) & (m.t_cols[clipped] == buckets)
        ends = np.append(m.t_starts[1:], len(m.t_rows))
        sims = np.zeros(len(self.data), dtype=np.float32)
        for bucket, at in zip(buckets[found], where[found], strict=True):
            rows = slice(m.t_starts[at], ends[at])
            np.add.at(sims, m.t_rows[rows], m.t_values[rows] * query[bucket])
        best = np.argsort(-sims, kind="stable")[:k]
        return [
            Example(self.data[i].prompt, self.data[i].task, self.data[i].source, float(sims[i]))
            for i in best
            if sims[i] > 0
        ]


@functools.cache
def shipped_examples() -> ExampleIndex:
    """The index of the shipped prompts in the shipped classifier's representation."""
    return ExampleIndex(read_task_prompts(), shipped_classifier().representation)
