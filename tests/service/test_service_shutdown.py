"""Graceful shutdown of ``mmo-serve`` (a real process, the simulated provider behind it).

SIGTERM with slow streams in flight and requests still waiting: every client
must be able to tell what happened to its request. A stream either finishes
(``[DONE]``, no error) or, cut at the end of the grace, ends with an error
event and ``[DONE]``; a request that got no answer yet gets 503 with
Retry-After. Never a 200 cut mid-stream with nothing, never a bare 500.
"""

from __future__ import annotations

import contextlib
import json
import signal
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from helpers import chat, eventually, mmo_serve

import mmo_magic as mmo

GRACE_S = 2.0
DONE_ID = "sim-fast?tps=10&tokens=12"  # 1.1 s: finishes within the grace
SLOW_ID = "sim-fast?tps=5&tokens=200"  # 40 s: cut at the end of the grace
SILENT_ID = "sim-fast?latency_ms=30000"  # no answer for 30 s: nothing sent before the cut


@dataclass
class Outcome:
    """What one client saw."""

    what: str  # the request
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # SSE data, for streams
    body: str = ""
    error: str | None = None  # a transport error
    started: threading.Event = field(default_factory=threading.Event)  # text arrived
    ended_at: float = 0.0

    def kind(self) -> str:
        """complete | cut | refused | connection refused | anything else is a failure."""
        if self.error is not None:
            return f"transport error: {self.error}"
        if self.status == 503:
            error = json.loads(self.body)["error"]
            ok = (
                int(self.headers.get("retry-after", "0")) >= 1
                and error["code"] == "server_shutting_down"
                and "\n" not in self.body.strip()
            )
            return "refused" if ok else f"bad 503: {self.headers} {self.body}"
        if self.status != 200:
            return f"status {self.status}: {self.body[:200]}"
        if not self.events:  # a JSON answer
            return "complete" if json.loads(self.body)["choices"] else f"bad body {self.body}"
        if self.events[-1] != "[DONE]":
            return f"stream cut with no [DONE]: {self.events[-3:]}"
        chunks = [json.loads(e) for e in self.events[:-1]]
        errors = [c for c in chunks if "error" in c]
        if not errors:
            finished = [c for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]]
            return "complete" if finished else f"no finish reason: {self.events[-3:]}"
        if errors == chunks[-1:] and errors[0]["error"]["code"] == "server_shutting_down":
            return "cut"
        return f"bad error events: {errors}"


def _request(url: str, what: str, body: dict[str, Any], outcome: Outcome) -> Outcome:
    path = "/v1/chat/completions"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            if not body.get("stream"):
                response = http.post(path, json=body)
                outcome.status, outcome.body = response.status_code, response.text
                outcome.headers = dict(response.headers)
                return outcome
            with http.stream("POST", path, json=body) as response:
                outcome.status, outcome.headers = response.status_code, dict(response.headers)
                if response.status_code != 200:
                    outcome.body = response.read().decode()
                    return outcome
                for line in response.iter_lines():  # bounded: the server ends every stream
                    if line.startswith("data: "):
                        outcome.events.append(line.removeprefix("data: "))
                        if '"content":"' in line and '"content":""' not in line:
                            outcome.started.set()
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        outcome.ended_at = time.monotonic()
        outcome.started.set()  # never leave the test waiting
    return outcome


def test_sigterm_finishes_what_it_can_and_tells_every_other_client(sim_server, tmp_path):
    config = tmp_path / "mmo.toml"
    models = {"done": DONE_ID, "slow": SLOW_ID, "silent": SILENT_ID}
    config.write_text(
        f"default_model = 'done'\n[server]\ngraceful_shutdown_s = {GRACE_S}\n"
        # 13 requests, 8 upstream slots: some wait behind the limit when SIGTERM comes.
        "[concurrency]\nlocal = 8\n"
        + "".join(
            textwrap.dedent(f"""
                [models.{name}]
                provider = "local"
                model_id = "{model_id}"
                base_url = "{sim_server.openai_base_url}"
            """)
            for name, model_id in models.items()
        )
    )
    runlog = tmp_path / "runs.sqlite3"
    sim_server.reset()
    requests = [
        *[("slow stream", chat("slow", stream=True))] * 4,
        *[("done stream", chat("done", stream=True))] * 2,
        *[("silent stream", chat("silent", stream=True))] * 3,
        *[("silent answer", chat("silent"))] * 2,
        *[("slow answer", chat("slow"))] * 2,
    ]
    with mmo_serve(config, runlog) as (process, url), ThreadPoolExecutor(len(requests)) as pool:
        outcomes = [Outcome(what) for what, _ in requests]
        futures = []
        for (what, body), outcome in zip(requests, outcomes, strict=True):
            futures.append(pool.submit(_request, url, what, body, outcome))
            if what.endswith("stream") and what != "silent stream":  # under way first
                assert outcome.started.wait(20), what
        # The rest are in flight: waiting for the model, or behind a concurrency limit.
        eventually(lambda: sim_server.request_count(SILENT_ID) >= 1, "a silent request upstream")
        time.sleep(0.2)
        assert not any(f.done() for f in futures), [o.kind() for o in outcomes]
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # New requests: answered until the shutdown begins, then 503, then no connection at all.
        late: list[httpx.Response] = []
        deadline = time.monotonic() + 5
        with contextlib.suppress(httpx.TransportError):
            while time.monotonic() < deadline:
                late.append(httpx.get(f"{url}/health", timeout=5))
                time.sleep(0.02)
        assert time.monotonic() < deadline, "still accepting connections"
        assert {r.status_code for r in late} <= {200, 503}
        assert all(r.headers["retry-after"] for r in late if r.status_code == 503)
        results = [f.result(timeout=GRACE_S + 20) for f in futures]
        assert process.wait(timeout=GRACE_S + 20) == 0
        stderr = process.communicate()[1]
    kinds: dict[str, set[str]] = {o.what: set() for o in results}
    for o in results:
        kinds[o.what].add(o.kind())
    assert kinds == {
        "done stream": {"complete"},
        "slow stream": {"cut"},
        "silent stream": {"refused"},
        "silent answer": {"refused"},
        "slow answer": {"refused"},
    }, kinds
    # Cut at the end of the grace, not before (the done streams finished) and not much after.
    cut_at = max(o.ended_at for o in results) - stopped_at
    assert GRACE_S * 0.9 < cut_at < GRACE_S + 3, cut_at
    for o in results:
        if o.what == "slow stream":
            words = [json.loads(e)["choices"][0]["delta"].get("content") for e in o.events[1:-2]]
            assert all(words) and len(words) < 200  # text, then the error: a cut answer
    assert "Traceback" not in stderr and "Finished server process" in stderr, stderr
    # Every call the cut stopped is in the run log as cancelled; none ran past the process.
    with mmo.RunLog(runlog) as log:
        records = log.records()
    statuses = {(r.model, r.status) for r in records}
    assert ("done", "ok") in statuses and ("slow", "cancelled") in statuses, statuses
    assert {r.step for r in records} == {"service"}


@pytest.mark.parametrize("streams", [True, False])
def test_a_zero_grace_cuts_at_once(sim_server, tmp_path, streams):
    """graceful_shutdown_s = 0: nothing waits; streams under way still end with [DONE]."""
    sim_server.reset()
    config = tmp_path / "mmo.toml"
    config.write_text(textwrap.dedent(f"""
        default_model = "slow"
        [server]
        graceful_shutdown_s = 0
        [models.slow]
        provider = "local"
        model_id = "{SLOW_ID}"
        base_url = "{sim_server.openai_base_url}"
    """))  # fmt: skip
    with mmo_serve(config, tmp_path / "runs.sqlite3") as (process, url):
        outcome = Outcome("slow")
        thread = threading.Thread(
            target=_request, args=(url, "slow", chat("slow", stream=streams), outcome)
        )
        thread.start()
        if streams:
            assert outcome.started.wait(20)
        else:
            eventually(lambda: sim_server.request_count(SLOW_ID) >= 1, "the request upstream")
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        thread.join(20)
        assert process.wait(timeout=20) == 0
    assert outcome.kind() == ("cut" if streams else "refused")
    assert outcome.ended_at - stopped_at < 2
