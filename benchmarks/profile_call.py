"""Where the time of one ``orc.acomplete`` goes, sampled with py-spy (the benchmark extra).

    python benchmarks/profile_call.py [--calls 2000] [--tokens 20] [--rate 500] [--path mmo|raw]

Runs ``--calls`` calls one after another against the simulated provider (its own
process, zero latency), as ``overhead.py`` does, under ``py-spy record --idle
--threads``, then sorts every sample by thread and by what the thread was doing:

- the caller's thread (the user's event loop), the background loop's thread
  (where clients and the call engine run) and the run log's writer thread;
- in each, the innermost frame that says what the work is: waiting (idle),
  HTTP (httpx/httpcore/h11), the OpenAI SDK, mmo_magic's request sending (the
  direct POST past the SDK's ``create``) and SSE parsing, the call
  engine, run records (building, redacting, SQLite), asyncio's own machinery
  (the hops between loops and threads), and the rest.

Figures are milliseconds per call. py-spy samples wall-clock time, so a thread's
idle time is time it waited; the caller's total is the call's latency. ``--path
raw`` profiles raw ``AsyncOpenAI`` without streaming (the wire's floor) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from _common import print_table, sim_process

KEY_ENV = "MMO_BENCH_SIM_KEY"
os.environ.setdefault(KEY_ENV, "sim-benchmark-key")
PROMPT = "Say something about benchmarks."
WARMUP = 100

# (category, pattern on "function (file:line)"), tried from the innermost frame outwards.
CATEGORIES = [
    (
        "idle: waiting",
        re.compile(r"^(EpollSelector\.select|Condition\.wait) |^_worker \(concurrent"),
    ),
    ("waking another thread", re.compile(r"^(Event\.set|Condition\.notify|.*_write_to_self) ")),
    ("first-use imports", re.compile(r"^_find_and_load ")),
    ("run records: SQLite", re.compile(r"\(mmo_magic/storage/(sqlite|spill)\.py")),
    ("run records: build, redact", re.compile(r"\(mmo_magic/(storage/runlog|core/redaction)\.py")),
    ("mmo client: sending (direct POST)", re.compile(r"\(mmo_magic/providers/direct\.py")),
    ("mmo client: SSE parsing", re.compile(r"\(mmo_magic/providers/")),
    ("call engine", re.compile(r"\(mmo_magic/")),
    ("OpenAI SDK", re.compile(r"\(openai/")),
    ("HTTP: httpx, httpcore, h11", re.compile(r"\((httpx|httpcore|h11|anyio)/")),
    ("asyncio: loop, futures, hops", re.compile(r"\((asyncio|concurrent)/")),
]
THREADS = {
    "MainThread": "caller (its own loop)",
    "mmo-magic-loop": "background loop",
    "mmo-magic-runlog": "run-log writer",
}


def category_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def child(args: argparse.Namespace) -> None:
    """The profiled process: ``--calls`` calls after a warm-up."""
    base_url = args.base_url
    model = f"sim-fast?tokens={args.tokens}"
    if args.path == "raw":
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], max_retries=0)

        async def call() -> str:
            r = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPT}]
            )
            return r.choices[0].message.content or ""

        close = None
    else:
        import mmo_magic as mmo

        tmp = tempfile.mkdtemp()
        orc = mmo.Orchestrator(
            [mmo.ModelConfig("openai", model, name="sim", base_url=base_url, api_key_env=KEY_ENV)],
            default_model="sim",
            runlog=f"{tmp}/runs.sqlite3",
            cache=False,
        )

        async def call() -> str:
            return (await orc.acomplete(PROMPT)).content

        close = orc.close

    async def calls(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            if not await call():
                raise RuntimeError("no text")
        return time.perf_counter() - start

    loop = asyncio.new_event_loop()  # one loop throughout: the raw client is bound to it
    loop.run_until_complete(calls(WARMUP))  # connections, first-use imports: not sampled
    print("WARM", flush=True)
    sys.stdin.readline()  # py-spy is attached
    print(f"SPAN {loop.run_until_complete(calls(args.calls)):.6f}", flush=True)
    loop.close()
    if close is not None:
        close()


def summarise(raw: Path, calls: int, rate: int, span_s: float) -> None:
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        head, *frames = stack.split(";")
        name = head.partition(": ")[2]
        thread = THREADS.get(name, "executor" if name.startswith("asyncio_") else "other")
        # Sampling starts after the warm-up; the caller's samples outside its loop (waiting
        # for py-spy to attach, the exit) are left out.
        running = any(f.startswith("BaseEventLoop.run_until_complete ") for f in frames)
        if thread == THREADS["MainThread"] and not running:
            continue
        per_thread[thread][category_of(frames)] += int(count)
    ms = 1000 / rate / calls  # one sample's share of one call, in ms
    rows = []
    for thread, counts in per_thread.items():
        rows += [(thread, category, n * ms) for category, n in counts.most_common()]
        rows.append((thread, "total", counts.total() * ms))
    print(f"{calls} calls in {span_s:.2f} s: {span_s / calls * 1000:.3f} ms per call")
    print_table(
        f"Where each call's time goes (py-spy, {rate} samples/s, ms per call)",
        ("thread", "doing", "ms per call"),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--path", choices=["mmo", "raw"], default="mmo")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with sim_process() as base_url, tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "samples.txt"
        profiled = subprocess.Popen(
            [sys.executable, __file__, "--child", "--base-url", base_url, "--calls",
             str(args.calls), "--tokens", str(args.tokens), "--path", args.path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert profiled.stdin is not None and profiled.stdout is not None
        assert profiled.stdout.readline().strip() == "WARM"
        spy = subprocess.Popen(
            ["py-spy", "record", "--idle", "--threads", "--format", "raw", "--rate",
             str(args.rate), "-o", str(raw), "--pid", str(profiled.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches
        profiled.stdin.write("go\n")
        profiled.stdin.flush()
        span = float(profiled.stdout.readline().split()[1])
        profiled.wait(timeout=60)
        _, errors = spy.communicate(timeout=60)
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote nothing: {errors[-500:]}")
        summarise(raw, args.calls, args.rate, span)


if __name__ == "__main__":
    main()
