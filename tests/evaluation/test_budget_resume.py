"""The budget counts only what would be sent (issue 24, defect 4).

A re-run takes finished answers and verdicts from the run log; the worst case
that the budget is checked against, and ``estimate_batch``, leave them out.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from helpers import with_model_id

import mmo_magic as mmo

ITEMS = [{"question": f"Capital of France? ({i})"} for i in range(3)]


def models_and_judge(orc) -> tuple[list[str], str]:  # type: ignore[no-untyped-def]
    good = with_model_id(orc, "oa", "sim-fast?reply=" + quote("Paris."))
    bad = with_model_id(orc, "lo", "sim-fast?reply=" + quote("Lyon."))
    return [bad, good], with_model_id(orc, "an", "sim-fast?reply=judge&prefer=paris")


def test_a_finished_judged_batch_runs_again_under_a_tiny_budget(orc, sim):
    models, judge = models_and_judge(orc)
    first = orc.batch(ITEMS, models, judges=[judge], progress=False)
    assert len(first.judgements) == 3 and all(j["winner"] for j in first.judgements)
    sent = sim.request_count()
    assert sum(c or 0 for c in orc.estimate_batch(ITEMS, models, judges=[judge]).values()) == 0
    again = orc.batch(ITEMS, models, judges=[judge], budget=0.001, progress=False)
    assert sim.request_count() == sent  # nothing was sent, and nothing refused
    assert [j["winner"] for j in again.judgements] == [j["winner"] for j in first.judgements]


def test_only_the_new_items_work_is_counted(orc, sim, tmp_path):
    models, judge = models_and_judge(orc)
    orc.batch(ITEMS[:2], models, judges=[judge], progress=False)
    grown = orc.estimate_batch(ITEMS, models, judges=[judge])
    with mmo.Orchestrator(list(orc.catalogue), runlog=":memory:", cache=False) as fresh:
        alone = fresh.estimate_batch(ITEMS[2:], models, judges=[judge])
    assert grown == pytest.approx(alone)
    assert grown[f"judge {judge}"] > 0


def test_a_verdict_missing_in_one_order_counts_that_order_only(orc, sim):
    models, judge = models_and_judge(orc)
    full = orc.estimate_batch(ITEMS[:1], models, judges=[judge])[f"judge {judge}"]
    result = orc.batch(ITEMS[:1], models, judges=[judge], progress=False)
    swapped = [r for r in orc.runs.records(group_id=result.group_id)
               if r.kind == "judge" and r.step and r.step.endswith("|swapped")]  # fmt: skip
    assert len(swapped) == 1
    swapped[0].status = "cancelled"  # as if the kernel died before the swapped verdict
    orc.runs.add(swapped[0])  # re-adding a run_id replaces it
    left = orc.estimate_batch(ITEMS[:1], models, judges=[judge])
    assert set(left) == {f"judge {judge}"}  # the answers are done
    assert left[f"judge {judge}"] == pytest.approx(full / 2)
