"""Where ``mmo-serve``'s time per request goes, sampled with py-spy (the benchmark extra).

    python benchmarks/profile_gateway.py [--requests 2000] [--stream] [--rate 500] [--tokens 20]

Starts the simulated provider and ``mmo-serve`` as ``gateway.py`` does (each in its
own process, a client key with an identity, ``/metrics`` on, the run log on disk),
warms it up, then sends ``--requests`` chat completions one after another while
``py-spy record --idle --threads`` samples the server process. Every sample is sorted
by thread (uvicorn's loop, where requests are parsed, routed and answered;
mmo_magic's background loop, where the call runs; the run-log writer) and by what
the thread was doing: the innermost frame that says so (``CATEGORIES``).

Figures are milliseconds per request of wall-clock samples: a thread's idle time is
time it waited, so uvicorn's loop's total is about the request's time in the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from _common import print_table, sim_process
from gateway import SIM_KEY_ENV, start_mmo, stop, wait_healthy

PROMPT = "Say something about benchmarks."
WARMUP = 200

# (category, pattern on "function (file:line)"), tried from the innermost frame outwards.
CATEGORIES = [
    (
        "idle: waiting",
        re.compile(r"^(select|EpollSelector\.select|Condition\.wait|wait) |^_worker \(concurrent"),
    ),
    # uvloop runs its loop in C: its waiting and its own work (sockets, callbacks) show here.
    # mmo-serve's loop is mmo_magic's background loop: there it is its thread's ``run``.
    (
        "idle or uvloop's own C work",
        re.compile(
            r"^Runner\.run \(asyncio/runners"
            r"|^BackgroundLoop\.start\.<locals>\.run \(mmo_magic/core/loop"
        ),
    ),
    ("waking another thread", re.compile(r"^(Event\.set|Condition\.notify|.*_write_to_self) ")),
    ("logging", re.compile(r"\(logging/")),
    (
        "client key: lookup, admit, charge (storage)",
        re.compile(r"\(mmo_magic/storage/keys|\(mmo_magic/service/clients\.py"),
    ),
    ("run records: SQLite, build, redact", re.compile(r"\(mmo_magic/(storage|core/redaction)")),
    (
        "metrics (prometheus_client)",
        re.compile(r"\(prometheus_client/|\(mmo_magic/service/metrics\.py"),
    ),
    (
        "SSE framing (service/streaming, wires)",
        re.compile(r"\(mmo_magic/service/(streaming|responses|messages|legacy)\.py"),
    ),
    (
        "response building (service/schemas, pydantic out)",
        re.compile(r"\(mmo_magic/service/schemas\.py"),
    ),
    (
        "middleware (gate, errors, deployed)",
        re.compile(
            r"\(mmo_magic/service/(auth|app|errors|disconnect)\.py.*(__call__|_refusal|_limit_body|_header|reshape)"
        ),
    ),
    ("service handlers (service/*)", re.compile(r"\(mmo_magic/service/")),
    ("provider client, SSE parsing", re.compile(r"\(mmo_magic/providers/")),
    ("orchestrator, call engine", re.compile(r"\(mmo_magic/")),
    ("OpenAI SDK", re.compile(r"\(openai/")),
    ("upstream HTTP: httpx, httpcore", re.compile(r"\((httpx|httpcore|anyio)/")),
    ("pydantic validation / serialisation", re.compile(r"\(pydantic|_compat")),
    ("JSON encoding (jsonable_encoder, json)", re.compile(r"\(fastapi/encoders|\(json/")),
    ("FastAPI: routing, dependencies, serialise", re.compile(r"\(fastapi/")),
    ("Starlette: routing, middleware, responses", re.compile(r"\(starlette/")),
    ("uvicorn: HTTP parsing, protocol (h11/httptools)", re.compile(r"\((uvicorn|h11|httptools)/")),
    ("asyncio: loop, tasks, hops", re.compile(r"\((asyncio|concurrent|uvloop)/")),
]
THREADS = {
    # mmo-serve runs uvicorn on the orchestrator's background loop (no hop between loops);
    # an older checkout ran it on the main thread and hopped to the background loop.
    "MainThread": "main thread",
    "mmo-magic-loop": "background loop",
    "mmo-magic-runlog": "run-log writer",
}


def category_of(frames: list[str]) -> str:
    if any("(httpcore/" in f for f in frames):  # h11 under httpcore: the upstream call's
        return "upstream HTTP: httpx, httpcore"
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


class Load:
    """Requests one after another on a thread of its own until ``stop``; ``done`` counts them."""

    def __init__(self, base_url: str, key: str, stream: bool) -> None:
        self.url = f"{base_url}/chat/completions"
        self.key, self.stream = key, stream
        self.done = 0
        self.problem = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import aiohttp

        body = json.dumps({"model": "bench-fast", "stream": self.stream,
                           "messages": [{"role": "user", "content": PROMPT}]}).encode()  # fmt: skip
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                async with session.post(self.url, data=body, headers=headers) as r:
                    data = await r.read()
                if r.status != 200:
                    self.problem = f"HTTP {r.status}: {data[:200]!r}"
                    return
                self.done += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for(self, n: int) -> None:
        while self.done < n and self._thread.is_alive():
            time.sleep(0.01)
        if self.problem:
            raise RuntimeError(self.problem)


def summarise(raw: Path, ms_per_request: float, top: int) -> None:
    """Each thread's samples as shares of uvicorn's loop's, times the measured ms per request:
    the load ran throughout the sampling, so every sample stands for the same time."""
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    others: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        head, *frames = stack.split(";")
        name = head.partition(": ")[2]
        thread = THREADS.get(name, "executor" if name.startswith("asyncio_") else "other")
        category = category_of(frames)
        per_thread[thread][category] += int(count)
        if not category.startswith("idle") and frames:
            others[f"{thread}: {category}: {' < '.join(frames[:-4:-1])}"] += int(count)
    ms = ms_per_request / per_thread[THREADS["MainThread"]].total()  # one sample, in ms
    rows = []
    for thread, counts in per_thread.items():
        rows += [(thread, category, n * ms) for category, n in counts.most_common()]
        rows.append((thread, "total", counts.total() * ms))
    print(f"one request after another: {ms_per_request:.3f} ms each (client to client)")
    print_table(
        "Where each request's time goes in mmo-serve (py-spy, ms per request)",
        ("thread", "doing", "ms per request"),
        rows,
    )
    if top:
        print("\nbusy, by thread and three innermost frames:")
        for frame, n in others.most_common(top):
            print(f"  {n * ms:7.3f}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream", action="store_true", help="stream: true (SSE)")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=0, help="list the N busiest stacks")
    parser.add_argument("--native", action="store_true", help="C frames too (py-spy --native)")
    parser.add_argument("--keep", metavar="FILE", help="keep py-spy's raw samples in FILE")
    args = parser.parse_args()
    models = {"bench-fast": f"sim-fast?tokens={args.tokens}"}
    env = {**os.environ, SIM_KEY_ENV: "sim-benchmark-key"}
    with sim_process() as sim_url, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        server = start_mmo(sim_url, models, tmp, env)
        try:
            if problem := wait_healthy(server, "/health", 60):
                raise SystemExit(f"mmo-serve did not start: {problem}")
            assert server.proc is not None
            load = Load(server.base_url, server.key, args.stream)
            load.start()
            load.wait_for(WARMUP)  # connections, first-use imports: not sampled
            raw = Path(args.keep) if args.keep else tmp / "samples.txt"
            spy = subprocess.Popen(
                ["py-spy", "record", "--idle", "--threads", "--format", "raw", "--rate",
                 str(args.rate), "-o", str(raw), "--pid", str(server.proc.pid),
                 *(["--native"] if args.native else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches; the load goes on throughout
            first, start = load.done, time.perf_counter()
            load.wait_for(first + args.requests)
            ms_per_request = (time.perf_counter() - start) * 1000 / (load.done - first)
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
            _, errors = spy.communicate(timeout=60)
            load.stop()
        finally:
            stop(server)
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote nothing: {errors[-500:]}")
        summarise(raw, ms_per_request, args.top)


if __name__ == "__main__":
    main()
