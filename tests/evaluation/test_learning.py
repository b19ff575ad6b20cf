"""From a judged batch to a learned router: real batches over function models whose skill
depends on the kind of prompt, graded or compared by a function judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import make_world

import mmo_magic as mmo
from mmo_magic.core.completion import StreamEnd
from mmo_magic.core.errors import ConfigError
from mmo_magic.evaluation.learning import evidence_from_batch, learn_router
from mmo_magic.providers import register_function, unregister_function

# The small model answers well only extraction and role-play prompts; the large one all.
SMALL_SKILLS = {"extraction", "roleplay"}
WORLD = make_world(60, seed=5)
KIND = dict(zip(WORLD.prompts, WORLD.kinds, strict=True))
ITEMS = [{"question": p, "kind": k} for p, k in zip(WORLD.prompts, WORLD.kinds, strict=True)]


def small(request: Any) -> str:
    kind = KIND.get(request.prompt_text.removeprefix("Q: "), "")
    if "[down]" in request.prompt_text:
        raise RuntimeError("the small model is down")
    return "GOOD answer" if kind in SMALL_SKILLS else "BAD answer"


def large(request: Any) -> str:
    return "GOOD answer"


def candidates(request: Any) -> dict[str, str]:
    user = request.messages[-1].content
    a = user.split("<<<CANDIDATE A")[1].split("<<<END A")[0]
    b = user.split("<<<CANDIDATE B")[1].split("<<<END B")[0] if "<<<CANDIDATE B" in user else ""
    return {"A": a, "B": b}


def grader(request: Any) -> list[Any]:
    score = 9 if "GOOD" in candidates(request)["A"] else 2
    verdict = {"winner": "A", "scores": {"A": score}, "reason": "graded"}
    return [json.dumps(verdict), StreamEnd("stop", 10, 5)]


def comparer(request: Any) -> list[Any]:
    good = {label for label, text in candidates(request).items() if "GOOD" in text}
    winner = "tie" if len(good) != 1 else good.pop()
    return [json.dumps({"winner": winner, "reason": "compared"}), StreamEnd("stop", 10, 5)]


@pytest.fixture(scope="module")
def orc() -> Iterator[mmo.Orchestrator]:
    functions = {"small": small, "large": large, "grader": grader, "comparer": comparer}
    for name, function in functions.items():
        register_function(f"learn-{name}", function)
    prices = {"small": 0.001, "large": 0.02, "grader": 0.0, "comparer": 0.0}
    models = [
        mmo.ModelConfig("function", f"learn-{name}", name=name,
                        cost_per_1k_input=price, cost_per_1k_output=price)
        for name, price in prices.items()
    ]  # fmt: skip
    with mmo.Orchestrator(models, default_model="large", runlog=":memory:", cache=False) as o:
        yield o
    for name in functions:
        unregister_function(f"learn-{name}")


@pytest.fixture(scope="module")
def graded(orc: mmo.Orchestrator) -> Any:
    return orc.batch(ITEMS, ["small", "large"], judges=["grader"], judge_mode="grade",
                     progress=False)  # fmt: skip


def test_grades_become_quality_and_rows_become_cost(graded: Any) -> None:
    evidence = evidence_from_batch(graded)
    assert evidence.models == ["small", "large"]
    assert evidence.prompts == WORLD.prompts
    skilled = np.array([k in SMALL_SKILLS for k in WORLD.kinds])
    assert np.allclose(evidence.quality[skilled, 0], 8 / 9)
    assert np.allclose(evidence.quality[~skilled, 0], 1 / 9)
    assert np.allclose(evidence.quality[:, 1], 8 / 9)
    frame = graded.to_dataframe()
    assert np.allclose(evidence.cost[:, 1], frame[frame["model"] == "large"]["cost"].to_numpy())
    assert evidence.per_call_prices[0] < evidence.per_call_prices[1]
    assert graded.group_id in evidence.source and "grade" in evidence.source


def test_a_router_learned_from_the_batch_routes_by_kind(orc: mmo.Orchestrator, graded: Any) -> None:
    lr = learn_router(graded)
    assert lr.best_model == "large"
    router = lr.at(quality=0.95)
    assert router.heldout["quality_share"] >= 0.95 and router.heldout["cost_share"] < 0.8
    fresh = make_world(40, seed=6)  # prompts the batch never had
    picks = router.choose(fresh.prompts)
    right = [
        (pick == "small") == (kind in SMALL_SKILLS)
        for pick, kind in zip(picks, fresh.kinds, strict=True)
    ]
    assert np.mean(right) >= 0.9
    # Through the orchestrator: the learned router picks, the picked model answers.
    roleplay = next(p for p, k in zip(fresh.prompts, fresh.kinds, strict=True) if k == "roleplay")
    math = next(p for p, k in zip(fresh.prompts, fresh.kinds, strict=True) if k == "math")
    assert orc.complete(roleplay, model="auto", route=router).model == "small"
    answer = orc.complete(math, model="auto", route=router)
    assert answer.model == "large" and answer.content == "GOOD answer"
    assert "predicted quality" in (answer.route_reason or "")


def test_pairwise_verdicts_become_per_item_bradley_terry_quality(orc: mmo.Orchestrator) -> None:
    items = ITEMS[:12]
    br = orc.batch(items, ["small", "large"], judges=["comparer"], progress=False)
    evidence = evidence_from_batch(br)
    skilled = np.array([it["kind"] in SMALL_SKILLS for it in items])
    # A tie on the item: both at one half; a loss: below, a win: above.
    assert np.allclose(evidence.quality[skilled], 0.5)
    assert (evidence.quality[~skilled, 0] < 0.4).all() and (
        evidence.quality[~skilled, 1] > 0.6
    ).all()
    assert np.allclose(evidence.quality[~skilled].sum(axis=1), 1.0)


def test_failed_calls_score_zero_and_the_prompt_template_is_rebuilt(orc: mmo.Orchestrator) -> None:
    items = [{**it, "question": ("[down] " if i % 5 == 0 else "") + it["question"]}
             for i, it in enumerate(ITEMS[:20])]  # fmt: skip
    br = orc.batch(items, ["small", "large"], prompt="Q: {question}", judges=["grader"],
                   judge_mode="grade", progress=False)  # fmt: skip
    evidence = evidence_from_batch(br, prompt="Q: {question}")
    assert evidence.prompts[1] == "Q: " + items[1]["question"]
    failed = np.arange(20) % 5 == 0
    assert (evidence.quality[failed, 0] == 0.0).all()
    assert (evidence.quality[~failed, 0] > 0.0).all()
    lenient = evidence_from_batch(br, prompt="Q: {question}", failed_quality=0.25)
    assert (lenient.quality[failed, 0] == 0.25).all()


def test_unjudged_or_unpriced_batches_say_what_to_do(orc: mmo.Orchestrator, graded: Any) -> None:
    plain = orc.batch(ITEMS[:3], ["small", "large"], progress=False)
    with pytest.raises(ConfigError, match="not judged"):
        learn_router(plain)
    with pytest.raises(ConfigError, match="Not among the batch's models"):
        learn_router(graded, models=["small", "medium"])
    unpriced = type(graded)(**{**graded.__dict__, "rows": [
        {**r, "cost": None} if r["model"] == "small" else r for r in graded.rows
    ]})  # fmt: skip
    with pytest.raises(ConfigError, match="No cost is known for small"):
        evidence_from_batch(unpriced)
    # The catalogue's prices at the model's mean token counts fill in.
    evidence = evidence_from_batch(unpriced, catalogue=orc.catalogue)
    assert evidence.per_call_prices[0] > 0
    assert evidence_from_batch(unpriced, prices={"small": 0.5}).per_call_prices[0] == 0.5
