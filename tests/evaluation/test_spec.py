"""The batch spec (one validated, frozen set of options) and what a local batch imports."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest

import mmo_magic as mmo
from mmo_magic.evaluation import BatchSpec

ITEMS = [{"question": f"What is {i} plus {i}?"} for i in range(3)]


def test_a_misspelt_option_is_one_config_error_naming_it_and_the_valid_ones():
    with (
        mmo.Orchestrator([], runlog=":memory:", cache=False) as orc,
        pytest.raises(mmo.ConfigError) as caught,
    ):
        orc.batch(ITEMS, ["oa"], judge=["x"])
    error = caught.value
    assert "'judge'" in str(error) and "judges" in (error.hint or "")
    assert "judge_mode" in (error.hint or "") and "cpus_per_worker" in (error.hint or "")


def test_a_spec_is_checked_when_made_and_frozen():
    with pytest.raises(mmo.ConfigError, match="concurrency"):
        BatchSpec(ITEMS, ["oa"], concurrency=0)
    with pytest.raises(mmo.ConfigError, match="listed twice"):
        BatchSpec(ITEMS, ["oa", "oa"])
    with pytest.raises(mmo.ConfigError, match="Unknown rate-limit setting"):
        BatchSpec(ITEMS, ["oa"], limits={"oa": {"rpm": 3}})
    models = ["oa", "an"]
    spec = BatchSpec(ITEMS, models, judges=["j"])
    models.append("lo")  # the caller's list changing later does not change the batch
    assert spec.models == ("oa", "an") and spec.judges == ("j",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.concurrency = 3  # type: ignore[misc]
    with pytest.raises(mmo.ConfigError, match="judge_mode"):
        spec.replace(judge_mode="best-of")


def test_a_spec_runs_as_the_same_keywords_do(orc, sim):
    by_keywords = orc.batch(ITEMS, ["oa", "an"], prompt="Q: {question}", progress=False)
    spec = BatchSpec(ITEMS, ["oa", "an"], prompt="Q: {question}")
    by_spec = orc.batch(spec, progress=False)
    assert by_spec.group_id == by_keywords.group_id
    assert [r["status"] for r in by_spec.rows] == ["ok"] * 6
    assert all(r["resumed"] for r in by_spec.rows)  # the same batch: taken from the log
    assert orc.estimate_batch(spec) == orc.estimate_batch(ITEMS, ["oa", "an"], "Q: {question}")
    with pytest.raises(mmo.ConfigError, match="BatchSpec alone"):
        orc.batch(spec, ["oa"])


def test_a_local_batch_imports_no_ray_code():
    # In a fresh interpreter: other tests' imports must not hide an import made here.
    code = (
        "import sys, mmo_magic as mmo\n"
        "orc = mmo.Orchestrator(runlog=':memory:', cache=False)\n"
        "result = orc.batch([{'question': 'hi'}, {'question': 'ho'}], ['sim-fast'],\n"
        "                   judges=['sim-fast'], progress=False)\n"
        "assert len(result) == 2, result\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m == 'ray' or m.startswith(('ray.', 'mmo_magic.evaluation.ray'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ},
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_estimate_is_the_batchs_own_budget_check(orc, sim):
    # The same spec, key, reference and criteria included: one worst case, not two.
    items = [{"id": f"q{i}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)}
             for i in range(3)]  # fmt: skip
    options = {"judges": ["an"], "judge_mode": "grade", "key": "id", "max_tokens": 50,
               "reference_column": "answer", "criteria": "Be strict."}  # fmt: skip
    estimate = orc.estimate_batch(items, ["oa", "lo"], **options)
    assert set(estimate) == {"oa", "lo", "judge an"}
    result = orc.batch(items, ["oa", "lo"], budget=10.0, progress=False, **options)
    assert result.worst_case_cost == sum(c or 0 for c in estimate.values())


def test_the_run_log_and_the_ray_shipping_log_are_record_sinks():
    from mmo_magic.evaluation.ray.worker import ShippingLog
    from mmo_magic.storage.sinks import RecordSink

    with mmo.RunLog(":memory:") as log:
        assert isinstance(log, RecordSink)
    shipping = ShippingLog()
    assert isinstance(shipping, RecordSink) and not isinstance(shipping, mmo.RunLog)
    assert shipping.records(group_id="any") == []


# -- issue 27 #11: bad batch input is one clear line, before anything is sent ----------------


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        ([{"question": float("nan")}], {}, "column 'question', which is empty there"),
        ([{"question": None}], {}, "column 'question', which is empty there"),
        ([{"q": "x"}], {"prompt": "{q"}, "'{q' with no closing brace"),
        ([{"question": "x"}], {"limits": {"typo": {"requests_per_minute": 5}}}, "names 'typo'"),
        ("no-such-file.csv", {}, "No batch data file at 'no-such-file.csv'"),
    ],
)
def test_bad_batch_input_is_refused_before_sending(orc, sim, data, options, message):
    sent = sum(sim.requests.values())
    with pytest.raises(mmo.ConfigError, match=re.escape(message)):
        orc.batch(data, models=["oa"], progress=False, **options)
    assert sum(sim.requests.values()) == sent  # nothing reached the provider


def test_duplicate_dataframe_columns_are_refused(orc):
    import pandas as pd

    frame = pd.DataFrame([["a", "b"]], columns=["question", "question"])
    with pytest.raises(mmo.ConfigError, match="column 'question' more than once"):
        orc.batch(frame, models=["oa"], progress=False)


def test_braces_that_are_not_a_column_stay_text(orc):
    br = orc.batch([{"q": "x"}], models=["oa"], prompt="{q}: is it in {a, b}? {name: 1}",
                   progress=False)  # fmt: skip
    assert br.prompts == ["x: is it in {a, b}? {name: 1}"]
