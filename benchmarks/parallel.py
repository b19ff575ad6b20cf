"""Fan-out and races: what running models side by side costs over the models themselves.

    python benchmarks/parallel.py [--rounds 10]

Fan-out: ``Orchestrator.all`` over 8 simulated models whose answers take
100, 200, ... 800 ms (``latency_ms``, then 20 tokens at once). Each round
also times the slowest model alone; the figure is the median over rounds of
all()'s wall time over that model's time alone. 1.00 would be perfect overlap.

Race: ``Orchestrator.race`` over 4 models streaming 20 tokens at 50 tokens/s
after a first token at 50, 150, 300 or 500 ms, so every loser is mid-stream
when the winner finishes. Time to winner is from the call to the winner's
record finishing; minus the fastest model's time alone (same round), it is
what racing adds. Win to disconnect is from the winner's finish to the
moment the simulated provider saw each loser's connection close.

The simulated provider runs in a process of its own (its disconnect records
read over HTTP), so serving the losers' streams does not take the GIL from
the orchestrator being measured.
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
from _common import Check, median, percentile, print_checks, print_table, save, sim_process

import mmo_magic as mmo

KEY_ENV = "MMO_BENCH_SIM_KEY"
os.environ.setdefault(KEY_ENV, "sim-benchmark-key")
PROMPT = "Compare these options briefly."


def models(base_url: str, ids: dict[str, str]) -> list[mmo.ModelConfig]:
    return [
        mmo.ModelConfig(
            "openai", model_id, name=name, base_url=base_url, api_key_env=KEY_ENV, max_retries=0
        )
        for name, model_id in ids.items()
    ]


def fan_out(base_url: str, rounds: int) -> tuple[list[dict[str, float]], float]:
    ids = {f"m{ms}": f"sim-fast?latency_ms={ms}&tokens=20" for ms in range(100, 900, 100)}
    slowest = list(ids)[-1]
    with mmo.Orchestrator(models(base_url, ids), runlog=":memory:", cache=False) as orc:
        orc.all(PROMPT, models=list(ids))  # warm-up: clients built, connections open
        rows = []
        for _ in range(rounds):
            start = time.perf_counter()
            results = orc.all(PROMPT, models=list(ids))
            wall = time.perf_counter() - start
            assert all(r.ok for r in results), [r.error for r in results]
            start = time.perf_counter()
            orc.complete(PROMPT, model=slowest)
            alone = time.perf_counter() - start
            rows.append({"all_s": wall, "slowest_alone_s": alone, "ratio": wall / alone})
    return rows, median([r["ratio"] for r in rows])


def race(base_url: str, rounds: int) -> tuple[list[dict[str, float]], list[float]]:
    ids = {f"r{ms}": f"sim-fast?ttft_ms={ms}&tokens=20&tps=50" for ms in (50, 150, 300, 500)}
    fastest = next(iter(ids))
    rows, disconnect_ms = [], []
    with mmo.Orchestrator(models(base_url, ids), runlog=":memory:", cache=False) as orc:
        orc.race(PROMPT, models=list(ids))  # warm-up
        for _ in range(rounds):
            time.sleep(0.6)  # the previous round's losers are all gone
            started = time.time()
            result = orc.race(PROMPT, models=list(ids))
            returned = time.time() - started
            assert result.winner is not None and result.winner.model == fastest
            won_at = next(
                r
                for r in orc.runs.records(group_id=result.group_id)
                if r.run_id == result.winner.run_id
            ).finished_at
            assert won_at is not None
            time.sleep(0.3)  # let the provider notice every close
            seen = httpx.get(base_url.removesuffix("/v1") + "/sim/disconnects").json()
            losers = [d for d in seen if d["at"] > started]
            assert len(losers) == len(ids) - 1, losers
            gaps = [(d["at"] - won_at.timestamp()) * 1000 for d in losers]
            disconnect_ms.extend(gaps)
            start = time.perf_counter()
            orc.complete(PROMPT, model=fastest)
            alone = time.perf_counter() - start
            to_winner = won_at.timestamp() - started
            rows.append(
                {
                    "time_to_winner_ms": to_winner * 1000,
                    "race_returned_ms": returned * 1000,
                    "fastest_alone_ms": alone * 1000,
                    "added_ms": (to_winner - alone) * 1000,
                    "slowest_disconnect_ms": max(gaps),
                }
            )
    return rows, disconnect_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    with sim_process() as base_url:
        fan_rows, fan_ratio = fan_out(base_url, args.rounds)
        race_rows, gaps = race(base_url, args.rounds)

    print_table(
        f"Fan-out: all() over 8 models, 100-800 ms each, {args.rounds} rounds",
        ("round", "all() s", "slowest alone s", "ratio"),
        [(i + 1, r["all_s"], r["slowest_alone_s"], r["ratio"]) for i, r in enumerate(fan_rows)],
    )
    print_table(
        f"Race: 4 models, first token at 50/150/300/500 ms, {args.rounds} rounds",
        (
            "round",
            "to winner ms",
            "race() returned ms",
            "fastest alone ms",
            "added ms",
            "last loser gone ms",
        ),
        [(i + 1, *r.values()) for i, r in enumerate(race_rows)],
    )
    added = median([r["added_ms"] for r in race_rows])
    checks = [
        Check("fan-out: all() / slowest model alone", fan_ratio, "", "<= 1.10", fan_ratio <= 1.10),
        Check("race: time to winner - fastest alone, median", added, "ms", "<= 5 ms", added <= 5),
        Check(
            "race: win -> loser disconnect, median",
            median(gaps),
            "ms",
            "<= 50 ms",
            median(gaps) <= 50,
            f"max {max(gaps):.1f} ms, p90 {percentile(gaps, 90):.1f} ms over {len(gaps)} losers",
        ),
    ]
    print_checks(checks)
    save(
        "parallel",
        vars(args),
        [{"fan_out": fan_rows}, {"race": race_rows, "disconnect_ms": gaps}],
        checks,
    )


if __name__ == "__main__":
    main()
