"""The outage sweep, fast (issue 27 #10): ``benchmarks/outage.py`` with the probe interval set
short. Callers keep calling a model through outages of 1 and 3 s; after the upstream returns,
the breaker refuses them for at most the probe interval (plus one call). The full sweep
(10, 30, 70 s at the default 5 s interval) is the benchmark itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE_INTERVAL_S = 0.5


@pytest.mark.timeout(120)
def test_readmission_after_an_outage_takes_at_most_the_probe_interval(tmp_path):
    env = {**os.environ, "MMO_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "outage.py", "--outages", "1,3", "--probe-interval",
         str(PROBE_INTERVAL_S), "--cooldown", "0.1"],
        cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Refusal after the upstream returns" in done.stdout  # the table
    rows = json.loads((tmp_path / "outage.json").read_text())["rows"]
    assert [r["outage_s"] for r in rows] == [1.0, 3.0]
    for row in rows:
        assert row["refused_during"] > 0  # the breaker did open
        assert row["refusal_after_return_s"] <= PROBE_INTERVAL_S + 0.25, row
