"""Every public argument is checked at the boundary: one MMOError line, recorded, and no harm.

Each test sends the bad input, checks the error says what is wrong (and what to
do), that nothing reached the simulated provider when nothing should have, that
the refused call is in the run log, and that the orchestrator still answers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import sim_models, with_model_id

import mmo_magic as mmo


def one_line(error: BaseException) -> str:
    text = str(error)
    assert isinstance(error, mmo.MMOError) and "\n" not in text and "Traceback" not in text
    return text


def refused_and_recorded(orc: mmo.Orchestrator, sim, call, match: str) -> mmo.MMOError:  # type: ignore[no-untyped-def]
    """``call(orc)`` raises an MMOError matching ``match``, sends nothing, and is recorded."""
    before, sent = len(orc.runs.records()), sim.request_count()
    with pytest.raises(mmo.MMOError, match=match) as info:
        call(orc)
    one_line(info.value)
    assert sim.request_count() == sent
    records = orc.runs.records()[before:]
    assert records and records[-1].status == "error"
    assert records[-1].error_type == type(info.value).__name__
    assert orc.complete("still there?", model="oa").ok
    return info.value


@pytest.mark.parametrize("limit", [math.nan, -1.0, math.inf, "10", True])
def test_budget_that_is_not_a_finite_amount_is_refused(sim, keys, limit):
    with pytest.raises(mmo.ConfigError, match="budget") as info:
        mmo.Orchestrator(sim_models(sim), runlog=":memory:", budget=limit)
    one_line(info.value)


@pytest.mark.parametrize("limit", [math.nan, -0.5, math.inf])
def test_per_call_budget_that_is_not_a_finite_amount_is_refused(orc, sim, limit):
    # NaN would have disabled the limit: every comparison with it is False.
    refused_and_recorded(orc, sim, lambda o: o.complete("hi", model="oa", budget=limit), "budget")


@pytest.mark.parametrize("limit", [0, -3, 1.5, None])
def test_zero_concurrency_is_refused_instead_of_hanging(sim, keys, limit):
    with pytest.raises(mmo.ConfigError, match="max_concurrency_per_provider") as info:
        mmo.Orchestrator(sim_models(sim), runlog=":memory:", max_concurrency_per_provider=limit)
    one_line(info.value)


def test_fallback_typo_is_reported_when_the_orchestrator_is_built(sim, keys):
    models = sim_models(sim)
    models[0] = models[0].replace(fallbacks=("ann",))
    with pytest.raises(
        mmo.UnknownModelError, match=r"'ann' in the fallbacks of model 'oa'"
    ) as info:
        mmo.Orchestrator(models, runlog=":memory:")
    assert "Did you mean 'an'" in one_line(info.value)


def test_fallback_typo_in_mmo_toml_is_reported_by_from_config(tmp_path: Path, sim, keys):
    config = tmp_path / "mmo.toml"
    config.write_text(
        '[models.primary]\nprovider = "sim"\nmodel_id = "sim-fast"\nfallbacks = ["sim-slwo"]\n'
    )
    with pytest.raises(mmo.UnknownModelError, match="'sim-slwo' in the fallbacks") as info:
        mmo.Orchestrator.from_config(config, runlog=":memory:")
    assert "Did you mean 'sim-slow'" in one_line(info.value)
    config.write_text(config.read_text().replace("sim-slwo", "sim-slow"))
    with mmo.Orchestrator.from_config(config, runlog=":memory:") as orc:
        assert orc.complete("hi", model="primary").model == "primary"


def test_fallback_typo_added_later_never_fails_the_working_primary(orc, sim):
    orc.add_model(orc.catalogue.resolve("oa").replace(name="primary", fallbacks=("ann",)))
    assert orc.complete("hi", model="primary").model == "primary"  # the primary is tried
    orc.add_model(orc.catalogue.resolve("primary").replace(model_id="sim-fast?fail=401"))
    with pytest.raises(mmo.AllModelsFailedError) as info:
        orc.complete("hi", model="primary")  # when it fails, the typo is reported
    assert "Unknown model 'ann'" in one_line(info.value) and sim.request_count() == 2


@pytest.mark.parametrize("content", [None, 42])
def test_message_content_that_is_not_text_is_refused(orc, sim, content):
    messages = [{"role": "user", "content": content}]
    error = refused_and_recorded(orc, sim, lambda o: o.complete(messages, model="oa"), "content")
    assert isinstance(error, mmo.InvalidRequestError)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"model": 42}, "model"),
        ({"route": 3}, "route"),
        ({"system": 5}, "system"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"fallbacks": 5}, "fallbacks"),
        ({"fallbacks": ["an", None]}, "fallbacks"),
        ({"cache": "no"}, "cache"),
    ],
)
def test_wrong_types_are_refused(orc, sim, arguments, named):
    arguments = {"model": "oa", **arguments}
    if "route" in arguments:
        arguments["model"] = "auto"
    refused_and_recorded(orc, sim, lambda o: o.complete("hi", **arguments), named)


def test_max_tokens_nan_is_refused(orc, sim):
    error = refused_and_recorded(
        orc, sim, lambda o: o.complete("hi", model="oa", max_tokens=math.nan), "max_tokens"
    )
    assert "nan" in str(error)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"budget": "ten"}, "budget"), ({"runlog": 42}, "runlog"), ({"cache": 3}, "cache")],
)
def test_bad_constructor_arguments_are_refused(sim, keys, arguments, named):
    with pytest.raises(mmo.ConfigError, match=named) as info:
        mmo.Orchestrator(sim_models(sim), **arguments)
    one_line(info.value)


def test_a_judge_given_as_a_string_is_one_judge(orc, sim):
    judge = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=apple")
    result = orc.consensus("q?", ["oa", "lo"], judges=judge, swap=False)
    assert list(result.verdicts) == [judge]  # not one judge per letter
    assert sim.request_count("sim-fast?reply=judge&prefer=apple") == 1


def test_fallbacks_given_as_a_string_is_one_model(orc, sim):
    primary = with_model_id(orc, "oa", "sim-fast?fail=401")
    r = orc.complete("hi", model=primary, fallbacks="an")
    assert r.model == "an"
    with pytest.raises(mmo.UnknownModelError, match="Unknown model 'fast2'") as info:
        orc.complete("hi", model=primary, fallbacks="fast2")
    one_line(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda o: o.race("hi", models=["oa", None]),
        lambda o: o.race("hi", models=["oa", ""]),
        lambda o: o.all("hi", models=[None, "an"]),
        lambda o: o.complete("hi", model=""),
        lambda o: o.consensus("hi", ["oa", "an"], judges=["an", ""]),
    ],
)
def test_none_or_empty_model_does_not_mean_the_default(orc, sim, call):
    before, sent = len(orc.runs.records()), sim.request_count()
    with pytest.raises(mmo.InvalidRequestError, match="model") as info:
        call(orc)
    one_line(info.value)
    assert sim.request_count() == sent  # the default model was not called instead
    # complete() records the refusal; race/all/consensus refuse their list before any call.
    assert all(r.status == "error" for r in orc.runs.records()[before:])
    assert orc.complete("still there?", model="oa").ok


def test_duplicate_model_in_a_race_is_refused(orc, sim):
    with pytest.raises(mmo.InvalidRequestError, match="'oa' more than once") as info:
        orc.race("hi", models=["oa", "an", "oa"])
    one_line(info.value)
    assert sim.request_count() == 0
    assert orc.race("hi", models=["oa", "an"]).winner is not None


@pytest.mark.parametrize(
    "arguments",
    [{"strategy": "best"}, {"strategy": 42}, {"strategy": "judge"}, {"panel": "loudest",
     "judges": ["an"]}],
)  # fmt: skip
def test_bad_consensus_strategy_is_refused_before_any_candidate_is_paid_for(orc, sim, arguments):
    with pytest.raises(mmo.ConfigError) as info:
        orc.consensus("hi", ["oa", "an"], **arguments)
    one_line(info.value)
    assert sim.request_count() == 0
    assert orc.consensus("hi", ["oa", "an"], strategy="longest").winner is not None


def test_a_message_with_an_unknown_role_is_named_as_such(orc, sim):
    messages = [{"role": "wizard", "content": "cast a spell"}]
    error = refused_and_recorded(orc, sim, lambda o: o.complete(messages, model="oa"), "role")
    assert "'wizard'" in str(error) and "empty" not in str(error)
    assert "user" in str(error)  # says which roles there are
