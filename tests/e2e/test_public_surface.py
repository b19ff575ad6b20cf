"""The notebooks and README use only public names (issue 22): no ``mmo_magic.<internal>``.

Allowed: ``mmo_magic`` itself, ``mmo_magic.evaluation`` (a documented public subpackage) and
``mmo_magic.sim`` (the simulated provider, run as ``python -m mmo_magic.sim`` too). Folder
paths are implementation: a notebook that imports them breaks when the code moves.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
README = REPO / "README.md"
PUBLIC = {"mmo_magic", "mmo_magic.evaluation", "mmo_magic.sim"}
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _python(source: str) -> str:
    """A code cell as plain Python, as IPython runs it (magics become get_ipython() calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    if source.lstrip().startswith("%%"):
        return ""  # a cell magic: its body is the magic's, not Python
    return TransformerManager().transform_cell(source)


def _internal_uses(source: str) -> Iterator[str]:
    """Each ``mmo_magic.<internal>`` the code imports, or reaches as ``mmo.<internal>.<name>``."""
    tree = ast.parse(_python(source))
    aliases = {"mmo_magic"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mmo_magic":
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("mmo_magic.") and alias.name not in PUBLIC:
                    yield f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if module.startswith("mmo_magic") and module not in PUBLIC:
                yield f"from {module} import ..."
            if module == "mmo_magic":
                for alias in node.names:  # from mmo_magic import notebook: a subpackage
                    if f"mmo_magic.{alias.name}" not in PUBLIC and _is_subpackage(alias.name):
                        yield f"from mmo_magic import {alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in aliases
            and _internal(node.value.attr)
        ):
            yield f"{node.value.value.id}.{node.value.attr}.{node.attr}"


def _internal(name: str) -> bool:
    """``mmo.<name>.x`` reaches past the API: a module path, or nothing mmo_magic exports."""
    import mmo_magic

    if f"mmo_magic.{name}" in PUBLIC:
        return False
    return _is_subpackage(name) or not hasattr(mmo_magic, name)


def _is_subpackage(name: str) -> bool:
    package = REPO / "mmo_magic"
    return (package / name).is_dir() or (package / f"{name}.py").is_file()


def _cells(notebook: Path) -> Iterator[tuple[int, str]]:
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] == "code":
            yield index, "".join(cell["source"])


def test_the_check_finds_internal_imports() -> None:
    """The walker itself: it must be able to fail."""
    found = list(
        _internal_uses(
            "import mmo_magic as mmo\nfrom mmo_magic.providers import register_function\n"
            "import mmo_magic.core.errors\nx = mmo.pipeline.research_pipeline\n"
            "from mmo_magic import notebook\n%load_ext mmo_magic\n"
        )
    )
    assert sorted(found) == [
        "from mmo_magic import notebook",
        "from mmo_magic.providers import ...",
        "import mmo_magic.core.errors",
        "mmo.pipeline.research_pipeline",
    ]
    assert not list(
        _internal_uses(
            "import mmo_magic as mmo\nfrom mmo_magic.evaluation import run_batch\n"
            "from mmo_magic.sim import SimServer\nmmo.evaluation.BatchSpec\nmmo.use(None)\n"
        )
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_only_public_names(notebook: Path) -> None:
    used = [f"cell {i}: {use}" for i, source in _cells(notebook) for use in _internal_uses(source)]
    assert not used, f"{notebook.name} reaches past the public API: {used}"


def test_readme_python_blocks_import_only_public_names() -> None:
    blocks = _PYTHON_BLOCK.findall(README.read_text())
    assert len(blocks) > 5
    used = [use for block in blocks for use in _internal_uses(block)]
    assert not used, f"README reaches past the public API: {used}"


def test_public_names_the_notebooks_use_exist() -> None:
    """Every ``mmo.<name>`` a notebook or README uses is importable from mmo_magic."""
    import mmo_magic as mmo

    sources = [s for nb in NOTEBOOKS for _, s in _cells(nb)]
    sources += _PYTHON_BLOCK.findall(README.read_text())
    missing = set()
    for source in sources:
        tree = ast.parse(_python(source))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "mmo"
                and not hasattr(mmo, node.attr)
            ):
                missing.add(node.attr)
            if isinstance(node, ast.ImportFrom) and node.module == "mmo_magic":
                missing.update(a.name for a in node.names if not hasattr(mmo, a.name))
    assert not missing, f"not exported by mmo_magic: {sorted(missing)}"


def test_readme_lists_every_notebook() -> None:
    """Issue 28 #24: the notebooks table listed six of seven notebooks."""
    text = README.read_text()
    missing = [nb.name for nb in NOTEBOOKS if f"| `{nb.name}` |" not in text]
    assert not missing, f"README's notebooks table lacks {missing}"
