"""Running the shipped notebooks in a real kernel and reading their outputs (for tests)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(
    name: str, tmp_path: Path, *, store_widget_state: bool = False
) -> nbformat.NotebookNode:
    """Execute notebooks/``name`` top to bottom.

    Without saved widget state by default: what a saved notebook shows must not need it.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=store_widget_state,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return nb


def outputs(cell: nbformat.NotebookNode) -> str:
    """A cell's text: stream chunks joined as printed, then each display's plain text or markdown.

    HTML twins would only repeat the text; images are checked on their own.
    """
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts.extend(str(data[k]) + "\n" for k in ("text/plain", "text/markdown") if k in data)
    return "".join(parts)
