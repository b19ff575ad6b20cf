"""Back-pressure in a batch (issue 24, defects 2 and 6).

A 429 pauses the model and the item is asked again; an item refused by an open
circuit (nothing was sent) waits for the breaker's probe and runs. Neither ends as
an error row. The requests-per-minute limit holds from a cold start: measured at
the simulated provider, as the requests arrive.
"""

from __future__ import annotations

from collections import Counter

from helpers import arrivals, with_model_id

import mmo_magic as mmo


def statuses(result: mmo.BatchResult) -> Counter[str]:
    return Counter(r["status"] for r in result.rows)


def test_a_model_failing_429_ends_all_ok(orc, sim):
    # Eight 429s with Retry-After 2 s, 12 items at concurrency 8. Before: the breaker
    # opened and three items ended "circuit is open... retry in 0.0 s".
    model = with_model_id(orc, "oa", "sim-fast?fail=429&fail_times=8&retry_after=2")
    items = [{"question": f"q{i}"} for i in range(12)]
    result = orc.batch(items, [model], concurrency=8, progress=False)
    assert statuses(result) == {"ok": 12}, [r["error"] for r in result.rows if r["error"]]


def test_items_refused_by_an_open_circuit_wait_and_run(orc, sim):
    # Eight 503s: five in a row open the breaker (threshold 5), and the items behind it
    # are refused without a request. They wait for the breaker's probe and run: only the
    # eight items whose own requests failed end as errors. Before, every refused item was
    # an error row ("not sent: its circuit is open").
    orc.breaker = mmo.CircuitBreaker(threshold=5, cooldown_s=0.3, max_cooldown_s=0.5)
    model = with_model_id(orc, "oa", "sim-fast?fail=503&fail_times=8")
    items = [{"question": f"q{i}"} for i in range(20)]
    result = orc.batch(items, [model], concurrency=2, progress=False)
    errors = [r["error"] or "" for r in result.rows if r["status"] != "ok"]
    assert not [e for e in errors if "circuit is open" in e], errors
    assert len(errors) == 8 and sim.request_count("sim-fast?fail=503&fail_times=8") == 20


def test_requests_per_minute_holds_from_a_cold_start(orc, sim):
    # 1,200 a minute is one every 50 ms from the very first request: the k-th request
    # arrives no sooner than k x 50 ms after the first (20 ms allowed for the HTTP path's
    # jitter), so no 60 s window starts with a burst. A bucket that starts full sent
    # a minute's worth at once.
    model = with_model_id(orc, "oa", "sim-fast?tokens=2")
    orc.complete("warm up", model)  # the SDK's import and TLS set-up, outside the window
    sim.reset()
    items = [{"question": f"q{i}"} for i in range(30)]
    with arrivals(sim, "sim-fast?tokens=2") as times:
        orc.batch(items, [model], progress=False, limits={model: {"requests_per_minute": 1200}})
    assert len(times) == 30
    early = [
        (k, round(t - times[0], 3)) for k, t in enumerate(times) if t - times[0] < k * 0.05 - 0.02
    ]
    assert not early, early
