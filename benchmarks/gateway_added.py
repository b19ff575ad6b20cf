"""``gateway.py``'s opening rows: each gateway's own cost per request at concurrency 1.

Chat completions one at a time, interleaved in rounds: each round sends each target a
block of requests in a row (the first not counted: it wakes a process that slept while
the others were served), the targets in a new random order. A target is a gateway or
the simulated provider over HTTP, or ``orc.acomplete`` called in this process
(``in_process_orchestrator``). Each row: the median and p99, what they add over the
direct call, and the target's process CPU per request (read around each request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _common import Check, median, percentile, print_table

MMO, SIM = "mmo-serve", "simulated provider (direct)"
PLAIN = "mmo-serve, server key (no key accounting)"
ORC = "orc.acomplete in-process (no HTTP)"  # mmo-serve minus it is the HTTP side
# What any gateway calling upstream through the SDK pays before doing anything of its own.
SDK = "raw AsyncOpenAI + aiohttp in-process (the SDK's own cost)"
PASS = "passthrough proxy (uvicorn + an aiohttp session, nothing else)"
# What mmo-serve is compared with besides the direct call: (row, as named in a check, note).
REFERENCES = (
    (ORC, "orc.acomplete in-process (the HTTP side)",
     "the gateway's own share of what it adds; the rest is the orchestrator's"),
    (SDK, "the raw SDK in-process", "what mmo-serve adds beyond the SDK's own upstream call"),
    (PASS, "the passthrough proxy",
     "mmo-serve's own work: what a gateway on this HTTP stack pays before any is its floor"),
)  # fmt: skip

# (path, body for (model, stream), the bytes a complete answer holds, by stream)
Wire = tuple[str, Callable[[str, bool], Any], dict[bool, bytes]]


class Target(Protocol):
    name: str
    base_url: str  # ends in /v1
    key: str
    proc: Any  # its process (for CPU), or None
    models: dict[str, str]
    call: Callable[[bool], Awaitable[str]] | None  # instead of HTTP: stream -> its text


@dataclass
class InProcess:
    """A target called in this process, not over HTTP."""

    name: str
    call: Callable[[bool], Awaitable[str]] | None
    base_url: str = ""
    key: str = ""
    proc: Any = None
    models: dict[str, str] = field(default_factory=dict)


def tree_cpu_s(pid: int | None) -> float:
    """CPU time (user + system) of a process and its children so far, in s."""
    import psutil

    if pid is None:
        return float("nan")
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = p.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Added:
    """One target's c=1 latencies in the interleaved rounds, and what it adds over direct."""

    server: str
    test: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    added_p50_ms: float = float("nan")  # minus the direct call's median, same rounds
    added_p99_ms: float = float("nan")
    cpu_ms: float = float("nan")  # the gateway's process tree's CPU time per request
    first_error: str = ""

    def as_row(self) -> dict[str, Any]:
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in vars(self).items()
        }


async def interleaved(
    targets: Sequence[Target],
    wire: Wire,
    stream: bool,
    requests: int,
    block: int,
    warmup: int,
    timeout_s: float = 60,
) -> dict[str, tuple[list[float], list[str], float]]:
    """About ``requests`` chat completions to each target, one request at a time, in rounds:
    each round sends each target ``block`` requests in a row, the targets in a new random
    order. The first request of a block is not counted: it wakes a process that slept
    while the others were served (on a loaded VM that costs milliseconds, and more for a
    server with several threads to wake). Each target keeps its own connection.

    Returns each target's (latencies in ms, errors, CPU s its process used in its counted
    requests: read just before and after each, so two targets served by one process are
    told apart)."""
    import random

    import aiohttp

    path, make_body, done_marks = wire
    done_mark = done_marks[stream]
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    sessions = {t.name: aiohttp.ClientSession(timeout=timeout) for t in targets}
    found: dict[str, tuple[list[float], list[str]]] = {t.name: ([], []) for t in targets}
    cpu: dict[str, float] = {}

    async def one(target: Target, record: bool) -> None:
        if target.call is not None:
            await in_process(target, target.call, record)
            return
        body = json.dumps(make_body(target.models.get("bench-fast", "bench-fast"), stream))
        headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
        latencies, errors = found[target.name]
        start = time.perf_counter()
        try:
            async with sessions[target.name].post(
                target.base_url + path, data=body.encode(), headers=headers
            ) as response:
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200 or done_mark not in data:
            errors.append(f"HTTP {response.status}: {data[:200]!r}")
        elif record:
            latencies.append(elapsed)

    async def in_process(
        target: Target, call: Callable[[bool], Awaitable[str]], record: bool
    ) -> None:
        latencies, errors = found[target.name]
        start = time.perf_counter()
        try:
            text = await call(stream)
        except Exception as exc:  # the orchestrator's errors: counted, as HTTP ones are
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        if not text:
            errors.append("no text")
        elif record:
            latencies.append((time.perf_counter() - start) * 1000)

    shuffled = random.Random(29)
    try:
        for target in targets:  # connections, first-use imports
            for _ in range(warmup):
                await one(target, record=False)
        for _, errors in found.values():
            errors.clear()
        for _ in range(max(1, round(requests / (block - 1)))):
            order = list(targets)
            shuffled.shuffle(order)
            for target in order:
                pid = target.proc.pid if target.proc is not None else None
                await one(target, record=False)  # wakes it
                for _ in range(block - 1):
                    before = tree_cpu_s(pid)
                    await one(target, record=True)
                    cpu[target.name] = cpu.get(target.name, 0.0) + tree_cpu_s(pid) - before
    finally:
        for session in sessions.values():
            await session.close()
    return {name: (*found[name], cpu.get(name, float("nan"))) for name in found}


@contextlib.contextmanager
def in_process_orchestrator(
    sim_url: str, model_id: str, key_env: str, prompt: str, tmp: Path
) -> Iterator[Target]:
    """``orc.acomplete`` (``orc.astream``) in this process, configured as mmo-serve's
    orchestrator is (the run log on disk, no cache): mmo-serve minus it is the HTTP side."""
    import mmo_magic as mmo

    model = mmo.ModelConfig("openai", model_id, name="bench-fast", base_url=sim_url,
                            api_key_env=key_env)  # fmt: skip
    orc = mmo.Orchestrator([model], default_model="bench-fast",
                           runlog=str(tmp / "in-process.sqlite3"), cache=False)  # fmt: skip

    async def call(stream: bool) -> str:
        if not stream:
            return (await orc.acomplete(prompt)).content
        return "".join([text async for text in orc.astream(prompt)])

    try:
        yield InProcess(ORC, call)
    finally:
        orc.close()


@contextlib.contextmanager
def in_process_sdk(sim_url: str, model_id: str, key_env: str, prompt: str) -> Iterator[Target]:
    """The openai SDK's ``AsyncOpenAI`` calling the simulated provider from this process:
    what a gateway built on the SDK (mmo-serve is) pays per request for the upstream call
    alone, over the direct call's aiohttp client. With the SDK's aiohttp transport, as
    mmo_magic's clients use it (and closed as theirs are when their loop ends)."""
    import openai

    from mmo_magic.providers.direct import http_client

    clients: dict[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = {}  # one per round's loop
    messages: Any = [{"role": "user", "content": prompt}]

    async def call(stream: bool) -> str:
        loop = asyncio.get_running_loop()
        client = clients.get(loop)
        if client is None:
            client = clients[loop] = openai.AsyncOpenAI(
                base_url=sim_url, api_key=os.environ[key_env],
                http_client=http_client(openai, 600, sim_url),
            )  # fmt: skip
        if not stream:
            answer = await client.chat.completions.create(model=model_id, messages=messages)
            return answer.choices[0].message.content or ""
        chunks = await client.chat.completions.create(model=model_id, messages=messages,
                                                      stream=True)  # fmt: skip
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    yield InProcess(SDK, call)


def added_rows(servers: Sequence[Target], sim: Target, wire: Wire, args: Any) -> list[Added]:
    """Each gateway's own cost at concurrency 1, non-streaming and streaming, interleaved
    with the direct call in the same rounds."""
    rows: list[Added] = []
    for stream in (False, True):
        test = f"added at c=1, {'stream' if stream else 'non-stream'}"
        found = asyncio.run(
            interleaved(
                [sim, *servers],
                wire,
                stream,
                args.serial,
                args.block,
                warmup=min(args.serial, 50),
            )
        )
        direct = found[sim.name][0]
        for server in [sim, *servers]:
            latencies, errors, cpu_s = found[server.name]
            row = Added(
                server.name, test, len(latencies) + len(errors), len(errors),
                median(latencies), percentile(latencies, 99),
                cpu_ms=cpu_s * 1000 / max(1, len(latencies)),
                first_error=errors[0] if errors else "",
            )  # fmt: skip
            if server is not sim:
                row.added_p50_ms = row.p50_ms - median(direct)
                row.added_p99_ms = row.p99_ms - percentile(direct, 99)
            rows.append(row)
            print(
                f"  {test:<28} {server.name:<28} {row.p50_ms:8.3f} ms"
                + ("" if server is sim else f"  added {row.added_p50_ms:+.3f} ms")
                + (f", CPU {row.cpu_ms:.3f} ms" if math.isfinite(row.cpu_ms) else ""),
                flush=True,
            )
    return rows


def report_added(added: list[Added], args: Any) -> None:
    print_table(
        f"Each gateway's own cost: one request at a time, interleaved in blocks of "
        f"{args.block}, added over calling the simulated provider directly",
        ("test", "server", "requests", "errors", "p50 ms", "p99 ms", "added p50 ms",
         "added p99 ms", "server CPU ms"),
        [(r.test, r.server, r.requests, r.errors, r.p50_ms, r.p99_ms, r.added_p50_ms,
          r.added_p99_ms, r.cpu_ms) for r in added],
    )  # fmt: skip
    before, after = args.load_average["before"][0], args.load_average["after"][0]
    print(f"load average (1 min) {before:.1f} before, {after:.1f} after, {os.cpu_count()} cores")
    print("  server CPU ms: the gateway's process tree's CPU time per request (less moved by load)")
    for r in added:
        orc = next((o for o in added if o.server == ORC and o.test == r.test), None)
        sdk = next((o for o in added if o.server == SDK and o.test == r.test), None)
        if r.server == MMO and orc is not None:
            print(f"  {r.test}: mmo-serve - in-process orc = {r.p50_ms - orc.p50_ms:+.3f} ms "
                  "(the HTTP side's share)")  # fmt: skip
        if r.server == MMO and sdk is not None:
            print(f"  {r.test}: mmo-serve - raw SDK in-process = {r.p50_ms - sdk.p50_ms:+.3f} ms "
                  "(what mmo-serve adds beyond the SDK's own upstream call)")  # fmt: skip


def added_checks(added: list[Added]) -> list[Check]:
    """mmo-serve's added ms at c=1 against issue 29's goals; the others for information."""
    goals = {"non-stream": 1.0, "stream": 2.0}
    checks = []
    for r in added:
        if r.server == SIM:
            continue
        wire = r.test.rpartition(", ")[2]
        goal = goals[wire] if r.server == MMO else None
        for reference, what, note in REFERENCES:
            other = next((o for o in added if o.server == reference and o.test == r.test), None)
            if r.server == MMO and other is not None:
                checks.append(
                    Check(f"mmo-serve over {what} at c=1, {wire}", r.p50_ms - other.p50_ms,
                          "ms", "", None, note)
                )  # fmt: skip
        checks.append(
            Check(
                f"added ms per request at c=1 over direct, {wire}, {r.server}",
                r.added_p50_ms if math.isfinite(r.added_p50_ms) else 0.0,
                "ms",
                f"<= {goal:g} ms" if goal is not None else "",
                None if goal is None else r.errors == 0 and r.added_p50_ms <= goal,
                f"median {r.p50_ms:.2f} ms; p99 {r.p99_ms:.2f} ms (added {r.added_p99_ms:+.2f}); "
                f"server CPU {r.cpu_ms:.2f} ms a request"
                + (f"; {r.errors} errors: {r.first_error[:150]}" if r.errors else ""),
            )
        )
    return checks


def also_environments(given: list[str]) -> dict[str, dict[str, str]]:
    """``--also-env LABEL:VAR=VALUE`` options, by label."""
    found: dict[str, dict[str, str]] = {}
    for entry in given:
        label, colon, assignment = entry.partition(":")
        name, equals, value = assignment.partition("=")
        if not (colon and equals and name):
            raise SystemExit(f"--also-env {entry!r}: give LABEL:VAR=VALUE")
        found.setdefault(label, {})[name] = value
    return found
