"""What a batch returns: its rows, wide table, summary, leaderboard and judge statistics."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import pandas as pd

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

    # -- tables

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (item, model): the item's columns, then the answer and its numbers.

        An item column named like a result column is prefixed with ``item_``.
        """
        import pandas as pd

        result_columns = ("item", "key", "model", *ROW_FIELDS)
        item_frame = pd.DataFrame(self.items)
        item_frame.columns = [f"item_{c}" if c in result_columns else c for c in item_frame.columns]
        rows = pd.DataFrame(self.rows, columns=list(result_columns))
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
        table = frame.pivot(index="item", columns="model", values=values)
        table.columns = list(table.columns)
        return table

    def summary(self) -> pd.DataFrame:
        """Per model: items, ok, failed, cost, latency and time to first token."""
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
        return pd.DataFrame(out).set_index("model")

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
        return frame

    def agreement(self) -> pd.DataFrame:
        """Per pair of judges: the share of comparisons on which they agree."""
        import pandas as pd

        pairs = judge_agreement(self.judgements)
        return pd.DataFrame(
            [{"judge": x, "other": y, "agreement": v} for (x, y), v in pairs.items()]
        )

    def leaderboard(
        self, *, plot: bool = False, rounds: int = 500, seed: int | None = 0
    ) -> pd.DataFrame:
        """Models best first: rating with a 95% bootstrap interval, record, cost.

        Pairwise: Bradley–Terry ratings (Elo scale), wins/ties/losses and
        ``usd_per_point`` (the model's cost over its rating above the lowest
        model's). Grade: the mean grade with a bootstrap interval over items.
        ``plot=True`` also draws the ratings with their intervals (matplotlib).
        """
        import pandas as pd

        summary = self.summary()
        if self.judge_mode == "grade":
            frame = self._grade_board(rounds, seed)
        else:
            ratings = bradley_terry_intervals(
                self.comparisons(), self.models, rounds=rounds, seed=seed
            )
            matrix = win_matrix(self.comparisons(), self.models)
            rows = []
            for r in ratings:
                wins = sum(matrix[r.model][b][0] for b in matrix[r.model])
                ties = sum(matrix[r.model][b][1] for b in matrix[r.model])
                losses = sum(matrix[r.model][b][2] for b in matrix[r.model])
                played = wins + ties + losses
                rows.append({
                    "model": r.model, "rating": r.rating, "ci_low": r.low, "ci_high": r.high,
                    "wins": wins, "ties": ties, "losses": losses,
                    "win_rate": (wins + ties / 2) / played if played else math.nan,
                })  # fmt: skip
            frame = pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()
        if frame.empty:
            frame = pd.DataFrame(index=pd.Index(self.models, name="model"))
        frame = frame.join(summary[["ok", "failed", "cost"]])
        if "rating" in frame:
            low = frame["rating"].min()
            above = frame["rating"] - low
            frame["usd_per_point"] = [
                c / p if c is not None and not pd.isna(c) and p > 0 else math.nan
                for c, p in zip(frame["cost"], above, strict=True)
            ]
        if plot:
            self.plot(frame)
        return frame

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
        """The ratings with their intervals as a horizontal error-bar chart (matplotlib Axes)."""
        import matplotlib.pyplot as plt

        board = self.leaderboard() if board is None else board
        board = board.iloc[::-1]
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(board)))
        ax.errorbar(
            board["rating"], range(len(board)),
            xerr=[board["rating"] - board["ci_low"], board["ci_high"] - board["rating"]],
            fmt="o", capsize=4,
        )  # fmt: skip
        ax.set_yticks(range(len(board)), list(board.index))
        ax.set_xlabel("mean grade (1-10)" if self.judge_mode == "grade" else "Bradley-Terry rating")
        ax.set_title("Leaderboard (95% bootstrap intervals)")
        fig.tight_layout()
        return ax

    # -- display

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        ok = sum(r["status"] == "ok" for r in self.rows)
        return (
            f"<BatchResult {len(self.items)} items × {len(self.models)} models: "
            f"{ok} ok, {len(self.rows) - ok} failed>"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(repr(self))}</p>" + self.summary()._repr_html_()  # type: ignore[operator]


def _quantile(series: Any, q: float) -> float | None:
    values = series.dropna()
    return float(values.quantile(q)) if len(values) else None


def _mean(series: Any) -> float | None:
    values = series.dropna()
    return float(values.mean()) if len(values) else None
