"""``benchmarks/gateway.py``'s c=1 rows: each gateway's added ms per request over calling the
upstream directly, non-streaming and streaming, from one interleaved run.

Behaviour only: the rows and checks are there, with finite figures and no failed
request. No figure is compared with a target (a loaded machine moves them).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_added_ms_rows_come_from_one_interleaved_run(tmp_path: Path) -> None:
    env = {**os.environ, "MMO_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--quick", "--only-added",
         "--skip-litellm", "--also", f"again={ROOT}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gateway-added.json").read_text())
    rows = {(r["server"], r["test"]): r for r in result["rows"]}
    servers = ("simulated provider (direct)", "mmo-serve", "mmo-serve (again)")
    for wire in ("non-stream", "stream"):
        for server in servers:
            row = rows[(server, f"added at c=1, {wire}")]
            assert row["errors"] == 0 and row["requests"] == 10, row
            assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"], row
            if server != servers[0]:  # the direct call is the floor: nothing added to it
                assert math.isfinite(row["added_p50_ms"]) and row["cpu_ms"] >= 0, row
    metrics = {c["metric"]: c for c in result["checks"]}
    ours = metrics["added ms per request at c=1 over direct, stream, mmo-serve"]
    assert ours["target"] == "<= 2 ms" and ours["unit"] == "ms"
    assert metrics["added ms per request at c=1 over direct, non-stream, mmo-serve"]["target"] == (
        "<= 1 ms"
    )
    assert "Each gateway's own cost" in done.stdout
    # The references: a do-nothing proxy on the same HTTP stack relays whole answers (its
    # rows count only answers that ended), and the SDK's own call from the benchmark.
    for server in ("passthrough proxy (uvicorn + an aiohttp session, nothing else)",
                   "raw AsyncOpenAI + aiohttp in-process (the SDK's own cost)"):  # fmt: skip
        for wire in ("non-stream", "stream"):
            row = rows[(server, f"added at c=1, {wire}")]
            assert row["errors"] == 0 and row["requests"] == 10, row
            assert math.isfinite(row["added_p50_ms"]), row
    for reference in ("the raw SDK in-process", "the passthrough proxy"):
        assert f"mmo-serve over {reference} at c=1, non-stream" in metrics
