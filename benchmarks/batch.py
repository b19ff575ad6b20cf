"""Batch evaluation at scale: throughput against raw asyncio.gather, memory, kill and resume, rates.

    python benchmarks/batch.py [--items 10000] [--concurrency 100] [--tokens 20] [--quick]

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
        from mmo_magic.orchestration.batch import run_batch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rpm", type=float, default=600.0, help="the rate-limit check's limit")
    parser.add_argument("--rate-items", type=int, default=101)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--worker", choices=["raw", "batch", "rate"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--runlog", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.base_url, args)
        return
    if args.quick:
        args.items, args.concurrency, args.rpm, args.rate_items = 300, 50, 1200.0, 41

    with sim_process() as base_url, tempfile.TemporaryDirectory() as tmp:
        raw = run_worker("raw", base_url, args, f"{tmp}/unused.sqlite3")
        batch = run_worker("batch", base_url, args, f"{tmp}/batch.sqlite3")
        logged = log_counts(f"{tmp}/batch.sqlite3")
        resume = kill_and_resume(base_url, args, f"{tmp}/kill.sqlite3")
        rate_args = argparse.Namespace(**{**vars(args), "items": args.rate_items})
        rate_run = run_worker("rate", base_url, rate_args, f"{tmp}/rate.sqlite3")
        measured_rpm = start_rates(f"{tmp}/rate.sqlite3")

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
    print_checks(checks)
    params = {k: v for k, v in vars(args).items() if k not in ("worker", "base_url", "runlog")}
    extra = [resume, {"rate_run": rate_run, "measured_rpm": measured_rpm}]
    save("batch", params, [*rows, *extra], checks)


if __name__ == "__main__":
    main()
