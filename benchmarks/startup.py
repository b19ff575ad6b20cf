"""Start-up: ``import mmo_magic`` and ``%load_ext mmo_magic``, each in fresh interpreters.

    python benchmarks/startup.py [--runs 15]

Each figure is the median over ``--runs`` new Python processes, timed inside
the process with ``time.perf_counter`` around the statement (interpreter
start-up itself excluded), after one unmeasured run that writes the bytecode
caches, as a user's second session would find them. The machine's
``PYTHONDONTWRITEBYTECODE`` is cleared for these runs, and the import is also
timed with no bytecode cache for mmo_magic (every module compiled from
source), which is what a checkout with that variable set pays.

``%load_ext`` runs in an IPython ``InteractiveShell`` created before the
timer starts, as in a kernel, which has IPython and asyncio loaded already.
The last table lists mmo_magic's slowest imports from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from _common import Check, median, print_checks, print_table, save

import mmo_magic

PACKAGE = Path(mmo_magic.__file__).resolve().parent

IMPORT = """
import time
start = time.perf_counter()
import mmo_magic
print((time.perf_counter() - start) * 1000)
"""

LOAD_EXT = """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
import time
start = time.perf_counter()
shell.run_line_magic("load_ext", "mmo_magic")
print((time.perf_counter() - start) * 1000)
import sys
heavy = [m for m in ("pandas", "ipywidgets", "openai", "anthropic") if m in sys.modules]
assert not heavy, f"%load_ext imported {heavy}"
"""


def run(code: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def clear_bytecode() -> None:
    for cache in PACKAGE.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def slowest_imports(env: dict[str, str], top: int = 12) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the modules `import mmo_magic` loads, slowest first."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mmo_magic"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = out.stderr.splitlines()
    # importtime lists a module after what it imports, and `site` closes the
    # interpreter's own start-up: every line after it is under `import mmo_magic`.
    site = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| site"))
    rows = []
    for line in lines[site + 1 :]:
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if found:
            rows.append((found.group(3), int(found.group(1)) / 1000, int(found.group(2)) / 1000))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run(IMPORT, env)  # writes the bytecode caches
    imports = [run(IMPORT, env) for _ in range(args.runs)]
    cold = []
    for _ in range(max(3, args.runs // 3)):
        clear_bytecode()
        cold.append(run(IMPORT, {**env, "PYTHONDONTWRITEBYTECODE": "1"}))
    run(IMPORT, env)  # caches back
    run(LOAD_EXT, env)
    load_ext = [run(LOAD_EXT, env) for _ in range(args.runs)]

    rows = [
        ("import mmo_magic", median(imports), min(imports), max(imports)),
        ("import mmo_magic, no bytecode cache", median(cold), min(cold), max(cold)),
        ("%load_ext mmo_magic (in a shell)", median(load_ext), min(load_ext), max(load_ext)),
    ]
    print_table(
        f"Start-up, {args.runs} fresh processes each",
        ("what", "median ms", "min ms", "max ms"),
        rows,
    )
    print_table(
        "Slowest imports under `import mmo_magic` (python -X importtime, one run)",
        ("module", "self ms", "cumulative ms"),
        slowest_imports(env),
    )
    checks = [
        Check(
            "import mmo_magic",
            median(imports),
            "ms",
            "< 150 ms",
            median(imports) < 150,
            f"{median(cold):.0f} ms with no bytecode cache",
        ),
        Check("%load_ext mmo_magic", median(load_ext), "ms", "< 300 ms", median(load_ext) < 300),
    ]
    print_checks(checks)
    save(
        "startup",
        vars(args),
        [dict(zip(("what", "median_ms", "min_ms", "max_ms"), r, strict=True)) for r in rows],
        checks,
    )


if __name__ == "__main__":
    main()
