"""``LearnedRouter``: the price-aware policy over predicted qualities, as a ``Router``,
with its decision explained (``inspect``)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.completion import CompletionRequest
from ...core.errors import ConfigError, UnknownModelError
from ...core.models import Catalogue
from ...core.money import format_usd
from ...core.text import escape_markdown
from ..base import (
    RouteDecision,
    Router,
    _as_request,
    _builtin_catalogue,
    _nothing_available,
    _Trail,
)
from ..features import Representation
from . import policy
from .predictors import Fitted, SparseRows
from .store import read_router, write_router

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["LearnedDecision", "LearnedRouter", "load_router"]

NEAREST = 3


@dataclass(frozen=True)
class LearnedDecision:
    """Why the learned router chose a model for one prompt.

    ``rows``: per model its predicted quality, price per call (USD, from the
    training data), price share (of the dearest), score (quality - knob x
    price share) and whether it could be used. ``margin``: the chosen model's
    score lead over the next usable model. ``nearest``: the most similar
    training prompts, with their similarity and measured qualities.
    """

    model: str
    knob: float
    margin: float | None
    rows: list[dict[str, Any]]
    nearest: list[dict[str, Any]] = field(default_factory=list)

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("model")

    def reason(self) -> str:
        """One line: the predicted qualities, the knob, the margin and the nearest prompt."""
        parts = [
            f"{r['model']} {r['predicted_quality']:.2f}"
            + (f" ({format_usd(r['price'])})" if r["price"] is not None else "")
            + ("" if r["usable"] else f" [{r['usable_note']}]")
            for r in self.rows
        ]
        line = f"predicted quality {', '.join(parts)}; knob {self.knob:.3g}"
        if self.margin is not None:
            line += f"; {self.model} leads by {self.margin:.3f} after price"
        if self.nearest:
            near = self.nearest[0]
            line += (
                f'; nearest training prompt "{_short(near["prompt"])}" ({near["similarity"]:.2f})'
            )
        return f"{line} → {self.model}"

    def __str__(self) -> str:
        return self.reason()

    def _repr_markdown_(self) -> str:
        lines = [
            f"**{escape_markdown(self.model)}** · knob {self.knob:.3g}"
            + (f" · margin {self.margin:.3f}" if self.margin is not None else ""),
            "",
            "| model | predicted quality | price/call | score | |",
            "|---|---:|---:|---:|---|",
        ]
        for r in self.rows:
            price = format_usd(r["price"]) if r["price"] is not None else "n/a"
            mark = (
                "**chosen**"
                if r["model"] == self.model
                else escape_markdown(r.get("usable_note") or "")
            )
            lines.append(
                f"| {escape_markdown(r['model'])} | {r['predicted_quality']:.3f} | "
                f"{escape_markdown(price)} | {r['score']:.3f} | {mark} |"
            )
        if self.nearest:
            lines += ["", "Nearest training prompts:", ""]
            for near in self.nearest:
                scores = ", ".join(f"{m} {q:.2f}" for m, q in near["quality"].items() if q == q)
                lines.append(
                    f"- {escape_markdown(_short(near['prompt'], 120))} "
                    f"(similarity {near['similarity']:.2f}; measured {escape_markdown(scores)})"
                )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self._repr_markdown_()) + "</pre>"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LearnedRouter(Router):
    """Routes to the model with the best predicted quality after price.

    Score of a model for a prompt: predicted quality - ``knob`` x its price
    share (its price per call over the dearest model's, both measured on the
    training batch). Made by ``LearnedRouting.at(...)`` or ``load_router``;
    ``heldout`` holds the held-out figures behind the knob.

    Every model the router was trained on must be in the catalogue (by name):
    one that is missing is a ``ConfigError``. A model that is there but
    unavailable (no key) is skipped, and the reason says so.
    """

    name = "learned"

    def __init__(
        self,
        *,
        models: Sequence[str],
        representation: Representation,
        vectors: SparseRows,
        prompts: Sequence[str],
        quality: np.ndarray,
        fitted: Fitted,
        prices: np.ndarray,
        knob: float,
        target: str = "",
        heldout: Mapping[str, float] | None = None,
        best_model: str | None = None,
        training: Mapping[str, Any] | None = None,
        default: str | None = None,
    ) -> None:
        import numpy as np

        super().__init__(default)
        self.models = list(models)
        self.representation = representation
        self.vectors = vectors
        self.prompts = list(prompts)
        self.quality = quality
        self.fitted = fitted
        self.prices = np.asarray(prices, dtype=float)
        dearest = float(self.prices.max()) if len(self.prices) else 0.0
        self.price_share = self.prices / dearest if dearest > 0 else np.zeros_like(self.prices)
        self.knob = float(knob)
        self.target = target
        self.heldout = dict(heldout or {})
        self.best_model = best_model
        self.training = dict(training or {})

    # -- predicting

    def _similarities(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectors.similarities(self.representation.transform(list(texts)))

    def predict(self, prompts: Sequence[str]) -> pd.DataFrame:
        """Predicted quality per prompt (rows) and model (columns)."""
        import pandas as pd

        if isinstance(prompts, str):
            prompts = [prompts]
        predicted = self.fitted.predict(self._similarities(prompts))
        return pd.DataFrame(predicted, columns=self.models)

    def choose(self, prompts: Sequence[str]) -> list[str]:
        """The model chosen for each prompt, all models assumed available (for evaluation)."""
        import numpy as np

        predicted = self.fitted.predict(self._similarities(list(prompts)))
        picks = policy.choices(predicted, self.price_share, np.array([self.knob]))[0]
        return [self.models[int(i)] for i in picks]

    def inspect(
        self,
        prompt: str,
        catalogue: Catalogue | None = None,
        request: CompletionRequest | None = None,
    ) -> LearnedDecision:
        """The decision for ``prompt`` with its evidence (see ``LearnedDecision``).

        With a ``catalogue``, models missing from it are an error and unavailable ones are
        marked and skipped; without one, every model is taken as available.
        """
        import numpy as np

        sims = self._similarities([prompt])
        predicted = self.fitted.predict(sims)[0]
        scores = predicted - (self.knob + policy._TIE) * self.price_share
        usable_note: dict[str, str | None] = {m: None for m in self.models}
        if catalogue is not None:
            self._check_catalogue(catalogue)
            trail = _Trail(request if request is not None else _as_request(prompt))
            usable_note = {m: trail.fits(catalogue.resolve(m)) for m in self.models}
        usable = [j for j, m in enumerate(self.models) if usable_note[m] is None]
        if not usable:
            raise (
                _nothing_available(catalogue)
                if catalogue is not None
                else ConfigError("No model to route to.")
            )
        order = sorted(usable, key=lambda j: -scores[j])
        chosen = order[0]
        margin = float(scores[chosen] - scores[order[1]]) if len(order) > 1 else None
        rows = [
            {
                "model": m, "predicted_quality": float(predicted[j]),
                "price": float(self.prices[j]), "price_share": float(self.price_share[j]),
                "score": float(scores[j]), "usable": usable_note[m] is None,
                "usable_note": usable_note[m], "chosen": j == chosen,
            }
            for j, m in enumerate(self.models)
        ]  # fmt: skip
        nearest = []
        for i in np.argsort(-sims[0])[:NEAREST]:
            qualities = {m: float(self.quality[i, j]) for j, m in enumerate(self.models)}
            nearest.append(
                {"prompt": self.prompts[i], "similarity": float(sims[0, i]), "quality": qualities}
            )
        return LearnedDecision(self.models[chosen], self.knob, margin, rows, nearest)

    def _check_catalogue(self, catalogue: Catalogue) -> None:
        missing = []
        for m in self.models:
            try:
                catalogue.resolve(m)
            except UnknownModelError:
                missing.append(m)
        if missing:
            raise ConfigError(
                f"The learned router was trained on {', '.join(missing)}, "
                f"which {'is' if len(missing) == 1 else 'are'} not in the catalogue.",
                hint="Add them under the same names (mmo.toml or Orchestrator(models=...)), "
                "or learn a router on the models you have.",
            )

    # -- the Router interface

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        decision = self.inspect(request.prompt_text, catalogue, request)
        model = catalogue.resolve(decision.model)
        return self._decide(request, model, f"learned:{decision.model}", decision.reason(), None)

    def explain(self, prompt: str) -> tuple[str | None, str]:
        decision = self.inspect(prompt)
        return decision.model, decision.reason()

    # -- persistence

    def state(self) -> dict[str, Any]:
        """What the router is made of: its constructor's arguments."""
        return {
            "models": self.models, "representation": self.representation,
            "vectors": self.vectors, "prompts": self.prompts, "quality": self.quality,
            "fitted": self.fitted, "prices": self.prices, "knob": self.knob,
            "target": self.target, "heldout": self.heldout, "best_model": self.best_model,
            "training": self.training,
        }  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write the router as one JSON file (arrays as base64 numbers inside; never pickle).

        It holds the training prompts (for explanations): share it like the data.
        """
        write_router(self.state(), path)

    def _repr_markdown_(self) -> str:
        lines = [f"**Learned router** over {escape_markdown(', '.join(self.models))}"]
        lines.append(f"- knob {self.knob:.4g} ({escape_markdown(self.target or 'set by hand')})")
        if self.heldout:
            best = escape_markdown(self.best_model or "the best model")
            lines.append(
                f"- held out: {self.heldout.get('quality_share', float('nan')):.1%} of {best}'s "
                f"quality at {self.heldout.get('cost_share', float('nan')):.1%} of its cost "
                f"({int(self.heldout.get('items', 0))} items)"
            )
        lines.append(
            f"- predictor {self.fitted.spec} on {self.representation.name} "
            f"({escape_markdown(self.representation.version)}); trained on "
            f"{self.training.get('items', len(self.prompts))} items, "
            f"{escape_markdown(str(self.training.get('date', '?')))}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        held = ""
        if self.heldout:
            held = (
                f", held out {self.heldout.get('quality_share', float('nan')):.1%} quality "
                f"at {self.heldout.get('cost_share', float('nan')):.1%} cost"
            )
        return (
            f"LearnedRouter(models={self.models}, knob={self.knob:.4g}, "
            f"predictor={self.fitted.spec}{held})"
        )


def load_router(path: str | Path) -> LearnedRouter:
    """The router ``router.save(path)`` wrote. ``ConfigError`` (one line: what is wrong and
    what to do) for a missing, foreign, damaged, tampered or other-version file, or one
    learned on a representation this install has in another version. Loading runs no code
    from the file: it is JSON, and arrays are read as plain numbers."""
    return LearnedRouter(**read_router(path))
