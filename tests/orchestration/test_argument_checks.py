"""Bad arguments to the orchestrator, consensus and the run log's readers: one clear MMOError
line each, and nothing sent (issue 27, defects 12 and 13, the orchestrator's parts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import sim_models

import mmo_magic as mmo
from mmo_magic.core.errors import ConfigError, MMOError


@pytest.fixture
def orc(sim: Any, keys: Any) -> Iterator[mmo.Orchestrator]:
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False) as o:
        for base, reply in (("oa", "42"), ("lo", "The+answer+is+42"), ("an", "Maybe+41")):
            name = f"{base}:sim-fast?reply={reply}"
            o.add_model(o.catalogue.resolve(base).replace(name=name, model_id=name[3:]))
        yield o


CANDIDATES = ["oa:sim-fast?reply=42", "lo:sim-fast?reply=The+answer+is+42"]


def one_line(error: pytest.ExceptionInfo[MMOError]) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- consensus: judges are checked before anything is sent (#12) -------------------------------


def test_an_unknown_judge_is_refused_before_the_candidates_are_paid_for(
    orc: mmo.Orchestrator, sim: Any
) -> None:
    with pytest.raises(mmo.UnknownModelError, match=r"'nope' in judges \(nothing was sent\)") as e:
        orc.consensus("6*7?", CANDIDATES, judges=["nope"])
    one_line(e)
    assert sim.request_count() == 0 and len(orc.runs) == 0
    with pytest.raises(mmo.UnknownModelError, match="Did you mean 'oa'"):
        orc.consensus("6*7?", CANDIDATES, judges=["oa", "ao"])
    assert sim.request_count() == 0


def test_an_unavailable_judge_is_refused_before_anything_is_sent(
    orc: mmo.Orchestrator, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MMO_TEST_ANTHROPIC_KEY")
    with pytest.raises(ConfigError, match=r"Judge 'an' is unavailable .*nothing was sent") as e:
        orc.consensus("6*7?", CANDIDATES, judges=["an"])
    one_line(e)
    assert sim.request_count() == 0


@pytest.mark.parametrize("returned", [99, -3, "x", 1.0, True, object()])
def test_a_strategy_returning_something_else_is_one_clear_error(
    orc: mmo.Orchestrator, returned: Any
) -> None:
    def odd(responses: list[Any]) -> Any:
        return returned

    with pytest.raises(ConfigError, match=r"strategy odd returned .*index \(0-1\) or None") as e:
        orc.consensus("6*7?", CANDIDATES, strategy=odd)
    one_line(e)


@pytest.mark.parametrize(
    ("strategy", "winner"),
    [
        (lambda responses: np.argmax([len(r.content) for r in responses]), 1),  # numpy's int
        (lambda responses: -1, 1),
        (lambda responses: responses[0], 0),
        (lambda responses: None, None),
    ],
)
def test_a_strategy_may_return_an_index_a_response_or_none(
    orc: mmo.Orchestrator, strategy: Callable[[list[Any]], Any], winner: int | None
) -> None:
    result = orc.consensus("6*7?", CANDIDATES, strategy=strategy)
    if winner is None:
        assert result.winner is None and "chose none" in result.reason
    else:
        assert result.winner is not None and result.winner.model == CANDIDATES[winner]


# -- the orchestrator's models (#13) --------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("sim-fast", r"models must be a list of ModelConfig .*got 'sim-fast'.*default_model="),
        ([1, 2], r"models\[0\] is 1, not a ModelConfig"),
        (5, r"models must be a list of ModelConfig objects or a Catalogue, got 5"),
        ({"a": 1}, r"models must be a list"),
    ],
)
def test_models_that_are_not_model_configs_are_one_config_error(models: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        mmo.Orchestrator(models, runlog=":memory:")
    one_line(e)


def test_a_model_config_after_a_good_one_is_still_checked(sim: Any) -> None:
    good = sim_models(sim)[0]
    with pytest.raises(ConfigError, match=r"models\[1\] is 'gpt-4o', not a ModelConfig"):
        mmo.Orchestrator([good, "gpt-4o"], runlog=":memory:")


# -- the run log's readers (#13) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"last": "x"}, r"last must be a whole number, got 'x'"),
        ({"last": 2.5}, r"last must be a whole number, got 2.5"),
        ({"last": -1}, r"last must be >= 0, got -1"),
        ({"cell": "3"}, r"cell must be a whole number, got '3'"),
        ({"group_id": 5}, r"group_id must be a string id, got 5"),
    ],
)
def test_run_log_filters_of_the_wrong_kind_are_one_config_error(
    orc: mmo.Orchestrator, arguments: dict[str, Any], message: str
) -> None:
    orc.complete("hello", model="oa")
    for read in (orc.runs.to_dataframe, orc.runs.records):
        with pytest.raises(ConfigError, match=message) as e:
            read(**arguments)
        one_line(e)
    assert len(orc.runs.to_dataframe(last=1)) == 1 and orc.runs.records(last=0) == []


def test_export_into_a_missing_directory_or_onto_a_directory_is_one_config_error(
    orc: mmo.Orchestrator, tmp_path: Path
) -> None:
    orc.complete("hello", model="oa")
    for suffix in ("jsonl", "csv", "parquet"):
        target = tmp_path / "missing" / f"runs.{suffix}"
        with pytest.raises(ConfigError, match=r"the directory .*missing does not exist") as e:
            orc.runs.export(target)
        one_line(e)
        assert not target.parent.exists()
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(ConfigError, match=r"Cannot export the run log to .*taken\.csv: ") as e:
        orc.runs.export(tmp_path / "taken.csv")
    one_line(e)
    with pytest.raises(ConfigError, match="export needs a file path"):
        orc.runs.export(None)  # type: ignore[arg-type]
    assert orc.runs.export(tmp_path / "runs.jsonl").read_text().count("\n") == 1
