"""Retries, deadlines, fallbacks and the circuit breaker, counting what reached the wire."""

from __future__ import annotations

import itertools
import time

import pytest
from helpers import sim_models

import mmo_magic as mmo

FAST_RETRIES = mmo.RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_retry_after_s=2)


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(
        sim_models(sim), runlog=":memory:", cache=False, retry_policy=FAST_RETRIES,
        breaker=mmo.CircuitBreaker(threshold=100),
    ) as o:  # fmt: skip
        yield o


def model(orc, model_id: str, *, base: str = "oa", **fields) -> str:
    """Register ``model_id`` (sim options) as a model with ``fields``; return its name."""
    name = f"{base}:{model_id}"
    fields.setdefault("max_retries", 2)
    orc.add_model(orc.catalogue.resolve(base).replace(name=name, model_id=model_id, **fields))
    return name


def gaps(records) -> list[float]:
    """Seconds between one attempt's end and the next one's start."""
    return [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(records)]


def test_429_with_retry_after_is_honoured(orc, sim):
    mid = "sim-fast?fail=429&retry_after=0.4&fail_times=1"
    r = orc.complete("hi", model=model(orc, mid))
    assert r.ok and sim.request_count(mid) == 2
    assert [a.status for a in r.attempts] == ["error", "ok"]
    records = orc.runs.records(group_id=orc.runs.records()[-1].group_id)
    assert [rec.attempt for rec in records] == [1, 2]
    assert gaps(records)[0] >= 0.4


def test_persistent_429_without_retry_after_is_bounded_and_backs_off(orc, sim):
    mid = "sim-fast?fail=429"
    with pytest.raises(mmo.ProviderError) as info:
        orc.complete("hi", model=model(orc, mid, max_retries=3))
    assert sim.request_count(mid) == 4  # one try and three retries, then it stops
    assert len(info.value.attempts) == 4
    waits = gaps(orc.runs.records())
    assert waits == sorted(waits) and waits[0] >= 0.025  # exponential: never hammering


def test_retry_after_longer_than_the_cap_is_not_waited_for(orc, sim):
    mid = "sim-fast?fail=429&retry_after=600"
    started = time.monotonic()
    with pytest.raises(mmo.ProviderError) as info:
        orc.complete("hi", model=model(orc, mid))
    assert sim.request_count(mid) == 1 and time.monotonic() - started < 5
    # The client reports what the server asked for; only the policy's cap decides.
    assert info.value.retry_after_s == 600


def provider_error(status=None, code=None, cls=mmo.ProviderError, **kw) -> mmo.ProviderError:  # type: ignore[no-untyped-def]
    return cls("x", provider="p", model="m", status=status, code=code, **kw)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (provider_error(429), True),
        (provider_error(408), True),
        (provider_error(409), True),
        (provider_error(500), True),
        (provider_error(529, "overloaded_error"), True),
        (provider_error(400, "content_policy_violation"), False),
        (provider_error(401), False),
        (provider_error(404), False),
        (provider_error(code="timeout"), True),
        (provider_error(code="connection_error"), True),
        (provider_error(cls=mmo.StreamError), True),
        (provider_error(code="api_error"), False),
        (provider_error(retryable=True), True),  # a custom client that knows better
    ],
)
def test_one_place_says_what_is_retryable(error, retryable):
    from mmo_magic.orchestration.reliability import retryable as is_retryable

    assert is_retryable(error) is retryable


def test_failover_decisions_for_one_chain():
    from mmo_magic.orchestration.reliability import Failover, Next

    failover = Failover(mmo.RetryPolicy(base_delay_s=0.01), mmo.CircuitBreaker(threshold=100))
    small = mmo.ModelConfig("sim", "a", context_window=8_000, max_retries=1)
    smaller = small.replace(name="b", context_window=4_000)
    busy = provider_error(429, retry_after_s=0.5)
    first = failover.after_failure(small, busy, retries=0)
    assert (first.next, first.delay_s) == (Next.RETRY, 0.5) and busy.retryable
    assert failover.after_failure(small, busy, retries=1).next is Next.FAILOVER  # retries used up
    assert failover.after_failure(small, busy, retries=0, text_shown=True).next is Next.STOP
    too_long = provider_error(400, "context_length_exceeded")
    assert failover.after_failure(small, too_long, retries=0).next is Next.FAILOVER
    assert failover.skip(smaller) == "context window not larger"
    assert failover.after_failure(small, provider_error(400), retries=0).next is Next.STOP


@pytest.mark.parametrize(
    "fault", ["fail=500", "fail=529", "fault=reset", "fault=cut", "fault=malformed"]
)
def test_transient_failure_once_then_success(orc, sim, fault):
    mid = f"sim-echo?{fault}&fail_times=1"
    r = orc.complete("hello again", model=model(orc, mid, base="an"))
    assert r.ok and r.content == "hello again" and sim.request_count(mid) == 2


def test_persistent_503_falls_back_and_reports_the_answering_model(orc, sim):
    down, up = "sim-fast?fail=503", "sim-echo"
    fallback = model(orc, up, base="an", cost_per_1k_input=0.01, cost_per_1k_output=0.02)
    primary = model(orc, down, max_retries=1, fallbacks=(fallback,))
    r = orc.complete("where did this come from", model=primary)
    assert r.model == fallback and r.provider == "anthropic"
    assert r.content == "where did this come from" and r.output_tokens == 5
    assert r.cost == pytest.approx((r.input_tokens * 0.01 + r.output_tokens * 0.02) / 1000)
    assert [(a.model, a.status) for a in r.attempts] == [
        (primary, "error"), (primary, "error"), (fallback, "ok"),
    ]  # fmt: skip
    assert sim.request_count(down) == 2 and sim.request_count(up) == 1
    failed = [rec for rec in orc.runs.records() if rec.status == "error"]
    assert [rec.cost for rec in failed] == [0.0, 0.0]  # nothing generated, nothing billed


def test_per_call_fallbacks_replace_the_configured_chain(orc, sim):
    primary = model(orc, "sim-fast?fail=500", max_retries=0, fallbacks=("an",))
    r = orc.complete("x", model=primary, fallbacks=["lo"])
    assert r.model == "lo" and sim.request_count("sim-fast") == 1


@pytest.mark.parametrize(
    ("fault", "deadline"),
    [
        ("fault=hang&hold_s=20", {"ttft_timeout_s": 0.3}),
        ("ttft_ms=5000", {"ttft_timeout_s": 0.3}),
        ("fault=stall&stall_after=2&hold_s=20", {"stall_timeout_s": 0.3}),
    ],
)
def test_silent_provider_fails_over_after_its_first_timeout(orc, sim, fault, deadline):
    silent = f"sim-fast?{fault}"
    primary = model(orc, silent, fallbacks=("an",), **deadline)
    started = time.monotonic()
    r = orc.complete("are you there", model=primary)
    assert r.ok and r.model == "an"
    assert sim.request_count(silent) == 1  # not retried on the same route
    assert [a.status for a in r.attempts] == ["timeout", "ok"]
    assert time.monotonic() - started < 3


def test_context_length_fails_over_to_a_larger_context_window(orc, sim):
    small = model(orc, "sim-fast?small", context_window=4_000)
    big = model(orc, "sim-echo", base="an", context_window=200_000)
    primary = model(
        orc, "sim-fast?fail=context_length", context_window=8_000, fallbacks=(small, big)
    )
    r = orc.complete("a very long prompt", model=primary)
    assert r.model == big
    assert sim.request_count("sim-fast?fail=context_length") == 1  # a 400: never retried
    assert sim.request_count("sim-fast?small") == 0  # too small to help
    assert "context window not larger" in r.attempts[1].error


def test_content_policy_refusal_propagates_without_fallback(orc, sim):
    primary = model(orc, "sim-fast?fail=content_policy", fallbacks=("an",))
    with pytest.raises(mmo.ProviderError, match=r"(?i)policy") as info:
        orc.complete("something forbidden", model=primary)
    assert info.value.status == 400
    assert sim.request_count() == 1


def test_unusable_model_fails_over(orc, sim, monkeypatch):
    monkeypatch.delenv("MMO_TEST_ANTHROPIC_KEY")
    primary = model(orc, "sim-fast", base="an", fallbacks=("oa",))
    r = orc.complete("hi", model=primary)
    assert r.model == "oa" and "MMO_TEST_ANTHROPIC_KEY" in (r.attempts[0].error or "")


def test_all_models_failing_raises_with_every_attempt(orc, sim):
    primary = model(orc, "sim-fast?fail=503", max_retries=1, fallbacks=("oa:sim-fast?fail=500",))
    model(orc, "sim-fast?fail=500", max_retries=0)
    with pytest.raises(mmo.AllModelsFailedError) as info:
        orc.complete("doomed", model=primary)
    assert [a.status for a in info.value.attempts] == ["error"] * 3
    assert len(orc.runs.records()) == 3


def test_circuit_breaker_opens_then_probes_and_closes(sim, keys):
    # Timed by the breaker's own clock: each wait is measured from what it says is left, so
    # a slow machine (the fallback's call after a failed probe can take a while) changes
    # nothing but how long the test takes.
    breaker = mmo.CircuitBreaker(threshold=2, cooldown_s=1.0)
    with mmo.Orchestrator(
        sim_models(sim), runlog=":memory:", cache=False, retry_policy=FAST_RETRIES, breaker=breaker
    ) as orc:
        down = "sim-fast?fail=503&fail_times=3"  # down for three requests, then recovers
        primary = model(orc, down, max_retries=0, fallbacks=("an",))
        for _ in range(2):
            assert orc.complete("ping", model=primary).model == "an"
        assert breaker.state(primary) == "open" and sim.request_count(down) == 2
        r = orc.complete("ping", model=primary)
        assert r.model == "an" and "circuit open" in r.attempts[0].error
        assert sim.request_count(down) == 2  # skipped while open
        time.sleep(breaker.retry_after_s(primary) + 0.05)
        assert breaker.state(primary) == "half-open"
        assert orc.complete("ping", model=primary).model == "an"  # the probe fails (3rd)
        assert breaker.state(primary) == "open" and sim.request_count(down) == 3
        left = breaker.retry_after_s(primary)
        assert 1.0 < left <= 2.0  # a failed probe doubles the cooldown (the first was 1 s)
        time.sleep(max(0.0, left - 0.7))  # 1.3 s after the failed probe
        assert breaker.state(primary) == "open"  # the first cooldown would have passed
        time.sleep(breaker.retry_after_s(primary) + 0.05)
        assert orc.complete("ping", model=primary).model == primary  # probe succeeds
        assert breaker.state(primary) == "closed"


def test_breaker_cooldown_grows_while_probes_fail_and_resets_on_success():
    clock = [1000.0]
    breaker = mmo.CircuitBreaker(threshold=1, cooldown_s=1.0, max_cooldown_s=5.0, backoff=2.0)
    cooldowns = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "monotonic", lambda: clock[0])
        breaker.record_failure("m")
        for _ in range(5):
            cooldowns.append(breaker.retry_after_s("m"))
            assert not breaker.allow("m")
            clock[0] += cooldowns[-1]
            assert breaker.allow("m")  # the one probe
            assert not breaker.allow("m")  # and only one
            breaker.record_failure("m")
        assert cooldowns == [1.0, 2.0, 4.0, 5.0, 5.0]  # doubled, capped
        clock[0] += 5.0
        assert breaker.allow("m")
        breaker.record_success("m")
        assert breaker.state("m") == "closed"
        breaker.record_failure("m")
        assert breaker.retry_after_s("m") == 1.0  # success reset the growth


@pytest.mark.parametrize(
    "settings",
    [{"threshold": 0}, {"cooldown_s": float("nan")}, {"cooldown_s": -1}, {"backoff": 0.5},
     {"cooldown_s": 10, "max_cooldown_s": 5}, {"threshold": 2.5}],
)  # fmt: skip
def test_breaker_settings_are_checked(settings):
    with pytest.raises(mmo.ConfigError):
        mmo.CircuitBreaker(**settings)


def test_an_open_circuit_says_when_to_retry(sim, keys):
    breaker = mmo.CircuitBreaker(threshold=1, cooldown_s=1.5)
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False, breaker=breaker) as orc:
        down = model(orc, "sim-fast?fail=503", max_retries=0)
        with pytest.raises(mmo.ProviderError):
            orc.complete("ping", model=down)
        with pytest.raises(mmo.ProviderError) as info:
            orc.complete("ping", model=down)
        assert sim.request_count("sim-fast?fail=503") == 1  # not sent
        assert info.value.code == "circuit_open" and 1.0 < info.value.retry_after_s <= 1.5
        assert f"retry in {info.value.retry_after_s:.1f} s" in str(info.value)
        assert orc.runs.records()[-1].error == str(info.value)  # recorded
        assert orc.complete("ping", model="oa").ok  # other models are unaffected


def test_a_flapping_primary_is_used_again_soon_after_it_recovers(sim, keys):
    """Default breaker: down for 2 s, then back; the primary answers again within ~2 s.

    (The fixed 30 s cooldown this replaces kept a recovered primary out for 25 s.)
    """
    from mmo_magic.sim import Behaviour

    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False) as orc:
        primary = model(orc, "sim-flap", max_retries=0, fallbacks=("an",))
        sim.script("sim-flap", Behaviour(fail="503"))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # down: every answer comes from the fallback
            assert orc.complete("ping", model=primary).model == "an"
            time.sleep(0.05)
        assert orc.breaker.state(primary) != "closed"
        sim.script("sim-flap", Behaviour())  # recovered
        recovered = time.monotonic()
        while orc.complete("ping", model=primary).model != primary:
            assert time.monotonic() - recovered < 2.3, "the recovered primary was kept out"
            time.sleep(0.05)
        assert orc.complete("ping", model=primary).model == primary
        assert orc.breaker.state(primary) == "closed"


def test_cancelled_call_is_not_retried(orc, sim):
    import signal
    import threading

    mid = "sim-fast?fault=hang&hold_s=20"
    name = model(orc, mid, fallbacks=("an",))
    main = threading.main_thread().ident

    def interrupt() -> None:
        while sim.request_count(mid) < 1:
            time.sleep(0.01)
        time.sleep(0.1)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        orc.complete("wait", model=name)
    assert sim.request_count() == 1  # neither retried nor failed over
    assert orc.runs.records()[-1].status == "cancelled"


def test_a_stream_that_breaks_after_text_is_not_restarted(orc, sim):
    """Text already yielded cannot be taken back: no retry or fallback appends a second answer."""
    broken = "sim-echo?fault=cut&cut_after=3"
    primary = model(orc, broken, base="an", max_retries=2, fallbacks=("oa",))
    stream = orc.stream("one two three four five", model=primary)
    seen: list[str] = []
    with pytest.raises(mmo.StreamError):
        for text in stream:
            seen.append(text)
    assert "".join(seen) == "one two three"
    assert sim.request_count(broken) == 1 and sim.request_count("sim-fast") == 0
    assert [r.status for r in orc.runs.records()] == ["error"]
    # The same failure with nothing shown yet still fails over; so does complete().
    r = orc.complete("one two three four five", model=primary)
    assert r.ok and r.model == "oa" and sim.request_count(broken) == 4


def test_a_stream_failing_before_its_first_text_still_fails_over(orc, sim):
    primary = model(orc, "sim-fast?fail=503", max_retries=0, fallbacks=("an",))
    stream = orc.stream("hello", model=primary)
    text = "".join(stream)
    assert stream.response is not None and stream.response.model == "an"
    assert text == stream.response.content


def test_a_watcher_hears_of_each_retry_after_the_failed_attempt(orc, sim):
    """CallContext.on_retry: after the failed attempt's on_finish and before the wait, with
    the model and the wait (what lets a race badge say "retrying" instead of "failed")."""
    from mmo_magic.orchestration.calls import CallContext

    flaky = model(orc, "sim-fast?fail=503&fail_times=2")
    seen: list[tuple] = []
    context = CallContext(
        on_finish=lambda r: seen.append(("finish", r.status)),
        on_retry=lambda name, delay: seen.append(("retry", name, delay)),
    )
    r = orc._loop.run(orc._engine.complete("hi", flaky, {}, context))
    assert r.ok and [event[0] for event in seen] == ["finish", "retry"] * 2 + ["finish"]
    retries = [event for event in seen if event[0] == "retry"]
    assert all(name == flaky and 0 < delay <= 0.2 for _, name, delay in retries)
    assert seen[-1] == ("finish", "ok")
