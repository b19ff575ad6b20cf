"""Batch evaluation at scale: throughput against raw asyncio.gather, memory, kill and resume, rates.

    python benchmarks/batch.py [--items 10000] [--concurrency 100] [--tokens 20] [--quick]
                               [--ray-items 3000] [--with-embedded] [--no-ray]

The simulated provider runs in its own process at zero latency; three
models (``bench-a``, ``bench-b``, ``bench-c``: the sim's defaults, ``--tokens``
words streamed) each answer every item. Each measured run is a fresh
process, so its peak RSS is its own:

- **raw**: a hand-written ``asyncio.gather`` over ``AsyncOpenAI`` streaming
  every (item, model), ``--concurrency`` in flight (a semaphore);
- **batch**: ``run_batch`` with the same concurrency (and
  ``max_concurrency_per_provider`` raised to it), the run log on disk.

Then **kill and resume**: a batch process is killed (SIGKILL) once about
half its answers are in the run log, and the same batch is run again: every
(item, model) must end answered ok exactly once in the log, and the second
run must send only what the log did not hold. And **rate**: one model with
``requests_per_minute`` set, the rate measured from the run records' start
times.

Then **Ray** (when Ray is installed; ``--no-ray`` skips it), in one process
that starts a local Ray with every core of the machine: the same batch
(``--ray-items`` items × the three models) on the local engine, on Ray with 1
and with 2 workers, and on 2 workers under an orchestrator budget (every
call then reserves its worst case with the shared limiter first). Each row
gives the wall time (Ray's includes starting its workers) and the calls per
second from the first call sent to the last answer (from the run records).
The shared limiter's overhead is measured directly too: the round trip of one
``acquire`` (every call to a model with limits makes one) and one budget
``authorize`` (every call under a budget).
``--with-embedded`` adds the embedded model (SmolLM2 on llama.cpp, one
instance per worker): items per second on the local engine and on 1 and 2
Ray workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Check, print_checks, print_table, save, sim_process

KEY_ENV = "MMO_BENCH_SIM_KEY"
os.environ.setdefault(KEY_ENV, "sim-benchmark-key")
MODELS = ("bench-a", "bench-b", "bench-c")


def model_id(name: str, tokens: int) -> str:
    return f"{name}?tokens={tokens}"


def rss_mb(field: str) -> float:
    """This process's resident set (VmRSS) or its peak (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "question": f"Question number {i}: say something."} for i in range(n)]


# -- workers (each in a fresh process) -------------------------------------------------------------


async def raw_gather(base_url: str, args: argparse.Namespace) -> tuple[int, float]:
    """Every (item, model) through AsyncOpenAI, ``--concurrency`` at once: (answers, seconds)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], max_retries=0)
    gate = asyncio.Semaphore(args.concurrency)
    answers: list[str] = []

    async def one(question: str, model: str) -> None:
        async with gate:
            stream = await client.chat.completions.create(
                model=model_id(model, args.tokens),
                messages=[{"role": "user", "content": question}],
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            answers.append("".join(parts))

    work = [(item["question"], m) for item in items(args.items) for m in MODELS]
    started = time.perf_counter()
    await asyncio.gather(*(one(q, m) for q, m in work))
    elapsed = time.perf_counter() - started
    await client.close()
    return sum(1 for a in answers if a), elapsed


def orchestrator(base_url: str, args: argparse.Namespace, runlog: str) -> Any:
    import mmo_magic as mmo

    configs = [
        mmo.ModelConfig("openai", model_id(m, args.tokens), name=m, base_url=base_url,
                        api_key_env=KEY_ENV, cost_per_1k_input=0.0005, cost_per_1k_output=0.0015)
        for m in MODELS
    ]  # fmt: skip
    return mmo.Orchestrator(
        configs, runlog=runlog, cache=False, max_concurrency_per_provider=args.concurrency
    )


def worker(which: str, base_url: str, args: argparse.Namespace) -> None:
    """One measured run in this process; prints one JSON line."""
    before = rss_mb("VmRSS")
    out: dict[str, Any] = {}
    if which == "raw":
        out["ok"], elapsed = asyncio.run(raw_gather(base_url, args))
    else:
        from mmo_magic.evaluation import run_batch

        orc = orchestrator(base_url, args, args.runlog)
        limits = None
        models = list(MODELS)
        data = items(args.items)
        if which == "rate":
            models = models[:1]
            limits = {models[0]: {"requests_per_minute": args.rpm}}
            # The client's first use (the SDK's import and set-up) would delay the first
            # request and let the next ones catch up: measure the gate, not the set-up.
            orc.complete("warm up", models[0])
        started = time.perf_counter()
        result = run_batch(
            orc, data, models, key="id", concurrency=args.concurrency, limits=limits,
            progress=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        out["ok"] = sum(r["status"] == "ok" for r in result.rows)
        out["sent"] = sum(not r["resumed"] for r in result.rows)
        out["resumed"] = sum(bool(r["resumed"]) for r in result.rows)
        out["group_id"] = result.group_id
        orc.close()
    out.update(
        seconds=elapsed, peak_rss_mb=rss_mb("VmHWM"), start_rss_mb=before,
        rate=args.items * (1 if which == "rate" else len(MODELS)) / elapsed,
    )  # fmt: skip
    print(json.dumps(out))


def run_worker(which: str, base_url: str, args: argparse.Namespace, runlog: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", which, "--base-url", base_url, "--runlog", runlog,
         "--items", str(args.items), "--concurrency", str(args.concurrency),
         "--tokens", str(args.tokens), "--rpm", str(args.rpm)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"worker {which} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- reading the run log ----------------------------------------------------------------------


def log_counts(runlog: str) -> dict[str, int]:
    """Records, ok records and distinct ok (step, model) pairs of the batch answers in the log."""
    with sqlite3.connect(runlog) as conn:
        total, ok, distinct = conn.execute(
            "SELECT COUNT(*), SUM(status = 'ok'), COUNT(DISTINCT CASE WHEN status = 'ok' "
            "THEN step || '|' || requested_model END) FROM runs WHERE kind = 'batch'"
        ).fetchone()
    return {"records": total or 0, "ok": ok or 0, "distinct_ok": distinct or 0}


def start_rates(runlog: str) -> float:
    with sqlite3.connect(runlog) as conn:
        stamps = sorted(
            time.mktime(time.strptime(row[0][:19], "%Y-%m-%dT%H:%M:%S"))
            + float("0" + row[0][19:26])
            for row in conn.execute("SELECT started_at FROM runs WHERE kind = 'batch'")
        )
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 else float("nan")


def kill_and_resume(base_url: str, args: argparse.Namespace, runlog: str) -> dict[str, Any]:
    """Kill a batch process half-way (SIGKILL), then run the same batch again."""
    total = args.items * len(MODELS)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", "batch", "--base-url", base_url, "--runlog", runlog,
         "--items", str(args.items), "--concurrency", str(args.concurrency),
         "--tokens", str(args.tokens)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            if log_counts(runlog)["ok"] >= total // 2:
                break
        except sqlite3.Error:
            continue  # not created yet, or busy
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = log_counts(runlog)
    after_run = run_worker("batch", base_url, args, runlog)
    after = log_counts(runlog)
    return {
        "ok_before": before["ok"], "records_before": before["records"],
        "sent_on_resume": after_run["sent"], "resumed": after_run["resumed"],
        "ok_after": after["ok"], "distinct_ok_after": after["distinct_ok"], "total": total,
    }  # fmt: skip


# -- Ray ------------------------------------------------------------------------------------------


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def limiter_round_trips(rounds: int) -> dict[str, float]:
    """Microseconds per sequential call to the shared limiter: acquire, and a budget reserve."""
    import ray

    import mmo_magic as mmo
    from mmo_magic.evaluation.limits import RateLimit
    from mmo_magic.evaluation.ray.limiter import ClusterLimiter

    limiter = ray.remote(ClusterLimiter).options(num_cpus=0).remote({"m": RateLimit()}, 1e9)
    config = mmo.ModelConfig("openai", "m", cost_per_1k_input=0.001, cost_per_1k_output=0.001)
    ray.get(limiter.spent.remote())  # started
    out = {}
    for name, call in (
        ("acquire_us", lambda: limiter.acquire.remote("w", "m", None)),
        ("authorize_us", lambda: limiter.authorize.remote("w", config, 0.001, None, False)),
    ):
        for _ in range(20):
            ray.get(call())
        started = time.perf_counter()
        for _ in range(rounds):
            ray.get(call())
        out[name] = (time.perf_counter() - started) / rounds * 1e6
    ray.kill(limiter)
    return out


def timed_batch(orc: Any, data: list[dict[str, Any]], models: list[str], **options: Any) -> dict:
    """Wall seconds, and calls per second from the first send to the last answer."""
    from mmo_magic.evaluation import run_batch

    started = time.perf_counter()
    result = run_batch(orc, data, models, key="id", progress=False, **options)
    wall = time.perf_counter() - started
    records = [r for r in orc.runs.records(group_id=result.group_id) if r.kind == "batch"]
    first = min(r.started_at for r in records)
    last = max(r.finished_at or r.started_at for r in records)
    busy = (last - first).total_seconds()
    ok = sum(r["status"] == "ok" for r in result.rows)
    return {"calls": len(result.rows), "ok": ok, "wall_s": wall, "rate": len(result.rows) / busy,
            "wall_rate": len(result.rows) / wall}  # fmt: skip


def ray_worker(base_url: str, args: argparse.Namespace) -> None:
    """Local engine against Ray with 1 and 2 workers, in this process; prints one JSON line."""
    import ray

    import mmo_magic as mmo

    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, object_store_memory=256 * 1024**2,
             logging_level="WARNING")  # fmt: skip
    out: dict[str, Any] = {"cores": cores, "limiter": limiter_round_trips(args.limiter_rounds)}
    data = items(args.ray_items)
    rows = []
    runs: list[tuple[str, dict[str, Any], float | None]] = [
        ("local engine", {}, None),
        ("Ray, 1 worker", {"engine": "ray", "workers": 1}, None),
        ("Ray, 2 workers", {"engine": "ray", "workers": 2}, None),
    ]
    if not args.quick:
        runs.append(("Ray, 2 workers, shared budget", {"engine": "ray", "workers": 2}, 1e6))
    for label, options, budget in runs:
        with orchestrator(base_url, args, ":memory:") as orc:
            if budget is not None:
                orc.budget.limit = budget
            if not options:
                orc.complete("warm up", MODELS[0])  # the SDK import, as the workers do first
            row = timed_batch(orc, data, list(MODELS), concurrency=args.concurrency, **options)
        rows.append({"model": "simulated", "engine": label, **row})
    if args.with_embedded:
        prompts = [{"id": i, "question": f"In one sentence: what is {i} plus {i}?"}
                   for i in range(args.embedded_items)]  # fmt: skip
        for label, options in (
            ("local engine", {}),
            ("Ray, 1 worker", {"engine": "ray", "workers": 1}),
            ("Ray, 2 workers", {"engine": "ray", "workers": 2}),
        ):
            with mmo.Orchestrator(runlog=":memory:", cache=False) as orc:
                if not options:
                    orc.complete("warm up", "smollm2", max_tokens=2)  # loads the model
                row = timed_batch(orc, prompts, ["smollm2"], max_tokens=args.embedded_tokens,
                                  temperature=0, **options)  # fmt: skip
            rows.append({"model": "embedded (smollm2)", "engine": label, **row})
    out["rows"] = rows
    ray.shutdown()
    print(json.dumps(out))


def run_ray(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", "ray", "--base-url", base_url,
               "--ray-items", str(args.ray_items), "--concurrency", str(args.concurrency),
               "--tokens", str(args.tokens), "--embedded-items", str(args.embedded_items),
               "--embedded-tokens", str(args.embedded_tokens),
               "--limiter-rounds", str(args.limiter_rounds)]  # fmt: skip
    command += ["--quick"] if args.quick else []
    command += ["--with-embedded"] if args.with_embedded else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the Ray benchmark failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ray_report(ray_run: dict[str, Any]) -> list[Check]:
    rows = ray_run["rows"]
    print_table(
        f"Ray: local engine against Ray workers on {ray_run['cores']} cores "
        "(wall time includes starting the workers; calls/s from first send to last answer)",
        ("model", "engine", "calls", "ok", "wall s", "calls/s", "calls/s incl. start"),
        [(r["model"], r["engine"], r["calls"], r["ok"], r["wall_s"], r["rate"], r["wall_rate"])
         for r in rows],
    )  # fmt: skip
    limiter = ray_run["limiter"]
    print_table(
        "Shared limiter (one Ray actor): a round trip per call",
        ("call", "µs per call"),
        [("acquire (every call to a model with limits)", limiter["acquire_us"]),
         ("authorize (every call under a budget)", limiter["authorize_us"])],
    )  # fmt: skip

    def rate(model: str, engine: str) -> float:
        return next(r["rate"] for r in rows if r["model"] == model and r["engine"] == engine)

    checks = [
        Check("Ray batch: every call answered", sum(r["ok"] for r in rows), "",
              f"= {sum(r['calls'] for r in rows):,}",
              all(r["ok"] == r["calls"] for r in rows)),
        Check("Ray 2 workers / 1 worker (simulated provider)",
              rate("simulated", "Ray, 2 workers") / rate("simulated", "Ray, 1 worker"), "x", "",
              None, "calls/s from first send to last answer"),
        Check("Ray 2 workers / local engine (simulated provider)",
              rate("simulated", "Ray, 2 workers") / rate("simulated", "local engine"), "x", "",
              None),
        Check("shared limiter round trip (acquire)", limiter["acquire_us"], "µs", "", None,
              "per call to a model with limits; awaited, not blocking"),
    ]  # fmt: skip
    if any(r["model"].startswith("embedded") for r in rows):
        embedded = "embedded (smollm2)"
        checks.append(Check(
            "embedded model: Ray 2 workers / 1 worker",
            rate(embedded, "Ray, 2 workers") / rate(embedded, "Ray, 1 worker"),
            "x", "", None, "items/s, one llama.cpp instance per worker",
        ))  # fmt: skip
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rpm", type=float, default=600.0, help="the rate-limit check's limit")
    parser.add_argument("--rate-items", type=int, default=101)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--ray-items", type=int, default=3000)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    parser.add_argument("--with-embedded", action="store_true",
                        help="Ray rows for the embedded model too (slow)")  # fmt: skip
    parser.add_argument("--embedded-items", type=int, default=24)
    parser.add_argument("--embedded-tokens", type=int, default=16)
    parser.add_argument("--limiter-rounds", type=int, default=500)
    parser.add_argument("--worker", choices=["raw", "batch", "rate", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--runlog", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ray":
        ray_worker(args.base_url, args)
        return
    if args.worker:
        worker(args.worker, args.base_url, args)
        return
    if args.quick:
        args.items, args.concurrency, args.rpm, args.rate_items = 300, 50, 1200.0, 41
        args.ray_items, args.embedded_items, args.limiter_rounds = 60, 6, 50

    with sim_process() as base_url, tempfile.TemporaryDirectory() as tmp:
        raw = run_worker("raw", base_url, args, f"{tmp}/unused.sqlite3")
        batch = run_worker("batch", base_url, args, f"{tmp}/batch.sqlite3")
        logged = log_counts(f"{tmp}/batch.sqlite3")
        resume = kill_and_resume(base_url, args, f"{tmp}/kill.sqlite3")
        rate_args = argparse.Namespace(**{**vars(args), "items": args.rate_items})
        rate_run = run_worker("rate", base_url, rate_args, f"{tmp}/rate.sqlite3")
        measured_rpm = start_rates(f"{tmp}/rate.sqlite3")
        ray_run = run_ray(base_url, args) if ray_available() and not args.no_ray else None

    calls = args.items * len(MODELS)
    ratio = batch["rate"] / raw["rate"]
    growth = batch["peak_rss_mb"] - batch["start_rss_mb"]
    rows = [
        {"client": "raw asyncio.gather (AsyncOpenAI)", "calls_per_s": raw["rate"],
         "seconds": raw["seconds"], "peak_rss_mb": raw["peak_rss_mb"],
         "rss_growth_mb": raw["peak_rss_mb"] - raw["start_rss_mb"], "records": "-"},
        {"client": "run_batch", "calls_per_s": batch["rate"], "seconds": batch["seconds"],
         "peak_rss_mb": batch["peak_rss_mb"], "rss_growth_mb": growth,
         "records": logged["records"]},
    ]  # fmt: skip
    print_table(
        f"Throughput: {args.items:,} items × {len(MODELS)} models = {calls:,} calls, "
        f"{args.concurrency} in flight, simulated provider at zero latency",
        ("client", "calls/s", "seconds", "peak RSS MB", "RSS growth MB", "run records"),
        [tuple(r.values()) for r in rows],
    )
    print_table(
        "Kill and resume (SIGKILL once half the answers are in the log)",
        ("ok before kill", "sent on resume", "taken from log", "ok after", "distinct ok", "pairs"),
        [
            tuple(
                resume[k]
                for k in (
                    "ok_before",
                    "sent_on_resume",
                    "resumed",
                    "ok_after",
                    "distinct_ok_after",
                    "total",
                )
            )
        ],
    )
    rate_error = abs(measured_rpm - args.rpm) / args.rpm
    print_table(
        f"Rate limit: {args.rate_items} calls to one model",
        ("requests_per_minute", "measured per minute", "error"),
        [(args.rpm, measured_rpm, f"{rate_error:.1%}")],
    )
    exactly_once = (
        resume["ok_after"] == resume["distinct_ok_after"] == resume["total"]
        and resume["sent_on_resume"] == resume["total"] - resume["ok_before"]
    )
    checks = [
        Check("batch throughput / raw asyncio.gather", ratio, "x", ">= 0.8x", ratio >= 0.8,
              f"{batch['rate']:,.0f} vs {raw['rate']:,.0f} calls/s"),
        Check("batch peak memory growth", growth, "MB", "< 200 MB", growth < 200),
        Check("run records of the batch", logged["records"], "", f"= {calls:,}",
              logged["records"] == calls == batch["ok"]),
        Check("pairs ok exactly once after kill and resume", resume["distinct_ok_after"], "",
              f"= {resume['total']:,}", exactly_once,
              f"{resume['ok_before']:,} ok before the kill, "
              f"{resume['sent_on_resume']:,} sent after"),
        Check("rate-limit error (requests_per_minute)", rate_error * 100, "%", "<= 5%",
              rate_error <= 0.05, f"limit {args.rpm:g}/min, measured {measured_rpm:,.1f}/min"),
    ]  # fmt: skip
    if ray_run is not None:
        checks += ray_report(ray_run)
    print_checks(checks)
    params = {k: v for k, v in vars(args).items() if k not in ("worker", "base_url", "runlog")}
    extra = [resume, {"rate_run": rate_run, "measured_rpm": measured_rpm}]
    if ray_run is not None:
        extra.append({"ray": ray_run})
    save("batch", params, [*rows, *extra], checks)


if __name__ == "__main__":
    main()
