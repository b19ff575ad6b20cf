"""What a batch returns: its rows, wide table, summary, leaderboard and judge statistics."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..orchestration.judges import TIE
from .progress import BatchStats
from .ratings import (
    Comparison,
    bradley_terry_intervals,
    judge_agreement,
    position_bias,
    win_matrix,
)
from .rows import ROW_FIELDS, ItemRow
from .scoring import failed_rule, score_table

if TYPE_CHECKING:
    import pandas as pd

    from ..core.models import Catalogue
    from ..routing.learned import LearnedRouting

_SUMMARY_BASICS = (
    "items", "ok", "failed", "failure_rate", "resumed", "cost", "latency_p50_ms",
    "latency_p95_ms", "ttft_p50_ms", "output_tokens_mean",
)  # fmt: skip

__all__ = ["BatchResult"]


# -- the result -----------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Every (item, model) outcome of a batch, its judgements, and their aggregates."""

    items: list[dict[str, Any]]
    models: list[str]
    rows: list[ItemRow]  # one per (item, model), item-major
    group_id: str
    judges: list[str] = field(default_factory=list)
    judge_mode: str = "pairwise"
    judgements: list[dict[str, Any]] = field(default_factory=list)  # pairwise
    grades: list[dict[str, Any]] = field(default_factory=list)  # grade mode
    worst_case_cost: float | None = None
    judge_cost: float = 0.0
    stats: BatchStats | None = None
    prompts: list[str] = field(default_factory=list)  # each item's rendered prompt
    scores: list[dict[str, Any]] = field(default_factory=list)  # per (row, scorer)
    scorers: list[dict[str, str]] = field(default_factory=list)  # name, failed ("zero"/"skip")
    epochs: int = 1
    spec: dict[str, Any] = field(default_factory=dict)  # the options, as JSON values
    prices: dict[str, dict[str, float | None]] = field(default_factory=dict)  # USD per 1k

    # -- tables

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (item, model): the item's columns, then the answer and its numbers.

        An item column named like a result column is prefixed with ``item_``.
        """
        import pandas as pd

        result_columns = ("item", "key", "model", "epoch", *ROW_FIELDS)
        item_frame = pd.DataFrame(self.items)
        item_frame.columns = [f"item_{c}" if c in result_columns else c for c in item_frame.columns]
        rows = pd.DataFrame([{"epoch": 0, **r} for r in self.rows], columns=list(result_columns))
        if len(item_frame.columns):
            frame = pd.concat([item_frame.iloc[rows["item"]].reset_index(drop=True), rows], axis=1)
        else:
            frame = rows
        types = {
            "input_tokens": "Int64", "output_tokens": "Int64", "attempts": "Int64",
            "ttft_ms": "Float64", "latency_ms": "Float64", "cost": "Float64",
            "cached": "boolean", "resumed": "boolean", "answer": "string", "error": "string",
        }  # fmt: skip
        frame = frame.astype(types)
        frame["model"] = pd.Categorical(frame["model"], categories=self.models)
        frame["status"] = frame["status"].astype("category")
        return frame

    def wide(self, values: str = "answer") -> pd.DataFrame:
        """Items × models: each cell is the model's ``values`` (default: the answer)."""
        frame = self.to_dataframe()
        index = ["item", "epoch"] if self.epochs > 1 else "item"
        table = frame.pivot(index=index, columns="model", values=values)
        table.columns = list(table.columns)
        return table

    def summary(self, *, rounds: int = 500, seed: int | None = 0) -> pd.DataFrame:
        """Per model: items, ok, failed, cost, latency and time to first token; per scorer
        its mean with a 95% bootstrap interval, the items scored, failed answers left out
        (and with ``epochs > 1`` the variance across repeats). ``attrs["notes"]`` says
        how each scorer counts failed answers."""
        import pandas as pd

        frame = self.to_dataframe()
        out = []
        for model in self.models:
            rows = frame[frame["model"] == model]
            ok = rows[rows["status"] == "ok"]
            cost = rows["cost"].dropna()
            out.append({
                "model": model, "items": len(rows), "ok": len(ok),
                "failed": int((rows["status"] != "ok").sum()),
                "failure_rate": float((rows["status"] != "ok").mean()) if len(rows) else math.nan,
                "resumed": int(rows["resumed"].sum()),
                "cost": float(cost.sum()) if len(cost) else None,
                "latency_p50_ms": _quantile(ok["latency_ms"], 0.5),
                "latency_p95_ms": _quantile(ok["latency_ms"], 0.95),
                "ttft_p50_ms": _quantile(ok["ttft_ms"], 0.5),
                "output_tokens_mean": _mean(ok["output_tokens"]),
            })  # fmt: skip
        table = pd.DataFrame(out).set_index("model")
        return _shown(self._with_scores(table, rounds, seed))

    # -- scorers

    def scores_frame(self) -> pd.DataFrame:
        """One row per (item, epoch, model, scorer): the score (NaN: left out), failed."""
        import pandas as pd

        columns = ["item", "epoch", "model", "scorer", "score", "failed"]
        return pd.DataFrame(self.scores, columns=columns).astype({"score": "Float64"})

    def _with_scores(self, table: pd.DataFrame, rounds: int, seed: int | None) -> pd.DataFrame:
        """``table`` (indexed by model) with each scorer's columns, and notes saying how
        failed answers count."""
        notes = []
        for scorer in self.scorers:
            name = scorer["name"]
            stats = score_table(self.scores, name, self.models, self.epochs,
                                rounds=rounds, seed=seed)  # fmt: skip
            table[name] = [stats[m].mean for m in table.index]
            table[f"{name}_low"] = [stats[m].low for m in table.index]
            table[f"{name}_high"] = [stats[m].high for m in table.index]
            table[f"{name}_items"] = [stats[m].items for m in table.index]
            table[f"{name}_failed"] = [
                failed_rule(scorer["failed"])
                + (f" ({stats[m].left_out})" if stats[m].left_out else "")
                for m in table.index
            ]
            if self.epochs > 1:
                table[f"{name}_epoch_var"] = [stats[m].epoch_var for m in table.index]
            notes.append(f"{name}: failed answers {failed_rule(scorer['failed'])}")
        if self.epochs > 1:
            notes.append(f"{self.epochs} answers per (item, model); _epoch_var: the variance "
                         "of a model's mean across repeats")  # fmt: skip
        table.attrs["notes"] = notes
        return table

    @property
    def cost(self) -> float:
        """USD spent on answers and judges (unpriced calls count as nothing)."""
        return sum(r["cost"] or 0.0 for r in self.rows if not r.get("resumed")) + self.judge_cost

    # -- judging

    def comparisons(self) -> list[Comparison]:
        """Every usable pairwise verdict (both orders merged) as a Comparison."""
        out = []
        for j in self.judgements:
            if j["winner"] is None:
                continue
            score = 0.5 if j["winner"] == TIE else 1.0 if j["winner"] == j["model_a"] else 0.0
            out.append(Comparison(j["item"], j["model_a"], j["model_b"], score))
        return out

    def judgements_frame(self) -> pd.DataFrame:
        import pandas as pd

        if self.judge_mode == "grade":
            return pd.DataFrame(self.grades)
        return pd.DataFrame(self.judgements)

    def win_matrix(self) -> pd.DataFrame:
        """Rows beat columns: "wins-ties-losses" of the row model against the column model."""
        import pandas as pd

        matrix = win_matrix(self.comparisons(), self.models)
        return pd.DataFrame(
            {b: {a: ("" if a == b else "-".join(map(str, matrix[a][b]))) for a in self.models}
             for b in self.models}
        ).loc[self.models, self.models]  # fmt: skip

    def bias(self) -> pd.DataFrame:
        """Per judge: pairs judged both ways, flip rate, position-bias rate, first-position rate."""
        import pandas as pd

        stats = position_bias(self.judgements)
        frame = pd.DataFrame.from_dict(stats, orient="index")
        frame.index.name = "judge"
        if len(frame):
            frame["tie_rate"] = [self._tie_rate(str(judge)) for judge in frame.index]
        return _shown(frame)

    def agreement(self) -> pd.DataFrame:
        """Per pair of judges: the share of comparisons on which they agree."""
        import pandas as pd

        pairs = judge_agreement(self.judgements)
        frame = pd.DataFrame(
            [{"judge": x, "other": y, "agreement": v} for (x, y), v in pairs.items()],
            columns=["judge", "other", "agreement"],
        )
        if len(self.judges) < 2:
            frame.attrs["notes"] = [
                f"{len(self.judges)} judge: agreement needs two or more (see bias() for "
                "one judge's consistency across the two orders)"
            ]
        return _shown(frame)

    def leaderboard(
        self, *, plot: bool = False, rounds: int = 500, seed: int | None = 0
    ) -> pd.DataFrame:
        """Models best first: rating with a 95% bootstrap interval, record, scores, cost.

        Pairwise: Bradley–Terry ratings (Elo scale), wins/ties/losses, each judge's
        tie rate on the model's pairs (``ties[judge]``) and ``usd_per_point`` (the
        model's cost over its rating above the lowest model's). Grade: the mean grade
        with a bootstrap interval over items. ``judged_items``: the items the model
        has a verdict on (a failed answer is not judged: the notes say how many).
        Scorers: each one's mean, interval, items scored and how failed answers
        count (see ``summary``). Without judges the first scorer orders the board.
        ``attrs["notes"]`` says in words what was left out. ``plot=True`` also draws
        the ratings (or the first scorer) with their intervals (matplotlib).
        """
        import pandas as pd

        summary = self.summary(rounds=rounds, seed=seed)
        notes = list(summary.attrs.get("notes", []))
        frame = pd.DataFrame()
        if self.judges and self.judge_mode == "grade":
            frame = self._grade_board(rounds, seed)
        elif self.judges:
            frame = self._pairwise_board(rounds, seed)
        if frame.empty:
            frame = pd.DataFrame(index=pd.Index(self.models, name="model"))
        if self.judges:
            frame["judged_items"] = [self._judged_items(m) for m in frame.index]
            for model in frame.index:
                failed = int(summary.loc[model, "failed"])
                if failed:
                    answers = (
                        "1 failed answer is" if failed == 1 else f"{failed} failed answers are"
                    )
                    notes.append(
                        f"{model} was judged on {frame.loc[model, 'judged_items']} of "
                        f"{len(self.items)} items: {answers} not judged"
                    )
        scored = [c for c in summary.columns if c not in _SUMMARY_BASICS]
        frame = frame.join(summary[["ok", "failed", "cost", *scored]])
        if "rating" in frame:
            low = frame["rating"].min()
            above = frame["rating"] - low
            frame["usd_per_point"] = [
                c / p if c is not None and not pd.isna(c) and p > 0 else math.nan
                for c, p in zip(frame["cost"], above, strict=True)
            ]
        elif self.scorers:
            frame = frame.sort_values(self.scorers[0]["name"], ascending=False)
        frame.attrs["notes"] = notes
        if plot:
            self.plot(frame)
        return _shown(frame)

    def _pairwise_board(self, rounds: int, seed: int | None) -> pd.DataFrame:
        import pandas as pd

        comparisons = self.comparisons()
        ratings = bradley_terry_intervals(comparisons, self.models, rounds=rounds, seed=seed)
        matrix = win_matrix(comparisons, self.models)
        rows = []
        for r in ratings:
            wins = sum(matrix[r.model][b][0] for b in matrix[r.model])
            ties = sum(matrix[r.model][b][1] for b in matrix[r.model])
            losses = sum(matrix[r.model][b][2] for b in matrix[r.model])
            played = wins + ties + losses
            row = {
                "model": r.model, "rating": r.rating, "ci_low": r.low, "ci_high": r.high,
                "wins": wins, "ties": ties, "losses": losses,
                "win_rate": (wins + ties / 2) / played if played else math.nan,
            }  # fmt: skip
            for judge in self.judges:
                row[f"ties[{judge}]"] = self._tie_rate(judge, r.model)
            rows.append(row)
        return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()

    def _tie_rate(self, judge: str, model: str | None = None) -> float:
        """The share of ``judge``'s usable verdicts (on ``model``'s pairs) that are ties."""
        verdicts = [
            j["winner"] for j in self.judgements
            if j["judge"] == judge and j["winner"] is not None
            and (model is None or model in (j["model_a"], j["model_b"]))
        ]  # fmt: skip
        return sum(v == TIE for v in verdicts) / len(verdicts) if verdicts else math.nan

    def _judged_items(self, model: str) -> int:
        if self.judge_mode == "grade":
            return len({g["item"] for g in self.grades
                        if g["model"] == model and g["score"] is not None})  # fmt: skip
        pairs = [j for j in self.judgements if model in (j["model_a"], j["model_b"])]
        return len({j["item"] for j in pairs if j["winner"] is not None})

    # -- learned routing

    def learn_router(
        self,
        *,
        models: Sequence[str] | None = None,
        prompts: Sequence[str] | None = None,
        prompt: str | None = None,
        failed_quality: float = 0.0,
        prices: Mapping[str, float] | None = None,
        catalogue: Catalogue | None = None,
        representation: str = "default",
        folds: int = 5,
        seed: int = 0,
    ) -> LearnedRouting:
        """A router learned from this judged batch (``evaluation.learning.learn_router``)."""
        from .learning import learn_router

        return learn_router(
            self, models=models, prompts=prompts, prompt=prompt,
            failed_quality=failed_quality, prices=prices, catalogue=catalogue,
            representation=representation, folds=folds, seed=seed,
        )  # fmt: skip

    def _grade_board(self, rounds: int, seed: int | None) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(seed)
        rows = []
        for model in self.models:
            by_item: dict[int, list[float]] = defaultdict(list)
            for g in self.grades:
                if g["model"] == model and g["score"] is not None:
                    by_item[g["item"]].append(float(g["score"]))
            means = np.array([sum(v) / len(v) for v in by_item.values()])
            if len(means):
                draws = rng.choice(means, size=(rounds, len(means)), replace=True).mean(axis=1)
                low, high = np.quantile(draws, [0.025, 0.975])
                rows.append({
                    "model": model, "rating": float(means.mean()), "ci_low": float(low),
                    "ci_high": float(high), "graded": len(means),
                })  # fmt: skip
            else:
                rows.append({"model": model, "rating": math.nan, "ci_low": math.nan,
                             "ci_high": math.nan, "graded": 0})  # fmt: skip
        return pd.DataFrame(rows).set_index("model").sort_values("rating", ascending=False)

    def plot(self, board: pd.DataFrame | None = None) -> Any:
        """The ratings (or, without judges, the first scorer) with their 95% intervals as a
        horizontal error-bar chart (matplotlib Axes)."""
        import matplotlib.pyplot as plt

        board = self.leaderboard() if board is None else board
        board = board.iloc[::-1]
        if "rating" in board:
            value, low, high = "rating", "ci_low", "ci_high"
            label = "mean grade (1-10)" if self.judge_mode == "grade" else "Bradley-Terry rating"
        elif self.scorers:
            value = self.scorers[0]["name"]
            low, high, label = f"{value}_low", f"{value}_high", f"{value} (mean score)"
        else:
            raise ConfigError("Nothing to plot: the batch had no judges and no scorers.")
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(board)))
        ax.errorbar(
            board[value], range(len(board)),
            xerr=[board[value] - board[low], board[high] - board[value]],
            fmt="o", capsize=4,
        )  # fmt: skip
        ax.set_yticks(range(len(board)), list(board.index))
        ax.set_xlabel(label)
        ax.set_title("Leaderboard (95% bootstrap intervals)")
        fig.tight_layout()
        return ax

    # -- keeping and sharing

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this result into the folder ``path`` (Parquet and JSON, never pickle);
        ``mmo_magic.evaluation.load_batch(path)`` reads it back (``evaluation.persist``)."""
        from .persist import save_batch

        return save_batch(self, path)

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """A self-contained report (leaderboard and plot, answers side by side, scorer and
        judge statistics, cost) that opens offline; written to ``path`` when given."""
        from .report import report_html

        text = report_html(self)
        if path is not None:
            Path(path).expanduser().write_text(text, encoding="utf-8")
        return text

    # -- display

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        ok = sum(r["status"] == "ok" for r in self.rows)
        # A stopped batch's unanswered rows are cancelled: stopped, not failures of the model.
        stopped = sum(r["status"] == "cancelled" for r in self.rows)
        counts = f"{ok} ok, {len(self.rows) - ok - stopped} failed"
        counts += f", {stopped} stopped" if stopped else ""
        return f"<BatchResult {len(self.items)} items × {len(self.models)} models: {counts}>"

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(repr(self))}</p>" + self.summary()._repr_html_()  # type: ignore[operator]


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as it is, displayed rounded with its notes (see evaluation.display)."""
    from .display import shown

    return shown(frame)


def _quantile(series: Any, q: float) -> float | None:
    values = series.dropna()
    return float(values.quantile(q)) if len(values) else None


def _mean(series: Any) -> float | None:
    values = series.dropna()
    return float(values.mean()) if len(values) else None


def load_batch(path: str | os.PathLike[str]) -> BatchResult:
    """The ``BatchResult`` saved in the folder ``path`` by ``br.save(path)``."""
    from .persist import read_saved

    return BatchResult(**read_saved(path))
