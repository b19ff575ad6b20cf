"""The benchmarks still run: every script, at quick sizes, through run_all.py.

Behaviour only: each saves its JSON with its checks, and the widget benchmark
loses no token. No figure is compared with a target here (see benchmarks/).
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
NAMES = ("overhead", "parallel", "widgets", "records", "startup", "routing", "gateway", "batch")


@pytest.mark.timeout(600)
def test_every_benchmark_runs_and_saves_its_checks(tmp_path: Path) -> None:
    env = {**os.environ, "MMO_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {c["benchmark"] for c in summary["checks"]} == set(NAMES)
    for name in NAMES:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["machine"]["cores"] and result["rows"], name
        for check in result["checks"]:
            assert math.isfinite(check["value"]), check
    lost = next(c for c in summary["checks"] if c["metric"].startswith("panels whose final text"))
    assert lost["value"] == 0, lost
    assert "| benchmark | metric | measured | target | met |" in done.stdout
