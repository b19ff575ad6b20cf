"""The learned router on a synthetic world with known truth: held-out curve, at(), APGR,
explained decisions, and router files that refuse tampering."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import WORLD_PRICES, WORLD_TEMPLATES, World, make_world

import mmo_magic as mmo
from mmo_magic.core.errors import ConfigError, NoModelAvailableError
from mmo_magic.core.models import Catalogue
from mmo_magic.routing.learned import (
    LearnedRouter,
    LearnedRouting,
    RoutingEvidence,
    learn,
    load_router,
    policy,
)
from mmo_magic.routing.learned.predictors import PredictorSpec
from mmo_magic.routing.learned.store import _checksum

MODELS = ("small", "medium", "large")


@pytest.fixture(scope="module")
def train() -> World:
    return make_world(300, seed=1)


@pytest.fixture(scope="module")
def new() -> World:
    return make_world(300, seed=10_001)  # never seen in training


@pytest.fixture(scope="module")
def lr(train: World) -> LearnedRouting:
    return learn(train.evidence())


@pytest.fixture(scope="module")
def router(lr: LearnedRouting) -> LearnedRouter:
    return lr.at(quality=0.95)


def catalogue(**changes: Any) -> Catalogue:
    """The world's models as function models priced like the world (tokens aside)."""
    models = []
    for name, price in WORLD_PRICES.items():
        fields = {"provider": "function", "model_id": name, "name": name,
                  "cost_per_1k_input": price, "cost_per_1k_output": price}  # fmt: skip
        models.append(mmo.ModelConfig(**{**fields, **changes.get(name, {})}))
    return Catalogue.of(models)


def measured(world: World, picks: list[str]) -> tuple[float, float]:
    """Quality and cost of ``picks`` on ``world``, as shares of the large model's."""
    quality, cost = np.array(world.quality()), np.array(world.cost())
    columns = [MODELS.index(p) for p in picks]
    rows = np.arange(len(picks))
    return (
        float(quality[rows, columns].mean() / quality[:, 2].mean()),
        float(cost[rows, columns].sum() / cost[:, 2].sum()),
    )


# -- the figures on new prompts ------------------------------------------------------------


def test_at_95_percent_keeps_the_quality_on_new_prompts_at_under_60_percent_of_the_cost(
    lr: LearnedRouting, router: LearnedRouter, new: World
) -> None:
    assert lr.best_model == "large"
    picks = router.choose(new.prompts)
    quality, cost = measured(new, picks)
    assert quality >= 0.95
    assert cost <= 0.60
    # It really routes: every model gets work, and the cheap ones most of it.
    assert {p: picks.count(p) for p in MODELS}["large"] < len(picks) / 2
    assert set(picks) == set(MODELS)
    # Held out, the figures the router carries say the same.
    assert router.heldout["quality_share"] >= 0.95 and router.heldout["cost_share"] <= 0.6


def test_two_model_apgr_is_at_least_80_percent_of_the_oracles(
    lr: LearnedRouting, new: World
) -> None:
    two = lr.subset(["small", "large"])
    metrics = two.metrics()
    assert metrics["apgr:learned"] >= 0.8 * metrics["apgr:oracle"]
    assert abs(metrics["apgr:random"] - 0.5) < 0.05
    # And on new prompts: route by the predicted gain of the strong model.
    router = two.at(knob=0.0)
    predicted = router.predict(new.prompts)
    quality = np.array(new.quality())
    weak, strong = quality[:, 0], quality[:, 2]
    learned = policy.apgr((predicted["large"] - predicted["small"]).to_numpy(), weak, strong)
    oracle = policy.apgr(strong - weak, weak, strong)
    assert learned >= 0.8 * oracle


def test_the_curve_is_measured_on_held_out_items_only() -> None:
    # Two models whose grades do not depend on the prompt at all: whatever a predictor
    # fits is noise, so held out the learned ordering is no better than random (APGR
    # about 0.5) while the oracle, which sees the noise, looks far better.
    flat = {
        "small": dict.fromkeys(WORLD_TEMPLATES, 6.0),
        "large": dict.fromkeys(WORLD_TEMPLATES, 8.0),
    }
    world = make_world(200, seed=3, models=("small", "large"), grades=flat, noise=1.5)
    # A lightly regularised ridge: it fits the noise, which held-out folds must expose.
    lr = learn(world.evidence(), predictors=[PredictorSpec("ridge", 0.1)])
    metrics = lr.metrics()
    assert metrics["apgr:oracle"] > 0.7
    assert abs(metrics["apgr:learned"] - 0.5) < 0.1
    # The same predictor scored on the items it was fit on would look much better:
    # that is what held-out folds guard against.
    quality = np.array(world.quality())
    fitted = lr.at(knob=0.0).predict(world.prompts).to_numpy()
    in_sample = policy.apgr(fitted[:, 1] - fitted[:, 0], quality[:, 0], quality[:, 1])
    assert in_sample > metrics["apgr:learned"] + 0.1


# -- the curve and at() ---------------------------------------------------------------------------


def test_curve_has_the_learned_policy_single_models_random_mixing_and_the_oracle(
    lr: LearnedRouting,
) -> None:
    curve = lr.curve()
    assert set(curve["policy"]) == {"learned", "oracle", "random", "single"}
    singles = curve[curve["policy"] == "single"].set_index("model")
    assert list(singles.index) == list(MODELS)
    assert singles.loc["large", "quality_share"] == pytest.approx(1.0)
    assert singles.loc["large", "cost_share"] == pytest.approx(1.0)
    assert singles.loc["small", "cost_share"] == pytest.approx(0.01, rel=0.1)
    calls = [f"calls:{m}" for m in MODELS]
    assert np.allclose(curve[calls].sum(axis=1), 1.0)
    learned, oracle = curve[curve["policy"] == "learned"], curve[curve["policy"] == "oracle"]
    assert learned["knob"].is_monotonic_increasing and learned["knob"].iloc[0] == 0
    # From the best quality it can reach down to all-cheapest, and never beats the oracle.
    assert learned["calls:small"].iloc[-1] == 1.0
    assert oracle["quality"].max() >= learned["quality"].max()
    random = curve[curve["policy"] == "random"]
    assert random["quality_share"].iloc[0] == pytest.approx(singles.loc["small", "quality_share"])
    # The learned router beats random mixing at 95%: that is the point of it.
    metrics = lr.metrics()
    assert metrics["cost_share@95%:learned"] < 0.5 * metrics["cost_share@95%:random"]
    assert metrics["cost_share@80%:learned"] <= metrics["cost_share@95%:learned"]
    assert metrics["cost_share@95%:oracle"] <= metrics["cost_share@95%:learned"]


def test_at_quality_is_the_cheapest_held_out_knob_meeting_the_target(lr: LearnedRouting) -> None:
    curve = lr.curve()
    learned = curve[curve["policy"] == "learned"]
    point = lr.at(quality=0.95, confidence=0.5)  # the point estimate
    assert point.heldout["quality_share"] >= 0.95
    meeting = learned[learned["quality_share"] >= 0.95]
    assert point.heldout["cost_share"] == pytest.approx(meeting["cost_share"].min())
    # The default asks for a margin, so it costs at least as much and keeps more quality.
    safer = lr.at(quality=0.95)
    assert safer.knob <= point.knob
    assert safer.heldout["quality_share"] >= point.heldout["quality_share"]


def test_at_cost_is_the_best_held_out_quality_within_the_cost_share(lr: LearnedRouting) -> None:
    curve = lr.curve()
    learned = curve[curve["policy"] == "learned"]
    router = lr.at(cost=0.1, confidence=0.5)
    assert router.heldout["cost_share"] <= 0.1
    within = learned[learned["cost_share"] <= 0.1]
    assert router.heldout["quality_share"] == pytest.approx(within["quality_share"].max())
    assert router.target == "cost<=0.1"


def test_at_refuses_unreachable_or_ambiguous_targets(lr: LearnedRouting) -> None:
    with pytest.raises(ConfigError, match="No knob keeps 120%"):
        lr.at(quality=1.2)
    with pytest.raises(ConfigError, match="cheapest policy costs"):
        lr.at(cost=0.001)
    with pytest.raises(ConfigError, match="exactly one"):
        lr.at(quality=0.9, cost=0.5)
    with pytest.raises(ConfigError, match="share of the best"):
        lr.at(quality=95)


def test_predictors_are_compared_on_held_out_folds(lr: LearnedRouting) -> None:
    table = lr.predictors().set_index("predictor")
    assert {"ridge(alpha=1)", "knn(k=10)", "mean", "chosen per fold (nested)"} <= set(table.index)
    # Prompts carry the signal here: the chosen predictor far beats each model's mean.
    assert (
        table.loc["chosen per fold (nested)", "heldout_mse"]
        < 0.5 * table.loc["mean", "heldout_mse"]
    )
    assert table["deployed"].sum() == 1


def test_plot_draws_the_curve(lr: LearnedRouting) -> None:
    import matplotlib

    matplotlib.use("Agg")
    ax = lr.plot()
    assert {line.get_label() for line in ax.get_lines()} >= {"learned", "oracle", "random"}
    assert "large" in ax.get_xlabel()


# -- routing and explaining -----------------------------------------------------------------------


def test_route_explains_each_models_predicted_quality_the_knob_and_the_nearest_prompts(
    router: LearnedRouter,
) -> None:
    decision = router.route("Solve for x: 4x + 3 = 2x - 9. Show each step.", catalogue())
    assert decision.model == "large" and decision.router == "learned"
    assert decision.rule == "learned:large"
    for model in MODELS:
        assert f"{model} 0." in decision.reason
    assert "knob" in decision.reason and "nearest training prompt" in decision.reason
    assert decision.estimated_cost is not None
    easy = router.route(
        "Pretend you are a tour guide and greet a new visitor to a farm.", catalogue()
    )
    assert easy.model != "large"
    shown = router.inspect(
        "Write a Go function that sorts a graph without using the built-in sort."
    )
    frame = shown.to_dataframe()
    assert list(frame.index) == list(MODELS) and frame["chosen"].sum() == 1
    assert shown.margin is not None and shown.margin > 0
    assert len(shown.nearest) == 3 and "sorts" in shown.nearest[0]["prompt"]
    assert set(shown.nearest[0]["quality"]) == set(MODELS)
    assert "Nearest training prompts" in shown._repr_markdown_()


def test_a_model_missing_from_the_catalogue_is_a_clear_error(router: LearnedRouter) -> None:
    only_two = Catalogue.of([m for m in catalogue() if m.name != "medium"])
    with pytest.raises(ConfigError, match="trained on medium, which is not in the catalogue"):
        router.route("Write a poem about a farm.", only_two)


def test_an_unavailable_model_is_skipped_and_the_reason_says_so(router: LearnedRouter) -> None:
    keyless = {"provider": "openai", "api_key_env": "MMO_TEST_LEARNED_UNSET_KEY"}
    offline = catalogue(large=keyless)
    decision = router.route("Solve for x: 4x + 3 = 2x - 9. Show each step.", offline)
    assert decision.model != "large"
    assert "MMO_TEST_LEARNED_UNSET_KEY not set" in decision.reason
    nothing = catalogue(small=keyless, medium=keyless, large=keyless)
    with pytest.raises(NoModelAvailableError):
        router.route("Solve for x.", nothing)


def test_an_orchestrator_routes_with_it(router: LearnedRouter) -> None:
    with mmo.Orchestrator(list(catalogue()), runlog=":memory:") as orc:
        decision = orc.route("Compute the integral of 3x^2 + 2x from 0 to 5.", route=router)
    assert decision.model == "large" and decision.router == "learned"


# -- router files ---------------------------------------------------------------------------------


def test_a_router_file_round_trips(router: LearnedRouter, new: World, tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    router.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "mmo_magic.learned_router" and doc["format_version"] == 1
    assert doc["models"] == list(MODELS)
    assert doc["representation"]["name"] == "default" and doc["representation"]["version"]
    assert doc["training"]["items"] == 300 and doc["training"]["date"]
    assert doc["checksum"].startswith("sha256:")
    loaded = load_router(path)
    assert loaded.models == router.models and loaded.knob == router.knob
    assert loaded.heldout == router.heldout and loaded.training == router.training
    prompts = new.prompts[:50]
    assert np.allclose(loaded.predict(prompts), router.predict(prompts), atol=1e-5)
    assert loaded.choose(prompts) == router.choose(prompts)
    assert str(loaded.route(prompts[0], catalogue())) == str(router.route(prompts[0], catalogue()))


@pytest.fixture
def saved(router: LearnedRouter, tmp_path: Path) -> Path:
    path = tmp_path / "router.json"
    router.save(path)
    return path


def rewrite(path: Path, change: Any, *, reseal: bool = False) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    if reseal:
        doc["checksum"] = _checksum(doc)
    path.write_text(json.dumps(doc))


def test_a_tampered_file_is_refused(saved: Path) -> None:
    def more_quality(doc: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(doc["arrays"]["coef"]["data"] if "coef" in doc["arrays"]
                                         else doc["arrays"]["targets"]["data"]))  # fmt: skip
        raw[0] ^= 0xFF
        key = "coef" if "coef" in doc["arrays"] else "targets"
        doc["arrays"][key]["data"] = base64.b64encode(bytes(raw)).decode()

    for change in (
        lambda d: d.update(knob=0.0),
        lambda d: d["prompts"].__setitem__(0, "something else"),
        more_quality,
    ):
        path = saved.with_name("tampered.json")
        path.write_text(saved.read_text())
        rewrite(path, change)
        with pytest.raises(ConfigError, match="fails its checksum"):
            load_router(path)


def test_foreign_damaged_and_other_version_files_are_refused(saved: Path, tmp_path: Path) -> None:
    import pickle

    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"model": "gpt", "weights": [1, 2, 3]}))
    with pytest.raises(ConfigError, match="not a learned router file"):
        load_router(foreign)
    pickled = tmp_path / "router.pkl"
    pickled.write_bytes(pickle.dumps({"format": "mmo_magic.learned_router"}))
    with pytest.raises(ConfigError, match="not a router file"):
        load_router(pickled)
    with pytest.raises(ConfigError, match="No router file"):
        load_router(tmp_path / "absent.json")
    rewrite(saved, lambda d: d.update(format_version=2), reseal=True)
    with pytest.raises(ConfigError, match="format version 2"):
        load_router(saved)
    rewrite(saved, lambda d: d.update(format_version=1))
    rewrite(saved, lambda d: d["representation"].update(version="hashed-ngrams-0"), reseal=True)
    with pytest.raises(ConfigError, match="representation version 'hashed-ngrams-0'"):
        load_router(saved)
    rewrite(saved, lambda d: d["representation"].update(name="bert"), reseal=True)
    with pytest.raises(ConfigError, match="needs the text representation 'bert'"):
        load_router(saved)


def test_a_resealed_file_with_arrays_of_the_wrong_shape_is_refused(saved: Path) -> None:
    # A checksum can be recomputed by anyone: shapes are checked on their own.
    rewrite(saved, lambda d: d.update(prompts=d["prompts"][:-1]), reseal=True)
    with pytest.raises(ConfigError, match="damaged learned router file"):
        load_router(saved)


# -- evidence -------------------------------------------------------------------------------------


def test_evidence_is_checked() -> None:
    prompts = [f"prompt {i}" for i in range(12)]
    good = [[0.5, 0.6]] * 12
    with pytest.raises(ConfigError, match="at least two models"):
        RoutingEvidence(prompts, ["a"], [[0.5]] * 12, [[1.0]] * 12)
    with pytest.raises(ConfigError, match=r"Quality must be in \[0, 1\]"):
        RoutingEvidence(prompts, ["a", "b"], [[5.0, 6.0]] * 12, [[1.0, 1.0]] * 12)
    with pytest.raises(ConfigError, match=r"shape \(11, 2\); expected \(12, 2\)"):
        RoutingEvidence(prompts, ["a", "b"], good[:11], [[1.0, 1.0]] * 12)
    with pytest.raises(ConfigError, match="No cost is known for b"):
        RoutingEvidence(prompts, ["a", "b"], good, [[1.0, None]] * 12)
    with pytest.raises(ConfigError, match="at least 10 items"):
        RoutingEvidence(prompts[:5], ["a", "b"], good[:5], None, prices={"a": 1, "b": 2})
    priced = RoutingEvidence(prompts, ["a", "b"], good, [[1.0, None]] * 12, prices={"b": 3.0})
    assert priced.per_call_prices.tolist() == [1.0, 3.0]
    assert priced.filled_cost[:, 1].tolist() == [3.0] * 12
