"""From a judged batch to a learned router: ``learn_router(br) -> LearnedRouting``.

The batch's judgements become plain evidence (``routing.learned.RoutingEvidence``):

- prompts: the batch prompt rendered for each item (``prompts=`` or ``prompt=``
  override it);
- quality in [0, 1] per (item, model):
  - graded batches: the mean of the judges' grades, scaled ``(grade - 1) / 9``;
  - pairwise batches: a Bradley–Terry fit on that item's verdicts alone (the
    same fitter as the leaderboard, with its weak prior), as the chance of
    beating an average model on that item: ``1 / (1 + 10 ** ((1000 - rating) / 400))``.
    These are relative to the other models on the item, not absolute;
  - a call that failed scores ``failed_quality`` (default 0: the user got nothing),
    an answer no judge scored is left unknown (NaN);
- cost: each row's measured USD; where a model's calls were unpriced, ``prices=``
  (USD per call) or the ``catalogue``'s prices at the model's mean token counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.templates import Template
from ..routing.learned import LearnedRouting, RoutingEvidence, learn
from .ratings import Comparison, bradley_terry

if TYPE_CHECKING:
    from ..core.models import Catalogue
    from .result import BatchResult

__all__ = ["evidence_from_batch", "learn_router"]


def _prompts(br: BatchResult, prompts: Sequence[str] | None, prompt: str | None) -> list[str]:
    if prompts is not None:
        texts = [str(p) for p in prompts]
        if len(texts) != len(br.items):
            raise ConfigError(
                f"prompts= has {len(texts)} texts; the batch has {len(br.items)} items."
            )
        return texts
    rendered = getattr(br, "prompts", None)  # the rendered prompts, when the result keeps them
    if prompt is None and rendered is not None and len(rendered) == len(br.items):
        return [str(p) for p in rendered]
    template = Template(prompt or getattr(br, "prompt", None) or "{question}")
    try:
        return [
            template.render(item, where=f"the prompt of item {i}")
            for i, item in enumerate(br.items)
        ]
    except Exception as exc:
        raise ConfigError(
            f"Can't rebuild the batch's prompts: {exc}",
            hint="Pass prompt= (the batch's template) or prompts= (one text per item).",
        ) from exc


def _graded(br: BatchResult, index: Mapping[str, int], quality: Any) -> None:
    import numpy as np

    scores: dict[tuple[int, int], list[float]] = defaultdict(list)
    for g in br.grades:
        if g.get("score") is None or g.get("model") not in index:
            continue
        scores[(int(g["item"]), index[g["model"]])].append(float(g["score"]))
    for (i, j), values in scores.items():
        quality[i, j] = float(np.clip((np.mean(values) - 1.0) / 9.0, 0.0, 1.0))


def _pairwise(
    br: BatchResult, models: Sequence[str], index: Mapping[str, int], quality: Any
) -> None:
    by_item: dict[int, list[Comparison]] = defaultdict(list)
    for c in br.comparisons():
        if c.model_a in index and c.model_b in index:
            by_item[int(c.item)].append(c)  # type: ignore[call-overload]
    for i, comparisons in by_item.items():
        compared = sorted({c.model_a for c in comparisons} | {c.model_b for c in comparisons},
                          key=models.index)  # fmt: skip
        for model, rating in bradley_terry(comparisons, compared).items():
            quality[i, index[model]] = 1.0 / (1.0 + 10.0 ** ((1000.0 - rating) / 400.0))


def _catalogue_prices(
    br: BatchResult, catalogue: Catalogue, models: Sequence[str]
) -> dict[str, float]:
    """USD per call from the catalogue's prices at each model's mean token counts."""
    out: dict[str, float] = {}
    for model in models:
        rows = [r for r in br.rows if r["model"] == model and r.get("input_tokens") is not None]
        if not rows:
            continue
        n_in = round(sum(r["input_tokens"] or 0 for r in rows) / len(rows))
        n_out = round(sum(r.get("output_tokens") or 0 for r in rows) / len(rows))
        try:
            price = catalogue.resolve(model).cost(n_in, n_out)
        except ConfigError:
            continue
        if price is not None:
            out[model] = price
    return out


def evidence_from_batch(
    br: BatchResult,
    *,
    models: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    prompt: str | None = None,
    failed_quality: float = 0.0,
    prices: Mapping[str, float] | None = None,
    catalogue: Catalogue | None = None,
) -> RoutingEvidence:
    """The judged batch ``br`` as ``RoutingEvidence`` (see the module docstring).

    ``models`` keeps some of the batch's models (two, say, for APGR).
    """
    import numpy as np

    if not br.judges or (not br.grades and not br.judgements):
        raise ConfigError(
            "This batch was not judged: a learned router needs judgements.",
            hint="Run orc.batch(..., judges=[...]) (judge_mode='grade' or 'pairwise').",
        )
    chosen = list(models) if models is not None else list(br.models)
    unknown = [m for m in chosen if m not in br.models]
    if unknown:
        raise ConfigError(f"Not among the batch's models: {unknown}; it has {br.models}.")
    if not 0.0 <= failed_quality <= 1.0:
        raise ConfigError(f"failed_quality must be in [0, 1], got {failed_quality}.")
    index = {m: j for j, m in enumerate(chosen)}
    n = len(br.items)
    quality = np.full((n, len(chosen)), np.nan)
    if br.judge_mode == "grade":
        _graded(br, index, quality)
    else:
        _pairwise(br, chosen, index, quality)
    cost = np.full((n, len(chosen)), np.nan)
    for r in br.rows:
        j = index.get(r["model"])
        if j is None:
            continue
        i = int(r["item"])
        spent = r.get("cost")
        if spent is not None and math.isfinite(spent):
            cost[i, j] = float(spent)
        if r["status"] != "ok":
            quality[i, j] = failed_quality
    given = dict(_catalogue_prices(br, catalogue, chosen) if catalogue is not None else {})
    given.update(prices or {})
    judged = f"{len(br.judges)} judge{'s' if len(br.judges) != 1 else ''} ({br.judge_mode})"
    return RoutingEvidence(
        prompts=_prompts(br, prompts, prompt),
        models=chosen,
        quality=quality,
        cost=cost,
        prices=given,
        source=f"batch {br.group_id}: {n} items, {judged}",
    )


def learn_router(
    br: BatchResult,
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
    """A router learned from the judged batch ``br``, measured on held-out folds.

    Then ``lr.curve()``, ``lr.plot()``, ``router = lr.at(quality=0.95)``,
    ``orc.complete(prompt, model="auto", route=router)``, ``router.save(path)``.
    Options: see ``evidence_from_batch`` (what counts as quality and cost) and
    ``routing.learned.learn`` (``representation``, ``folds``, ``seed``).
    """
    evidence = evidence_from_batch(
        br, models=models, prompts=prompts, prompt=prompt, failed_quality=failed_quality,
        prices=prices, catalogue=catalogue,
    )  # fmt: skip
    return learn(evidence, representation=representation, folds=folds, seed=seed)
