"""Scorers beside judges, repeats and sampling options (issue 24, Build).

Function models answer the shipped question set in known ways, so every score has
a hand count: exact match and numeric agree with it, failed answers are counted
(scored 0, or left out and said so), and ``epochs=3`` gives three answers per pair
with a variance column. Sampling options reach the provider as in ``orc.complete``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import with_model_id

import mmo_magic as mmo
from mmo_magic.core.completion import StreamEnd
from mmo_magic.evaluation import eval_questions, scorers
from mmo_magic.providers import register_function, unregister_function

QUESTIONS = eval_questions()
REFERENCE = dict(zip(QUESTIONS["question"], QUESTIONS["reference"], strict=True))
# The questions whose reference is a number (with a unit at most): the hand-counted set.
NUMERIC_IDS = ["math-01", "math-02", "math-03", "math-04", "math-05",
               "reasoning-03", "reasoning-05", "facts-03"]  # fmt: skip
NUMERIC = QUESTIONS[QUESTIONS["id"].isin(NUMERIC_IDS)]


def reference_of(request: Any) -> str:
    return str(REFERENCE[request.prompt_text.removeprefix("Q: ")])


def right(request: Any) -> str:
    return reference_of(request)


def chatty(request: Any) -> str:
    return f"I think it is {reference_of(request)}."


def off_by_one(request: Any) -> str:
    reference = str(REFERENCE[request.prompt_text])
    if "Moon" in request.prompt_text:
        raise RuntimeError("off-by-one is down for this one")
    number = re.search(r"\d+", reference)
    return str(int(number.group()) + 1) if number else "no idea"


def grader(request: Any) -> list[Any]:
    return [json.dumps({"winner": "A", "scores": {"A": 7}, "reason": "fine"}),
            StreamEnd("stop", 10, 5)]  # fmt: skip


def comparer(request: Any) -> list[Any]:
    return [json.dumps({"winner": "tie", "reason": "same"}), StreamEnd("stop", 10, 5)]


_calls = itertools.count()


def moody(request: Any) -> str:
    """Right on two calls in three, in call order: its repeats differ."""
    return right(request) if next(_calls) % 3 else "pass"


@pytest.fixture(scope="module")
def orc() -> Iterator[mmo.Orchestrator]:
    functions = {"right": right, "chatty": chatty, "off-by-one": off_by_one, "moody": moody,
                 "grader": grader, "comparer": comparer}  # fmt: skip
    for name, function in functions.items():
        register_function(f"score-{name}", function)
    models = [mmo.ModelConfig("function", f"score-{name}", name=name, cost_per_1k_input=0.001,
                              cost_per_1k_output=0.001) for name in functions]  # fmt: skip
    with mmo.Orchestrator(models, default_model="right", runlog=":memory:", cache=False) as o:
        yield o
    for name in functions:
        unregister_function(f"score-{name}")


def test_exact_and_numeric_agree_with_a_hand_count(orc):
    models = ["right", "chatty", "off-by-one"]
    checks = [scorers.exact(), scorers.normalised(), scorers.numeric(tolerance=0.5),
              scorers.numeric(tolerance=0.5, name="numeric_skip", failed="skip")]  # fmt: skip
    br = orc.batch(NUMERIC, models, scorers=checks, progress=False)
    board = br.leaderboard()
    # By hand: right repeats each of the 8 references; chatty wraps them in a sentence
    # (never exact, always the right number); off-by-one adds one to the number and fails
    # on the Moon landing (scored 0 by default, left out by numeric_skip). Numeric takes
    # the answer's last number and the reference's first: "5 cents (0.05 dollars)" is
    # 5 expected and 0.05 found, so right and chatty score 7 of 8.
    assert board["exact"].to_dict() == {"right": 1.0, "chatty": 0.0, "off-by-one": 0.0}
    assert board["numeric"].to_dict() == {"right": 7 / 8, "chatty": 7 / 8, "off-by-one": 0.0}
    assert board.loc["off-by-one", "numeric_items"] == 8
    assert board.loc["off-by-one", "numeric_skip_items"] == 7
    assert board.loc["off-by-one", "numeric_skip_failed"] == "left out (1)"
    assert board.loc["off-by-one", "exact_failed"] == "scored 0"
    assert board.index[0] == "right"  # ordered by the first scorer
    low, high = board.loc["right", ["exact_low", "exact_high"]]
    assert low == high == 1.0
    assert "numeric_skip: failed answers left out" in board.attrs["notes"]
    summary = br.summary()
    assert summary.loc["chatty", "exact"] == 0.0 and summary.loc["chatty", "exact_items"] == 8


def test_scorers_on_the_whole_question_set_with_a_function_and_a_regex(orc):
    def starts_right(answer: str, item: dict[str, Any]) -> bool:
        return answer.startswith(str(item["reference"])[:3])

    checks = [scorers.exact(), scorers.contains(), scorers.regex(r"^I think"), starts_right]
    br = orc.batch(QUESTIONS, ["right", "chatty"], scorers=checks, progress=False)
    board = br.leaderboard()
    assert board.loc["right", "exact"] == 1.0 and board.loc["right", "exact_items"] == 30
    assert board.loc["chatty", "contains"] == 1.0 and board.loc["chatty", "regex"] == 1.0
    assert board.loc["right", "starts_right"] == 1.0 and board.loc["chatty", "starts_right"] == 0


def test_json_schema_scorer():
    check = scorers.json_schema({"type": "object", "required": ["city"]})
    assert check('```json\n{"city": "Oslo"}\n```', {}, True) == 1.0
    assert check('{"town": "Oslo"}', {}, True) == 0.0
    assert check("not json", {}, True) == 0.0
    assert check(None, {}, False) == 0.0
    with pytest.raises(mmo.ConfigError, match="column 'answer_key'"):
        scorers.exact("answer_key")("x", {"reference": "x"}, True)


def test_scorers_beside_a_judge(orc):
    br = orc.batch(NUMERIC, ["right", "chatty"], scorers=[scorers.numeric()],
                   judges=["grader"], judge_mode="grade", progress=False)  # fmt: skip
    board = br.leaderboard()
    assert board.loc["chatty", "numeric"] == 7 / 8 and board.loc["chatty", "rating"] == 7
    assert board.loc["chatty", "judged_items"] == 8 and board.loc["chatty", "numeric_items"] == 8


def test_three_epochs_give_three_answers_per_pair_and_a_variance(orc):
    br = orc.batch(NUMERIC, ["right", "moody"], epochs=3, scorers=[scorers.exact()],
                   progress=False)  # fmt: skip
    frame = br.to_dataframe()
    assert len(frame) == 8 * 2 * 3
    assert frame.groupby(["item", "model"], observed=True).size().eq(3).all()
    board = br.leaderboard()
    assert board.loc["right", "exact_epoch_var"] == 0.0
    assert board.loc["moody", "exact_epoch_var"] > 0  # its repeats differ
    assert 0.5 < board.loc["moody", "exact"] < 0.8  # right on two calls in three
    assert br.wide().shape == (8 * 3, 2)


def test_epochs_resume_each_repeat(orc):
    items = QUESTIONS[QUESTIONS["id"].isin(["facts-01", "facts-02"])]
    first = orc.batch(items, ["right"], epochs=2, rerun="all", progress=False)
    again = orc.batch(items, ["right"], epochs=3, progress=False)
    resumed = again.to_dataframe().set_index("epoch")["resumed"]
    assert len(first) == 4 and list(resumed) == [True, True, False, True, True, False]


def test_sampling_options_pass_through_a_batch(sim, keys):
    from helpers import SAMPLING, sim_models

    sampling = {k: SAMPLING[k] for k in ("stop", "top_p", "frequency_penalty",
                                         "presence_penalty")}  # fmt: skip
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:") as orc:
        model = with_model_id(orc, "oa", "sim-fast")
        orc.batch([{"question": "hi"}], [model], epochs=2, seed=7, concurrency=1, progress=False,
                  **sampling)  # fmt: skip
        body = sim.last_request("sim-fast")
    assert body is not None
    sent = body["body"]
    assert {k: sent[k] for k in sampling} == sampling
    assert sent["seed"] == 8  # the second repeat: seed + 1


def test_bad_scorers_and_epochs_are_one_line():
    with pytest.raises(mmo.ConfigError, match="epochs must be a whole number"):
        mmo.BatchSpec([{"question": "q"}], ["m"], epochs=0)
    with pytest.raises(mmo.ConfigError, match="takes Scorers or functions"):
        mmo.BatchSpec([{"question": "q"}], ["m"], scorers=["exact"])
    with pytest.raises(mmo.ConfigError, match="share a name"):
        mmo.BatchSpec([{"question": "q"}], ["m"], scorers=[scorers.exact(), scorers.exact()])


def test_failed_answers_left_out_of_judging_are_counted_and_said(orc):
    br = orc.batch(NUMERIC, ["right", "off-by-one"], judges=["grader"], judge_mode="grade",
                   progress=False)  # fmt: skip
    board = br.leaderboard()
    assert board.loc["off-by-one", "judged_items"] == 7 and board.loc["right", "judged_items"] == 8
    assert (
        "off-by-one was judged on 7 of 8 items: 1 failed answer is not judged"
        in (board.attrs["notes"])
    )


def test_agreement_with_one_judge_has_its_columns_and_says_why_it_is_empty(orc):
    br = orc.batch(NUMERIC[:2], ["right", "chatty"], judges=["comparer"], progress=False)
    frame = br.agreement()
    assert list(frame.columns) == ["judge", "other", "agreement"] and frame.empty
    assert "agreement needs two or more" in frame.attrs["notes"][0]
    board = br.leaderboard()
    assert board.loc["right", "ties[comparer]"] == 1.0  # this judge calls every pair a tie
    assert br.bias().loc["comparer", "tie_rate"] == 1.0


def test_learn_router_is_a_method_and_uses_the_rendered_prompts(orc):
    br = orc.batch(QUESTIONS, ["right", "chatty"], prompt="Q: {question}", judges=["grader"],
                   judge_mode="grade", progress=False)  # fmt: skip
    assert br.prompts[0] == "Q: " + QUESTIONS["question"].iloc[0]
    learned = br.learn_router(folds=2)
    assert learned.evidence.prompts == br.prompts


def test_the_worst_case_counts_every_repeat_judged(orc):
    items = QUESTIONS[QUESTIONS["id"].isin(["code-01", "code-02"])]
    options = {"judges": ["grader"], "judge_mode": "grade", "rerun": "all"}  # all to send
    one = orc.estimate_batch(items, ["right", "chatty"], **options)
    two = orc.estimate_batch(items, ["right", "chatty"], epochs=2, **options)
    assert two["judge grader"] == pytest.approx(2 * one["judge grader"])  # type: ignore[operator]
    assert two["right"] == pytest.approx(2 * one["right"])  # type: ignore[operator]
