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
    ],
    ids=["core-up-to-notebook", "notebook-to-service", "routing-to-storage", "ipython-in-core"],
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
