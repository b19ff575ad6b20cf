"""Per-model quality predictors over a prompt representation: kernel ridge and kNN.

Prompts are L2-normalised sparse vectors (hashed n-grams, ~16k dimensions,
a few hundred non-zeros each), so everything here works from similarities:
the Gram matrix of the training prompts and, for a new prompt, its
similarities to them. Kept sparse (``SparseRows``), a training set of a few
thousand prompts holds a few megabytes, and the Gram matrix is computed once
and sliced for every cross-validation fold.

- ``ridge``: ridge regression on the representation with an unpenalised
  intercept, solved in its dual form (the Gram matrix, centred). One
  eigendecomposition per training set gives every ``alpha`` and exact
  leave-one-out predictions.
- ``knn``: the similarity-weighted mean quality of the ``k`` most similar
  training prompts, shrunk towards the model's mean by one pseudo-neighbour.
- ``mean``: each model's mean quality (the reference a predictor must beat).

``Trainer.choose`` picks among them by leave-one-out error on the training set only,
so an outer cross-validation around it stays honest. Missing qualities (NaN)
are left out of each model's fit.

numpy only, imported where used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CANDIDATES", "Fitted", "PredictorSpec", "SparseRows", "Trainer"]


# -- sparse rows ----------------------------------------------------------------------------------


@dataclass
class SparseRows:
    """Row vectors in compressed sparse row form: ``indptr`` (n+1), ``indices``, ``data``."""

    indptr: np.ndarray  # int64
    indices: np.ndarray  # int32
    data: np.ndarray  # float32
    dim: int

    @classmethod
    def from_dense(cls, chunks: Sequence[np.ndarray], dim: int) -> SparseRows:
        import numpy as np

        indptr, indices, data = [np.zeros(1, dtype=np.int64)], [], []
        offset = 0
        for chunk in chunks:
            rows, cols = np.nonzero(chunk)
            counts = np.bincount(rows, minlength=chunk.shape[0])
            indptr.append(offset + np.cumsum(counts))
            offset += len(cols)
            indices.append(cols.astype(np.int32))
            data.append(chunk[rows, cols].astype(np.float32))
        return cls(
            np.concatenate(indptr).astype(np.int64),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.concatenate(data) if data else np.zeros(0, np.float32),
            dim,
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.data[start:end]

    def similarities(self, queries: np.ndarray, block: int = 32) -> np.ndarray:
        """``queries @ rows.T`` for dense query rows (b, dim): float64 of shape (b, n)."""
        import numpy as np

        n = len(self)
        out = np.zeros((queries.shape[0], n))
        if n == 0 or len(self.data) == 0:
            return out
        lengths = np.diff(self.indptr)
        starts = np.minimum(self.indptr[:-1], len(self.data) - 1)
        for b in range(0, queries.shape[0], block):
            products = queries[b : b + block][:, self.indices] * self.data  # (b, nnz)
            sums = np.add.reduceat(products, starts, axis=1)
            # reduceat gives the element at an empty row's start instead of 0.
            sums[:, lengths == 0] = 0.0
            out[b : b + block] = sums
        return out

    def dense(self, rows: Sequence[int]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for k, i in enumerate(rows):
            cols, values = self.row(i)
            out[k, cols] = values
        return out

    def gram(self, block: int = 128) -> np.ndarray:
        """The (n, n) matrix of inner products between the rows."""
        import numpy as np

        n = len(self)
        out = np.zeros((n, n))
        for b in range(0, n, block):
            out[b : b + block] = self.similarities(self.dense(range(b, min(n, b + block))))
        return (out + out.T) / 2  # exact symmetry for eigh


# -- predictors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictorSpec:
    """A predictor and its one setting: ridge ``alpha``, knn ``k``, or the mean."""

    kind: str  # "ridge" | "knn" | "mean"
    value: float = 0.0

    def __str__(self) -> str:
        if self.kind == "ridge":
            return f"ridge(alpha={self.value:g})"
        if self.kind == "knn":
            return f"knn(k={int(self.value)})"
        return "mean"


CANDIDATES: tuple[PredictorSpec, ...] = (
    *(PredictorSpec("ridge", a) for a in (0.1, 0.3, 1.0, 3.0, 10.0)),
    *(PredictorSpec("knn", k) for k in (5, 10, 20, 40)),
    PredictorSpec("mean"),
)


@dataclass
class Fitted:
    """A predictor fitted on a training set, as arrays over the training rows.

    Predicting for prompts with similarities ``S`` (b, n) to the training rows:
    ridge ``mean + (S - S.mean(1) - col_mean + grand_mean) @ coef``; knn the
    weighted mean of ``targets`` over the ``k`` most similar rows.
    """

    spec: PredictorSpec
    mean: np.ndarray  # (M,) each model's mean training quality
    coef: np.ndarray | None = None  # ridge: (n, M) dual coefficients
    col_mean: np.ndarray | None = None  # ridge: (n,) column means of the Gram matrix
    grand_mean: float = 0.0  # ridge: mean of the Gram matrix
    targets: np.ndarray | None = None  # knn: (n, M) training qualities (NaN where unknown)

    def predict(self, sims: np.ndarray) -> np.ndarray:
        """Predicted quality (b, M) from similarities (b, n) to the training rows."""
        import numpy as np

        b = sims.shape[0]
        if self.spec.kind == "ridge":
            assert self.coef is not None and self.col_mean is not None
            centred = sims - sims.mean(axis=1, keepdims=True) - self.col_mean + self.grand_mean
            return np.asarray(self.mean + centred @ self.coef)
        if self.spec.kind == "knn":
            assert self.targets is not None
            return np.stack(
                [_knn(sims, self.targets[:, m], self.mean[m], int(self.spec.value))
                 for m in range(self.targets.shape[1])],
                axis=1,
            )  # fmt: skip
        return np.tile(self.mean, (b, 1))


def _knn(sims: np.ndarray, y: np.ndarray, mean: float, k: int) -> np.ndarray:
    """Per row of ``sims``: similarity-weighted mean of ``y`` over the k nearest known rows,
    with one pseudo-neighbour at the mean (weight 1) so a lone neighbour can't decide alone."""
    import numpy as np

    known = ~np.isnan(y)
    s = np.where(known[None, :], sims, -np.inf)
    k = max(1, min(k, int(known.sum())))
    nearest = np.argpartition(-s, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(s, nearest, axis=1)
    weights = np.where(np.isfinite(top), np.clip(top, 0.0, None), 0.0)
    values = np.nan_to_num(y[nearest])
    return np.asarray((weights * values).sum(axis=1) + mean) / (weights.sum(axis=1) + 1.0)


def _centre(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    col_mean = gram.mean(axis=0)
    grand = float(col_mean.mean())
    centred = gram - col_mean[None, :] - col_mean[:, None] + grand
    return centred, col_mean, grand


def _column_means(y: np.ndarray) -> np.ndarray:
    import numpy as np

    known = ~np.isnan(y)
    counts = known.sum(axis=0)
    sums = np.where(known, y, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)


def _ridge_groups(y: np.ndarray) -> dict[bytes, list[int]]:
    """Models grouped by which training rows they have a quality for (one solve per group)."""
    import numpy as np

    groups: dict[bytes, list[int]] = {}
    for m in range(y.shape[1]):
        groups.setdefault(np.packbits(~np.isnan(y[:, m])).tobytes(), []).append(m)
    return groups


@dataclass
class _Basis:
    """The eigendecomposition of one group's centred Gram matrix: every ridge ``alpha``,
    its fit and its leave-one-out predictions come from it without another solve."""

    rows: np.ndarray  # training rows the group's models are known on
    members: np.ndarray  # the models (column indices)
    values: np.ndarray
    vectors: np.ndarray
    target: np.ndarray  # (rows, members) qualities


class Trainer:
    """One training set (its Gram matrix and qualities): fits and leave-one-out predictions.

    The centred Gram matrix is decomposed once per group of models with the same known
    rows (usually one group), and shared by every ridge setting.
    """

    def __init__(self, gram: np.ndarray, y: np.ndarray) -> None:
        self.gram, self.y = gram, y
        self.mean = _column_means(y)
        self._bases: list[_Basis] | None = None

    @property
    def bases(self) -> list[_Basis]:
        import numpy as np

        if self._bases is None:
            self._bases = []
            for group in _ridge_groups(self.y).values():
                members = np.array(group)
                rows = np.flatnonzero(~np.isnan(self.y[:, members[0]]))
                if len(rows) < 3:
                    continue
                centred, _, _ = _centre(self.gram[np.ix_(rows, rows)])
                values, vectors = np.linalg.eigh(centred)
                target = self.y[np.ix_(rows, members)]
                self._bases.append(
                    _Basis(rows, members, np.clip(values, 0.0, None), vectors, target)
                )
        return self._bases

    def fit(self, spec: PredictorSpec) -> Fitted:
        import numpy as np

        if spec.kind == "knn":
            return Fitted(spec, self.mean, targets=self.y.copy())
        if spec.kind != "ridge":
            return Fitted(spec, self.mean)
        coef = np.zeros(self.y.shape)
        _, col_mean, grand = _centre(self.gram)
        for b in self.bases:
            # Centring over the group's rows keeps its intercept exact; when a model misses
            # a few rows, ``predict`` centring with every row's means is a small approximation.
            inverse = b.vectors @ ((b.vectors.T @ (b.target - self.mean[b.members]))
                                   / (b.values + spec.value)[:, None])  # fmt: skip
            coef[np.ix_(b.rows, b.members)] = inverse
        return Fitted(spec, self.mean, coef=coef, col_mean=col_mean, grand_mean=grand)

    def loo_predictions(self, specs: Sequence[PredictorSpec]) -> dict[PredictorSpec, np.ndarray]:
        """Leave-one-out predictions (n, M) of every spec on the training set.

        Exact for ridge (the hat-matrix identity) and for knn (a row is not its own neighbour).
        """
        import numpy as np

        n, models = self.y.shape
        out: dict[PredictorSpec, np.ndarray] = {}
        for s in specs:
            if s.kind == "ridge":
                predicted = np.tile(self.mean, (n, 1))
                for b in self.bases:
                    shrink = b.values / (b.values + s.value)
                    centred = b.target - b.target.mean(axis=0)
                    fitted = b.target.mean(axis=0) + b.vectors @ (
                        shrink[:, None] * (b.vectors.T @ centred)
                    )
                    hat = 1.0 / len(b.rows) + (b.vectors**2) @ shrink
                    predicted[np.ix_(b.rows, b.members)] = (
                        b.target - (b.target - fitted) / (1.0 - hat)[:, None]
                    )
                out[s] = predicted
            elif s.kind == "knn":
                sims = self.gram.copy()
                np.fill_diagonal(sims, -np.inf)
                out[s] = np.stack(
                    [
                        _knn(sims, self.y[:, m], _loo_mean(self.y[:, m]), int(s.value))
                        for m in range(models)
                    ],
                    axis=1,
                )
            else:
                out[s] = np.tile(self.mean, (n, 1))
        return out

    def choose(self, specs: Sequence[PredictorSpec] = CANDIDATES) -> PredictorSpec:
        """The spec with the smallest mean squared leave-one-out error on this training set."""
        import numpy as np

        usable = [s for s in specs if s.kind != "knn" or s.value < len(self.y)]
        usable = usable or [PredictorSpec("mean")]
        known = ~np.isnan(self.y)
        errors = {
            s: float(np.mean((p[known] - self.y[known]) ** 2))
            for s, p in self.loo_predictions(usable).items()
        }
        return min(usable, key=lambda s: errors[s])


def _loo_mean(y: np.ndarray) -> float:
    import numpy as np

    known = y[~np.isnan(y)]
    return float(known.mean()) if len(known) else 0.5
