"""Run every benchmark, then print one summary table (Markdown, for README).

    python benchmarks/run_all.py [--quick] [--only overhead,records] [--with-embedded]

Each benchmark runs as its own process (so start-up, memory and imports of
one never touch another), prints its tables and saves
``benchmarks/results/<name>.json``; this script then gathers every check into
``benchmarks/results/summary.json`` and prints the summary. ``--quick`` runs
each with small sizes, to check that they work, not to measure anything.
The embedded-model benchmark needs llama-cpp-python and the SmolLM2 wheel,
and takes a few minutes; it runs with ``--with-embedded``, which also adds
the embedded model's rows (local and Ray) to the batch benchmark.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, machine

HERE = Path(__file__).resolve().parent

# name -> (full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "overhead": (
        [],
        ["--calls", "20", "--warmup", "5", "--requests", "200", "--concurrency", "20"],
    ),
    "parallel": ([], ["--rounds", "2"]),
    "widgets": ([], ["--rounds", "1", "--tokens", "60"]),
    "records": ([], ["--records", "2000", "--writes", "1000", "--rounds", "1"]),
    "startup": ([], ["--runs", "2"]),
    "routing": ([], ["--rounds", "1"]),
    "gateway": ([], ["--quick"]),
    "batch": ([], ["--quick"]),
}
EMBEDDED = ([], ["--rounds", "1", "--max-tokens", "8"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--with-embedded", action="store_true")
    args = parser.parse_args()

    chosen = dict(BENCHMARKS)
    if args.with_embedded:
        chosen["embedded"] = EMBEDDED
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in chosen]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(chosen)}")
        chosen = {n: chosen[n] for n in names}

    failed = []
    for name, (full, quick) in chosen.items():
        print(f"\n=== {name} " + "=" * (60 - len(name)), flush=True)
        start = time.perf_counter()
        extra = ["--with-embedded"] if args.with_embedded and name == "batch" else []
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full), *extra]
        )
        print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)
        if done.returncode != 0:
            failed.append(name)

    # Every saved result, so that re-running one benchmark (--only) keeps the others' lines.
    summary = []
    for name in [*BENCHMARKS, "embedded"]:
        path = RESULTS / f"{name}.json"
        if name not in failed and path.exists():
            summary.extend(
                {"benchmark": name, **check} for check in json.loads(path.read_text())["checks"]
            )
    (RESULTS / "summary.json").write_text(
        json.dumps({"machine": machine(), "quick": args.quick, "checks": summary}, indent=2) + "\n"
    )
    print_markdown(summary)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def print_markdown(checks: list[dict]) -> None:
    info = machine()
    print(
        f"\n{time.strftime('%Y-%m-%d')} · {info['cpu']} · {info['cores']} cores"
        f" · Python {info['python']}\n"
    )
    print("| benchmark | metric | measured | target | met |")
    print("|---|---|---|---|---|")
    for c in checks:
        value = f"{c['value']:,.3g} {c['unit']}".strip()
        met = {True: "yes", False: "**no**", None: "–"}[c["met"]]
        note = f" ({c['note']})" if c["note"] else ""
        print(
            f"| {c['benchmark']} | {c['metric']}{note} | {value} | {c['target'] or '–'} | {met} |"
        )


if __name__ == "__main__":
    main()
