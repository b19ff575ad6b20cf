"""What every benchmark shares: the machine, tables, percentiles, JSON results, a sim subprocess.

Benchmarks print a table and save ``benchmarks/results/<name>.json``:
``{"benchmark", "date", "machine", "params", "rows", "checks"}``, where each
check is ``{"metric", "value", "unit", "target", "met", "note"}``, the lines
``run_all.py`` puts in the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# MMO_BENCH_RESULTS lets the smoke test keep its quick runs out of the saved results.
RESULTS = Path(os.environ.get("MMO_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


@dataclass
class Check:
    """One measured figure against its target (from issue 7)."""

    metric: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: no target, reported for information
    note: str = ""


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table: first column left-aligned, numbers right-aligned."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(header)]
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in text:
        print(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def print_checks(checks: Sequence[Check]) -> None:
    rows = [
        (c.metric, f"{c.value:,.3g} {c.unit}".strip(), c.target or "-", _verdict(c.met), c.note)
        for c in checks
    ]
    print_table("Against the targets", ("metric", "measured", "target", "met", "note"), rows)


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def save(
    name: str, params: dict[str, Any], rows: list[dict[str, Any]], checks: Sequence[Check]
) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "rows": rows,
        "checks": [asdict(c) for c in checks],
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


@contextlib.contextmanager
def sim_process() -> Iterator[str]:
    """The simulated provider in a process of its own; yields its OpenAI base_url.

    A separate process, so the server's work does not share the GIL with the
    client being measured.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmo_magic.sim", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"OpenAI base_url ([^\s,]+)", line)
        if not found:
            raise RuntimeError(f"the simulated provider did not start: {line!r}")
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
