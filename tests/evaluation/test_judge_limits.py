"""Judges inside their limits (issue 24, defect 1): every judge call passes the judge's gate.

Both orders of a pair and a repair turn are calls of their own: each waits for the
judge's requests-per-minute slot and counts toward its tokens per minute. Measured
where the requests arrive, at the simulated provider.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from urllib.parse import quote

import pytest
from helpers import arrivals, with_model_id

import mmo_magic as mmo
from mmo_magic.orchestration.judges import verdict_schema

JUDGE = "sim-fast?reply=judge&prefer=paris"


def answerers(orc) -> list[str]:  # type: ignore[no-untyped-def]
    replies = ["Paris is the capital.", "Lyon, I think.", "Marseille?", "Nice."]
    return [with_model_id(orc, "oa", "sim-fast?reply=" + quote(r)) for r in replies]


def warm(orc, sim, judge: str, *models: str) -> None:  # type: ignore[no-untyped-def]
    """Build every client, and ask the judge under a schema once, before the timed batch.

    A first use (an SDK's import and TLS set-up, structured output's first schema) holds
    the event loop for a while: the rate gate then lets the calls that waited behind it
    catch up, which would look like a burst.
    """
    with contextlib.suppress(mmo.MMOError):  # a garbling judge's warm-up verdict is prose
        orc.complete("warm up", judge, response_format=verdict_schema(["A", "B"]))
    for model in models:
        orc.complete("warm up", model)
    sim.reset()


def test_both_orders_and_repairs_pass_the_judges_requests_per_minute(orc, sim):
    garbling = JUDGE + "&garble_times=2"  # its first two verdicts need a repair turn
    judge = with_model_id(orc, "an", garbling)
    models = answerers(orc)[:2]
    warm(orc, sim, judge, *models)
    items = [{"question": f"Capital of France? ({i})"} for i in range(3)]
    with arrivals(sim, garbling) as times:
        result = orc.batch(items, models, judges=[judge], progress=False,
                           limits={judge: {"requests_per_minute": 240}})  # fmt: skip
    # 240 a minute is one every 0.25 s, repairs included: 8 calls span 1.75 s (a call
    # delayed by a stalled loop lets the next catch up one slot). Passing the gate once
    # per pair, they spanned about 0.5 s.
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert times[-1] - times[0] >= 1.25, gaps
    assert len(result.judgements) == 3 and all(j["error"] is None for j in result.judgements)
    assert len(times) == 3 * 2 + 2  # three pairs in both orders, two repairs


def test_judge_calls_count_toward_the_judges_tokens_per_minute(orc, sim):
    # Each judge call counts its input tokens plus the judge's max_tokens (about 10,400
    # here): 36 calls, and a minute's budget for 33 of them, so the last few wait ~1.8 s
    # each. Before, judge calls counted no tokens and all went at once.
    judge = with_model_id(orc, "an", JUDGE, max_tokens=10_000)
    models = answerers(orc)
    warm(orc, sim, judge, *models)
    items = [{"question": f"Capital of France? ({i})"} for i in range(3)]
    with arrivals(sim, JUDGE) as times:
        result = orc.batch(items, models, judges=[judge], progress=False,
                           limits={judge: {"tokens_per_minute": 345_000}})  # fmt: skip
    assert len(result.judgements) == 3 * 6  # 3 items x 6 pairs of 4 models
    assert len(times) == 36
    assert times[-1] - times[0] >= 3.0, times[-1] - times[0]


@pytest.mark.parametrize("mode", ["pairwise", "grade"])
def test_a_resumed_judging_sends_nothing_through_the_gate(orc, sim, mode):
    grade = quote('{"winner": "A", "scores": {"A": 7}, "reason": "ok"}')
    judge = with_model_id(orc, "an", JUDGE if mode == "pairwise" else f"sim-fast?reply={grade}")
    models = answerers(orc)[:2]
    items = [{"question": f"Capital of France? ({i})"} for i in range(2)]
    limits = {judge: {"requests_per_minute": 6}}  # a slot every 10 s: a wait would show
    orc.batch(items, models, judges=[judge], judge_mode=mode, progress=False)
    began = time.monotonic()
    again = orc.batch(items, models, judges=[judge], judge_mode=mode, limits=limits,
                      progress=False)  # fmt: skip
    assert time.monotonic() - began < 5
    assert len(again.judgements or again.grades) == (2 if mode == "pairwise" else 4)
