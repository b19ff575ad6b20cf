"""Readmission after an outage: how long a recovered model is still refused by its breaker.

    python benchmarks/outage.py [--outages 10,30,70] [--probe-interval 5] [--old]

A model on the simulated provider answers, then fails every request with 503
for the outage's length, then answers again. Client threads keep calling it
the whole time (``--workers`` of them, ``--gap`` seconds between calls), as a
notebook's retry loop or a gateway's clients would. The circuit breaker opens
during the outage and probes the model while it stays open; the figure is
the seconds from the upstream's return to the first answer a caller gets
(the refusal after recovery), with the requests refused meanwhile.

The breaker's probe interval is ``max_cooldown_s`` (``--probe-interval``,
default 5 s, the library's default). ``--old`` also runs the old default
(cooldown doubling to 60 s) for comparison: after a 70 s outage it refused
requests for up to a minute after the model came back.

Target (issue 27): at most 5 s of refusal after the upstream returns, for
every outage length.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass

from _common import Check, print_checks, print_table, save

import mmo_magic as mmo
from mmo_magic.sim import SimServer
from mmo_magic.sim.behaviour import Behaviour

KEY_ENV = "MMO_BENCH_SIM_KEY"
os.environ.setdefault(KEY_ENV, "sim-benchmark-key")
BASE = "sim-outage"


@dataclass
class Outcome:
    at: float  # monotonic time the call ended
    kind: str  # "ok", "refused" (circuit open: not sent), "failed" (sent, failed)


def one_outage(
    sim: SimServer, outage_s: float, breaker: mmo.CircuitBreaker, workers: int, gap_s: float,
    healthy_s: float, after_s: float,
) -> dict[str, float]:  # fmt: skip
    """Run healthy, down for ``outage_s``, then up; return what callers saw after the return."""
    sim.script(BASE, Behaviour())
    config = mmo.ModelConfig("openai", BASE, name="up", base_url=sim.openai_base_url,
                             api_key_env=KEY_ENV, max_retries=0, timeout_s=10)  # fmt: skip
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()
    with mmo.Orchestrator([config], runlog=":memory:", cache=False, breaker=breaker) as orc:

        def caller() -> None:
            while not stop.is_set():
                try:
                    orc.complete("ping", model="up")
                    kind = "ok"
                except mmo.ProviderError as exc:
                    kind = "refused" if exc.code == "circuit_open" else "failed"
                with lock:
                    outcomes.append(Outcome(time.monotonic(), kind))
                stop.wait(gap_s)

        threads = [threading.Thread(target=caller, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        time.sleep(healthy_s)
        sim.script(BASE, Behaviour(fail="503"))
        down_at = time.monotonic()
        time.sleep(outage_s)
        sim.script(BASE, Behaviour())
        up_at = time.monotonic()
        while time.monotonic() - up_at < after_s:
            time.sleep(0.05)
            with lock:
                if any(o.kind == "ok" and o.at > up_at for o in outcomes):
                    break
        time.sleep(0.5)  # a little more, to see the model stays readmitted
        stop.set()
        for t in threads:
            t.join(15)
    after = [o for o in outcomes if o.at > up_at]
    first_ok = next((o.at for o in sorted(after, key=lambda o: o.at) if o.kind == "ok"), None)
    during = [o for o in outcomes if down_at < o.at <= up_at]
    return {
        "outage_s": outage_s,
        "refusal_after_return_s": (first_ok - up_at) if first_ok else float("inf"),
        "refused_after_return": sum(
            o.kind == "refused" for o in after if first_ok is None or o.at <= first_ok
        ),
        "refused_during": sum(o.kind == "refused" for o in during),
        "sent_during": sum(o.kind == "failed" for o in during),  # the probes (and the first few)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outages", default="10,30,70", help="outage lengths in seconds")
    parser.add_argument("--probe-interval", type=float, default=5.0, help="max_cooldown_s")
    parser.add_argument("--cooldown", type=float, default=1.0, help="the first cooldown_s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between a caller's calls")
    parser.add_argument("--old", action="store_true", help="also run the old 60 s cap")
    parser.add_argument("--name", default="outage", help="results file name")
    args = parser.parse_args()
    outages = [float(x) for x in args.outages.split(",")]
    settings = [("now", args.probe_interval)] + ([("old default", 60.0)] if args.old else [])

    sim = SimServer()
    sim.start()
    rows = []
    try:
        for label, cap in settings:
            for outage in outages:
                breaker = mmo.CircuitBreaker(cooldown_s=args.cooldown, max_cooldown_s=cap)
                row = one_outage(sim, outage, breaker, args.workers, args.gap, healthy_s=1.0,
                                 after_s=cap + 5)  # fmt: skip
                rows.append({"breaker": label, "probe_interval_s": cap, **row})
                print(f"{label}: outage {outage:g} s -> refused {row['refusal_after_return_s']:.2f}"
                      " s after the return", flush=True)  # fmt: skip
    finally:
        sim.stop()

    print_table(
        "Refusal after the upstream returns (simulated provider, 503 during the outage)",
        ("breaker", "probe interval s", "outage s", "refused after return s",
         "requests refused after return", "refused during", "sent during"),
        [(r["breaker"], r["probe_interval_s"], r["outage_s"], r["refusal_after_return_s"],
          r["refused_after_return"], r["refused_during"], r["sent_during"]) for r in rows],
    )  # fmt: skip
    now = [r for r in rows if r["breaker"] == "now"]
    worst = max(r["refusal_after_return_s"] for r in now)
    checks = [
        Check(
            "refusal after the upstream returns, worst outage",
            worst,
            "s",
            f"<= {args.probe_interval:g} s",
            worst <= args.probe_interval + 0.25,
            f"outages {args.outages} s; the probe interval plus one call's time",
        )
    ]
    print_checks(checks)
    save(args.name, vars(args), rows, checks)


if __name__ == "__main__":
    main()
