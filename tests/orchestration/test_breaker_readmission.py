"""The circuit breaker after long outages and under rate limits (issue 27 #10, issue 24 #2):
a recovered model is readmitted within the probe interval whatever the outage's length, and a
429 is back-pressure, never an outage."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import OPENAI_KEY_ENV

import mmo_magic as mmo


def readmission_after(outage_s: float, breaker: mmo.CircuitBreaker, step_s: float = 0.05) -> float:
    """Seconds a recovered model is still refused, after ``outage_s`` of failing every probe.

    A fake clock; requests arrive every ``step_s``; each one let through fails during the
    outage and succeeds after it.
    """
    clock = [1000.0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "monotonic", lambda: clock[0])
        start = clock[0]
        for _ in range(breaker.threshold):
            breaker.record_failure("m")
        while clock[0] - start < outage_s:
            if breaker.allow("m"):
                breaker.record_failure("m")
            clock[0] += step_s
        recovered = clock[0]
        while not breaker.allow("m"):
            clock[0] += step_s
        breaker.record_success("m")
        return clock[0] - recovered


@pytest.mark.parametrize("outage_s", [10, 30, 70, 600])
def test_a_recovered_model_is_readmitted_within_five_seconds_by_default(outage_s):
    assert readmission_after(outage_s, mmo.CircuitBreaker()) <= 5.0 + 0.05


def test_the_probe_interval_is_configurable():
    breaker = mmo.CircuitBreaker(cooldown_s=0.1, max_cooldown_s=0.5)
    assert readmission_after(70, breaker, step_s=0.01) <= 0.5 + 0.01


def test_a_probe_that_never_answers_does_not_hold_the_circuit_open_for_good():
    clock = [1000.0]
    breaker = mmo.CircuitBreaker(threshold=1, cooldown_s=1.0, max_cooldown_s=2.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "monotonic", lambda: clock[0])
        breaker.record_failure("m")
        clock[0] += 1.0
        assert breaker.allow("m")  # the probe goes out... and hangs
        assert not breaker.allow("m")
        clock[0] += 2.0
        assert breaker.allow("m")  # another probe after the probe interval


def test_a_429_never_opens_the_circuit(sim, keys):
    """Issue 24 #2: a model failing 429 eight times with retry-after, 12 calls at once,
    ended 9 ok and 3 "circuit is open" errors; all must end ok."""
    limited = "sim-fast?fail=429&fail_times=8&retry_after=0.05"
    config = mmo.ModelConfig("openai", limited, name="limited", base_url=sim.openai_base_url,
                             api_key_env=OPENAI_KEY_ENV, max_retries=10)  # fmt: skip
    breaker = mmo.CircuitBreaker(threshold=5)
    with mmo.Orchestrator([config], runlog=":memory:", cache=False, breaker=breaker) as orc:

        async def twelve() -> list[mmo.CompletionResponse]:
            return await asyncio.gather(*(orc.acomplete(f"q{i}", model="limited")
                                          for i in range(12)))  # fmt: skip

        answers = asyncio.run(twelve())
    assert [a.status for a in answers] == ["ok"] * 12
    assert breaker.state("limited") == "closed"
    assert sim.request_count(limited) == 20  # 8 refused, 12 answered


def test_a_429_during_a_probe_lets_the_next_request_probe(sim, keys):
    breaker = mmo.CircuitBreaker(threshold=1, cooldown_s=1.0)
    breaker.record_failure("m")
    with pytest.MonkeyPatch.context() as mp:
        now = time.monotonic() + 1.5
        mp.setattr(time, "monotonic", lambda: now)
        assert breaker.allow("m")
        breaker.record_backpressure("m")
        assert breaker.allow("m")
