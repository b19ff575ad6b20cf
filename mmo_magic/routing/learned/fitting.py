"""``learn(evidence) -> LearnedRouting``: fit per-model quality predictors, measure the
price-aware policy on held-out folds, and hand out routers at a chosen knob.

Honest evaluation: items are split into folds; for each fold the predictor
(and its setting, chosen by leave-one-out on the other folds only) is fit on
the other folds and predicts the held-out one. Every curve point, every
``at(...)`` figure and APGR come from those out-of-fold predictions. The
router ``at`` returns is then fit on every item, with the knob the held-out
curve chose.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...core.errors import ConfigError
from ..features import Representation, get_representation
from . import policy
from .evidence import RoutingEvidence
from .predictors import CANDIDATES, PredictorSpec, SparseRows, Trainer

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .router import LearnedRouter

__all__ = ["LearnedRouting", "embed", "learn"]

DEFAULT_CONFIDENCE = 0.95


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run the small linear algebra here on one BLAS thread (when threadpoolctl is there).

    Matrices of a few hundred rows gain nothing from threads, and on a busy machine
    OpenBLAS's spinning threads made an eigendecomposition of 240 rows about 100 times
    slower (2 s instead of 16 ms), measured.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def embed(representation: Representation, texts: Sequence[str], chunk: int = 256) -> SparseRows:
    """The texts' vectors, transformed a chunk at a time and kept sparse."""
    chunks = (representation.transform(texts[i : i + chunk]) for i in range(0, len(texts), chunk))
    return SparseRows.from_dense(list(chunks), representation.dim)


def learn(
    evidence: RoutingEvidence,
    *,
    representation: str = "default",
    folds: int = 5,
    seed: int = 0,
    predictors: Sequence[PredictorSpec] = CANDIDATES,
) -> LearnedRouting:
    """A learned routing over ``evidence``: see ``LearnedRouting``."""
    return LearnedRouting(
        evidence, representation=representation, folds=folds, seed=seed, predictors=predictors
    )


def _distinct(quality: np.ndarray, price_share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knobs giving distinct policies (the smallest knob of each) and their picks."""
    import numpy as np

    knobs = policy.knob_grid(quality, price_share)
    picks = policy.choices(quality, price_share, knobs)
    _, first = np.unique(picks, axis=0, return_index=True)
    keep = np.sort(first)
    return knobs[keep], picks[keep]


class LearnedRouting:
    """Judged evidence turned into a price-aware router, measured on held-out folds.

    - ``curve()``: cost share against quality for the learned policy at every
      distinct knob, each single model, random mixing and the oracle.
    - ``at(quality=0.95)`` / ``at(cost=0.3)`` / ``at(knob=0.1)``: a ``LearnedRouter``.
    - ``metrics()``: the best model, cost share at 80% / 95% of its quality, APGR (two models).
    - ``predictors()``: held-out error of every predictor tried; ``plot()``: the curve.

    Quality shares are of the best single model's mean quality; cost shares
    are of its total cost, on the same held-out items.
    """

    def __init__(
        self,
        evidence: RoutingEvidence,
        *,
        representation: str = "default",
        folds: int = 5,
        seed: int = 0,
        predictors: Sequence[PredictorSpec] = CANDIDATES,
        _vectors: tuple[SparseRows, np.ndarray] | None = None,
    ) -> None:
        with one_blas_thread():
            self._fit(evidence, representation, folds, seed, predictors, _vectors)

    def _fit(
        self,
        evidence: RoutingEvidence,
        representation: str,
        folds: int,
        seed: int,
        predictors: Sequence[PredictorSpec],
        _vectors: tuple[SparseRows, np.ndarray] | None,
    ) -> None:
        import numpy as np

        self.evidence = evidence
        self.models = list(evidence.models)
        self.representation = get_representation(representation)
        if _vectors is None:
            vectors = embed(self.representation, evidence.prompts)
            _vectors = (vectors, vectors.gram())
        self.vectors, self.gram = _vectors
        self.seed = seed
        self._candidates = list(predictors)
        quality = evidence.quality
        self.prices = evidence.per_call_prices
        dearest = float(self.prices.max())
        self.price_share = self.prices / dearest if dearest > 0 else np.zeros_like(self.prices)

        # Held-out predictions: the predictor is chosen and fit without the fold it predicts.
        n = len(evidence)
        self.folds = max(2, min(folds, n))
        assignment = np.random.default_rng(seed).permutation(n) % self.folds
        self.oof = np.full(quality.shape, np.nan)
        self.fold_choices: list[PredictorSpec] = []
        by_spec = {s: np.full(quality.shape, np.nan) for s in self._candidates}
        for f in range(self.folds):
            train, test = np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)
            trainer = Trainer(self.gram[np.ix_(train, train)], quality[train])
            sims = self.gram[np.ix_(test, train)]
            spec = trainer.choose(self._candidates)
            self.fold_choices.append(spec)
            for s in self._candidates:
                if s.kind == "knn" and s.value >= len(train):
                    continue
                by_spec[s][test] = trainer.fit(s).predict(sims)
            self.oof[test] = by_spec[spec][test]
        self._by_spec = by_spec

        # The deployed predictor: chosen by leave-one-out and fit on every item.
        trainer = Trainer(self.gram, quality)
        self.spec = trainer.choose(self._candidates)
        self.fitted = trainer.fit(self.spec)

        # Evaluation items: those judged for every model.
        self.eval_items = np.flatnonzero(~np.isnan(quality).any(axis=1))
        q, cost = quality[self.eval_items], evidence.filled_cost[self.eval_items]
        means = q.mean(axis=0)
        # The best single model: highest mean quality, the cheaper one on a tie.
        self.best = int(np.lexsort((self.prices, -means))[0])
        self.cheapest = int(np.lexsort((-means, self.prices))[0])
        self._q, self._cost = q, cost
        self.knobs, self._picks = _distinct(self.oof[self.eval_items], self.price_share)
        self._oracle_knobs, self._oracle_picks = _distinct(q, self.price_share)

    # -- measures

    def _realised(self, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per knob and item: the quality and cost the picks got (knobs, items)."""
        import numpy as np

        rows = np.arange(picks.shape[1])[None, :]
        return self._q[rows, picks], self._cost[rows, picks]

    @property
    def best_model(self) -> str:
        return self.models[self.best]

    def curve(self) -> pd.DataFrame:
        """Held-out cost share against quality share: one row per policy point.

        Columns: ``policy`` ("learned", "oracle", "random", "single"), ``model``
        (for single models), ``knob``, ``quality`` (mean, 0-1), ``quality_share``
        and ``cost_share`` (of the best single model), ``cost`` (USD over the
        held-out items), then ``calls:<model>`` (share of items sent to each model).
        Random mixing sends each item to the best model with a probability, else
        to the cheapest; its rows are its expectation.
        """
        import numpy as np
        import pandas as pd

        best_q, best_cost = self._q[:, self.best].mean(), self._cost[:, self.best].sum()
        rows: list[dict[str, Any]] = []

        def add(kind: str, model: str | None, knob: float, q: float, c: float, calls: Any) -> None:
            row = {
                "policy": kind, "model": model, "knob": knob, "quality": q,
                "quality_share": q / best_q if best_q else math.nan, "cost": c,
                "cost_share": c / best_cost if best_cost else math.nan,
            }  # fmt: skip
            row.update({f"calls:{m}": float(calls[j]) for j, m in enumerate(self.models)})
            rows.append(row)

        for kind, knobs, picks in (
            ("learned", self.knobs, self._picks),
            ("oracle", self._oracle_knobs, self._oracle_picks),
        ):
            got_q, got_c = self._realised(picks)
            for k in range(len(knobs)):
                calls = np.bincount(picks[k], minlength=len(self.models)) / picks.shape[1]
                add(
                    kind,
                    None,
                    float(knobs[k]),
                    float(got_q[k].mean()),
                    float(got_c[k].sum()),
                    calls,
                )
        lo, hi = self.cheapest, self.best
        for share in np.linspace(0, 1, 21):
            calls = np.zeros(len(self.models))
            calls[lo] += 1 - share
            calls[hi] += share
            q = (1 - share) * self._q[:, lo].mean() + share * self._q[:, hi].mean()
            c = (1 - share) * self._cost[:, lo].sum() + share * self._cost[:, hi].sum()
            add("random", None, math.nan, float(q), float(c), calls)
        for j, model in enumerate(self.models):
            calls = np.eye(len(self.models))[j]
            add(
                "single",
                model,
                math.nan,
                float(self._q[:, j].mean()),
                float(self._cost[:, j].sum()),
                calls,
            )
        return pd.DataFrame(rows)

    def _pick_knob(
        self, quality: float | None, cost: float | None, confidence: float
    ) -> tuple[int, str]:
        """Index into ``knobs`` of the cheapest (or best) knob meeting the target."""
        import numpy as np

        got_q, got_c = self._realised(self._picks)
        best_q, best_c = self._q[:, self.best], self._cost[:, self.best]
        z = policy.z_for(confidence)
        mean_q, share_c = got_q.mean(axis=1), got_c.sum(axis=1) / max(best_c.sum(), 1e-300)
        if quality is not None:
            ok = policy.meets(got_q - quality * best_q[None, :], z)
            if not ok.any():
                reached = float(mean_q.max() / best_q.mean())
                raise ConfigError(
                    f"No knob keeps {quality:.0%} of {self.best_model}'s quality on held-out "
                    f"items (the most the learned router reached is {reached:.1%}).",
                    hint="Ask for a lower quality share, or judge more items.",
                )
            index = min(np.flatnonzero(ok), key=lambda k: (share_c[k], -mean_q[k]))
            return int(index), f"quality>={quality:g}"
        assert cost is not None
        ok = policy.meets(cost * best_c[None, :] - got_c, z)
        if not ok.any():
            cheapest = float(share_c.min())
            raise ConfigError(
                f"No knob keeps the cost within {cost:.0%} of {self.best_model}'s on held-out "
                f"items (the cheapest policy costs {cheapest:.1%} of it).",
                hint="Allow a larger cost share.",
            )
        index = min(np.flatnonzero(ok), key=lambda k: (-mean_q[k], share_c[k]))
        return int(index), f"cost<={cost:g}"

    def heldout(self, knob: float) -> dict[str, float]:
        """Held-out quality, cost and their shares of the best model's, at ``knob``."""
        import numpy as np

        picks = policy.choices(self.oof[self.eval_items], self.price_share, np.array([knob]))
        got_q, got_c = self._realised(picks)
        best_q, best_c = self._q[:, self.best].mean(), self._cost[:, self.best].sum()
        return {
            "quality": float(got_q.mean()),
            "quality_share": float(got_q.mean() / best_q) if best_q else math.nan,
            "cost": float(got_c.sum()),
            "cost_share": float(got_c.sum() / best_c) if best_c else math.nan,
            "items": int(got_q.shape[1]),
        }

    def at(
        self,
        *,
        quality: float | None = None,
        cost: float | None = None,
        knob: float | None = None,
        confidence: float = DEFAULT_CONFIDENCE,
    ) -> LearnedRouter:
        """A router fit on every item, with the knob the held-out curve picks.

        ``quality=q``: the cheapest knob whose overall held-out quality is at
        least ``q`` x the best single model's. ``cost=c``: the best quality whose
        held-out cost is at most ``c`` x the best model's. ``knob=``: as given.
        ``confidence`` (default 0.95) is how sure the target should be to hold
        on a new batch of prompts like these, as large as the held-out set: the
        knob must meet it by that one-sided normal margin over the per-item
        differences (see ``policy.meets``). The cheapest knob that *just* meets a
        target on held-out items meets it on new prompts only about half of the
        time; ``confidence=0.5`` asks for exactly that, the point estimate.
        """
        from .router import LearnedRouter

        given = [x is not None for x in (quality, cost, knob)]
        if sum(given) != 1:
            raise ConfigError("Pass exactly one of quality=, cost= or knob= to at().")
        for name, value in (("quality", quality), ("cost", cost)):
            if value is not None and not (0 < value <= 1.5):
                raise ConfigError(
                    f"{name}= is a share of the best model's, e.g. 0.95; got {value}."
                )
        if knob is not None:
            if not (math.isfinite(knob) and knob >= 0):
                raise ConfigError(f"knob= must be a number >= 0, got {knob}.")
            chosen, target = float(knob), f"knob={knob:g}"
        else:
            index, target = self._pick_knob(quality, cost, confidence)
            chosen = float(self.knobs[index])
        return LearnedRouter(
            models=self.models,
            representation=self.representation,
            vectors=self.vectors,
            prompts=list(self.evidence.prompts),
            quality=self.evidence.quality,
            fitted=self.fitted,
            prices=self.prices,
            knob=chosen,
            target=target,
            heldout=self.heldout(chosen),
            best_model=self.best_model,
            training={"items": len(self.evidence), "date": self.evidence.date,
                      "source": self.evidence.source, "folds": self.folds},
        )  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        """The figures RouteLLM reports, held out: cost share at 80% and 95% of the best
        model's quality (learned, oracle and random), and APGR when there are two models."""
        import numpy as np

        frame = self.curve()
        out: dict[str, Any] = {
            "items": len(self.eval_items), "folds": self.folds, "predictor": str(self.spec),
            "best_model": self.best_model, "best_quality": float(self._q[:, self.best].mean()),
        }  # fmt: skip
        for level in (0.8, 0.95):
            for kind in ("learned", "oracle", "random"):
                rows = frame[(frame["policy"] == kind) & (frame["quality_share"] >= level - 1e-12)]
                share = float(rows["cost_share"].min()) if len(rows) else math.nan
                out[f"cost_share@{level:.0%}:{kind}"] = share
        if len(self.models) == 2:
            strong, weak = self.best, 1 - self.best
            q = self._q
            predicted = self.oof[self.eval_items]
            out["apgr:learned"] = policy.apgr(
                predicted[:, strong] - predicted[:, weak], q[:, weak], q[:, strong]
            )
            out["apgr:oracle"] = policy.apgr(q[:, strong] - q[:, weak], q[:, weak], q[:, strong])
            rng = np.random.default_rng(self.seed)
            out["apgr:random"] = float(np.mean([
                policy.apgr(rng.random(len(q)), q[:, weak], q[:, strong]) for _ in range(20)
            ]))  # fmt: skip
        return out

    def predictors(self) -> pd.DataFrame:
        """Held-out mean squared error of each predictor tried (out-of-fold), and which
        one leave-one-out chose for the deployed router."""
        import numpy as np
        import pandas as pd

        quality = self.evidence.quality
        rows = []
        for spec, predicted in [*self._by_spec.items(), (PredictorSpec("nested"), self.oof)]:
            known = ~np.isnan(quality) & ~np.isnan(predicted)
            error = (
                float(np.mean((predicted[known] - quality[known]) ** 2))
                if known.any()
                else math.nan
            )
            name = "chosen per fold (nested)" if spec.kind == "nested" else str(spec)
            rows.append({"predictor": name, "heldout_mse": error, "deployed": spec == self.spec})
        return pd.DataFrame(rows)

    def subset(self, models: Sequence[str]) -> LearnedRouting:
        """The same learning restricted to some models (e.g. two, for APGR); prompts are
        not embedded again."""
        return LearnedRouting(
            self.evidence.subset(models),
            representation=self.representation.name,
            folds=self.folds,
            seed=self.seed,
            predictors=self._candidates,
            _vectors=(self.vectors, self.gram),
        )

    def plot(self, ax: Any = None) -> Any:
        """The held-out cost-quality curve, RouteLLM style (matplotlib Axes)."""
        import matplotlib.pyplot as plt

        frame = self.curve()
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4.5))
        styles = {"learned": ("-", "C0"), "oracle": (":", "C2"), "random": ("--", "grey")}
        for kind, (line, colour) in styles.items():
            part = frame[frame["policy"] == kind].sort_values("cost_share")
            ax.plot(part["cost_share"], part["quality_share"], line, color=colour, label=kind)
        singles = frame[frame["policy"] == "single"]
        ax.scatter(singles["cost_share"], singles["quality_share"], color="C3", zorder=3)
        for _, row in singles.iterrows():
            ax.annotate(str(row["model"]), (row["cost_share"], row["quality_share"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=8)  # fmt: skip
        ax.axhline(0.95, color="lightgrey", linewidth=0.8)
        ax.set_xlabel(f"cost share of {self.best_model}")
        ax.set_ylabel(f"quality share of {self.best_model}")
        ax.set_title(
            f"Learned routing, held out ({len(self.eval_items)} items, {self.folds} folds)"
        )
        ax.legend(loc="lower right")
        return ax

    def __repr__(self) -> str:
        return (
            f"<LearnedRouting {len(self.evidence)} items x {len(self.models)} models "
            f"({', '.join(self.models)}), predictor {self.spec}, best {self.best_model}>"
        )

    def _repr_html_(self) -> str:
        import html

        m = self.metrics()
        lines = [f"<p><b>{html.escape(repr(self))}</b></p><ul>"]
        for level in ("80%", "95%"):
            shares = ", ".join(
                f"{kind} {m[f'cost_share@{level}:{kind}']:.0%}"
                for kind in ("learned", "oracle", "random")
            )
            lines.append(
                f"<li>cost share at {level} of {html.escape(self.best_model)}'s quality: "
                f"{shares}</li>"
            )
        if "apgr:learned" in m:
            lines.append(
                f"<li>APGR learned {m['apgr:learned']:.3f}, oracle {m['apgr:oracle']:.3f}, "
                f"random {m['apgr:random']:.3f}</li>"
            )
        return "".join(lines) + "</ul>"
