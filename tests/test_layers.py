"""The package's layers (DESIGN.md): imports point down, checked by import-linter.

The contracts live in pyproject.toml; `.ci/run` runs `lint-imports` too. The
tests here show the check passing on the package and failing on a planted
violation, an import inside a function included.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmo_magic"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed: pip install -e '.[dev]'"
)


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_package_keeps_its_layers() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 broken" in done.stdout


def planted_copy(tmp_path: Path, module: str, source: str) -> Path:
    """A copy of the package whose ``module`` (a path under mmo_magic/) ends with ``source``."""
    shutil.copytree(PACKAGE, tmp_path / "mmo_magic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "mmo_magic" / module
    target.write_text(target.read_text() + "\n\n" + source)
    return tmp_path


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        (
            "core/errors.py",
            "def _planted() -> None:\n    from ..notebook import magics  # noqa: F401\n",
            "mmo_magic.core.errors -> mmo_magic.notebook.magics",
        ),
        (
            "notebook/magics.py",
            "def _planted() -> None:\n    from ..service import app  # noqa: F401\n",
            "mmo_magic.notebook.magics -> mmo_magic.service.app",
        ),
        (
            "routing/base.py"
            if (PACKAGE / "routing" / "base.py").exists()
            else "routing/__init__.py",
            "from ..storage import runlog  # noqa: F401,E402\n",
            "-> mmo_magic.storage.runlog",
        ),
        (
            "orchestration/budget.py",
            "def _planted() -> None:\n    import IPython  # noqa: F401\n",
            "-> IPython",
        ),
        (
            "orchestration/parallel.py",
            "def _planted() -> None:\n    from ..evaluation import run  # noqa: F401\n",
            "mmo_magic.orchestration.parallel -> mmo_magic.evaluation.run",
        ),
        (
            "evaluation/run.py",
            "def _planted() -> None:\n    from ..notebook import batch_view  # noqa: F401\n",
            "mmo_magic.evaluation.run -> mmo_magic.notebook.batch_view",
        ),
        (
            "evaluation/plan.py",
            "def _planted() -> None:\n    from ..orchestration import orchestrator  # noqa: F401\n",
            "mmo_magic.evaluation.plan -> mmo_magic.orchestration.orchestrator",
        ),
        (
            "evaluation/run.py",
            "def _planted() -> None:\n    from .ray import driver  # noqa: F401\n",
            "mmo_magic.evaluation.run -> mmo_magic.evaluation.ray.driver",
        ),
        (
            "evaluation/result.py",
            "def _planted() -> None:\n    import ray  # noqa: F401\n",
            "mmo_magic.evaluation.result -> ray",
        ),
    ],
    ids=[
        "core-up-to-notebook",
        "notebook-to-service",
        "routing-to-storage",
        "ipython-in-core",
        "orchestration-up-to-evaluation",
        "evaluation-up-to-notebook",
        "evaluation-to-the-facade",
        "local-batch-to-ray-code",
        "ray-outside-evaluation-ray",
    ],
)
def test_a_planted_violation_breaks_the_check(
    tmp_path: Path, module: str, source: str, broken: str
) -> None:
    done = lint_imports(planted_copy(tmp_path, module, source))
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout[-3000:]


def root_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """Imports in ``path`` (a module inside ``package``) of the package root itself."""
    depth = len(path.relative_to(package).parts) - 1  # packages between the root and the file
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name == "mmo_magic"]
        elif isinstance(node, ast.ImportFrom):
            absolute_root = node.level == 0 and node.module == "mmo_magic"
            relative_root = node.level == depth + 1 and node.module is None
            if absolute_root or relative_root:
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''}")
    return found


def test_nothing_inside_imports_the_package_root() -> None:
    inside = [
        p
        for p in PACKAGE.rglob("*.py")
        if p.parent != PACKAGE or p.name not in ("__init__.py", "__main__.py")
    ]
    assert len(inside) > 30
    offenders = {str(p.relative_to(ROOT)): found for p in inside if (found := root_imports(p))}
    assert offenders == {}


def test_the_root_import_check_sees_a_planted_one(tmp_path: Path) -> None:
    copy = planted_copy(
        tmp_path, "core/errors.py", "def _planted() -> None:\n    from .. import x\n"
    )
    planted = copy / "mmo_magic" / "core" / "errors.py"
    last_line = len(planted.read_text().splitlines())
    assert root_imports(planted, copy / "mmo_magic") == [f"line {last_line}: from .."]


# -- import cycles --------------------------------------------------------------------------------


def import_cycles(package: str) -> list[list[str]]:
    """Every set of modules of ``package`` that import each other in a circle (imports
    inside functions included): the graph's strongly connected components of more than
    one module, or a module importing itself. Imports under TYPE_CHECKING are left out:
    they never run (a facade method's module and the one it delegates to may name each
    other's types), and the layer contracts still count them."""
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    # Tarjan's algorithm, iterative (the package is deeper than Python's recursion likes).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, []):
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def test_no_import_cycles() -> None:
    """``python -c "from test_layers import import_cycles; print(import_cycles('mmo_magic'))"``
    from tests/ shows them."""
    assert import_cycles("mmo_magic") == []


def test_the_cycle_check_sees_a_planted_cycle(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "circle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b  # noqa: F401\n")
    (package / "b.py").write_text("def f() -> None:\n    from . import c  # noqa: F401\n")
    (package / "c.py").write_text("from . import a  # noqa: F401\n")
    (package / "d.py").write_text("from . import a  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("circle") == [["circle.a", "circle.b", "circle.c"]]


MAX_MODULE_LINES = 800  # past this a module is two rooms: split it where its concerns part


def test_no_module_is_over_800_lines() -> None:
    package = Path(__file__).resolve().parent.parent / "mmo_magic"
    long = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
