"""Batch evaluation at scale: throughput against raw asyncio.gather, memory, kill and resume, rates.

    python benchmarks/batch.py [--items 10000] [--concurrency 100] [--tokens 20] [--quick]
                               [--ray-items 3000] [--with-embedded] [--no-ray] [--repeats 3]

Every measured row is run ``--repeats`` times (default 3), each run in a fresh
process, interleaved; tables give the median with the lowest and highest run.

The simulated provider runs in its own process at zero latency; three
models (``bench-a``, ``bench-b``, ``bench-c``: the sim's defaults, ``--tokens``
words streamed) each answer every item. Each measured run is a fresh
process, so its peak RSS is its own:

- **raw**: a hand-written ``asyncio.gather`` over ``AsyncOpenAI`` streaming
  every (item, model), ``--concurrency`` in flight (a semaphore);
- **raw non-streaming**: the same with plain JSON answers (the wire's cheapest
  form; a batch streams every call, to time its first token);
- **batch**: ``run_batch`` with the same concurrency (and
  ``max_concurrency_per_provider`` raised to it), the run log on disk.

Then **kill and resume**: a batch process is killed (SIGKILL) once about
half its answers are in the run log, and the same batch is run again: every
(item, model) must end answered ok exactly once in the log, and the second
run must send only what the log did not hold. And **rate**: one model with
``requests_per_minute`` set, the rate measured from the run records' start
times.

Then **Ray** (when Ray is installed; ``--no-ray`` skips it), each run in a
fresh process that starts a local Ray with every core of the machine: the
same batch (``--ray-items`` items × the three models) on the local engine, on
Ray with 1 and with 2 workers, and on 2 workers under an orchestrator budget
(every call then reserves its worst case with the shared limiter first). Each
row gives the wall time, counted from before ``ray.init`` (Ray's start-up and
its workers' are what a user waits for), and the calls per second from the
first call sent to the last answer (from the run records).
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


async def raw_gather(
    base_url: str, args: argparse.Namespace, stream: bool = True
) -> tuple[int, float]:
    """Every (item, model) through AsyncOpenAI, ``--concurrency`` at once: (answers, seconds).

    ``stream=False``: plain JSON answers, the wire's cheapest form (a batch streams, as
    every call does, to time the first token)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], max_retries=0)
    gate = asyncio.Semaphore(args.concurrency)
    answers: list[str] = []

    async def one(question: str, model: str) -> None:
        async with gate:
            messages: Any = [{"role": "user", "content": question}]
            if not stream:
                reply = await client.chat.completions.create(
                    model=model_id(model, args.tokens), messages=messages
                )
                answers.append(reply.choices[0].message.content or "")
                return
            chunks = await client.chat.completions.create(
                model=model_id(model, args.tokens),
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = [c.choices[0].delta.content or "" async for c in chunks if c.choices]
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
    if which in ("raw", "raw-json"):
        out["ok"], elapsed = asyncio.run(raw_gather(base_url, args, stream=which == "raw"))
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


def ray_configs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any], float | None]]:
    """(model, engine, batch options, orchestrator budget) of each Ray comparison row."""
    configs: list[tuple[str, str, dict[str, Any], float | None]] = [
        ("simulated", "local engine", {}, None),
        ("simulated", "Ray, 1 worker", {"engine": "ray", "workers": 1}, None),
        ("simulated", "Ray, 2 workers", {"engine": "ray", "workers": 2}, None),
    ]
    if not args.quick:
        configs.append(
            ("simulated", "Ray, 2 workers, shared budget", {"engine": "ray", "workers": 2}, 1e6)
        )
    if args.with_embedded:
        for engine, options in (
            ("local engine", {}),
            ("Ray, 1 worker", {"engine": "ray", "workers": 1}),
            ("Ray, 2 workers", {"engine": "ray", "workers": 2}),
        ):
            configs.append(("embedded (smollm2)", engine, options, None))
    return configs


def ray_worker(base_url: str, args: argparse.Namespace) -> None:
    """One row of the Ray comparison in this fresh process; prints one JSON line.

    The wall time starts before anything is set up: for Ray rows it includes
    ``ray.init`` (a local Ray with every core) and starting the workers, as a user
    waits for them; for the local engine, the orchestrator and the SDK's first use.
    """
    import mmo_magic as mmo

    model, engine, options, budget = ray_configs(args)[args.ray_run]
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    if options:
        import ray

        ray.init(num_cpus=cores, include_dashboard=False, object_store_memory=256 * 1024**2,
                 logging_level="WARNING")  # fmt: skip
    if model == "simulated":
        orc = orchestrator(base_url, args, ":memory:")
        data, models = items(args.ray_items), list(MODELS)
        extra: dict[str, Any] = {"concurrency": args.concurrency}
    else:
        orc = mmo.Orchestrator(runlog=":memory:", cache=False)
        data = [{"id": i, "question": f"In one sentence: what is {i} plus {i}?"}
                for i in range(args.embedded_items)]  # fmt: skip
        models = ["smollm2"]
        extra = {"max_tokens": args.embedded_tokens, "temperature": 0}
    with orc:
        if budget is not None:
            orc.budget.limit = budget
        row = timed_batch(orc, data, models, **extra, **options)
    wall = time.perf_counter() - started
    if options:
        ray.shutdown()
    print(json.dumps({"model": model, "engine": engine, "cores": cores, **row,
                      "wall_s": wall, "wall_rate": row["calls"] / wall}))  # fmt: skip


def limiter_worker(args: argparse.Namespace) -> None:
    import ray

    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
             object_store_memory=256 * 1024**2, logging_level="WARNING")  # fmt: skip
    print(json.dumps(limiter_round_trips(args.limiter_rounds)))
    ray.shutdown()


def _subprocess_json(command: list[str], what: str) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_ray(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every Ray comparison row ``--repeats`` times, each run a fresh process (interleaved)."""
    base = [sys.executable, __file__, "--base-url", base_url,
            "--ray-items", str(args.ray_items), "--concurrency", str(args.concurrency),
            "--tokens", str(args.tokens), "--embedded-items", str(args.embedded_items),
            "--embedded-tokens", str(args.embedded_tokens),
            "--limiter-rounds", str(args.limiter_rounds)]  # fmt: skip
    base += ["--quick"] if args.quick else []
    base += ["--with-embedded"] if args.with_embedded else []
    configs = ray_configs(args)
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(configs))}
    for _ in range(args.repeats):
        for index in runs:
            command = [*base, "--worker", "ray", "--ray-run", str(index)]
            runs[index].append(_subprocess_json(command, f"Ray row {configs[index][:2]}"))
    limiter = _subprocess_json([*base, "--worker", "limiter"], "the limiter benchmark")
    rows = []
    for index, measured in runs.items():
        rows.append({
            "model": configs[index][0], "engine": configs[index][1],
            "calls": measured[0]["calls"], "ok": min(m["ok"] for m in measured),
            "runs": len(measured), "cores": measured[0]["cores"],
            **{f"{key}_{stat}": value for key in ("wall_s", "rate", "wall_rate")
               for stat, value in spread([m[key] for m in measured]).items()},
        })  # fmt: skip
    return {"cores": rows[0]["cores"], "limiter": limiter, "rows": rows}


def spread(values: list[float]) -> dict[str, float]:
    """Median, lowest and highest of repeated runs."""
    import statistics

    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ranged(row: dict[str, Any], key: str) -> str:
    """``median (min-max)`` of ``key`` in a row with ``spread`` figures."""
    return f"{row[key + '_median']:,.1f} ({row[key + '_min']:,.1f}-{row[key + '_max']:,.1f})"


def ray_report(ray_run: dict[str, Any]) -> list[Check]:
    rows = ray_run["rows"]
    print_table(
        f"Ray: local engine against Ray workers on {ray_run['cores']} cores, each run a fresh "
        "process; median (lowest-highest) of the runs. Wall time counts everything the user "
        "waits for: Ray's start-up and its workers' included",
        ("model", "engine", "calls", "runs", "wall s", "calls/s incl. start",
         "calls/s first send to last answer"),
        [(r["model"], r["engine"], r["calls"], r["runs"], ranged(r, "wall_s"),
          ranged(r, "wall_rate"), ranged(r, "rate")) for r in rows],
    )  # fmt: skip
    limiter = ray_run["limiter"]
    print_table(
        "Shared limiter (one Ray actor): a round trip per call",
        ("call", "µs per call"),
        [("acquire (every call to a model with limits)", limiter["acquire_us"]),
         ("authorize (every call under a budget)", limiter["authorize_us"])],
    )  # fmt: skip

    def rate(model: str, engine: str) -> float:
        return float(next(r["wall_rate_median"] for r in rows
                          if r["model"] == model and r["engine"] == engine))  # fmt: skip

    checks = [
        Check("Ray batch: every call answered", sum(r["ok"] for r in rows), "",
              f"= {sum(r['calls'] for r in rows):,}",
              all(r["ok"] == r["calls"] for r in rows)),
        Check("Ray 2 workers / 1 worker (simulated provider)",
              rate("simulated", "Ray, 2 workers") / rate("simulated", "Ray, 1 worker"), "x", "",
              None, "calls/s over the wall time, Ray's start-up included; medians"),
        Check("Ray 2 workers / local engine (simulated provider)",
              rate("simulated", "Ray, 2 workers") / rate("simulated", "local engine"), "x", "",
              None, "calls/s over the wall time, Ray's start-up included; medians"),
        Check("shared limiter round trip (acquire)", limiter["acquire_us"], "µs", "", None,
              "per call to a model with limits; awaited, not blocking"),
    ]  # fmt: skip
    if any(r["model"].startswith("embedded") for r in rows):
        embedded = "embedded (smollm2)"
        checks.append(Check(
            "embedded model: Ray 2 workers / local engine",
            rate(embedded, "Ray, 2 workers") / rate(embedded, "local engine"),
            "x", "", None, "items/s over the wall time, start-up included; medians",
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of each row (median, spread)")
    parser.add_argument("--ray-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker", choices=["raw", "raw-json", "batch", "rate", "ray", "limiter"],
        help=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--runlog", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ray":
        ray_worker(args.base_url, args)
        return
    if args.worker == "limiter":
        limiter_worker(args)
        return
    if args.worker:
        worker(args.worker, args.base_url, args)
        return
    if args.quick:
        args.items, args.concurrency, args.rpm, args.rate_items = 300, 50, 1200.0, 41
        args.ray_items, args.embedded_items, args.limiter_rounds = 60, 6, 50
        args.repeats = 1

    with sim_process() as base_url, tempfile.TemporaryDirectory() as tmp:
        measured: dict[str, list[dict[str, Any]]] = {"raw": [], "raw-json": [], "batch": []}
        for run in range(args.repeats):  # interleaved, so a slow spell hits every client
            for which, found in measured.items():
                found.append(run_worker(which, base_url, args, f"{tmp}/{which}-{run}.sqlite3"))
        logged = log_counts(f"{tmp}/batch-0.sqlite3")
        resume = kill_and_resume(base_url, args, f"{tmp}/kill.sqlite3")
        rate_args = argparse.Namespace(**{**vars(args), "items": args.rate_items})
        rate_run = run_worker("rate", base_url, rate_args, f"{tmp}/rate.sqlite3")
        measured_rpm = start_rates(f"{tmp}/rate.sqlite3")
        ray_run = run_ray(base_url, args) if ray_available() and not args.no_ray else None

    calls = args.items * len(MODELS)
    clients = {"raw": "raw asyncio.gather, streaming (AsyncOpenAI)",
               "raw-json": "raw asyncio.gather, non-streaming JSON (AsyncOpenAI)",
               "batch": "run_batch (streams, records every call)"}  # fmt: skip
    rows = []
    for which, found in measured.items():
        rows.append({
            "client": clients[which], "runs": len(found),
            **{f"rate_{k}": v for k, v in spread([f["rate"] for f in found]).items()},
            **{f"seconds_{k}": v for k, v in spread([f["seconds"] for f in found]).items()},
            "peak_rss_mb": max(f["peak_rss_mb"] for f in found),
            "rss_growth_mb": max(f["peak_rss_mb"] - f["start_rss_mb"] for f in found),
            "records": logged["records"] if which == "batch" else "-",
        })  # fmt: skip
    by = {which: row for which, row in zip(measured, rows, strict=True)}
    batch = measured["batch"][0]
    ratio = by["batch"]["rate_median"] / by["raw"]["rate_median"]
    ratio_json = by["batch"]["rate_median"] / by["raw-json"]["rate_median"]
    growth = by["batch"]["rss_growth_mb"]
    print_table(
        f"Throughput: {args.items:,} items × {len(MODELS)} models = {calls:,} calls, "
        f"{args.concurrency} in flight, simulated provider at zero latency; "
        f"median (lowest-highest) of {args.repeats} runs, each a fresh process",
        ("client", "runs", "calls/s", "seconds", "peak RSS MB", "RSS growth MB", "run records"),
        [(r["client"], r["runs"], ranged(r, "rate"), ranged(r, "seconds"), r["peak_rss_mb"],
          r["rss_growth_mb"], r["records"]) for r in rows],
    )  # fmt: skip
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
        Check("batch throughput / raw streaming asyncio.gather", ratio, "x", ">= 0.8x",
              ratio >= 0.8, f"medians: {by['batch']['rate_median']:,.0f} vs "
              f"{by['raw']['rate_median']:,.0f} calls/s"),
        Check("batch throughput / raw non-streaming asyncio.gather", ratio_json, "x", "",
              None, f"medians: {by['batch']['rate_median']:,.0f} vs "
              f"{by['raw-json']['rate_median']:,.0f} calls/s"),
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
