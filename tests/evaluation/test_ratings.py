"""Tallies, Bradley–Terry ratings with bootstrap intervals, and judges' bias statistics."""

from __future__ import annotations

import math
import random
from urllib.parse import quote

import pytest
from helpers import with_model_id

from mmo_magic.evaluation.ratings import (
    Comparison,
    bradley_terry,
    bradley_terry_intervals,
    judge_agreement,
    position_bias,
    win_matrix,
)


def simulated(strengths: dict[str, float], items: int, seed: int) -> list[Comparison]:
    """Each item: every pair once, won with Bradley–Terry probability (a tie 10% of the time)."""
    rng = random.Random(seed)
    names = list(strengths)
    out = []
    for item in range(items):
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if rng.random() < 0.1:
                    score = 0.5
                else:
                    score = float(rng.random() < strengths[a] / (strengths[a] + strengths[b]))
                out.append(Comparison(item, a, b, score))
    return out


def test_bradley_terry_recovers_a_known_ordering_and_its_gaps():
    truth = {"d": 0.5, "b": 2.0, "a": 4.0, "c": 1.0}  # listed out of order on purpose
    comparisons = simulated(truth, items=400, seed=3)
    ratings = bradley_terry_intervals(comparisons, list(truth), rounds=200, seed=1)
    assert [r.model for r in ratings] == ["a", "b", "c", "d"]
    by_model = {r.model: r for r in ratings}
    for a, b in (("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")):
        gap = by_model[a].rating - by_model[b].rating
        true_gap = 400 * math.log10(truth[a] / truth[b])
        assert gap == pytest.approx(true_gap, rel=0.25), (a, b)
    for r in ratings:
        assert r.low < r.rating < r.high
    # Disjoint intervals: 400 items separate strengths a factor of two apart.
    assert by_model["a"].low > by_model["b"].high and by_model["c"].low > by_model["d"].high


def test_intervals_narrow_with_more_items():
    truth = {"a": 2.0, "b": 1.0}
    small = bradley_terry_intervals(simulated(truth, 30, seed=5), ["a", "b"], rounds=200)
    large = bradley_terry_intervals(simulated(truth, 600, seed=5), ["a", "b"], rounds=200)
    width = {r.model: r.high - r.low for r in small}
    assert all(r.high - r.low < width[r.model] / 2 for r in large)


def test_an_unbeaten_model_gets_a_finite_rating_and_symmetric_pairs_are_equal():
    sweep = [Comparison(i, "a", "b", 1.0) for i in range(5)]
    ratings = bradley_terry(sweep, ["a", "b"])
    assert math.isfinite(ratings["a"]) and ratings["a"] > ratings["b"]
    even = [Comparison(i, "a", "b", float(i % 2)) for i in range(10)]
    assert bradley_terry(even, ["a", "b"])["a"] == pytest.approx(1000.0)
    ties = [Comparison(i, "a", "b", 0.5) for i in range(4)]
    assert bradley_terry(ties, ["a", "b"]) == pytest.approx({"a": 1000.0, "b": 1000.0})


def test_win_matrix_counts_both_sides():
    comparisons = [
        Comparison(0, "a", "b", 1.0),
        Comparison(1, "b", "a", 1.0),
        Comparison(2, "a", "b", 0.5),
        Comparison(3, "a", "c", 0.0),
    ]
    matrix = win_matrix(comparisons, ["a", "b", "c"])
    assert matrix["a"]["b"] == (1, 1, 1) and matrix["b"]["a"] == (1, 1, 1)
    assert matrix["a"]["c"] == (0, 0, 1) and matrix["c"]["a"] == (1, 0, 0)
    assert matrix["b"]["c"] == (0, 0, 0)


def test_position_bias_and_agreement_from_hand_made_judgements():
    rows = [
        # j1 always picks whatever is shown first: the winner flips with the order.
        {"item": 0, "judge": "j1", "model_a": "x", "model_b": "y", "first": "x", "swapped": "y",
         "winner": "tie"},
        {"item": 1, "judge": "j1", "model_a": "x", "model_b": "y", "first": "x", "swapped": "y",
         "winner": "tie"},
        # j2 is consistent, once undecided in one order.
        {"item": 0, "judge": "j2", "model_a": "x", "model_b": "y", "first": "y", "swapped": "y",
         "winner": "y"},
        {"item": 1, "judge": "j2", "model_a": "x", "model_b": "y", "first": "tie", "swapped": "y",
         "winner": "tie"},
    ]  # fmt: skip
    bias = position_bias(rows)
    assert bias["j1"] == {"pairs": 2, "flip_rate": 1.0, "position_bias_rate": 1.0,
                          "first_position_rate": 1.0}  # fmt: skip
    assert bias["j2"]["flip_rate"] == 0.5 and bias["j2"]["position_bias_rate"] == 0.0
    # j2's decisive verdicts: y shown second, then y shown first twice -> 2 of 3 first.
    assert bias["j2"]["first_position_rate"] == pytest.approx(2 / 3)
    assert judge_agreement(rows) == {("j1", "j2"): 0.5}


def test_scripted_judges_rank_models_in_the_order_their_answers_deserve(orc, sim):
    """Three models, two content-reading judges: the ratings order is the scripted one.

    A judge with prefer=W picks the answer that mentions W; gold mentions
    alpha and beta, silver only beta, bronze neither. So gold beats both
    (alpha judge), silver beats bronze (beta judge), and gold-silver under the
    beta judge is a tie (both mention beta: the judge picks by position, and
    the swap exposes it).
    """
    gold = with_model_id(orc, "oa", "sim-fast?reply=" + quote("alpha beta gamma"))
    silver = with_model_id(orc, "lo", "sim-fast?reply=" + quote("beta gamma"))
    bronze = with_model_id(orc, "an", "sim-fast?reply=gamma")
    judges = [
        with_model_id(orc, "an", "sim-fast?reply=judge&prefer=alpha"),
        with_model_id(orc, "an", "sim-fast?reply=judge&prefer=beta"),
    ]
    items = [{"question": f"item {i}"} for i in range(6)]
    result = orc.batch(items, [bronze, gold, silver], judges=judges)
    board = result.leaderboard(rounds=100)
    assert list(board.index) == [gold, silver, bronze]
    assert board["rating"].is_monotonic_decreasing and board["rating"].nunique() == 3
    matrix = result.win_matrix()
    assert matrix.loc[gold, bronze] == "12-0-0" and matrix.loc[gold, silver] == "6-6-0"
    assert matrix.loc[silver, bronze] == "6-6-0"
    bias = result.bias()
    assert bias.loc[judges[0], "flip_rate"] == 0.0 and bias.loc[judges[1], "flip_rate"] > 0
