"""Measuring a router against labelled prompts (a teaching tool): the shipped labelled
set and the evaluation. pandas is imported only when these are called."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..core.models import Catalogue
from .base import Router

if TYPE_CHECKING:
    import pandas as pd

    from .task_model import LabelledPrompt, SourceScore, TaskClassifier

__all__ = [
    "ROUND_TWO_SOURCES",
    "RouterEvaluation",
    "cross_source_router_evaluation",
    "evaluate_router",
    "load_routing_prompts",
]


# The twelve held-out sources the task detector was first measured on (79.1% in its second
# round): later rounds added sources, so like-for-like figures are taken over these.
ROUND_TWO_SOURCES = frozenset(
    ["awesome-chatgpt-prompts", "dolly", "gsm8k", "humaneval", "mbpp", "mmlu", "mmo-seed",
     "truthfulqa", "written-23", "written-23-c", "written-23-d", "written-23-long"]
)  # fmt: skip


def load_routing_prompts(split: str | None = None) -> pd.DataFrame:
    """The shipped labelled prompts: columns prompt, task, complexity, split.

    ``split`` ("train" or "test") keeps one part: classifiers here were tuned
    on train only, so test is the honest measure.
    """
    from importlib import resources

    import pandas as pd

    with (
        resources.files("mmo_magic")
        .joinpath("data/routing_prompts.csv")
        .open(encoding="utf-8") as f
    ):
        data = pd.read_csv(f, dtype=str, keep_default_na=False)
    if split is not None:
        if split not in ("train", "test"):
            raise ConfigError(f"Unknown split {split!r}.", hint="Use 'train', 'test' or None.")
        data = data[data["split"] == split].reset_index(drop=True)
    return data


@dataclass
class RouterEvaluation:
    """How a router's labels (or model choices) compare with the expected ones."""

    router: str
    accuracy: float
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    per_label: pd.DataFrame

    def __str__(self) -> str:
        return f"{self.router}: accuracy {self.accuracy:.1%} on {len(self.predictions)} prompts"

    def _repr_html_(self) -> str:
        import html

        title = html.escape(str(self))
        return f"<p><b>{title}</b></p>{self.confusion.to_html()}"


def evaluate_router(
    router: Router,
    data: pd.DataFrame,
    *,
    prompt_column: str = "prompt",
    label_column: str = "label",
    catalogue: Catalogue | None = None,
) -> RouterEvaluation:
    """Score ``router`` on labelled prompts in ``data``.

    A classifying router (task, complexity) is compared on its label;
    others on the model ``route`` chooses from ``catalogue`` (default: the
    built-in models). Precision is NaN for a label never predicted.
    """
    import pandas as pd

    for column in (prompt_column, label_column):
        if column not in data.columns:
            raise ConfigError(
                f"evaluate_router: no column {column!r} in the data.",
                hint=f"Columns: {', '.join(map(str, data.columns))}. "
                "Pass prompt_column= / label_column= (e.g. label_column='task').",
            )
    prompts = [str(p) for p in data[prompt_column]]
    labels = [str(v) for v in data[label_column]]
    predicted: list[str] = []
    reasons: list[str] = []
    for prompt in prompts:
        if router.classifies:
            label, reason = router.explain(prompt)
            predicted.append(str(label))
        else:
            decision = router.route(prompt, catalogue)
            predicted.append(decision.model)
            reason = decision.reason
        reasons.append(reason)
    predictions = pd.DataFrame(
        {"prompt": prompts, "label": labels, "predicted": predicted, "reason": reasons}
    )
    predictions.insert(3, "correct", predictions["label"] == predictions["predicted"])
    accuracy = float(predictions["correct"].mean()) if len(predictions) else float("nan")
    confusion = pd.crosstab(
        pd.Series(labels, name="true"), pd.Series(predicted, name="predicted"), dropna=False
    )
    rows = []
    for label in sorted(set(labels) | set(predicted)):
        hits = int(((predictions["label"] == label) & predictions["correct"]).sum())
        n_true = labels.count(label)
        n_pred = predicted.count(label)
        rows.append(
            {
                "label": label,
                "precision": hits / n_pred if n_pred else float("nan"),
                "recall": hits / n_true if n_true else float("nan"),
                "support": n_true,
            }
        )
    per_label = pd.DataFrame(rows).set_index("label")
    return RouterEvaluation(router.name, accuracy, confusion, predictions, per_label)


def cross_source_router_evaluation(
    data: Sequence[LabelledPrompt] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    learned: bool = True,
) -> list[SourceScore]:
    """``cross_source_evaluation`` of ``TaskRouter`` as it routes: for each held-out
    source, a classifier trained on the other sources plus the cues. ``learned=False``
    measures the cues alone (nothing is trained)."""
    from .task import TaskRouter
    from .task_model import (
        BENCHMARK_TASKS,
        SourceScore,
        cross_source_evaluation,
        read_task_prompts,
    )

    data = read_task_prompts() if data is None else data
    tasks = BENCHMARK_TASKS if tasks is None else tasks

    def route(model: TaskClassifier, prompts: Sequence[str]) -> list[str]:
        router = TaskRouter(classifier=model, learned=learned)
        return [router.classify(p) for p in prompts]

    if learned:
        return cross_source_evaluation(data, tasks=tasks, predict=route)
    scores = []
    for source in sorted({d.source for d in data}):
        test = [d for d in data if d.source == source and d.task in tasks]
        if test:
            predicted = route(None, [d.prompt for d in test])  # type: ignore[arg-type]
            hits = sum(p == d.task for p, d in zip(predicted, test, strict=True))
            found = tuple(sorted({d.task for d in test}))
            scores.append(SourceScore(source, hits / len(test), len(test), found))
    return scores
