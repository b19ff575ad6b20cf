"""``mmo-serve`` against LiteLLM's proxy, measured from outside over HTTP.

    python benchmarks/gateway.py [--requests 3000] [--serial 500] [--tokens 20]
                                 [--slow-requests 40] [--slow-s 3] [--skip-litellm] [--quick]
    LITELLM_COMMAND=/path/to/venv/bin/litellm python benchmarks/gateway.py   # the proxy elsewhere

Every party runs in a process of its own, all on 127.0.0.1: the simulated
provider (the one upstream both gateways call), ``mmo-serve``
(``python -m mmo_magic.service``), LiteLLM's proxy (the ``litellm`` command
with a config file, one uvicorn worker, its default start-up), and this
script, the load generator (asyncio + aiohttp). Both gateways get the same
two models, with client keys on (LiteLLM's proxy refuses to start without a
master key) and their request logs off:

- ``bench-fast``: ``sim-fast?tokens=N``, no delays at all, so the figures are
  what each gateway's code costs per request;
- ``bench-slow``: ``sim-fast?ttft_ms=…``, an upstream that takes ``--slow-s``
  seconds, for the slow-upstream case.

First, each gateway's own cost per request: chat completions one at a time
(concurrency 1), non-streaming and streaming, about ``--serial`` each, in
rounds in which the simulated provider called directly (the floor),
mmo-serve and LiteLLM's proxy each answer ``--block`` requests in a row (the
first not counted: it wakes a process that slept while the others were
served), in a new random order each round, so a drift in the machine's speed
hits all alike. ``orc.acomplete`` (``orc.astream``) called in
this process with mmo-serve's configuration joins the rounds: mmo-serve minus
it is what the HTTP side (uvicorn, FastAPI, the gate, keys, metrics, encoding)
adds, the rest of mmo-serve's added ms is the orchestrator's; and mmo-serve
called with a server key (no per-key lookup, budget hold or charge). "Added ms" is a
gateway's median (and p99) minus the direct call's, same wire, same run (issue
29's goal for mmo-serve: at most 1 ms non-streaming, 2 ms streaming). Each
gateway's process CPU per request is reported beside it: a loaded machine moves
it less than latency. ``--also LABEL=PYTHONPATH`` adds
another mmo-serve to these rows, started with that ``PYTHONPATH`` (a checkout
of another commit: an A/B in one run), ``--also-env LABEL:VAR=VALUE`` sets a
variable for one of them (an experiment's switches: ``benchmarks/ablations``);
``--only-added`` runs only them.

Then rows, each for both gateways one after the other (and the simulated provider
called directly, as the floor, where it speaks the wire), after a warm-up:
non-streaming and streaming chat completions at concurrency 1 (``--serial``
requests) and 100 (``--requests``), then the Responses API
(``/v1/responses``) and Anthropic's Messages API (``/v1/messages``),
non-streaming and streaming at concurrency 100. Each row is bounded in
count and in time (``--row-s``).
Latency is from sending the request to the last byte (``[DONE]`` for a
stream). RSS is the gateway's whole process tree, sampled every 50 ms, the
peak during the row.

Slow upstream: ``--slow-requests`` at once to ``bench-slow``; the wall time
of the batch against the same batch sent straight to the simulated provider.
mmo-serve's goal is 1.2× at most (issue 16); its default of 256 upstream calls
in flight per provider and host lets all 40 go at once.

mmo-serve runs with its defaults (the run log on, in a temporary file; the
response cache off; ``/metrics`` on), and the load is sent with a client key
with an identity (``mmo-serve keys add``: an allowlist, a budget and
requests and tokens per minute far above the load), so every request is
looked up by its hash, admitted, charged and counted. LiteLLM's proxy runs
with ``LITELLM_LOCAL_MODEL_COST_MAP``
(no price-map download) and telemetry off, no database. If LiteLLM's proxy is
missing or does not start, mmo-serve's rows still run and the reason is
printed and saved. ``--quick`` is a smoke run: a few dozen requests, a 1 s
slow upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Check, median, percentile, print_checks, print_table, save, sim_process
from gateway_added import (
    MMO,
    PASS,
    PLAIN,
    SIM,
    Added,
    added_checks,
    added_rows,
    also_environments,
    in_process_orchestrator,
    in_process_sdk,
    report_added,
)

SIM_KEY_ENV = "MMO_BENCH_SIM_KEY"
MMO_KEY = "mmo-bench-client-key"
# LiteLLM's proxy refuses a missing or weak master key; this one only ever guards 127.0.0.1.
LITELLM_KEY = "sk-" + "5e1f" * 16
PROMPT = "Say something about benchmarks."
LITE = "LiteLLM proxy"


@dataclass
class Server:
    """A gateway in its own process: how to call it, and its process for RSS."""

    name: str
    base_url: str  # ends in /v1
    key: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    launched: float = field(default_factory=time.perf_counter)
    startup_s: float = float("nan")
    idle_rss_mb: float = float("nan")
    models: dict[str, str] = field(default_factory=dict)  # our name -> the name it is sent as
    # Called instead of HTTP (the c=1 rows' in-process orc.acomplete): stream -> its text.
    call: Callable[[bool], Awaitable[str]] | None = None


# -- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children, in MB."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total / 2**20


class PeakRSS:
    """Samples a process tree's RSS on a thread every 50 ms; ``peak`` in MB."""

    def __init__(self, pid: int | None) -> None:
        self.pid, self.peak = pid, float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.pid is not None and not self._stop.is_set():
            rss = tree_rss_mb(self.pid)
            if not self.peak >= rss:  # also replaces the initial NaN
                self.peak = rss
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_healthy(server: Server, path: str, timeout_s: float) -> str | None:
    """None once GET path answers 200; else why not (the process ended, or the time ran out)."""
    assert server.proc is not None
    url = server.base_url.removesuffix("/v1") + path
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if server.proc.poll() is not None:
            return f"exited with code {server.proc.returncode}: {log_tail(server.log)}"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                server.startup_s = time.perf_counter() - server.launched
                server.idle_rss_mb = tree_rss_mb(server.proc.pid)
                return None
        time.sleep(0.25)
    return f"not answering {path} after {timeout_s:.0f} s: {log_tail(server.log)}"


def log_tail(log: Path | None, lines: int = 6) -> str:
    if log is None or not log.exists():
        return ""
    text = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:])[-600:]


def stop(server: Server) -> None:
    if server.proc is None or server.proc.poll() is not None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


def start_mmo(
    sim_url: str, models: dict[str, str], tmp: Path, env: dict[str, str], label: str = MMO
) -> Server:
    """mmo-serve in its own process; ``env``'s PYTHONPATH picks which mmo_magic it runs."""
    port = free_port()
    tmp = tmp / label.replace(" ", "_").replace("(", "").replace(")", "") if label != MMO else tmp
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [f'runlog = "{tmp / "runs.sqlite3"}"', "cache = false"]
    for name, model_id in models.items():
        lines += [
            f"[models.{name}]",
            'provider = "openai"',
            f"model_id = {json.dumps(model_id)}",
            f'base_url = "{sim_url}"',
            f'api_key_env = "{SIM_KEY_ENV}"',
            # Priced, so the key's budget can hold each request's worst case.
            "cost_per_1k_input = 0.001",
            "cost_per_1k_output = 0.002",
        ]
    config = tmp / "mmo.toml"
    config.write_text("\n".join(lines) + "\n")
    server = Server(label, f"http://127.0.0.1:{port}/v1", MMO_KEY, log=tmp / "mmo-serve.log")
    server.models = {name: name for name in models}
    # A key with an identity and limits: each request is looked up, admitted and charged.
    made = subprocess.run(
        [sys.executable, "-m", "mmo_magic.service", "keys", "--config", str(config), "add",
         "bench", "--model", "bench-*", "--budget", "1000000", "--period", "day",
         "--rpm", "100000000", "--tpm", "1000000000"],
        env=env, cwd=tmp, capture_output=True, text=True, check=True,
    )  # fmt: skip
    server.key = made.stdout.strip()
    server.proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmo_magic.service",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**env, "MMO_SERVER_KEYS": MMO_KEY},
        cwd=tmp,
        stdout=server.log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return server


def start_passthrough(
    sim_url: str, models: dict[str, str], tmp: Path, env: dict[str, str]
) -> Server:
    """``passthrough.py``: the least a gateway on the SDK's HTTP stack does (a reference)."""
    port = free_port()
    server = Server(PASS, f"http://127.0.0.1:{port}/v1", "unused", log=tmp / "passthrough.log")
    server.models = dict(models)  # forwarded as they are: the upstream's own model ids
    server.proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "passthrough.py"), sim_url, str(port)],
        env=env, cwd=tmp, stdout=server.log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return server


def litellm_command() -> list[str] | None:
    """The proxy's command: ``$LITELLM_COMMAND`` (a ``litellm`` installed with its proxy
    extra in a virtualenv of its own, whose pins may clash with ours), else the ``litellm``
    script beside this Python, else on PATH."""
    if given := os.environ.get("LITELLM_COMMAND"):
        return [given]
    beside = Path(sys.executable).parent / "litellm"
    found = str(beside) if beside.exists() else shutil.which("litellm")
    return [found] if found else None


def start_litellm(sim_url: str, models: dict[str, str], tmp: Path, env: dict[str, str]) -> Server:
    command = litellm_command()
    if command is None:
        raise FileNotFoundError("no `litellm` command: pip install 'litellm[proxy]'")
    port = free_port()
    # JSON is YAML, and json.dumps quotes the '?' and '&' of the model ids safely.
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{model_id}",
                    "api_base": sim_url,
                    "api_key": f"os.environ/{SIM_KEY_ENV}",
                },
            }
            for name, model_id in models.items()
        ],
        "litellm_settings": {"telemetry": False},
    }
    path = tmp / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    server = Server(LITE, f"http://127.0.0.1:{port}/v1", LITELLM_KEY, log=tmp / "litellm.log")
    server.models = {name: name for name in models}
    server.proc = subprocess.Popen(
        [*command, "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
        env={
            **env,
            "LITELLM_MASTER_KEY": LITELLM_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map download at start
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "WARNING",  # uvicorn at warning: no access log line per request
        },
        cwd=tmp,
        stdout=server.log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return server


# -- load --------------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    test: str
    stream: bool
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    first_error: str = ""

    def as_row(self) -> dict[str, Any]:
        # NaN (no RSS for the simulated provider, no latency if all failed) is not JSON: null.
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in vars(self).items()
        }


# Each wire: its path, its request body, and how a complete answer ends.
WIRES: dict[str, tuple[str, Any]] = {
    "chat": ("/chat/completions",
             lambda model, stream: {"model": model, "stream": stream,
                                    "messages": [{"role": "user", "content": PROMPT}]}),
    "responses": ("/responses",
                  lambda model, stream: {"model": model, "stream": stream, "input": PROMPT}),
    "messages": ("/messages",
                 lambda model, stream: {"model": model, "stream": stream, "max_tokens": 256,
                                        "messages": [{"role": "user", "content": PROMPT}]}),
}  # fmt: skip
_COMPLETE = {
    ("chat", False): b'"content"', ("chat", True): b"data: [DONE]",
    ("responses", False): b'"output_text"', ("responses", True): b"response.completed",
    ("messages", False): b'"content"', ("messages", True): b"message_stop",
}  # fmt: skip


async def load(
    server: Server,
    model: str,
    *,
    stream: bool,
    wire: str = "chat",
    requests: int,
    concurrency: int,
    warmup: int,
    row_s: float,
    timeout_s: float = 60,
) -> tuple[list[float], int, str, float]:
    """``requests`` chat completions, ``concurrency`` at a time, stopping new ones after ``row_s``.

    Returns (latencies in ms of the answers that were complete, errors, the first
    error, wall time in s).
    """
    import aiohttp

    path, make_body = WIRES[wire]
    body = json.dumps(make_body(server.models.get(model, model), stream)).encode()
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json",
               "x-api-key": server.key, "anthropic-version": "2023-06-01"}  # fmt: skip
    url = server.base_url + path
    done_mark = _COMPLETE[(wire, stream)]
    latencies: list[float] = []
    problems: list[str] = []

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(record: bool) -> None:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    data = await response.read()
                complete = response.status == 200 and done_mark in data
                if not complete:
                    problems.append(f"HTTP {response.status}: {data[:200]!r}")
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            if record:
                latencies.append((time.perf_counter() - start) * 1000)

        async def worker(todo: Iterator[int], deadline: float, record: bool) -> None:
            for _ in todo:
                if time.perf_counter() > deadline:
                    return
                await one(record)

        async def run(count: int, record: bool) -> float:
            todo = iter(range(count))
            start = time.perf_counter()
            deadline = start + row_s
            workers = min(concurrency, count)
            await asyncio.gather(*(worker(todo, deadline, record) for _ in range(workers)))
            return time.perf_counter() - start

        if warmup:
            await run(warmup, record=False)  # opens the connections, warms both ends
            problems.clear()
        wall = await run(requests, record=True)
    return latencies, len(problems), problems[0] if problems else "", wall


def measure(
    server: Server,
    test: str,
    model: str,
    stream: bool,
    concurrency: int,
    args: Any,
    count: int,
    wire: str = "chat",
) -> Result:
    pid = server.proc.pid if server.proc is not None else None
    warmup = min(count, max(concurrency, 20))
    with PeakRSS(pid) as rss:
        latencies, errors, first_error, wall = asyncio.run(
            load(
                server,
                model,
                stream=stream,
                wire=wire,
                requests=count,
                concurrency=concurrency,
                warmup=warmup,
                row_s=args.row_s,
            )
        )
    done = len(latencies)
    return Result(
        server.name,
        test,
        stream,
        concurrency,
        done + errors,
        errors,
        wall,
        done / wall if wall > 0 else float("nan"),
        median(latencies),
        percentile(latencies, 99),
        rss.peak,
        first_error,
    )


def slow_case(server: Server, args: Any) -> Result:
    """``--slow-requests`` at once to an upstream taking ``--slow-s``: no warm-up, one batch."""
    pid = server.proc.pid if server.proc is not None else None
    with PeakRSS(pid) as rss:
        latencies, errors, first_error, wall = asyncio.run(
            load(
                server,
                "bench-slow",
                stream=False,
                requests=args.slow_requests,
                concurrency=args.slow_requests,
                warmup=0,
                row_s=args.row_s,
                timeout_s=max(60, 10 * args.slow_s * args.slow_requests / 8),
            )
        )
    n = args.slow_requests
    return Result(
        server.name, "slow upstream", False, n, len(latencies) + errors, errors, wall,
        len(latencies) / wall, median(latencies), percentile(latencies, 99), rss.peak, first_error,
    )  # fmt: skip


# -- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per row at concurrency 100")
    parser.add_argument("--serial", type=int, default=500, help="per row at concurrency 1")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=20, help="words in each answer")
    parser.add_argument("--slow-requests", type=int, default=40)
    parser.add_argument("--slow-s", type=float, default=3.0, help="the slow upstream's time")
    parser.add_argument("--row-s", type=float, default=90, help="time bound of each row")
    parser.add_argument("--startup-s", type=float, default=120, help="time allowed to start")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--logs", metavar="DIR", help="keep the servers' logs and configs in DIR")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few dozen requests")
    parser.add_argument(
        "--also", action="append", default=[], metavar="LABEL=PYTHONPATH",
        help="also run 'mmo-serve (LABEL)' with this PYTHONPATH (another checkout) in the c=1 "
        "rows (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--also-env", action="append", default=[], metavar="LABEL:VAR=VALUE",
        help="set VAR in the environment of the --also server LABEL (repeatable): the switches "
        "of an experiment's checkout (benchmarks/ablations)",
    )  # fmt: skip
    parser.add_argument("--only-added", action="store_true", help="only the c=1 added-ms rows")
    parser.add_argument(
        "--block", type=int, default=21,
        help="c=1 added-ms rows: requests to one target in a row (the first not counted)",
    )  # fmt: skip
    args = parser.parse_args()
    args.block = max(2, args.block)
    if args.quick:
        args.requests, args.serial, args.slow_requests, args.slow_s = 40, 10, 12, 1.0
        args.block = 6
        args.row_s = 30

    models = {
        "bench-fast": f"sim-fast?tokens={args.tokens}",
        "bench-slow": f"sim-fast?ttft_ms={args.slow_s * 1000:g}&tokens={args.tokens}",
    }
    env = {**os.environ, SIM_KEY_ENV: "sim-benchmark-key"}
    os.environ[SIM_KEY_ENV] = env[SIM_KEY_ENV]
    missing = ""
    with sim_process() as sim_url, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(args.logs or tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        sim = Server(SIM, sim_url, env[SIM_KEY_ENV])
        sim.models = dict(models)
        servers = [start_mmo(sim_url, models, tmp, env)]
        servers.append(start_passthrough(sim_url, models, tmp, env))
        extra_env = also_environments(args.also_env)
        for also in args.also:  # other checkouts of mmo_magic: an A/B in the same rounds
            label, _, pythonpath = also.partition("=")
            also_env = {**env, "PYTHONPATH": pythonpath, **extra_env.get(label, {})}
            servers.append(start_mmo(sim_url, models, tmp, also_env, label=f"{MMO} ({label})"))
        if args.skip_litellm:
            missing = "--skip-litellm"
        else:
            try:
                servers.append(start_litellm(sim_url, models, tmp, env))
            except OSError as exc:
                missing = f"could not start it: {exc}"
        try:
            ready = []
            for server in servers:  # both start at once; wait for each in turn
                path = "/health/liveliness" if server.name == LITE else "/health"
                problem = wait_healthy(server, path, args.startup_s)
                if problem is None:
                    ready.append(server)
                elif server.name != LITE:
                    raise SystemExit(f"{server.name} did not start: {problem}")
                else:
                    missing = f"did not start: {problem}"
                    stop(server)
            if missing:
                print(f"\nLiteLLM proxy MISSING from this run ({missing}); mmo-serve's rows only.")
            # The same mmo-serve called with a server key: no per-key lookup, hold or charge.
            plain = [
                dataclasses.replace(s, name=PLAIN, key=MMO_KEY) for s in ready if s.name == MMO
            ]
            chat = (WIRES["chat"][0], WIRES["chat"][1],
                    {s: _COMPLETE[("chat", s)] for s in (False, True)})  # fmt: skip
            with (
                in_process_orchestrator(
                    sim_url, models["bench-fast"], SIM_KEY_ENV, PROMPT, tmp
                ) as orc,
                in_process_sdk(sim_url, models["bench-fast"], SIM_KEY_ENV, PROMPT) as sdk,
            ):
                added = added_rows([sdk, orc, *ready, *plain], sim, chat, args)
            gateways = [s for s in ready if s.name in (MMO, LITE)]  # --also: c=1 rows only
            results = [] if args.only_added else run_rows(gateways, sim, args)
            rss_idle = {s.name: s.idle_rss_mb for s in ready}
            startup = {s.name: s.startup_s for s in ready}
        finally:
            for server in servers:
                stop(server)
    args.load_average = {"before": load_before, "after": os.getloadavg()}
    report_added(added, args)
    if args.only_added:
        save("gateway-added", {**vars(args), "versions": versions()}, [r.as_row() for r in added],
             added_checks(added))  # fmt: skip
        return
    report(results, rss_idle, startup, missing, args, added)


def run_rows(servers: list[Server], sim: Server, args: Any) -> list[Result]:
    results: list[Result] = []
    n = args.concurrency
    tests = [
        ("non-stream, 1 at a time", "chat", False, 1, args.serial),
        (f"non-stream, {n} at a time", "chat", False, n, args.requests),
        ("stream, 1 at a time", "chat", True, 1, args.serial),
        (f"stream, {n} at a time", "chat", True, n, args.requests),
        (f"responses, {n} at a time", "responses", False, n, args.requests),
        (f"responses stream, {n} at a time", "responses", True, n, args.requests),
        (f"messages, {n} at a time", "messages", False, n, args.requests),
        (f"messages stream, {n} at a time", "messages", True, n, args.requests),
    ]
    for i, (test, wire, stream, concurrency, count) in enumerate(tests):
        # Alternate who goes first, so a drift in the machine's speed hits both alike.
        order = servers if i % 2 == 0 else servers[::-1]
        floor = [sim] if wire == "chat" else []  # the simulated provider speaks chat here
        for server in [*order, *floor]:
            results.append(
                measure(server, test, "bench-fast", stream, concurrency, args, count, wire)
            )
            print(f"  {test:<28} {server.name:<28} {results[-1].rps:8.1f} req/s", flush=True)
    for server in [sim, *servers]:
        results.append(slow_case(server, args))
        print(f"  {'slow upstream':<28} {server.name:<28} {results[-1].wall_s:8.2f} s", flush=True)
    return results


def report(
    results: list[Result],
    rss_idle: dict[str, float],
    startup: dict[str, float],
    missing: str,
    args: Any,
    added: list[Added],
) -> None:
    fast = [r for r in results if r.test != "slow upstream"]
    print_table(
        f"Zero-latency upstream, {args.tokens} words per answer: each gateway in its own process",
        ("test", "server", "requests", "errors", "req/s", "p50 ms", "p99 ms", "peak RSS MB"),
        [
            (r.test, r.server, r.requests, r.errors, r.rps, r.p50_ms, r.p99_ms, r.peak_rss_mb)
            for r in fast
        ],
    )
    by = {(r.server, r.test): r for r in results}
    tests = list(dict.fromkeys(r.test for r in fast))
    checks: list[Check] = added_checks(added)
    if not missing:
        rows = []
        failed = []
        for test in tests:
            ours, theirs = by[(MMO, test)], by[(LITE, test)]
            if theirs.requests and theirs.errors == theirs.requests:
                failed.append(test)  # no ratio to a gateway that answered nothing
                continue
            rows.append(
                (
                    test,
                    ours.rps,
                    theirs.rps,
                    ours.rps / theirs.rps,
                    theirs.p50_ms / ours.p50_ms,
                    theirs.p99_ms / ours.p99_ms,
                    theirs.peak_rss_mb / ours.peak_rss_mb,
                )
            )
        print_table(
            "mmo-serve against LiteLLM's proxy (goal: >= 2x on every row)",
            ("test", "mmo req/s", "LiteLLM req/s", "req/s ratio", "p50 ratio", "p99 ratio",
             "RSS ratio"),
            rows,
        )  # fmt: skip
        print("  ratios: mmo-serve's req/s over LiteLLM's; LiteLLM's latency and RSS over ours")
        for test in failed:
            print(f"  {test}: LiteLLM's proxy failed every request, so no ratio")
        for test, _, _, ratio, p50, p99, _ in rows:
            checks.append(
                Check(
                    f"req/s mmo-serve / LiteLLM proxy, {test}",
                    ratio,
                    "x",
                    ">= 2x",
                    ratio >= 2,
                    f"latency p50 {p50:.1f}x, p99 {p99:.1f}x lower",
                )
            )
        ours_rss = max(by[(MMO, t)].peak_rss_mb for t in tests)
        theirs_rss = max(by[(LITE, t)].peak_rss_mb for t in tests)
        checks.append(
            Check(
                "peak RSS under load, LiteLLM proxy / mmo-serve",
                theirs_rss / ours_rss,
                "x",
                ">= 2x",
                theirs_rss / ours_rss >= 2,
                f"{ours_rss:.0f} vs {theirs_rss:.0f} MB",
            )
        )
    else:
        checks.append(Check("LiteLLM proxy compared", 0, "", "", None, f"MISSING: {missing}"[:300]))

    upstream = by[(SIM, "slow upstream")].wall_s
    slow_rows = []
    for name in (SIM, MMO, LITE):
        r = by.get((name, "slow upstream"))
        if r is not None:
            slow_rows.append((name, r.requests, r.errors, r.wall_s, r.wall_s / upstream))
    print_table(
        f"Slow upstream: {args.slow_requests} requests at once, upstream taking {args.slow_s:g} s"
        " (goal for mmo-serve: <= 1.2x the upstream alone)",
        ("server", "requests", "errors", "wall s", "x upstream alone"),
        slow_rows,
    )
    ours_slow = by[(MMO, "slow upstream")]
    checks.append(
        Check(
            f"{args.slow_requests} x {args.slow_s:g} s upstream through mmo-serve / upstream alone",
            ours_slow.wall_s / upstream,
            "x",
            "<= 1.2x",
            ours_slow.wall_s / upstream <= 1.2 and ours_slow.errors == 0,
            f"{ours_slow.wall_s:.1f} s vs {upstream:.1f} s"
            + (f"; {ours_slow.errors} errors" if ours_slow.errors else ""),
        )
    )
    if (LITE, "slow upstream") in by:
        theirs_slow = by[(LITE, "slow upstream")]
        checks.append(
            Check(
                f"{args.slow_requests} x {args.slow_s:g} s upstream through LiteLLM proxy"
                " / upstream alone",
                theirs_slow.wall_s / upstream,
                "x",
                "",
                None,
                f"{theirs_slow.wall_s:.1f} s",
            )
        )
    ours_errors = sum(r.errors for r in results if r.server == MMO)
    checks.append(
        Check(
            "failed requests through mmo-serve",
            ours_errors,
            "",
            "0",
            ours_errors == 0,
            f"of {sum(r.requests for r in results if r.server == MMO)}"
            + (
                f"; first: {next(r.first_error for r in results if r.server == MMO and r.errors)}"
                if ours_errors
                else ""
            ),
        )
    )
    info = ", ".join(
        f"{name} {startup[name]:.1f} s, {rss_idle[name]:.0f} MB idle" for name in startup
    )
    print(f"\nstart-up to healthy: {info}")
    before, after = args.load_average["before"][0], args.load_average["after"][0]
    print(f"load average (1 min) {before:.1f} before, {after:.1f} after, {os.cpu_count()} cores")
    print_checks(checks)
    params = {**vars(args), "litellm_missing": missing, "startup_s": startup,
              "idle_rss_mb": rss_idle, "versions": versions()}  # fmt: skip
    rows = [r.as_row() for r in results] + [r.as_row() for r in added]
    save("gateway", params, rows, checks)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("litellm", "fastapi", "uvicorn", "uvloop", "httptools", "aiohttp"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


if __name__ == "__main__":
    main()
